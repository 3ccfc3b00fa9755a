"""mlops-platform: load the stack's typed config, compose the platform's components, export what users need."""

from dataclasses import replace

import pulumi

from components.backups import (
    Backups,
    BackupsArgs,
    BackupTarget,
    ObjectMirror,
    PostgresDumps,
    SqliteCopy,
    VaultSnapshots,
)
from components.cluster import ClusterFoundation, ClusterFoundationArgs
from components.cnpg_backup_plugin import CnpgBackupPlugin, CnpgBackupPluginArgs
from components.cnpg_operator import CnpgOperator, CnpgOperatorArgs
from components.config import MLFLOW_DATABASES, PROJECT, TEMPORAL_DATABASES, load_stack_config
from components.mlflow_server import (
    ArtifactStore,
    Ingress,
    MlflowServer,
    MlflowServerArgs,
    PostgresBackend,
    SqliteBackend,
)
from components.monitoring import AlertTargets, PlatformMonitoring, PlatformMonitoringArgs
from components.network_policies import ANYWHERE, Flow, NetworkPolicies, NetworkPoliciesArgs
from components.object_store import BucketConsumer, MinioSettings, ObjectStore, ObjectStoreArgs, R2Settings, S3Settings
from components.observability import LokiObjectStorage, ObservabilityStack, ObservabilityStackArgs
from components.postgres_cluster import ContinuousBackup, Database, PostgresCluster, PostgresClusterArgs
from components.providers import cloud_providers, kubernetes_provider
from components.redis import Redis, RedisArgs
from components.secret_store import KubernetesSecrets, SecretStore
from components.secret_sync import SNAPSHOT_ACCOUNT, SNAPSHOT_ROLE, SecretSync, SecretSyncArgs
from components.temporal_stack import ChartEngine, DevEngine, SqlStore, TemporalStack, TemporalStackArgs
from components.vault_server import KmsUnseal, VaultServer, VaultServerArgs

config = load_stack_config()
secrets = pulumi.Config()
platform = pulumi.ResourceOptions(providers=[kubernetes_provider(config), *cloud_providers(config)])
ports = config.node_ports
cloud = config.object_store

foundation = ClusterFoundation(
    "cluster",
    ClusterFoundationArgs(
        namespaces={role: config.namespace(role) for role in config.namespace_roles},
        storage=config.storage,
        protect=config.protect_state,
        pod_security={
            # Third-party chart pods (Grafana, Loki, Alloy, kube-state-metrics, the webhook certificate Job) are
            # hardened through values, but their defaults move between chart versions and no cluster here can
            # prove each meets restricted: baseline is enforced, restricted audited and warned about.
            "observability": "baseline",
            # node-exporter reads the host's network, PIDs and root filesystem; nothing else runs here.
            "node-metrics": "privileged",
            # The Vault and External Secrets charts' pods, like the observability ones: hardened by their charts,
            # not proven restricted here.
            "vault": "baseline",
            "external-secrets": "baseline",
        },
    ),
    opts=platform,
)
namespaces = foundation.namespaces
observe = config.observability

# Ports behind each dev NodePort: host traffic arrives from the node, not from a pod, so it is admitted from anywhere.
NODE_PORT_TARGETS = {
    "minioApi": ("storage", 9000), "minioConsole": ("storage", 9001), "mlflow": ("mlflow", 5000),
    "postgres": ("data", 5432), "redis": ("data", 6379), "temporalGrpc": ("temporal", 7233),
    "temporalUi": ("temporal", 8233), "prometheus": ("observability", 9090), "grafana": ("observability", 3000),
    "loki": ("observability", 3100),
}
POSTGRES_PODS = {"cnpg.io/cluster": "postgres"}


def platform_flows() -> tuple[Flow, ...]:
    """Every ingress flow between namespaces (traffic within a namespace is always admitted)."""
    roles = set(config.namespace_roles)
    postgres_clients = (
        ("mlflow",) if config.mlflow.engine == "postgres" else ()) + (("temporal",) if config.temporal.engine == "chart" else ())
    flows = [
        Flow("mlflow-clients", "mlflow", (5000,), ("clients",),
             source_namespaces=(config.mlflow.ingress.controller_namespace,) if config.mlflow.ingress else ()),
        Flow("postgres-clients", "data", (5432,), (*postgres_clients, "clients"), pods=POSTGRES_PODS),
        # The operator manages each instance through its status port and the plugin's sidecar.
        Flow("postgres-operator", "data", (), ("cnpg",), pods=POSTGRES_PODS),
        Flow("redis-clients", "data", (6379,), ("clients",), pods={"app.kubernetes.io/name": "redis"}),
        Flow("temporal-clients", "temporal", (7233,), ("clients",)),
        # Admission webhooks are called by the API server, which is not a pod.
        Flow("cnpg-webhook", "cnpg", (9443,), (ANYWHERE,)),
    ]
    if "storage" in roles:
        # Every namespace with a bucket consumer (Vault's snapshot job uploads too), and Prometheus scraping MinIO.
        vault_backup = ("vault",) if config.vault and config.vault.deploy else ()
        s3_users = ("mlflow", "data", *vault_backup, *(("observability",) if observe.enabled else ()))
        flows.append(Flow("s3-clients", "storage", (9000,), (*s3_users, "clients")))
    if "cert-manager" in roles:
        flows.append(Flow("cert-manager-webhook", "cert-manager", (10250,), (ANYWHERE,)))
    if observe.enabled:
        flows.append(Flow("operator-webhook", "observability", (10250,), (ANYWHERE,)))
        # Prometheus scrapes every namespace's metrics ports.
        flows += [
            Flow("prometheus-scrape", role, (), ("observability",), source_pods={"app.kubernetes.io/name": "prometheus"})
            for role in sorted(roles - {"observability"})
        ]
    if config.vault:
        # The sync operator reads Vault; its admission webhook is called by the API server.
        flows.append(Flow("vault-readers", "vault", (8200,), ("external-secrets",)))
        flows.append(Flow("external-secrets-webhook", "external-secrets", (10250,), (ANYWHERE,)))
    for role, node_port in sorted(ports.items()):
        namespace, target = NODE_PORT_TARGETS[role]
        flows.append(Flow(f"node-port-{node_port}", namespace, (target,), (ANYWHERE,)))
    # Only namespaces this phase creates (no observability when it is off, only Vault while installing it).
    existing = [
        replace(flow, sources=tuple(s for s in flow.sources if s in roles or s in ("clients", ANYWHERE)))
        for flow in flows
        if flow.namespace in roles
    ]
    # A flow none of whose sources exist is dropped: a policy with an empty `from` admits every source.
    return tuple(flow for flow in existing if flow.sources)


vault_server = (
    VaultServer(
        "vault",
        VaultServerArgs(
            namespace=namespaces["vault"],
            config=config.vault,
            storage_class=foundation.storage_class,
            kms_unseal=KmsUnseal(region=cloud.region, name_prefix=cloud.bucket_prefix) if config.vault.auto_unseal else None,
            protect=config.protect_state,
        ),
        opts=platform,
    )
    if config.vault and config.vault.deploy
    else None
)

NetworkPolicies(
    "network",
    NetworkPoliciesArgs(
        namespaces=namespaces,
        namespace_names={role: config.namespace(role) for role in config.namespace_roles},
        flows=platform_flows(),
    ),
    opts=platform,
)


def secret_store() -> SecretStore:
    """Kubernetes Secrets, or Vault synced by External Secrets: the one choice every component's secrets follow."""
    if not config.vault:
        return KubernetesSecrets()
    vault = config.vault
    sync = SecretSync(
        "secrets",
        SecretSyncArgs(
            namespace=namespaces["external-secrets"],
            config=vault,
            stack=config.stack,
            token=secrets.require_secret("vaultToken"),
            cluster_address=vault_server.address if vault_server else vault.cluster_address,
            # Every namespace that receives secrets; the operator's own receives none.
            consumer_namespaces={role: config.namespace(role) for role in config.namespace_roles if role != "external-secrets"},
            vault_namespace=config.namespace("vault") if vault.deploy else None,
            after=(vault_server.release,) if vault_server else (),
            protect=config.protect_state,
        ),
        opts=platform,
    )
    return sync.store


def compose_platform(store_secrets: SecretStore) -> None:
    """Everything but the cluster foundation and Vault, whose secrets go through `store_secrets`."""

    def observability_stack(loki_objects: LokiObjectStorage | None) -> ObservabilityStack:
        return ObservabilityStack(
            "observability",
            ObservabilityStackArgs(
                namespace=namespaces["observability"],
                node_metrics_namespace=namespaces["node-metrics"],
                config=observe,
                storage_class=foundation.storage_class,
                loki_objects=loki_objects,
                receiver_url=secrets.require_secret("alertmanagerReceiverUrl") if observe.alerting.receiver != "none" else None,
                node_ports={role: port for role, port in ports.items() if role in ("prometheus", "grafana", "loki")},
                protect=config.protect_state,
                secrets=store_secrets,
            ),
            opts=platform,
        )


    # With the in-cluster engine Loki keeps logs on its own claim, so observability comes first and MinIO is scraped;
    # with a cloud engine Loki needs the store's bucket and credentials, so it comes right after the store.
    observability = observability_stack(None) if observe.enabled and cloud.engine == "minio" else None

    # Each workload that talks to the object store gets its own credentials, scoped to the buckets it needs.
    mirror_objects = cloud.engine != "s3"  # S3 versioning and lifecycle already undo deletes; MinIO and R2 have neither
    sqlite_backup = config.mlflow.engine == "sqlite"
    consumers = (
        BucketConsumer("mlflow", namespaces["mlflow"], (config.mlflow.artifact_bucket,)),
        BucketConsumer("postgres-backup", namespaces["data"], ("backups",)),
        *([BucketConsumer("mlflow-backup", namespaces["mlflow"], ("backups",))] if sqlite_backup else []),
        *([BucketConsumer("object-mirror", namespaces["data"], cloud.buckets)] if mirror_objects else []),
        *([BucketConsumer("loki", namespaces["observability"], (observe.loki.bucket,))] if observe.enabled and cloud.engine != "minio" else []),
        *([BucketConsumer("vault-backup", namespaces["vault"], ("backups",))] if vault_server else []),
    )
    store = ObjectStore(
        "objects",
        ObjectStoreArgs(
            engine=config.object_store.engine,
            namespace=namespaces.get("storage"),
            buckets=config.object_store.buckets,
            region=config.object_store.region,
            consumers=consumers,
            minio=MinioSettings(
                size=cloud.size,
                storage_class=foundation.storage_class,
                resources=cloud.resources,
                api_node_port=ports.get("minioApi"),
                console_node_port=ports.get("minioConsole"),
                metrics_after=observability.ready if observability else None,
            )
            if cloud.engine == "minio"
            else None,
            s3=S3Settings(bucket_prefix=cloud.bucket_prefix, retention=cloud.retention, kms_key_arn=cloud.kms_key_arn)
            if cloud.engine == "s3"
            else None,
            r2=R2Settings(
                account_id=cloud.account_id,
                bucket_prefix=cloud.bucket_prefix,
                retention=cloud.retention,
                access_key_id=secrets.require_secret("r2AccessKeyId"),
                secret_access_key=secrets.require_secret("r2SecretAccessKey"),
            )
            if cloud.engine == "r2"
            else None,
            protect=config.protect_state,
            secrets=store_secrets,
        ),
        opts=platform,
    )

    if observe.enabled and observability is None:
        observability = observability_stack(
            LokiObjectStorage(
                bucket=store.bucket_names[observe.loki.bucket],
                endpoint=store.endpoint,
                region=store.region,
                credentials_secret=store.credentials_secrets["loki"],
            )
        )
    metrics_ready = observability.ready if observability else None

    operator = CnpgOperator("cnpg", CnpgOperatorArgs(namespace=namespaces["cnpg"]), opts=platform)

    temporal_on_postgres = config.temporal.engine == "chart"
    continuous_backup = None
    if config.backups.continuous:
        plugin = CnpgBackupPlugin(
            "cnpg-backup",
            CnpgBackupPluginArgs(operator_namespace=namespaces["cnpg"], cert_manager_namespace=namespaces["cert-manager"], operator=operator.ready),
            opts=platform,
        )
        recovery = config.postgres.recovery
        continuous_backup = ContinuousBackup(
            plugin=plugin.ready,
            destination=pulumi.Output.concat("s3://", store.bucket_names["backups"], "/cnpg"),
            endpoint=store.endpoint,
            credentials_secret=store.credentials_secrets["postgres-backup"],
            retention=config.backups.continuous_retention,
            schedule=config.backups.base_backup_schedule,
            s3_compatible=cloud.engine != "s3",
            recover_from=recovery.source_cluster if recovery else None,
            recovery_target_time=recovery.target_time if recovery else "",
        )


    def consumer_namespaces(database: str) -> tuple:
        """Where, besides the data namespace, a database's credentials Secret must exist."""
        if database in TEMPORAL_DATABASES and temporal_on_postgres:
            return (namespaces["temporal"],)
        if database in MLFLOW_DATABASES and config.mlflow.engine == "postgres":
            return (namespaces["mlflow"],)
        return ()


    postgres = PostgresCluster(
        "postgres",
        PostgresClusterArgs(
            namespace=namespaces["data"],
            operator=operator.ready,
            instances=config.postgres.instances,
            size=config.postgres.size,
            storage_class=foundation.storage_class,
            resources=config.postgres.resources,
            databases=tuple(Database(db, consumer_namespaces(db)) for db in config.databases),
            node_port=ports.get("postgres"),
            continuous_backup=continuous_backup,
            protect=config.protect_state,
            secrets=store_secrets,
            metrics_after=[metrics_ready] if metrics_ready else None,
        ),
        opts=platform,
    )

    mlflow_on_postgres = config.mlflow.engine == "postgres"
    mlflow = MlflowServer(
        "mlflow",
        MlflowServerArgs(
            namespace=namespaces["mlflow"],
            backend=PostgresBackend(
                secret=postgres.database_secrets["mlflow"],
                auth_database_uri=postgres.connection_uris["mlflow_auth"] if config.mlflow.auth else None,
            )
            if mlflow_on_postgres
            else SqliteBackend(size=config.mlflow.size, storage_class=foundation.storage_class),
            artifacts=ArtifactStore(
                bucket=store.bucket_names[config.mlflow.artifact_bucket],
                credentials_secret=store.credentials_secrets["mlflow"],
                client_env=store.client_env,
            ),
            resources=config.mlflow.resources,
            replicas=config.mlflow.replicas,
            workers=config.mlflow.workers,
            node_port=ports.get("mlflow"),
            ingress=Ingress(
                host=config.mlflow.ingress.host,
                class_name=config.mlflow.ingress.class_name,
                tls_secret=config.mlflow.ingress.tls_secret,
                cluster_issuer=config.mlflow.ingress.cluster_issuer,
            )
            if config.mlflow.ingress
            else None,
            protect=config.protect_state,
            secrets=store_secrets,
            metrics_after=metrics_ready,
        ),
        opts=platform,
    )

    redis = Redis(
        "redis",
        RedisArgs(
            namespace=namespaces["data"],
            size=config.redis.size,
            storage_class=foundation.storage_class,
            resources=config.redis.resources,
            node_port=ports.get("redis"),
            protect=config.protect_state,
            secrets=store_secrets,
        ),
        opts=platform,
    )

    if temporal_on_postgres:
        default_db, visibility_db = TEMPORAL_DATABASES
        temporal_engine = ChartEngine(
            host=postgres.host,
            port=postgres.port,
            default_store=SqlStore(default_db, postgres.database_secrets[default_db]),
            visibility_store=SqlStore(visibility_db, postgres.database_secrets[visibility_db]),
            num_history_shards=config.temporal.num_history_shards,
            replicas=config.temporal.replicas,
        )
    else:
        temporal_engine = DevEngine(
            size=config.temporal.size,
            storage_class=foundation.storage_class,
            grpc_node_port=ports.get("temporalGrpc"),
            ui_node_port=ports.get("temporalUi"),
        )
    temporal = TemporalStack(
        "temporal",
        TemporalStackArgs(
            namespace=namespaces["temporal"],
            engine=temporal_engine,
            resources=config.temporal.resources,
            protect=config.protect_state,
            depends_on=(postgres,),
            metrics_after=metrics_ready,
        ),
        opts=platform,
    )

    target = BackupTarget(
        bucket=store.bucket_names["backups"],
        engine=cloud.engine,
        endpoint=store.endpoint,
        region=store.region,
        retention_days=config.backups.retention_days,
    )
    backups = Backups(
        "backups",
        BackupsArgs(
            target=target,
            postgres=PostgresDumps(
                namespace=namespaces["data"],
                database_secrets=postgres.database_secrets,
                credentials_secret=store.credentials_secrets["postgres-backup"],
                schedule=config.backups.logical_schedule,
            ),
            sqlite=SqliteCopy(
                namespace=namespaces["mlflow"],
                claim_name=mlflow.data_claim,
                credentials_secret=store.credentials_secrets["mlflow-backup"],
                schedule=config.backups.sqlite_schedule,
            )
            if sqlite_backup
            else None,
            mirror=ObjectMirror(
                namespace=namespaces["data"],
                buckets={b: name for b, name in store.bucket_names.items() if b != "backups"},
                credentials_secret=store.credentials_secrets["object-mirror"],
                schedule=config.backups.mirror_schedule,
            )
            if mirror_objects
            else None,
            vault=VaultSnapshots(
                namespace=namespaces["vault"],
                address=vault_server.address,
                role=SNAPSHOT_ROLE,
                service_account=SNAPSHOT_ACCOUNT,
                credentials_secret=store.credentials_secrets["vault-backup"],
                schedule=config.vault.snapshot_schedule,
            )
            if vault_server
            else None,
        ),
        opts=platform,
    )

    if observability:
        PlatformMonitoring(
            "monitoring",
            PlatformMonitoringArgs(
                namespace=namespaces["observability"],
                metrics_ready=observability.ready,
                targets=AlertTargets(
                    platform_namespaces=tuple(config.namespace(role) for role in config.namespace_roles),
                    backups=backups.runs,
                    mlflow_namespace=config.namespace("mlflow"),
                    temporal_namespace=config.namespace("temporal"),
                    postgres_namespace=config.namespace("data"),
                    postgres_cluster="postgres",
                    base_backup_schedule=config.backups.base_backup_schedule if config.backups.continuous else None,
                    minio_namespace=config.namespace("storage") if cloud.engine == "minio" else None,
                    vault_namespace=config.namespace("vault") if vault_server else None,
                ),
            ),
            opts=platform,
        )
        pulumi.export("grafana_url", observability.grafana_url)
        pulumi.export(
            "grafana_admin_password_command",
            pulumi.Output.concat(
                "kubectl --context ", config.kube_context, " -n ", namespaces["observability"],
                " get secret ", observability.grafana_admin_secret, " -o jsonpath='{.data.admin-password}' | base64 -d",
            ),
        )

    pulumi.export("namespaces", namespaces)
    pulumi.export("mlflow_url", mlflow.url)
    if mlflow.auth_secret is not None:
        pulumi.export(
            "mlflow_admin_password_command",
            pulumi.Output.concat(
                "kubectl --context ", config.kube_context, " -n ", namespaces["mlflow"],
                " get secret ", mlflow.auth_secret, " -o jsonpath='{.data.admin-password}' | base64 -d",
            ),
        )
    pulumi.export("s3_endpoint", store.endpoint)
    pulumi.export("buckets", store.bucket_names)
    pulumi.export("postgres_host", postgres.host)
    pulumi.export("postgres_secrets", postgres.database_secrets)
    pulumi.export("redis_url_secret", redis.secret_name)
    pulumi.export("temporal_address", temporal.frontend_address)
    pulumi.export("temporal_ui_url", temporal.ui_url)
    pulumi.export("backup_cron_jobs", backups.cron_jobs)
    if cloud.engine == "minio":
        pulumi.export(
            "minio_credentials_command",
            pulumi.Output.concat(
                "kubectl --context ", config.kube_context, " -n ", namespaces["storage"],
                " get secret minio-root -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{\"\\n\"}}{{end}}'",
            ),
        )
    pulumi.export("local_urls", {role: f"http://localhost:{port}" for role, port in sorted(ports.items())})


if config.installing_vault:
    pulumi.export("namespaces", namespaces)
    pulumi.export(
        "next_steps",
        "Vault is deploying. Initialise and unseal it (docs/runbooks/vault-bootstrap.md), then "
        f"`pulumi config set --secret {PROJECT}:vaultToken <root token>`, set vault.phase: configure in "
        f"Pulumi.{config.stack}.yaml and run `pulumi up` again.",
    )
    pulumi.log.warn("vault.phase is install: only Vault was declared; the stack output next_steps says what to run next.")
else:
    compose_platform(secret_store())
