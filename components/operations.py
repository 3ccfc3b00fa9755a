"""Day-two operations, built last from the plan and everything above: the backups, the alerts and dashboards that
watch the platform, and the stack outputs (URLs, endpoints, Secret names, and commands that print generated
credentials, which never become outputs themselves)."""

from __future__ import annotations

import pulumi

from components import airflow as airflow_module
from components import backups as backup_jobs
from components import (
    cert_manager,
    mlflow_server,
    model_serving,
    object_store,
    observability,
    postgres_cluster,
    temporal_stack,
    vault_server,
)
from components.airflow.component import AirflowStack
from components.backups import (
    Backups,
    BackupsArgs,
    BackupTarget,
    ObjectMirror,
    PostgresDumps,
    SqliteCopy,
    VaultSnapshots,
)
from components.cluster import ClusterFoundation
from components.config import PROJECT
from components.front_door import FrontDoor
from components.mlflow_server import MlflowServer
from components.model_serving import ModelServing
from components.monitoring import AlertTargets, PlatformMonitoringArgs
from components.object_store import ObjectStore
from components.observability import ObservabilityStack
from components.plan import PlatformPlan
from components.postgres_cluster import PostgresCluster
from components.redis import Redis
from components.secret_sync import SNAPSHOT_ACCOUNT, SNAPSHOT_ROLE
from components.temporal_stack import TemporalStack
from components.vault_server import VaultServer

# --- Backups and monitoring -------------------------------------------------------------------------------------


def backups_args(
    plan: PlatformPlan,
    foundation: ClusterFoundation,
    store: ObjectStore,
    postgres: PostgresCluster,
    mlflow: MlflowServer,
    vault: VaultServer | None,
) -> BackupsArgs:
    config = plan.config
    schedules = config.backups
    namespaces, credentials = foundation.namespaces, store.credentials_secrets
    jobs = ("postgres-logical", "mlflow-sqlite", "objects-mirror", "vault-snapshot")
    dumps, sqlite, mirror, snapshots = (plan.backups.get(job) for job in jobs)
    return BackupsArgs(
        target=BackupTarget(
            bucket=store.bucket_names[backup_jobs.BUCKET],
            engine=config.object_store.engine,
            endpoint=store.endpoint,
            region=store.region,
            retention_days=schedules.retention_days,
        ),
        postgres=PostgresDumps(
            namespace=namespaces[dumps.namespace],
            database_secrets=postgres.database_secrets,
            credentials_secret=credentials[dumps.consumer],
            schedule=schedules.logical_schedule,
        )
        if dumps
        else None,
        sqlite=SqliteCopy(
            namespace=namespaces[sqlite.namespace],
            claim_name=mlflow.data_claim,
            credentials_secret=credentials[sqlite.consumer],
            schedule=schedules.sqlite_schedule,
        )
        if sqlite
        else None,
        mirror=ObjectMirror(
            namespace=namespaces[mirror.namespace],
            buckets={bucket: name for bucket, name in store.bucket_names.items() if bucket != backup_jobs.BUCKET},
            credentials_secret=credentials[mirror.consumer],
            schedule=schedules.mirror_schedule,
        )
        if mirror
        else None,
        vault=VaultSnapshots(
            namespace=namespaces[snapshots.namespace],
            address=vault.address,
            role=SNAPSHOT_ROLE,
            service_account=SNAPSHOT_ACCOUNT,
            ca_secret=vault.ca_secret,
            credentials_secret=credentials[snapshots.consumer],
            schedule=config.vault.snapshot_schedule,
        )
        if snapshots and vault
        else None,
    )


def monitoring_args(
    plan: PlatformPlan, foundation: ClusterFoundation, observability_stack: ObservabilityStack, backups: Backups
) -> PlatformMonitoringArgs:
    """The alerts and dashboards watch every namespace, each backup CronJob and each monitored component."""
    config = plan.config
    names = plan.namespace_names()
    return PlatformMonitoringArgs(
        namespace=foundation.namespaces[observability.NAMESPACE],
        metrics_ready=observability_stack.ready,
        targets=AlertTargets(
            platform_namespaces=tuple(names.values()),
            backups=backups.runs,
            mlflow_namespace=names[mlflow_server.NAMESPACE],
            temporal_namespace=names[temporal_stack.NAMESPACE],
            postgres_namespace=names[postgres_cluster.NAMESPACE],
            postgres_cluster=postgres_cluster.CLUSTER,
            base_backup_schedule=config.backups.base_backup_schedule if plan.has("cnpg-backup") else None,
            minio_namespace=names[object_store.NAMESPACE] if plan.monitors("objects") else None,
            vault_namespace=names[vault_server.NAMESPACE] if plan.monitors("vault") else None,
            serving_namespace=names[model_serving.NAMESPACE] if plan.monitors("serving") else None,
            airflow_namespace=names[airflow_module.NAMESPACE] if plan.monitors("airflow") else None,
            cert_manager_namespace=names[cert_manager.NAMESPACE] if plan.monitors("cert-manager") else None,
        ),
    )


# --- Stack outputs ----------------------------------------------------------------------------------------------


def _read_secret_command(plan: PlatformPlan, namespace: pulumi.Input[str], secret: pulumi.Input[str], output: str) -> pulumi.Output[str]:
    """The kubectl command that prints a generated credential (it never becomes a stack output itself)."""
    return pulumi.Output.concat(
        "kubectl --context ", plan.config.kube_context, " -n ", namespace, " get secret ", secret, f" -o {output}"
    )


def export_outputs(
    plan: PlatformPlan,
    *,
    foundation: ClusterFoundation,
    observability_stack: ObservabilityStack | None,
    store: ObjectStore,
    postgres: PostgresCluster,
    redis: Redis,
    mlflow: MlflowServer,
    serving: ModelServing | None,
    temporal: TemporalStack,
    backups: Backups,
    airflow: AirflowStack | None = None,
    front_door: FrontDoor | None = None,
) -> None:
    """What users need: URLs, endpoints, Secret names, and commands that print generated credentials."""
    namespaces = foundation.namespaces
    admin_password = "jsonpath='{.data.admin-password}' | base64 -d"
    if observability_stack:
        pulumi.export("grafana_url", observability_stack.grafana_url)
        pulumi.export(
            "grafana_admin_password_command",
            _read_secret_command(plan, namespaces[observability.NAMESPACE], observability_stack.grafana_admin_secret, admin_password),
        )
    pulumi.export("namespaces", namespaces)
    pulumi.export("mlflow_url", mlflow.url)
    if mlflow.auth_secret is not None:
        pulumi.export(
            "mlflow_admin_password_command",
            _read_secret_command(plan, namespaces[mlflow_server.NAMESPACE], mlflow.auth_secret, admin_password),
        )
    if serving is not None:
        # In-cluster prediction URLs by served model; from the laptop (dev) local_urls.serving is the first model.
        pulumi.export("serving_urls", serving.urls)
    if mlflow.migration_job is not None:
        pulumi.export(
            "mlflow_migration_log_command",
            pulumi.Output.concat(
                "kubectl --context ", plan.config.kube_context, " -n ", namespaces[mlflow_server.NAMESPACE],
                " logs job/", mlflow.migration_job, " -c migrate",
            ),
        )
    pulumi.export("s3_endpoint", store.endpoint)
    pulumi.export("buckets", store.bucket_names)
    pulumi.export("postgres_host", postgres.host)
    pulumi.export("postgres_secrets", postgres.database_secrets)
    pulumi.export("redis_url_secret", redis.secret_name)
    pulumi.export("temporal_address", temporal.frontend_address)
    pulumi.export("temporal_ui_url", temporal.ui_url)
    if airflow is not None:
        pulumi.export("airflow_url", airflow.url)
        pulumi.export(
            "airflow_admin_password_command",
            _read_secret_command(plan, namespaces[airflow_module.NAMESPACE], airflow.admin_secret, "jsonpath='{.data.password}' | base64 -d"),
        )
    pulumi.export("backup_cron_jobs", backups.cron_jobs)
    if plan.config.object_store.engine == "minio":
        every_key = "go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{\"\\n\"}}{{end}}'"
        pulumi.export("minio_credentials_command", _read_secret_command(plan, namespaces[object_store.NAMESPACE], "minio-root", every_key))
    pulumi.export("local_urls", {role: f"http://localhost:{planned.node_port}" for role, planned in plan.node_ports.items()})
    if front_door is not None:
        pulumi.export("public_urls", front_door.urls)
        if front_door.model_keys_secret is not None:
            pulumi.export(
                "model_api_key_command",
                _read_secret_command(
                    plan, namespaces[model_serving.NAMESPACE], front_door.model_keys_secret, "jsonpath='{.data.platform}' | base64 -d"
                ),
            )


def export_vault_install_steps(plan: PlatformPlan, foundation: ClusterFoundation) -> None:
    """The install phase of a Vault stack: only Vault exists; say exactly what to run next."""
    pulumi.export("namespaces", foundation.namespaces)
    pulumi.export(
        "next_steps",
        "Vault is deploying. Initialise and unseal it (docs/runbooks/vault-bootstrap.md), then "
        f"`pulumi config set --secret {PROJECT}:vaultToken <root token>`, fetch Vault's CA into vault.caCertFile "
        f"(`kubectl -n {plan.namespaces['vault'].name} get secret {vault_server.TLS_SECRET} -o jsonpath='{{.data.ca\\.crt}}' "
        f"| base64 -d > {plan.config.vault.ca_cert_file}`), set vault.phase: configure in "
        f"Pulumi.{plan.config.stack}.yaml and run `pulumi up` again.",
    )
    pulumi.log.warn("vault.phase is install: only Vault was declared; the stack output next_steps says what to run next.")
