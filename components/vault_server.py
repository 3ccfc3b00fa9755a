"""HashiCorp Vault in the cluster: HA with integrated raft storage, audit log on its own claim, optional AWS KMS
auto-unseal, and TLS on its listener with a certificate cert-manager issues from a CA of Vault's own. Vault starts
sealed and uninitialised; docs/runbooks/vault-bootstrap.md takes it from there."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import ResourceSpec, StackConfig, VaultConfig
from components.facts import CHART_RESTRICTED, ComponentFacts, Metrics, NamespaceFact
from components.versions import CHARTS, IMAGES

NAMESPACE = "vault"
PORT = 8200
METRICS_PATH = "/v1/sys/metrics"
AUDIT_DIR = "/vault/audit"
UNSEAL_SECRET = "vault-kms-unseal"
VAULT_UID, VAULT_GID = 100, 1000  # the image's vault user; the chart's defaults
SERVICE = "vault"
"""The chart's fullname (release `vault`): its Services are vault, vault-active, vault-standby, vault-internal
(headless, one name per pod) and vault-ui."""
TLS_SECRET = "vault-tls"
"""Secret cert-manager writes the server certificate to: tls.crt, tls.key and ca.crt (the CA that signed it)."""
CA_SECRET = "vault-ca"
"""Secret of the CA (certificate and key) that signs the server certificate; only cert-manager reads its key."""
CA_KEY = "ca.crt"
"""Key of the CA certificate in TLS_SECRET: what every client of Vault verifies the server against."""
TLS_DIR = f"/vault/userconfig/{TLS_SECRET}"
"""Where the chart's `extraVolumes` mounts TLS_SECRET in the Vault pods."""
CA_FILE = f"{TLS_DIR}/{CA_KEY}"
SERVER_CERT_DAYS, SERVER_RENEW_DAYS, CA_YEARS = 365, 30, 10
"""Lifetimes: the server certificate is renewed 30 days before its year ends; Vault reads it at start and on
SIGHUP, which the tls-reloader sidecar sends (README, "TLS inside the cluster"). The CA lives ten years: every
client trusts it, a new one means restarting them all."""
TLS_RELOAD_CHECK_SECONDS = 60
"""How often the tls-reloader compares the mounted certificate with the one Vault loaded: the kubelet takes about a
minute to update a Secret's volume anyway, and the renewal comes 30 days early."""
TLS_RELOADER_SCRIPT = """\
# Vault reads its listener's certificate at start and on SIGHUP only. cert-manager renews the Secret 30 days before
# the certificate expires and the kubelet swaps the mounted files; without a SIGHUP Vault would go on serving the old
# certificate until it expired and every client refused it. The pod shares its process namespace, so this
# container (the same non-root user as Vault) sees Vault's process and may signal it.
set -u
fingerprint() { sha256sum "$TLS_DIR/tls.crt" "$TLS_DIR/tls.key"; }
loaded=$(fingerprint)
echo "tls-reloader: watching $TLS_DIR every ${CHECK_SECONDS}s"
while sleep "$CHECK_SECONDS"; do
  current=$(fingerprint) || continue
  [ "$current" = "$loaded" ] && continue
  if pkill -HUP -x vault; then
    echo "tls-reloader: the certificate changed; sent SIGHUP, Vault reloads it"
    loaded=$current
  else
    echo "tls-reloader: the certificate changed but no vault process runs; retrying"
  fi
done
"""
"""The tls-reloader's shell script (busybox sh in the Vault image); TLS_DIR and CHECK_SECONDS come from its env."""
TLS_RELOADER_RESOURCES = ResourceSpec({"cpu": "5m", "memory": "8Mi"}, {"cpu": "50m", "memory": "32Mi"})
"""A shell, `sleep` and `sha256sum` once a minute: 3.1 MiB resident with its `sleep` (tests/test_vault_real.py prints it)."""


def facts(config: StackConfig) -> ComponentFacts:
    """Vault runs in `vault` and serves its API and metrics on PORT (its readers are declared by SecretSync)."""
    return ComponentFacts(
        "vault",
        namespaces=(NamespaceFact(NAMESPACE, CHART_RESTRICTED),),
        metrics=(Metrics(NAMESPACE, PORT, METRICS_PATH),),
    )


@dataclass(frozen=True)
class KmsUnseal:
    """Auto-unseal with an AWS KMS key (the aws provider comes from the component's providers)."""

    region: str
    """Region of the key."""
    name_prefix: str
    """Prefix of the IAM user Vault uses to reach the key."""


@dataclass(frozen=True)
class VaultServerArgs:
    """What a VaultServer needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace Vault runs in."""
    config: VaultConfig
    """Replicas, claim sizes, resources."""
    storage_class: pulumi.Input[str]
    """The Retain StorageClass of the raft and audit claims."""
    cert_manager: pulumi.Resource
    """cert-manager's release (CertManager.ready): it issues the listener's certificate, which exists before Vault."""
    kms_unseal: KmsUnseal | None = None
    """Auto-unseal with AWS KMS; None: unseal by hand with the key shares."""
    protect: bool = False
    """Protect the release and the KMS key (prod)."""


class VaultServer(pulumi.ComponentResource):
    """Vault as a raft cluster of `replicas` servers, one per node."""

    address: pulumi.Output[str]
    """In-cluster address of the active server (https)."""
    ca_secret: str
    """Secret in Vault's namespace whose key CA_KEY is the CA every client verifies Vault against."""
    release: pulumi.Resource
    """The chart release."""

    def __init__(self, name: str, args: VaultServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:vault_server:VaultServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        seal = _kms_unseal(name, args, args.kms_unseal, child) if args.kms_unseal else None
        certificate = _certificates(name, args, child)
        # helm.v3.Release keeps the chart's server-test hook out and matches the other stateful releases.
        self.release = kube.helm_release(
            f"{name}-chart",
            CHARTS["vault"],
            release_name="vault",
            namespace=args.namespace,
            values=chart_values(args, seal),
            opts=pulumi.ResourceOptions.merge(
                kube.stateful(child, args.protect), pulumi.ResourceOptions(depends_on=[certificate, *([seal[0]] if seal else [])])
            ),
        )
        self.address = pulumi.Output.concat(f"https://{SERVICE}-active.", args.namespace, f".svc.cluster.local:{PORT}")
        self.ca_secret = TLS_SECRET
        self.register_outputs({"address": self.address, "ca_secret": self.ca_secret})


def server_names(namespace: str, replicas: int) -> list[str]:
    """Every DNS name a client reaches a Vault server by: each Service (short, namespaced and full), each pod through
    the headless Service (raft's retry_join and api_addr use these), and localhost (the pods' own CLI and probes)."""
    hosts = [f"{SERVICE}{suffix}" for suffix in ("", "-active", "-standby", "-internal", "-ui")]
    hosts += [f"{SERVICE}-{n}.{SERVICE}-internal" for n in range(replicas)]
    forms = [(host, f"{host}.{namespace}", f"{host}.{namespace}.svc", f"{host}.{namespace}.svc.cluster.local") for host in hosts]
    return [name for names in forms for name in names] + ["localhost"]


SERVER_IPS = ["127.0.0.1"]
"""VAULT_ADDR inside the pods, and Pulumi's address through a port-forward."""


CHAIN = {
    "selfsigned-issuer": ("Issuer", f"{SERVICE}-selfsigned"),
    "ca": ("Certificate", CA_SECRET),
    "ca-issuer": ("Issuer", f"{SERVICE}-ca-issuer"),
    "server": ("Certificate", SERVICE),
}
"""The CA chain in the order it is created, by role: kind and Kubernetes name. A self-signed Issuer makes the CA;
the CA's Issuer signs the server's certificate."""


def certificate_specs(namespace: str, replicas: int) -> dict[str, dict]:
    """The spec of each object of CHAIN, by role."""
    def issuer(role: str) -> dict:
        return {"group": "cert-manager.io", "kind": "Issuer", "name": CHAIN[role][1]}

    ecdsa = {"algorithm": "ECDSA", "size": 256}
    return {
        "selfsigned-issuer": {"selfSigned": {}},
        "ca": {
            "isCA": True,
            "commonName": f"mlops-platform Vault CA ({namespace})",
            "secretName": CA_SECRET,
            "duration": f"{CA_YEARS * 365 * 24}h",
            "privateKey": {**ecdsa, "rotationPolicy": "Never"},
            "usages": ["cert sign", "crl sign", "digital signature"],
            "issuerRef": issuer("selfsigned-issuer"),
        },
        "ca-issuer": {"ca": {"secretName": CA_SECRET}},
        "server": {
            "commonName": f"{SERVICE}.{namespace}.svc",
            "secretName": TLS_SECRET,
            "dnsNames": server_names(namespace, replicas),
            "ipAddresses": SERVER_IPS,
            "duration": f"{SERVER_CERT_DAYS * 24}h",
            "renewBefore": f"{SERVER_RENEW_DAYS * 24}h",
            "privateKey": {**ecdsa, "rotationPolicy": "Always"},
            "usages": ["server auth", "digital signature"],
            "issuerRef": issuer("ca-issuer"),
        },
    }


def _certificates(name: str, args: VaultServerArgs, child: pulumi.ResourceOptions) -> pulumi.Resource:
    """The CA chain in Vault's namespace, after cert-manager; returns the server Certificate."""
    after: list[pulumi.Resource] = [args.cert_manager]
    specs = pulumi.Output.from_input(args.namespace).apply(lambda namespace: certificate_specs(namespace, args.config.replicas))
    for role, (kind, object_name) in CHAIN.items():
        after.append(k8s.apiextensions.CustomResource(
            f"{name}-tls-{role}",
            api_version="cert-manager.io/v1",
            kind=kind,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=args.namespace, labels=kube.labels("vault", "tls")),
            spec=specs.apply(lambda all_specs, role=role: all_specs[role]),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(after))),
        ))
    return after[-1]


def raft_config(replicas: int, seal: dict | None = None) -> str:
    """Vault's server configuration: a TLS listener, raft storage where every server retries joining each peer over
    https, verifying it against the CA."""
    joins = "\n".join(
        f'  retry_join {{\n    leader_api_addr     = "https://{SERVICE}-{n}.{SERVICE}-internal:{PORT}"\n'
        f'    leader_ca_cert_file = "{CA_FILE}"\n  }}'
        for n in range(replicas)
    )
    seal_block = (
        f'\nseal "awskms" {{\n  region     = "{seal["region"]}"\n  kms_key_id = "{seal["kms_key_id"]}"\n}}\n' if seal else ""
    )
    return (
        "ui = true\n"
        'listener "tcp" {\n  address         = "[::]:8200"\n  cluster_address = "[::]:8201"\n'
        f'  tls_cert_file   = "{TLS_DIR}/tls.crt"\n  tls_key_file    = "{TLS_DIR}/tls.key"\n  tls_min_version = "tls12"\n'
        "  telemetry {\n    unauthenticated_metrics_access = true\n  }\n}\n"
        f'storage "raft" {{\n  path = "/vault/data"\n{joins}\n}}\n'
        'service_registration "kubernetes" {}\n'
        'telemetry {\n  prometheus_retention_time = "24h"\n  disable_hostname = true\n}\n'
        f"{seal_block}"
    )


def tls_reloader(repository: str, tag: str) -> dict:
    """The sidecar that sends Vault SIGHUP when cert-manager has renewed its certificate; the Vault image's own
    shell, so no other image is pulled. The chart mounts TLS_SECRET's volume as `userconfig-<secret>`."""
    return {
        "name": "tls-reloader",
        "image": f"{repository}:{tag}",
        "command": ["/bin/sh", "-c", TLS_RELOADER_SCRIPT],
        "env": [
            {"name": "TLS_DIR", "value": TLS_DIR},
            {"name": "CHECK_SECONDS", "value": str(TLS_RELOAD_CHECK_SECONDS)},
        ],
        "resources": TLS_RELOADER_RESOURCES.as_k8s(),
        "securityContext": dict(kube.RESTRICTED_CONTAINER),
        "volumeMounts": [{"name": f"userconfig-{TLS_SECRET}", "mountPath": TLS_DIR, "readOnly": True}],
    }


def chart_values(args: VaultServerArgs, seal: tuple[pulumi.Resource, pulumi.Output[str]] | None) -> dict:
    config = args.config
    repository, tag = IMAGES["vault"].rsplit(":", 1)
    region = args.kms_unseal.region if args.kms_unseal else ""
    hcl = (
        seal[1].apply(lambda key: raft_config(config.replicas, {"region": region, "kms_key_id": key}))
        if seal
        else raft_config(config.replicas)
    )
    claim = {"enabled": True, "storageClass": args.storage_class, "accessMode": "ReadWriteOnce"}
    server: dict = {
        "image": {"repository": repository, "tag": tag},
        "resources": config.resources.as_k8s(),
        # The chart's defaults (non-root uid 100, no privilege escalation) miss two of the restricted profile's
        # controls: dropping every capability and the RuntimeDefault seccomp profile. Vault needs no capability:
        # the chart appends `disable_mlock = true` (raft's memory maps must not be locked) and sets SKIP_SETCAP, so
        # IPC_LOCK is never used.
        "statefulSet": {
            "securityContext": {
                "pod": {
                    "runAsNonRoot": True,
                    "runAsUser": VAULT_UID,
                    "runAsGroup": VAULT_GID,
                    "fsGroup": VAULT_GID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "container": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        },
        "dataStorage": {**claim, "size": config.data_size},
        "auditStorage": {**claim, "size": config.audit_size, "mountPath": AUDIT_DIR},
        # The claims outlive the StatefulSet: raft data survives an uninstall or a scale-down.
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        # The listener's certificate, key and CA, from cert-manager; group-readable for the vault user (fsGroup).
        "extraVolumes": [{"type": "secret", "name": TLS_SECRET, "defaultMode": 0o440}],
        # The pods' own CLI (VAULT_ADDR is https://127.0.0.1:8200, a name the certificate carries) verifies Vault.
        "extraEnvironmentVars": {"VAULT_CACERT": CA_FILE},
        # A renewed certificate reaches Vault without a restart: the tls-reloader signals it (TLS_RELOADER_SCRIPT).
        "shareProcessNamespace": True,
        "extraContainers": [tls_reloader(repository, tag)],
        "ha": {
            "enabled": True,
            "replicas": config.replicas,
            # The address a standby sends clients to: the pod's own name, which the certificate carries (the
            # chart's default, the pod IP, it does not). Both variables are set earlier in the pod's env.
            "apiAddr": f"https://$(VAULT_K8S_POD_NAME).{SERVICE}-internal.$(VAULT_K8S_NAMESPACE).svc:{PORT}",
            # The chart's default affinity already requires one server per node.
            "raft": {"enabled": True, "setNodeId": True, "config": hcl},
        },
    }
    if seal:
        server["extraSecretEnvironmentVars"] = [
            {"envName": variable, "secretName": UNSEAL_SECRET, "secretKey": variable}
            for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return {
        # The listener serves TLS: the chart's Services, ports and probes then speak https.
        "global": {"tlsDisable": False},
        # No sidecar injection: workloads receive secrets as Kubernetes Secrets through External Secrets.
        "injector": {"enabled": False},
        "server": server,
        "ui": {"enabled": True},
    }


def _kms_unseal(name: str, args: VaultServerArgs, kms: KmsUnseal, child: pulumi.ResourceOptions) -> tuple[pulumi.Resource, pulumi.Output[str]]:
    """A KMS key, an IAM user allowed only to use it, and its access key in the Secret Vault reads at start.

    This one credential is a Kubernetes Secret written by Pulumi on purpose: Vault needs it to unseal, before it can
    serve any secret, so it cannot live in Vault. The aws SDK is imported here: only auto-unsealing stacks use it."""
    import pulumi_aws as aws

    key = aws.kms.Key(
        f"{name}-unseal-key",
        description="mlops-platform Vault auto-unseal",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        opts=kube.stateful(child, args.protect),
    )
    user = aws.iam.User(f"{name}-unseal-user", name=f"{kms.name_prefix}-vault-unseal", opts=child)
    aws.iam.UserPolicy(
        f"{name}-unseal-policy",
        user=user.name,
        policy=key.arn.apply(lambda arn: json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": arn}],
        })),
        opts=child,
    )
    access = aws.iam.AccessKey(f"{name}-unseal-access-key", user=user.name, opts=child)
    secret = k8s.core.v1.Secret(
        f"{name}-unseal-credentials",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=UNSEAL_SECRET, namespace=args.namespace, labels=kube.labels("vault", "unseal")),
        type="Opaque",
        string_data={"AWS_ACCESS_KEY_ID": access.id, "AWS_SECRET_ACCESS_KEY": access.secret},
        opts=child,
    )
    return secret, key.key_id
