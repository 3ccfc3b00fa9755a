"""The platform's alert rules (`alerts.py`) and Grafana dashboards (`dashboards.py`), both pure functions of what
runs where, and the component that ships them: a PrometheusRule and dashboard ConfigMaps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pulumi
import pulumi_kubernetes as k8s

from components import kube, vault_server
from components.monitoring.alerts import AlertTargets, alert_groups, longest_gap_seconds, stale_after_seconds
from components.monitoring.dashboards import DASHBOARDS, dashboard_json, dashboards

__all__ = [
    "DASHBOARDS",
    "AlertTargets",
    "PlatformMonitoring",
    "PlatformMonitoringArgs",
    "alert_groups",
    "dashboard_json",
    "dashboards",
    "longest_gap_seconds",
    "stale_after_seconds",
]


@dataclass(frozen=True)
class PlatformMonitoringArgs:
    """Where the rules and dashboards go, and what they watch."""

    namespace: pulumi.Input[str]
    """The observability namespace (Grafana's sidecar reads dashboards from it)."""
    targets: AlertTargets
    """What the alerts and dashboards watch."""
    metrics_ready: pulumi.Resource
    """The release that installs the Prometheus CRDs."""


class PlatformMonitoring(pulumi.ComponentResource):
    """The platform's PrometheusRule and Grafana dashboards; created last, once every watched piece exists."""

    alert_names: list[str]
    """Every alert the rule defines (one BackupStale per backup)."""
    dashboard_titles: list[str]
    """Titles of the dashboards."""

    def __init__(self, name: str, args: PlatformMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:monitoring:PlatformMonitoring", name, None, opts)
        after_crds = pulumi.ResourceOptions(parent=self, depends_on=[args.metrics_ready])
        targets = _resolved(args.targets)
        k8s.apiextensions.CustomResource(
            f"{name}-alerts",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="mlops-platform", namespace=args.namespace, labels=kube.labels("prometheus", "alerts")),
            spec=targets.apply(lambda t: {"groups": alert_groups(t)}),
            opts=after_crds,
        )
        # Vault and cert-manager are installed before Prometheus exists, so their monitors are declared here.
        for app, namespace, match_labels, endpoint in early_chart_monitors(args.targets):
            kube.metrics_monitor(
                f"{name}-{app}-monitor", kind="PodMonitor", monitor_name=app, namespace=namespace, app=app,
                match_labels=match_labels, endpoints=[endpoint], opts=after_crds,
            )
        for uid in DASHBOARDS:
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{uid}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"dashboard-{uid}",
                    namespace=args.namespace,
                    # The label kube-prometheus-stack's Grafana sidecar watches.
                    labels={**kube.labels("grafana", "dashboard"), "grafana_dashboard": "1"},
                ),
                data={f"{uid}.json": targets.apply(lambda t, uid=uid: dashboard_json(dashboards(t)[uid]))},
                opts=pulumi.ResourceOptions(parent=self),
            )
        # Names and titles do not depend on namespaces: read them from a copy without any.
        unresolved = replace(args.targets, backups=tuple(replace(run, namespace="") for run in args.targets.backups))
        self.alert_names = [rule["alert"] for group in alert_groups(unresolved) for rule in group["rules"]]
        self.dashboard_titles = [board["title"] for board in dashboards(unresolved).values()]
        self.register_outputs({"alert_names": self.alert_names, "dashboard_titles": self.dashboard_titles})


def early_chart_monitors(targets: AlertTargets) -> list[tuple[str, str, dict[str, str], dict]]:
    """(app, namespace, pod labels, endpoint) of the pods installed before Prometheus that the alerts watch."""
    monitors = []
    if targets.vault_namespace:
        monitors.append(("vault", targets.vault_namespace, {"app.kubernetes.io/name": "vault", "component": "server"},
                         vault_metrics_endpoint(targets.vault_namespace)))
    if targets.cert_manager_namespace:
        # honorLabels keeps the metrics' own `namespace` (the Certificate's), which the certificate alerts report,
        # instead of cert-manager's.
        monitors.append(("cert-manager", targets.cert_manager_namespace,
                         {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component": "controller"},
                         {"port": "http-metrics", "honorLabels": True}))
    return monitors


def vault_metrics_endpoint(namespace: str) -> dict:
    """Vault's metrics over its TLS listener (the chart names the port after the scheme), the certificate verified
    against Vault's CA; Prometheus scrapes pod IPs, so it checks the certificate for the `vault` Service's name."""
    return {
        "port": "https",
        "scheme": "https",
        "path": vault_server.METRICS_PATH,
        "params": {"format": ["prometheus"]},
        "tlsConfig": {
            "ca": {"secret": {"name": vault_server.TLS_SECRET, "key": vault_server.CA_KEY}},
            "serverName": f"{vault_server.SERVICE}.{namespace}.svc",
        },
    }


def _resolved(targets: AlertTargets) -> pulumi.Output[AlertTargets]:
    """The targets once every backup's namespace (an output of its Namespace resource) is known."""
    return pulumi.Output.all(*[run.namespace for run in targets.backups]).apply(
        lambda names: replace(targets, backups=tuple(replace(run, namespace=n) for run, n in zip(targets.backups, names, strict=True)))
    )
