"""CloudNativePG's barman-cloud plugin (continuous WAL archiving and base backups) and cert-manager, which it needs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import kube
from components.config import ResourceSpec, StackConfig
from components.facts import ANYWHERE, ComponentFacts, Flow, NamespaceFact
from components.versions import CHARTS

CERT_MANAGER_NAMESPACE = "cert-manager"
CERT_MANAGER_WEBHOOK_PORT = 10250


def facts(config: StackConfig) -> ComponentFacts:
    """cert-manager runs in its own namespace, its webhook on CERT_MANAGER_WEBHOOK_PORT called by the API server;
    the plugin itself runs beside the operator."""
    return ComponentFacts(
        "cnpg-backup",
        namespaces=(NamespaceFact(CERT_MANAGER_NAMESPACE),),
        flows=(Flow("cert-manager-webhook", CERT_MANAGER_NAMESPACE, (CERT_MANAGER_WEBHOOK_PORT,), (ANYWHERE,)),),
    )

FOOTPRINT = {
    "cert-manager-controller": ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "200m", "memory": "256Mi"}),
    "cert-manager-webhook": ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "100m", "memory": "128Mi"}),
    "cert-manager-cainjector": ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "100m", "memory": "256Mi"}),
    "barman-cloud-plugin": ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "200m", "memory": "256Mi"}),
}
"""Requests and limits of cert-manager and the plugin, whose charts set none: small controllers that watch a handful
of Certificates and backups. Not measured on a cluster (none here): cert-manager's controller and cainjector cache
every Secret they watch, hence their larger memory limits."""


@dataclass(frozen=True)
class CnpgBackupPluginArgs:
    """Where the plugin and cert-manager run."""

    operator_namespace: pulumi.Input[str]
    """The CloudNativePG operator's namespace: the plugin must run beside it."""
    cert_manager_namespace: pulumi.Input[str]
    """Namespace of cert-manager."""
    operator: pulumi.Resource
    """The operator release (its CRDs come first)."""


class CnpgBackupPlugin(pulumi.ComponentResource):
    """cert-manager, then the barman-cloud plugin; clusters that archive must depend on `ready`."""

    ready: pulumi.Resource
    """The plugin release."""

    def __init__(self, name: str, args: CnpgBackupPluginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:cnpg_backup_plugin:CnpgBackupPlugin", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cert_manager = kube.helm_chart(
            f"{name}-cert-manager", CHARTS["cert-manager"], namespace=args.cert_manager_namespace, values=cert_manager_values(), opts=child
        )
        # The plugin's chart asks cert-manager for its TLS certificates, so cert-manager's CRDs and webhook come first.
        self.ready = kube.helm_chart(
            f"{name}-barman-cloud",
            CHARTS["plugin-barman-cloud"],
            namespace=args.operator_namespace,
            values={"crds": {"create": True}, "resources": FOOTPRINT["barman-cloud-plugin"].as_k8s()},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[cert_manager, args.operator])),
        )
        self.register_outputs({})


def cert_manager_values() -> dict:
    # startupapicheck is a post-install hook, which helm.v4.Chart never deploys: it is off rather than half there.
    return {
        "crds": {"enabled": True, "keep": True},
        "resources": FOOTPRINT["cert-manager-controller"].as_k8s(),
        "webhook": {"resources": FOOTPRINT["cert-manager-webhook"].as_k8s()},
        "cainjector": {"resources": FOOTPRINT["cert-manager-cainjector"].as_k8s()},
        "startupapicheck": {"enabled": False},
    }
