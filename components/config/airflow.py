"""`mlops-platform:airflow`: Apache Airflow 3 (api-server, scheduler, dag-processor, triggerer), its executor, where
its DAGs come from and where its task logs go."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from components.config.base import Block, null_as_empty
from components.config.formats import DnsName, Flag, Quantity, Text, matching, one_of, whole
from components.config.problems import Problem, reject
from components.config.resources import ResourceSpec

AIRFLOW_EXECUTORS = ("local", "kubernetes")
AIRFLOW_DATABASES = ("airflow",)
"""The database Airflow needs on the PostgresCluster (added automatically when airflow.enabled)."""
AIRFLOW_LOGS_BUCKET = "airflow-logs"
"""The bucket of Airflow's remote task logs; it must be one of objectStore.buckets."""
Executor = one_of(*AIRFLOW_EXECUTORS)
Parallelism = whole(1, 256)
GitRepo = matching(
    # https (credentials from a Secret) or ssh (a deploy key from a Secret); git-sync speaks both.
    r"^(https://[^\s@]+|ssh://[^\s]+|git@[A-Za-z0-9.-]+:[^\s]+)$",
    "expected a git URL: https://host/org/repo.git, ssh://git@host/org/repo.git or git@host:org/repo.git",
    1000,
)
GitRef = matching(r"^[A-Za-z0-9._/-]+$", "expected a branch, tag or commit (letters, digits, '.', '_', '/', '-')", 255)
SubPath = matching(
    r"^(?!/)(?!.*\.\.)[A-Za-z0-9._/-]*$", "expected a relative path inside the repository without '..' (e.g. dags)", 500
)
AbsolutePath = matching(r"^/[A-Za-z0-9._/-]*$", "expected an absolute path on the NFS server, such as /exports/airflow", 500)
SyncPeriod = whole(10, 3600)


class AirflowResources(Block):
    """Requests and limits per Airflow process. Defaults are the measured PSS of each process tree with the example
    DAG (tests/test_airflow_real.py): requests near idle use, limits over the peak (LocalExecutor runs tasks in the
    scheduler's pod, the dag-processor and triggerer run an exec probe that starts Airflow's CLI beside them)."""

    # Measured (MiB PSS, idle / peak): api-server 250/314, scheduler 225/356, dag-processor 195/229, triggerer 225/234.
    api_server: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "768Mi"}),
        description="The api-server (UI, REST API, execution API).",
    )
    scheduler: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "2", "memory": "2Gi"}),
        description="The scheduler; with the local executor its pod also runs the tasks (size the limit for them).",
    )
    dag_processor: ResourceSpec = Field(
        ResourceSpec({"cpu": "50m", "memory": "208Mi"}, {"cpu": "1", "memory": "768Mi"}),
        description="The dag-processor, which parses the DAG files.",
    )
    triggerer: ResourceSpec = Field(
        ResourceSpec({"cpu": "50m", "memory": "240Mi"}, {"cpu": "1", "memory": "768Mi"}),
        description="The triggerer, which runs deferred tasks' triggers.",
    )
    statsd_exporter: ResourceSpec = Field(
        ResourceSpec({"cpu": "10m", "memory": "16Mi"}, {"cpu": "200m", "memory": "64Mi"}),
        description="The statsd-exporter, one for every process, which turns Airflow's StatsD metrics into Prometheus metrics.",
    )


class DagsGitConfig(Block):
    """DAGs from a git repository, kept in sync by a git-sync sidecar beside every process that reads them."""

    repo: GitRepo = Field(description="Repository URL (https or ssh).")
    ref: GitRef = Field("main", description="Branch, tag or commit to follow.")
    sub_path: SubPath = Field("", description="Folder of the DAG files inside the repository (empty: its root).")
    credentials_secret: DnsName | None = Field(
        None,
        description=(
            "Secret in the Airflow namespace (created outside Pulumi) with `username` and `password` (https) or "
            "`ssh` (a deploy key, ssh URLs); absent: a public repository."
        ),
    )
    period_seconds: SyncPeriod = Field(60, description="How often git-sync fetches the ref.")


class DagsConfig(Block):
    """Where the DAG files come from."""

    git: Annotated[DagsGitConfig | None, BeforeValidator(null_as_empty)] = Field(
        None,
        description="A git repository (git-sync); absent: the repository's own components/airflow/dags/ folder, as a ConfigMap.",
    )


class NfsLogsConfig(Block):
    """Task logs also on a ReadWriteMany volume: a retained PersistentVolume on an existing NFS export."""

    server: Text = Field(description="NFS server host name or IP.")
    path: AbsolutePath = Field(description="Exported path on the server.")
    size: Quantity = Field("20Gi", description="Capacity of the PersistentVolume and its claim.")


class AirflowLogsConfig(Block):
    """Where task logs go: always the `airflow-logs` bucket; optionally an NFS volume as well."""

    nfs: Annotated[NfsLogsConfig | None, BeforeValidator(null_as_empty)] = Field(
        None,
        description="The seed's shape: task logs on an NFS export (prod only: Kind nodes have no NFS client).",
    )


class AirflowConfig(Block):
    """Apache Airflow: pipelines (DAGs) scheduled on the platform, with their history in PostgreSQL."""

    enabled: Flag = Field(False, description="Deploy Airflow (database `airflow` on the PostgresCluster, logs in `airflow-logs`).")
    executor: Executor = Field(
        "local",
        description="local: tasks run as processes in the scheduler's pod; kubernetes: every task runs as its own pod in the Airflow namespace.",
    )
    parallelism: Parallelism = Field(
        4,
        description="Tasks running at once (with the local executor, each is a process in the scheduler's pod: it sizes its memory).",
    )
    resources: AirflowResources = Field(AirflowResources(), description="Requests and limits per process.")
    dags: DagsConfig = Field(DagsConfig(), description="Where the DAG files come from.")
    logs: AirflowLogsConfig = Field(AirflowLogsConfig(), description="Where task logs go besides the bucket.")

    @model_validator(mode="after")
    def _rules(self) -> AirflowConfig:
        problems = []
        if not self.enabled and (self.dags.git or self.logs.nfs or self.executor != "local"):
            problems.append(Problem("enabled", False, "settings under airflow need enabled: true (or remove them)"))
        reject(problems)
        return self
