"""The prod MLflow Deployment, for real: PostgreSQL (Debian) with the rendered roles and databases, a moto S3
endpoint standing in for AWS S3, and MLflow started with exactly the rendered init container and server
commands, arguments and environment (secrets from the rendered Secrets; only hosts, paths and ports mapped).

It proves the backend URI from the Secret works for `mlflow db upgrade` and the server, that basic auth refuses
anonymous requests and admits the generated admin, that artifacts land in the bucket, that the model registry's
aliases and versions resolve (MLflow 3.15.1 fails them on psycopg 3, which a plain `postgresql://` selects with
SQLAlchemy >= 2.1: the Secret's `sqlalchemy-uri` names psycopg2), and that a second server process (a second
replica) serves the same run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode

import boto3
import pytest

from tests.realservers import (
    LocalMapping,
    apply_declared_roles_and_databases,
    container_command,
    container_env,
    ensure_bucket,
    free_port,
    moto_server,
    needs_debian,
    postgres_bin,
    postgres_server,
    resolve_to_loopback,
    start,
    stop,
    wait_for_http,
)
from tests.support import container, secret_data

pytest.importorskip("psycopg")
pytest.importorskip("psycopg2", reason="MLflow's PostgreSQL driver (psycopg2-binary, test requirements)")
pytestmark = needs_debian(
    postgres_bin() is None or shutil.which("openssl") is None,
    reason="Debian's postgresql (and openssl) are not installed (scripts/test.sh installs them)",
)

NAMESPACE = "mlops-mlflow"
SERVICE_HOST = "mlflow.mlops-mlflow.svc.cluster.local"
IN_CLUSTER_POSTGRES = "postgres-rw.mlops-data.svc.cluster.local:5432"
AWS_S3 = "https://s3.eu-central-1.amazonaws.com"
BUCKET = "acme-mlops-prod-mlflow-artifacts"


@pytest.fixture(scope="module")
def site(renderings, tmp_path_factory):
    prod = renderings["prod"]
    deployment = prod.find(kind="Deployment", name="mlflow").manifest(redact=False)
    root = tmp_path_factory.mktemp("mlflow-prod")
    with moto_server() as moto, postgres_server() as pg:
        apply_declared_roles_and_databases(prod, pg["admin"])
        mapping = LocalMapping(
            text={IN_CLUSTER_POSTGRES: f"127.0.0.1:{pg['port']}", AWS_S3: moto.endpoint},
        )
        auth_dir, tmp = root / "auth", root / "tmp"
        auth_dir.mkdir()
        tmp.mkdir()
        # The kubelet projects the Secret's basic_auth.ini into the pod; here it is written with hosts mapped.
        auth = secret_data(prod, NAMESPACE, "mlflow-auth")
        (auth_dir / "basic_auth.ini").write_text(mapping.apply(auth["basic_auth.ini"]))
        mapping = LocalMapping(paths={"/etc/mlflow/auth": auth_dir, "/tmp": tmp}, text=mapping.text)

        server = container(deployment, "mlflow")
        env = container_env(server, prod, NAMESPACE, mapping)
        s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        ensure_bucket(s3, BUCKET, env["AWS_DEFAULT_REGION"])
        init = container(deployment, "db-upgrade")
        yield {
            "prod": prod, "root": root, "s3": s3, "mapping": mapping, "server": server, "env": env,
            "init_argv": container_command(init, mapping), "init_env": container_env(init, prod, NAMESPACE, mapping),
            "admin": (auth["admin-username"], auth["admin-password"]),
        }


def start_replica(site, name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = container_command(site["server"], site["mapping"])
    argv[argv.index("--port") + 1] = str(port)
    process = start(argv, site["env"], site["root"] / f"{name}.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, timeout=180)
    except Exception:
        stop(process)
        raise AssertionError((site["root"] / f"{name}.log").read_text()[-4000:]) from None
    return process, port


def status(port: int, path: str, host: str, credentials: tuple[str, str] | None = None) -> int:
    headers = {"Host": host}
    if credentials:
        headers["Authorization"] = "Basic " + b64encode(":".join(credentials).encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_backend_uri_and_upgrade_come_from_secrets_not_arguments(site):
    argv = " ".join(container_command(site["server"], site["mapping"]))
    assert "postgresql" not in argv and "--backend-store-uri" not in argv
    # Exactly the Secret's SQLAlchemy URI (psycopg2 named), hosts mapped; the same for the upgrade and the auth app.
    secret = secret_data(site["prod"], NAMESPACE, "postgres-mlflow")
    assert site["env"]["MLFLOW_BACKEND_STORE_URI"] == site["mapping"].apply(secret["sqlalchemy-uri"])
    assert site["init_env"]["MLFLOW_BACKEND_STORE_URI"] == site["env"]["MLFLOW_BACKEND_STORE_URI"]
    assert site["env"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")
    ini = (site["root"] / "auth" / "basic_auth.ini").read_text()
    assert "database_uri = postgresql+psycopg2://mlflow_auth:" in ini
    assert "--app-name basic-auth" in argv
    upgrade = subprocess.run(site["init_argv"], env=site["init_env"], capture_output=True, text=True, timeout=300)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr


def test_auth_admin_artifacts_and_a_second_replica(site, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    subprocess.run(site["init_argv"], env=site["init_env"], check=True, capture_output=True, timeout=300)
    first, first_port = start_replica(site, "replica-1")
    stack = contextlib.ExitStack()
    try:
        search = "/api/2.0/mlflow/experiments/search?max_results=1"
        assert status(first_port, search, "mlflow.mlops-mlflow.svc.cluster.local:5000") == 401
        # The front door's host for MLflow (prod's frontDoor.domain), as the gateway forwards it.
        public = f"mlflow.{json.loads(site['prod'].config['mlops-platform:frontDoor'])['domain']}"
        assert status(first_port, search, public, ("admin", "wrong-password")) == 401
        assert status(first_port, search, public, site["admin"]) == 200
        assert status(first_port, search, "evil.example.net", site["admin"]) == 403
        # Prometheus scrapes the pod by IP with the admin login its ServiceMonitor reads from the auth Secret.
        assert status(first_port, "/metrics", "10.244.3.17:5000") == 401
        assert status(first_port, "/metrics", "10.244.3.17:5000", site["admin"]) == 200

        # A client inside the cluster: the Service name (resolved to 127.0.0.1 here), the admin's credentials.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", site["admin"][0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", site["admin"][1])
        stack.enter_context(resolve_to_loopback(SERVICE_HOST))
        client = MlflowClient(tracking_uri=f"http://{SERVICE_HOST}:{first_port}")
        run = client.create_run(client.create_experiment("prod-check"))
        client.log_metric(run.info.run_id, "auc", 0.87)
        artifact = tmp_path / "report.txt"
        artifact.write_text("auc: 0.87\n")
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)

        # The model registry on the real PostgreSQL through the server: versions, an alias, and the queries that
        # fail on psycopg 3 ("operator does not exist: integer = character varying").
        client.create_registered_model("prod-model")
        for _ in range(2):
            client.create_model_version("prod-model", f"runs:/{run.info.run_id}/model", run.info.run_id)
        client.set_registered_model_alias("prod-model", "champion", "2")
        assert client.get_model_version_by_alias("prod-model", "champion").version == "2"
        assert client.get_registered_model("prod-model").aliases == {"champion": "2"}
        assert client.get_model_version_download_uri("prod-model", "2") == f"runs:/{run.info.run_id}/model"
        assert [v.version for v in client.search_model_versions("name='prod-model'", order_by=["version_number"])] == ["1", "2"]

        keys = [o["Key"] for o in site["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        key = next(k for k in keys if k.endswith(f"{run.info.run_id}/artifacts/report.txt"))
        assert site["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"auc: 0.87\n"

        second, second_port = start_replica(site, "replica-2")
        try:
            replica = MlflowClient(tracking_uri=f"http://{SERVICE_HOST}:{second_port}")
            again = replica.get_run(run.info.run_id)
            assert again.data.metrics == {"auc": 0.87} and again.info.status == "FINISHED"
            assert [a.path for a in replica.list_artifacts(run.info.run_id)] == ["report.txt"]
            assert replica.get_model_version_by_alias("prod-model", "champion").version == "2"
        finally:
            stop(second)
    finally:
        stack.close()
        stop(first)
