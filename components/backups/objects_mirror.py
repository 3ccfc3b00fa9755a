"""The object mirror (engines without versioning): every data bucket synced under `mirror/<bucket>/` of the backups
bucket, with what the source deleted or overwrote kept under `mirror-deleted/<date>/`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.backups import job
from components.config import ResourceSpec
from components.versions import IMAGES

BACKUP = "objects-mirror"
DEADLINE_SECONDS = 6 * 3600
"""activeDeadlineSeconds of a run: one that takes longer is killed and counts as failed."""


@dataclass(frozen=True)
class ObjectMirror(job.BackupJob):
    """A copy of every data bucket under `mirror/<bucket>/` of the backups bucket; its credentials may read every
    bucket and write the backups bucket."""

    buckets: Mapping[str, pulumi.Input[str]]
    """Logical -> physical name of each bucket to mirror."""


def mirror_script(buckets: Mapping[str, str], target: job.BackupTarget) -> str:
    """rclone sync per bucket; files deleted or overwritten at the source are kept under mirror-deleted/<date>."""
    lines = ["set -eu", 'stamp="$(date -u +%Y%m%dT%H%M%SZ)"']
    for logical, physical in sorted(buckets.items()):
        lines.append(
            f'rclone sync --checksum "store:{physical}" "store:$BACKUP_BUCKET/mirror/{logical}" '
            f'--backup-dir "store:$BACKUP_BUCKET/mirror-deleted/$stamp/{logical}"'
        )
    if target.prune:
        lines.append(f'rclone delete --min-age {target.retention_days}d "store:$BACKUP_BUCKET/mirror-deleted"')
    lines.append(f'echo "mirrored {len(buckets)} buckets"')
    return "\n".join(lines) + "\n"


def cron_job(
    name: str, mirror: ObjectMirror, target: job.BackupTarget, resources: ResourceSpec, child: pulumi.ResourceOptions
) -> k8s.batch.v1.CronJob:
    script = pulumi.Output.all(**mirror.buckets).apply(lambda buckets: mirror_script(buckets, target))
    sync = job.container("mirror", IMAGES["rclone"], ["/bin/sh", "-c", script], job.rclone_env(target, mirror.credentials_secret),
                         resources, [job.TMP])
    return job.cron_job(
        name,
        backup=BACKUP,
        settings=mirror,
        uid=job.NOBODY,
        containers=[sync],
        volumes=[kube.scratch_volume()],
        deadline_seconds=DEADLINE_SECONDS,
        opts=child,
    )
