"""Backups: every CronJob's schedule, safety settings and credentials; CloudNativePG continuous backups (prod);
the recovery path."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from components.versions import CHARTS, IMAGES
from tests.support import container, containers, env_of, pod_spec
from tools.reference import chart_values, custom_resource_problems, reference_dir, unknown_values_keys
from tools.render import render_stack

BARMAN_STORE = "kubernetes:barmancloud.cnpg.io/v1:ObjectStore"
needs_reference = pytest.mark.skipif(reference_dir() is None, reason="../shared/reference is not beside this checkout")


def backup_jobs(rendering) -> dict[str, dict]:
    return {r.metadata["labels"]["mlops.platform/backup"]: r.manifest(redact=False) for r in rendering.find_all(kind="CronJob")}


def test_dev_backs_up_postgres_sqlite_and_objects_prod_postgres_only(dev, prod):
    assert set(backup_jobs(dev)) == {"postgres-logical", "mlflow-sqlite", "objects-mirror"}
    # prod: MLflow lives in PostgreSQL, S3 versioning covers objects; Vault's raft store gets snapshots.
    assert set(backup_jobs(prod)) == {"postgres-logical", "vault-snapshot"}
    assert dev.outputs["backup_cron_jobs"] == {
        "postgres-logical": "backup-postgres-logical", "mlflow-sqlite": "backup-mlflow-sqlite", "objects-mirror": "backup-objects-mirror",
    }


def test_schedules_come_from_config(dev):
    jobs = backup_jobs(dev)
    assert jobs["postgres-logical"]["spec"]["schedule"] == "0 2 * * *"
    assert jobs["mlflow-sqlite"]["spec"]["schedule"] == "15 * * * *"
    assert jobs["objects-mirror"]["spec"]["schedule"] == "30 3 * * *"


def test_every_backup_job_is_bounded_serialised_and_hardened(rendering):
    for name, job in backup_jobs(rendering).items():
        spec = job["spec"]
        assert spec["concurrencyPolicy"] == "Forbid", name
        assert spec["timeZone"] == "Etc/UTC"
        assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
        job_spec = spec["jobTemplate"]["spec"]
        assert job_spec["backoffLimit"] == 2 and 0 < job_spec["activeDeadlineSeconds"] <= 6 * 3600
        pod = pod_spec(job)
        assert pod["restartPolicy"] == "Never"
        # Only the Vault snapshot logs in with its ServiceAccount (Vault's Kubernetes auth); no other job gets a token.
        assert pod["automountServiceAccountToken"] is (pod.get("serviceAccountName") == "vault-snapshot")
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in containers(job):
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
            assert c["image"] in IMAGES.values()
        labels = spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels["mlops.platform/backup"] == name, "alerts find a backup's pods by this label"


def test_credentials_come_only_from_each_jobs_own_secret(dev):
    expected = {"postgres-logical": "postgres-backup-s3-credentials", "mlflow-sqlite": "mlflow-backup-s3-credentials",
                "objects-mirror": "object-mirror-s3-credentials"}
    for name, job in backup_jobs(dev).items():
        uploader = next(c for c in containers(job, init=False))
        env = env_of(uploader)
        assert env["RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY"] == ("secret", expected[name], "AWS_SECRET_ACCESS_KEY")
        assert env["RCLONE_CONFIG_STORE_PROVIDER"] == "Minio"


def test_pg_dump_covers_every_database_as_its_owner_with_the_servers_major(prod):
    job = backup_jobs(prod)["postgres-logical"]
    dump = container(job, "pg-dump")
    assert dump["image"] == IMAGES["postgres"]
    env = env_of(dump)
    for db in ("platform", "users", "labeler", "temporal", "temporal_visibility", "mlflow", "mlflow_auth"):
        assert env[f"PGURI_{db.upper()}"] == ("secret", f"postgres-{db.replace('_', '-')}", "uri")
        assert f'--file="/backup/postgres/$stamp/{db}.dump"' in dump["args"][0]
    assert "--format=custom" in dump["args"][0]


def test_retention_prunes_on_minio_and_relies_on_lifecycle_elsewhere(dev, prod):
    assert "rclone delete --min-age 7d" in container(backup_jobs(dev)["postgres-logical"], "upload")["args"][0]
    assert "rclone delete" not in container(backup_jobs(prod)["postgres-logical"], "upload")["args"][0]


def test_sqlite_copy_mounts_mlflows_claim_and_uses_the_backup_api(dev):
    job = backup_jobs(dev)["mlflow-sqlite"]
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "mlflow-data"
    copy = container(job, "sqlite-backup")
    assert copy["image"] == IMAGES["mlflow"]
    assert "src.backup(dst)" in copy["args"][0] and "integrity_check" in copy["args"][0]
    assert pod_spec(job)["securityContext"]["runAsUser"] == 1000, "the copy runs as the uid owning the file"


def test_mirror_keeps_what_a_sync_would_delete(dev):
    script = container(backup_jobs(dev)["objects-mirror"], "mirror")["args"][0]
    assert 'rclone sync --checksum "store:training-datasets" "store:$BACKUP_BUCKET/mirror/training-datasets"' in script
    assert '--backup-dir "store:$BACKUP_BUCKET/mirror-deleted/$stamp/training-datasets"' in script
    assert "store:backups\"" not in script, "the backups bucket is not mirrored into itself"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
def test_every_backup_script_passes_shellcheck(dev, prod):
    for rendering in (dev, prod):
        for job in backup_jobs(rendering).values():
            for c in containers(job):
                if c["command"] == ["/bin/sh", "-c"]:
                    result = subprocess.run(["shellcheck", "-s", "sh", "-"], input=c["args"][0], capture_output=True, text=True)
                    assert result.returncode == 0, result.stdout


def test_prod_archives_wal_continuously_to_the_backups_bucket(prod):
    store = prod.find(type=BARMAN_STORE, name="postgres-backups").inputs["spec"]
    assert store["configuration"]["destinationPath"] == "s3://acme-mlops-prod-backups/cnpg"
    assert store["configuration"]["s3Credentials"]["secretAccessKey"] == {"name": "postgres-backup-s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}
    assert store["retentionPolicy"] == "30d"
    assert "env" not in store["instanceSidecarConfiguration"], "AWS S3 needs no checksum workaround"
    spec = prod.find(kind="Cluster", name="postgres").inputs["spec"]
    assert spec["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                "parameters": {"barmanObjectName": "postgres-backups", "serverName": "postgres"}}]
    assert spec["postgresql"]["parameters"]["archive_timeout"] == "5min"
    scheduled = prod.find(kind="ScheduledBackup", name="postgres-daily").inputs["spec"]
    assert scheduled["schedule"] == "0 0 3 * * *" and len(scheduled["schedule"].split()) == 6
    assert scheduled["method"] == "plugin" and scheduled["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}


def test_dev_has_no_continuous_backups_or_cert_manager(dev):
    assert not dev.find_all(kind="ScheduledBackup") and not dev.find_all(type=BARMAN_STORE)
    assert "plugins" not in dev.find(kind="Cluster").inputs["spec"]


def test_plugin_and_cert_manager_charts_are_pinned_and_ordered(prod):
    cert_manager = prod.find(type="kubernetes:helm.sh/v4:Chart", name="cert-manager-chart")
    plugin = prod.find(type="kubernetes:helm.sh/v4:Chart", name="cnpg-backup-barman-cloud")
    assert (cert_manager.inputs["chart"], cert_manager.inputs["version"]) == ("cert-manager", CHARTS["cert-manager"].version)
    assert (plugin.inputs["chart"], plugin.inputs["version"]) == ("plugin-barman-cloud", "0.7.0")
    assert plugin.inputs["namespace"] == "mlops-cnpg", "the plugin must run beside the operator"
    assert cert_manager.urn in plugin.dependencies
    cluster = prod.find(kind="Cluster", name="postgres")
    assert prod.find(type=BARMAN_STORE).urn in cluster.dependencies


@needs_reference
def test_plugin_and_cert_manager_values_exist_in_their_charts(prod):
    for name, chart in (("cert-manager-chart", "cert-manager"), ("cnpg-backup-barman-cloud", "plugin-barman-cloud")):
        values = prod.find(type="kubernetes:helm.sh/v4:Chart", name=name).inputs["values"]
        assert unknown_values_keys(values, chart_values(chart, CHARTS[chart].version)) == []


@pytest.fixture(scope="module")
def recovering():
    postgres = {"instances": 3, "size": "50Gi", "databases": ["platform", "users", "labeler"],
                "recovery": {"sourceCluster": "postgres", "targetTime": "2026-11-22T10:00:00Z"}}
    return render_stack("prod", overrides={"mlops-platform:postgres": postgres})


def test_recovery_bootstraps_a_new_cluster_from_the_archive_at_the_target_time(recovering):
    spec = recovering.find(kind="Cluster", name="postgres").inputs["spec"]
    assert spec["bootstrap"] == {"recovery": {"source": "origin", "recoveryTarget": {"targetTime": "2026-11-22T10:00:00Z"}}}
    assert spec["externalClusters"] == [{"name": "origin", "plugin": {
        "name": "barman-cloud.cloudnative-pg.io", "parameters": {"barmanObjectName": "postgres-backups", "serverName": "postgres"}}}]
    assert spec["plugins"][0]["parameters"]["serverName"] == "postgres-recovered", "never archive onto the old timeline"


@needs_reference
def test_recovery_and_backup_resources_validate_against_their_crds(recovering, prod):
    for rendering in (recovering, prod):
        for type_ in ("kubernetes:postgresql.cnpg.io/v1:Cluster", BARMAN_STORE, "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup"):
            assert custom_resource_problems(rendering.find(type=type_).manifest()) == [], type_
