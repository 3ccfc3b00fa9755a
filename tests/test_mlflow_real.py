"""A real MLflow server, started with exactly the command, arguments and environment of the rendered dev
Deployment, against a real S3-compatible endpoint (moto) on 127.0.0.1.

Only in-cluster host names, mount paths and ports are mapped to local ones. It proves that the flags work
together: the SQLite backend, proxied artifacts in the bucket, the Host-header allow-list, and that data
survives a restart of the server, whose init container then really runs `mlflow db upgrade`.
"""

from __future__ import annotations

import importlib.metadata
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import pytest

from components.versions import MLFLOW_VERSION
from tests.realservers import (
    LocalMapping,
    container_command,
    container_env,
    free_port,
    moto_server,
    start,
    stop,
    wait_for_http,
)
from tests.support import container

NAMESPACE = "mlops-mlflow"
IN_CLUSTER_S3 = "http://minio.mlops-storage.svc.cluster.local:9000"


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_server() as moto:
        yield moto.endpoint


@pytest.fixture(scope="module")
def deployment(renderings):
    return renderings["dev"].find(kind="Deployment", name="mlflow").manifest(redact=False)


@pytest.fixture(scope="module")
def mlflow_site(renderings, deployment, s3_endpoint, tmp_path_factory):
    """The pod as local processes: paths, the S3 host and the ports mapped; everything else as rendered."""
    dev = renderings["dev"]
    root = tmp_path_factory.mktemp("mlflow-pod")
    for directory in ("data", "tmp"):
        (root / directory).mkdir()
    port = free_port()
    mapping = LocalMapping(
        paths={"/mlflow": root / "data", "/tmp": root / "tmp"},
        # The container port and the dev host port (Kind maps host 30500 to the NodePort) both become `port`.
        text={IN_CLUSTER_S3: s3_endpoint, ":30500": f":{port}"},
    )
    server = container(deployment, "mlflow")
    argv = container_command(server, mapping)
    argv[argv.index("--port") + 1] = str(port)
    env = container_env(server, dev, NAMESPACE, mapping)

    # The setup Job's part: the bucket exists before MLflow uses it (moto accepts the rendered credentials).
    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket="mlflow-artifacts")

    init = container(deployment, "db-upgrade")
    site = {
        "root": root, "port": port, "url": f"http://localhost:{port}", "s3": s3, "argv": argv, "env": env,
        "init_argv": container_command(init, mapping), "init_env": container_env(init, dev, NAMESPACE, mapping),
    }
    yield site


def run_pod(site) -> subprocess.Popen:
    """Start the pod as the kubelet would: init container to completion, then the server until healthy."""
    init = subprocess.run(site["init_argv"], env=site["init_env"], capture_output=True, text=True, timeout=180)
    assert init.returncode == 0, init.stdout + init.stderr
    site["last_init_output"] = init.stdout + init.stderr
    process = start(site["argv"], site["env"], site["root"] / "server.log")
    try:
        wait_for_http(f"http://127.0.0.1:{site['port']}/health", process, timeout=120)
    except Exception:
        stop(process)
        raise AssertionError((site["root"] / "server.log").read_text()[-4000:]) from None
    return process


def status_with_host(site, host: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{site['port']}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_test_server_is_the_version_the_image_pins():
    assert importlib.metadata.version("mlflow") == MLFLOW_VERSION


def test_run_and_artifact_land_in_sqlite_and_the_bucket_and_survive_a_restart(mlflow_site, tmp_path):
    from mlflow.tracking import MlflowClient

    site = mlflow_site
    process = run_pod(site)
    try:
        assert "no database yet" in site["last_init_output"]
        client = MlflowClient(tracking_uri=site["url"])
        experiment = client.create_experiment("persistence-check")
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "learning_rate", "0.01")
        client.log_metric(run.info.run_id, "loss", 0.25)
        artifact = tmp_path / "model-card.txt"
        artifact.write_text("weights: v1\n")
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)

        # The artifact went through the server into the bucket, with exactly the bytes we logged.
        keys = [o["Key"] for o in site["s3"].list_objects_v2(Bucket="mlflow-artifacts").get("Contents", [])]
        key = next(k for k in keys if k.endswith(f"{run.info.run_id}/artifacts/model-card.txt"))
        body = site["s3"].get_object(Bucket="mlflow-artifacts", Key=key)["Body"].read()
        assert body == b"weights: v1\n"
    finally:
        stop(process)

    # The run is in the SQLite file on the (mapped) claim.
    with sqlite3.connect(site["root"] / "data" / "mlflow.db") as db:
        assert db.execute("select status from runs where run_uuid = ?", (run.info.run_id,)).fetchone() == ("FINISHED",)

    # A restarted pod upgrades the existing database in its init container, then serves the same run.
    process = run_pod(site)
    try:
        assert "no database yet" not in site["last_init_output"]
        again = MlflowClient(tracking_uri=site["url"]).get_run(run.info.run_id)
        assert again.data.params == {"learning_rate": "0.01"}
        assert again.data.metrics == {"loss": 0.25}
        assert [a.path for a in MlflowClient(tracking_uri=site["url"]).list_artifacts(run.info.run_id)] == ["model-card.txt"]
    finally:
        stop(process)


def test_service_host_names_are_allowed_and_others_refused(mlflow_site):
    process = run_pod(mlflow_site)
    try:
        for host in ("mlflow.mlops-mlflow.svc.cluster.local:5000", "mlflow.mlops-mlflow:5000", "mlflow:5000",
                     f"localhost:{mlflow_site['port']}"):
            assert status_with_host(mlflow_site, host) == 200, host
        assert status_with_host(mlflow_site, "attacker.example.com") == 403
    finally:
        stop(process)


def test_prometheus_can_scrape_each_pod_by_its_address_and_strangers_cannot(mlflow_site):
    process = run_pod(mlflow_site)
    try:
        assert status_with_host(mlflow_site, "mlflow:5000") == 200  # one request to count
        request = urllib.request.Request(f"http://127.0.0.1:{mlflow_site['port']}/metrics", headers={"Host": "10.244.1.7:5000"})
        with urllib.request.urlopen(request, timeout=10) as response:
            metrics = response.read().decode()
        # Counted across the worker processes (the multiprocess directory lives on the pod's /tmp).
        assert 'mlflow_http_request_total{method="GET",status="200"}' in metrics
        # Every MLflow name the alerts and dashboards query is served (the pinned table says "real scrape").
        from tests.test_alert_rules import SERVED_METRICS

        for name in (n for n in SERVED_METRICS if n.startswith("mlflow_")):
            assert f"\n{name}{{" in metrics, name
        assert any((mlflow_site["root"] / "tmp" / "prometheus-metrics").iterdir())
        # The GenAI job runner (eight consumer processes, ~800 MiB) stays off: the pod fits its memory limit.
        # Only this pod's processes (its session): other MLflow servers on the machine may run the job runner.
        assert subprocess.run(["pgrep", "-s", str(process.pid), "-f", "huey_consumer"], capture_output=True).returncode == 1
        for stranger in ("10.244.1.7:8080", "8.8.8.8:5000", "attacker.example.com"):
            request = urllib.request.Request(f"http://127.0.0.1:{mlflow_site['port']}/metrics", headers={"Host": stranger})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 403, stranger
    finally:
        stop(process)


def test_the_server_encrypts_stored_secrets_under_its_own_passphrase(mlflow_site):
    # MLflow's default KEK passphrase is printed in its source; with the rendered env it must not fall back to it.
    probe = "from mlflow.utils.crypto import KEKManager; print(KEKManager().using_default_passphrase)"
    result = subprocess.run([sys.executable, "-c", probe], env=mlflow_site["env"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert len(mlflow_site["env"]["MLFLOW_CRYPTO_KEK_PASSPHRASE"]) >= 32
