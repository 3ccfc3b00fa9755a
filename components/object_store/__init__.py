"""S3-compatible object storage behind one interface, whatever the engine: MinIO in the cluster (`minio.py`), AWS S3
(`s3.py`) or Cloudflare R2 (`r2.py`). Every engine gives each consumer its own credentials the same way
(`credentials.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from components.config import ResourceSpec, RetentionConfig, StackConfig
from components.facts import CLIENTS, ComponentFacts, Flow, Metrics, NamespaceFact, NodePortTarget
from components.object_store.credentials import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY, bucket_policy, consumer_secret
from components.secret_store import KubernetesSecrets, SecretStore

__all__ = [
    "CONSOLE_PORT",
    "CONSUMER_ACCESS_KEY",
    "CONSUMER_SECRET_KEY",
    "METRICS_PATH",
    "NAMESPACE",
    "S3_PORT",
    "BucketAccess",
    "BucketConsumer",
    "MinioSettings",
    "ObjectStore",
    "ObjectStoreArgs",
    "R2Settings",
    "S3Settings",
    "bucket_policy",
    "client_flow",
    "consumer_secret",
    "facts",
]

S3_PORT = 9000
CONSOLE_PORT = 9001
METRICS_PATH = "/minio/v2/metrics/cluster"
NAMESPACE = "storage"
"""Namespace role of the in-cluster engine (minio); the cloud engines run nothing in the cluster."""


def facts(config: StackConfig) -> ComponentFacts:
    """MinIO, the in-cluster engine, runs in `storage`: the S3 API on S3_PORT (its cluster metrics too), the web
    console on CONSOLE_PORT. The cloud engines run nothing in the cluster."""
    if config.object_store.engine != "minio":
        return ComponentFacts("objects")
    return ComponentFacts(
        "objects",
        namespaces=(NamespaceFact(NAMESPACE),),
        node_ports={"minioApi": NodePortTarget(NAMESPACE, S3_PORT), "minioConsole": NodePortTarget(NAMESPACE, CONSOLE_PORT)},
        metrics=(Metrics(NAMESPACE, S3_PORT, METRICS_PATH),),
    )


def client_flow(users: tuple[str, ...]) -> Flow:
    """The in-cluster S3 API, for the namespaces of its users and the platform's clients."""
    return Flow("s3-clients", NAMESPACE, (S3_PORT,), (*users, CLIENTS))


@dataclass(frozen=True)
class BucketConsumer:
    """A workload that reads and writes some buckets with credentials of its own."""

    name: str
    """Consumer name (`mlflow`); names its user, its policy and its Secret `<name>-s3-credentials`."""
    namespace: pulumi.Input[str]
    """Namespace of the consumer's pods, where its credentials Secret is created."""
    buckets: tuple[str, ...]
    """Logical bucket names the consumer may use; every other bucket is denied."""


@dataclass(frozen=True)
class BucketAccess:
    """One bucket as its consumer reaches it: what a workload needs to read and write it, whatever the engine."""

    bucket: pulumi.Input[str]
    """Physical bucket name (the engine may prefix the logical one)."""
    endpoint: pulumi.Input[str]
    """S3 endpoint URL that workloads in the cluster use."""
    region: pulumi.Input[str]
    """S3 region (`auto` on R2)."""
    credentials_secret: pulumi.Input[str]
    """Secret in the consumer's namespace with its own AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    client_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Non-secret environment every S3 client of the store needs (endpoint, region, R2's checksum behaviour)."""


@dataclass(frozen=True)
class MinioSettings:
    """The in-cluster MinIO engine."""

    size: str
    """Claim size (Kubernetes quantity)."""
    storage_class: pulumi.Input[str]
    """Storage class of the claim; reclaimPolicy Retain."""
    resources: ResourceSpec
    """Requests and limits of the MinIO container."""
    api_node_port: int | None = None
    """Host NodePort for the S3 API (dev), or None."""
    console_node_port: int | None = None
    """Host NodePort for the web console (dev), or None."""
    metrics_after: pulumi.Resource | None = None
    """The release installing the Prometheus CRDs; when given, MinIO's cluster metrics are scraped."""


@dataclass(frozen=True)
class S3Settings:
    """AWS S3 buckets (the aws provider comes from the component's providers)."""

    bucket_prefix: str
    """Prefix making bucket names globally unique: `<prefix>-<bucket>`."""
    retention: RetentionConfig
    """Lifecycle rules."""
    kms_key_arn: str = ""
    """Encrypt with this KMS key (SSE-KMS); empty: S3-managed keys (SSE-S3)."""


@dataclass(frozen=True)
class R2Settings:
    """Cloudflare R2 buckets (the cloudflare provider comes from the component's providers)."""

    account_id: str
    """Cloudflare account id."""
    bucket_prefix: str
    """Prefix of the bucket names: `<prefix>-<bucket>`."""
    retention: RetentionConfig
    """Lifecycle rules (R2 supports expiry and multipart abort, not versions)."""
    access_key_id: pulumi.Input[str]
    """R2 API token id, read with require_secret."""
    secret_access_key: pulumi.Input[str]
    """SHA-256 of the R2 API token value, read with require_secret."""


@dataclass(frozen=True)
class ObjectStoreArgs:
    """What an ObjectStore needs; built by the composition from typed config."""

    engine: str
    """Which engine serves the buckets: `minio`, `s3` or `r2`."""
    namespace: pulumi.Input[str] | None
    """Namespace of the in-cluster engine (minio); None for the cloud engines."""
    buckets: tuple[str, ...]
    """Buckets to create, by logical name."""
    region: str
    """Region S3 clients are told to use."""
    consumers: tuple[BucketConsumer, ...] = ()
    """Workloads that get least-privilege credentials."""
    minio: MinioSettings | None = None
    """Settings of the minio engine."""
    s3: S3Settings | None = None
    """Settings of the s3 engine."""
    r2: R2Settings | None = None
    """Settings of the r2 engine."""
    protect: bool = False
    """Protect stored data (claims, buckets) from `pulumi destroy`."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where generated secrets are kept: Kubernetes Secrets, or Vault synced into Secrets of the same name."""


class ObjectStore(pulumi.ComponentResource):
    """S3-compatible object storage: consumers see an endpoint, bucket names and a credentials Secret, never the engine."""

    endpoint: pulumi.Output[str]
    """S3 endpoint URL that workloads in the cluster use."""
    region: pulumi.Output[str]
    """Region to configure S3 clients with."""
    bucket_names: dict[str, pulumi.Output[str]]
    """Physical bucket name by logical name (the engine may prefix them)."""
    credentials_secrets: dict[str, pulumi.Output[str]]
    """Per consumer: name of the Secret (in its namespace) with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    client_env: dict[str, pulumi.Output[str]]
    """Non-secret environment every S3 client of this store needs (endpoint, region, checksum behaviour)."""

    def __init__(self, name: str, args: ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        self._consumers = {consumer.name: consumer for consumer in args.consumers}
        super().__init__("mlops:object_store:ObjectStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        unknown = {b for c in args.consumers for b in c.buckets} - set(args.buckets)
        if unknown:
            raise ValueError(f"consumers use buckets the store does not create: {sorted(unknown)}")
        settings = {"minio": args.minio, "s3": args.s3, "r2": args.r2}[args.engine]
        if settings is None:
            raise ValueError(f"object store engine {args.engine!r} needs its settings")

        engine = _engine_class(args.engine)(name, args, settings, child)
        self.endpoint = engine.endpoint
        self.region = pulumi.Output.from_input(args.region)
        self.bucket_names = engine.bucket_names
        self.credentials_secrets = engine.credentials_secrets
        self.client_env = {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_DEFAULT_REGION": self.region}
        if args.engine != "s3":
            # boto3 >= 1.36 sends CRC checksums by default, which S3-compatible stores reject or mishandle.
            self.client_env["AWS_REQUEST_CHECKSUM_CALCULATION"] = pulumi.Output.from_input("when_required")
            self.client_env["AWS_RESPONSE_CHECKSUM_VALIDATION"] = pulumi.Output.from_input("when_required")
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "region": self.region,
                "bucket_names": self.bucket_names,
                "credentials_secrets": self.credentials_secrets,
                "client_env": self.client_env,
            }
        )

    def access(self, consumer: str, bucket: str | None = None) -> BucketAccess:
        """How `consumer` reaches `bucket` (by default its only one), with its own credentials."""
        if consumer not in self._consumers:
            raise ValueError(f"{consumer!r} is not a consumer of this object store: {sorted(self._consumers)}")
        allowed = self._consumers[consumer].buckets
        if bucket is None and len(allowed) != 1:
            raise ValueError(f"consumer {consumer!r} uses {list(allowed)}: name the bucket")
        bucket = bucket or allowed[0]
        if bucket not in allowed:
            raise ValueError(f"consumer {consumer!r} may not use bucket {bucket!r}, only {list(allowed)}")
        return BucketAccess(
            bucket=self.bucket_names[bucket],
            endpoint=self.endpoint,
            region=self.region,
            credentials_secret=self.credentials_secrets[consumer],
            client_env=self.client_env,
        )


def _engine_class(engine: str) -> type:
    # Each engine's module is imported only when a stack uses it: the cloud SDKs take seconds to import
    # (pulumi_cloudflare), and a stack pays for its own engine alone.
    if engine == "s3":
        from components.object_store.s3 import S3Engine

        return S3Engine
    if engine == "r2":
        from components.object_store.r2 import R2Engine

        return R2Engine
    from components.object_store.minio import MinioEngine

    return MinioEngine
