"""Builders: each turns the platform plan, and the components already built, into one component's typed args
(those of the backups and the monitoring are in components/operations.py).

They decide nothing. What exists, where it runs, who may use which bucket and database, and which NodePorts and
flows there are comes from the plan (components/plan.py); sizes, schedules and resources from the typed config it
carries. The secrets a stack keeps in its config (`pulumi config set --secret`) are read here, as Pulumi secrets.
"""

from __future__ import annotations

import pulumi

from components import (
    airflow,
    cert_manager,
    cnpg_operator,
    front_door,
    mlflow_server,
    model_serving,
    object_store,
    observability,
    postgres_cluster,
    redis,
    secret_sync,
    temporal_stack,
    vault_server,
)
from components import backups as backup_jobs
from components.airflow.component import AirflowStackArgs
from components.cert_manager import CertManager, CertManagerArgs
from components.cluster import ClusterFoundation, ClusterFoundationArgs
from components.cnpg_backup_plugin import CnpgBackupPlugin, CnpgBackupPluginArgs
from components.cnpg_operator import CnpgOperator, CnpgOperatorArgs
from components.config import TEMPORAL_DATABASES
from components.front_door import FrontDoorArgs, Oidc
from components.mlflow_server import (
    MlflowServer,
    MlflowServerArgs,
    PostgresBackend,
    SqliteBackend,
)
from components.model_serving import MlflowReader, ModelServingArgs, ServedModelArgs
from components.network_policies import NetworkPoliciesArgs
from components.object_store import BucketConsumer, MinioSettings, ObjectStore, ObjectStoreArgs, R2Settings, S3Settings
from components.observability import GrafanaSso, ObservabilityStack, ObservabilityStackArgs
from components.plan import PlatformPlan
from components.postgres_cluster import ContinuousBackup, Database, PostgresCluster, PostgresClusterArgs
from components.redis import RedisArgs
from components.secret_store import SecretStore
from components.secret_sync import SecretSyncArgs, VaultCa
from components.temporal_stack import ChartEngine, DevEngine, SqlStore, TemporalStackArgs
from components.vault_server import KmsUnseal, VaultServer, VaultServerArgs


def _public_host(plan: PlatformPlan, host: str) -> str | None:
    """`<host>.<domain>` when the front door publishes `host`, else None."""
    door = plan.config.front_door
    return front_door.fqdn(host, door.domain) if any(route.host == host for route in plan.routes) else None


def _oidc_client_secret() -> pulumi.Output[str]:
    return pulumi.Config().require_secret("oidcClientSecret")


def _metrics_ready(plan: PlatformPlan, component: str, stack: ObservabilityStack | None) -> pulumi.Resource | None:
    """The release installing the Prometheus CRDs, for a component Prometheus scrapes; None otherwise."""
    return stack.ready if stack and plan.monitors(component) else None


# --- Foundation and secrets -------------------------------------------------------------------------------------


def foundation_args(plan: PlatformPlan) -> ClusterFoundationArgs:
    config = plan.config
    return ClusterFoundationArgs(
        namespaces=plan.namespace_names(),
        storage=config.storage,
        protect=config.protect_state,
        pod_security={role: namespace.pod_security.level for role, namespace in plan.namespaces.items()},
    )


def cert_manager_args(plan: PlatformPlan, foundation: ClusterFoundation) -> CertManagerArgs:
    return CertManagerArgs(namespace=foundation.namespaces[cert_manager.NAMESPACE], gateway_api=plan.has("front-door"))


def vault_args(plan: PlatformPlan, foundation: ClusterFoundation, certificates: CertManager | None) -> VaultServerArgs:
    config = plan.config
    cloud = config.object_store
    if certificates is None:
        raise ValueError("Vault serves TLS with a certificate from cert-manager: build cert-manager before Vault")
    return VaultServerArgs(
        namespace=foundation.namespaces[vault_server.NAMESPACE],
        config=config.vault,
        storage_class=foundation.storage_class,
        cert_manager=certificates.ready,
        kms_unseal=KmsUnseal(region=cloud.region, name_prefix=cloud.bucket_prefix) if config.vault.auto_unseal else None,
        protect=config.protect_state,
    )


def network_args(plan: PlatformPlan, foundation: ClusterFoundation) -> NetworkPoliciesArgs:
    return NetworkPoliciesArgs(
        namespaces=foundation.namespaces, namespace_names=plan.namespace_names(), flows=plan.flows, egress=plan.egress
    )


def secret_sync_args(plan: PlatformPlan, foundation: ClusterFoundation, vault: VaultServer | None) -> SecretSyncArgs:
    config = plan.config
    names = plan.namespace_names()
    return SecretSyncArgs(
        namespace=foundation.namespaces[secret_sync.NAMESPACE],
        config=config.vault,
        stack=config.stack,
        token=pulumi.Config().require_secret("vaultToken"),
        cluster_address=vault.address if vault else config.vault.cluster_address,
        cluster_ca=VaultCa(names[vault_server.NAMESPACE], vault.ca_secret, vault_server.CA_KEY) if vault else None,
        # Every namespace that receives secrets; the operator's own receives none.
        consumer_namespaces={role: name for role, name in names.items() if role != secret_sync.NAMESPACE},
        vault_namespace=names[vault_server.NAMESPACE] if vault else None,
        after=(vault.release,) if vault else (),
        protect=config.protect_state,
    )


# --- Storage and observability ----------------------------------------------------------------------------------


def observability_args(
    plan: PlatformPlan, foundation: ClusterFoundation, secrets: SecretStore, store: ObjectStore | None = None
) -> ObservabilityStackArgs:
    """With a cloud object store Loki keeps its chunks in its bucket, so `store` must be built first."""
    config = plan.config
    watched = config.observability
    loki = plan.consumer(observability.LOKI_CONSUMER)
    if loki and store is None:
        raise ValueError("Loki keeps its chunks in a bucket: build the object store before observability")
    return ObservabilityStackArgs(
        namespace=foundation.namespaces[observability.NAMESPACE],
        node_metrics_namespace=foundation.namespaces[observability.NODE_METRICS_NAMESPACE],
        config=watched,
        storage_class=foundation.storage_class,
        loki_objects=store.access(loki.consumer) if loki and store else None,
        receiver_url=pulumi.Config().require_secret("alertmanagerReceiverUrl") if watched.alerting.receiver != "none" else None,
        node_ports={role: planned.node_port for role, planned in plan.node_ports.items() if planned.component == "observability"},
        protect=config.protect_state,
        secrets=secrets,
        grafana_sso=_grafana_sso(plan),
    )


def _grafana_sso(plan: PlatformPlan) -> GrafanaSso | None:
    """Grafana's own sign-in with the front door's provider, when the front door publishes Grafana."""
    host = _public_host(plan, "grafana")
    oidc = plan.config.front_door.oidc
    if host is None or oidc is None:
        return None
    return GrafanaSso(
        root_url=f"https://{host}",
        client_id=oidc.client_id,
        client_secret=_oidc_client_secret(),
        authorization_url=oidc.authorization_url or "",
        token_url=oidc.token_url or "",
        userinfo_url=oidc.userinfo_url or "",
    )


def object_store_args(
    plan: PlatformPlan,
    foundation: ClusterFoundation,
    secrets: SecretStore,
    observability_stack: ObservabilityStack | None,
) -> ObjectStoreArgs:
    config = plan.config
    cloud = config.object_store
    return ObjectStoreArgs(
        engine=cloud.engine,
        namespace=foundation.namespaces.get(object_store.NAMESPACE),
        buckets=plan.buckets,
        region=cloud.region,
        # Each workload that talks to the object store gets its own credentials, scoped to the buckets it needs.
        consumers=tuple(
            BucketConsumer(use.consumer, foundation.namespaces[use.namespace], use.buckets) for use in plan.bucket_consumers
        ),
        minio=MinioSettings(
            size=cloud.size,
            storage_class=foundation.storage_class,
            resources=cloud.resources,
            api_node_port=plan.node_port("minioApi"),
            console_node_port=plan.node_port("minioConsole"),
            metrics_after=_metrics_ready(plan, "objects", observability_stack),
        )
        if cloud.engine == "minio"
        else None,
        s3=S3Settings(cloud.bucket_prefix, cloud.retention, cloud.kms_key_arn) if cloud.engine == "s3" else None,
        r2=R2Settings(
            account_id=cloud.account_id,
            bucket_prefix=cloud.bucket_prefix,
            retention=cloud.retention,
            access_key_id=pulumi.Config().require_secret("r2AccessKeyId"),
            secret_access_key=pulumi.Config().require_secret("r2SecretAccessKey"),
        )
        if cloud.engine == "r2"
        else None,
        protect=config.protect_state,
        secrets=secrets,
    )


# --- Data -------------------------------------------------------------------------------------------------------


def cnpg_args(foundation: ClusterFoundation) -> CnpgOperatorArgs:
    return CnpgOperatorArgs(namespace=foundation.namespaces[cnpg_operator.NAMESPACE])


def backup_plugin_args(foundation: ClusterFoundation, operator: CnpgOperator, certificates: CertManager) -> CnpgBackupPluginArgs:
    return CnpgBackupPluginArgs(
        operator_namespace=foundation.namespaces[cnpg_operator.NAMESPACE],
        operator=operator.ready,
        cert_manager=certificates.ready,
    )


def _continuous_backup(plan: PlatformPlan, plugin: CnpgBackupPlugin, store: ObjectStore) -> ContinuousBackup:
    config = plan.config
    recovery = config.postgres.recovery
    return ContinuousBackup(
        plugin=plugin.ready,
        destination=pulumi.Output.concat("s3://", store.bucket_names[backup_jobs.BUCKET], "/cnpg"),
        endpoint=store.endpoint,
        credentials_secret=store.credentials_secrets[backup_jobs.POSTGRES_CONSUMER],
        retention=config.backups.continuous_retention,
        schedule=config.backups.base_backup_schedule,
        s3_compatible=config.object_store.engine != "s3",
        recover_from=recovery.source_cluster if recovery else None,
        recovery_target_time=recovery.target_time if recovery else "",
    )


def postgres_args(
    plan: PlatformPlan,
    foundation: ClusterFoundation,
    secrets: SecretStore,
    operator: CnpgOperator,
    plugin: CnpgBackupPlugin | None,
    store: ObjectStore,
    observability_stack: ObservabilityStack | None,
) -> PostgresClusterArgs:
    config = plan.config
    metrics_ready = _metrics_ready(plan, "postgres", observability_stack)
    return PostgresClusterArgs(
        namespace=foundation.namespaces[postgres_cluster.NAMESPACE],
        operator=operator.ready,
        instances=config.postgres.instances,
        size=config.postgres.size,
        storage_class=foundation.storage_class,
        resources=config.postgres.resources,
        databases=tuple(
            Database(database.name, tuple(foundation.namespaces[role] for role in database.consumers))
            for database in plan.databases
        ),
        node_port=plan.node_port("postgres"),
        # The plugin is also there for cert-manager alone (the front door): archiving only with backups.continuous.
        continuous_backup=_continuous_backup(plan, plugin, store) if plugin and config.backups.continuous else None,
        protect=config.protect_state,
        secrets=secrets,
        metrics_after=[metrics_ready] if metrics_ready else None,
    )


def redis_args(plan: PlatformPlan, foundation: ClusterFoundation, secrets: SecretStore) -> RedisArgs:
    config = plan.config
    return RedisArgs(
        namespace=foundation.namespaces[redis.NAMESPACE],
        size=config.redis.size,
        storage_class=foundation.storage_class,
        resources=config.redis.resources,
        node_port=plan.node_port("redis"),
        protect=config.protect_state,
        secrets=secrets,
    )


# --- Apps -------------------------------------------------------------------------------------------------------


def mlflow_args(
    plan: PlatformPlan,
    foundation: ClusterFoundation,
    secrets: SecretStore,
    postgres: PostgresCluster,
    store: ObjectStore,
    observability_stack: ObservabilityStack | None,
) -> MlflowServerArgs:
    config = plan.config
    mlflow = config.mlflow
    return MlflowServerArgs(
        namespace=foundation.namespaces[mlflow_server.NAMESPACE],
        backend=PostgresBackend(
            secret=postgres.database_secrets[mlflow_server.TRACKING_DATABASE],
            auth_database_uri=postgres.sqlalchemy_uris[mlflow_server.AUTH_DATABASE] if mlflow.auth else None,
        )
        if mlflow.engine == "postgres"
        else SqliteBackend(size=mlflow.size, storage_class=foundation.storage_class),
        # The claim the sqlite engine left, as that engine declares it (the same `size`): it is kept, not recreated.
        migrate_from=SqliteBackend(size=mlflow.size, storage_class=foundation.storage_class) if mlflow.migrate_from == "sqlite" else None,
        artifacts=store.access(mlflow_server.CONSUMER, mlflow.artifact_bucket),
        resources=mlflow.resources,
        replicas=mlflow.replicas,
        workers=mlflow.workers,
        node_port=plan.node_port("mlflow"),
        public_host=_public_host(plan, "mlflow"),
        protect=config.protect_state,
        secrets=secrets,
        metrics_after=_metrics_ready(plan, "mlflow", observability_stack),
    )


def temporal_args(
    plan: PlatformPlan,
    foundation: ClusterFoundation,
    postgres: PostgresCluster,
    observability_stack: ObservabilityStack | None,
) -> TemporalStackArgs:
    config = plan.config
    temporal = config.temporal
    if temporal.engine == "chart":
        default_db, visibility_db = TEMPORAL_DATABASES
        engine: ChartEngine | DevEngine = ChartEngine(
            host=postgres.host,
            port=postgres.port,
            default_store=SqlStore(default_db, postgres.database_secrets[default_db]),
            visibility_store=SqlStore(visibility_db, postgres.database_secrets[visibility_db]),
            num_history_shards=temporal.num_history_shards,
            replicas=temporal.replicas,
        )
    else:
        engine = DevEngine(
            size=temporal.size,
            storage_class=foundation.storage_class,
            grpc_node_port=plan.node_port("temporalGrpc"),
            ui_node_port=plan.node_port("temporalUi"),
        )
    return TemporalStackArgs(
        namespace=foundation.namespaces[temporal_stack.NAMESPACE],
        engine=engine,
        resources=temporal.resources,
        protect=config.protect_state,
        depends_on=(postgres,),
        metrics_after=_metrics_ready(plan, "temporal", observability_stack),
    )


def serving_args(
    plan: PlatformPlan,
    foundation: ClusterFoundation,
    secrets: SecretStore,
    mlflow: MlflowServer,
    observability_stack: ObservabilityStack | None,
) -> ModelServingArgs:
    """Each listed model, the first on the serving NodePort; with MLflow auth, the read-only user made with the
    admin's login."""
    config = plan.config
    names = plan.namespace_names()
    node_port = plan.node_port(model_serving.NODE_PORT)
    return ModelServingArgs(
        namespace=foundation.namespaces[model_serving.NAMESPACE],
        tracking_uri=f"http://{mlflow_server.SERVICE_NAME}.{names[mlflow_server.NAMESPACE]}.svc.cluster.local:{mlflow_server.PORT}",
        models=tuple(
            ServedModelArgs(
                name=served.name, model=served.model, alias=served.alias, resources=served.resources,
                replicas=served.replicas, node_port=node_port if index == 0 else None,
            )
            for index, served in enumerate(config.serving.models)
        ),
        reader=MlflowReader(
            namespace=foundation.namespaces[mlflow_server.NAMESPACE], admin_secret=mlflow.auth_secret, after=mlflow
        )
        if mlflow.auth_secret is not None
        else None,
        secrets=secrets,
        metrics_after=_metrics_ready(plan, "serving", observability_stack),
    )


def airflow_args(
    plan: PlatformPlan,
    foundation: ClusterFoundation,
    secrets: SecretStore,
    postgres: PostgresCluster,
    store: ObjectStore,
    observability_stack: ObservabilityStack | None,
) -> AirflowStackArgs:
    """Airflow on its database, its logs in its bucket with its own scoped credentials, its tasks logging to MLflow."""
    config = plan.config
    names = plan.namespace_names()
    settings = config.airflow
    return AirflowStackArgs(
        namespace=foundation.namespaces[airflow.NAMESPACE],
        namespace_name=names[airflow.NAMESPACE],
        database_secret=postgres.database_secrets[airflow.DATABASE],
        logs=store.access(airflow.CONSUMER),
        mlflow_tracking_uri=f"http://{mlflow_server.SERVICE_NAME}.{names[mlflow_server.NAMESPACE]}.svc.cluster.local:{mlflow_server.PORT}",
        resources=settings.resources,
        executor=settings.executor,
        parallelism=settings.parallelism,
        dags_git=settings.dags.git,
        nfs_logs=settings.logs.nfs,
        node_port=plan.node_port(airflow.NODE_PORT),
        after=(postgres,),
        secrets=secrets,
        metrics_after=_metrics_ready(plan, "airflow", observability_stack),
        protect=config.protect_state,
    )


# --- The front door ---------------------------------------------------------------------------------------------


def front_door_args(
    plan: PlatformPlan, foundation: ClusterFoundation, secrets: SecretStore, certificates: CertManager | None
) -> FrontDoorArgs:
    config = plan.config
    door = config.front_door
    if certificates is None:
        raise ValueError("the front door's certificates come from cert-manager: build cert-manager before it")
    return FrontDoorArgs(
        namespace=foundation.namespaces[front_door.NAMESPACE],
        namespaces=foundation.namespaces,
        namespace_names=plan.namespace_names(),
        config=door,
        routes=plan.routes,
        oidc=Oidc(
            issuer=door.oidc.issuer, client_id=door.oidc.client_id, client_secret=_oidc_client_secret(),
            authorization_url=door.oidc.authorization_url, token_url=door.oidc.token_url,
        ),
        cert_manager=certificates.ready,
        secrets=secrets,
    )
