"""mlops-platform: load the stack's typed config, compose the platform's components, export what users need."""

import pulumi

from components.cluster import ClusterFoundation, ClusterFoundationArgs
from components.cnpg_operator import CnpgOperator, CnpgOperatorArgs
from components.config import TEMPORAL_DATABASES, load_stack_config
from components.mlflow_server import ArtifactStore, MlflowServer, MlflowServerArgs, SqliteBackend
from components.object_store import BucketConsumer, MinioSettings, ObjectStore, ObjectStoreArgs
from components.postgres_cluster import Database, PostgresCluster, PostgresClusterArgs
from components.providers import kubernetes_provider
from components.redis import Redis, RedisArgs
from components.temporal_stack import ChartEngine, DevEngine, SqlStore, TemporalStack, TemporalStackArgs

config = load_stack_config()
platform = pulumi.ResourceOptions(providers=[kubernetes_provider(config)])
ports = config.node_ports

foundation = ClusterFoundation(
    "cluster",
    ClusterFoundationArgs(
        namespaces={role: config.namespace(role) for role in ("storage", "mlflow", "data", "temporal", "cnpg")},
        storage=config.storage,
        protect=config.protect_state,
    ),
    opts=platform,
)
namespaces = foundation.namespaces

store = ObjectStore(
    "objects",
    ObjectStoreArgs(
        engine=config.object_store.engine,
        namespace=namespaces["storage"],
        buckets=config.object_store.buckets,
        region=config.object_store.region,
        consumers=(BucketConsumer("mlflow", namespaces["mlflow"], (config.mlflow.artifact_bucket,)),),
        minio=MinioSettings(
            size=config.object_store.size,
            storage_class=foundation.storage_class,
            resources=config.object_store.resources,
            api_node_port=ports.get("minioApi"),
            console_node_port=ports.get("minioConsole"),
        ),
        protect=config.protect_state,
    ),
    opts=platform,
)

mlflow = MlflowServer(
    "mlflow",
    MlflowServerArgs(
        namespace=namespaces["mlflow"],
        backend=SqliteBackend(size=config.mlflow.size, storage_class=foundation.storage_class),
        artifacts=ArtifactStore(
            bucket=store.bucket_names[config.mlflow.artifact_bucket],
            credentials_secret=store.credentials_secrets["mlflow"],
            client_env=store.client_env,
        ),
        resources=config.mlflow.resources,
        replicas=config.mlflow.replicas,
        workers=config.mlflow.workers,
        node_port=ports.get("mlflow"),
        protect=config.protect_state,
    ),
    opts=platform,
)

operator = CnpgOperator("cnpg", CnpgOperatorArgs(namespace=namespaces["cnpg"]), opts=platform)

temporal_on_postgres = config.temporal.engine == "chart"
postgres = PostgresCluster(
    "postgres",
    PostgresClusterArgs(
        namespace=namespaces["data"],
        operator=operator.ready,
        instances=config.postgres.instances,
        size=config.postgres.size,
        storage_class=foundation.storage_class,
        resources=config.postgres.resources,
        databases=tuple(
            Database(db, (namespaces["temporal"],) if db in TEMPORAL_DATABASES and temporal_on_postgres else ())
            for db in config.databases
        ),
        node_port=ports.get("postgres"),
        protect=config.protect_state,
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
    ),
    opts=platform,
)

pulumi.export("namespaces", namespaces)
pulumi.export("mlflow_url", mlflow.url)
pulumi.export("s3_endpoint", store.endpoint)
pulumi.export("buckets", store.bucket_names)
pulumi.export("postgres_host", postgres.host)
pulumi.export("postgres_secrets", postgres.database_secrets)
pulumi.export("redis_url_secret", redis.secret_name)
pulumi.export("temporal_address", temporal.frontend_address)
pulumi.export("temporal_ui_url", temporal.ui_url)
pulumi.export(
    "minio_credentials_command",
    pulumi.Output.concat(
        "kubectl --context ", config.kube_context, " -n ", namespaces["storage"],
        " get secret minio-root -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{\"\\n\"}}{{end}}'",
    ),
)
pulumi.export("local_urls", {role: f"http://localhost:{port}" for role, port in sorted(ports.items())})
