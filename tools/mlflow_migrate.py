"""Move an MLflow tracking store from SQLite to PostgreSQL, outside Kubernetes, with the code the Job runs.

    python -m tools.mlflow_migrate sqlite:////path/to/mlflow.db postgresql://user:pass@host:5432/mlflow
    MLFLOW_BACKEND_STORE_URI=postgresql://... python -m tools.mlflow_migrate sqlite:////path/to/mlflow.db

Stop the SQLite-backed server first. The SQLite file is only read. `--help` lists the options; the module docstring of
components/mlflow_migration/migrate.py says what happens, in which order, and what a second run does.
"""

from __future__ import annotations

import sys

from components.mlflow_migration.migrate import main

if __name__ == "__main__":
    sys.exit(main())
