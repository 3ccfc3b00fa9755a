"""HashiCorp Vault in the cluster: HA with integrated raft storage, audit log on its own claim, optional AWS KMS
auto-unseal. Vault starts sealed and uninitialised; docs/runbooks/vault-bootstrap.md takes it from there."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import StackConfig, VaultConfig
from components.facts import CHART_RESTRICTED, ComponentFacts, Metrics, NamespaceFact
from components.versions import CHARTS, IMAGES

NAMESPACE = "vault"
PORT = 8200
METRICS_PATH = "/v1/sys/metrics"
AUDIT_DIR = "/vault/audit"
UNSEAL_SECRET = "vault-kms-unseal"
VAULT_UID, VAULT_GID = 100, 1000  # the image's vault user; the chart's defaults


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
    kms_unseal: KmsUnseal | None = None
    """Auto-unseal with AWS KMS; None: unseal by hand with the key shares."""
    protect: bool = False
    """Protect the release and the KMS key (prod)."""


class VaultServer(pulumi.ComponentResource):
    """Vault as a raft cluster of `replicas` servers, one per node."""

    address: pulumi.Output[str]
    """In-cluster address of the active server."""
    release: pulumi.Resource
    """The chart release."""

    def __init__(self, name: str, args: VaultServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:vault_server:VaultServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        seal = _kms_unseal(name, args, args.kms_unseal, child) if args.kms_unseal else None
        # helm.v3.Release keeps the chart's server-test hook out and matches the other stateful releases.
        self.release = kube.helm_release(
            f"{name}-chart",
            CHARTS["vault"],
            release_name="vault",
            namespace=args.namespace,
            values=chart_values(args, seal),
            opts=pulumi.ResourceOptions.merge(
                kube.stateful(child, args.protect), pulumi.ResourceOptions(depends_on=[seal[0]] if seal else [])
            ),
        )
        self.address = pulumi.Output.concat("http://vault-active.", args.namespace, f".svc.cluster.local:{PORT}")
        self.register_outputs({"address": self.address})


def raft_config(replicas: int, seal: dict | None = None) -> str:
    """Vault's server configuration: raft storage where every server retries joining each peer."""
    joins = "\n".join(
        f'  retry_join {{\n    leader_api_addr = "http://vault-{n}.vault-internal:{PORT}"\n  }}' for n in range(replicas)
    )
    seal_block = (
        f'\nseal "awskms" {{\n  region     = "{seal["region"]}"\n  kms_key_id = "{seal["kms_key_id"]}"\n}}\n' if seal else ""
    )
    return (
        "ui = true\n"
        'listener "tcp" {\n  tls_disable     = 1\n  address         = "[::]:8200"\n  cluster_address = "[::]:8201"\n'
        "  telemetry {\n    unauthenticated_metrics_access = true\n  }\n}\n"
        f'storage "raft" {{\n  path = "/vault/data"\n{joins}\n}}\n'
        'service_registration "kubernetes" {}\n'
        'telemetry {\n  prometheus_retention_time = "24h"\n  disable_hostname = true\n}\n'
        f"{seal_block}"
    )


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
        "ha": {
            "enabled": True,
            "replicas": config.replicas,
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
