"""What every backup CronJob shares: where copies go and how rclone reaches it, what each job is given (namespace,
credentials, schedule), the CronJob itself (labelled for alerting, one run at a time, a deadline per run), and the
shape of the jobs that produce files and then upload them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import ResourceSpec
from components.object_store import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY
from components.versions import IMAGES

BACKUP_LABEL = "mlops.platform/backup"
"""Label naming the backup a CronJob takes; the observability stack alerts per value."""
NOBODY = 65534
RCLONE_PROVIDERS = {"minio": "Minio", "s3": "AWS", "r2": "Cloudflare"}


@dataclass(frozen=True)
class BackupTarget:
    """Where backups go and how rclone reaches it; a credentials Secret must exist in each job's namespace."""

    bucket: pulumi.Input[str]
    """Physical name of the `backups` bucket."""
    engine: str
    """Object store engine (minio, s3, r2): picks rclone's S3 provider and whether a prune step is needed."""
    endpoint: pulumi.Input[str]
    """S3 endpoint URL."""
    region: pulumi.Input[str]
    """S3 region."""
    retention_days: int
    """Days copies are kept; the bucket lifecycle enforces it on s3/r2, a prune step on minio."""

    @property
    def prune(self) -> bool:
        return self.engine == "minio"


@dataclass(frozen=True)
class BackupJob:
    """What every backup job is given: where it runs, the S3 credentials it uploads with, and when."""

    namespace: pulumi.Input[str]
    """Namespace of the CronJob, where its credentials Secret is."""
    credentials_secret: pulumi.Input[str]
    """Secret with the S3 credentials, in `namespace`."""
    schedule: str
    """Cron schedule (5 fields, UTC)."""


def rclone_env(target: BackupTarget, credentials_secret: pulumi.Input[str]) -> list[k8s.core.v1.EnvVarArgs]:
    """rclone's remote `store`, configured entirely by environment; credentials only from the Secret."""
    return [
        kube.secret_env("RCLONE_CONFIG_STORE_ACCESS_KEY_ID", credentials_secret, CONSUMER_ACCESS_KEY),
        kube.secret_env("RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY", credentials_secret, CONSUMER_SECRET_KEY),
        *kube.plain_env(
            {
                "RCLONE_CONFIG_STORE_TYPE": "s3",
                "RCLONE_CONFIG_STORE_PROVIDER": RCLONE_PROVIDERS[target.engine],
                "RCLONE_CONFIG_STORE_ENDPOINT": target.endpoint,
                "RCLONE_CONFIG_STORE_REGION": target.region,
                "RCLONE_CONFIG_STORE_ENV_AUTH": "false",
                # The bucket exists and the job's user may not list all buckets.
                "RCLONE_CONFIG_STORE_NO_CHECK_BUCKET": "true",
                "BACKUP_BUCKET": target.bucket,
                "HOME": "/tmp",
            }
        ),
    ]


def upload_script(prefix: str, target: BackupTarget) -> str:
    """Upload what the producer left under /backup/<prefix>; prune old copies where no lifecycle does it."""
    lines = [
        "set -eu",
        f'if [ -z "$(ls -A /backup/{prefix} 2>/dev/null)" ]; then echo "nothing to upload"; exit 0; fi',
        f'rclone copy --checksum /backup/{prefix} "store:$BACKUP_BUCKET/{prefix}"',
    ]
    if target.prune:
        lines.append(f'rclone delete --min-age {target.retention_days}d "store:$BACKUP_BUCKET/{prefix}"')
    lines.append(f'echo "uploaded to $BACKUP_BUCKET/{prefix}"')
    return "\n".join(lines) + "\n"


def container(name: str, image: str, argv: list[pulumi.Input[str]], env, resources: ResourceSpec, mounts) -> k8s.core.v1.ContainerArgs:
    """A hardened container running `argv`; its last element (the script) becomes `args`, so it reads on its own."""
    return k8s.core.v1.ContainerArgs(
        name=name,
        image=image,
        command=argv[:-1],
        args=argv[-1:],
        env=env,
        resources=kube.resources(resources),
        security_context=kube.container_security(),
        volume_mounts=mounts,
    )


def cron_job(
    name: str,
    *,
    backup: str,
    settings: BackupJob,
    uid: int,
    containers: list[k8s.core.v1.ContainerArgs],
    volumes: list[k8s.core.v1.VolumeArgs],
    deadline_seconds: int,
    opts: pulumi.ResourceOptions,
    init_containers: Sequence[k8s.core.v1.ContainerArgs] = (),
    service_account: str | None = None,
) -> k8s.batch.v1.CronJob:
    """The CronJob `backup-<backup>` (child `<name>-<backup>`), labelled with the backup it takes."""
    metadata_labels = {**kube.labels("backups", "backup"), BACKUP_LABEL: backup}
    pod_spec = k8s.core.v1.PodSpecArgs(
        restart_policy="Never",
        # Only a job that logs in with its ServiceAccount (Vault's Kubernetes auth) gets a token.
        service_account_name=service_account,
        automount_service_account_token=service_account is not None,
        security_context=kube.pod_security(uid),
        init_containers=list(init_containers) or None,
        containers=containers,
        volumes=volumes,
    )
    return k8s.batch.v1.CronJob(
        f"{name}-{backup}",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=f"backup-{backup}", namespace=settings.namespace, labels=metadata_labels, annotations=kube.scanner_skips(pod_spec)
        ),
        spec=k8s.batch.v1.CronJobSpecArgs(
            schedule=settings.schedule,
            time_zone="Etc/UTC",
            # Never two copies at once: a slow run must finish (or hit its deadline) before the next starts.
            concurrency_policy="Forbid",
            starting_deadline_seconds=3600,
            successful_jobs_history_limit=3,
            failed_jobs_history_limit=3,
            job_template=k8s.batch.v1.JobTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=metadata_labels),
                spec=k8s.batch.v1.JobSpecArgs(
                    backoff_limit=2,
                    active_deadline_seconds=deadline_seconds,
                    template=k8s.core.v1.PodTemplateSpecArgs(metadata=k8s.meta.v1.ObjectMetaArgs(labels=metadata_labels), spec=pod_spec),
                ),
            ),
        ),
        opts=opts,
    )


SCRATCH = k8s.core.v1.VolumeMountArgs(name="backup", mount_path="/backup")
TMP = k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")


def produce_then_upload(
    name: str,
    *,
    backup: str,
    settings: BackupJob,
    producer: k8s.core.v1.ContainerArgs,
    prefix: str,
    scratch_size: str,
    uid: int,
    deadline_seconds: int,
    target: BackupTarget,
    resources: ResourceSpec,
    opts: pulumi.ResourceOptions,
    volumes: Sequence[k8s.core.v1.VolumeArgs] = (),
    service_account: str | None = None,
) -> k8s.batch.v1.CronJob:
    """A backup that produces files: `producer`, an init container mounting SCRATCH and TMP, writes them under
    /backup/<prefix> on a scratch volume of `scratch_size`; then rclone uploads them. `volumes` are what the producer
    reads besides."""
    upload = container(
        "upload", IMAGES["rclone"], ["/bin/sh", "-c", upload_script(prefix, target)],
        rclone_env(target, settings.credentials_secret), resources, [SCRATCH, TMP],
    )
    return cron_job(
        name,
        backup=backup,
        settings=settings,
        uid=uid,
        init_containers=[producer],
        containers=[upload],
        volumes=[*volumes, kube.scratch_volume("backup", scratch_size), kube.scratch_volume()],
        deadline_seconds=deadline_seconds,
        service_account=service_account,
        opts=opts,
    )
