"""Scheduled backups of every piece of state into the object store's `backups` bucket.

Each backup is a CronJob: a producer (pg_dump, SQLite's online backup API) writes to a scratch volume, then rclone
uploads it under a dated key; the object mirror is a plain rclone sync. rclone is configured by environment only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import kube, mlflow_server, postgres_cluster, vault_server
from components.config import ResourceSpec, StackConfig
from components.facts import BucketUse, ComponentFacts
from components.object_store import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY
from components.versions import IMAGES

BACKUP_LABEL = "mlops.platform/backup"
"""Label naming the backup a CronJob takes; the observability stack alerts per value."""
POSTGRES_UID = 26  # the postgres user of the CloudNativePG images
MLFLOW_UID = 1000
NOBODY = 65534
RCLONE_PROVIDERS = {"minio": "Minio", "s3": "AWS", "r2": "Cloudflare"}
DEADLINES = {"postgres-logical": 3 * 3600, "mlflow-sqlite": 3600, "objects-mirror": 6 * 3600, "vault-snapshot": 1800}
"""activeDeadlineSeconds per backup: a run that takes longer is killed and counts as failed."""
BUCKET = "backups"
"""The bucket every backup goes to (config requires it among objectStore.buckets)."""
POSTGRES_CONSUMER = "postgres-backup"
"""The bucket consumer PostgreSQL's backups upload as: the dumps, and the continuous archive when it is on."""


def jobs(config: StackConfig) -> dict[str, BucketUse]:
    """The backup CronJobs a stack runs, each with the bucket consumer (and so the namespace) it uploads as."""
    planned = {"postgres-logical": BucketUse(POSTGRES_CONSUMER, postgres_cluster.NAMESPACE, (BUCKET,))}
    if config.mlflow.engine == "sqlite":
        # The job mounts MLflow's claim, so it runs beside MLflow.
        planned["mlflow-sqlite"] = BucketUse("mlflow-backup", mlflow_server.NAMESPACE, (BUCKET,))
    if config.object_store.engine != "s3":
        # S3 versioning and lifecycle already undo deletes; MinIO and R2 have neither, so every bucket is mirrored.
        planned["objects-mirror"] = BucketUse("object-mirror", postgres_cluster.NAMESPACE, config.object_store.buckets)
    if config.vault and config.vault.deploy:
        planned["vault-snapshot"] = BucketUse("vault-backup", vault_server.NAMESPACE, (BUCKET,))
    return planned


def facts(config: StackConfig) -> ComponentFacts:
    """Each backup job uploads with credentials of its own, scoped to the buckets it reads or writes."""
    return ComponentFacts("backups", buckets=tuple(jobs(config).values()))


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
class PostgresDumps:
    """A pg_dump of each database, as its owner."""

    namespace: pulumi.Input[str]
    """Namespace holding the database Secrets and the backup credentials."""
    database_secrets: Mapping[str, pulumi.Input[str]]
    """Database -> Secret whose `uri` connects as its owner."""
    credentials_secret: pulumi.Input[str]
    """Secret with the S3 credentials, in `namespace`."""
    schedule: str
    """Cron schedule."""


@dataclass(frozen=True)
class SqliteCopy:
    """An online, consistent copy of MLflow's SQLite file."""

    namespace: pulumi.Input[str]
    """MLflow's namespace."""
    claim_name: pulumi.Input[str]
    """MLflow's data claim (ReadWriteOnce: the job lands on the node holding it)."""
    credentials_secret: pulumi.Input[str]
    """Secret with the S3 credentials, in `namespace`."""
    schedule: str
    """Cron schedule."""


@dataclass(frozen=True)
class ObjectMirror:
    """A copy of every data bucket under `mirror/<bucket>/` of the backups bucket."""

    namespace: pulumi.Input[str]
    """Namespace of the job and its credentials."""
    buckets: Mapping[str, pulumi.Input[str]]
    """Logical -> physical name of each bucket to mirror."""
    credentials_secret: pulumi.Input[str]
    """Secret with S3 credentials that may read every bucket and write the backups bucket."""
    schedule: str
    """Cron schedule."""


@dataclass(frozen=True)
class VaultSnapshots:
    """`vault operator raft snapshot save`, logged in through Kubernetes auth with a snapshot-only role."""

    namespace: pulumi.Input[str]
    """Vault's namespace; the job's ServiceAccount and S3 credentials live there."""
    address: pulumi.Input[str]
    """In-cluster address of the active Vault server."""
    role: str
    """Kubernetes-auth role allowed to read sys/storage/raft/snapshot and nothing else."""
    service_account: str
    """ServiceAccount the role is bound to."""
    credentials_secret: pulumi.Input[str]
    """Secret with the S3 credentials, in `namespace`."""
    schedule: str
    """Cron schedule."""


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
    """CronJob name by backup (postgres-logical, mlflow-sqlite, objects-mirror)."""
    runs: tuple[BackupRun, ...]
    """Every CronJob with its schedule and deadline, for staleness alerts."""

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:backups:Backups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        jobs = []
        if args.postgres:
            jobs.append(("postgres-logical", _postgres_dumps(name, args, args.postgres, child)))
        if args.sqlite:
            jobs.append(("mlflow-sqlite", _sqlite_copy(name, args, args.sqlite, child)))
        if args.mirror:
            jobs.append(("objects-mirror", _object_mirror(name, args, args.mirror, child)))
        if args.vault:
            jobs.append(("vault-snapshot", _vault_snapshots(name, args, args.vault, child)))
        self.cron_jobs = {backup: job.metadata.name for backup, job in jobs}
        self.runs = tuple(
            BackupRun(f"backup-{backup}", job_args.namespace, job_args.schedule, DEADLINES[backup])
            for backup, job_args in (
                ("postgres-logical", args.postgres), ("mlflow-sqlite", args.sqlite), ("objects-mirror", args.mirror), ("vault-snapshot", args.vault)
            )
            if job_args
        )
        self.register_outputs({"cron_jobs": self.cron_jobs})


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


def mirror_script(buckets: Mapping[str, str], target: BackupTarget) -> str:
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


def _env_suffix(database: str) -> str:
    return database.upper().replace("-", "_")


def _container(name: str, image: str, argv: list[str], env, resources: ResourceSpec, mounts) -> k8s.core.v1.ContainerArgs:
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


def _cron_job(
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


_SCRATCH = k8s.core.v1.VolumeMountArgs(name="backup", mount_path="/backup")
_TMP = k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")


def _uploader(prefix: str, args: BackupsArgs, credentials_secret: pulumi.Input[str]) -> k8s.core.v1.ContainerArgs:
    return _container(
        "upload", IMAGES["rclone"], ["/bin/sh", "-c", upload_script(prefix, args.target)],
        rclone_env(args.target, credentials_secret), args.resources, [_SCRATCH, _TMP],
    )


def _postgres_dumps(name: str, args: BackupsArgs, dumps: PostgresDumps, child: pulumi.ResourceOptions) -> k8s.batch.v1.CronJob:
    databases = list(dumps.database_secrets)
    env = [kube.secret_env(f"PGURI_{_env_suffix(db)}", dumps.database_secrets[db], "uri") for db in databases]
    # The cluster's own image: pg_dump of the server's major version, as the "client matches server" demands.
    dump = _container("pg-dump", IMAGES["postgres"], ["/bin/sh", "-c", pg_dump_script(databases)], env, args.resources, [_SCRATCH, _TMP])
    return _cron_job(
        f"{name}-postgres-logical",
        backup="postgres-logical",
        namespace=dumps.namespace,
        schedule=dumps.schedule,
        uid=POSTGRES_UID,
        init_containers=[dump],
        containers=[_uploader("postgres", args, dumps.credentials_secret)],
        volumes=[kube.scratch_volume("backup", "20Gi"), kube.scratch_volume()],
        deadline_seconds=DEADLINES["postgres-logical"],
        opts=child,
    )


def _sqlite_copy(name: str, args: BackupsArgs, copy: SqliteCopy, child: pulumi.ResourceOptions) -> k8s.batch.v1.CronJob:
    data = k8s.core.v1.VolumeMountArgs(name="data", mount_path="/mlflow")
    # The MLflow image brings Python's sqlite3; ReadWriteOnce lets this pod share the claim on the server's node,
    # where the volume's node affinity schedules it.
    snapshot = _container("sqlite-backup", IMAGES["mlflow"], ["python3", "-c", SQLITE_COPY], kube.plain_env({"HOME": "/tmp"}),
                          args.resources, [data, _SCRATCH, _TMP])
    return _cron_job(
        f"{name}-mlflow-sqlite",
        backup="mlflow-sqlite",
        namespace=copy.namespace,
        schedule=copy.schedule,
        uid=MLFLOW_UID,
        init_containers=[snapshot],
        containers=[_uploader("mlflow-sqlite", args, copy.credentials_secret)],
        volumes=[
            k8s.core.v1.VolumeArgs(
                name="data", persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=copy.claim_name)
            ),
            kube.scratch_volume("backup", "10Gi"),
            kube.scratch_volume(),
        ],
        deadline_seconds=DEADLINES["mlflow-sqlite"],
        opts=child,
    )


def _object_mirror(name: str, args: BackupsArgs, mirror: ObjectMirror, child: pulumi.ResourceOptions) -> k8s.batch.v1.CronJob:
    script = pulumi.Output.all(**mirror.buckets).apply(lambda buckets: mirror_script(buckets, args.target))
    sync = k8s.core.v1.ContainerArgs(
        name="mirror",
        image=IMAGES["rclone"],
        command=["/bin/sh", "-c"],
        args=[script],
        env=rclone_env(args.target, mirror.credentials_secret),
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=[_TMP],
    )
    return _cron_job(
        f"{name}-objects-mirror",
        backup="objects-mirror",
        namespace=mirror.namespace,
        schedule=mirror.schedule,
        uid=NOBODY,
        init_containers=[],
        containers=[sync],
        volumes=[kube.scratch_volume()],
        deadline_seconds=DEADLINES["objects-mirror"],
        opts=child,
    )


VAULT_SNAPSHOT = """set -eu
jwt=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)
VAULT_TOKEN=$(vault write -field=token "auth/kubernetes/login" role="$VAULT_ROLE" jwt="$jwt")
export VAULT_TOKEN
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "/backup/vault/$stamp"
vault operator raft snapshot save "/backup/vault/$stamp/raft.snap"
test -s "/backup/vault/$stamp/raft.snap"
"""
"""Log in with the job's ServiceAccount (a snapshot-only role), save a raft snapshot, refuse an empty one."""


def _vault_snapshots(name: str, args: BackupsArgs, snapshots: VaultSnapshots, child: pulumi.ResourceOptions) -> k8s.batch.v1.CronJob:
    k8s.core.v1.ServiceAccount(
        f"{name}-vault-snapshot-account",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=snapshots.service_account, namespace=snapshots.namespace, labels=kube.labels("backups", "backup")),
        automount_service_account_token=False,
        opts=child,
    )
    env = [*kube.plain_env({"VAULT_ADDR": snapshots.address, "VAULT_ROLE": snapshots.role, "HOME": "/tmp"})]
    save = _container("raft-snapshot", IMAGES["vault"], ["/bin/sh", "-c", VAULT_SNAPSHOT], env, args.resources, [_SCRATCH, _TMP])
    return _cron_job(
        f"{name}-vault-snapshot",
        backup="vault-snapshot",
        namespace=snapshots.namespace,
        schedule=snapshots.schedule,
        uid=NOBODY,
        init_containers=[save],
        containers=[_uploader("vault", args, snapshots.credentials_secret)],
        volumes=[kube.scratch_volume("backup", "5Gi"), kube.scratch_volume()],
        deadline_seconds=DEADLINES["vault-snapshot"],
        service_account=snapshots.service_account,
        opts=child,
    )
