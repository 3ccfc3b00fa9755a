"""AirflowStack under mocks, in both stacks: the four Airflow 3 processes with exactly the commands of
components/airflow (which tests/test_airflow_real.py runs against real Airflow), environment from Secrets only,
the restricted profile, the migration Job before the processes, the bucket consumer's scope, the dev NodePort, and
the KubernetesExecutor's RBAC confined to the Airflow namespace."""

from __future__ import annotations

import functools
import json

import pytest
import yaml

from components import airflow as af
from components.airflow import component
from components.config import ConfigError
from components.versions import IMAGES
from tests.support import container, containers, env_of, pod_spec, secret_data
from tools.pod_security import check_pod
from tools.render import ROOT, render_stack

NAMESPACE = "mlops-airflow"
PROCESS_DEPLOYMENTS = {f"airflow-{name}": process for name, process in af.PROCESSES.items()}


@functools.cache
def rendered(stack: str, airflow_block: str | None = None):
    overrides = None
    if airflow_block is not None:
        base = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["mlops-platform:airflow"]
        overrides = {"mlops-platform:airflow": {**base, **json.loads(airflow_block)}}
    return render_stack(stack, overrides=overrides)


def with_airflow(stack: str, **block):
    return rendered(stack, json.dumps(block, sort_keys=True))


@pytest.fixture(params=["dev", "prod"])
def stack(request, renderings):
    return renderings[request.param]


def airflow_objects(rendering, kind: str) -> dict[str, dict]:
    return {
        r.metadata["name"]: r.manifest(redact=False)
        for r in rendering.find_all(kind=kind)
        if r.metadata.get("namespace") == NAMESPACE and r.metadata.get("name")
    }


def processes(rendering) -> dict[str, dict]:
    return {name: d for name, d in airflow_objects(rendering, "Deployment").items() if name in PROCESS_DEPLOYMENTS}


def migration(rendering):
    (job,) = [j for j in rendering.find_all(kind="Job") if j.metadata.get("namespace") == NAMESPACE]
    return job


# --- The four processes -----------------------------------------------------------------------------------------


def test_four_processes_run_the_commands_the_real_test_runs(stack):
    found = processes(stack)
    assert set(found) == set(PROCESS_DEPLOYMENTS)
    for name, deployment in found.items():
        process = PROCESS_DEPLOYMENTS[name]
        airflow = container(deployment, "airflow")
        assert airflow["command"] == list(process.command)
        assert airflow["image"] == IMAGES["airflow"] == "apache/airflow:3.3.2-python3.11"
        assert {p["name"]: p["containerPort"] for p in airflow.get("ports", [])} == dict(process.ports)
        assert deployment["spec"]["replicas"] == 1


def test_probes_are_the_measured_ones(stack):
    for name, deployment in processes(stack).items():
        probe = PROCESS_DEPLOYMENTS[name].probe
        airflow = container(deployment, "airflow")
        for kind in ("startupProbe", "livenessProbe"):
            rendered_probe = airflow[kind]
            assert rendered_probe["timeoutSeconds"] == probe.timeout_seconds
            if isinstance(probe, af.ExecProbe):
                assert rendered_probe["exec"]["command"] == list(probe.command)
                # A check starts Airflow's CLI: never more often than it takes.
                assert rendered_probe["periodSeconds"] >= probe.timeout_seconds
                assert airflow["readinessProbe"]["periodSeconds"] >= 300 and airflow["livenessProbe"]["periodSeconds"] >= 120
            else:
                assert rendered_probe["httpGet"]["path"] == probe.path
                assert airflow["ports"][[p["containerPort"] for p in airflow["ports"]].index(probe.port)]["name"] == rendered_probe["httpGet"]["port"]
        # Up to five minutes to start before liveness applies.
        assert airflow["startupProbe"]["periodSeconds"] * airflow["startupProbe"]["failureThreshold"] >= 300


def test_requests_are_the_measured_idle_memory_and_limits_cover_the_peaks(renderings):
    # Measured PSS (MiB) of each process tree: idle / peak (tests/test_airflow_real.py).
    measured = {"api-server": (250, 314), "scheduler": (225, 356), "dag-processor": (195, 229), "triggerer": (225, 234)}
    from components.config import quantity_value

    for name, deployment in processes(renderings["dev"]).items():
        idle, peak = measured[name.removeprefix("airflow-")]
        resources = container(deployment, "airflow")["resources"]
        assert idle * 2**20 <= quantity_value(resources["requests"]["memory"]) <= 1.1 * idle * 2**20 + 32 * 2**20
        assert quantity_value(resources["limits"]["memory"]) >= 2 * peak * 2**20


def test_every_process_gets_the_same_environment_and_secrets_only_by_reference(stack):
    secret_names = {af.DATABASE_SECRET, af.KEYS_SECRET, af.S3_SECRET}
    envs = [env_of(container(d, "airflow")) for d in processes(stack).values()]
    assert all(env == envs[0] for env in envs)
    env = envs[0]
    for variable, ref in af.SECRET_ENV.items():
        assert env[variable] == ("secret", ref.secret, ref.key)
    assert {value[1] for value in env.values() if isinstance(value, tuple)} == secret_names
    assert not set(af.ADMIN_ENV) & set(env), "only the bootstrap gets the admin's password"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == af.execution_api_url(NAMESPACE)
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith("s3://") and "airflow-logs" in env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops-mlflow.svc.cluster.local:5000"


def test_no_generated_secret_appears_in_a_configmap_or_a_literal_value(stack):
    generated = [
        *secret_data(stack, NAMESPACE, af.KEYS_SECRET).values(),
        secret_data(stack, NAMESPACE, af.ADMIN_SECRET)["password"],
        secret_data(stack, NAMESPACE, af.DATABASE_SECRET)["uri"],
    ]
    assert all(len(value) >= 32 for value in generated)
    literals = []
    for kind in ("Deployment", "Job", "ConfigMap"):
        for manifest in airflow_objects(stack, kind).values():
            if kind == "ConfigMap":
                literals += manifest.get("data", {}).values()
            else:
                literals += [str(v) for c in containers(manifest) for v in env_of(c).values() if not isinstance(v, tuple)]
                literals += [" ".join(c.get("command", [])) for c in containers(manifest)]
    blob = "\n".join(literals)
    for value in generated:
        assert value not in blob
    password = secret_data(stack, NAMESPACE, af.DATABASE_SECRET)["password"]
    assert password not in blob


def test_the_keys_are_generated_once_and_valid(stack):
    keys = secret_data(stack, NAMESPACE, af.KEYS_SECRET)
    assert set(keys) == {"fernet-key", "api-secret-key", "jwt-secret"}
    # Fernet wants 32 bytes in URL-safe base64.
    assert len(keys["fernet-key"]) == 44 and not {"+", "/"} & set(keys["fernet-key"])
    assert secret_data(stack, NAMESPACE, af.ADMIN_SECRET)["username"] == "admin"
    assert secret_data(stack, NAMESPACE, af.ADMIN_SECRET)["password"] != "admin"


def test_every_airflow_pod_meets_restricted(stack):
    manifests = [*processes(stack).values(), migration(stack).manifest(redact=False)]
    manifests += [d for name, d in airflow_objects(stack, "Deployment").items() if name not in PROCESS_DEPLOYMENTS]
    for manifest in manifests:
        spec = pod_spec(manifest)
        assert check_pod(spec, manifest["spec"]["template"].get("metadata"), "restricted") == [], manifest["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in containers(manifest):
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
        # Airflow writes airflow.cfg into its home and caches under /tmp: both emptyDirs, size-limited.
        if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] in PROCESS_DEPLOYMENTS:
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert volumes["home"]["emptyDir"]["sizeLimit"] and volumes["tmp"]["emptyDir"]["sizeLimit"]
            mounts = {m["mountPath"] for m in container(manifest, "airflow")["volumeMounts"]}
            assert {af.HOME, af.TMP_DIR} <= mounts


# --- Migration, DAGs, Services ----------------------------------------------------------------------------------


def test_the_migration_job_runs_before_every_process_and_is_named_after_the_image(stack):
    job = migration(stack)
    manifest = job.manifest(redact=False)
    assert manifest["metadata"]["name"] == component.migration_job_name()
    spec = pod_spec(manifest)
    (migrate,) = spec["initContainers"]
    (admin,) = spec["containers"]
    assert migrate["command"] == list(af.MIGRATE_COMMAND) and admin["command"] == list(af.ADMIN_COMMAND)
    admin_env = env_of(admin)
    for variable, ref in af.ADMIN_ENV.items():
        assert admin_env[variable] == ("secret", ref.secret, ref.key)
    assert not set(af.ADMIN_ENV) & set(env_of(migrate))
    for deployment in stack.find_all(kind="Deployment"):
        if deployment.metadata.get("name") in PROCESS_DEPLOYMENTS:
            assert job.urn in deployment.dependencies
    # The database is created by the PostgresCluster: the Job waits for it.
    assert any("PostgresCluster" in dependency for dependency in job.dependencies)


def test_a_new_image_is_a_new_migration_job(monkeypatch):
    before = component.migration_job_name()
    monkeypatch.setitem(component.IMAGES, "airflow", "apache/airflow:3.3.3-python3.11")
    assert component.migration_job_name() != before
    assert component.migration_job_name().startswith("airflow-migrate-")


def test_the_dags_reach_the_pods_as_a_configmap_whose_hash_rolls_them(renderings):
    dev = renderings["dev"]
    dags = airflow_objects(dev, "ConfigMap")["airflow-dags"]
    assert dags["data"][af.EXAMPLE_DAG.name] == af.EXAMPLE_DAG.read_text()
    for name, deployment in processes(dev).items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        if name == "airflow-api-server":
            # Airflow 3's api-server reads serialized DAGs from the database, not the files.
            assert component.DAGS_HASH_ANNOTATION not in annotations
            continue
        assert len(annotations[component.DAGS_HASH_ANNOTATION]) == 64
        volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "dags")
        assert volume["configMap"]["name"] == "airflow-dags"


def test_the_api_server_is_on_node_port_30808_in_dev_only(renderings):
    dev, prod = renderings["dev"], renderings["prod"]
    service = airflow_objects(dev, "Service")[af.SERVICE_NAME]["spec"]
    assert service["type"] == "NodePort"
    assert [(p["port"], p["nodePort"]) for p in service["ports"]] == [(af.API_PORT, 30808)]
    assert service["selector"] == processes(dev)["airflow-api-server"]["spec"]["selector"]["matchLabels"]
    assert airflow_objects(prod, "Service")[af.SERVICE_NAME]["spec"]["type"] == "ClusterIP"
    assert dev.outputs["local_urls"]["airflow"] == "http://localhost:30808"
    assert dev.outputs["airflow_url"] == f"http://{af.SERVICE_NAME}.{NAMESPACE}.svc.cluster.local:{af.API_PORT}"
    command = dev.outputs["airflow_admin_password_command"]
    assert command == (
        "kubectl --context kind-mlops -n mlops-airflow get secret airflow-admin -o jsonpath='{.data.password}' | base64 -d"
    )


def test_the_consumer_may_use_the_logs_bucket_only(renderings):
    dev, prod = renderings["dev"], renderings["prod"]
    job = next(j for j in dev.find_all(kind="Job") if j.metadata.get("namespace") == "mlops-storage").manifest(redact=False)
    script = container(job, "mc")["command"][2]
    line = next(line for line in script.splitlines() if "airflow-buckets.json" in line and "printf" in line)
    policy = json.loads(line.split("'")[3])
    assert {r for s in policy["Statement"] for r in s["Resource"]} == {"arn:aws:s3:::airflow-logs", "arn:aws:s3:::airflow-logs/*"}
    assert secret_data(dev, NAMESPACE, af.S3_SECRET)["AWS_ACCESS_KEY_ID"] == "airflow"
    policy = json.loads(prod.find(type="aws:iam/userPolicy:UserPolicy", name="objects-airflow-policy").inputs["policy"])
    resources = {r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    assert resources == {"arn:aws:s3:::acme-mlops-prod-airflow-logs", "arn:aws:s3:::acme-mlops-prod-airflow-logs/*"}


def test_the_logical_backups_dump_the_airflow_database(stack):
    (dumps,) = [c.manifest(redact=False) for c in stack.find_all(kind="CronJob") if c.metadata.get("name") == "backup-postgres-logical"]
    env = env_of(container(dumps, "pg-dump"))
    # Every planned database is dumped, Airflow's with it.
    assert env["PGURI_AIRFLOW"] == ("secret", "postgres-airflow", "uri")


def test_metrics_go_through_one_statsd_exporter_that_prometheus_scrapes(stack):
    exporter = airflow_objects(stack, "Deployment")[af.STATSD_SERVICE]
    assert container(exporter, "statsd-exporter")["image"] == IMAGES["statsd-exporter"]
    service = airflow_objects(stack, "Service")[af.STATSD_SERVICE]["spec"]
    assert {(p["name"], p["protocol"]) for p in service["ports"]} == {("statsd", "UDP"), ("metrics", "TCP")}
    monitor = next(m for m in stack.find_all(kind="ServiceMonitor") if m.metadata.get("namespace") == NAMESPACE)
    assert monitor.inputs["spec"]["endpoints"][0]["port"] == "metrics"
    env = env_of(container(processes(stack)["airflow-scheduler"], "airflow"))
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == f"{af.STATSD_SERVICE}.{NAMESPACE}.svc.cluster.local"
    mappings = yaml.safe_load(component.STATSD_MAPPINGS)["mappings"]
    names = {m["match"]: m["name"] for m in mappings}
    assert names["airflow.scheduler_heartbeat"] == "airflow_scheduler_heartbeat_total"
    assert names["airflow.dagrun.duration.failed"] == "airflow_dagrun_failed_duration_seconds"


# --- Executors --------------------------------------------------------------------------------------------------


def test_dev_runs_the_local_executor_with_no_kubernetes_api_access(renderings):
    dev = renderings["dev"]
    for deployment in processes(dev).values():
        assert env_of(container(deployment, "airflow"))["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert pod_spec(deployment)["automountServiceAccountToken"] is False
    assert not [r for r in dev.find_all(kind="Role") if r.metadata.get("namespace") == NAMESPACE]


def test_the_kubernetes_executor_may_manage_pods_in_its_namespace_only(renderings):
    prod = renderings["prod"]
    (role,) = [r.manifest() for r in prod.find_all(kind="Role") if r.metadata.get("namespace") == NAMESPACE]
    assert {(tuple(r["apiGroups"]), tuple(r["resources"])) for r in role["rules"]} == {(("",), ("pods",)), (("",), ("pods/log",))}
    verbs = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert verbs[("pods",)] == {"create", "delete", "get", "list", "patch", "watch"} and verbs[("pods/log",)] == {"get"}
    (binding,) = [b.manifest() for b in prod.find_all(kind="RoleBinding") if b.metadata.get("namespace") == NAMESPACE]
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "airflow-scheduler", "namespace": NAMESPACE}]
    assert not [r for r in prod.find_all(kind="ClusterRoleBinding") if "airflow" in json.dumps(r.inputs)]
    found = processes(prod)
    scheduler = pod_spec(found["airflow-scheduler"])
    assert scheduler["serviceAccountName"] == "airflow-scheduler" and scheduler["automountServiceAccountToken"] is True
    for name, deployment in found.items():
        env = env_of(container(deployment, "airflow"))
        assert env["AIRFLOW__CORE__EXECUTOR"] == "KubernetesExecutor"
        assert env["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"] == NAMESPACE
        assert env["AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS"] == "True"
        if name != "airflow-scheduler":
            assert pod_spec(deployment)["automountServiceAccountToken"] is False


def test_the_task_pod_template_meets_restricted_and_carries_no_secret(renderings):
    prod = renderings["prod"]
    config_map = airflow_objects(prod, "ConfigMap")["airflow-pod-template"]
    template = yaml.safe_load(config_map["data"][component.POD_TEMPLATE_FILE])
    assert template["kind"] == "Pod"
    assert check_pod(template["spec"], template["metadata"], "restricted") == []
    (base,) = template["spec"]["containers"]
    assert base["name"] == "base" and base["image"] == IMAGES["airflow"]
    env = env_of(base)
    # The task's log upload needs the bucket's credentials; the database and the keys stay with the processes.
    assert {v[1] for v in env.values() if isinstance(v, tuple)} == {af.S3_SECRET}
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert template["spec"]["automountServiceAccountToken"] is False
    scheduler = processes(prod)["airflow-scheduler"]
    mounts = {m["name"]: m["mountPath"] for m in container(scheduler, "airflow")["volumeMounts"]}
    assert env_of(container(scheduler, "airflow"))["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] == (
        f"{mounts['pod-template']}/{component.POD_TEMPLATE_FILE}"
    )


# --- Optional shapes: DAGs from git, logs on NFS, config errors -------------------------------------------------


def test_dags_from_git_come_through_a_pinned_git_sync_sidecar():
    dev = with_airflow("dev", dags={"git": {"repo": "https://github.com/acme/pipelines.git", "ref": "v1", "subPath": "dags",
                                            "credentialsSecret": "pipelines-git"}})
    assert "airflow-dags" not in airflow_objects(dev, "ConfigMap")
    for name, deployment in processes(dev).items():
        names = [c["name"] for c in containers(deployment)]
        if name == "airflow-api-server":
            assert "git-sync" not in names
            continue
        assert names == ["git-sync-init", "airflow", "git-sync"]
        sync = container(deployment, "git-sync")
        assert sync["image"] == IMAGES["git-sync"] and IMAGES["git-sync"].startswith("registry.k8s.io/git-sync/git-sync:v4.")
        assert "--repo=https://github.com/acme/pipelines.git" in sync["command"] and "--ref=v1" in sync["command"]
        assert "--one-time" in container(deployment, "git-sync-init")["command"]
        assert sync["livenessProbe"]["httpGet"]["port"] == sync["readinessProbe"]["httpGet"]["port"] == component.GIT_SYNC_HTTP_PORT
        assert f"--http-bind=:{component.GIT_SYNC_HTTP_PORT}" in sync["command"]
        assert env_of(sync)["GITSYNC_PASSWORD"] == ("secret", "pipelines-git", "password")
        assert env_of(container(deployment, "airflow"))["AIRFLOW__CORE__DAGS_FOLDER"] == f"{af.DAGS_DIR}/repo/dags"
        assert check_pod(pod_spec(deployment), None, "restricted") == []


def test_task_logs_on_nfs_are_a_retained_read_write_many_volume_in_prod():
    prod = with_airflow("prod", logs={"nfs": {"server": "nfs.internal", "path": "/exports/airflow", "size": "50Gi"}})
    (volume,) = prod.find_all(kind="PersistentVolume")
    spec = volume.manifest()["spec"]
    assert spec["nfs"] == {"server": "nfs.internal", "path": "/exports/airflow"}
    assert spec["persistentVolumeReclaimPolicy"] == "Retain" and spec["accessModes"] == ["ReadWriteMany"]
    assert volume.protect and volume.retain_on_delete
    claim = next(c for c in prod.find_all(kind="PersistentVolumeClaim") if c.metadata.get("namespace") == NAMESPACE)
    assert claim.protect and claim.manifest()["spec"]["accessModes"] == ["ReadWriteMany"]
    for deployment in processes(prod).values():
        airflow = container(deployment, "airflow")
        assert {"name": "logs", "mountPath": af.LOGS_DIR} in airflow["volumeMounts"]
        # Kept on the volume after the upload to the bucket.
        assert env_of(airflow)["AIRFLOW__LOGGING__DELETE_LOCAL_LOGS"] == "False"
    template = yaml.safe_load(airflow_objects(prod, "ConfigMap")["airflow-pod-template"]["data"][component.POD_TEMPLATE_FILE])
    assert {"name": "logs", "persistentVolumeClaim": {"claimName": component.NFS_CLAIM}} in template["spec"]["volumes"]


def test_config_errors_name_the_key_and_what_is_allowed():
    with pytest.raises(ConfigError) as error:
        render_stack("dev", overrides={"mlops-platform:airflow": {"enabled": True, "executor": "celery",
                                                                   "logs": {"nfs": {"server": "n", "path": "exports"}}}})
    message = str(error.value)
    assert 'airflow.executor = "celery": allowed values: local, kubernetes' in message
    assert "airflow.logs.nfs.path" in message and "absolute path" in message
    with pytest.raises(ConfigError, match="Kind nodes have no NFS client"):
        render_stack("dev", overrides={"mlops-platform:airflow": {"enabled": True, "logs": {"nfs": {"server": "n", "path": "/x"}}}})
    with pytest.raises(ConfigError, match=r"add it to objectStore\.buckets"):
        render_stack("dev", overrides={"mlops-platform:objectStore": {"engine": "minio", "buckets": ["backups", "mlflow-artifacts"]}})
