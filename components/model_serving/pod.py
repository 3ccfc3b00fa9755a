"""How a model-serving pod runs the app in `app.py`: the file delivered to it, the command, the port and the
environment. The ModelServing component renders these; the real-server tests run exactly the same command and
environment on 127.0.0.1. No Pulumi here: this module is plain data.
"""

from __future__ import annotations

from pathlib import Path

APP_SOURCE = Path(__file__).with_name("app.py")
"""The app, delivered to the pod as the only key of a ConfigMap (it imports nothing from this repository)."""
READER_SOURCE = Path(__file__).with_name("reader.py")
"""The bootstrap Job's script (with MLflow basic auth), run as `python -c <its text>` in the MLflow image."""
APP_FILE = "app.py"
"""Key of the ConfigMap and file name in the mounted directory."""
APP_DIR = "/opt/model-serving"
"""Where the ConfigMap is mounted (read-only) in the serving container."""
PORT = 8080
"""The app's HTTP port: predictions, probes and metrics."""
DOWNLOAD_DIR = "/tmp/models"
"""Where model versions are downloaded: on the pod's /tmp emptyDir (the root filesystem is read-only)."""

SERVE_COMMAND: tuple[str, ...] = (
    # A factory: the app is built, from the environment, only when uvicorn starts it.
    "uvicorn", "app:create_app", "--factory",
    "--app-dir", APP_DIR,
    "--host", "0.0.0.0",
    "--port", str(PORT),
    # One process per pod: one copy of the model in memory and one set of metrics; scale with replicas.
    "--workers", "1",
    # Request counts and latencies are in /metrics; a log line per prediction would only fill Loki.
    "--no-access-log",
    # On SIGTERM (a rollout or a drained node), requests in flight get this long to finish.
    "--timeout-graceful-shutdown", "20",
)
"""The container's command (the pinned MLflow image has uvicorn on its PATH)."""

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_MODEL = "SERVING_MODEL_NAME"
ENV_ALIAS = "SERVING_MODEL_ALIAS"
ENV_POLL = "SERVING_POLL_SECONDS"
ENV_DOWNLOAD_DIR = "SERVING_DOWNLOAD_DIR"
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
"""With MLflow basic auth: the read-only user's name and password, each from a Secret key (never a literal)."""

DEFAULT_POLL_SECONDS = 30

PROBES = {"liveness": "/healthz", "readiness": "/readyz", "startup": "/healthz"}
"""Probe paths: liveness and startup need only the process; readiness needs a loaded model version."""
METRICS_PATH = "/metrics"


def serve_env(tracking_uri: str, model: str, alias: str, poll_seconds: int = DEFAULT_POLL_SECONDS) -> dict[str, str]:
    """The container's literal environment. With MLflow auth, add CREDENTIAL_ENV from the read-only user's Secret."""
    return {
        ENV_TRACKING_URI: tracking_uri,
        ENV_MODEL: model,
        ENV_ALIAS: alias,
        ENV_POLL: str(poll_seconds),
        ENV_DOWNLOAD_DIR: DOWNLOAD_DIR,
        # MLflow and pip write under $HOME; the only writable place in the pod is the /tmp emptyDir.
        "HOME": "/tmp",
        # MLflow 3.x reports usage to an outside endpoint by default; the pod may reach MLflow and nothing else.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The mounted directory is read-only: no __pycache__ attempts.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
