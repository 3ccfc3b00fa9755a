"""The SQLite -> PostgreSQL migration of MLflow's tracking store, as a Job would run it.

`migrate.py` is self-contained (no project imports): it is shipped into the MLflow image through a ConfigMap and run
with the image's Python. This module holds the facts the Job and its tests share, so the rendered command and the
tested one cannot drift apart. No Pulumi here: it is imported by `tools.mlflow_migrate` and the tests too.
"""

from __future__ import annotations

from pathlib import Path

from components.mlflow_migration import migrate

SCRIPT = Path(__file__).with_name("migrate.py")
"""The program itself; its text is the ConfigMap's only key."""
SCRIPT_KEY = SCRIPT.name
MOUNT_DIR = "/etc/mlflow/migration"
"""Where the Job mounts the ConfigMap (read-only)."""
WORKDIR = "/tmp"
"""Scratch volume for the source snapshot: needs the SQLite file's size free (plus what the upgrade adds)."""
TARGET_ENV = migrate.TARGET_ENV
"""The target URI arrives in this variable, from the same Secret key (`sqlalchemy-uri`) the PostgreSQL-backed server
reads (components/mlflow_server/migration.py renders the Job)."""
PROXIED_ARTIFACTS = migrate.DEFAULT_ARTIFACT_ROOTS


def script_text() -> str:
    return SCRIPT.read_text()


def job_command(source_uri: str, artifact_roots: tuple[str, ...] = PROXIED_ARTIFACTS) -> list[str]:
    """The Job container's command: the target comes from $MLFLOW_BACKEND_STORE_URI, never from an argument."""
    roots = [arg for root in artifact_roots for arg in ("--expect-artifact-root", root)]
    return ["python", f"{MOUNT_DIR}/{SCRIPT_KEY}", source_uri, *roots, "--workdir", WORKDIR]
