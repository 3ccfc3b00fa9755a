"""Logical PostgreSQL backups: a custom-format pg_dump of each database, as its owner, uploaded by rclone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.backups import job
from components.config import ResourceSpec
from components.versions import IMAGES

BACKUP = "postgres-logical"
DEADLINE_SECONDS = 3 * 3600
"""activeDeadlineSeconds of a run: one that takes longer is killed and counts as failed."""
POSTGRES_UID = 26  # the postgres user of the CloudNativePG images


@dataclass(frozen=True)
class PostgresDumps(job.BackupJob):
    """A pg_dump of each database, as its owner; it runs in the namespace holding the database Secrets."""

    database_secrets: Mapping[str, pulumi.Input[str]]
    """Database -> Secret whose `uri` connects as its owner."""


def pg_dump_script(databases: list[str]) -> str:
    """Custom-format dumps (compressed, restorable table by table with pg_restore), one file per database."""
    lines = [
        "set -eu",
        'stamp="$(date -u +%Y%m%dT%H%M%SZ)"',
        'mkdir -p "/backup/postgres/$stamp"',
    ]
    for db in databases:
        lines.append(f'pg_dump --format=custom --dbname="$PGURI_{_env_suffix(db)}" --file="/backup/postgres/$stamp/{db}.dump"')
    lines.append(f'echo "dumped {len(databases)} databases into postgres/$stamp"')
    return "\n".join(lines) + "\n"


def _env_suffix(database: str) -> str:
    return database.upper().replace("-", "_")


def cron_job(
    name: str, dumps: PostgresDumps, target: job.BackupTarget, resources: ResourceSpec, child: pulumi.ResourceOptions
) -> k8s.batch.v1.CronJob:
    databases = list(dumps.database_secrets)
    env = [kube.secret_env(f"PGURI_{_env_suffix(db)}", dumps.database_secrets[db], "uri") for db in databases]
    # The cluster's own image: pg_dump of the server's major version, as the "client matches server" demands.
    dump = job.container("pg-dump", IMAGES["postgres"], ["/bin/sh", "-c", pg_dump_script(databases)], env, resources, [job.SCRATCH, job.TMP])
    return job.produce_then_upload(
        name,
        backup=BACKUP,
        settings=dumps,
        producer=dump,
        prefix="postgres",
        scratch_size="20Gi",
        uid=POSTGRES_UID,
        deadline_seconds=DEADLINE_SECONDS,
        target=target,
        resources=resources,
        opts=child,
    )
