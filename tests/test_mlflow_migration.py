"""MlflowServer moving from SQLite to PostgreSQL (`mlflow.migrateFrom: sqlite`): the dev stack with its mlflow block
switched to engine postgres, as a user would edit it, rendered under mocks beside the dev stack as it is."""

from __future__ import annotations

import json

import pytest
import yaml

from components.config import ConfigError
from components.mlflow_migration import MOUNT_DIR, SCRIPT_KEY, TARGET_ENV, WORKDIR, job_command, script_text
from components.mlflow_server import SqliteBackend, migration
from components.versions import IMAGES
from tests.support import container, env_of, pod_spec, secret_data
from tests.test_schemas import builtin_problems
from tools.pod_security import check_pod
from tools.render import ROOT, render_stack

MLFLOW = "mlops-platform:mlflow"
DEV_MLFLOW = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"][MLFLOW]
MOVING = {**DEV_MLFLOW, "engine": "postgres", "migrateFrom": "sqlite"}
SOURCE_URI = "sqlite:////mlflow/mlflow.db"


@pytest.fixture(scope="module")
def moving():
    return render_stack("dev", overrides={MLFLOW: MOVING})


@pytest.fixture(scope="module")
def protected():
    """The same switch with prod's state protection: the sqlite stack, then the migrating one."""
    return (render_stack("dev", overrides={"mlops-platform:protectState": True}),
            render_stack("dev", overrides={"mlops-platform:protectState": True, MLFLOW: MOVING}))


def job(rendering) -> dict:
    return rendering.find(kind="Job", name="mlflow-migration").manifest(redact=False)


def test_the_job_exists_only_while_migrating(dev, prod, moving):
    for rendering in (dev, prod):
        assert not rendering.find_all(kind="Job", name="mlflow-migration")
        assert not rendering.find_all(kind="ConfigMap", name="mlflow-migration")
        assert "mlflow_migration_log_command" not in rendering.outputs
    assert moving.find(kind="Job", name="mlflow-migration").metadata["namespace"] == "mlops-mlflow"
    name = job(moving)["metadata"]["name"]
    assert moving.outputs["mlflow_migration_log_command"] == f"kubectl --context kind-mlops -n mlops-mlflow logs job/{name} -c migrate"


def test_config_refuses_a_migration_without_a_postgresql_target():
    with pytest.raises(ConfigError, match=r'mlflow\.migrateFrom = "sqlite": copies the SQLite store into PostgreSQL, so it needs engine postgres'):
        render_stack("dev", overrides={MLFLOW: {**DEV_MLFLOW, "migrateFrom": "sqlite"}})


def test_the_job_runs_the_shared_program_with_the_shared_command_in_the_pinned_image(moving):
    migrate = container(job(moving), "migrate")
    assert migrate["command"] == job_command(SOURCE_URI) == job_command(SqliteBackend("5Gi", "any").uri)
    assert "args" not in migrate
    assert migrate["image"] == IMAGES["mlflow"] == container(job(moving), "wait-for-postgres")["image"]
    script = moving.find(kind="ConfigMap", name="mlflow-migration").inputs
    assert script["data"] == {SCRIPT_KEY: script_text()}
    volumes = {v["name"]: v for v in pod_spec(job(moving))["volumes"]}
    assert volumes["script"]["configMap"]["name"] == "mlflow-migration"
    assert {"name": "script", "mountPath": MOUNT_DIR, "readOnly": True} in migrate["volumeMounts"]
    assert migrate["command"][1] == f"{MOUNT_DIR}/{SCRIPT_KEY}"


def test_the_claim_is_mounted_read_only_and_the_scratch_space_follows_its_size(moving):
    manifest = job(moving)
    migrate = container(manifest, "migrate")
    assert {"name": "data", "mountPath": "/mlflow", "readOnly": True} in migrate["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec(manifest)["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "mlflow-data"}}
    assert {"name": "tmp", "mountPath": WORKDIR} in migrate["volumeMounts"]
    # Twice the 5Gi claim: the snapshot, and the upgrade rebuilding a table beside it.
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "10240Mi"}
    assert migration.scratch_limit("500Mi") == "1000Mi"
    assert env_of(migrate)["HOME"] == "/tmp" == WORKDIR


def test_the_target_reaches_the_job_only_from_the_database_secret(moving):
    manifest = job(moving)
    for name in ("wait-for-postgres", "migrate"):
        env = env_of(container(manifest, name))
        assert env[TARGET_ENV] == ("secret", "postgres-mlflow", "sqlalchemy-uri")
        # The same key the server reads: the copy lands where the server looks.
        server = env_of(container(moving.find(kind="Deployment", name="mlflow").manifest(), "mlflow"))
        assert env[TARGET_ENV] == server["MLFLOW_BACKEND_STORE_URI"]
    password = secret_data(moving, "mlops-mlflow", "postgres-mlflow")["password"]
    for resource in (moving.find(kind="Job", name="mlflow-migration"), moving.find(kind="ConfigMap", name="mlflow-migration")):
        assert password not in json.dumps(resource.manifest(redact=False)), resource.name
    assert "postgresql" not in json.dumps(manifest["spec"]["template"]["spec"]["containers"][0]["command"])


def test_the_pod_is_restricted_and_bounded(moving):
    manifest = job(moving)
    spec = pod_spec(manifest)
    assert check_pod(spec, manifest["spec"]["template"]["metadata"], "restricted") == []
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    for name in ("wait-for-postgres", "migrate"):
        c = container(manifest, name)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    assert builtin_problems(manifest) is None


def test_pulumi_waits_for_the_job_and_keeps_it_as_evidence(moving):
    resource = moving.find(kind="Job", name="mlflow-migration")
    manifest = job(moving)
    annotations = manifest["metadata"].get("annotations", {})
    assert "pulumi.com/skipAwait" not in annotations
    spec = manifest["spec"]
    assert "ttlSecondsAfterFinished" not in spec
    assert spec["backoffLimit"] <= 3 and spec["activeDeadlineSeconds"] == migration.DEADLINE_SECONDS
    assert pod_spec(manifest)["restartPolicy"] == "Never"
    # A refusal (3) or a usage error (2) fails at once: a retry would say the same.
    (fail_now,) = [rule for rule in spec["podFailurePolicy"]["rules"] if rule["action"] == "FailJob"]
    assert fail_now["onExitCodes"] == {"containerName": "migrate", "operator": "In", "values": [2, 3]}
    deployment = moving.find(kind="Deployment", name="mlflow")
    assert resource.urn in deployment.dependencies


def test_the_job_is_named_after_what_it_runs(moving, monkeypatch):
    source = SqliteBackend("5Gi", "mlops-retained")
    name = migration.job_name(source)
    assert job(moving)["metadata"]["name"] == name and len(name) <= 63
    assert migration.job_name(SqliteBackend("9Gi", "other")) == name, "claim size and class are not what it runs"
    monkeypatch.setitem(IMAGES, "mlflow", "ghcr.io/mlflow/mlflow:v9.9.9-full")
    newer_image = migration.job_name(source)
    monkeypatch.setattr(migration, "script_text", lambda: script_text() + "\n# changed\n")
    newer_script = migration.job_name(source)
    assert len({name, newer_image, newer_script}) == 3


def test_the_sqlite_claim_is_kept_exactly_as_the_sqlite_engine_declared_it(dev, moving, protected):
    for before, after in ((dev, moving), protected):
        old, new = before.find(kind="PersistentVolumeClaim", name="mlflow-data"), after.find(kind="PersistentVolumeClaim", name="mlflow-data")
        assert new.urn == old.urn == "urn:pulumi:dev::mlops-platform::mlops:mlflow_server:MlflowServer$kubernetes:core/v1:PersistentVolumeClaim::mlflow-data"
        assert new.metadata["name"] == old.metadata["name"] == "mlflow-data"
        assert new.inputs == old.inputs
        assert (new.protect, new.retain_on_delete, new.parent) == (old.protect, old.retain_on_delete, old.parent)
        assert new.aliases == old.aliases == []
    sqlite_stack, migrating = protected
    claim = migrating.find(kind="PersistentVolumeClaim", name="mlflow-data")
    assert claim.protect and claim.retain_on_delete
    # The server's Deployment keeps its URN too: switching engines updates it in place, after the Job.
    assert migrating.find(kind="Deployment", name="mlflow").urn == sqlite_stack.find(kind="Deployment", name="mlflow").urn


def test_the_sqlite_backup_stops_with_the_sqlite_server(moving):
    # Nothing writes the file any more; the retained claim is the copy. The hourly copies age out as usual.
    assert not moving.find_all(kind="CronJob", name="backup-mlflow-sqlite")


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def test_the_migration_pod_may_reach_postgresql(moving):
    """NetworkPolicies evaluated as the API server would for the Job's pod (its namespace and template labels)."""
    pod_labels = job(moving)["spec"]["template"]["metadata"]["labels"]
    namespace_labels = {"kubernetes.io/metadata.name": "mlops-mlflow"}
    postgres_pod = {"cnpg.io/cluster": "postgres"}
    admitted = []
    for policy in moving.find_all(kind="NetworkPolicy"):
        spec = policy.inputs["spec"]
        if policy.metadata["namespace"] != "mlops-data" or not _selects(spec["podSelector"], postgres_pod):
            continue
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = rule.get("from", [])
            if ports and 5432 not in ports:
                continue
            # A peer without a namespaceSelector is the policy's own namespace (mlops-data), not the Job's.
            if any("namespaceSelector" in peer and _selects(peer["namespaceSelector"], namespace_labels)
                   and _selects(peer.get("podSelector", {}), pod_labels) for peer in peers):
                admitted.append(policy.metadata["name"])
    assert admitted == ["allow-postgres-clients"]


def test_the_migrating_stacks_comply_with_every_policy(moving, protected):
    from tests.test_policy import all_violations

    # migrate.py travels in a ConfigMap: the pack would refuse text that looks like a password assignment.
    assert all_violations(moving, require_protection=False) == {}
    assert all_violations(protected[1], require_protection=True) == {}


def test_checkov_passes_the_migrating_stack(moving, tmp_path):
    import subprocess

    from tests.test_gate import CHECKOV, require
    from tools.render import write_manifests

    require(CHECKOV, "checkov scans the rendered manifests")
    write_manifests(moving, tmp_path)
    result = subprocess.run([str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--compact", "--skip-download", "-o", "json"],
                            capture_output=True, text=True, timeout=900)
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert [(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]] == []
    assert any("mlflow-migrate-" in check["resource"] for check in report["results"]["passed_checks"])
