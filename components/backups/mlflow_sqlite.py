"""Copies of MLflow's SQLite file (sqlite engine), taken online with SQLite's backup API and uploaded by rclone."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.backups import job
from components.config import ResourceSpec
from components.versions import IMAGES

BACKUP = "mlflow-sqlite"
DEADLINE_SECONDS = 3600
"""activeDeadlineSeconds of a run: one that takes longer is killed and counts as failed."""
MLFLOW_UID = 1000


@dataclass(frozen=True)
class SqliteCopy(job.BackupJob):
    """An online, consistent copy of MLflow's SQLite file; it runs in MLflow's namespace, beside the claim."""

    claim_name: pulumi.Input[str]
    """MLflow's data claim (ReadWriteOnce: the job lands on the node holding it)."""


SQLITE_COPY = """\
import pathlib, sqlite3, sys, time
source = pathlib.Path("/mlflow/mlflow.db")
if not source.exists():
    print("no database yet; nothing to copy")
    sys.exit(0)
out = pathlib.Path("/backup/mlflow-sqlite")
out.mkdir(parents=True, exist_ok=True)
target = out / time.strftime("mlflow-%Y%m%dT%H%M%SZ.db", time.gmtime())
# SQLite's online backup API, in one step: one read transaction, so a consistent snapshot that a concurrent writer
# cannot make restart (a stepwise backup restarts on every write; a file copy could tear pages). Writers wait on
# their busy timeout for the copy's duration.
with sqlite3.connect(source, timeout=60) as src, sqlite3.connect(target) as dst:
    src.backup(dst)
    check = dst.execute("PRAGMA integrity_check").fetchone()[0]
if check != "ok":
    sys.exit(f"integrity check of {target.name} failed: {check}")
print(f"copied {source} to {target.name} ({target.stat().st_size} bytes), integrity ok")
"""


def cron_job(
    name: str, copy: SqliteCopy, target: job.BackupTarget, resources: ResourceSpec, child: pulumi.ResourceOptions
) -> k8s.batch.v1.CronJob:
    data = k8s.core.v1.VolumeMountArgs(name="data", mount_path="/mlflow")
    # The MLflow image brings Python's sqlite3; ReadWriteOnce lets this pod share the claim on the server's node,
    # where the volume's node affinity schedules it.
    snapshot = job.container("sqlite-backup", IMAGES["mlflow"], ["python3", "-c", SQLITE_COPY], kube.plain_env({"HOME": "/tmp"}),
                         resources, [data, job.SCRATCH, job.TMP])
    return job.produce_then_upload(
        name,
        backup=BACKUP,
        settings=copy,
        producer=snapshot,
        prefix="mlflow-sqlite",
        scratch_size="10Gi",
        uid=MLFLOW_UID,
        deadline_seconds=DEADLINE_SECONDS,
        target=target,
        resources=resources,
        volumes=[
            k8s.core.v1.VolumeArgs(
                name="data", persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=copy.claim_name)
            ),
        ],
        opts=child,
    )
