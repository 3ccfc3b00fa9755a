"""`mlops-platform:temporal`: the CLI dev server on SQLite, or the Helm chart on PostgreSQL."""

from __future__ import annotations

from pydantic import Field, field_validator

from components.config.base import Block
from components.config.formats import Quantity, one_of, whole
from components.config.problems import invalid
from components.config.resources import ResourceSpec

TEMPORAL_ENGINES = ("dev", "chart")
Engine = one_of(*TEMPORAL_ENGINES)
Shards = whole(1, 16384)
Replicas = whole(1, 20)


class TemporalConfig(Block):
    """Temporal: the CLI dev server on SQLite, or the Helm chart on PostgreSQL."""

    engine: Engine = Field(
        "dev",
        description="dev: `temporal server start-dev` on a retained claim; chart: the temporal chart on the PostgresCluster.",
    )
    size: Quantity = Field("5Gi", description="Claim size of the dev engine's SQLite file.")
    num_history_shards: Shards = Field(
        512,
        description="Chart engine: history shards, a power of two. FIXED FOREVER after the first deploy; changing it breaks the cluster.",
    )
    replicas: Replicas = Field(
        1,
        description="Chart engine: replicas of each server service (frontend, history, matching, worker).",
    )
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"}),
        description="Requests and limits of the dev server, or of each chart server service.",
    )

    @field_validator("num_history_shards")
    @classmethod
    def _power_of_two(cls, shards: int) -> int:
        if shards & (shards - 1):
            raise invalid("use a power of two (512, 1024, ...); it can never change after the first deploy")
        return shards
