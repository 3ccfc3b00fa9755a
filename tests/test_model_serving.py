"""ModelServing under mocks: one Deployment and Service per configured model, following `models:/<model>@<alias>`,
credentials only from Secrets, probes on the app's endpoints, the restricted-profile hardening, and the read-only
MLflow user's bootstrap Job only where MLflow has basic auth."""

from __future__ import annotations

import functools
import hashlib

import pytest

from components import model_serving as serving
from components.versions import IMAGES
from tests.support import container, env_of, pod_spec
from tools.render import mock_password, render_stack

SERVING = {
    "models": [
        {"name": "churn", "model": "churn-classifier", "alias": "champion", "replicas": 2},
        {"name": "churn-next", "model": "churn-classifier", "alias": "challenger"},
        {"name": "fraud", "model": "fraud-detector", "alias": "prod_v2",
         "resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "2Gi"}}},
    ],
}


@functools.cache
def rendered(stack: str, serving_block: str | None = None):
    import json

    overrides = {"mlops-platform:serving": json.loads(serving_block)} if serving_block is not None else None
    return render_stack(stack, overrides=overrides)


def with_models(stack: str, block: dict):
    import json

    return rendered(stack, json.dumps(block, sort_keys=True))


@pytest.fixture(scope="module")
def prod_served():
    """Prod (MLflow with basic auth, secrets in Vault) serving three models."""
    return with_models("prod", SERVING)


@pytest.fixture(scope="module")
def dev_served():
    return with_models("dev", SERVING)


def deployments(rendering) -> dict[str, dict]:
    return {
        d.metadata["name"]: d.manifest(redact=False)
        for d in rendering.find_all(kind="Deployment")
        if d.metadata.get("namespace") == "mlops-serving"
    }


def server(manifest: dict) -> dict:
    return container(manifest, "server")


# --- One Deployment per model, the right model ----------------------------------------------------------------------


def test_one_deployment_and_service_per_configured_model(prod_served, dev_served):
    for rendering in (prod_served, dev_served):
        found = deployments(rendering)
        assert set(found) == {"churn", "churn-next", "fraud"}
        services = {s.metadata["name"]: s.inputs["spec"] for s in rendering.find_all(kind="Service") if s.metadata["namespace"] == "mlops-serving"}
        assert set(services) == set(found)
        for name, spec in services.items():
            # Each Service selects its own model's pods only.
            assert spec["selector"] == found[name]["spec"]["selector"]["matchLabels"]
            assert spec["selector"]["app.kubernetes.io/instance"] == name
            assert [(p["name"], p["port"], p["targetPort"]) for p in spec["ports"]] == [("http", serving.PORT, "http")]
    assert deployments(prod_served)["churn"]["spec"]["replicas"] == 2
    assert deployments(prod_served)["fraud"]["spec"]["replicas"] == 1
    # Only the replicated model gets a disruption budget: a drain keeps one of its two pods.
    budgets = {b.metadata["name"]: b.inputs["spec"] for b in prod_served.find_all(kind="PodDisruptionBudget") if b.metadata["namespace"] == "mlops-serving"}
    assert budgets == {"churn": {"minAvailable": 1, "selector": {"matchLabels": deployments(prod_served)["churn"]["spec"]["selector"]["matchLabels"]}}}


def test_each_pod_follows_its_models_uri(prod_served):
    expected = {"churn": ("churn-classifier", "champion"), "churn-next": ("churn-classifier", "challenger"),
                "fraud": ("fraud-detector", "prod_v2")}
    for name, manifest in deployments(prod_served).items():
        env = env_of(server(manifest))
        assert (env["SERVING_MODEL_NAME"], env["SERVING_MODEL_ALIAS"]) == expected[name]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops-mlflow.svc.cluster.local:5000"
        # Exactly what the real-server test runs: the component renders pod.serve_env and SERVE_COMMAND.
        literal = {k: v for k, v in env.items() if not isinstance(v, tuple)}
        assert literal == serving.serve_env(env["MLFLOW_TRACKING_URI"], *expected[name])
        assert server(manifest)["command"] == list(serving.SERVE_COMMAND)
        assert server(manifest)["image"] == IMAGES["mlflow"]


def test_the_dev_stack_serves_the_example_model_on_30800(dev):
    (manifest,) = deployments(dev).values()
    env = env_of(server(manifest))
    assert (env["SERVING_MODEL_NAME"], env["SERVING_MODEL_ALIAS"]) == ("example-model", "champion")
    service = dev.find(kind="Service", name="example").inputs["spec"]
    assert service["type"] == "NodePort" and service["ports"][0]["nodePort"] == 30800
    assert dev.outputs["serving_urls"] == {"example": "http://example.mlops-serving.svc.cluster.local:8080"}
    assert dev.outputs["local_urls"]["serving"] == "http://localhost:30800"


def test_only_the_first_model_gets_the_node_port(dev_served):
    types = {s.metadata["name"]: s.inputs["spec"]["type"] for s in dev_served.find_all(kind="Service") if s.metadata["namespace"] == "mlops-serving"}
    assert types == {"churn": "NodePort", "churn-next": "ClusterIP", "fraud": "ClusterIP"}


def test_resources_default_and_override(prod_served):
    found = deployments(prod_served)
    assert server(found["churn"])["resources"] == {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    # A partial override keeps the rest of the defaults.
    assert server(found["fraud"])["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}


# --- Credentials ----------------------------------------------------------------------------------------------------


def test_with_mlflow_auth_credentials_come_only_from_the_reader_secret(prod_served):
    for manifest in deployments(prod_served).values():
        env = env_of(server(manifest))
        username, password = serving.CREDENTIAL_ENV
        assert env[username] == ("secret", serving.READER_SECRET, "username")
        assert env[password] == ("secret", serving.READER_SECRET, "password")
        assert not {name for name, value in env.items() if isinstance(value, tuple)} - set(serving.CREDENTIAL_ENV)
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env)


def test_without_mlflow_auth_the_pods_send_no_credentials(dev_served):
    for manifest in deployments(dev_served).values():
        env = env_of(server(manifest))
        assert not set(serving.CREDENTIAL_ENV) & set(env)
        assert all(not isinstance(value, tuple) for value in env.values())


def test_no_literal_secret_in_the_app_config_map(prod_served):
    (config_map,) = [c for c in prod_served.find_all(kind="ConfigMap") if c.metadata["namespace"] == "mlops-serving"]
    assert list(config_map.inputs["data"]) == [serving.APP_FILE]
    assert config_map.inputs["data"][serving.APP_FILE] == serving.APP_SOURCE.read_text()


# --- The read-only MLflow user ----------------------------------------------------------------------------------------


def reader_jobs(rendering) -> list[dict]:
    return [j.manifest(redact=False) for j in rendering.find_all(kind="Job") if j.inputs["metadata"]["labels"].get("app.kubernetes.io/name") == serving.APP]


def test_the_bootstrap_job_only_with_mlflow_auth(prod_served, dev_served, dev):
    (job,) = reader_jobs(prod_served)
    assert reader_jobs(dev_served) == [] and reader_jobs(dev) == []
    assert job["metadata"]["namespace"] == "mlops-mlflow"  # where the admin's Secret is
    worker = container(job, "create-reader")
    assert worker["image"] == IMAGES["mlflow"]
    assert worker["command"] == ["python", "-c", serving.READER_SOURCE.read_text()]
    env = env_of(worker)
    assert env["MLFLOW_ADMIN_USERNAME"] == ("secret", "mlflow-auth", "admin-username")
    assert env["MLFLOW_ADMIN_PASSWORD"] == ("secret", "mlflow-auth", "admin-password")
    assert env["SERVING_READER_USERNAME"] == ("secret", serving.READER_SECRET, "username")
    assert env["SERVING_READER_PASSWORD"] == ("secret", serving.READER_SECRET, "password")
    # Each registered model once, whatever the number of aliases served.
    assert env["SERVING_READER_MODELS"] == "churn-classifier,fraud-detector"


def test_the_reader_password_is_generated_and_kept_in_vault_for_both_namespaces(prod_served):
    (password,) = [r for r in prod_served.find_all(type="random:index/randomPassword:RandomPassword") if r.name == "serving-reader-password"]
    assert password.inputs["length"] >= 32
    synced = {(e.metadata["namespace"], e.metadata["name"]) for e in prod_served.find_all(kind="ExternalSecret")}
    assert {("mlops-serving", serving.READER_SECRET), ("mlops-mlflow", serving.READER_SECRET)} <= synced


def test_a_regenerated_reader_password_replaces_the_job_that_sets_it(prod_served):
    # The Job's template carries the password's hash: a new password is a new template, so Pulumi replaces the Job
    # and MLflow learns the password the pods will send.
    job = next(j for j in prod_served.find_all(kind="Job") if j.name == "serving-reader-setup").manifest(redact=False)
    password = mock_password("serving-reader-password", 32, special=False)
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"mlops.platform/reader-password-sha256": hashlib.sha256(password.encode()).hexdigest()}


def test_the_pods_start_after_the_reader_exists(prod_served):
    job = next(j for j in prod_served.find_all(kind="Job") if j.name == "serving-reader-setup")
    for deployment in prod_served.find_all(kind="Deployment"):
        if deployment.metadata.get("namespace") == "mlops-serving":
            assert job.urn in deployment.dependencies


# --- Probes and hardening ---------------------------------------------------------------------------------------------


def test_probes_hit_the_apps_endpoints_on_the_named_port(prod_served):
    for manifest in deployments(prod_served).values():
        app = server(manifest)
        assert app["ports"] == [{"name": "http", "containerPort": serving.PORT}]
        for probe, path in serving.PROBES.items():
            assert app[f"{probe}Probe"]["httpGet"] == {"path": path, "port": "http"}
        assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_hardened_pod(prod_served):
    for manifest in [*deployments(prod_served).values(), *reader_jobs(prod_served)]:
        spec = pod_spec(manifest)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]


def test_the_app_arrives_read_only_from_its_config_map_and_a_change_rolls_the_pods(prod_served):
    digest = hashlib.sha256(serving.APP_SOURCE.read_bytes()).hexdigest()
    for manifest in deployments(prod_served).values():
        mounts = {m["name"]: m for m in server(manifest)["volumeMounts"]}
        assert mounts["app"] == {"name": "app", "mountPath": serving.APP_DIR, "readOnly": True}
        assert mounts["tmp"]["mountPath"] == "/tmp"
        volumes = {v["name"]: v for v in pod_spec(manifest)["volumes"]}
        assert volumes["app"]["configMap"]["name"] == "model-serving-app"
        assert manifest["spec"]["template"]["metadata"]["annotations"] == {"mlops.platform/app-sha256": digest}


def test_rollouts_never_lower_capacity(prod_served):
    for manifest in deployments(prod_served).values():
        assert manifest["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        # Longer than uvicorn's graceful shutdown, so requests in flight finish.
        grace = int(serving.SERVE_COMMAND[serving.SERVE_COMMAND.index("--timeout-graceful-shutdown") + 1])
        assert pod_spec(manifest)["terminationGracePeriodSeconds"] > grace


# --- Nothing configured, nothing deployed -------------------------------------------------------------------------------


def test_no_model_no_serving_at_all(prod):
    assert not [d for d in prod.find_all(kind="Deployment") if d.metadata.get("namespace") == "mlops-serving"]
    assert not [r for r in prod.resources if r.type == "mlops:model_serving:ModelServing"]
    assert "mlops-serving" not in {n.metadata["name"] for n in prod.find_all(kind="Namespace")}
    assert reader_jobs(prod) == [] and "serving_urls" not in prod.outputs


def test_an_empty_list_in_dev_removes_the_namespace_and_the_node_port_flow():
    empty = with_models("dev", {"models": []})
    assert not [d for d in empty.find_all(kind="Deployment") if d.metadata.get("namespace") == "mlops-serving"]
    assert "mlops-serving" not in {n.metadata["name"] for n in empty.find_all(kind="Namespace")}
    assert "serving" not in empty.outputs["local_urls"]


# --- Monitoring and flows ----------------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_serving_service(dev):
    monitor = dev.find(kind="ServiceMonitor", name="model-serving").inputs
    assert monitor["metadata"]["namespace"] == "mlops-serving"
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "model-serving", "app.kubernetes.io/component": "server"}
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": serving.METRICS_PATH, "interval": "30s"}]


def test_the_serving_namespace_reaches_mlflow_on_its_port_only(dev):
    policies = {p.metadata["name"]: p.inputs["spec"] for p in dev.find_all(kind="NetworkPolicy") if p.metadata["namespace"] == "mlops-mlflow"}
    (rule,) = policies["allow-mlflow-model-serving"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlops-serving"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
