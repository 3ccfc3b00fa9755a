"""Metrics: kube-prometheus-stack (Prometheus, Alertmanager, Grafana, kube-state-metrics, node-exporter), and the
two Secrets it is given the names of: Grafana's admin and Alertmanager's whole configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components import kube
from components.config import quantity_value
from components.observability.footprint import FOOTPRINT
from components.secret_store import StoredSecret
from components.versions import CHARTS

if TYPE_CHECKING:
    from components.observability import GrafanaSso, ObservabilityStackArgs

KPS_NAME = "kps"
"""fullnameOverride of kube-prometheus-stack: object names stay short and predictable (kps-prometheus, ...)."""
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
"""Grafana's container port (its Service listens on 80)."""
OPERATOR_WEBHOOK_PORT = 10250
"""The Prometheus operator's admission webhook."""
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_OIDC_SECRET = "grafana-oidc"
"""Secret with the OIDC client's secret (key `client-secret`) Grafana reads from its environment."""
GRAFANA_OIDC_SECRET_ENV = "GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"
"""Grafana reads any setting from `GF_<SECTION>_<KEY>` (dots and dashes as `_`): [auth.generic_oauth] client_secret."""
ALERTMANAGER_CONFIG_SECRET = "alertmanager-config"


def release(
    name: str, args: ObservabilityStackArgs, loki_url: pulumi.Input[str], child: pulumi.ResourceOptions
) -> tuple[k8s.helm.v3.Release, StoredSecret]:
    """The kube-prometheus-stack release, after the Secrets it is given the names of; and Grafana's admin Secret."""
    admin = _grafana_admin(name, args, child)
    alerting = _alertmanager_config(name, args, child)
    secrets = [admin.resource, alerting.resource]
    if args.grafana_sso is not None:
        secrets.append(args.secrets.secret(
            f"{name}-grafana-oidc",
            name=GRAFANA_OIDC_SECRET,
            namespace=args.namespace,
            labels=kube.labels("grafana", "sso"),
            data={"client-secret": args.grafana_sso.client_secret},
            opts=child,
        ).resource)
    # helm.v3.Release: the operator's admission-webhook certificates come from Helm hook Jobs, which
    # helm.v4.Chart skips (the operator would then wait for its webhook certificate forever).
    metrics = kube.helm_release(
        f"{name}-metrics",
        CHARTS["kube-prometheus-stack"],
        release_name=KPS_NAME,
        namespace=args.namespace,
        values=metrics_values(args, loki_url, args.node_ports),
        timeout=900,
        opts=pulumi.ResourceOptions.merge(
            kube.stateful(child, args.protect), pulumi.ResourceOptions(depends_on=secrets)
        ),
    )
    return metrics, admin


def _grafana_admin(name: str, args: ObservabilityStackArgs, child: pulumi.ResourceOptions) -> StoredSecret:
    """A generated admin password: never the chart's `prom-operator`, never admin/admin."""
    password = random.RandomPassword(f"{name}-grafana-admin-password", length=32, special=False, opts=child)
    return args.secrets.secret(
        f"{name}-grafana-admin",
        name=GRAFANA_ADMIN_SECRET,
        namespace=args.namespace,
        labels=kube.labels("grafana", "auth"),
        data={"admin-user": "admin", "admin-password": password.result},
        opts=child,
    )


def alertmanager_config(receiver: str, url: str | None, slack_channel: str = "") -> str:
    """Alertmanager's whole configuration file. Alerts group per namespace and alert; critical ones silence the
    warnings they imply; a receiver of `none` keeps alerts visible in Alertmanager and Grafana only."""
    target: dict = {"name": "platform"}
    if receiver == "webhook":
        target["webhook_configs"] = [{"url": url, "send_resolved": True}]
    elif receiver == "slack":
        slack = {"api_url": url, "send_resolved": True, "title": "{{ .CommonAnnotations.summary }}",
                 "text": "{{ range .Alerts }}{{ .Annotations.description }} {{ .Annotations.runbook_url }}\n{{ end }}"}
        if slack_channel:
            slack["channel"] = slack_channel
        target["slack_configs"] = [slack]
    config = {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "platform",
            "group_by": ["namespace", "alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            # The chart's always-firing Watchdog proves the pipeline works; it must not page anyone.
            "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}],
        },
        "inhibit_rules": [
            {"source_matchers": ["severity = critical"], "target_matchers": ["severity = warning"], "equal": ["namespace", "alertname"]},
        ],
        "receivers": [target, {"name": "null"}],
    }
    return yaml.safe_dump(config, sort_keys=False)


def _alertmanager_config(name: str, args: ObservabilityStackArgs, child: pulumi.ResourceOptions) -> StoredSecret:
    alerting = args.config.alerting
    url = pulumi.Output.secret(args.receiver_url) if args.receiver_url is not None else pulumi.Output.from_input(None)
    return args.secrets.secret(
        f"{name}-alertmanager-config",
        name=ALERTMANAGER_CONFIG_SECRET,
        namespace=args.namespace,
        labels=kube.labels("alertmanager", "config"),
        data={"alertmanager.yaml": url.apply(lambda u: alertmanager_config(alerting.receiver, u, alerting.slack_channel))},
        opts=child,
    )


def grafana_sso_values(sso: GrafanaSso | None) -> dict:
    """Grafana's own generic OAuth against the front door's provider: users sign in as themselves (Viewer until an
    admin or a role mapping says otherwise); the client secret comes from a Secret through the environment."""
    if sso is None:
        return {}
    return {
        "grafana.ini": {
            "server": {"root_url": sso.root_url},
            "auth.generic_oauth": {
                "enabled": True,
                "name": "Single sign-on",
                "client_id": sso.client_id,
                "scopes": "openid email profile",
                "auth_url": sso.authorization_url,
                "token_url": sso.token_url,
                "api_url": sso.userinfo_url,
                "use_pkce": True,
                "allow_sign_up": True,
            },
        },
        "envValueFrom": {GRAFANA_OIDC_SECRET_ENV: {"secretKeyRef": {"name": GRAFANA_OIDC_SECRET, "key": "client-secret"}}},
    }


def _claim_template(storage_class: pulumi.Input[str], size: str) -> dict:
    return {
        "spec": {
            "storageClassName": storage_class,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        }
    }


def retention_size(size: str) -> str:
    """Prometheus deletes the oldest blocks beyond this, so the TSDB stops at 80 % of its claim (WAL headroom)."""
    return f"{int(quantity_value(size) * 0.8 / 2**20)}MB"


def metrics_values(args: ObservabilityStackArgs, loki_url: pulumi.Input[str], ports: Mapping[str, int]) -> dict:
    config = args.config
    small = {role: spec.as_k8s() for role, spec in FOOTPRINT.items()}
    prometheus_service = {"type": "NodePort", "nodePort": ports["prometheus"]} if ports.get("prometheus") else {}
    grafana_service = {"type": "NodePort", "nodePort": ports["grafana"]} if ports.get("grafana") else {}
    # Any ServiceMonitor, PodMonitor or PrometheusRule in any namespace is picked up, not only this release's.
    selectors = {
        f"{kind}SelectorNilUsesHelmValues": False
        for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")
    }
    return {
        "fullnameOverride": KPS_NAME,
        "crds": {"enabled": True},
        "windowsMonitoring": {"enabled": False},
        # Managed control planes (EKS) and Kind expose none of these; their default alerts would fire forever.
        **{component: {"enabled": False} for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")},
        "defaultRules": {
            "rules": {rule: False for rule in ("etcd", "kubeControllerManager", "kubeSchedulerAlerting", "kubeSchedulerRecording", "kubeProxy", "windows")},
        },
        "prometheusOperator": {
            "resources": small["prometheus-operator"],
            "prometheusConfigReloader": {"resources": small["config-reloader"]},
            "admissionWebhooks": {"patch": {"resources": small["webhook-certgen"]}},
        },
        "prometheus": {
            "service": prometheus_service,
            "prometheusSpec": {
                "retention": config.prometheus.retention,
                "retentionSize": retention_size(config.prometheus.size),
                "resources": config.prometheus.resources.as_k8s(),
                "storageSpec": {"volumeClaimTemplate": _claim_template(args.storage_class, config.prometheus.size)},
                **selectors,
            },
        },
        "alertmanager": {
            "alertmanagerSpec": {
                # The whole configuration is our Secret (it may hold a webhook URL), never Helm values.
                "useExistingSecret": True,
                "configSecret": ALERTMANAGER_CONFIG_SECRET,
                "resources": small["alertmanager"],
                "storage": {"volumeClaimTemplate": _claim_template(args.storage_class, config.alerting.size)},
            },
        },
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "defaultDashboardsTimezone": "utc",
            "additionalDataSources": [
                {"name": "Loki", "type": "loki", "uid": "loki", "access": "proxy", "url": loki_url, "isDefault": False},
            ],
            # Keys of the grafana subchart (12.11.1) itself, below kube-prometheus-stack's section:
            "resources": config.grafana.resources.as_k8s(),
            "persistence": {"enabled": True, "type": "pvc", "storageClassName": args.storage_class, "size": config.grafana.size},
            # One writer on a ReadWriteOnce claim: the old pod must stop before the new one mounts it.
            "deploymentStrategy": {"type": "Recreate"},
            # The chown init container runs as root; fsGroup already gives Grafana its volume.
            "initChownData": {"enabled": False},
            "sidecar": {"resources": small["grafana-sidecar"]},
            "service": grafana_service,
            **grafana_sso_values(args.grafana_sso),
        },
        "kube-state-metrics": {"resources": small["kube-state-metrics"]},
        "prometheus-node-exporter": {
            # Host network, PIDs and root filesystem: only the node-metrics namespace allows that.
            "namespaceOverride": args.node_metrics_namespace,
            "resources": small["node-exporter"],
        },
    }
