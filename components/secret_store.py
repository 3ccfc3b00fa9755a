"""The one seam every generated secret goes through: for a name, a namespace and keys, a Kubernetes Secret of exactly
that name and those keys appears in the namespace.

`KubernetesSecrets` (dev) writes the Secret directly. `VaultSecrets` (prod) writes the values into Vault's KV v2
mount and declares an ExternalSecret, so the External Secrets Operator creates the same Secret from Vault: no
application secret is born as a Kubernetes Secret written by Pulumi. Components never know which one they use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pulumi
import pulumi_kubernetes as k8s

from components import kube

if TYPE_CHECKING:
    import pulumi_vault as vault

CLUSTER_STORE = "vault"
"""Name of the ClusterSecretStore every ExternalSecret reads from."""


@dataclass(frozen=True)
class StoredSecret:
    """A Secret that exists (or will, once synced) in a namespace."""

    name: pulumi.Output[str]
    """Secret name; depending on it orders a consumer after the declaration."""
    resource: pulumi.Resource
    """The resource that declares it (the Secret, or the ExternalSecret)."""


class SecretStore(Protocol):
    def secret(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        namespace: pulumi.Input[str],
        data: pulumi.Input[Mapping[str, pulumi.Input[str]]],
        labels: Mapping[str, str],
        secret_type: str = "Opaque",
        opts: pulumi.ResourceOptions,
    ) -> StoredSecret:
        """Make Secret `name` in `namespace` hold exactly `data`."""
        ...


class KubernetesSecrets:
    """Secrets written by Pulumi as Kubernetes Secrets (their values are secret outputs in the state)."""

    def secret(self, resource_name, *, name, namespace, data, labels, secret_type="Opaque", opts) -> StoredSecret:
        secret = k8s.core.v1.Secret(
            resource_name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=dict(labels)),
            type=secret_type,
            string_data=data,
            opts=opts,
        )
        return StoredSecret(secret.metadata.name, secret)


@dataclass(frozen=True)
class VaultSecrets:
    """Secrets stored in Vault under `<mount>/<prefix>/<namespace>/<name>` and synced by External Secrets."""

    mount: pulumi.Input[str]
    """The KV v2 mount."""
    prefix: str
    """Path prefix of this stack (its name)."""
    provider: vault.Provider
    """The explicit Vault provider."""
    ready: pulumi.Resource
    """The ClusterSecretStore; ExternalSecrets are declared after it."""
    refresh_interval: str = "1h"
    """How often External Secrets re-reads each secret."""

    def path(self, namespace: str, name: str) -> str:
        return f"{self.prefix}/{namespace}/{name}"

    def secret(self, resource_name, *, name, namespace, data, labels, secret_type="Opaque", opts) -> StoredSecret:
        # Imported here, not at the top: stacks with Kubernetes Secrets never load the vault SDK.
        import pulumi_vault as vault

        path = pulumi.Output.all(namespace, name).apply(lambda v: self.path(*v))
        stored = vault.kv.SecretV2(
            f"{resource_name}-vault",
            mount=self.mount,
            name=path,
            data_json=pulumi.Output.secret(pulumi.Output.json_dumps(data)),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=self.provider)),
        )
        external = k8s.apiextensions.CustomResource(
            resource_name,
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=dict(labels)),
            spec={
                "refreshInterval": self.refresh_interval,
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": CLUSTER_STORE},
                "target": {
                    "name": name,
                    "creationPolicy": "Owner",
                    # Deleting the ExternalSecret must not take running workloads' credentials with it.
                    "deletionPolicy": "Retain",
                    "template": {"type": secret_type, "metadata": {"labels": {**labels, kube.SYNCED_LABEL: "true"}}},
                },
                "dataFrom": [{"extract": {"key": path}}],
            },
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[stored, self.ready])),
        )
        return StoredSecret(pulumi.Output.all(external.metadata, name).apply(lambda v: v[1]), external)
