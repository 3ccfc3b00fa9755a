"""PostgreSQL on CloudNativePG: one cluster, an owner role and a database per application, no superuser handed out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import cnpg_operator, kube
from components.config import ResourceSpec, StackConfig
from components.facts import CLIENTS, ComponentFacts, Flow, Metrics, NamespaceFact, NodePortTarget
from components.secret_store import KubernetesSecrets, SecretStore, StoredSecret
from components.versions import IMAGES

PORT = 5432
NAMESPACE = "data"
CLUSTER = "postgres"
"""Name of the CNPG Cluster the platform runs."""
PODS = {"cnpg.io/cluster": CLUSTER}
"""Labels CloudNativePG puts on every instance of the cluster."""
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
METRICS_PORT_NAME = "metrics"
METRICS_PORT = 9187
"""CloudNativePG's exporter in each instance."""
PASSWORD_SPECIALS = "!#%&*()-_=+[]{}<>:?@/~"
"""Password punctuation: URI-reserved characters included on purpose; every URI we build percent-encodes them."""
SQLALCHEMY_DRIVER = "postgresql+psycopg2"
"""The driver SQLAlchemy users (MLflow) are given: psycopg2, which MLflow's `-full` image ships."""


def facts(config: StackConfig) -> ComponentFacts:
    """PostgreSQL runs in `data` on PORT, its exporter on METRICS_PORT; the CloudNativePG operator manages each
    instance through its status port and the backup plugin's sidecar."""
    return ComponentFacts(
        "postgres",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(Flow("postgres-operator", NAMESPACE, (), (cnpg_operator.NAMESPACE,), pods=PODS),),
        node_ports={"postgres": NodePortTarget(NAMESPACE, PORT)},
        metrics=(Metrics(NAMESPACE, METRICS_PORT),),
    )


def client_flow(consumers: tuple[str, ...]) -> Flow:
    """PostgreSQL for the namespaces holding a database's credentials, and the platform's clients."""
    return Flow("postgres-clients", NAMESPACE, (PORT,), (*consumers, CLIENTS), pods=PODS)


@dataclass(frozen=True)
class Database:
    """An application database, owned by a login role of the same name."""

    name: str
    """Database and owner role name."""
    consumer_namespaces: tuple[pulumi.Input[str], ...] = ()
    """Namespaces (besides the cluster's) whose pods need the credentials Secret."""


@dataclass(frozen=True)
class ContinuousBackup:
    """WAL archiving and base backups to object storage with the barman-cloud plugin."""

    plugin: pulumi.Resource
    """The plugin release; its CRDs must exist first."""
    destination: pulumi.Input[str]
    """s3://<backups bucket>/<prefix>"""
    endpoint: pulumi.Input[str]
    """S3 endpoint URL."""
    credentials_secret: pulumi.Input[str]
    """Secret in the cluster's namespace with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    retention: str
    """Barman retention policy (30d, 4w, 6m)."""
    schedule: str
    """ScheduledBackup cron, 6 fields starting with seconds."""
    s3_compatible: bool
    """Not AWS (MinIO, R2): boto3's default checksums must be relaxed."""
    recover_from: str | None = None
    """Bootstrap by recovering this cluster's backups (its server name), instead of an empty initdb."""
    recovery_target_time: str = ""
    """With `recover_from`: the point in time to stop at (RFC 3339); empty for the end of the archive."""


@dataclass(frozen=True)
class PostgresClusterArgs:
    """What a PostgresCluster needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace of the cluster, its Services and credential Secrets."""
    operator: pulumi.Resource
    """The CloudNativePG operator release; its CRDs must exist before the cluster is declared."""
    instances: int
    """1 primary + (instances - 1) streaming replicas."""
    size: str
    """Data claim size per instance (Kubernetes quantity)."""
    storage_class: pulumi.Input[str]
    """Storage class of the claims; reclaimPolicy Retain."""
    resources: ResourceSpec
    """Requests and limits of each instance."""
    databases: tuple[Database, ...]
    """Application databases; the first one is created at bootstrap."""
    node_port: int | None = None
    """Host NodePort for the read-write endpoint (dev), or None."""
    continuous_backup: ContinuousBackup | None = None
    """WAL archiving + scheduled base backups (RPO of minutes), or None for logical dumps only."""
    metrics_after: Sequence[pulumi.Resource] | None = None
    """Resources that install the Prometheus CRDs; when given, a PodMonitor is created after them."""
    protect: bool = False
    """Protect the cluster and its databases from `pulumi destroy`."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where generated secrets are kept: Kubernetes Secrets, or Vault synced into Secrets of the same name."""
    cluster_name: str = CLUSTER
    """Name of the CNPG Cluster; its read-write Service is `<cluster_name>-rw`."""


class PostgresCluster(pulumi.ComponentResource):
    """A CloudNativePG cluster with one owner role and database per application."""

    host: pulumi.Output[str]
    """Read-write endpoint (the primary), as a cluster DNS name."""
    port: pulumi.Output[int]
    """PostgreSQL port."""
    database_secrets: dict[str, pulumi.Output[str]]
    """Per database: Secret name (in the cluster's and each consumer namespace) with username, password,
    dbname, host, port, uri (`postgresql://...`, password percent-encoded, for libpq: psql, pg_dump) and
    sqlalchemy-uri (the same with the psycopg2 driver named, for SQLAlchemy: MLflow)."""
    connection_uris: dict[str, pulumi.Output[str]]
    """Per database: the owner's connection URI, a Pulumi secret, for configuration that must embed it."""
    sqlalchemy_uris: dict[str, pulumi.Output[str]]
    """Per database: the same as a SQLAlchemy URI naming psycopg2, a Pulumi secret (MLflow's auth config embeds it)."""

    def __init__(self, name: str, args: PostgresClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:postgres_cluster:PostgresCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if not args.databases:
            raise ValueError("a PostgresCluster needs at least one database")
        cluster = args.cluster_name
        self.host = pulumi.Output.concat(f"{cluster}-rw.", args.namespace, ".svc.cluster.local")
        self.port = pulumi.Output.from_input(PORT)

        credentials = {db.name: self._credentials(name, db, args, child) for db in args.databases}
        owner_secrets = {db: secret for db, (secret, _) in credentials.items()}
        self.database_secrets = {db: secret.name for db, secret in owner_secrets.items()}
        self.connection_uris = {db: uri for db, (_, uri) in credentials.items()}
        self.sqlalchemy_uris = {db: uri.apply(sqlalchemy_uri) for db, uri in self.connection_uris.items()}

        backup = args.continuous_backup
        prerequisites = [args.operator]
        if backup:
            prerequisites += [backup.plugin, _barman_object_store(name, args, backup, child)]
        after_operator = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=prerequisites))
        postgres = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=cluster, namespace=args.namespace, labels=kube.labels("postgres", "database")),
            spec=_cluster_spec(args, owner_secrets),
            opts=kube.stateful(after_operator, args.protect),
        )
        for db in args.databases:
            k8s.apiextensions.CustomResource(
                f"{name}-database-{db.name}",
                api_version="postgresql.cnpg.io/v1",
                kind="Database",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"{cluster}-{db.name.replace('_', '-')}", namespace=args.namespace, labels=kube.labels("postgres", "database")
                ),
                spec={
                    "cluster": {"name": cluster},
                    "name": db.name,
                    "owner": db.name,
                    "ensure": "present",
                    # Deleting the Database resource must never drop the data.
                    "databaseReclaimPolicy": "retain",
                },
                opts=kube.stateful(pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[postgres])), args.protect),
            )
        if backup:
            k8s.apiextensions.CustomResource(
                f"{name}-scheduled-backup",
                api_version="postgresql.cnpg.io/v1",
                kind="ScheduledBackup",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{cluster}-daily", namespace=args.namespace, labels=kube.labels("postgres", "backup")),
                spec={
                    "cluster": {"name": cluster},
                    # Six fields: CloudNativePG's cron starts with seconds.
                    "schedule": backup.schedule,
                    "method": "plugin",
                    "pluginConfiguration": {"name": BARMAN_PLUGIN},
                    "immediate": True,
                    "backupOwnerReference": "self",
                },
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[postgres])),
            )
        if args.metrics_after is not None:
            kube.metrics_monitor(
                f"{name}-pod-monitor",
                kind="PodMonitor",
                monitor_name=cluster,
                namespace=args.namespace,
                app="postgres",
                match_labels={"cnpg.io/cluster": cluster},
                endpoints=[{"port": METRICS_PORT_NAME}],
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[postgres, *args.metrics_after])),
            )
        if args.node_port:
            k8s.core.v1.Service(
                f"{name}-node-port",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{cluster}-rw-node-port", namespace=args.namespace, labels=kube.labels("postgres", "database")),
                spec=k8s.core.v1.ServiceSpecArgs(
                    type="NodePort",
                    # CloudNativePG labels whichever instance is primary; this follows failovers like `<cluster>-rw`.
                    selector={"cnpg.io/cluster": cluster, "cnpg.io/instanceRole": "primary"},
                    ports=[k8s.core.v1.ServicePortArgs(name="postgres", port=PORT, target_port=PORT, protocol="TCP", node_port=args.node_port)],
                ),
                opts=child,
            )
        self.register_outputs(
            {
                "host": self.host, "port": self.port, "database_secrets": self.database_secrets,
                "connection_uris": self.connection_uris, "sqlalchemy_uris": self.sqlalchemy_uris,
            }
        )

    def _credentials(
        self, name: str, db: Database, args: PostgresClusterArgs, child: pulumi.ResourceOptions
    ) -> tuple[StoredSecret, pulumi.Output[str]]:
        """The owner's generated password, in a basic-auth Secret the operator reads and consumers mount;
        returned with the connection URI, kept secret."""
        password = random.RandomPassword(f"{name}-{db.name}-password", length=32, special=True, override_special=PASSWORD_SPECIALS, opts=child)
        data = pulumi.Output.all(password.result, args.namespace).apply(
            lambda values: connection_fields(args.cluster_name, values[1], db.name, values[0])
        )
        secret_name = f"{args.cluster_name}-{db.name.replace('_', '-')}"
        secrets = []
        for index, namespace in enumerate((args.namespace, *db.consumer_namespaces)):
            suffix = "" if index == 0 else f"-copy-{index}"
            secrets.append(
                args.secrets.secret(
                    f"{name}-{db.name}-credentials{suffix}",
                    name=secret_name,
                    namespace=namespace,
                    # CloudNativePG reloads a managed role's password when its Secret carries this label.
                    labels={**kube.labels("postgres", "credentials"), "cnpg.io/reload": "true"},
                    secret_type="kubernetes.io/basic-auth",
                    data=data,
                    opts=child,
                )
            )
        return secrets[0], pulumi.Output.secret(data.apply(lambda fields: fields["uri"]))


def connection_fields(cluster: str, namespace: str, database: str, password: str) -> dict[str, str]:
    """Everything a client needs to reach `database` as its owner; the URI percent-encodes the password."""
    host = f"{cluster}-rw.{namespace}.svc.cluster.local"
    uri = f"postgresql://{quote(database, safe='')}:{quote(password, safe='')}@{host}:{PORT}/{database}?sslmode=require"
    return {
        "username": database,
        "password": password,
        "dbname": database,
        "host": host,
        "port": str(PORT),
        "uri": uri,
        "sqlalchemy-uri": sqlalchemy_uri(uri),
    }


def sqlalchemy_uri(uri: str) -> str:
    """A libpq `postgresql://` URI as SQLAlchemy must get it for MLflow: with psycopg2 named. A plain `postgresql://`
    selects psycopg 3 on SQLAlchemy >= 2.1, and MLflow 3.15.1's model registry then fails alias and model-version
    queries ("operator does not exist: integer = character varying")."""
    return uri.replace("postgresql://", f"{SQLALCHEMY_DRIVER}://", 1)


def backup_object_store_name(cluster: str) -> str:
    return f"{cluster}-backups"


def _barman_object_store(name: str, args: PostgresClusterArgs, backup: ContinuousBackup, child: pulumi.ResourceOptions):
    """Where WAL and base backups go; the sidecar in each instance uploads with these credentials."""
    credential = {"name": backup.credentials_secret}
    sidecar: dict = {"resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}}
    if backup.s3_compatible:
        # boto3 >= 1.36 sends checksums S3-compatible stores reject (PLATFORM-NOTES); relax them for barman too.
        sidecar["env"] = [
            {"name": "AWS_REQUEST_CHECKSUM_CALCULATION", "value": "when_required"},
            {"name": "AWS_RESPONSE_CHECKSUM_VALIDATION", "value": "when_required"},
        ]
    return k8s.apiextensions.CustomResource(
        f"{name}-backup-store",
        api_version="barmancloud.cnpg.io/v1",
        kind="ObjectStore",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=backup_object_store_name(args.cluster_name), namespace=args.namespace, labels=kube.labels("postgres", "backup")
        ),
        spec={
            "configuration": {
                "destinationPath": backup.destination,
                "endpointURL": backup.endpoint,
                "s3Credentials": {
                    "accessKeyId": {**credential, "key": "AWS_ACCESS_KEY_ID"},
                    "secretAccessKey": {**credential, "key": "AWS_SECRET_ACCESS_KEY"},
                },
                "wal": {"compression": "gzip", "maxParallel": 4},
                "data": {"compression": "gzip", "jobs": 2},
            },
            "retentionPolicy": backup.retention,
            "instanceSidecarConfiguration": sidecar,
        },
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[backup.plugin])),
    )


def _bootstrap(args: PostgresClusterArgs, owner_secrets: dict[str, StoredSecret]) -> dict:
    first = args.databases[0].name
    backup = args.continuous_backup
    if backup and backup.recover_from:
        target = {"targetTime": backup.recovery_target_time} if backup.recovery_target_time else None
        return {"recovery": {"source": "origin", **({"recoveryTarget": target} if target else {})}}
    return {"initdb": {"database": first, "owner": first, "secret": {"name": owner_secrets[first].name}}}


def _archive(args: PostgresClusterArgs) -> dict:
    """The Cluster's side of continuous backup: the plugin as WAL archiver, and where to recover from."""
    backup = args.continuous_backup
    if backup is None:
        return {}
    store = backup_object_store_name(args.cluster_name)
    # A recovered cluster must archive under a new server name: barman refuses to mix it with the old timeline.
    server_name = f"{args.cluster_name}-recovered" if backup.recover_from else args.cluster_name
    spec: dict = {
        "plugins": [{"name": BARMAN_PLUGIN, "isWALArchiver": True, "parameters": {"barmanObjectName": store, "serverName": server_name}}],
        # Switch WAL segments at least every 5 minutes, so a quiet database still archives: RPO <= 5 minutes.
        "postgresql": {"parameters": {"archive_timeout": "5min"}},
    }
    if backup.recover_from:
        spec["externalClusters"] = [
            {"name": "origin", "plugin": {"name": BARMAN_PLUGIN, "parameters": {"barmanObjectName": store, "serverName": backup.recover_from}}}
        ]
    return spec


def _cluster_spec(args: PostgresClusterArgs, owner_secrets: dict[str, StoredSecret]) -> dict:
    return {
        "instances": args.instances,
        "imageName": IMAGES["postgres"],
        # Applications get owner roles; the postgres superuser stays inside the operator.
        "enableSuperuserAccess": False,
        "storage": {"size": args.size, "storageClass": args.storage_class},
        "resources": args.resources.as_k8s(),
        "affinity": {
            "enablePodAntiAffinity": True,
            "topologyKey": "kubernetes.io/hostname",
            # Replicas on one node share its fate; one instance (dev, Kind) needs no spreading.
            "podAntiAffinityType": "required" if args.instances > 1 else "preferred",
        },
        "bootstrap": _bootstrap(args, owner_secrets),
        **_archive(args),
        "managed": {
            "roles": [
                {
                    "name": db.name,
                    "ensure": "present",
                    "login": True,
                    "superuser": False,
                    "createdb": False,
                    "createrole": False,
                    "inherit": True,
                    "passwordSecret": {"name": owner_secrets[db.name].name},
                }
                for db in args.databases
            ]
        },
    }
