"""How the Airflow pods run: the four Airflow 3 processes, the migration and the admin bootstrap, each process's
environment (literal values here, secrets only as Secret keys), ports, probes and the example DAG. The AirflowStack
component (component.py) renders these, adding what only a pod needs (HOME, the hostname callable, the StatsD and
executor settings); tests/test_airflow_real.py runs the same commands with the rendered dev environment on 127.0.0.1
against real PostgreSQL, moto and MLflow. No Pulumi resources here: this module is plain data and `facts`.

Facts checked against Airflow 3.3.2 itself (tests/test_airflow_real.py):
- every process writes `airflow.cfg` into AIRFLOW_HOME on start when none exists, so HOME must be writable (emptyDir);
- `airflow users create` leaves an existing user's password alone (exit 0), `reset-password` fails for a missing user;
- `/api/v2/monitor/health` and `/api/v2/version` answer without credentials, everything else needs a JWT from
  `POST /auth/token` (FAB auth manager: username and password);
- the scheduler serves `/health` on its own port when enabled; the triggerer and dag-processor have no HTTP health
  endpoint, only `airflow jobs check --job-type ... --local` (an exec probe that starts a Python process: give it
  time and memory).

Measured with the real processes (tests/test_airflow_real.py, LocalExecutor, parallelism 4, one api-server worker;
PSS of each process tree, which is what a pod's cgroup is charged, not the RSS sum that counts forked pages twice):
api-server ~250 MiB idle / ~310 peak; scheduler ~225 idle / ~355 while the example task runs (the task and its
virtualenv's Python are the scheduler's children); dag-processor ~195 / ~230; triggerer ~225.

In the component: the image's entrypoint (dumb-init) is bypassed, so PID 1 is Airflow itself (it handles SIGTERM;
wrap in `/usr/bin/dumb-init --` if zombies show); the api-server reaches a running task's log on the scheduler's
WORKER_LOG_PORT by the hostname the task recorded, which a pod's name is not resolvable as, so the component sets
`[core] hostname_callable` to the pod's IP; the image brings the provider releases of its own build, not necessarily
versions.AIRFLOW_PROVIDERS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from components import mlflow_server
from components.config import AIRFLOW_DATABASES, AIRFLOW_LOGS_BUCKET, StackConfig
from components.facts import (
    CLIENTS,
    BucketUse,
    ComponentFacts,
    DatabaseUse,
    Flow,
    Metrics,
    NamespaceFact,
    NodePortTarget,
)

NAMESPACE = "airflow"
"""Namespace role of every Airflow pod."""
CONSUMER = "airflow"
"""Airflow's object-store consumer: its credentials Secret is `airflow-s3-credentials`, scoped to LOGS_BUCKET."""
(DATABASE,) = AIRFLOW_DATABASES
"""Database (and owner role) on the PostgresCluster."""
LOGS_BUCKET = AIRFLOW_LOGS_BUCKET
"""Logical bucket of the remote task logs."""
SERVICE_NAME = "airflow-api-server"
"""Service of the api-server: the UI, the public REST API and the execution API the task processes call."""

API_PORT = 8080
"""api-server: UI, REST API (/api/v2), execution API (/execution/)."""
SCHEDULER_HEALTH_PORT = 8974
"""Scheduler's health server (`GET /health`: 200 while its heartbeat is recent)."""
WORKER_LOG_PORT = 8793
"""Scheduler (LocalExecutor): serves the logs of tasks still running to the api-server."""
TRIGGERER_LOG_PORT = 8794
"""Triggerer: serves the logs of deferred tasks still running."""
STATSD_PORT = 9125
"""statsd-exporter: where every process sends its StatsD metrics (UDP)."""
STATSD_METRICS_PORT = 9102
"""statsd-exporter: the Prometheus metrics it makes of them."""
STATSD_SERVICE = "airflow-statsd"
"""Service of the statsd-exporter."""
NODE_PORT = "airflow"
"""The `nodePorts` key of the api-server's Service (dev: 30808)."""

HOME = "/opt/airflow"
"""AIRFLOW_HOME: an emptyDir (Airflow writes airflow.cfg and local logs there; the root filesystem is read-only)."""
DAGS_DIR = f"{HOME}/dags"
"""Where the DAG files are mounted (ConfigMap of DAGS_SOURCE, or the git-sync checkout), read-only."""
LOGS_DIR = f"{HOME}/logs"
"""Local task logs before upload; deleted once uploaded."""
TMP_DIR = "/tmp"
"""An emptyDir: temporary files, the task virtualenvs and uv's cache."""
TASK_VENV_DIR = f"{TMP_DIR}/airflow-venvs"
"""Virtualenvs of `@task.virtualenv` tasks, kept for the pod's lifetime (built once, not per run)."""

DAGS_SOURCE = Path(__file__).with_name("dags")
"""The repository's own DAGs, delivered when no git repository is configured."""
EXAMPLE_DAG = DAGS_SOURCE / "mlops_example_train.py"
"""The example pipeline: trains, tracks and registers `example-model@champion` in the platform's MLflow."""

AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
"""FAB keeps users in the database; Airflow's SimpleAuthManager is for development only."""
LOG_CONNECTION_ID = "mlops_object_store"
"""Airflow connection the remote task logs use (defined by environment, see `log_connection`)."""


@dataclass(frozen=True)
class SecretKey:
    """An environment variable's value, read from a key of a Secret in the Airflow namespace."""

    secret: str
    key: str


DATABASE_SECRET = f"postgres-{DATABASE}"
"""The database owner's Secret (PostgresCluster): `uri` is `postgresql://...?sslmode=require`, used as is."""
KEYS_SECRET = "airflow-keys"
"""Generated once (pulumi_random) and shared by every process: see KEY_ENV."""
ADMIN_SECRET = "airflow-admin"
"""The admin user of the FAB auth manager: `username` and a generated `password`."""
S3_SECRET = f"{CONSUMER}-s3-credentials"
"""The consumer's object-store credentials (ObjectStore): AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""

KEY_ENV: Mapping[str, SecretKey] = {
    # Encrypts connection passwords and variables in the database; losing it makes them unreadable.
    "AIRFLOW__CORE__FERNET_KEY": SecretKey(KEYS_SECRET, "fernet-key"),
    # Signs the api-server's sessions and the tokens it sends to the log servers; must match across replicas.
    "AIRFLOW__API__SECRET_KEY": SecretKey(KEYS_SECRET, "api-secret-key"),
    # The scheduler signs task tokens with it, the api-server checks them: a mismatch fails every task
    # ("Invalid auth token: Signature verification failed").
    "AIRFLOW__API_AUTH__JWT_SECRET": SecretKey(KEYS_SECRET, "jwt-secret"),
}
"""Environment from KEYS_SECRET."""

SECRET_ENV: Mapping[str, SecretKey] = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": SecretKey(DATABASE_SECRET, "uri"),
    **KEY_ENV,
    # The log connection carries no credentials: the AWS hook falls back to boto3's chain, which reads these.
    "AWS_ACCESS_KEY_ID": SecretKey(S3_SECRET, "AWS_ACCESS_KEY_ID"),
    "AWS_SECRET_ACCESS_KEY": SecretKey(S3_SECRET, "AWS_SECRET_ACCESS_KEY"),
}
"""Environment from Secrets that every process (and the migration) gets."""

ADMIN_ENV: Mapping[str, SecretKey] = {
    "AIRFLOW_ADMIN_USERNAME": SecretKey(ADMIN_SECRET, "username"),
    "AIRFLOW_ADMIN_PASSWORD": SecretKey(ADMIN_SECRET, "password"),
}
"""Environment from Secrets that only the admin bootstrap gets."""

MIGRATE_COMMAND: tuple[str, ...] = ("airflow", "db", "migrate")
"""Runs to completion before a new version's processes start (init container or a Job per image); idempotent."""

ADMIN_COMMAND: tuple[str, ...] = (
    "sh", "-c",
    # Reset first, so the Secret stays the source of truth (a rotated password takes effect); create only when the
    # user does not exist yet (reset-password then fails). `users create` alone would keep an old password.
    # `--password=VALUE`, never `--password VALUE`: argparse takes a separate value starting with `-` for an option
    # ("argument -p/--password: expected one argument"), and a generated password may start with one.
    'airflow users reset-password --username="$AIRFLOW_ADMIN_USERNAME" --password="$AIRFLOW_ADMIN_PASSWORD"'
    ' || airflow users create --role Admin --username="$AIRFLOW_ADMIN_USERNAME" --password="$AIRFLOW_ADMIN_PASSWORD"'
    ' --email "$AIRFLOW_ADMIN_USERNAME@airflow.invalid" --firstname Platform --lastname Admin',
)
"""The admin bootstrap, after MIGRATE_COMMAND; idempotent. Env: SECRET_ENV and ADMIN_ENV."""


@dataclass(frozen=True)
class HttpProbe:
    path: str
    port: int
    timeout_seconds: int = 5


@dataclass(frozen=True)
class ExecProbe:
    command: tuple[str, ...]
    timeout_seconds: int = 60
    """Starting Airflow's CLI took 5-12 s on a loaded 2-core machine (tests/test_airflow_real.py prints it); the
    kubelet's default of 1 s would restart a healthy process."""


@dataclass(frozen=True)
class Process:
    """One long-running Airflow process: a Deployment's container."""

    name: str
    """Component name, e.g. `scheduler`; the Deployment is `airflow-<name>`."""
    command: tuple[str, ...]
    """The container's command (the image's entrypoint is bypassed: the migration is a step of its own)."""
    ports: Mapping[str, int]
    """Container ports by name."""
    probe: HttpProbe | ExecProbe
    """Liveness (and readiness) check."""


def _jobs_check(job_type: str) -> ExecProbe:
    return ExecProbe(("airflow", "jobs", "check", "--job-type", job_type, "--local"))


PROCESSES: Mapping[str, Process] = {
    "api-server": Process(
        "api-server",
        # One worker per pod: scale with replicas (upstream's advice, apache/airflow#52270).
        ("airflow", "api-server", "--port", str(API_PORT), "--workers", "1"),
        {"http": API_PORT},
        # Answers without credentials; reports the database and the other processes' heartbeats in its body.
        HttpProbe("/api/v2/monitor/health", API_PORT),
    ),
    "scheduler": Process(
        "scheduler", ("airflow", "scheduler"),
        {"health": SCHEDULER_HEALTH_PORT, "task-logs": WORKER_LOG_PORT},
        HttpProbe("/health", SCHEDULER_HEALTH_PORT),
    ),
    "dag-processor": Process("dag-processor", ("airflow", "dag-processor"), {}, _jobs_check("DagProcessorJob")),
    "triggerer": Process("triggerer", ("airflow", "triggerer"), {"trigger-logs": TRIGGERER_LOG_PORT},
                         _jobs_check("TriggererJob")),
}
"""The four Airflow 3 processes, each its own Deployment."""


def execution_api_url(namespace: str) -> str:
    """Where task processes call the api-server's execution API (`[core] execution_api_server_url`)."""
    return f"http://{SERVICE_NAME}.{namespace}.svc.cluster.local:{API_PORT}/execution/"


def fernet_key(standard_base64: str) -> str:
    """A Fernet key from 32 random bytes in standard base64 (pulumi_random's `RandomBytes(length=32).base64`):
    Fernet wants the URL-safe alphabet."""
    return standard_base64.replace("+", "-").replace("/", "_")


def log_connection(endpoint_url: str, region: str) -> str:
    """The remote-log connection as AIRFLOW_CONN_<ID> JSON: endpoint and region only, no secret in it (the
    credentials come from S3_SECRET through the environment), so it is a literal value."""
    return json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint_url, "region_name": region}})


def process_env(
    *,
    namespace: str,
    logs_bucket: str,
    s3_endpoint: str,
    s3_region: str,
    mlflow_tracking_uri: str,
    s3_client_env: Mapping[str, str] | None = None,
    parallelism: int = 4,
) -> dict[str, str]:
    """The literal environment of every process and of the migration (no secrets: add SECRET_ENV from Secrets).

    `logs_bucket` is the physical bucket name; `s3_client_env` is the ObjectStore's non-secret client environment
    (R2's checksum settings, say)."""
    return {
        **(s3_client_env or {}),
        "AIRFLOW_HOME": HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": DAGS_DIR,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor runs up to this many tasks at once, each a process of its own: it sizes the scheduler's memory.
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": execution_api_url(namespace),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": LOGS_DIR,
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{logs_bucket}",
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": LOG_CONNECTION_ID,
        "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(WORKER_LOG_PORT),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(TRIGGERER_LOG_PORT),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(SCHEDULER_HEALTH_PORT),
        f"AIRFLOW_CONN_{LOG_CONNECTION_ID.upper()}": log_connection(s3_endpoint, s3_region),
        "AWS_DEFAULT_REGION": s3_region,
        # The example DAG's task (and any other) logs to the platform's MLflow.
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "MLOPS_TASK_VENV_CACHE": TASK_VENV_DIR,
        # uv (and pip) would write under $HOME, which is on the read-only root filesystem.
        "UV_CACHE_DIR": f"{TMP_DIR}/uv-cache",
        "PIP_CACHE_DIR": f"{TMP_DIR}/pip-cache",
        "PYTHONUNBUFFERED": "1",
    }


def facts(config: StackConfig) -> ComponentFacts:
    """The api-server receives the platform's clients (UI, REST API) on API_PORT; Airflow sends runs and models to
    MLflow's server port (the example DAG), keeps its history in the `airflow` database and its task logs in
    LOGS_BUCKET with credentials of its own; Prometheus scrapes the statsd-exporter. Egress stays open: the example
    task builds a virtualenv from PyPI, and DAGs may come from a git host."""
    return ComponentFacts(
        "airflow",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(
            Flow("airflow-clients", NAMESPACE, (API_PORT,), (CLIENTS,)),
            Flow("mlflow-airflow", mlflow_server.NAMESPACE, (mlflow_server.PORT,), (NAMESPACE,)),
        ),
        node_ports={NODE_PORT: NodePortTarget(NAMESPACE, API_PORT)},
        metrics=(Metrics(NAMESPACE, STATSD_METRICS_PORT),),
        buckets=(BucketUse(CONSUMER, NAMESPACE, (LOGS_BUCKET,)),),
        databases=(DatabaseUse((DATABASE,), NAMESPACE),),
    )
