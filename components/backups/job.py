"""What every backup CronJob shares: where copies go and how rclone reaches it, the upload step, and the CronJob
itself (labelled for alerting, one run at a time, a deadline per run)."""

from __future__ import annotations

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


def container(name: str, image: str, argv: list[str], env, resources: ResourceSpec, mounts) -> k8s.core.v1.ContainerArgs:
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
    namespace: pulumi.Input[str],
    schedule: str,
    uid: int,
    init_containers: list[k8s.core.v1.ContainerArgs],
    containers: list[k8s.core.v1.ContainerArgs],
    volumes: list[k8s.core.v1.VolumeArgs],
    deadline_seconds: int,
    opts: pulumi.ResourceOptions,
    service_account: str | None = None,
) -> k8s.batch.v1.CronJob:
    metadata_labels = {**kube.labels("backups", "backup"), BACKUP_LABEL: backup}
    pod_spec = k8s.core.v1.PodSpecArgs(
        restart_policy="Never",
        # Only a job that logs in with its ServiceAccount (Vault's Kubernetes auth) gets a token.
        service_account_name=service_account,
        automount_service_account_token=service_account is not None,
        security_context=kube.pod_security(uid),
        init_containers=init_containers or None,
        containers=containers,
        volumes=volumes,
    )
    return k8s.batch.v1.CronJob(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=f"backup-{backup}", namespace=namespace, labels=metadata_labels, annotations=kube.scanner_skips(pod_spec)
        ),
        spec=k8s.batch.v1.CronJobSpecArgs(
            schedule=schedule,
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


def uploader(
    prefix: str, target: BackupTarget, resources: ResourceSpec, credentials_secret: pulumi.Input[str]
) -> k8s.core.v1.ContainerArgs:
    return container(
        "upload", IMAGES["rclone"], ["/bin/sh", "-c", upload_script(prefix, target)],
        rclone_env(target, credentials_secret), resources, [SCRATCH, TMP],
    )
