"""Temporal behind one interface: the CLI dev server on a retained SQLite file, or the Helm chart on PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import TEMPORAL_DATABASES, ResourceSpec, StackConfig
from components.facts import CLIENTS, ComponentFacts, DatabaseUse, Flow, Metrics, NamespaceFact, NodePortTarget
from components.versions import CHARTS, IMAGES

NAMESPACE = "temporal"
GRPC_PORT = 7233
UI_PORT = 8233
CHART_UI_PORT = 8080
METRICS_PORT = 9090
UID = 1000  # the temporal user of the CLI image
DATA_DIR = "/data"
SERVER_SERVICES = ("frontend", "history", "matching", "worker")
# The chart sets no resources for the UI or the schema job. The UI is a small Go server proxying the frontend;
# the schema job runs temporal-sql-tool once per upgrade. Not measured on a cluster (none here).
UI_RESOURCES = ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "200m", "memory": "128Mi"})
SCHEMA_JOB_RESOURCES = ResourceSpec({"cpu": "50m", "memory": "64Mi"}, {"cpu": "500m", "memory": "256Mi"})


def facts(config: StackConfig) -> ComponentFacts:
    """Temporal's frontend serves clients on GRPC_PORT and every server its metrics on METRICS_PORT. The dev engine
    can put gRPC and its UI on NodePorts; the chart engine has none, and keeps its stores in TEMPORAL_DATABASES."""
    on_postgres = config.temporal.engine == "chart"
    node_ports = {"temporalGrpc": NodePortTarget(NAMESPACE, GRPC_PORT), "temporalUi": NodePortTarget(NAMESPACE, UI_PORT)}
    return ComponentFacts(
        "temporal",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(Flow("temporal-clients", NAMESPACE, (GRPC_PORT,), (CLIENTS,)),),
        node_ports={} if on_postgres else node_ports,
        metrics=(Metrics(NAMESPACE, METRICS_PORT),),
        databases=(DatabaseUse(TEMPORAL_DATABASES, NAMESPACE),) if on_postgres else (),
    )


@dataclass(frozen=True)
class DevEngine:
    """`temporal server start-dev`: one process, SQLite on a retained claim."""

    size: str
    """Claim size of the SQLite file."""
    storage_class: pulumi.Input[str]
    """Storage class of the claim; reclaimPolicy Retain."""
    grpc_node_port: int | None = None
    """Host NodePort for gRPC (dev), or None."""
    ui_node_port: int | None = None
    """Host NodePort for the web UI (dev), or None."""


@dataclass(frozen=True)
class SqlStore:
    """A PostgreSQL database Temporal keeps one of its stores in."""

    database: str
    """Database name (also its owner role)."""
    secret: pulumi.Input[str]
    """Secret in Temporal's namespace with the owner's `password`."""


@dataclass(frozen=True)
class ChartEngine:
    """The temporal Helm chart on the PostgresCluster."""

    host: pulumi.Input[str]
    """PostgreSQL read-write host."""
    port: pulumi.Input[int]
    """PostgreSQL port."""
    default_store: SqlStore
    """Where workflow state lives."""
    visibility_store: SqlStore
    """Where workflow search (visibility) records live."""
    num_history_shards: int
    """History shards; can never change after the first deploy."""
    replicas: int
    """Replicas of each server service."""


@dataclass(frozen=True)
class TemporalStackArgs:
    """What a TemporalStack needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace Temporal runs in."""
    engine: DevEngine | ChartEngine
    """Which engine runs Temporal."""
    resources: ResourceSpec
    """Requests and limits of the dev server, or of each chart server service."""
    protect: bool = False
    """Protect the dev engine's claim from `pulumi destroy`."""
    depends_on: tuple[pulumi.Resource, ...] = ()
    """What must exist first (the chart engine's databases)."""
    metrics_after: pulumi.Resource | None = None
    """The release installing the Prometheus CRDs; when given, every server's metrics port is scraped."""


class TemporalStack(pulumi.ComponentResource):
    """Temporal for the platform's workflows; consumers see a frontend address and a UI URL, never the engine."""

    frontend_address: pulumi.Output[str]
    """gRPC frontend as host:port, for Temporal clients and workers."""
    ui_url: pulumi.Output[str]
    """In-cluster URL of the web UI."""
    namespace: pulumi.Output[str]
    """Kubernetes namespace Temporal runs in."""

    def __init__(self, name: str, args: TemporalStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:temporal_stack:TemporalStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = pulumi.Output.from_input(args.namespace)
        if isinstance(args.engine, DevEngine):
            frontend, ui_service, ui_port = _dev_server(name, args, args.engine, child)
        else:
            frontend, ui_service, ui_port = _chart(name, args, args.engine, child)
        dns = pulumi.Output.concat(".", args.namespace, ".svc.cluster.local")
        self.frontend_address = pulumi.Output.concat(frontend, dns, f":{GRPC_PORT}")
        self.ui_url = pulumi.Output.concat("http://", ui_service, dns, f":{ui_port}")
        self.register_outputs({"frontend_address": self.frontend_address, "ui_url": self.ui_url, "namespace": self.namespace})


def dev_server_args() -> list[str]:
    return [
        "server", "start-dev",
        # Without --ip the dev server listens on 127.0.0.1 only, unreachable through its Service.
        "--ip", "0.0.0.0",
        "--port", str(GRPC_PORT),
        "--ui-port", str(UI_PORT),
        "--metrics-port", str(METRICS_PORT),
        "--db-filename", f"{DATA_DIR}/temporal.db",
    ]


def _dev_server(name: str, args: TemporalStackArgs, engine: DevEngine, child: pulumi.ResourceOptions) -> tuple[str, str, int]:
    claim = kube.retained_claim(
        f"{name}-data",
        claim_name="temporal-data",
        namespace=args.namespace,
        size=engine.size,
        storage_class=engine.storage_class,
        app="temporal",
        protect=args.protect,
        opts=child,
    )
    for role, ports, node_ports in (
        ("frontend", {"grpc": GRPC_PORT}, {"grpc": engine.grpc_node_port}),
        ("ui", {"http": UI_PORT}, {"http": engine.ui_node_port}),
    ):
        kube.service(
            f"{name}-{role}-service",
            service_name=f"temporal-{role}",
            namespace=args.namespace,
            app="temporal",
            component="server",
            ports=ports,
            node_ports=node_ports,
            opts=child,
        )
    server = k8s.core.v1.ContainerArgs(
        name="temporal",
        image=IMAGES["temporal-cli"],
        args=dev_server_args(),
        env=kube.plain_env({"HOME": "/tmp"}),
        ports=[
            k8s.core.v1.ContainerPortArgs(name="grpc", container_port=GRPC_PORT),
            k8s.core.v1.ContainerPortArgs(name="http", container_port=UI_PORT),
            k8s.core.v1.ContainerPortArgs(name="metrics", container_port=METRICS_PORT),
        ],
        readiness_probe=k8s.core.v1.ProbeArgs(tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="grpc"), period_seconds=10),
        liveness_probe=k8s.core.v1.ProbeArgs(
            tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="grpc"), period_seconds=20, failure_threshold=6
        ),
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="data", mount_path=DATA_DIR),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        ],
    )
    kube.single_writer_deployment(
        f"{name}-server",
        deployment_name="temporal",
        namespace=args.namespace,
        app="temporal",
        pod_spec=k8s.core.v1.PodSpecArgs(
            automount_service_account_token=False,
            security_context=kube.pod_security(UID),
            containers=[server],
            volumes=[kube.claim_volume(claim), kube.scratch_volume()],
        ),
        opts=child,
    )
    if args.metrics_after is not None:
        kube.metrics_monitor(
            f"{name}-pod-monitor",
            kind="PodMonitor",
            monitor_name="temporal",
            namespace=args.namespace,
            app="temporal",
            match_labels=kube.selector("temporal", "server"),
            endpoints=[{"port": "metrics", "interval": "30s"}],
            opts=pulumi.ResourceOptions(parent=child.parent, depends_on=[args.metrics_after]),
        )
    return "temporal-frontend", "temporal-ui", UI_PORT


def _sql_store(engine: ChartEngine, store: SqlStore) -> dict:
    return {
        "sql": {
            # The PostgresCluster creates the database and owner; the chart's schema job creates and upgrades tables.
            "createDatabase": False,
            "manageSchema": True,
            "pluginName": "postgres12_pgx",
            "driverName": "postgres12_pgx",
            "databaseName": store.database,
            "connectAddr": pulumi.Output.concat(engine.host, ":", pulumi.Output.from_input(engine.port).apply(str)),
            "connectProtocol": "tcp",
            "user": store.database,
            "existingSecret": store.secret,
            "secretKey": "password",
            "maxConns": 20,
            "maxIdleConns": 20,
            "maxConnLifetime": "1h",
            "tls": {"enabled": True, "enableHostVerification": False},
        }
    }


def chart_values(args: TemporalStackArgs, engine: ChartEngine) -> dict:
    """Values of the temporal chart; with metrics on, the chart creates a ServiceMonitor per server service."""
    # The server renders its config file at start-up: a writable root filesystem.
    restricted = {**kube.RESTRICTED_CONTAINER, "readOnlyRootFilesystem": False}
    service = {"resources": args.resources.as_k8s(), "containerSecurityContext": restricted}
    image = IMAGES["temporal-server"].rsplit(":", 1)
    ui_image = IMAGES["temporal-ui"].rsplit(":", 1)
    return {
        "server": {
            "image": {"repository": image[0], "tag": image[1]},
            "replicaCount": engine.replicas,
            "metrics": {"serviceMonitor": {"enabled": args.metrics_after is not None}},
            # The restricted profile's runAsNonRoot/seccomp sit in each containerSecurityContext below.
            "securityContext": {"runAsUser": UID, "fsGroup": UID},
            "config": {
                "persistence": {
                    # LOUD: numHistoryShards is fixed at the first deploy. Changing it later corrupts routing of every
                    # workflow; the only way to another value is a new cluster and a migration.
                    "numHistoryShards": engine.num_history_shards,
                    "datastores": {
                        "default": _sql_store(engine, engine.default_store),
                        "visibility": _sql_store(engine, engine.visibility_store),
                    },
                },
            },
            **{svc: service for svc in SERVER_SERVICES},
        },
        "web": {
            "enabled": True,
            "image": {"repository": ui_image[0], "tag": ui_image[1]},
            "resources": UI_RESOURCES.as_k8s(),
            "containerSecurityContext": restricted,
        },
        "admintools": {"enabled": False},
        "schema": {"useHelmHooks": True, "resources": SCHEMA_JOB_RESOURCES.as_k8s(), "containerSecurityContext": restricted},
        # Our server image is 1.31: its entrypoint renders config natively, without the dockerize shim.
        "shims": {"dockerize": False},
    }


def _chart(name: str, args: TemporalStackArgs, engine: ChartEngine, child: pulumi.ResourceOptions) -> tuple[str, str, int]:
    # helm.v3.Release, not v4.Chart: the schema setup/upgrade job is a Helm hook, which v4.Chart skips.
    kube.helm_release(
        f"{name}-chart",
        CHARTS["temporal"],
        release_name="temporal",
        namespace=args.namespace,
        values=chart_values(args, engine),
        # Schema migrations can take a while on a large history; fail loudly rather than hang forever.
        timeout=1200,
        atomic=False,
        opts=pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(depends_on=[*args.depends_on, *([args.metrics_after] if args.metrics_after else [])])
        ),
    )
    return "temporal-frontend", "temporal-web", CHART_UI_PORT
