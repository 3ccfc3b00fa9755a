"""S3-compatible object storage behind one interface, whatever the engine (minio today; s3 and r2 slot in here)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import ResourceSpec
from components.versions import IMAGES

S3_PORT = 9000
CONSOLE_PORT = 9001
MINIO_UID = 1000

CONSUMER_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
CONSUMER_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"


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


@dataclass(frozen=True)
class ObjectStoreArgs:
    """What an ObjectStore needs; built by the composition from typed config."""

    engine: str
    """Which engine serves the buckets: `minio`."""
    namespace: pulumi.Input[str]
    """Namespace of the in-cluster engine."""
    buckets: tuple[str, ...]
    """Buckets to create, by logical name."""
    region: str
    """Region S3 clients are told to use."""
    consumers: tuple[BucketConsumer, ...] = ()
    """Workloads that get least-privilege credentials."""
    minio: MinioSettings | None = None
    """Settings of the minio engine."""
    protect: bool = False
    """Protect stored data (claims, buckets) from `pulumi destroy`."""


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
        if args.engine != "minio" or args.minio is None:
            raise ValueError(f"object store engine {args.engine!r} needs its settings")

        engine = _MinioEngine(name, args, args.minio, child)
        self.endpoint = engine.endpoint
        self.region = pulumi.Output.from_input(args.region)
        self.bucket_names = {bucket: pulumi.Output.from_input(bucket) for bucket in args.buckets}
        self.credentials_secrets = engine.credentials_secrets
        self.client_env = {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            # boto3 >= 1.36 sends CRC checksums by default, which S3-compatible stores reject or mishandle.
            "AWS_REQUEST_CHECKSUM_CALCULATION": pulumi.Output.from_input("when_required"),
            "AWS_RESPONSE_CHECKSUM_VALIDATION": pulumi.Output.from_input("when_required"),
        }
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "region": self.region,
                "bucket_names": self.bucket_names,
                "credentials_secrets": self.credentials_secrets,
                "client_env": self.client_env,
            }
        )


def bucket_policy(buckets: tuple[str, ...]) -> str:
    """An S3 policy document allowing object read/write in exactly these buckets."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
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
        root = k8s.core.v1.Secret(
            f"{name}-root-credentials",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="minio-root", namespace=namespace, labels=kube.labels("minio", "server")),
            type="Opaque",
            string_data={"MINIO_ROOT_USER": root_user.result, "MINIO_ROOT_PASSWORD": root_password.result},
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
        self.endpoint = pulumi.Output.concat("http://minio.", namespace, f".svc.cluster.local:{S3_PORT}")

        self.credentials_secrets: dict[str, pulumi.Output[str]] = {}
        job_secrets = {}
        for consumer in args.consumers:
            secret_key = random.RandomPassword(f"{name}-{consumer.name}-secret-key", length=40, special=False, opts=child)
            # The same key twice: the setup Job needs it beside MinIO, the consumer's pods in their own namespace.
            job_secrets[consumer.name] = k8s.core.v1.Secret(
                f"{name}-{consumer.name}-user",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"minio-user-{consumer.name}", namespace=namespace, labels=kube.labels("minio", "setup")
                ),
                type="Opaque",
                string_data={CONSUMER_SECRET_KEY: secret_key.result},
                opts=child,
            )
            consumer_secret = k8s.core.v1.Secret(
                f"{name}-{consumer.name}-credentials",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"{consumer.name}-s3-credentials",
                    namespace=consumer.namespace,
                    labels=kube.labels(consumer.name, "s3-credentials"),
                ),
                type="Opaque",
                string_data={CONSUMER_ACCESS_KEY: consumer.name, CONSUMER_SECRET_KEY: secret_key.result},
                opts=child,
            )
            self.credentials_secrets[consumer.name] = consumer_secret.metadata.name
        self._setup_job(name, args, root, job_secrets, server, child)

    @staticmethod
    def _statefulset(name, namespace, root, claim, api, settings: MinioSettings, child) -> k8s.apps.v1.StatefulSet:
        container = k8s.core.v1.ContainerArgs(
            name="minio",
            image=IMAGES["minio"],
            args=["server", "/data", "--address", f":{S3_PORT}", "--console-address", f":{CONSOLE_PORT}", "--certs-dir", "/tmp/certs"],
            env=[
                kube.secret_env("MINIO_ROOT_USER", root.metadata.name, "MINIO_ROOT_USER"),
                kube.secret_env("MINIO_ROOT_PASSWORD", root.metadata.name, "MINIO_ROOT_PASSWORD"),
                *kube.plain_env({"HOME": "/tmp"}),
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
        return k8s.apps.v1.StatefulSet(
            f"{name}-server",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="minio", namespace=namespace, labels=kube.labels("minio", "server")),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                # One replica: MinIO's filesystem mode on a single ReadWriteOnce claim has exactly one writer.
                replicas=1,
                service_name=api.metadata.name,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("minio", "server")),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels("minio", "server")),
                    spec=k8s.core.v1.PodSpecArgs(
                        automount_service_account_token=False,
                        security_context=kube.pod_security(MINIO_UID),
                        containers=[container],
                        volumes=[
                            kube.claim_volume(claim),
                            kube.scratch_volume(),
                        ],
                    ),
                ),
            ),
            opts=child,
        )

    @staticmethod
    def _setup_job(name, args: ObjectStoreArgs, root, job_secrets, server, child) -> k8s.batch.v1.Job:
        env = [
            kube.secret_env("MINIO_ROOT_USER", root.metadata.name, "MINIO_ROOT_USER"),
            kube.secret_env("MINIO_ROOT_PASSWORD", root.metadata.name, "MINIO_ROOT_PASSWORD"),
            *[kube.secret_env(_env_name(c), s.metadata.name, CONSUMER_SECRET_KEY) for c, s in job_secrets.items()],
            *kube.plain_env({"MINIO_ENDPOINT": pulumi.Output.concat("http://minio.", args.namespace, f".svc:{S3_PORT}")}),
        ]
        return k8s.batch.v1.Job(
            # No metadata.name: a changed script replaces the Job (its template is immutable) under a fresh name.
            f"{name}-setup",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=args.namespace, labels=kube.labels("minio", "setup")),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=4,
                active_deadline_seconds=900,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels("minio", "setup")),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="OnFailure",
                        automount_service_account_token=False,
                        security_context=kube.pod_security(MINIO_UID),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="mc",
                                image=IMAGES["mc"],
                                command=["/bin/sh", "-c", setup_script(args.buckets, args.consumers)],
                                env=env,
                                resources=kube.resources(
                                    ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "200m", "memory": "128Mi"})
                                ),
                                security_context=kube.container_security(),
                                volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
                            )
                        ],
                        volumes=[kube.scratch_volume()],
                    ),
                ),
            ),
            # Pulumi waits for the StatefulSet to be ready before starting the Job against it.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[server])),
        )
