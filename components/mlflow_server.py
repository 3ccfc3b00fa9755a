"""The MLflow tracking server, with its backend store engine (sqlite today; postgres slots in here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import ResourceSpec
from components.object_store import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY
from components.versions import IMAGES

PORT = 5000
UID = 1000
DATA_DIR = "/mlflow"
SERVICE_NAME = "mlflow"


@dataclass(frozen=True)
class SqliteBackend:
    """MLflow metadata in a SQLite file on a retained claim: one writer, so one replica."""

    size: str
    """Claim size (Kubernetes quantity)."""
    storage_class: pulumi.Input[str]
    """Storage class of the claim; reclaimPolicy Retain."""

    @property
    def uri(self) -> str:
        return f"sqlite:///{DATA_DIR}/mlflow.db"


@dataclass(frozen=True)
class ArtifactStore:
    """Where the server proxies artifacts to: a bucket of the ObjectStore and the means to reach it."""

    bucket: pulumi.Input[str]
    """Physical bucket name."""
    credentials_secret: pulumi.Input[str]
    """Secret (in the server's namespace) with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    client_env: Mapping[str, pulumi.Input[str]]
    """Non-secret S3 client environment from the ObjectStore (endpoint, region, checksum behaviour)."""


@dataclass(frozen=True)
class MlflowServerArgs:
    """What an MlflowServer needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace the server runs in."""
    backend: SqliteBackend
    """Backend store engine."""
    artifacts: ArtifactStore
    """Artifact destination."""
    resources: ResourceSpec
    """Requests and limits of the server container."""
    replicas: int = 1
    """Server replicas (1 with SQLite)."""
    workers: int = 2
    """Worker processes per replica."""
    node_port: int | None = None
    """Host NodePort (dev), or None."""
    protect: bool = False
    """Protect the backend claim from `pulumi destroy`."""


class MlflowServer(pulumi.ComponentResource):
    """MLflow tracking server serving artifacts from object storage."""

    url: pulumi.Output[str]
    """In-cluster URL of the tracking server."""
    service_name: pulumi.Output[str]
    """Name of the server's Service."""

    def __init__(self, name: str, args: MlflowServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:mlflow_server:MlflowServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.replicas != 1:
            raise ValueError("the sqlite backend has exactly one writer: replicas must be 1")

        claim = kube.retained_claim(
            f"{name}-data",
            claim_name="mlflow-data",
            namespace=args.namespace,
            size=args.backend.size,
            storage_class=args.backend.storage_class,
            app="mlflow",
            protect=args.protect,
            opts=child,
        )
        service = kube.service(
            f"{name}-service",
            service_name=SERVICE_NAME,
            namespace=args.namespace,
            app="mlflow",
            component="server",
            ports={"http": PORT},
            node_ports={"http": args.node_port},
            opts=child,
        )
        kube.single_writer_deployment(
            f"{name}-server",
            deployment_name="mlflow",
            namespace=args.namespace,
            app="mlflow",
            pod_spec=_pod_spec(args, claim),
            opts=child,
        )
        self.service_name = service.metadata.name
        self.url = pulumi.Output.concat("http://", SERVICE_NAME, ".", args.namespace, f".svc.cluster.local:{PORT}")
        self.register_outputs({"url": self.url, "service_name": self.service_name})


def allowed_hosts(namespace: str, node_port: int | None) -> str:
    """Host headers the server accepts (MLflow >= 3.5 answers 403 to any other): its Service names, any port,
    and the dev NodePort through the host's loopback."""
    hosts = [pattern for host in kube.cluster_dns_names(SERVICE_NAME, namespace) for pattern in (host, f"{host}:*")]
    if node_port:
        hosts += [f"localhost:{node_port}", f"127.0.0.1:{node_port}"]
    return ",".join(hosts)


def server_args(args: MlflowServerArgs, namespace: str, bucket: str) -> list[str]:
    return [
        "server",
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--workers", str(args.workers),
        "--backend-store-uri", args.backend.uri,
        "--serve-artifacts",
        "--artifacts-destination", f"s3://{bucket}/",
        "--allowed-hosts", allowed_hosts(namespace, args.node_port),
    ]


def _pod_spec(args: MlflowServerArgs, claim: k8s.core.v1.PersistentVolumeClaim) -> k8s.core.v1.PodSpecArgs:
    client_env = dict(args.artifacts.client_env)
    env = [
        kube.secret_env("AWS_ACCESS_KEY_ID", args.artifacts.credentials_secret, CONSUMER_ACCESS_KEY),
        kube.secret_env("AWS_SECRET_ACCESS_KEY", args.artifacts.credentials_secret, CONSUMER_SECRET_KEY),
        *kube.plain_env(
            {
                **client_env,
                # MLflow's artifact proxy reads its own variable, not boto3's AWS_ENDPOINT_URL_S3.
                "MLFLOW_S3_ENDPOINT_URL": client_env["AWS_ENDPOINT_URL_S3"],
                "HOME": "/tmp",
            }
        ),
    ]
    mounts = [
        k8s.core.v1.VolumeMountArgs(name="data", mount_path=DATA_DIR),
        k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
    ]
    upgrade = k8s.core.v1.ContainerArgs(
        name="db-upgrade",
        image=IMAGES["mlflow"],
        # An existing database is migrated before a newer server opens it; a fresh one is created by the server.
        command=["/bin/sh", "-c"],
        args=[
            f'if [ -f {DATA_DIR}/mlflow.db ]; then exec mlflow db upgrade "{args.backend.uri}"; fi; '
            'echo "no database yet; the server creates it"'
        ],
        env=[*kube.plain_env({"HOME": "/tmp"})],
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=mounts,
    )
    server = k8s.core.v1.ContainerArgs(
        name="mlflow",
        image=IMAGES["mlflow"],
        command=["mlflow"],
        args=pulumi.Output.all(args.namespace, args.artifacts.bucket).apply(lambda v: server_args(args, *v)),
        env=env,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT)],
        startup_probe=kube.http_probe("/health", "http", period=5, failures=60),
        readiness_probe=kube.http_probe("/health", "http"),
        liveness_probe=kube.http_probe("/health", "http", period=20),
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=mounts,
    )
    return k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        security_context=kube.pod_security(UID),
        init_containers=[upgrade],
        containers=[server],
        volumes=[
            kube.claim_volume(claim),
            kube.scratch_volume(size="1Gi"),
        ],
    )
