"""`mlops-platform:postgres`: the CloudNativePG cluster, its databases, and recovery from its backups."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from components.config.base import Block, null_as_empty
from components.config.formats import DatabaseName, DnsLabel, Quantity, Rfc3339, unique_list, whole
from components.config.resources import ResourceSpec

TEMPORAL_DATABASES = ("temporal", "temporal_visibility")
"""Databases the Temporal chart engine needs on the PostgresCluster (added automatically)."""
MLFLOW_DATABASES = ("mlflow", "mlflow_auth")
"""Databases the MLflow postgres engine needs: tracking data, and the basic-auth app's users (added automatically)."""
Instances = whole(1, 9)
DatabaseNames = unique_list(DatabaseName, "database names")


class RecoveryConfig(Block):
    """Bootstrap the PostgresCluster from its continuous backups instead of an empty initdb."""

    source_cluster: DnsLabel = Field(
        "postgres",
        description="Name the backed-up cluster had (its server name in the object store).",
    )
    target_time: Rfc3339 = Field(
        "",
        description="Point in time to recover to (RFC 3339, e.g. 2026-11-22T10:00:00Z); empty: the latest WAL.",
    )


class PostgresConfig(Block):
    """The CloudNativePG cluster and the application databases on it."""

    instances: Instances = Field(
        1,
        description="PostgreSQL instances: 1 primary plus streaming replicas, spread over nodes.",
    )
    size: Quantity = Field("10Gi", description="Data claim size per instance.")
    databases: DatabaseNames = Field(
        ("platform", "users", "labeler"),
        description="Application databases, each owned by a login role of the same name.",
    )
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"}),
        description="Requests and limits of each PostgreSQL instance.",
    )
    # `recovery:` with nothing under it asks for a recovery with the defaults (the latest WAL of `postgres`).
    recovery: Annotated[RecoveryConfig | None, BeforeValidator(null_as_empty)] = Field(
        None,
        description="Recover from continuous backups at creation (absent: a new, empty cluster); needs backups.continuous.",
    )
