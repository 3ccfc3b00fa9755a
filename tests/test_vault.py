"""Prod secrets in Vault: the SecretStore seam, the Vault release, Vault configured as code, External Secrets, the
two-phase bootstrap, and raft snapshots."""

from __future__ import annotations

import json

import pytest
import yaml

from components.config import ConfigError, parse_stack_config
from components.secret_sync import OPERATOR_ACCOUNT, SNAPSHOT_ACCOUNT, SNAPSHOT_ROLE
from components.vault_server import raft_config
from components.versions import CHARTS
from tests.support import pod_spec, secret_data
from tools.reference import chart_values, reference_dir, unknown_values_keys
from tools.render import ROOT, render_stack, unwrap_secrets

needs_reference = pytest.mark.skipif(reference_dir() is None, reason="../shared/reference (chart values) is not beside this checkout")
VAULT_ONLY = {("mlops-vault", "vault-backup-s3-credentials")}
"""Secrets that exist only because Vault does: its snapshot job's upload credentials."""


def prod_file() -> dict:
    return {k.split(":", 1)[1]: v for k, v in yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"].items()}


@pytest.fixture(scope="module")
def prod_on_kubernetes_secrets():
    """The same prod stack with secrets.store kubernetes: what Vault + External Secrets must reproduce."""
    return render_stack("prod", overrides={"mlops-platform:secrets": {"store": "kubernetes"}, "mlops-platform:vault": None})


def declared_secrets(rendering) -> dict[tuple[str, str], set[str]]:
    """(namespace, name) -> keys of every Secret the workloads get, however it is made."""
    found = {}
    for secret in rendering.find_all(kind="Secret"):
        found[(secret.metadata["namespace"], secret.metadata["name"])] = set(unwrap_secrets(secret.inputs)["stringData"])
    for external in rendering.find_all(kind="ExternalSecret"):
        namespace, name = external.metadata["namespace"], external.metadata["name"]
        found[(namespace, name)] = set(secret_data(rendering, namespace, name))
    return found


def test_dev_keeps_kubernetes_secrets_and_never_touches_vault(dev):
    assert dev.find_all(kind="ExternalSecret") == []
    assert not [r for r in dev.resources if r.type.startswith("vault:") or r.type.startswith("pulumi:providers:vault")]
    assert len(dev.find_all(kind="Secret")) >= 10


def test_prod_delivers_the_same_secret_names_and_keys_through_vault(prod, prod_on_kubernetes_secrets):
    through_vault = declared_secrets(prod)
    written_directly = declared_secrets(prod_on_kubernetes_secrets)
    synced = {key: keys for key, keys in through_vault.items() if key not in {("mlops-vault", "vault-kms-unseal")}}
    assert {k: v for k, v in synced.items() if k not in VAULT_ONLY} == written_directly
    assert len(written_directly) >= 12


def test_in_prod_no_application_secret_is_a_kubernetes_secret_written_by_pulumi(prod):
    # Only Vault's own unseal credentials: Vault needs them before it can serve anything.
    assert [(s.metadata["namespace"], s.metadata["name"]) for s in prod.find_all(kind="Secret")] == [("mlops-vault", "vault-kms-unseal")]
    externals = prod.find_all(kind="ExternalSecret")
    assert {e.metadata["namespace"] for e in externals} >= {"mlops-mlflow", "mlops-data", "mlops-temporal", "mlops-observability"}
    for external in externals:
        spec = external.inputs["spec"]
        assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "vault"}
        assert spec["refreshInterval"] == "1h"
        assert spec["target"]["name"] == external.metadata["name"]
        assert spec["target"]["deletionPolicy"] == "Retain"
        (source,) = spec["dataFrom"]
        assert source["extract"]["key"] == f"prod/{external.metadata['namespace']}/{external.metadata['name']}"


def test_every_consumer_namespace_gets_one_read_only_policy_and_the_operator_holds_them(prod):
    policies = {p.inputs["name"]: p.inputs["policy"] for p in prod.find_all(type="vault:index/policy:Policy")}
    reads = {name: text for name, text in policies.items() if "-read-" in name}
    assert {"mlops-prod-read-mlflow", "mlops-prod-read-data", "mlops-prod-read-temporal", "mlops-prod-read-observability"} <= set(reads)
    for name, text in reads.items():
        namespace = "mlops-" + name.removeprefix("mlops-prod-read-")
        assert text == f'path "mlops/data/prod/{namespace}/*" {{\n  capabilities = ["read"]\n}}\n'
    (operator,) = [r for r in prod.find_all(type="vault:kubernetes/authBackendRole:AuthBackendRole") if r.inputs["roleName"] == OPERATOR_ACCOUNT]
    assert sorted(operator.inputs["tokenPolicies"]) == sorted(reads)
    assert operator.inputs["boundServiceAccountNamespaces"] == ["mlops-external-secrets"]
    (snapshot,) = [r for r in prod.find_all(type="vault:kubernetes/authBackendRole:AuthBackendRole") if r.inputs["roleName"] == SNAPSHOT_ROLE]
    assert snapshot.inputs["boundServiceAccountNames"] == [SNAPSHOT_ACCOUNT]
    assert policies["mlops-prod-raft-snapshot"] == 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n'


def test_vault_is_configured_as_code_through_an_explicit_provider(prod):
    provider = prod.find(type="pulumi:providers:vault")
    # Through the port-forward, over TLS, verified against the CA fetched into the file (never skip_tls_verify).
    assert (provider.inputs["address"], provider.inputs["caCertFile"]) == ("https://127.0.0.1:8200", "vault-ca.crt")
    assert not provider.inputs.get("skipTlsVerify")
    vault_resources = [r for r in prod.resources if r.type.startswith("vault:")]
    assert vault_resources and all(r.provider.startswith(provider.urn) for r in vault_resources)
    mount = prod.find(type="vault:index/mount:Mount")
    assert (mount.inputs["path"], mount.inputs["type"], mount.inputs["options"]) == ("mlops", "kv", {"version": "2"})
    assert mount.protect
    audit = prod.find(type="vault:index/audit:Audit")
    assert audit.inputs["options"] == {"file_path": "/vault/audit/audit.log"}
    store = prod.find(kind="ClusterSecretStore").inputs["spec"]["provider"]["vault"]
    assert store["server"] == "https://vault-active.mlops-vault.svc.cluster.local:8200"
    assert (store["path"], store["version"], store["auth"]["kubernetes"]["role"]) == ("mlops", "v2", OPERATOR_ACCOUNT)


def release(prod):
    return prod.find(type="kubernetes:helm.sh/v3:Release", name="vault-chart")


def test_vault_runs_ha_raft_on_retained_claims_and_its_release_is_protected(prod):
    found = release(prod)
    assert (found.inputs["chart"], found.inputs["version"]) == ("vault", CHARTS["vault"].version)
    assert found.protect
    server = found.inputs["values"]["server"]
    assert server["ha"]["enabled"] and server["ha"]["replicas"] == 3 and server["ha"]["raft"]["enabled"]
    for claim in ("dataStorage", "auditStorage"):
        assert server[claim]["size"] == "10Gi" and server[claim]["storageClass"] == "mlops-retained-gp3"
    assert server["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert found.inputs["values"]["injector"] == {"enabled": False}
    assert found.inputs["values"]["ui"] == {"enabled": True}
    assert server["resources"]["requests"]["memory"]


def test_auto_unseal_uses_a_protected_kms_key_reachable_only_by_vaults_user(prod):
    key = prod.find(type="aws:kms/key:Key")
    assert key.protect and key.inputs["enableKeyRotation"] is True
    policy = json.loads(prod.find(type="aws:iam/userPolicy:UserPolicy", name="vault-unseal-policy").inputs["policy"])
    assert policy["Statement"][0]["Action"] == ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]
    config = release(prod).inputs["values"]["server"]["ha"]["raft"]["config"]
    assert 'seal "awskms"' in config and 'region     = "eu-central-1"' in config
    env = {e["envName"]: e["secretName"] for e in release(prod).inputs["values"]["server"]["extraSecretEnvironmentVars"]}
    assert env == {"AWS_ACCESS_KEY_ID": "vault-kms-unseal", "AWS_SECRET_ACCESS_KEY": "vault-kms-unseal"}


def test_every_raft_peer_retries_joining_every_other():
    config = raft_config(3)
    for n in range(3):
        assert f'leader_api_addr     = "https://vault-{n}.vault-internal:8200"' in config
    assert 'storage "raft"' in config and "seal" not in config


@needs_reference
def test_every_vault_and_operator_value_exists_in_the_pinned_charts(prod):
    reference = chart_values("vault", CHARTS["vault"].version)
    assert unknown_values_keys(release(prod).inputs["values"], reference) == []
    operator = prod.find(type="kubernetes:helm.sh/v4:Chart", name="secrets-operator")
    assert unknown_values_keys(operator.inputs["values"], chart_values("external-secrets", CHARTS["external-secrets"].version)) == []


def test_the_snapshot_job_logs_in_with_its_own_role_and_uploads_to_the_backups_bucket(prod):
    job = prod.find(kind="CronJob", name="backup-vault-snapshot").manifest()
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["spec"]["schedule"] == "0 */6 * * *"
    spec = pod_spec(job)
    assert spec["serviceAccountName"] == SNAPSHOT_ACCOUNT and spec["automountServiceAccountToken"] is True
    (save,) = spec["initContainers"]
    env = {e["name"]: e.get("value") for e in save["env"]}
    assert env["VAULT_ROLE"] == SNAPSHOT_ROLE and env["VAULT_ADDR"].startswith("https://vault-active.mlops-vault")
    assert "vault operator raft snapshot save" in save["args"][0] and "test -s" in save["args"][0]
    (upload,) = spec["containers"]
    assert 'store:$BACKUP_BUCKET/vault' in upload["args"][0]
    # Expired by the backups bucket's lifecycle, like every dated backup.
    from components.config import EXPIRING_BACKUP_PREFIXES

    assert "vault/" in EXPIRING_BACKUP_PREFIXES


def test_the_install_phase_declares_vault_alone_and_says_what_to_run_next():
    installing = render_stack("prod", overrides={"mlops-platform:vault": {**prod_file()["vault"], "phase": "install"}}, mock_secrets=False)
    namespaces = {ns.metadata["name"] for ns in installing.find_all(kind="Namespace")}
    # cert-manager too: it issues the certificate Vault's listener serves, before the Vault pods start.
    assert namespaces == {"mlops-cert-manager", "mlops-vault", "mlops-external-secrets"}
    assert installing.find(type="kubernetes:helm.sh/v3:Release").name == "vault-chart"
    assert installing.find(type="kubernetes:helm.sh/v4:Chart").name == "cert-manager-chart"
    chain = [r for r in installing.resources if r.type.startswith("kubernetes:cert-manager.io/")]
    assert sorted(r.kind for r in chain) == ["Certificate", "Certificate", "Issuer", "Issuer"]
    server = next(r for r in chain if r.name == "vault-tls-server")
    assert server.urn in installing.find(type="kubernetes:helm.sh/v3:Release").dependencies
    assert not [r for r in installing.resources if r.type.startswith("vault:")]
    assert "vaultToken" in installing.outputs["next_steps"] and "vault.phase: configure" in installing.outputs["next_steps"]
    # The same Vault resources (names and parents) as in the configure phase: moving on replaces nothing.
    assert {r.urn for r in installing.find_all(type="kubernetes:helm.sh/v3:Release")} <= {
        r.urn for r in render_stack("prod").find_all(type="kubernetes:helm.sh/v3:Release")
    }


def test_the_configure_phase_without_a_token_stops_with_the_exact_next_steps():
    with pytest.raises(ConfigError) as error:
        parse_stack_config("prod", {**prod_file(), "oidcClientSecret": "set"})  # the front door's secret is set
    message = str(error.value)
    assert message.count("\n  - ") == 1
    assert "kubectl -n mlops-vault exec vault-0 -- vault operator init -recovery-shares=5 -recovery-threshold=3" in message
    assert "pulumi config set --secret mlops-platform:vaultToken <root token>" in message
    assert "vault.phase: install" in message and "docs/runbooks/vault-bootstrap.md" in message


@pytest.mark.parametrize(
    ("vault", "fragment"),
    [
        ({"phase": "bootstrap"}, "allowed values: install, configure"),
        ({"replicas": 2}, "odd number of raft peers"),
        ({"deploy": False}, "vault.clusterAddress"),
        ({"address": "vault.example.com"}, "expected an http(s) URL"),
        ({"address": "http://127.0.0.1:8200"}, "the deployed Vault serves TLS only"),
        ({"caCertFile": "my ca.pem"}, "expected a file path without spaces"),
    ],
)
def test_bad_vault_settings_are_named(vault, fragment):
    raw = {**prod_file(), "vaultToken": "set", "vault": {**prod_file()["vault"], **vault}}
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_stack_config("prod", raw)


def test_vault_settings_without_the_vault_store_are_refused():
    with pytest.raises(ConfigError, match=r"Vault settings need secrets\.store: vault"):
        parse_stack_config("prod", {**prod_file(), "secrets": {"store": "kubernetes"}})


def test_the_rendered_server_config_parses_as_hcl(prod):
    import hcl  # pyhcl: HCL 1, the dialect of Vault's server configuration

    parsed = hcl.loads(unwrap_secrets(release(prod).inputs["values"])["server"]["ha"]["raft"]["config"])
    assert parsed["listener"]["tcp"]["address"] == "[::]:8200"
    raft = parsed["storage"]["raft"]
    assert raft["path"] == "/vault/data"
    assert [j["leader_api_addr"] for j in raft["retry_join"]] == [f"https://vault-{n}.vault-internal:8200" for n in range(3)]
    assert parsed["seal"]["awskms"]["region"] == "eu-central-1" and parsed["seal"]["awskms"]["kms_key_id"]
    assert "kubernetes" in parsed["service_registration"]
