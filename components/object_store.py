"""S3-compatible object storage behind one interface, whatever the engine (minio today; s3 and r2 slot in here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import EXPIRING_BACKUP_PREFIXES, ResourceSpec, RetentionConfig, StackConfig
from components.facts import CLIENTS, ComponentFacts, Flow, Metrics, NamespaceFact, NodePortTarget
from components.secret_store import KubernetesSecrets, SecretStore, StoredSecret
from components.versions import IMAGES

S3_PORT = 9000
CONSOLE_PORT = 9001
MINIO_UID = 1000
METRICS_PATH = "/minio/v2/metrics/cluster"
NAMESPACE = "storage"
"""Namespace role of the in-cluster engine (minio); the cloud engines run nothing in the cluster."""

CONSUMER_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
CONSUMER_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"


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
    """Which engine serves the buckets: `minio`."""
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
        super().__init__("mlops:object_store:ObjectStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        unknown = {b for c in args.consumers for b in c.buckets} - set(args.buckets)
        if unknown:
            raise ValueError(f"consumers use buckets the store does not create: {sorted(unknown)}")
        engines = {"minio": (_MinioEngine, args.minio), "s3": (_S3Engine, args.s3), "r2": (_R2Engine, args.r2)}
        engine_class, settings = engines[args.engine]
        if settings is None:
            raise ValueError(f"object store engine {args.engine!r} needs its settings")

        engine = engine_class(name, args, settings, child)
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


def bucket_policy(buckets: tuple[str, ...], kms_key_arn: str = "") -> str:
    """An S3 policy document allowing object read/write in exactly these buckets (and use of their KMS key)."""
    kms = [{"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [kms_key_arn]}] if kms_key_arn else []
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                *kms,
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    "Resource": [f"arn:aws:s3:::{b}" for b in buckets],
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets],
                },
            ],
        },
        sort_keys=True,
    )


def consumer_secret(
    name: str,
    args: ObjectStoreArgs,
    consumer: BucketConsumer,
    access_key: pulumi.Input[str],
    secret_key: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> StoredSecret:
    """A consumer's S3 credentials, in its own namespace, under the keys every engine uses."""
    return args.secrets.secret(
        f"{name}-{consumer.name}-credentials",
        name=f"{consumer.name}-s3-credentials",
        namespace=consumer.namespace,
        labels=kube.labels(consumer.name, "s3-credentials"),
        data={CONSUMER_ACCESS_KEY: access_key, CONSUMER_SECRET_KEY: secret_key},
        opts=opts,
    )


def _env_name(consumer: str) -> str:
    return consumer.upper().replace("-", "_") + "_SECRET_KEY"


def setup_script(buckets: tuple[str, ...], consumers: tuple[BucketConsumer, ...]) -> str:
    """The `mc` script the setup Job runs; every step is idempotent, so re-running the Job is harmless."""
    lines = [
        "set -eu",
        'export MC_CONFIG_DIR=/tmp/mc',
        "tries=0",
        'until mc alias set platform "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do',
        "  tries=$((tries + 1))",
        '  if [ "$tries" -ge 60 ]; then echo "MinIO at $MINIO_ENDPOINT did not answer" >&2; exit 1; fi',
        "  sleep 5",
        "done",
    ]
    lines += [f"mc mb --ignore-existing platform/{bucket}" for bucket in buckets]
    for consumer in consumers:
        policy = f"{consumer.name}-buckets"
        lines += [
            f"printf '%s' '{bucket_policy(consumer.buckets)}' > /tmp/{policy}.json",
            f"mc admin policy create platform {policy} /tmp/{policy}.json",
            f'mc admin user add platform {consumer.name} "${_env_name(consumer.name)}"',
            # A second attach of the same policy fails with "already in effect"; that is the state we want.
            f"if ! out=$(mc admin policy attach platform {policy} --user {consumer.name} 2>&1); then",
            '  case "$out" in *"already in effect"*) ;; *) echo "$out" >&2; exit 1 ;; esac',
            "fi",
        ]
    lines.append('echo "buckets and users are in place"')
    return "\n".join(lines) + "\n"


class _MinioEngine:
    """MinIO as a single-replica StatefulSet on a retained claim, plus a Job that creates buckets and users."""

    def __init__(self, name: str, args: ObjectStoreArgs, settings: MinioSettings, child: pulumi.ResourceOptions) -> None:
        namespace = args.namespace
        root_user = random.RandomString(f"{name}-root-user", length=16, special=False, upper=False, opts=child)
        root_password = random.RandomPassword(f"{name}-root-password", length=40, special=False, opts=child)
        root = args.secrets.secret(
            f"{name}-root-credentials",
            name="minio-root",
            namespace=namespace,
            labels=kube.labels("minio", "server"),
            data={"MINIO_ROOT_USER": root_user.result, "MINIO_ROOT_PASSWORD": root_password.result},
            opts=child,
        )
        claim = kube.retained_claim(
            f"{name}-data",
            claim_name="minio-data",
            namespace=namespace,
            size=settings.size,
            storage_class=settings.storage_class,
            app="minio",
            protect=args.protect,
            opts=child,
        )
        api = kube.service(
            f"{name}-api-service",
            service_name="minio",
            namespace=namespace,
            app="minio",
            component="server",
            ports={"s3": S3_PORT},
            node_ports={"s3": settings.api_node_port},
            opts=child,
        )
        kube.service(
            f"{name}-console-service",
            service_name="minio-console",
            namespace=namespace,
            app="minio",
            component="server",
            ports={"console": CONSOLE_PORT},
            node_ports={"console": settings.console_node_port},
            opts=child,
        )
        server = self._statefulset(name, namespace, root, claim, api, settings, child)
        if settings.metrics_after is not None:
            kube.metrics_monitor(
                f"{name}-service-monitor",
                kind="ServiceMonitor",
                monitor_name="minio",
                namespace=namespace,
                app="minio",
                match_labels=kube.selector("minio", "server"),
                endpoints=[{"port": "s3", "path": METRICS_PATH, "interval": "60s"}],
                opts=pulumi.ResourceOptions(parent=child.parent, depends_on=[api, settings.metrics_after]),
            )
        self.endpoint = pulumi.Output.concat("http://minio.", namespace, f".svc.cluster.local:{S3_PORT}")
        self.bucket_names = {bucket: pulumi.Output.from_input(bucket) for bucket in args.buckets}

        self.credentials_secrets: dict[str, pulumi.Output[str]] = {}
        job_secrets = {}
        for consumer in args.consumers:
            secret_key = random.RandomPassword(f"{name}-{consumer.name}-secret-key", length=40, special=False, opts=child)
            # The same key twice: the setup Job needs it beside MinIO, the consumer's pods in their own namespace.
            job_secrets[consumer.name] = args.secrets.secret(
                f"{name}-{consumer.name}-user",
                name=f"minio-user-{consumer.name}",
                namespace=namespace,
                labels=kube.labels("minio", "setup"),
                data={CONSUMER_SECRET_KEY: secret_key.result},
                opts=child,
            )
            secret = consumer_secret(name, args, consumer, consumer.name, secret_key.result, child)
            self.credentials_secrets[consumer.name] = secret.name
        self._setup_job(name, args, root, job_secrets, server, child)

    @staticmethod
    def _statefulset(name, namespace, root, claim, api, settings: MinioSettings, child) -> k8s.apps.v1.StatefulSet:
        container = k8s.core.v1.ContainerArgs(
            name="minio",
            image=IMAGES["minio"],
            args=["server", "/data", "--address", f":{S3_PORT}", "--console-address", f":{CONSOLE_PORT}", "--certs-dir", "/tmp/certs"],
            env=[
                kube.secret_env("MINIO_ROOT_USER", root.name, "MINIO_ROOT_USER"),
                kube.secret_env("MINIO_ROOT_PASSWORD", root.name, "MINIO_ROOT_PASSWORD"),
                # Metrics without a bearer token, for the ServiceMonitor; they carry no object data.
                *kube.plain_env({"HOME": "/tmp", **({"MINIO_PROMETHEUS_AUTH_TYPE": "public"} if settings.metrics_after else {})}),
            ],
            ports=[
                k8s.core.v1.ContainerPortArgs(name="s3", container_port=S3_PORT),
                k8s.core.v1.ContainerPortArgs(name="console", container_port=CONSOLE_PORT),
            ],
            readiness_probe=kube.http_probe("/minio/health/ready", "s3"),
            liveness_probe=kube.http_probe("/minio/health/live", "s3", period=20),
            resources=kube.resources(settings.resources),
            security_context=kube.container_security(),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data"),
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
            ],
        )
        pod_spec = k8s.core.v1.PodSpecArgs(
            automount_service_account_token=False,
            security_context=kube.pod_security(MINIO_UID),
            containers=[container],
            volumes=[kube.claim_volume(claim), kube.scratch_volume()],
        )
        return k8s.apps.v1.StatefulSet(
            f"{name}-server",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="minio", namespace=namespace, labels=kube.labels("minio", "server"), annotations=kube.scanner_skips(pod_spec)
            ),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                # One replica: MinIO's filesystem mode on a single ReadWriteOnce claim has exactly one writer.
                replicas=1,
                service_name=api.metadata.name,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("minio", "server")),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels("minio", "server")),
                    spec=pod_spec,
                ),
            ),
            opts=child,
        )

    @staticmethod
    def _setup_job(name, args: ObjectStoreArgs, root, job_secrets, server, child) -> k8s.batch.v1.Job:
        env = [
            kube.secret_env("MINIO_ROOT_USER", root.name, "MINIO_ROOT_USER"),
            kube.secret_env("MINIO_ROOT_PASSWORD", root.name, "MINIO_ROOT_PASSWORD"),
            *[kube.secret_env(_env_name(c), s.name, CONSUMER_SECRET_KEY) for c, s in job_secrets.items()],
            *kube.plain_env({"MINIO_ENDPOINT": pulumi.Output.concat("http://minio.", args.namespace, f".svc:{S3_PORT}")}),
        ]
        pod_spec = k8s.core.v1.PodSpecArgs(
            restart_policy="OnFailure",
            automount_service_account_token=False,
            security_context=kube.pod_security(MINIO_UID),
            containers=[
                k8s.core.v1.ContainerArgs(
                    name="mc",
                    image=IMAGES["mc"],
                    command=["/bin/sh", "-c", setup_script(args.buckets, args.consumers)],
                    env=env,
                    resources=kube.resources(ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "200m", "memory": "128Mi"})),
                    security_context=kube.container_security(),
                    volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
                )
            ],
            volumes=[kube.scratch_volume()],
        )
        return k8s.batch.v1.Job(
            # No metadata.name: a changed script replaces the Job (its template is immutable) under a fresh name.
            f"{name}-setup",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=args.namespace, labels=kube.labels("minio", "setup"), annotations=kube.scanner_skips(pod_spec)
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=4,
                active_deadline_seconds=900,
                template=k8s.core.v1.PodTemplateSpecArgs(metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels("minio", "setup")), spec=pod_spec),
            ),
            # Pulumi waits for the StatefulSet to be ready before starting the Job against it.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[server])),
        )


class _S3Engine:
    """AWS S3: private, versioned, encrypted buckets that refuse plain HTTP; one IAM user per consumer.

    The cloud SDKs are imported by their engine only, so a stack pays for the one it uses (seconds for cloudflare)."""

    def __init__(self, name: str, args: ObjectStoreArgs, settings: S3Settings, child: pulumi.ResourceOptions) -> None:
        import pulumi_aws as aws

        self.endpoint = pulumi.Output.from_input(f"https://s3.{args.region}.amazonaws.com")
        physical = {bucket: f"{settings.bucket_prefix}-{bucket}" for bucket in args.buckets}
        self.bucket_names = {
            bucket: self._bucket(f"{name}-{bucket}", bucket_name, bucket == "backups", settings, args.protect, child)
            for bucket, bucket_name in physical.items()
        }
        self.credentials_secrets: dict[str, pulumi.Output[str]] = {}
        for consumer in args.consumers:
            user = aws.iam.User(
                f"{name}-{consumer.name}-user",
                name=f"{settings.bucket_prefix}-{consumer.name}",
                tags={"app.kubernetes.io/part-of": kube.PART_OF},
                opts=child,
            )
            aws.iam.UserPolicy(
                f"{name}-{consumer.name}-policy",
                user=user.name,
                policy=bucket_policy(tuple(physical[b] for b in consumer.buckets), settings.kms_key_arn),
                opts=child,
            )
            key = aws.iam.AccessKey(f"{name}-{consumer.name}-access-key", user=user.name, opts=child)
            secret = consumer_secret(name, args, consumer, key.id, key.secret, child)
            self.credentials_secrets[consumer.name] = secret.name

    @staticmethod
    def _bucket(
        name: str, bucket_name: str, is_backups: bool, settings: S3Settings, protect: bool, child: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        import pulumi_aws as aws

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=bucket_name,
            force_destroy=False,
            tags={"app.kubernetes.io/part-of": kube.PART_OF},
            opts=kube.stateful(child, protect),
        )
        # Ownership enforced: ACLs are off, the bucket owner owns every object.
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        # Versioning is the undo button for overwrites and deletes; old versions expire by lifecycle.
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
        )
        encryption = (
            {"sse_algorithm": "aws:kms", "kms_master_key_id": settings.kms_key_arn}
            if settings.kms_key_arn
            else {"sse_algorithm": "AES256"}
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": encryption, "bucket_key_enabled": bool(settings.kms_key_arn)}],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(deny_insecure_transport),
            # A policy put while the public access block is being applied can be refused; order them.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[public_access])),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id, rules=s3_lifecycle_rules(settings.retention, is_backups), opts=child
        )
        return bucket.bucket


def deny_insecure_transport(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
        sort_keys=True,
    )


def s3_lifecycle_rules(retention: RetentionConfig, is_backups: bool) -> list[dict]:
    rules = [
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {"days_after_initiation": retention.abort_multipart_days},
        },
        {
            "id": "expire-old-versions",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": retention.noncurrent_version_days},
        },
    ]
    if is_backups:
        rules += [
            {
                "id": f"expire-{prefix.rstrip('/')}",
                "status": "Enabled",
                "filter": {"prefix": prefix},
                "expiration": {"days": retention.backups_days},
            }
            for prefix in EXPIRING_BACKUP_PREFIXES
        ]
    return rules


class _R2Engine:
    """Cloudflare R2: buckets and lifecycle through the cloudflare provider, S3 API credentials from config.

    R2 has no versioning, bucket policies, public-access block, ACLs or SSE headers: none is emitted. Buckets are
    private unless a public domain is attached, and encrypted at rest by Cloudflare. R2 cannot scope the S3
    credentials per consumer here: scope the API token to these buckets when creating it.
    """

    def __init__(self, name: str, args: ObjectStoreArgs, settings: R2Settings, child: pulumi.ResourceOptions) -> None:
        import pulumi_cloudflare as cloudflare

        self.endpoint = pulumi.Output.from_input(f"https://{settings.account_id}.r2.cloudflarestorage.com")
        self.bucket_names = {}
        for bucket in args.buckets:
            r2_bucket = cloudflare.R2Bucket(
                f"{name}-{bucket}-bucket",
                account_id=settings.account_id,
                name=f"{settings.bucket_prefix}-{bucket}",
                opts=kube.stateful(child, args.protect),
            )
            cloudflare.R2BucketLifecycle(
                f"{name}-{bucket}-lifecycle",
                account_id=settings.account_id,
                bucket_name=r2_bucket.name,
                rules=r2_lifecycle_rules(settings.retention, bucket == "backups"),
                opts=child,
            )
            self.bucket_names[bucket] = r2_bucket.name
        self.credentials_secrets = {
            consumer.name: consumer_secret(name, args, consumer, settings.access_key_id, settings.secret_access_key, child).name
            for consumer in args.consumers
        }


def r2_lifecycle_rules(retention: RetentionConfig, is_backups: bool) -> list[dict]:
    day = 86400
    rules = [
        {
            "id": "abort-incomplete-uploads",
            "enabled": True,
            "conditions": {"prefix": ""},
            "abort_multipart_uploads_transition": {"condition": {"type": "Age", "max_age": retention.abort_multipart_days * day}},
        }
    ]
    if is_backups:
        rules += [
            {
                "id": f"expire-{prefix.rstrip('/')}",
                "enabled": True,
                "conditions": {"prefix": prefix},
                "delete_objects_transition": {"condition": {"type": "Age", "max_age": retention.backups_days * day}},
            }
            for prefix in EXPIRING_BACKUP_PREFIXES
        ]
    return rules
