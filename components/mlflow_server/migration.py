"""The SQLite -> PostgreSQL migration Job (`mlflow.migrateFrom: sqlite`): the sqlite engine's claim mounted read-only,
components/mlflow_migration/migrate.py delivered by a ConfigMap, the target URI from the database Secret, in the
pinned MLflow image. The PostgreSQL-backed Deployment depends on the Job, so Pulumi waits for it to complete before
rolling the new server out.

What Pulumi does with it: a completed Job has no diff, so it is not run again on later `up`s. Its name carries a hash
of the image, the script and the command: a new MLflow image (or script) is a new name, so Pulumi replaces the Job,
and the new one runs before the new server (a rerun against the same source is a no-op that says so, against a
source written to since, a refusal). No `ttlSecondsAfterFinished`: the finished Job and its pod's log are the
evidence, and a Job the cluster deleted would be re-created by the next `pulumi up --refresh`.

The trap of doing it in one `up`: the SQLite server keeps running (and the claim, ReadWriteOnce, stays attached to its
node) until the Deployment is replaced, which is after the Job. So the Job prefers that node, and the copy is a
snapshot: what is written to SQLite after it is not in PostgreSQL. The README asks for a write pause and shows how a
rerun proves there was none (a changed source is refused).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config.formats import quantity_value
from components.mlflow_migration import MOUNT_DIR, SCRIPT_KEY, TARGET_ENV, WORKDIR, job_command, script_text
from components.mlflow_server import backends, server
from components.mlflow_server.backends import PostgresBackend, SqliteBackend
from components.versions import IMAGES

if TYPE_CHECKING:
    from components.mlflow_server import MlflowServerArgs

COMPONENT = "migration"
"""`app.kubernetes.io/component` of the Job and its pod."""
DEADLINE_SECONDS = 3600
"""activeDeadlineSeconds: waiting for PostgreSQL, snapshot, upgrade, copy and verification together."""
BACKOFF_LIMIT = 2
"""Retries of a failed copy (exit 1: rolled back, e.g. the connection dropped). A refusal is final (FAIL_NOW)."""
FAIL_NOW = (2, 3)
"""migrate.py's usage error and refusal (nothing written): a retry would say the same."""
WAIT_SECONDS = 600
# On the first `up` after switching engines the `mlflow` role and database are created in the same run; the Job must
# not spend its retries on a login CloudNativePG has not created yet.
WAIT_FOR_TARGET = f"""\
import os, sys, time
import sqlalchemy as sa
engine = sa.create_engine(os.environ["{TARGET_ENV}"])
deadline = time.monotonic() + {WAIT_SECONDS}
while True:
    try:
        with engine.connect():
            print("PostgreSQL accepts the owner's login")
            break
    except sa.exc.OperationalError as error:
        if time.monotonic() > deadline:
            sys.exit(f"PostgreSQL did not accept the owner's login within {WAIT_SECONDS}s: {{error.orig}}")
        print("waiting for PostgreSQL:", str(error.orig).strip().splitlines()[0], flush=True)
        time.sleep(5)
"""


def command(source: SqliteBackend) -> list[str]:
    """The migration container's command: migrate.py on the sqlite engine's own URI."""
    return job_command(source.uri)


def job_name(source: SqliteBackend) -> str:
    """`mlflow-migrate-<hash of image, script, command>`: what changes the copy changes the name, so Pulumi replaces
    the Job (and runs it again) exactly then."""
    digest = hashlib.sha256("\0".join([IMAGES["mlflow"], script_text(), *command(source)]).encode()).hexdigest()
    return f"mlflow-migrate-{digest[:8]}"


def scratch_limit(claim_size: str) -> str:
    """The workdir's sizeLimit: twice the claim, since the snapshot can be as large as the claim and the schema
    upgrade of the snapshot may rebuild its largest table beside it."""
    return f"{math.ceil(2 * quantity_value(claim_size) / 2**20)}Mi"


def pod_spec(args: MlflowServerArgs, backend: PostgresBackend, source: SqliteBackend, claim, script) -> k8s.core.v1.PodSpecArgs:
    target = kube.secret_env(TARGET_ENV, backend.secret, backends.URI_KEY)
    env = [target, *kube.plain_env({"HOME": WORKDIR})]
    work = k8s.core.v1.VolumeMountArgs(name="tmp", mount_path=WORKDIR)
    wait = k8s.core.v1.ContainerArgs(
        name="wait-for-postgres",
        image=IMAGES["mlflow"],
        command=["python", "-c"],
        args=[WAIT_FOR_TARGET],
        env=env,
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=[work],
    )
    migrate = k8s.core.v1.ContainerArgs(
        name="migrate",
        image=IMAGES["mlflow"],
        command=command(source),
        env=env,
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=[
            # Read-only: the source is never written, so the SQLite server can still be brought back on it.
            k8s.core.v1.VolumeMountArgs(name="data", mount_path=backends.DATA_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name="script", mount_path=MOUNT_DIR, read_only=True),
            work,
        ],
    )
    return k8s.core.v1.PodSpecArgs(
        restart_policy="Never",
        automount_service_account_token=False,
        security_context=kube.pod_security(server.UID),
        # The claim is ReadWriteOnce and the SQLite server keeps it until the new Deployment replaces it, which waits
        # for this Job: on a block volume (EBS and the like) the Job must share the server's node to mount it.
        affinity=k8s.core.v1.AffinityArgs(
            pod_affinity=k8s.core.v1.PodAffinityArgs(
                preferred_during_scheduling_ignored_during_execution=[
                    k8s.core.v1.WeightedPodAffinityTermArgs(
                        weight=100,
                        pod_affinity_term=k8s.core.v1.PodAffinityTermArgs(
                            topology_key="kubernetes.io/hostname",
                            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("mlflow", "server")),
                        ),
                    )
                ]
            )
        ),
        init_containers=[wait],
        containers=[migrate],
        volumes=[
            kube.claim_volume(claim),
            k8s.core.v1.VolumeArgs(
                name="script",
                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                    name=script.metadata.name, items=[k8s.core.v1.KeyToPathArgs(key=SCRIPT_KEY, path=SCRIPT_KEY)], default_mode=0o444
                ),
            ),
            kube.scratch_volume("tmp", scratch_limit(source.size)),
        ],
    )


def migration_job(
    name: str,
    args: MlflowServerArgs,
    backend: PostgresBackend,
    source: SqliteBackend,
    claim: k8s.core.v1.PersistentVolumeClaim,
    child: pulumi.ResourceOptions,
) -> k8s.batch.v1.Job:
    """The ConfigMap with the program, and the Job running it once; the server's Deployment must depend on the Job."""
    labels = kube.labels("mlflow", COMPONENT)
    script = k8s.core.v1.ConfigMap(
        f"{name}-migration-script",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="mlflow-migration", namespace=args.namespace, labels=labels),
        data={SCRIPT_KEY: script_text()},
        opts=child,
    )
    spec = pod_spec(args, backend, source, claim, script)
    return kube.one_shot_job(
        f"{name}-migration",
        job_name=job_name(source),
        namespace=args.namespace,
        job_labels=labels,
        pod_spec=spec,
        backoff_limit=BACKOFF_LIMIT,
        deadline_seconds=DEADLINE_SECONDS,
        failure_policy=k8s.batch.v1.PodFailurePolicyArgs(
            rules=[
                k8s.batch.v1.PodFailurePolicyRuleArgs(
                    action="FailJob",
                    on_exit_codes=k8s.batch.v1.PodFailurePolicyOnExitCodesRequirementArgs(
                        container_name="migrate", operator="In", values=list(FAIL_NOW)
                    ),
                ),
                # A drained node is not the copy's failure.
                k8s.batch.v1.PodFailurePolicyRuleArgs(
                    action="Ignore",
                    on_pod_conditions=[k8s.batch.v1.PodFailurePolicyOnPodConditionsPatternArgs(type="DisruptionTarget", status="True")],
                ),
            ]
        ),
        # Pulumi waits for completion (no skipAwait): longer than the Job may run, so Pulumi never gives up first.
        opts=pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create="70m", update="70m"))
        ),
    )
