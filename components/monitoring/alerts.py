"""The platform's alert rules, as data: a pure function of what runs where (the PrometheusRule's `spec.groups`).

The tests feed the same rules to `promtool check rules` and `promtool test rules`, because Kind's local-path volumes
emit no volume stats.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from components.backups import BackupRun

PVC_FULL_RATIO = 0.8
"""PVCAlmostFull fires above this used/capacity ratio (seed 004)."""
PVC_FORECAST_WINDOW = "6h"
"""PVCFillingSoon extrapolates the free space of this trailing window ..."""
PVC_FORECAST_SECONDS = 3 * 86400
"""... this far ahead (3 days)."""
BACKUP_GRACE_SECONDS = 1800
"""A backup is stale once its schedule's longest gap, plus its deadline, plus this grace, has passed."""
SERVING_ERROR_RATIO = 0.05
"""ModelServingErrors fires when more than this share of a model's predictions answer 5xx (503: no model loaded)."""


@dataclass(frozen=True)
class AlertTargets:
    """What the alerts watch; every namespace is a plain name, as it appears in metric labels."""

    platform_namespaces: tuple[str, ...]
    """Namespaces whose claims the storage alerts watch."""
    backups: tuple[BackupRun, ...]
    """Backup CronJobs with their schedules and deadlines."""
    mlflow_namespace: str
    """Where the MLflow Service `mlflow` is."""
    temporal_namespace: str
    """Where Temporal runs."""
    postgres_namespace: str
    """Where the CloudNativePG cluster runs."""
    postgres_cluster: str
    """Name of the CloudNativePG cluster (its pods are `<name>-<n>`)."""
    base_backup_schedule: str | None = None
    """6-field cron of the CloudNativePG ScheduledBackup when continuous backups are on, else None."""
    minio_namespace: str | None = None
    """Where the MinIO Service `minio` is, when the object store runs in the cluster."""
    vault_namespace: str | None = None
    """Where the in-cluster Vault runs, when it does."""
    serving_namespace: str | None = None
    """Where the model-serving pods run, when models are served."""
    airflow_namespace: str | None = None
    """Where Airflow and its statsd-exporter run, when Airflow is deployed and scraped."""
    cert_manager_namespace: str | None = None
    """Where cert-manager runs, when the stack has it (Vault's TLS, the front door, the barman-cloud plugin)."""
    runbooks: str = "docs/runbooks"
    """Base of the runbook links in alert annotations."""


# --------------------------------------------------------------------------------------------------------------
# Cron: how long a healthy schedule can go without a run
# --------------------------------------------------------------------------------------------------------------

_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        spread, _, step = part.partition("/")
        if spread == "*":
            start, stop = low, high
        else:
            first, _, last = spread.partition("-")
            start, stop = int(first), int(last or (high if step else first))
        values.update(range(start, stop + 1, int(step or 1)))
    return values


def longest_gap_seconds(schedule: str) -> int:
    """The longest time between two consecutive runs of a 5-field cron schedule (UTC), over a whole year."""
    fields = schedule.split()
    minutes, hours, days, months, weekdays = (
        _cron_field(text, low, high) for text, (low, high) in zip(fields, _CRON_RANGES, strict=True)
    )
    weekdays = {d % 7 for d in weekdays}
    # cron's rule: when both day fields are restricted, a day matching either one runs.
    either_day = fields[2] != "*" and fields[4] != "*"
    start = datetime(2025, 1, 1, tzinfo=UTC)
    runs = []
    for offset in range(366 + 31):
        day = start + timedelta(days=offset)
        by_date, by_weekday = day.day in days, (day.isoweekday() % 7) in weekdays
        if day.month in months and ((by_date or by_weekday) if either_day else (by_date and by_weekday)):
            runs += [day + timedelta(hours=h, minutes=m) for h, m in itertools.product(sorted(hours), sorted(minutes))]
    return int(max((b - a).total_seconds() for a, b in itertools.pairwise(runs)))


def _without_seconds(schedule: str) -> str:
    """CloudNativePG's 6-field cron (seconds first) as the 5-field form."""
    return " ".join(schedule.split()[1:])


# --------------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------------


def _alert(name: str, expr: str, *, for_: str, severity: str, summary: str, runbook: str, description: str, **labels: str) -> dict:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary, "description": description, "runbook_url": runbook},
    }


def any_of(values: tuple[str, ...]) -> str:
    return "|".join(sorted(values))


def _storage_rules(targets: AlertTargets) -> list[dict]:
    scope = f'namespace=~"{any_of(targets.platform_namespaces)}"'
    used = f"kubelet_volume_stats_used_bytes{{{scope}}} / kubelet_volume_stats_capacity_bytes{{{scope}}}"
    claim = "{{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }}"
    runbook = f"{targets.runbooks}/alerts.md#pvc-almost-full-or-filling"
    return [
        _alert(
            "PVCAlmostFull", f"{used} > {PVC_FULL_RATIO}", for_="5m", severity="warning", runbook=runbook,
            summary=f"Claim {claim} is {{{{ $value | humanizePercentage }}}} full",
            description="More than 80 % of the volume is used. Grow the claim or free space before writes fail.",
        ),
        _alert(
            "PVCFillingSoon",
            f"predict_linear(kubelet_volume_stats_available_bytes{{{scope}}}[{PVC_FORECAST_WINDOW}], {PVC_FORECAST_SECONDS}) < 0",
            for_="1h", severity="warning", runbook=runbook,
            summary=f"Claim {claim} will be full within 3 days",
            description="At the growth rate of the last 6 hours the volume runs out of space within 3 days.",
        ),
    ]


def stale_after_seconds(run: BackupRun) -> int:
    """How old the last successful run of a healthy backup can be."""
    return longest_gap_seconds(run.schedule) + run.deadline_seconds + BACKUP_GRACE_SECONDS


def _backup_rules(targets: AlertTargets) -> list[dict]:
    rules = []
    for run in targets.backups:
        selector = f'namespace="{run.namespace}", cronjob="{run.cron_job}"'
        limit = stale_after_seconds(run)
        rules.append(_alert(
            "BackupStale",
            # A CronJob that never succeeded has no last-success time: measure from its creation instead.
            f"(time() - kube_cronjob_status_last_successful_time{{{selector}}} > {limit})"
            f" or (time() - kube_cronjob_created{{{selector}}} > {limit}"
            f" unless on (namespace, cronjob) kube_cronjob_status_last_successful_time{{{selector}}})",
            for_="5m", severity="critical", runbook=f"{targets.runbooks}/alerts.md#backup-stale-or-failed",
            summary=f"Backup {run.cron_job} has not succeeded for more than {limit // 3600} h",
            description=f"Schedule '{run.schedule}': its longest gap, deadline and grace add up to {limit} s.",
            backup=run.cron_job,
        ))
    if targets.backups:
        namespaces = any_of(tuple({str(run.namespace) for run in targets.backups}))
        jobs = any_of(tuple(run.cron_job for run in targets.backups))
        rules.append(_alert(
            "BackupJobFailed",
            f'kube_job_failed{{condition="true", namespace=~"{namespaces}", job_name=~"({jobs})-[0-9]+"}} > 0',
            for_="1m", severity="warning", runbook=f"{targets.runbooks}/alerts.md#backup-stale-or-failed",
            summary="Backup job {{ $labels.namespace }}/{{ $labels.job_name }} failed",
            description="Every retry failed or the run hit its deadline. Read its logs; delete the Job once understood.",
        ))
    if targets.base_backup_schedule:
        rules += _continuous_backup_rules(targets)
    return rules


def _continuous_backup_rules(targets: AlertTargets) -> list[dict]:
    pods = f'namespace="{targets.postgres_namespace}", pod=~"{targets.postgres_cluster}-[0-9]+"'
    runbook = f"{targets.runbooks}/alerts.md#postgres-continuous-backup"
    limit = longest_gap_seconds(_without_seconds(targets.base_backup_schedule)) + 3 * 3600
    return [
        _alert(
            "PostgresWalArchivingFailing",
            f"cnpg_pg_stat_archiver_last_failed_time{{{pods}}} > cnpg_pg_stat_archiver_last_archived_time{{{pods}}}",
            for_="5m", severity="critical", runbook=runbook,
            summary="PostgreSQL {{ $labels.pod }} fails to archive WAL",
            description="The last archive attempt failed after the last success: point-in-time recovery falls behind.",
        ),
        _alert(
            "PostgresBaseBackupFailed",
            f"max(barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp{{{pods}}})"
            f" > max(barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{pods}}})",
            for_="5m", severity="critical", runbook=runbook,
            summary=f"The last base backup of {targets.postgres_cluster} failed",
            description="The barman-cloud plugin reports a failed backup newer than the last good one.",
        ),
        _alert(
            "PostgresBaseBackupStale",
            f"time() - max(barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{pods}}}) > {limit}",
            for_="15m", severity="critical", runbook=runbook,
            summary=f"No base backup of {targets.postgres_cluster} for more than {limit // 3600} h",
            description=f"ScheduledBackup '{targets.base_backup_schedule}' should have produced a newer backup.",
        ),
    ]


def _down(name: str, where: dict[str, str], what: str, runbook: str) -> dict:
    # absent() keeps no labels of a filtered vector: the rule names where it looked, for routing and grouping.
    selector = ", ".join(f'{k}="{v}"' for k, v in where.items())
    return _alert(
        name, f"absent(up{{{selector}}} == 1)", for_="5m", severity="critical", runbook=runbook,
        summary=f"{what} is down", description=f"No {what} target has answered a metrics scrape for 5 minutes.",
        **where,
    )


def _service_rules(targets: AlertTargets) -> list[dict]:
    runbook = f"{targets.runbooks}/alerts.md#service-down"
    pods = f'namespace="{targets.postgres_namespace}", pod=~"{targets.postgres_cluster}-[0-9]+"'
    rules = [
        _down("MlflowDown", {"namespace": targets.mlflow_namespace, "service": "mlflow"}, "MLflow", runbook),
        _down("TemporalDown", {"namespace": targets.temporal_namespace}, "Temporal", runbook),
        _alert(
            "PostgresDown", f"absent(cnpg_collector_up{{{pods}}} == 1)", for_="5m", severity="critical", runbook=runbook,
            summary=f"PostgreSQL cluster {targets.postgres_cluster} is down",
            description="No instance reports a running PostgreSQL for 5 minutes.",
            namespace=targets.postgres_namespace,
        ),
        _alert(
            "PostgresInstanceDown", f"cnpg_collector_up{{{pods}}} == 0", for_="5m", severity="warning", runbook=runbook,
            summary="PostgreSQL instance {{ $labels.pod }} is down",
            description="Its exporter answers but PostgreSQL does not; the cluster runs with one instance fewer.",
        ),
    ]
    if targets.minio_namespace:
        rules.append(_down("ObjectStoreDown", {"namespace": targets.minio_namespace, "service": "minio"}, "MinIO", runbook))
    if targets.vault_namespace:
        rules.append(_alert(
            "VaultSealed", f'vault_core_unsealed{{namespace="{targets.vault_namespace}"}} == 0', for_="5m", severity="critical",
            runbook=f"{targets.runbooks}/alerts.md#vault-sealed",
            summary="Vault server {{ $labels.pod }} is sealed",
            description="A sealed server serves no secrets; new pods cannot receive theirs until it is unsealed.",
        ))
        rules.append(_down("VaultDown", {"namespace": targets.vault_namespace}, "Vault", f"{targets.runbooks}/alerts.md#vault-sealed"))
    return rules


def _serving_rules(targets: AlertTargets) -> list[dict]:
    namespace = targets.serving_namespace
    runbook = f"{targets.runbooks}/alerts.md#model-serving-errors-or-not-ready"
    requests = f'model_serving_requests_total{{namespace="{namespace}"'
    by_model = "sum by (namespace, model, alias)"
    return [
        _alert(
            "ModelServingErrors",
            f'{by_model} (rate({requests}, status=~"5.."}}[5m])) / {by_model} (rate({requests}}}[5m])) > {SERVING_ERROR_RATIO}',
            for_="10m", severity="warning", runbook=runbook,
            summary="{{ $labels.model }}@{{ $labels.alias }} answers {{ $value | humanizePercentage }} of predictions with 5xx",
            description="More than 5 % of prediction requests failed on the server side for 10 minutes "
            "(503: no model version loaded; 500: the model failed to predict).",
        ),
        _alert(
            # kube-state-metrics, not the app's own model_serving_ready: a crash-looping or unschedulable pod
            # serves no metrics at all, and it is not ready either.
            "ModelServingNotReady",
            f'kube_deployment_status_replicas_unavailable{{namespace="{namespace}"}} > 0',
            for_="10m", severity="warning", runbook=runbook,
            summary="Model server {{ $labels.deployment }} has {{ $value }} pod(s) not ready",
            description="A serving pod has had no model version loaded for 10 minutes; GET /readyz on it says why.",
        ),
    ]


AIRFLOW_FAILED_WINDOW = "15m"
"""AirflowDagRunFailed fires for a DAG with a failed run in this trailing window."""


def _airflow_rules(targets: AlertTargets) -> list[dict]:
    """From the statsd-exporter's fixed names (components/airflow/component.py STATSD_MAPPINGS)."""
    scope = f'namespace="{targets.airflow_namespace}"'
    heartbeat = f"airflow_scheduler_heartbeat_total{{{scope}}}"
    failed = f"airflow_dagrun_failed_duration_seconds_count{{{scope}}}"
    by_dag = "sum by (namespace, dag_id)"
    return [
        _alert(
            # The scheduler beats every few seconds while it runs; the counter stands still (or is missing, after
            # the exporter restarted) when it does not.
            "AirflowSchedulerNotHeartbeating",
            f"sum by (namespace) (rate({heartbeat}[5m])) == 0 or absent({heartbeat})",
            for_="5m", severity="critical", runbook=f"{targets.runbooks}/alerts.md#airflow-scheduler-or-dag-runs",
            summary="The Airflow scheduler in {{ $labels.namespace }} has not heartbeated for 10 minutes",
            description="No DAG run is scheduled and no task starts while the scheduler is down or stuck.",
        ),
        _alert(
            # A DAG's first failure creates its series with count 1, which increase() cannot see: `unless offset`
            # catches a series that did not exist a window ago.
            "AirflowDagRunFailed",
            f"{by_dag} (increase({failed}[{AIRFLOW_FAILED_WINDOW}])) > 0"
            f" or ({by_dag} ({failed}) unless {by_dag} ({failed} offset {AIRFLOW_FAILED_WINDOW}))",
            for_="0m", severity="warning", runbook=f"{targets.runbooks}/alerts.md#airflow-scheduler-or-dag-runs",
            summary="A run of DAG {{ $labels.dag_id }} failed",
            description=f"At least one run of the DAG failed in the last {AIRFLOW_FAILED_WINDOW}; its task logs are in the "
            "airflow-logs bucket and the Airflow UI.",
        ),
    ]


CERTIFICATE_OVERDUE_HOURS = 24
"""How long past its renewal time a Certificate may go unrenewed: cert-manager retries a failed issuance with a
backoff of 1 h and more, so one day means renewal keeps failing."""
CERTIFICATE_EXPIRY_DAYS = 7
"""Days before expiry at which a certificate pages: every Certificate renews 30 days (or a third of its life) early,
so this is weeks of failed renewals, and what stops working next is named in the alert."""


def _certificate_rules(targets: AlertTargets) -> list[dict]:
    """From cert-manager's controller metrics; the PodMonitor keeps their own `namespace` and `name` labels (the
    Certificate's), so the alerts name the Certificate."""
    runbook = f"{targets.runbooks}/alerts.md#certificates"
    certificate = "{{ $labels.namespace }}/{{ $labels.name }}"
    return [
        _alert(
            "CertificateNotReady",
            'max by (namespace, name) (certmanager_certificate_ready_status{condition!="True"}) == 1',
            for_="15m", severity="warning", runbook=runbook,
            summary=f"Certificate {certificate} is not Ready",
            description="cert-manager could not issue or renew it; the Secret keeps the last certificate until it expires.",
        ),
        _alert(
            "CertificateRenewalOverdue",
            f"time() - max by (namespace, name) (certmanager_certificate_renewal_timestamp_seconds) > {CERTIFICATE_OVERDUE_HOURS * 3600}",
            for_="1h", severity="warning", runbook=runbook,
            summary=f"Certificate {certificate} is more than {CERTIFICATE_OVERDUE_HOURS} h past its renewal time",
            description="Renewal keeps failing; the certificate still works until it expires.",
        ),
        _alert(
            "CertificateExpiresSoon",
            f"min by (namespace, name) (certmanager_certificate_expiration_timestamp_seconds) - time() < {CERTIFICATE_EXPIRY_DAYS * 86400}",
            for_="1h", severity="critical", runbook=runbook,
            summary=f"Certificate {certificate} expires in {{{{ $value | humanizeDuration }}}}",
            description="When it expires its clients refuse the server: Vault for every secret sync and snapshot, or a "
            "front-door host for its users.",
        ),
        _down("CertManagerDown", {"namespace": targets.cert_manager_namespace}, "cert-manager", runbook),
    ]


def alert_groups(targets: AlertTargets) -> list[dict]:
    """The `spec.groups` of the platform's PrometheusRule."""
    groups = [
        {"name": "mlops-storage", "rules": _storage_rules(targets)},
        {"name": "mlops-backups", "rules": _backup_rules(targets)},
        {"name": "mlops-services", "rules": _service_rules(targets)},
    ]
    if targets.serving_namespace:
        groups.append({"name": "mlops-serving", "rules": _serving_rules(targets)})
    if targets.airflow_namespace:
        groups.append({"name": "mlops-airflow", "rules": _airflow_rules(targets)})
    if targets.cert_manager_namespace:
        groups.append({"name": "mlops-certificates", "rules": _certificate_rules(targets)})
    return groups
