"""The MLflow tracking server, with its backend store engine: sqlite (one replica on a claim) or postgres (HA)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import MLFLOW_DATABASES, ResourceSpec, StackConfig
from components.facts import (
    CLIENTS,
    BucketUse,
    ComponentFacts,
    DatabaseUse,
    Flow,
    Metrics,
    NamespaceFact,
    NodePortTarget,
)
from components.object_store import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY
from components.secret_store import KubernetesSecrets, SecretStore, StoredSecret
from components.versions import IMAGES

PORT = 5000
NAMESPACE = "mlflow"
CONSUMER = "mlflow"
"""MLflow's object-store consumer: its credentials Secret is `mlflow-s3-credentials`."""
TRACKING_DATABASE, AUTH_DATABASE = MLFLOW_DATABASES
UID = 1000
DATA_DIR = "/mlflow"
AUTH_DIR = "/etc/mlflow/auth"
AUTH_FILE = "basic_auth.ini"
SERVICE_NAME = "mlflow"
ADMIN_USERNAME = "admin"
METRICS_DIR = "/tmp/prometheus-metrics"  # the worker processes' shared metric files (prometheus_flask_exporter)
# Prometheus scrapes each pod by its IP, so the Host header is `<pod IP>:5000`. MLflow's own default allow-list
# admits the private ranges; we admit them on the server port only.
POD_ADDRESS_PATTERNS = ("10.*", "192.168.*", *(f"172.{n}.*" for n in range(16, 32)))


def facts(config: StackConfig) -> ComponentFacts:
    """MLflow serves clients (and, with an Ingress, the ingress controller) on PORT, and its metrics there too; it
    proxies artifacts to its bucket and, on the postgres engine, keeps runs and users in MLFLOW_DATABASES."""
    mlflow = config.mlflow
    ingress_controller = (mlflow.ingress.controller_namespace,) if mlflow.ingress else ()
    return ComponentFacts(
        "mlflow",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(Flow("mlflow-clients", NAMESPACE, (PORT,), (CLIENTS,), source_namespaces=ingress_controller),),
        node_ports={"mlflow": NodePortTarget(NAMESPACE, PORT)},
        metrics=(Metrics(NAMESPACE, PORT),),
        buckets=(BucketUse(CONSUMER, NAMESPACE, (mlflow.artifact_bucket,)),),
        databases=(DatabaseUse(MLFLOW_DATABASES, NAMESPACE),) if mlflow.engine == "postgres" else (),
    )


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
class PostgresBackend:
    """MLflow metadata in the `mlflow` database of the PostgresCluster; any number of replicas."""

    secret: pulumi.Input[str]
    """Secret in the server's namespace whose `uri` key is the tracking database's connection URI."""
    auth_database_uri: pulumi.Input[str] | None = None
    """Connection URI (a secret) of the basic-auth app's database; None: no authentication."""


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
class Ingress:
    """Publishing the server through an Ingress."""

    host: str
    """Public host name."""
    class_name: str
    """IngressClass."""
    tls_secret: str = ""
    """Secret holding the certificate for `host` (empty: plain HTTP)."""
    cluster_issuer: str = ""
    """cert-manager ClusterIssuer that fills `tls_secret` (empty: the Secret is managed elsewhere)."""


@dataclass(frozen=True)
class MlflowServerArgs:
    """What an MlflowServer needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace the server runs in."""
    backend: SqliteBackend | PostgresBackend
    """Backend store engine."""
    artifacts: ArtifactStore
    """Artifact destination."""
    resources: ResourceSpec
    """Requests and limits of the server container."""
    replicas: int = 1
    """Server replicas (exactly 1 with SQLite)."""
    workers: int = 2
    """Worker processes per replica."""
    node_port: int | None = None
    """Host NodePort (dev), or None."""
    ingress: Ingress | None = None
    """Ingress, or None for in-cluster access only."""
    protect: bool = False
    """Protect the SQLite claim from `pulumi destroy`."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where generated secrets are kept: Kubernetes Secrets, or Vault synced into Secrets of the same name."""
    metrics_after: pulumi.Resource | None = None
    """The release installing the Prometheus CRDs; when given, a ServiceMonitor scrapes `/metrics`."""


class MlflowServer(pulumi.ComponentResource):
    """MLflow tracking server serving artifacts from object storage."""

    url: pulumi.Output[str]
    """In-cluster URL of the tracking server."""
    service_name: pulumi.Output[str]
    """Name of the server's Service."""
    auth_secret: pulumi.Output[str] | None
    """With authentication: Secret holding `admin-username` and `admin-password`."""
    data_claim: pulumi.Output[str] | None
    """With SQLite: the claim holding the database file (what a backup must mount)."""

    def __init__(self, name: str, args: MlflowServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:mlflow_server:MlflowServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
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
        self.auth_secret = None
        self.data_claim = None
        if isinstance(args.backend, SqliteBackend):
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
            self.data_claim = claim.metadata.name
            kube.single_writer_deployment(
                f"{name}-server",
                deployment_name="mlflow",
                namespace=args.namespace,
                app="mlflow",
                pod_spec=_pod_spec(args, _sqlite_parts(args.backend, claim)),
                opts=child,
            )
        else:
            auth = _auth_secret(name, args, args.backend, child) if args.backend.auth_database_uri is not None else None
            self.auth_secret = auth.name if auth else None
            _replicated_server(name, args, _postgres_parts(args.backend, auth), child)
        if args.ingress:
            _ingress(name, args, args.ingress, child)
        if args.metrics_after is not None:
            _service_monitor(name, args, self.auth_secret, pulumi.ResourceOptions(parent=self, depends_on=[service, args.metrics_after]))
        self.service_name = service.metadata.name
        self.url = pulumi.Output.concat("http://", SERVICE_NAME, ".", args.namespace, f".svc.cluster.local:{PORT}")
        self.register_outputs(
            {"url": self.url, "service_name": self.service_name, "auth_secret": self.auth_secret, "data_claim": self.data_claim}
        )


@dataclass(frozen=True)
class _BackendParts:
    """What a backend adds to the pod: server flags, env, volumes and the upgrade step."""

    flags: list[str]
    env: list[k8s.core.v1.EnvVarArgs]
    volumes: list[k8s.core.v1.VolumeArgs]
    mounts: list[k8s.core.v1.VolumeMountArgs]
    upgrade_script: str
    upgrade_env: list[k8s.core.v1.EnvVarArgs]


def _sqlite_parts(backend: SqliteBackend, claim: k8s.core.v1.PersistentVolumeClaim) -> _BackendParts:
    return _BackendParts(
        flags=["--backend-store-uri", backend.uri],
        env=[],
        volumes=[kube.claim_volume(claim)],
        mounts=[k8s.core.v1.VolumeMountArgs(name="data", mount_path=DATA_DIR)],
        # A fresh database is created by the server itself; only an existing one needs migrating.
        upgrade_script=(
            f'if [ -f {DATA_DIR}/mlflow.db ]; then exec mlflow db upgrade "{backend.uri}"; fi; '
            'echo "no database yet; the server creates it"'
        ),
        upgrade_env=[],
    )


def _postgres_parts(backend: PostgresBackend, auth: StoredSecret | None) -> _BackendParts:
    # The URI carries the password, so it reaches the process only as an env var from its Secret, never as a flag.
    uri = kube.secret_env("MLFLOW_BACKEND_STORE_URI", backend.secret, "uri")
    env = [uri]
    volumes, mounts, flags = [], [], []
    if auth is not None:
        flags = ["--app-name", "basic-auth"]
        env += [
            kube.secret_env("MLFLOW_FLASK_SERVER_SECRET_KEY", auth.name, "flask-secret-key"),
            *kube.plain_env({"MLFLOW_AUTH_CONFIG_PATH": f"{AUTH_DIR}/{AUTH_FILE}"}),
        ]
        volumes.append(kube.secret_file_volume("auth", auth.name, AUTH_FILE))
        mounts.append(k8s.core.v1.VolumeMountArgs(name="auth", mount_path=AUTH_DIR, read_only=True))
    return _BackendParts(
        flags=flags, env=env, volumes=volumes, mounts=mounts,
        upgrade_script='exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"',
        upgrade_env=[uri],
    )


def auth_config(admin_password: str, database_uri: str) -> str:
    """MLflow's basic_auth.ini. It is read by ConfigParser with interpolation, so every '%' is written '%%'."""

    def escaped(value: str) -> str:
        return value.replace("%", "%%")

    return (
        "[mlflow]\n"
        # Users other than the admin start with no access; grants are explicit.
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {escaped(database_uri)}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        f"admin_password = {escaped(admin_password)}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def _auth_secret(name: str, args: MlflowServerArgs, backend: PostgresBackend, child: pulumi.ResourceOptions) -> StoredSecret:
    """The generated admin (replacing MLflow's admin/password1234) and the session key all replicas share."""
    admin = random.RandomPassword(f"{name}-admin-password", length=32, special=True, override_special="-_.~!*@#%^&+=", opts=child)
    flask_key = random.RandomPassword(f"{name}-flask-secret-key", length=64, special=False, opts=child)
    return args.secrets.secret(
        f"{name}-auth",
        name="mlflow-auth",
        namespace=args.namespace,
        labels=kube.labels("mlflow", "auth"),
        data=pulumi.Output.all(admin.result, flask_key.result, backend.auth_database_uri).apply(
            lambda v: {
                "admin-username": ADMIN_USERNAME,
                "admin-password": v[0],
                "flask-secret-key": v[1],
                AUTH_FILE: auth_config(v[0], v[2]),
            }
        ),
        opts=child,
    )


def allowed_hosts(namespace: str, node_port: int | None, ingress_host: str | None = None) -> str:
    """Host headers the server accepts (MLflow >= 3.5 answers 403 to any other): its Service names, any port,
    the Ingress host, pod addresses on the server port (metrics scrapes), and the dev NodePort through the
    host's loopback."""
    names = kube.cluster_dns_names(SERVICE_NAME, namespace) + ([ingress_host] if ingress_host else [])
    hosts = [pattern for host in names for pattern in (host, f"{host}:*")]
    hosts += [f"{pattern}:{PORT}" for pattern in POD_ADDRESS_PATTERNS]
    if node_port:
        hosts += [f"localhost:{node_port}", f"127.0.0.1:{node_port}"]
    return ",".join(hosts)


def server_args(args: MlflowServerArgs, backend_flags: list[str], namespace: str, bucket: str) -> list[str]:
    return [
        "server",
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--workers", str(args.workers),
        *backend_flags,
        "--serve-artifacts",
        "--artifacts-destination", f"s3://{bucket}/",
        "--allowed-hosts", allowed_hosts(namespace, args.node_port, args.ingress.host if args.ingress else None),
        # Request counts and latencies at /metrics, aggregated over the worker processes.
        "--expose-prometheus", METRICS_DIR,
    ]


def _pod_spec(args: MlflowServerArgs, backend: _BackendParts, spread: bool = False) -> k8s.core.v1.PodSpecArgs:
    client_env = dict(args.artifacts.client_env)
    env = [
        kube.secret_env("AWS_ACCESS_KEY_ID", args.artifacts.credentials_secret, CONSUMER_ACCESS_KEY),
        kube.secret_env("AWS_SECRET_ACCESS_KEY", args.artifacts.credentials_secret, CONSUMER_SECRET_KEY),
        *backend.env,
        *kube.plain_env(
            {
                **client_env,
                # MLflow's artifact proxy reads its own variable, not boto3's AWS_ENDPOINT_URL_S3.
                "MLFLOW_S3_ENDPOINT_URL": client_env["AWS_ENDPOINT_URL_S3"],
                # MLflow >= 3.x also starts a GenAI job runner with eight consumer processes (~800 MiB) by default;
                # a tracking server does not use it, and with it the pod would outgrow its memory limit.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "HOME": "/tmp",
            }
        ),
    ]
    mounts = [*backend.mounts, k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")]
    upgrade = k8s.core.v1.ContainerArgs(
        name="db-upgrade",
        image=IMAGES["mlflow"],
        # Migrate the schema before a newer server opens the database.
        command=["/bin/sh", "-c"],
        args=[backend.upgrade_script],
        env=[*backend.upgrade_env, *kube.plain_env({"HOME": "/tmp"})],
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=mounts,
    )
    server = k8s.core.v1.ContainerArgs(
        name="mlflow",
        image=IMAGES["mlflow"],
        command=["mlflow"],
        args=pulumi.Output.all(args.namespace, args.artifacts.bucket).apply(lambda v: server_args(args, backend.flags, *v)),
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
        volumes=[*backend.volumes, kube.scratch_volume(size="1Gi")],
        topology_spread_constraints=[
            # Replicas on different nodes, so one node's loss leaves the server up.
            k8s.core.v1.TopologySpreadConstraintArgs(
                max_skew=1,
                topology_key="kubernetes.io/hostname",
                when_unsatisfiable="DoNotSchedule",
                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("mlflow", "server")),
            )
        ]
        if spread
        else None,
    )


def _replicated_server(name: str, args: MlflowServerArgs, backend: _BackendParts, child: pulumi.ResourceOptions) -> None:
    pod_spec = _pod_spec(args, backend, spread=args.replicas > 1)
    k8s.apps.v1.Deployment(
        f"{name}-server",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="mlflow", namespace=args.namespace, labels=kube.labels("mlflow", "server"), annotations=kube.scanner_skips(pod_spec)
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=args.replicas,
            # One new pod at a time, never below the wanted count: rollouts keep the server available.
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
            ),
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("mlflow", "server")),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels("mlflow", "server")),
                spec=pod_spec,
            ),
        ),
        opts=child,
    )
    if args.replicas > 1:
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="mlflow", namespace=args.namespace, labels=kube.labels("mlflow", "server")),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                min_available=args.replicas - 1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("mlflow", "server")),
            ),
            opts=child,
        )


def _ingress(name: str, args: MlflowServerArgs, ingress: Ingress, child: pulumi.ResourceOptions) -> None:
    annotations = {"cert-manager.io/cluster-issuer": ingress.cluster_issuer} if ingress.cluster_issuer else None
    k8s.networking.v1.Ingress(
        f"{name}-ingress",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="mlflow", namespace=args.namespace, labels=kube.labels("mlflow", "server"), annotations=annotations
        ),
        spec=k8s.networking.v1.IngressSpecArgs(
            ingress_class_name=ingress.class_name,
            tls=[k8s.networking.v1.IngressTLSArgs(hosts=[ingress.host], secret_name=ingress.tls_secret)] if ingress.tls_secret else None,
            rules=[
                k8s.networking.v1.IngressRuleArgs(
                    host=ingress.host,
                    http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                        paths=[
                            k8s.networking.v1.HTTPIngressPathArgs(
                                path="/",
                                path_type="Prefix",
                                backend=k8s.networking.v1.IngressBackendArgs(
                                    service=k8s.networking.v1.IngressServiceBackendArgs(
                                        name=SERVICE_NAME, port=k8s.networking.v1.ServiceBackendPortArgs(name="http")
                                    )
                                ),
                            )
                        ]
                    ),
                )
            ],
        ),
        opts=child,
    )


def _service_monitor(name: str, args: MlflowServerArgs, auth_secret: pulumi.Output[str] | None, opts: pulumi.ResourceOptions) -> None:
    endpoint: dict = {"port": "http", "path": "/metrics", "interval": "30s"}
    if auth_secret is not None:
        # With basic auth every path but /health needs a login; Prometheus uses the admin's, read from the Secret.
        endpoint["basicAuth"] = {
            "username": {"name": auth_secret, "key": "admin-username"},
            "password": {"name": auth_secret, "key": "admin-password"},
        }
    kube.metrics_monitor(
        f"{name}-service-monitor",
        kind="ServiceMonitor",
        monitor_name=SERVICE_NAME,
        namespace=args.namespace,
        app="mlflow",
        match_labels=kube.selector("mlflow", "server"),
        endpoints=[endpoint],
        opts=opts,
    )
