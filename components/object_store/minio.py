"""The minio engine: MinIO as a single-replica StatefulSet on a retained claim, plus a Job that creates the buckets
and a least-privilege MinIO user per consumer."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import ResourceSpec
from components.object_store import (
    CONSOLE_PORT,
    METRICS_PATH,
    S3_PORT,
    BucketConsumer,
    MinioSettings,
    ObjectStoreArgs,
)
from components.object_store.credentials import CONSUMER_SECRET_KEY, bucket_policy, consumer_secret
from components.versions import IMAGES

MINIO_UID = 1000


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


class MinioEngine:
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
        # One replica: MinIO's filesystem mode on a single ReadWriteOnce claim has exactly one writer.
        return kube.single_writer_statefulset(
            f"{name}-server",
            statefulset_name="minio",
            namespace=namespace,
            app="minio",
            service_name=api.metadata.name,
            pod_spec=pod_spec,
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
        # No job name: a changed script replaces the Job under a fresh name.
        return kube.one_shot_job(
            f"{name}-setup",
            namespace=args.namespace,
            job_labels=kube.labels("minio", "setup"),
            pod_spec=pod_spec,
            backoff_limit=4,
            deadline_seconds=900,
            # Pulumi waits for the StatefulSet to be ready before starting the Job against it.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[server])),
        )
