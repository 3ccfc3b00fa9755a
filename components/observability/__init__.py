"""Metrics, logs and dashboards, one module per chart: kube-prometheus-stack (`metrics.py`), Loki monolithic
(`logs.py`) and Grafana Alloy shipping pod logs (`log_shipper.py`); their small components' sizes are in
`footprint.py`.

Secrets never pass through Helm values: Grafana's admin and Alertmanager's whole configuration (which may hold a
webhook URL) are Kubernetes Secrets, and the charts are given their names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from components.config import ObservabilityConfig, StackConfig
from components.facts import (
    ANYWHERE,
    CHART_RESTRICTED,
    BucketUse,
    ComponentFacts,
    Flow,
    NamespaceFact,
    NodePortTarget,
    PodSecurity,
)
from components.object_store import BucketAccess
from components.observability import log_shipper, logs, metrics
from components.observability.footprint import FOOTPRINT
from components.observability.logs import LOKI_PORT
from components.observability.metrics import (
    ALERTMANAGER_CONFIG_SECRET,
    GRAFANA_ADMIN_SECRET,
    GRAFANA_OIDC_SECRET,
    GRAFANA_PORT,
    KPS_NAME,
    OPERATOR_WEBHOOK_PORT,
    PROMETHEUS_PORT,
    alertmanager_config,
    retention_size,
)
from components.secret_store import KubernetesSecrets, SecretStore

__all__ = [
    "ALERTMANAGER_CONFIG_SECRET",
    "FOOTPRINT",
    "GRAFANA_ADMIN_SECRET",
    "GRAFANA_OIDC_SECRET",
    "GRAFANA_PORT",
    "KPS_NAME",
    "LOKI_CONSUMER",
    "LOKI_PORT",
    "NAMESPACE",
    "NODE_METRICS_NAMESPACE",
    "OPERATOR_WEBHOOK_PORT",
    "PROMETHEUS_PORT",
    "GrafanaSso",
    "ObservabilityStack",
    "ObservabilityStackArgs",
    "alertmanager_config",
    "facts",
    "retention_size",
    "scrape_flow",
]

NAMESPACE = "observability"
NODE_METRICS_NAMESPACE = "node-metrics"
LOKI_CONSUMER = "loki"
"""Loki's object-store consumer name (cloud engines): its credentials Secret is `loki-s3-credentials`."""


def facts(config: StackConfig) -> ComponentFacts:
    """Prometheus, Alertmanager, Grafana, Loki and Alloy run in `observability`, node-exporter alone in
    `node-metrics`. Prometheus scrapes every other namespace (see `scrape_flow`); with a cloud object store Loki
    keeps its chunks in a bucket."""
    loki_bucket = config.observability.loki.bucket
    return ComponentFacts(
        "observability",
        namespaces=(
            NamespaceFact(NAMESPACE, CHART_RESTRICTED),
            NamespaceFact(NODE_METRICS_NAMESPACE, PodSecurity(
                "privileged", "node-exporter reads the host's network, PIDs and root filesystem; nothing else runs here",
            )),
        ),
        flows=(Flow("operator-webhook", NAMESPACE, (OPERATOR_WEBHOOK_PORT,), (ANYWHERE,)),),
        node_ports={
            "prometheus": NodePortTarget(NAMESPACE, PROMETHEUS_PORT),
            "grafana": NodePortTarget(NAMESPACE, GRAFANA_PORT),
            "loki": NodePortTarget(NAMESPACE, LOKI_PORT),
        },
        buckets=(BucketUse(LOKI_CONSUMER, NAMESPACE, (loki_bucket,)),) if config.object_store.engine != "minio" else (),
    )


def scrape_flow(namespace: str) -> Flow:
    """Prometheus scraping every metrics port of a namespace."""
    return Flow("prometheus-scrape", namespace, (), (NAMESPACE,), source_pods={"app.kubernetes.io/name": "prometheus"})


@dataclass(frozen=True)
class GrafanaSso:
    """Grafana signing users in itself (generic OAuth) with the front door's OpenID Connect provider."""

    root_url: str
    """Grafana's public URL, `https://grafana.<domain>` (its callback is `<root_url>/login/generic_oauth`)."""
    client_id: str
    """Client id at the provider."""
    client_secret: pulumi.Input[str]
    """The client's secret (a Pulumi secret), delivered as Secret GRAFANA_OIDC_SECRET, never in Helm values."""
    authorization_url: str
    """The provider's authorization endpoint."""
    token_url: str
    """The provider's token endpoint."""
    userinfo_url: str
    """The provider's userinfo endpoint."""


@dataclass(frozen=True)
class ObservabilityStackArgs:
    """What an ObservabilityStack needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace of Prometheus, Alertmanager, Grafana, Loki and Alloy."""
    node_metrics_namespace: pulumi.Input[str]
    """Namespace of node-exporter, the only piece that needs the host's network, PIDs and filesystem."""
    config: ObservabilityConfig
    """Retention, sizes, resources and the alert receiver."""
    storage_class: pulumi.Input[str]
    """The Retain StorageClass every claim uses."""
    loki_objects: BucketAccess | None = None
    """Where Loki keeps chunks; None: the filesystem of its claim (dev)."""
    receiver_url: pulumi.Input[str] | None = None
    """Secret webhook or Slack URL Alertmanager notifies (config.alerting.receiver other than none)."""
    node_ports: Mapping[str, int] = field(default_factory=dict)
    """Host NodePorts by role (prometheus, grafana, loki); empty: ClusterIP only."""
    protect: bool = False
    """Protect the releases that own claims (prod)."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where generated secrets are kept: Kubernetes Secrets, or Vault synced into Secrets of the same name."""
    grafana_sso: GrafanaSso | None = None
    """Grafana's single sign-on through the front door's provider; None: its admin login only."""


class ObservabilityStack(pulumi.ComponentResource):
    """Prometheus with Alertmanager and Grafana, Loki for logs, Alloy shipping every pod's logs to Loki."""

    ready: pulumi.Resource
    """The kube-prometheus-stack release: depend on it before declaring monitoring.coreos.com resources."""
    grafana_admin_secret: pulumi.Output[str]
    """Secret with Grafana's `admin-user` and generated `admin-password`."""
    prometheus_url: pulumi.Output[str]
    """In-cluster URL of Prometheus."""
    grafana_url: pulumi.Output[str]
    """In-cluster URL of Grafana."""
    loki_url: pulumi.Output[str]
    """In-cluster URL of Loki."""

    def __init__(self, name: str, args: ObservabilityStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:observability:ObservabilityStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        dns = pulumi.Output.concat(".", args.namespace, ".svc.cluster.local")
        self.loki_url = pulumi.Output.concat("http://loki", dns, f":{LOKI_PORT}")
        self.prometheus_url = pulumi.Output.concat(f"http://{KPS_NAME}-prometheus", dns, f":{PROMETHEUS_PORT}")
        self.grafana_url = pulumi.Output.concat(f"http://{KPS_NAME}-grafana", dns, ":80")

        self.ready, admin = metrics.release(name, args, self.loki_url, child)
        self.grafana_admin_secret = admin.name
        loki = logs.release(name, args, child, after=self.ready)
        log_shipper.release(name, args.namespace, self.loki_url, child, after=loki)
        self.register_outputs({
            "grafana_admin_secret": self.grafana_admin_secret,
            "prometheus_url": self.prometheus_url,
            "grafana_url": self.grafana_url,
            "loki_url": self.loki_url,
        })
