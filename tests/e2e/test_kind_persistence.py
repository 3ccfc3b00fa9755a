"""End to end on Kind: bring the dev stack up, log a run with an artifact, kill the MLflow and MinIO pods,
and check that nothing was lost. Needs docker, kind, kubectl and pulumi; skips, saying why, without them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tools.render import ROOT

CONTEXT = "kind-mlops"
MLFLOW_URL = "http://localhost:30500"


def _cluster_unreachable_reason() -> str | None:
    for tool in ("kubectl", "pulumi", "kind", "docker"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; the e2e test needs a Kind cluster (scripts/dev-up.sh)"
    probe = subprocess.run(
        ["kubectl", "--context", CONTEXT, "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=20
    )
    if probe.returncode != 0:
        return f"no Kubernetes cluster reachable at context {CONTEXT}: {probe.stderr.strip()[:200]}"
    return None


pytestmark = pytest.mark.skipif(
    (reason := _cluster_unreachable_reason()) is not None, reason=reason or ""
)


def kubectl(*args: str, timeout: int = 300) -> str:
    result = subprocess.run(["kubectl", "--context", CONTEXT, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def platform():
    """The dev stack, up (idempotent: an existing stack is only updated)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "dev-up.sh")], check=True, timeout=1800)


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
