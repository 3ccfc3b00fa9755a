"""PostgreSQL on CloudNativePG: one cluster, an owner role and a database per application, no superuser handed out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import ResourceSpec
from components.versions import IMAGES

PORT = 5432
METRICS_PORT_NAME = "metrics"  # CloudNativePG's exporter, port 9187
PASSWORD_SPECIALS = "!#%&*()-_=+[]{}<>:?@/~"
"""Password punctuation: URI-reserved characters included on purpose; every URI we build percent-encodes them."""


@dataclass(frozen=True)
class Database:
    """An application database, owned by a login role of the same name."""

    name: str
    """Database and owner role name."""
    consumer_namespaces: tuple[pulumi.Input[str], ...] = ()
    """Namespaces (besides the cluster's) whose pods need the credentials Secret."""


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
    metrics_after: Sequence[pulumi.Resource] | None = None
    """Resources that install the Prometheus CRDs; when given, a PodMonitor is created after them."""
    protect: bool = False
    """Protect the cluster and its databases from `pulumi destroy`."""
    cluster_name: str = "postgres"
    """Name of the CNPG Cluster; its read-write Service is `<cluster_name>-rw`."""


class PostgresCluster(pulumi.ComponentResource):
    """A CloudNativePG cluster with one owner role and database per application."""

    host: pulumi.Output[str]
    """Read-write endpoint (the primary), as a cluster DNS name."""
    port: pulumi.Output[int]
    """PostgreSQL port."""
    database_secrets: dict[str, pulumi.Output[str]]
    """Per database: Secret name (in the cluster's and each consumer namespace) with username, password,
    dbname, host, port and uri (`postgresql://...`, password percent-encoded)."""
    connection_uris: dict[str, pulumi.Output[str]]
    """Per database: the owner's connection URI, a Pulumi secret, for configuration that must embed it."""

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
        self.database_secrets = {db: secret.metadata.name for db, secret in owner_secrets.items()}
        self.connection_uris = {db: uri for db, (_, uri) in credentials.items()}

        after_operator = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[args.operator]))
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
        if args.metrics_after is not None:
            k8s.apiextensions.CustomResource(
                f"{name}-pod-monitor",
                api_version="monitoring.coreos.com/v1",
                kind="PodMonitor",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=cluster, namespace=args.namespace, labels=kube.labels("postgres", "metrics")),
                spec={
                    "selector": {"matchLabels": {"cnpg.io/cluster": cluster}},
                    "podMetricsEndpoints": [{"port": METRICS_PORT_NAME}],
                },
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
            {"host": self.host, "port": self.port, "database_secrets": self.database_secrets, "connection_uris": self.connection_uris}
        )

    def _credentials(
        self, name: str, db: Database, args: PostgresClusterArgs, child: pulumi.ResourceOptions
    ) -> tuple[k8s.core.v1.Secret, pulumi.Output[str]]:
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
                k8s.core.v1.Secret(
                    f"{name}-{db.name}-credentials{suffix}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=secret_name,
                        namespace=namespace,
                        # CloudNativePG reloads a managed role's password when its Secret carries this label.
                        labels={**kube.labels("postgres", "credentials"), "cnpg.io/reload": "true"},
                    ),
                    type="kubernetes.io/basic-auth",
                    string_data=data,
                    opts=child,
                )
            )
        return secrets[0], pulumi.Output.secret(data.apply(lambda fields: fields["uri"]))


def connection_fields(cluster: str, namespace: str, database: str, password: str) -> dict[str, str]:
    """Everything a client needs to reach `database` as its owner; the URI percent-encodes the password."""
    host = f"{cluster}-rw.{namespace}.svc.cluster.local"
    return {
        "username": database,
        "password": password,
        "dbname": database,
        "host": host,
        "port": str(PORT),
        "uri": f"postgresql://{quote(database, safe='')}:{quote(password, safe='')}@{host}:{PORT}/{database}?sslmode=require",
    }


def _cluster_spec(args: PostgresClusterArgs, owner_secrets: dict[str, k8s.core.v1.Secret]) -> dict:
    first = args.databases[0].name
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
        "bootstrap": {"initdb": {"database": first, "owner": first, "secret": {"name": owner_secrets[first].metadata.name}}},
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
                    "passwordSecret": {"name": owner_secrets[db.name].metadata.name},
                }
                for db in args.databases
            ]
        },
    }
