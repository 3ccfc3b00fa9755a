"""Scheduled backups of every piece of state into the object store's `backups` bucket.

Each backup is a CronJob (the shape they share is `job.py`), one module per kind: a producer (pg_dump in
`postgres_logical.py`, SQLite's online backup API in `mlflow_sqlite.py`, a raft snapshot in `vault_snapshot.py`)
writes to a scratch volume, then rclone uploads it under a dated key; `objects_mirror.py` is a plain rclone sync.
rclone is configured by environment only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components import mlflow_server, postgres_cluster, vault_server
from components.backups import mlflow_sqlite, objects_mirror, postgres_logical, vault_snapshot
from components.backups.job import BACKUP_LABEL, BackupTarget
from components.backups.mlflow_sqlite import SqliteCopy
from components.backups.objects_mirror import ObjectMirror
from components.backups.postgres_logical import PostgresDumps
from components.backups.vault_snapshot import VaultSnapshots
from components.config import ResourceSpec, StackConfig
from components.facts import BucketUse, ComponentFacts

__all__ = [
    "BACKUP_LABEL",
    "BUCKET",
    "POSTGRES_CONSUMER",
    "BackupRun",
    "BackupTarget",
    "Backups",
    "BackupsArgs",
    "ObjectMirror",
    "PostgresDumps",
    "SqliteCopy",
    "VaultSnapshots",
    "facts",
    "jobs",
]

BUCKET = "backups"
"""The bucket every backup goes to (config requires it among objectStore.buckets)."""
POSTGRES_CONSUMER = "postgres-backup"
"""The bucket consumer PostgreSQL's backups upload as: the dumps, and the continuous archive when it is on."""


def jobs(config: StackConfig) -> dict[str, BucketUse]:
    """The backup CronJobs a stack runs, each with the bucket consumer (and so the namespace) it uploads as."""
    planned = {postgres_logical.BACKUP: BucketUse(POSTGRES_CONSUMER, postgres_cluster.NAMESPACE, (BUCKET,))}
    if config.mlflow.engine == "sqlite":
        # The job mounts MLflow's claim, so it runs beside MLflow.
        planned[mlflow_sqlite.BACKUP] = BucketUse("mlflow-backup", mlflow_server.NAMESPACE, (BUCKET,))
    if config.object_store.engine != "s3":
        # S3 versioning and lifecycle already undo deletes; MinIO and R2 have neither, so every bucket is mirrored.
        planned[objects_mirror.BACKUP] = BucketUse("object-mirror", postgres_cluster.NAMESPACE, config.object_store.buckets)
    if config.vault and config.vault.deploy:
        planned[vault_snapshot.BACKUP] = BucketUse("vault-backup", vault_server.NAMESPACE, (BUCKET,))
    return planned


def facts(config: StackConfig) -> ComponentFacts:
    """Each backup job uploads with credentials of its own, scoped to the buckets it reads or writes."""
    return ComponentFacts("backups", buckets=tuple(jobs(config).values()))


@dataclass(frozen=True)
class BackupRun:
    """What alerting needs to know of one backup CronJob: where it is, how often it runs, how long it may take."""

    cron_job: str
    """CronJob name."""
    namespace: pulumi.Input[str]
    """Namespace of the CronJob."""
    schedule: str
    """Its 5-field cron schedule (UTC)."""
    deadline_seconds: int
    """activeDeadlineSeconds of each run."""


@dataclass(frozen=True)
class BackupsArgs:
    """Which backups to take; built by the composition from typed config."""

    target: BackupTarget
    """The backups bucket."""
    postgres: PostgresDumps | None = None
    """Logical PostgreSQL dumps."""
    sqlite: SqliteCopy | None = None
    """MLflow SQLite copies (sqlite engine)."""
    mirror: ObjectMirror | None = None
    """Object mirror (engines without versioning)."""
    vault: VaultSnapshots | None = None
    """Raft snapshots of the in-cluster Vault."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "50m", "memory": "128Mi"}, {"cpu": "1", "memory": "512Mi"})
    )
    """Requests and limits of each backup container."""


class Backups(pulumi.ComponentResource):
    """The platform's scheduled backups, each a CronJob labelled for alerting."""

    cron_jobs: dict[str, pulumi.Output[str]]
    """CronJob name by backup (postgres-logical, mlflow-sqlite, objects-mirror, vault-snapshot)."""
    runs: tuple[BackupRun, ...]
    """Every CronJob with its schedule and deadline, for staleness alerts."""

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:backups:Backups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        taken = [
            (kind, settings)
            for kind, settings in (
                (postgres_logical, args.postgres), (mlflow_sqlite, args.sqlite), (objects_mirror, args.mirror), (vault_snapshot, args.vault)
            )
            if settings
        ]
        self.cron_jobs = {
            kind.BACKUP: kind.cron_job(name, settings, args.target, args.resources, child).metadata.name for kind, settings in taken
        }
        self.runs = tuple(
            BackupRun(f"backup-{kind.BACKUP}", settings.namespace, settings.schedule, kind.DEADLINE_SECONDS)
            for kind, settings in taken
        )
        self.register_outputs({"cron_jobs": self.cron_jobs})
