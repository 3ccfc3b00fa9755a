"""mlops-platform: load the stack's typed config, compose the platform's components, export what users need."""

import pulumi

from components.cluster import ClusterFoundation, ClusterFoundationArgs
from components.config import load_stack_config
from components.mlflow_server import ArtifactStore, MlflowServer, MlflowServerArgs, SqliteBackend
from components.object_store import BucketConsumer, MinioSettings, ObjectStore, ObjectStoreArgs
from components.providers import kubernetes_provider

config = load_stack_config()
platform = pulumi.ResourceOptions(providers=[kubernetes_provider(config)])
ports = config.node_ports

foundation = ClusterFoundation(
    "cluster",
    ClusterFoundationArgs(
        namespaces={role: config.namespace(role) for role in ("storage", "mlflow")},
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

pulumi.export("namespaces", namespaces)
pulumi.export("mlflow_url", mlflow.url)
pulumi.export("s3_endpoint", store.endpoint)
pulumi.export("buckets", store.bucket_names)
pulumi.export(
    "minio_credentials_command",
    pulumi.Output.concat(
        "kubectl --context ", config.kube_context, " -n ", namespaces["storage"],
        " get secret minio-root -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{\"\\n\"}}{{end}}'",
    ),
)
pulumi.export("local_urls", {role: f"http://localhost:{port}" for role, port in sorted(ports.items())})
