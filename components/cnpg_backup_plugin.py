"""CloudNativePG's barman-cloud plugin (continuous WAL archiving and base backups); its TLS certificates come from
cert-manager (components/cert_manager.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import kube
from components.config import ResourceSpec
from components.versions import CHARTS

FOOTPRINT = {
    "barman-cloud-plugin": ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "200m", "memory": "256Mi"}),
}
"""Requests and limits of the plugin, whose chart sets none: a small controller that watches a handful of backups.
Not measured on a cluster (none here)."""


@dataclass(frozen=True)
class CnpgBackupPluginArgs:
    """Where the plugin runs and what must exist first."""

    operator_namespace: pulumi.Input[str]
    """The CloudNativePG operator's namespace: the plugin must run beside it."""
    operator: pulumi.Resource
    """The operator release (its CRDs come first)."""
    cert_manager: pulumi.Resource
    """cert-manager's release (CertManager.ready): the plugin's chart asks it for its TLS certificates."""


class CnpgBackupPlugin(pulumi.ComponentResource):
    """The barman-cloud plugin, after cert-manager; clusters that archive must depend on `ready`."""

    ready: pulumi.Resource
    """The plugin release."""

    def __init__(self, name: str, args: CnpgBackupPluginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:cnpg_backup_plugin:CnpgBackupPlugin", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The plugin's chart asks cert-manager for its TLS certificates, so cert-manager's CRDs and webhook come first.
        self.ready = kube.helm_chart(
            f"{name}-barman-cloud",
            CHARTS["plugin-barman-cloud"],
            namespace=args.operator_namespace,
            values={"crds": {"create": True}, "resources": FOOTPRINT["barman-cloud-plugin"].as_k8s()},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[args.cert_manager, args.operator])),
        )
        self.register_outputs({})

