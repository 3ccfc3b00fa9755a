"""The MLflow tracking server (`server.py`), with its backend store engine (`backends.py`): sqlite (one replica on a
claim) or postgres (HA, optionally with basic auth), and the move from the first to the second (`migration.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

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
from components.mlflow_server import backends, server
from components.mlflow_server.backends import PostgresBackend, SqliteBackend
from components.mlflow_server.migration import migration_job
from components.mlflow_server.server import PORT, SERVICE_NAME
from components.object_store import BucketAccess
from components.secret_store import KubernetesSecrets, SecretStore

__all__ = [
    "AUTH_DATABASE",
    "CONSUMER",
    "NAMESPACE",
    "PORT",
    "SERVICE_NAME",
    "TRACKING_DATABASE",
    "MlflowServer",
    "MlflowServerArgs",
    "PostgresBackend",
    "SqliteBackend",
    "facts",
]

NAMESPACE = "mlflow"
CONSUMER = "mlflow"
"""MLflow's object-store consumer: its credentials Secret is `mlflow-s3-credentials`."""
TRACKING_DATABASE, AUTH_DATABASE = MLFLOW_DATABASES


def facts(config: StackConfig) -> ComponentFacts:
    """MLflow serves clients on PORT (the front door's proxies too, which it declares), and its metrics there; it
    proxies artifacts to its bucket and, on the postgres engine, keeps runs and users in MLFLOW_DATABASES.

    With migrateFrom sqlite the migration Job's pod (component `migration`) runs in NAMESPACE too and reaches
    PostgreSQL as the server does: the database use below makes NAMESPACE, every pod of it, a source of PostgreSQL's
    client flow. It needs nothing else (no bucket: artifacts are not copied)."""
    mlflow = config.mlflow
    return ComponentFacts(
        "mlflow",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(Flow("mlflow-clients", NAMESPACE, (PORT,), (CLIENTS,)),),
        node_ports={"mlflow": NodePortTarget(NAMESPACE, PORT)},
        metrics=(Metrics(NAMESPACE, PORT),),
        buckets=(BucketUse(CONSUMER, NAMESPACE, (mlflow.artifact_bucket,)),),
        databases=(DatabaseUse(MLFLOW_DATABASES, NAMESPACE),) if mlflow.engine == "postgres" else (),
    )


@dataclass(frozen=True)
class MlflowServerArgs:
    """What an MlflowServer needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace the server runs in."""
    backend: SqliteBackend | PostgresBackend
    """Backend store engine."""
    artifacts: BucketAccess
    """Artifact destination."""
    resources: ResourceSpec
    """Requests and limits of the server container."""
    replicas: int = 1
    """Server replicas (exactly 1 with SQLite)."""
    workers: int = 2
    """Worker processes per replica."""
    node_port: int | None = None
    """Host NodePort (dev), or None."""
    public_host: str | None = None
    """The host the front door publishes it on (`mlflow.<domain>`), which MLflow must accept; None: not published."""
    migrate_from: SqliteBackend | None = None
    """Postgres backend only: the sqlite engine's claim, declared exactly as that engine declares it, whose store a
    Job copies into the tracking database before the server starts."""
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
    """With SQLite, or migrating from it: the claim holding the database file (what a backup must mount)."""
    migration_job: pulumi.Output[str] | None
    """Migrating from SQLite: the Job's name (its log lists the rows copied per table)."""

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
        self.migration_job = None
        crypto = backends.crypto_secret(name, args, child).name
        if isinstance(args.backend, SqliteBackend):
            if args.replicas != 1:
                raise ValueError("the sqlite backend has exactly one writer: replicas must be 1")
            if args.migrate_from is not None:
                raise ValueError("a migration from SQLite needs the postgres backend as its target")
            claim = _sqlite_claim(name, args, args.backend, child)
            self.data_claim = claim.metadata.name
            kube.single_writer_deployment(
                f"{name}-server",
                deployment_name="mlflow",
                namespace=args.namespace,
                app="mlflow",
                pod_spec=server.server_pod(args, backends.sqlite_parts(args.backend, claim), crypto),
                opts=child,
            )
        else:
            migrations = []
            if args.migrate_from is not None:
                claim = _sqlite_claim(name, args, args.migrate_from, child)
                self.data_claim = claim.metadata.name
                migrations.append(migration_job(name, args, args.backend, args.migrate_from, claim, child))
                self.migration_job = migrations[0].metadata.name
            auth = backends.auth_secret(name, args, args.backend, child) if args.backend.auth_database_uri is not None else None
            self.auth_secret = auth.name if auth else None
            # The server waits for the copy: it must not start, and be written to, on a database still being filled.
            server.replicated_server(name, args, backends.postgres_parts(args.backend, auth), crypto, child, after=migrations)
        if args.metrics_after is not None:
            server.service_monitor(name, args, self.auth_secret, pulumi.ResourceOptions(parent=self, depends_on=[service, args.metrics_after]))
        self.service_name = service.metadata.name
        self.url = pulumi.Output.concat("http://", SERVICE_NAME, ".", args.namespace, f".svc.cluster.local:{PORT}")
        self.register_outputs(
            {
                "url": self.url, "service_name": self.service_name, "auth_secret": self.auth_secret,
                "data_claim": self.data_claim, "migration_job": self.migration_job,
            }
        )


def _sqlite_claim(
    name: str, args: MlflowServerArgs, backend: SqliteBackend, child: pulumi.ResourceOptions
) -> k8s.core.v1.PersistentVolumeClaim:
    """The SQLite claim, declared one way for both the sqlite engine and a migration from it: the same resource name
    (so the same URN), Kubernetes name, inputs and protection, so switching engines neither deletes nor recreates it."""
    return kube.retained_claim(
        f"{name}-data",
        claim_name="mlflow-data",
        namespace=args.namespace,
        size=backend.size,
        storage_class=backend.storage_class,
        app="mlflow",
        protect=args.protect,
        opts=child,
    )
