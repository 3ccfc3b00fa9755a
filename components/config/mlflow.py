"""`mlops-platform:mlflow`: the MLflow tracking server (the front door publishes it: `frontDoor`)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from components.config.base import Block, engine_default
from components.config.formats import Flag, Quantity, Text, one_of, whole
from components.config.problems import Problem, reject
from components.config.resources import ResourceSpec

MLFLOW_ENGINES = ("sqlite", "postgres")
Engine = one_of(*MLFLOW_ENGINES)
MIGRATION_SOURCES = ("sqlite",)
MigrationSource = one_of(*MIGRATION_SOURCES)
Replicas = whole(1, 20)
Workers = whole(1, 16)


class MlflowConfig(Block):
    """The MLflow tracking server."""

    # The engine rules below, for editors: without engine postgres, one replica, no auth and nothing to migrate.
    model_config = ConfigDict(json_schema_extra={"allOf": [{
        "if": {"not": {"properties": {"engine": {"const": "postgres"}}, "required": ["engine"]}},
        "then": {"properties": {"replicas": {"const": 1}, "auth": {"const": False}, "migrateFrom": {"type": "null"}}},
    }]})

    engine: Engine = Field(
        "sqlite",
        description="sqlite: a single-writer SQLite file on a retained claim (dev); postgres: databases on the PostgresCluster.",
    )
    replicas: Replicas = Field(1, description="Server replicas; exactly 1 with SQLite, 2 by default with PostgreSQL.")
    auth: Flag = Field(
        False,
        description="Require HTTP basic auth (MLflow's basic-auth app, generated admin); needs the postgres engine.",
    )
    workers: Workers = Field(
        2,
        description="Server worker processes per replica (each holds its own copy of MLflow in memory).",
    )
    migrate_from: MigrationSource | None = Field(
        None,
        description=(
            "sqlite (engine postgres only): on `pulumi up`, before the PostgreSQL-backed server starts, a Job copies "
            "the tracking store the sqlite engine left on its claim into the `mlflow` database; the claim is kept, "
            "unchanged and mounted read-only. Remove it once the copy is verified (README, Going to prod)."
        ),
    )
    size: Quantity = Field(
        "5Gi",
        description=(
            "Claim size of the SQLite backend; with migrateFrom sqlite, the size of the kept SQLite claim (leave it as "
            "it was), which also bounds the migration's scratch space."
        ),
    )
    artifact_bucket: Text = Field(
        "mlflow-artifacts",
        description="Bucket (one of objectStore.buckets) the server proxies artifacts to.",
    )
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "512Mi"}, {"cpu": "1", "memory": "1Gi"}),
        description="Requests and limits of the server container.",
    )

    @model_validator(mode="before")
    @classmethod
    def _two_replicas_with_postgres(cls, data: Any) -> Any:
        return engine_default(data, "postgres", "replicas", 2)

    @model_validator(mode="after")
    def _engine_rules(self) -> MlflowConfig:
        problems = []
        if self.engine == "sqlite" and self.replicas != 1:
            problems.append(Problem(
                "replicas", self.replicas,
                "the sqlite engine runs exactly 1 replica (one writer on a ReadWriteOnce volume); set 1, or use engine postgres",
            ))
        if self.auth and self.engine != "postgres":
            problems.append(Problem("auth", True, "basic auth keeps its users in PostgreSQL: use engine postgres"))
        if self.migrate_from and self.engine != "postgres":
            problems.append(Problem(
                "migrateFrom", self.migrate_from,
                "copies the SQLite store into PostgreSQL, so it needs engine postgres; with engine sqlite leave it out",
            ))
        reject(problems)
        return self
