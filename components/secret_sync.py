"""Vault configured as code, and the External Secrets Operator syncing it into Kubernetes Secrets.

Vault gets a KV v2 mount, a file audit device, the Kubernetes auth method, one read-only policy per consumer
namespace, a role for the sync operator holding exactly those policies, and a role for the raft snapshot CronJob.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube, vault_server
from components.config import ResourceSpec, StackConfig, VaultConfig
from components.facts import ANYWHERE, CHART_RESTRICTED, ComponentFacts, Flow, NamespaceFact
from components.secret_store import CLUSTER_STORE, VaultSecrets
from components.versions import CHARTS

NAMESPACE = "external-secrets"
WEBHOOK_PORT = 10250
OPERATOR_ACCOUNT = "external-secrets"
SNAPSHOT_ACCOUNT = "vault-snapshot"
SNAPSHOT_ROLE = "raft-snapshot"
AUTH_PATH = "kubernetes"
OPERATOR_RESOURCES = ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "200m", "memory": "256Mi"})


def facts(config: StackConfig) -> ComponentFacts:
    """The External Secrets Operator runs in `external-secrets`, reads Vault, and its admission webhook on
    WEBHOOK_PORT is called by the API server."""
    return ComponentFacts(
        "secrets",
        namespaces=(NamespaceFact(NAMESPACE, CHART_RESTRICTED),),
        flows=(
            Flow("vault-readers", vault_server.NAMESPACE, (vault_server.PORT,), (NAMESPACE,)),
            Flow("external-secrets-webhook", NAMESPACE, (WEBHOOK_PORT,), (ANYWHERE,)),
        ),
    )


@dataclass(frozen=True)
class VaultCa:
    """Where the CA that signed Vault's certificate is: a key of a Secret the operator can read."""

    namespace: str
    """Namespace of the Secret (Vault's: cert-manager writes it there; the operator reads Secrets cluster-wide)."""
    secret: str
    """Secret name."""
    key: str
    """Key of the PEM CA certificate."""


@dataclass(frozen=True)
class SecretSyncArgs:
    """What a SecretSync needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace of the External Secrets Operator."""
    config: VaultConfig
    """Mount, refresh interval, whether Vault runs in the cluster."""
    stack: str
    """Stack name: the path prefix of its secrets in the mount."""
    token: pulumi.Input[str]
    """Vault token (a secret) Pulumi configures Vault with."""
    cluster_address: pulumi.Input[str]
    """Where the operator reaches Vault from inside the cluster."""
    cluster_ca: VaultCa | None
    """The CA the operator verifies the in-cluster Vault's certificate against; None: an existing Vault whose
    certificate chains to a public CA (or whose `clusterAddress` says otherwise)."""
    consumer_namespaces: Mapping[str, str]
    """Namespaces whose Secrets come from Vault, by role; each gets a read-only policy on its own path."""
    vault_namespace: str | None = None
    """Namespace of the in-cluster Vault (the snapshot CronJob's), or None for an external Vault."""
    after: tuple[pulumi.Resource, ...] = ()
    """What must exist first (the Vault release)."""
    protect: bool = False
    """Protect the KV mount: deleting it deletes every secret in it."""


class SecretSync(pulumi.ComponentResource):
    """The Vault side of secret delivery, and the operator that turns Vault paths into Kubernetes Secrets."""

    store: VaultSecrets
    """The SecretStore components write their secrets through."""
    snapshot_role: str
    """Vault Kubernetes-auth role the snapshot CronJob logs in with."""

    def __init__(self, name: str, args: SecretSyncArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Imported here, not at the top: only stacks whose secrets live in Vault load the vault SDK.
        import pulumi_vault as vault

        super().__init__("mlops:secret_sync:SecretSync", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.config
        provider = vault.Provider(
            # Through the port-forward to the deployed Vault, the provider verifies its certificate against the CA
            # fetched into `caCertFile` (README); TLS verification is never skipped.
            f"{name}-vault-provider", address=config.address, token=args.token, ca_cert_file=config.provider_ca_file or None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        in_vault = pulumi.ResourceOptions(parent=self, provider=provider)
        mount = vault.Mount(
            f"{name}-kv", path=config.kv_mount, type="kv", options={"version": "2"},
            description="mlops-platform generated secrets", opts=kube.stateful(in_vault, args.protect),
        )
        if args.vault_namespace:
            # The chart mounts the audit claim at this path on every server.
            vault.Audit(f"{name}-audit", type="file", path="file", options={"file_path": "/vault/audit/audit.log"}, opts=in_vault)
        auth = vault.AuthBackend(f"{name}-kubernetes-auth", type="kubernetes", path=AUTH_PATH, opts=in_vault)
        auth_config = vault.kubernetes.AuthBackendConfig(
            f"{name}-kubernetes-auth-config", backend=auth.path, kubernetes_host="https://kubernetes.default.svc", opts=in_vault
        )
        policies = [
            vault.Policy(f"{name}-read-{role}", name=policy_name(args.stack, role), policy=read_policy(config.kv_mount, args.stack, namespace), opts=in_vault)
            for role, namespace in sorted(args.consumer_namespaces.items())
        ]
        operator_role = vault.kubernetes.AuthBackendRole(
            f"{name}-operator-role",
            backend=auth.path,
            role_name=OPERATOR_ACCOUNT,
            bound_service_account_names=[OPERATOR_ACCOUNT],
            bound_service_account_namespaces=[args.namespace],
            token_policies=[p.name for p in policies],
            token_ttl=3600,
            opts=pulumi.ResourceOptions.merge(in_vault, pulumi.ResourceOptions(depends_on=[auth_config])),
        )
        self.snapshot_role = SNAPSHOT_ROLE
        if args.vault_namespace:
            snapshot_policy = vault.Policy(
                f"{name}-raft-snapshot", name=f"mlops-{args.stack}-raft-snapshot",
                policy='path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n', opts=in_vault,
            )
            vault.kubernetes.AuthBackendRole(
                f"{name}-snapshot-role",
                backend=auth.path,
                role_name=SNAPSHOT_ROLE,
                bound_service_account_names=[SNAPSHOT_ACCOUNT],
                bound_service_account_namespaces=[args.vault_namespace],
                token_policies=[snapshot_policy.name],
                token_ttl=900,
                opts=pulumi.ResourceOptions.merge(in_vault, pulumi.ResourceOptions(depends_on=[auth_config])),
            )
        operator = kube.helm_chart(
            f"{name}-operator",
            CHARTS["external-secrets"],
            namespace=args.namespace,
            values=operator_values(),
            opts=child,
        )
        cluster_store = k8s.apiextensions.CustomResource(
            f"{name}-cluster-store",
            api_version="external-secrets.io/v1",
            kind="ClusterSecretStore",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=CLUSTER_STORE, labels=kube.labels("external-secrets", "store")),
            spec=cluster_store_spec(args.cluster_address, config.kv_mount, args.namespace, args.cluster_ca),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[operator, operator_role, mount])),
        )
        self.store = VaultSecrets(
            mount=mount.path, prefix=args.stack, provider=provider, ready=cluster_store, refresh_interval=config.refresh_interval
        )
        self.register_outputs({"snapshot_role": self.snapshot_role})


def policy_name(stack: str, role: str) -> str:
    return f"mlops-{stack}-read-{role}"


def read_policy(mount: str, stack: str, namespace: str) -> str:
    """Read-only access to one namespace's secrets, nothing else."""
    return f'path "{mount}/data/{stack}/{namespace}/*" {{\n  capabilities = ["read"]\n}}\n'


def operator_values() -> dict:
    resources = OPERATOR_RESOURCES.as_k8s()
    return {
        "installCRDs": True,
        "serviceAccount": {"name": OPERATOR_ACCOUNT},
        "resources": resources,
        "webhook": {"resources": resources},
        "certController": {"resources": resources},
    }


def cluster_store_spec(address: pulumi.Input[str], mount: str, namespace: pulumi.Input[str], ca: VaultCa | None = None) -> dict:
    trust = {"caProvider": {"type": "Secret", "namespace": ca.namespace, "name": ca.secret, "key": ca.key}} if ca else {}
    return {
        "provider": {
            "vault": {
                "server": address,
                **trust,
                "path": mount,
                "version": "v2",
                "auth": {
                    "kubernetes": {
                        "mountPath": AUTH_PATH,
                        "role": OPERATOR_ACCOUNT,
                        "serviceAccountRef": {"name": OPERATOR_ACCOUNT, "namespace": namespace},
                    }
                },
            }
        }
    }
