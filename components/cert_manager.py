"""cert-manager: issues the platform's in-cluster certificates (the barman-cloud plugin's, Vault's listener) and,
with a front door, its public ones. Certificates and Issuers must depend on `ready`: the release installs their
CRDs and the webhook that admits them."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import kube
from components.config import ResourceSpec, StackConfig
from components.facts import ANYWHERE, ComponentFacts, Flow, Metrics, NamespaceFact
from components.versions import CHARTS

NAMESPACE = "cert-manager"
WEBHOOK_PORT = 10250
METRICS_PORT = 9402
"""The controller's Prometheus metrics (container port `http-metrics`): every Certificate's readiness, expiry and
renewal time, which the platform's certificate alerts watch (components/monitoring/alerts.py)."""
RELEASE = "cnpg-backup-cert-manager"
"""Helm release name, which prefixes every object the chart renders. It is the name of the first install (made for
the barman-cloud plugin); renaming the release would rename and so recreate every cert-manager object."""
_OLD_PARENT = "mlops:cnpg_backup_plugin:CnpgBackupPlugin"
"""Type of the component the release was first declared under (as `cnpg-backup-cert-manager` of `cnpg-backup`)."""


def facts(config: StackConfig) -> ComponentFacts:
    """cert-manager runs in its own namespace; its webhook on WEBHOOK_PORT is called by the API server; Prometheus
    scrapes the controller on METRICS_PORT."""
    return ComponentFacts(
        "cert-manager",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(Flow("cert-manager-webhook", NAMESPACE, (WEBHOOK_PORT,), (ANYWHERE,)),),
        metrics=(Metrics(NAMESPACE, METRICS_PORT),),
    )


FOOTPRINT = {
    "cert-manager-controller": ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "200m", "memory": "256Mi"}),
    "cert-manager-webhook": ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "100m", "memory": "128Mi"}),
    "cert-manager-cainjector": ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "100m", "memory": "256Mi"}),
}
"""Requests and limits of cert-manager, whose chart sets none: small controllers that watch a handful of
Certificates. Not measured on a cluster (none here): the controller and cainjector cache every Secret they watch,
hence their larger memory limits."""


GATEWAY_API_CONFIG = {
    "apiVersion": "controller.config.cert-manager.io/v1alpha1",
    "kind": "ControllerConfiguration",
    "gatewayAPI": {"enabled": True},
}
"""The controller configuration that turns on cert-manager's Gateway API support, off by default (v1.21.1
`defaultEnableGatewayAPI = false`): without it an ACME issuer's HTTP-01 `gatewayHTTPRoute` solver never answers."""


@dataclass(frozen=True)
class CertManagerArgs:
    """Where cert-manager runs, and what it must support."""

    namespace: pulumi.Input[str]
    """Namespace of cert-manager."""
    gateway_api: bool = False
    """Answer ACME challenges through the Gateway API (the front door's certificates)."""


class CertManager(pulumi.ComponentResource):
    """cert-manager with its CRDs; anything declaring a Certificate or an Issuer depends on `ready`."""

    ready: pulumi.Resource
    """The release: its CRDs and webhook exist once it is ready."""

    def __init__(self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:cert_manager:CertManager", name, None, opts)
        self.ready = kube.helm_chart(
            f"{name}-chart",
            CHARTS["cert-manager"],
            namespace=args.namespace,
            values=values(args.gateway_api),
            release_name=RELEASE,
            opts=pulumi.ResourceOptions(parent=self, aliases=[previous_release(pulumi.get_stack(), pulumi.get_project())]),
        )
        self.register_outputs({"ready": self.ready})


def previous_release(stack: str, project: str) -> pulumi.Alias:
    """Where the release was declared before it was its own component: `cnpg-backup-cert-manager`, a child of the
    barman-cloud plugin's component `cnpg-backup`. The alias keeps prod's release (and its objects) in place."""
    return pulumi.Alias(name=RELEASE, parent=f"urn:pulumi:{stack}::{project}::{_OLD_PARENT}::cnpg-backup")


def values(gateway_api: bool = False) -> dict:
    # startupapicheck is a post-install hook, which helm.v4.Chart never deploys: it is off rather than half there.
    return {
        **({"config": GATEWAY_API_CONFIG} if gateway_api else {}),
        "crds": {"enabled": True, "keep": True},
        "resources": FOOTPRINT["cert-manager-controller"].as_k8s(),
        "webhook": {"resources": FOOTPRINT["cert-manager-webhook"].as_k8s()},
        "cainjector": {"resources": FOOTPRINT["cert-manager-cainjector"].as_k8s()},
        "startupapicheck": {"enabled": False},
    }
