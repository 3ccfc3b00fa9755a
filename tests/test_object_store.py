"""ObjectStore, minio engine: a pinned MinIO on a retained claim, generated credentials, idempotent bucket setup."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from components.versions import IMAGES
from tests.support import container, env_of, pod_spec, secret_data

SEED_BUCKETS = {
    "training-datasets", "training-checkpoints", "training-results", "model-weights", "config-schemas",
    "mlflow-artifacts", "backups",
    # Airflow's task logs (components/airflow): the one bucket the platform adds to the seed's.
    "airflow-logs",
}


def setup_job(rendering):
    return rendering.find(kind="Job", name="objects-setup").manifest(redact=False)


def setup_script(rendering) -> str:
    return container(setup_job(rendering), "mc")["command"][2]


def test_minio_runs_the_pinned_image_on_its_claim(dev):
    statefulset = dev.find(kind="StatefulSet", name="minio").manifest()
    assert statefulset["spec"]["replicas"] == 1
    minio = container(statefulset, "minio")
    assert minio["image"] == IMAGES["minio"] == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert minio["args"][:2] == ["server", "/data"]
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "minio-data"
    assert {"name": "data", "mountPath": "/data"} in minio["volumeMounts"]
    assert minio["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert minio["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"


def test_claim_size_comes_from_config(dev):
    assert dev.find(kind="PersistentVolumeClaim", name="minio-data").inputs["spec"]["resources"]["requests"] == {"storage": "20Gi"}


def test_root_credentials_are_generated_and_only_reach_minio_through_a_secret(dev):
    password = dev.find(type="random:index/randomPassword:RandomPassword", name="objects-root-password")
    assert password.inputs["length"] >= 32
    root = secret_data(dev, "mlops-storage", "minio-root")
    assert set(root) == {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    assert root["MINIO_ROOT_USER"] != "minioadmin" and root["MINIO_ROOT_PASSWORD"] != "minioadmin"
    env = env_of(container(dev.find(kind="StatefulSet", name="minio").manifest(), "minio"))
    assert env["MINIO_ROOT_USER"] == ("secret", "minio-root", "MINIO_ROOT_USER")
    assert env["MINIO_ROOT_PASSWORD"] == ("secret", "minio-root", "MINIO_ROOT_PASSWORD")


def test_s3_api_and_console_services_with_the_seed_node_ports(dev):
    api = dev.find(kind="Service", name="minio").inputs["spec"]
    console = dev.find(kind="Service", name="minio-console").inputs["spec"]
    assert api["type"] == "NodePort" and api["ports"][0]["port"] == 9000 and api["ports"][0]["nodePort"] == 30900
    assert console["type"] == "NodePort" and console["ports"][0]["port"] == 9001 and console["ports"][0]["nodePort"] == 30901


def test_prod_runs_no_minio(prod):
    assert not prod.find_all(kind="StatefulSet", name="minio")
    assert not prod.find_all(kind="Job", name="objects-setup")


def test_prod_services_stay_inside_the_cluster(prod):
    for service in prod.find_all(kind="Service"):
        assert service.inputs["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert all("nodePort" not in port for port in service.inputs["spec"]["ports"])


def test_setup_job_creates_every_configured_bucket_idempotently(dev):
    script = setup_script(dev)
    created = set(re.findall(r"^mc mb --ignore-existing platform/(\S+)$", script, re.MULTILINE))
    assert created == SEED_BUCKETS
    assert script.startswith("set -eu\n")


def test_mlflow_user_may_only_touch_the_artifact_bucket(dev):
    policy_line = next(line for line in setup_script(dev).splitlines() if "mlflow-buckets.json" in line and "printf" in line)
    policy = json.loads(policy_line.split("'")[3])
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::mlflow-artifacts", "arn:aws:s3:::mlflow-artifacts/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert not any(a.endswith("*") for a in actions)
    assert "s3:DeleteBucket" not in actions


def test_mlflow_gets_its_own_credentials_in_its_own_namespace(dev):
    credentials = secret_data(dev, "mlops-mlflow", "mlflow-s3-credentials")
    job_copy = secret_data(dev, "mlops-storage", "minio-user-mlflow")
    root = secret_data(dev, "mlops-storage", "minio-root")
    assert credentials["AWS_ACCESS_KEY_ID"] == "mlflow"
    assert credentials["AWS_SECRET_ACCESS_KEY"] == job_copy["AWS_SECRET_ACCESS_KEY"]
    assert credentials["AWS_SECRET_ACCESS_KEY"] != root["MINIO_ROOT_PASSWORD"]
    env = env_of(container(setup_job(dev), "mc"))
    assert env["MLFLOW_SECRET_KEY"] == ("secret", "minio-user-mlflow", "AWS_SECRET_ACCESS_KEY")


def test_setup_job_waits_for_minio_and_is_bounded(dev):
    job = dev.find(kind="Job", name="objects-setup")
    statefulset = dev.find(kind="StatefulSet", name="minio")
    assert statefulset.urn in job.dependencies
    spec = job.manifest()["spec"]
    assert spec["backoffLimit"] <= 6 and spec["activeDeadlineSeconds"] <= 1800
    assert "name" not in job.inputs["metadata"], "a fixed name would block replacing the immutable Job"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
def test_setup_script_passes_shellcheck(dev):
    result = subprocess.run(["shellcheck", "-s", "sh", "-"], input=setup_script(dev), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_consumers_learn_the_endpoint_region_and_checksum_mode_from_the_store(dev):
    assert dev.outputs["s3_endpoint"] == "http://minio.mlops-storage.svc.cluster.local:9000"
    assert set(dev.outputs["buckets"]) == SEED_BUCKETS


def store_accesses(*requests: tuple[str, str | None]) -> dict[str, object]:
    """Build a two-consumer MinIO store under mocks and ask it for each (consumer, bucket): a BucketAccess with its
    fields resolved, or the error's message."""
    import pulumi

    from components.config import ResourceSpec
    from components.object_store import BucketConsumer, MinioSettings, ObjectStore, ObjectStoreArgs
    from tools.render import render_program

    answers: dict[str, object] = {}

    def program() -> None:
        store = ObjectStore("objects", ObjectStoreArgs(
            engine="minio", namespace="mlops-storage", buckets=("artifacts", "logs", "extra"), region="us-east-1",
            consumers=(BucketConsumer("mlflow", "mlops-mlflow", ("artifacts",)), BucketConsumer("both", "mlops-x", ("artifacts", "logs"))),
            minio=MinioSettings(size="1Gi", storage_class="standard", resources=ResourceSpec()),
        ))
        for consumer, bucket in requests:
            key = f"{consumer}/{bucket}"
            try:
                access = store.access(consumer, bucket)
            except ValueError as error:
                answers[key] = str(error)
                continue
            fields = {"bucket": access.bucket, "endpoint": access.endpoint, "region": access.region,
                      "credentials_secret": access.credentials_secret, "client_env": access.client_env}
            pulumi.export(key, fields)

    rendering = render_program(program)
    return {**answers, **rendering.outputs}


def test_a_consumer_reaches_its_bucket_with_its_own_credentials_and_the_stores_client_env():
    answers = store_accesses(("mlflow", None), ("both", "logs"))
    mlflow, logs = answers["mlflow/None"], answers["both/logs"]
    assert mlflow["bucket"] == "artifacts" and logs["bucket"] == "logs"
    assert mlflow["credentials_secret"] == "mlflow-s3-credentials"
    assert logs["credentials_secret"] == "both-s3-credentials"
    assert mlflow["endpoint"] == "http://minio.mlops-storage.svc.cluster.local:9000" == logs["endpoint"]
    assert mlflow["region"] == "us-east-1"
    assert mlflow["client_env"]["AWS_ENDPOINT_URL_S3"] == mlflow["endpoint"]
    assert mlflow["client_env"]["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"


def test_a_consumer_is_refused_a_bucket_outside_its_scope_and_must_name_one_of_several():
    answers = store_accesses(("mlflow", "logs"), ("both", None), ("nobody", None))
    assert answers["mlflow/logs"] == "consumer 'mlflow' may not use bucket 'logs', only ['artifacts']"
    assert answers["both/None"] == "consumer 'both' uses ['artifacts', 'logs']: name the bucket"
    assert answers["nobody/None"] == "'nobody' is not a consumer of this object store: ['both', 'mlflow']"
