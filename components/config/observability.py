"""`mlops-platform:observability`: Prometheus, Alertmanager, Grafana, Loki and Alloy."""

from __future__ import annotations

from pydantic import Field

from components.config.base import Block
from components.config.formats import Flag, Quantity, Text, matching, one_of, whole
from components.config.resources import ResourceSpec

ALERT_RECEIVERS = ("none", "webhook", "slack")
Receiver = one_of(*ALERT_RECEIVERS)
PromDuration = matching(
    r"^[1-9][0-9]*[hdwy]$", "expected a Prometheus duration in hours, days, weeks or years, such as 7d or 2w"
)
Days = whole(1, 3650)


class PrometheusConfig(Block):
    """Metrics storage."""

    retention: PromDuration = Field(
        "7d",
        description="How long samples are kept (Prometheus duration: 12h, 7d, 2w, 1y).",
    )
    size: Quantity = Field(
        "10Gi",
        description="Claim size of the TSDB; Prometheus also stops at 80 % of it (retentionSize), whichever comes first.",
    )
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "200m", "memory": "512Mi"}, {"cpu": "1", "memory": "2Gi"}),
        description="Requests and limits of the Prometheus container.",
    )


class AlertingConfig(Block):
    """Where Alertmanager sends notifications."""

    receiver: Receiver = Field(
        "none",
        description="none: alerts are only visible in Alertmanager and Grafana; webhook or slack: sent to the secret `alertmanagerReceiverUrl`.",
    )
    slack_channel: Text = Field(
        "",
        description="slack: the channel to post to (the webhook URL's default channel when empty).",
    )
    size: Quantity = Field("1Gi", description="Claim size of Alertmanager's silences and notification log.")


class GrafanaConfig(Block):
    """Dashboards."""

    size: Quantity = Field("2Gi", description="Claim size of Grafana's SQLite database (users, stars, annotations).")
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "50m", "memory": "192Mi"}, {"cpu": "500m", "memory": "512Mi"}),
        description="Requests and limits of the Grafana container.",
    )


class LokiConfig(Block):
    """Logs."""

    retention_days: Days = Field(7, description="Days log lines are kept; the compactor deletes older chunks.")
    size: Quantity = Field(
        "10Gi",
        description="Claim size: all chunks with the minio engine (filesystem), only the write-ahead log and index cache otherwise.",
    )
    bucket: Text = Field(
        "logs",
        description="s3/r2 engines: the bucket (one of objectStore.buckets) holding chunks and index.",
    )
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"}),
        description="Requests and limits of the Loki container.",
    )


class ObservabilityConfig(Block):
    """Prometheus, Alertmanager, Grafana, Loki and Alloy."""

    enabled: Flag = Field(
        False,
        description="Deploy the ObservabilityStack (dev may turn it off to save about 1.3 GiB of memory).",
    )
    prometheus: PrometheusConfig = Field(PrometheusConfig(), description="Metrics.")
    alerting: AlertingConfig = Field(AlertingConfig(), description="Notifications.")
    grafana: GrafanaConfig = Field(GrafanaConfig(), description="Dashboards.")
    loki: LokiConfig = Field(LokiConfig(), description="Logs.")
