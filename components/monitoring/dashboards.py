"""The platform's Grafana dashboards, as data: storage, backups and services, over what the alerts watch."""

from __future__ import annotations

import json
from dataclasses import dataclass

from components.monitoring.alerts import PVC_FORECAST_SECONDS, PVC_FORECAST_WINDOW, AlertTargets, any_of

DASHBOARDS = ("mlops-storage", "mlops-backups", "mlops-services")
PROMETHEUS_DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
LOKI_DATASOURCE = {"type": "loki", "uid": "loki"}


@dataclass(frozen=True)
class Panel:
    """One Grafana panel: a title, a visualisation and its queries (expr -> legend)."""

    title: str
    queries: dict[str, str]
    unit: str = "short"
    kind: str = "timeseries"
    datasource: dict | None = None


def _dashboard(uid: str, title: str, panels: list[Panel]) -> dict:
    rendered = []
    for index, panel in enumerate(panels):
        datasource = panel.datasource or PROMETHEUS_DATASOURCE
        rendered.append({
            "id": index + 1,
            "type": panel.kind,
            "title": panel.title,
            "datasource": datasource,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "targets": [
                {"refId": chr(ord("A") + n), "datasource": datasource, "expr": expr, "legendFormat": legend}
                for n, (expr, legend) in enumerate(panel.queries.items())
            ],
        })
    return {
        "uid": uid,
        "title": title,
        "tags": ["mlops-platform"],
        "timezone": "utc",
        "schemaVersion": 39,
        "editable": False,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "panels": rendered,
    }


def dashboards(targets: AlertTargets) -> dict[str, dict]:
    """Grafana dashboards by uid (one of DASHBOARDS): storage, backups and the platform's services."""
    scope = f'namespace=~"{any_of(targets.platform_namespaces)}"'
    claim = "{{namespace}}/{{persistentvolumeclaim}}"
    jobs = any_of(tuple(run.cron_job for run in targets.backups)) or "none"
    pods = f'namespace="{targets.postgres_namespace}", pod=~"{targets.postgres_cluster}-[0-9]+"'
    storage = [
        Panel("Used share per claim", {f"kubelet_volume_stats_used_bytes{{{scope}}} / kubelet_volume_stats_capacity_bytes{{{scope}}}": claim}, "percentunit"),
        Panel("Free bytes per claim, and the 3-day forecast", {
            f"kubelet_volume_stats_available_bytes{{{scope}}}": f"{claim} free",
            f"predict_linear(kubelet_volume_stats_available_bytes{{{scope}}}[{PVC_FORECAST_WINDOW}], {PVC_FORECAST_SECONDS})": f"{claim} in 3 days",
        }, "bytes"),
        Panel("Capacity per claim", {f"kubelet_volume_stats_capacity_bytes{{{scope}}}": claim}, "bytes", "stat"),
        Panel("Inodes used per claim", {f"kubelet_volume_stats_inodes_used{{{scope}}} / kubelet_volume_stats_inodes{{{scope}}}": claim}, "percentunit"),
    ]
    backups = [
        Panel("Time since the last successful run", {
            f'time() - kube_cronjob_status_last_successful_time{{cronjob=~"{jobs}"}}': "{{namespace}}/{{cronjob}}",
        }, "s", "stat"),
        Panel("Failed backup jobs", {f'kube_job_failed{{condition="true", job_name=~"({jobs})-[0-9]+"}}': "{{namespace}}/{{job_name}}"}, "short", "stat"),
        Panel("Last run duration", {
            f'kube_job_status_completion_time{{job_name=~"({jobs})-[0-9]+"}} - kube_job_status_start_time{{job_name=~"({jobs})-[0-9]+"}}': "{{job_name}}",
        }, "s"),
    ]
    if targets.base_backup_schedule:
        backups += [
            Panel("PostgreSQL: time since the last base backup", {
                f"time() - max(barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{pods}}})": "base backup",
            }, "s", "stat"),
            Panel("PostgreSQL: time since the last archived WAL", {
                f"cnpg_pg_stat_archiver_seconds_since_last_archival{{{pods}}}": "{{pod}}",
            }, "s"),
        ]
    services = [
        Panel("Targets up", {
            f'up{{namespace="{targets.mlflow_namespace}", service="mlflow"}}': "mlflow {{pod}}",
            f'up{{namespace="{targets.temporal_namespace}"}}': "temporal {{pod}}",
            f"cnpg_collector_up{{{pods}}}": "postgres {{pod}}",
        }, "short"),
        Panel("MLflow requests per second by status", {
            f'sum by (status) (rate(mlflow_http_request_total{{namespace="{targets.mlflow_namespace}"}}[5m]))': "{{status}}",
        }, "reqps"),
        Panel("MLflow p95 latency", {
            "histogram_quantile(0.95, sum by (le) (rate(mlflow_http_request_duration_seconds_bucket"
            f'{{namespace="{targets.mlflow_namespace}"}}[5m])))': "p95",
        }, "s"),
        Panel("PostgreSQL connections", {f"sum by (pod) (cnpg_backends_total{{{pods}}})": "{{pod}}"}, "short"),
        *(_serving_panels(targets.serving_namespace) if targets.serving_namespace else []),
        *(_airflow_panels(targets.airflow_namespace) if targets.airflow_namespace else []),
        *(_certificate_panels() if targets.cert_manager_namespace else []),
        Panel("Platform logs", {f'{{namespace=~"{any_of(targets.platform_namespaces)}"}}': ""}, "short", "logs", LOKI_DATASOURCE),
    ]
    return {
        "mlops-storage": _dashboard("mlops-storage", "MLOps / Storage", storage),
        "mlops-backups": _dashboard("mlops-backups", "MLOps / Backups", backups),
        "mlops-services": _dashboard("mlops-services", "MLOps / Services", services),
    }


def _serving_panels(namespace: str) -> list[Panel]:
    scope = f'namespace="{namespace}"'
    return [
        Panel("Model serving: predictions per second by model and status", {
            f"sum by (model, alias, status) (rate(model_serving_requests_total{{{scope}}}[5m]))": "{{model}}@{{alias}} {{status}}",
        }, "reqps"),
        Panel("Model serving: p95 latency, and the version each pod serves", {
            "histogram_quantile(0.95, sum by (model, alias, le) (rate(model_serving_request_duration_seconds_bucket"
            f"{{{scope}}}[5m])))": "{{model}}@{{alias}} p95",
            f"max by (model, alias, version) (model_version_info{{{scope}}})": "{{model}}@{{alias}} serves version {{version}}",
        }, "s"),
    ]


def _airflow_panels(namespace: str) -> list[Panel]:
    scope = f'namespace="{namespace}"'
    return [
        Panel("Airflow: scheduler heartbeats per second, and DAG runs finished by outcome", {
            f"sum (rate(airflow_scheduler_heartbeat_total{{{scope}}}[5m]))": "scheduler heartbeats",
            f"sum by (dag_id) (increase(airflow_dagrun_success_duration_seconds_count{{{scope}}}[1h]))": "{{dag_id}} succeeded (1h)",
            f"sum by (dag_id) (increase(airflow_dagrun_failed_duration_seconds_count{{{scope}}}[1h]))": "{{dag_id}} failed (1h)",
        }, "short"),
    ]


def _certificate_panels() -> list[Panel]:
    return [
        Panel("Certificates: time left before each expires, and before each renews", {
            "min by (namespace, name) (certmanager_certificate_expiration_timestamp_seconds) - time()": "{{namespace}}/{{name}} expires",
            "min by (namespace, name) (certmanager_certificate_renewal_timestamp_seconds) - time()": "{{namespace}}/{{name}} renews",
        }, "s"),
    ]


def dashboard_json(dashboard: dict) -> str:
    return json.dumps(dashboard, indent=1, sort_keys=True)
