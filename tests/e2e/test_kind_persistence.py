"""End to end on Kind: bring the dev stack up, log a run with an artifact, kill the MLflow and MinIO pods,
and check that nothing was lost. Needs docker, kind, kubectl and pulumi; skips, saying why, without them.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.kind import kubectl, needs_kind

MLFLOW_URL = "http://localhost:30500"
pytestmark = needs_kind


def restart_pods(namespace: str, app: str, workload: str) -> None:
    kubectl("-n", namespace, "delete", "pod", "-l", f"app.kubernetes.io/name={app}", "--wait=true")
    kubectl("-n", namespace, "rollout", "status", workload, "--timeout=300s")


def wait_for_mlflow(client, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.search_experiments(max_results=1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


def test_runs_and_artifacts_survive_pod_restarts(platform, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=MLFLOW_URL)
    wait_for_mlflow(client)
    experiment = client.create_experiment(f"e2e-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "accuracy", 0.91)
    artifact = tmp_path / "weights.txt"
    artifact.write_text("layer1: 0.5\n")
    client.log_artifact(run.info.run_id, str(artifact))

    restart_pods("mlops-mlflow", "mlflow", "deployment/mlflow")
    restart_pods("mlops-storage", "minio", "statefulset/minio")
    wait_for_mlflow(client)

    assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.91}
    downloaded = client.download_artifacts(run.info.run_id, "weights.txt", str(tmp_path / "back"))
    assert Path(downloaded).read_text() == "layer1: 0.5\n"


@pytest.mark.parametrize(
    ("namespace", "cron_job"),
    [("mlops-data", "backup-postgres-logical"), ("mlops-mlflow", "backup-mlflow-sqlite"), ("mlops-data", "backup-objects-mirror")],
)
def test_a_backup_triggered_by_hand_succeeds(platform, namespace, cron_job):
    job = f"{cron_job}-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("-n", namespace, "create", "job", f"--from=cronjob/{cron_job}", job)
    kubectl("-n", namespace, "wait", "--for=condition=complete", f"job/{job}", "--timeout=900s", timeout=960)
