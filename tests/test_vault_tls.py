"""Vault serves TLS under mocks: the cert-manager CA chain in Vault's namespace, the certificate's names against
every name a client uses, the listener and the chart's TLS settings, every consumer on https with the CA, and
cert-manager as its own component (built when something needs it, before Vault, its prod release kept by an alias).
The real server with these settings is in tests/test_vault_real.py."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import hcl
import pytest
import yaml

from components.backups.vault_snapshot import CA_FILE as JOB_CA_FILE
from components.cert_manager import RELEASE
from components.config import parse_stack_config
from components.plan import VAULT_INSTALL, needs_cert_manager, platform_plan
from components.vault_server import CA_KEY, TLS_DIR, TLS_SECRET, VAULT_UID
from tests.support import chart_objects, pod_spec
from tools.render import ROOT, Rendering, render_stack, unwrap_secrets

VAULT_NAMESPACE = "mlops-vault"
CERT_MANAGER_CHART = "kubernetes:helm.sh/v4:Chart"
OLD_RELEASE_URN = "urn:pulumi:prod::mlops-platform::mlops:cnpg_backup_plugin:CnpgBackupPlugin$kubernetes:helm.sh/v4:Chart::cnpg-backup-cert-manager"
"""The URN prod's cert-manager release has in its state: the program rendered it so before cert-manager became its
own component (and tests/test_backups.py asserted the name under its old parent)."""


def chain(prod: Rendering) -> dict[str, dict]:
    """The cert-manager objects in Vault's namespace, by Kubernetes name."""
    # The front door's issuer and certificates live elsewhere (tests/test_front_door.py).
    found = [r for r in prod.resources if r.type.startswith("kubernetes:cert-manager.io/") and r.metadata.get("namespace") == VAULT_NAMESPACE]
    assert found
    return {r.metadata["name"]: r.manifest(redact=False) for r in found}


def server_certificate(prod: Rendering) -> dict:
    (server,) = [c for c in chain(prod).values() if c["kind"] == "Certificate" and not c["spec"].get("isCA")]
    return server


def values(prod: Rendering) -> dict:
    return unwrap_secrets(prod.find(type="kubernetes:helm.sh/v3:Release", name="vault-chart").inputs["values"])


def listener_config(prod: Rendering) -> dict:
    return hcl.loads(values(prod)["server"]["ha"]["raft"]["config"])


def snapshot_job(prod: Rendering) -> dict:
    return pod_spec(prod.find(kind="CronJob", name="backup-vault-snapshot").manifest(redact=False))


def covers(certificate: dict, host: str) -> bool:
    return host in certificate["spec"]["dnsNames"] or host in certificate["spec"].get("ipAddresses", [])


# --- The chain ----------------------------------------------------------------------------------------------------


def test_a_self_signed_issuer_makes_the_ca_whose_issuer_signs_the_servers_certificate(prod):
    objects = chain(prod)
    issuers = {name: obj["spec"] for name, obj in objects.items() if obj["kind"] == "Issuer"}
    certificates = {name: obj["spec"] for name, obj in objects.items() if obj["kind"] == "Certificate"}
    (self_signed,) = [name for name, spec in issuers.items() if spec == {"selfSigned": {}}]
    (ca,) = [spec for spec in certificates.values() if spec.get("isCA")]
    assert ca["issuerRef"]["name"] == self_signed and ca["issuerRef"]["kind"] == "Issuer"
    assert set(ca["usages"]) >= {"cert sign"} and ca["privateKey"]["rotationPolicy"] == "Never"
    (ca_issuer,) = [name for name, spec in issuers.items() if spec.get("ca", {}).get("secretName") == ca["secretName"]]
    server = server_certificate(prod)["spec"]
    assert server["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": ca_issuer}
    assert server["secretName"] == TLS_SECRET and "server auth" in server["usages"] and not server.get("isCA")
    # Renewed well before it expires; a CA with a long life, since every client trusts it.
    assert int(server["duration"][:-1]) > int(server["renewBefore"][:-1]) >= 24 * 7
    assert int(ca["duration"][:-1]) >= 5 * 365 * 24


def test_the_chain_waits_for_cert_manager_and_vault_waits_for_its_certificate(prod):
    release = prod.find(type=CERT_MANAGER_CHART, name="cert-manager-chart")
    for resource in [r for r in prod.resources if r.type.startswith("kubernetes:cert-manager.io/")]:
        assert release.urn in resource.dependencies, resource.name
    vault = prod.find(type="kubernetes:helm.sh/v3:Release", name="vault-chart")
    assert prod.find(name="vault-tls-server").urn in vault.dependencies
    ca_issuer = prod.find(name="vault-tls-ca-issuer")
    assert ca_issuer.urn in prod.find(name="vault-tls-server").dependencies
    assert prod.find(name="vault-tls-ca").urn in ca_issuer.dependencies


# --- The names on the certificate against every name a client uses -----------------------------------------------


def client_hosts(prod: Rendering) -> dict[str, str]:
    """Every host name or address a client reaches Vault by, and who uses it."""
    hosts = {}
    store = prod.find(kind="ClusterSecretStore").inputs["spec"]["provider"]["vault"]
    hosts[urlsplit(store["server"]).hostname] = "External Secrets' store"
    job_env = {e["name"]: e.get("value") for e in snapshot_job(prod)["initContainers"][0]["env"]}
    hosts[urlsplit(job_env["VAULT_ADDR"]).hostname] = "the snapshot job"
    hosts[urlsplit(unwrap_secrets(prod.find(type="pulumi:providers:vault").inputs)["address"]).hostname] = "Pulumi, through the port-forward"
    for join in listener_config(prod)["storage"]["raft"]["retry_join"]:
        hosts[urlsplit(join["leader_api_addr"]).hostname] = "a raft peer joining"
    server = values(prod)["server"]
    for n in range(int(server["ha"]["replicas"])):
        api_addr = server["ha"]["apiAddr"].replace("$(VAULT_K8S_POD_NAME)", f"vault-{n}").replace("$(VAULT_K8S_NAMESPACE)", VAULT_NAMESPACE)
        hosts[urlsplit(api_addr).hostname] = "a standby redirecting a client to the active server"
    # The chart's VAULT_ADDR in every pod (templates/server-statefulset.yaml): the CLI and the exec probes.
    hosts["127.0.0.1"] = "the pods' own CLI"
    monitor = prod.find(kind="PodMonitor", name="monitoring-vault-monitor").inputs["spec"]["podMetricsEndpoints"][0]
    hosts[monitor["tlsConfig"]["serverName"]] = "Prometheus"
    return hosts


def test_the_certificate_names_every_host_a_client_uses(prod):
    certificate = server_certificate(prod)
    hosts = client_hosts(prod)
    assert len(hosts) >= 8
    assert {host: who for host, who in hosts.items() if not covers(certificate, host)} == {}
    # Each pod by its headless name, as raft's retry_join reaches it, in every replica.
    assert {f"vault-{n}.vault-internal" for n in range(3)} <= set(certificate["spec"]["dnsNames"])
    assert "vault-active.mlops-vault.svc.cluster.local" in certificate["spec"]["dnsNames"]


def test_the_certificate_names_no_pod_that_does_not_exist(prod):
    names = server_certificate(prod)["spec"]["dnsNames"]
    pods = {int(m.group(1)) for name in names if (m := re.match(r"vault-(\d+)\.", name))}
    assert pods == set(range(int(values(prod)["server"]["ha"]["replicas"])))


# --- The server ---------------------------------------------------------------------------------------------------


def test_the_listener_serves_tls_with_the_mounted_certificate(prod):
    listener = listener_config(prod)["listener"]["tcp"]
    assert "tls_disable" not in listener
    assert (listener["tls_cert_file"], listener["tls_key_file"]) == (f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key")
    assert listener["tls_min_version"] == "tls12"
    for join in listener_config(prod)["storage"]["raft"]["retry_join"]:
        assert join["leader_api_addr"].startswith("https://") and join["leader_ca_cert_file"] == f"{TLS_DIR}/{CA_KEY}"
    chart = values(prod)
    assert chart["global"]["tlsDisable"] is False
    # The chart's extraVolumes mount a Secret at /vault/userconfig/<name> (templates/_helpers.tpl).
    assert [(v["type"], v["name"]) for v in chart["server"]["extraVolumes"]] == [("secret", TLS_SECRET)]
    assert chart["server"]["extraEnvironmentVars"]["VAULT_CACERT"] == f"{TLS_DIR}/{CA_KEY}"
    assert chart["server"]["ha"]["apiAddr"].startswith("https://")


def test_the_chart_mounts_the_certificate_where_the_listener_reads_it_and_speaks_https(prod):
    """What Helm renders from these values (templates/server-statefulset.yaml and _helpers.tpl)."""
    objects = chart_objects(prod, "vault-chart")
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    (server,) = [c for c in pod["containers"] if c["name"] == "vault"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == TLS_DIR]
    assert volumes[mount["name"]]["secret"]["secretName"] == TLS_SECRET
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["VAULT_ADDR"] == "https://127.0.0.1:8200" and env["VAULT_CACERT"] == f"{TLS_DIR}/{CA_KEY}"
    assert env["VAULT_API_ADDR"] == values(prod)["server"]["ha"]["apiAddr"]
    # $(VAR) is expanded only from variables defined earlier in the list.
    names = [e["name"] for e in server["env"]]
    assert names.index("VAULT_K8S_POD_NAME") < names.index("VAULT_API_ADDR") and names.index("VAULT_K8S_NAMESPACE") < names.index("VAULT_API_ADDR")
    assert {p["name"] for p in server["ports"] if p["containerPort"] == 8200} == {"https"}
    services = [o for o in objects if o["kind"] == "Service"]
    assert {o["metadata"]["name"] for o in services} <= {"vault", "vault-active", "vault-standby", "vault-internal", "vault-ui"}
    names_on_certificate = set(server_certificate(prod)["spec"]["dnsNames"])
    assert {f"{o['metadata']['name']}.{VAULT_NAMESPACE}.svc" for o in services} <= names_on_certificate


# --- Every consumer on https, verifying against the CA ------------------------------------------------------------


def test_external_secrets_verifies_vault_against_the_ca_in_vaults_namespace(prod):
    store = prod.find(kind="ClusterSecretStore").inputs["spec"]["provider"]["vault"]
    assert store["server"].startswith("https://")
    assert store["caProvider"] == {"type": "Secret", "namespace": VAULT_NAMESPACE, "name": TLS_SECRET, "key": CA_KEY}


def test_the_snapshot_job_verifies_vault_against_the_ca_alone(prod):
    spec = snapshot_job(prod)
    (save,) = spec["initContainers"]
    env = {e["name"]: e.get("value") for e in save["env"]}
    assert env["VAULT_ADDR"].startswith("https://") and env["VAULT_CACERT"] == JOB_CA_FILE
    (mount,) = [m for m in save["volumeMounts"] if JOB_CA_FILE.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    # The CA certificate only: the server's key in the same Secret stays out of the job's pod.
    assert volume["secret"] == {"secretName": TLS_SECRET, "items": [{"key": CA_KEY, "path": CA_KEY}]}
    assert mount["readOnly"] is True


def test_prometheus_scrapes_vault_over_https_verifying_the_ca(prod):
    monitor = prod.find(kind="PodMonitor", name="monitoring-vault-monitor")
    assert monitor.metadata["namespace"] == VAULT_NAMESPACE  # where the CA Secret is: Prometheus reads it there
    (endpoint,) = monitor.inputs["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["scheme"]) == ("https", "https")
    assert endpoint["tlsConfig"]["ca"] == {"secret": {"name": TLS_SECRET, "key": CA_KEY}}
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]


def test_pulumi_reaches_vault_over_https_with_the_ca_file_and_never_skips_verification(prod):
    provider = unwrap_secrets(prod.find(type="pulumi:providers:vault").inputs)
    assert provider["address"].startswith("https://") and provider["caCertFile"]
    assert not provider.get("skipTlsVerify")
    stack_file = (ROOT / "Pulumi.prod.yaml").read_text()
    assert f"get secret {TLS_SECRET} -o jsonpath='{{.data.ca\\.crt}}'" in stack_file, "the stack file says how to fetch the CA"


# --- cert-manager as its own component ----------------------------------------------------------------------------


def plan_of(stack: str, **overrides):
    raw = {k.split(":", 1)[1]: v for k, v in yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"].items()}
    raw.update(overrides)
    if raw.get("secrets", {}).get("store") == "vault":
        raw.setdefault("vaultToken", "set")
    if raw.get("frontDoor", {}).get("enabled"):
        raw.setdefault("oidcClientSecret", "set")
    return platform_plan(parse_stack_config(stack, raw))


def test_cert_manager_is_built_when_something_needs_it_and_before_vault():
    prod = plan_of("prod")
    assert prod.components.index("cert-manager") < prod.components.index("vault") < prod.components.index("cnpg-backup")
    assert needs_cert_manager(prod.config) and "cert-manager" in prod.namespaces
    # Vault's TLS alone needs it; continuous backups alone need it; with neither there is none.
    assert plan_of("prod", backups={**prod.config.backups.model_dump(by_alias=True), "continuous": False}).has("cert-manager")
    assert plan_of("dev", backups={"continuous": True}).has("cert-manager")
    dev = plan_of("dev")
    assert not dev.has("cert-manager") and "cert-manager" not in dev.namespaces
    assert VAULT_INSTALL.index("cert-manager") < VAULT_INSTALL.index("vault")


def test_the_release_keeps_its_name_and_its_alias_resolves_to_the_urn_prod_has(prod):
    release = prod.find(type=CERT_MANAGER_CHART, name="cert-manager-chart")
    # The release name prefixes every object the chart renders: it stays what the first install called it.
    assert release.inputs["name"] == RELEASE == "cnpg-backup-cert-manager"
    component = prod.by_urn(release.parent)
    assert component.type == "mlops:cert_manager:CertManager" and component.name == "cert-manager"
    (alias,) = release.aliases
    name = re.search(r'name: "([^"]+)"', alias).group(1)
    parent = re.search(r'parentUrn: "([^"]+)"', alias).group(1)
    assert engine_urn(parent, release.type, name) == OLD_RELEASE_URN
    assert engine_urn(parent, release.type, name) != engine_urn(component_urn(component), release.type, release.name)


def component_urn(resource) -> str:
    """The URN the engine gives a component that is a child of the stack (the mocks prefix the stack's type)."""
    return f"urn:pulumi:prod::mlops-platform::{resource.type}::{resource.name}"


def engine_urn(parent_urn: str, type_: str, name: str) -> str:
    """The URN the Pulumi engine derives for a resource from its parent's URN (resource.NewURN): the parent's
    qualified type, `$`, the resource's type; a child of the stack has no parent type."""
    stack_project, parent_type = parent_urn.removeprefix("urn:pulumi:").split("::")[:2], parent_urn.split("::")[2]
    qualified = type_ if parent_type == "pulumi:pulumi:Stack" else f"{parent_type}${type_}"
    return f"urn:pulumi:{stack_project[0]}::{stack_project[1]}::{qualified}::{name}"


def test_without_cert_manager_in_the_stack_nothing_declares_a_certificate(dev):
    assert not [r for r in dev.resources if r.type.startswith("kubernetes:cert-manager.io/") or r.type == "mlops:cert_manager:CertManager"]


@pytest.fixture(scope="module")
def prod_without_continuous_backups():
    backups = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["mlops-platform:backups"]
    return render_stack("prod", overrides={"mlops-platform:backups": {**backups, "continuous": False}})


def test_vault_alone_brings_cert_manager_and_the_plugin_stays_away(prod_without_continuous_backups):
    rendering = prod_without_continuous_backups
    assert rendering.find(type=CERT_MANAGER_CHART, name="cert-manager-chart")
    assert not rendering.find_all(type="mlops:cnpg_backup_plugin:CnpgBackupPlugin")
    assert server_certificate(rendering)["spec"]["secretName"] == TLS_SECRET


def test_pulumi_verifies_a_deployed_vault_with_its_ca_even_when_the_file_is_not_named():
    vault = {k: v for k, v in yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["mlops-platform:vault"].items() if k != "caCertFile"}
    assert plan_of("prod", vault=vault).config.vault.provider_ca_file == "vault-ca.crt"
    external = {"deploy": False, "autoUnseal": False, "address": "https://vault.example.com", "clusterAddress": "https://vault.example.com"}
    assert plan_of("prod", vault=external).config.vault.provider_ca_file == ""


def test_the_tls_reloader_sees_vaults_process_and_the_mounted_certificate(prod):
    """The sidecar that sends Vault SIGHUP after a renewal (tests/test_vault_real.py runs its script) only works if
    the rendered pod shares its process namespace, runs it as Vault's user, and mounts the Secret where it looks."""
    objects = chart_objects(prod, "vault-chart")
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    assert sorted(c["name"] for c in pod["containers"]) == ["tls-reloader", "vault"]
    vault, reloader = (next(c for c in pod["containers"] if c["name"] == name) for name in ("vault", "tls-reloader"))
    assert "runAsUser" not in reloader["securityContext"] and pod["securityContext"]["runAsUser"] == VAULT_UID
    assert reloader["image"] == vault["image"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = reloader["volumeMounts"]
    assert volumes[mount["name"]]["secret"]["secretName"] == TLS_SECRET and mount["readOnly"] is True
    assert {e["name"]: e["value"] for e in reloader["env"]}["TLS_DIR"] == mount["mountPath"] == TLS_DIR
    assert {"name": mount["name"], "mountPath": TLS_DIR} in [{k: m[k] for k in ("name", "mountPath")} for m in vault["volumeMounts"]]
