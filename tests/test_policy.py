"""The Pulumi policy pack (`policy/`): each validator on unit inputs, then on every resource both stacks register."""

from __future__ import annotations

import base64
import json

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

from policy import validators
from policy.pack import DESCRIPTIONS, policies
from tools.render import ROOT, unwrap_secrets

PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SECRET = "kubernetes:core/v1:Secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def deployment(image: str, env: list[dict] | None = None) -> dict:
    container = {"name": "app", "image": image, "env": env or []}
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


def test_stateful_resources_must_be_protected_where_required():
    assert validators.stateful_resources_protected(PVC, protect=False, require_protection=True)
    assert not validators.stateful_resources_protected(PVC, protect=True, require_protection=True)
    assert not validators.stateful_resources_protected(PVC, protect=False, require_protection=False)
    assert not validators.stateful_resources_protected("kubernetes:core/v1:ConfigMap", protect=False, require_protection=True)


def test_storage_classes_must_retain():
    storage_class = "kubernetes:storage.k8s.io/v1:StorageClass"
    assert validators.storage_classes_retain(storage_class, {"reclaimPolicy": "Delete"})
    assert validators.storage_classes_retain(storage_class, {})
    assert not validators.storage_classes_retain(storage_class, {"reclaimPolicy": "Retain"})


@pytest.mark.parametrize("password", ["prom-operator", "password1234", "minioadmin", "admin"])
def test_default_passwords_are_refused_in_secrets_and_helm_values(password):
    assert validators.no_default_credentials(SECRET, {"stringData": {"admin-password": password}})
    encoded = base64.b64encode(password.encode()).decode()
    assert validators.no_default_credentials(SECRET, {"data": {"MINIO_ROOT_PASSWORD": encoded}})
    helm = "kubernetes:helm.sh/v3:Release"
    assert validators.no_default_credentials(helm, {"values": {"grafana": {"adminPassword": password}}})


def test_a_default_user_name_or_a_generated_password_is_fine():
    assert not validators.no_default_credentials(SECRET, {"stringData": {"admin-user": "admin", "admin-password": "Zq8v-generated-x1"}})


def test_secrets_may_not_sit_in_config_maps_env_literals_or_helm_values():
    config_map = "kubernetes:core/v1:ConfigMap"
    assert validators.no_plaintext_secrets(config_map, {"data": {"app.ini": "password = hunter22"}})
    assert validators.no_plaintext_secrets(config_map, {"data": {"db-password": "hunter22"}})
    assert not validators.no_plaintext_secrets(config_map, {"data": {"dashboard.json": '{"title": "Backups"}'}})
    # A pod template (Airflow's KubernetesExecutor) turning the token off holds no secret; a token value still is one.
    assert not validators.no_plaintext_secrets(config_map, {"data": {"pod.yaml": "automountServiceAccountToken: false"}})
    assert validators.no_plaintext_secrets(config_map, {"data": {"pod.yaml": "token: falsehood-42"}})
    literal = deployment("a/b:1.0", [{"name": "POSTGRES_PASSWORD", "value": "hunter22"}])
    assert validators.no_plaintext_secrets(DEPLOYMENT, literal)
    from_secret = deployment("a/b:1.0", [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    assert not validators.no_plaintext_secrets(DEPLOYMENT, from_secret)
    helm = "kubernetes:helm.sh/v3:Release"
    assert validators.no_plaintext_secrets(helm, {"values": {"auth": {"password": "hunter22"}}})
    assert not validators.no_plaintext_secrets(helm, {"values": {"admin": {"existingSecret": "grafana-admin", "passwordKey": "admin-password"}}})


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("valkey/valkey:9.1.1", True),
        ("ghcr.io/mlflow/mlflow:v3.15.1-full", True),
        ("quay.io/minio/mc@sha256:" + "a" * 64, True),
        ("valkey/valkey", False),
        ("valkey/valkey:latest", False),
        ("localhost:5000/app", False),
    ],
)
def test_images_must_be_pinned(image, pinned):
    assert (validators.images_pinned(DEPLOYMENT, deployment(image)) == []) is pinned


def test_cron_job_containers_are_checked_too():
    cron_job = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "rclone/rclone"}]}}}}}}
    assert validators.images_pinned("kubernetes:batch/v1:CronJob", cron_job)


def all_violations(rendering, require_protection: bool) -> dict[str, dict[str, list[str]]]:
    found = {}
    for resource in rendering.resources:
        result = validators.violations(resource.type, unwrap_secrets(resource.inputs), resource.protect, require_protection)
        problems = {policy: messages for policy, messages in result.items() if messages}
        if problems:
            found[resource.name] = problems
    return found


def test_both_stacks_comply_with_every_policy(renderings):
    assert all_violations(renderings["dev"], require_protection=False) == {}
    assert all_violations(renderings["prod"], require_protection=True) == {}


def test_the_policies_see_real_violations_in_the_rendered_stacks(dev):
    # dev does not protect its claims: demanding protection there must flag every one of them.
    flagged = all_violations(dev, require_protection=True)
    claims = {r.name for r in dev.find_all(kind="PersistentVolumeClaim")}
    assert claims and claims <= set(flagged)
    assert all(set(p) == {"stateful-resources-protected"} for p in flagged.values())


def test_the_pack_reports_through_pulumi_policy(dev):
    assert [p.name for p in policies()] == list(DESCRIPTIONS)
    claim = dev.find(kind="PersistentVolumeClaim", name="redis-data")
    options = PolicyResourceOptions(
        protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
    )
    reported = []
    for policy in policies():
        config = {"requireProtection": True} if policy.name == "stateful-resources-protected" else {}
        args = ResourceValidationArgs(claim.type, claim.inputs, claim.urn, claim.name, options, None, config)
        policy.validate(args, lambda message, urn=None, name=policy.name: reported.append((name, message)))
    assert [name for name, _ in reported] == ["stateful-resources-protected"]


def test_stack_policy_configs_require_protection_only_in_prod():
    for stack, required in (("dev", False), ("prod", True)):
        config = json.loads((ROOT / "policy" / f"config.{stack}.json").read_text())
        assert config["stateful-resources-protected"]["requireProtection"] is required


def test_prod_serving_a_model_complies_with_every_policy():
    # Prod lists no model by default, so its reader Job and serving pods are rendered here to be checked at all.
    from tools.render import render_stack

    served = {"models": [{"name": "churn", "model": "churn-classifier", "alias": "champion", "replicas": 2}]}
    rendering = render_stack("prod", overrides={"mlops-platform:serving": served})
    assert rendering.find_all(kind="Job") and all_violations(rendering, require_protection=True) == {}
