"""What users care about in every stack: protected state, no plaintext or default secrets, hardened pods."""

from __future__ import annotations

import json
import re

from tests.support import container as named_container
from tests.support import containers, pod_spec, workloads
from tools.render import is_secret, unwrap_secrets

STATEFUL_KINDS = ("PersistentVolumeClaim", "StorageClass", "Cluster", "Database")
DEFAULT_CREDENTIALS = ("minioadmin", "password1234", "prom-operator", "admin:admin", "changeme")


def test_prod_protects_and_retains_every_stateful_resource(prod):
    stateful = [r for r in prod.resources if r.kind in STATEFUL_KINDS]
    # The Redis claim, the StorageClass, the CNPG Cluster and its 8 databases (buckets: test_object_store_s3).
    assert len(stateful) == 11
    for resource in stateful:
        assert resource.protect, resource.name
        assert resource.retain_on_delete, resource.name


def test_dev_stays_destroyable(dev):
    assert not any(r.protect or r.retain_on_delete for r in dev.resources)


def generated_secrets(rendering) -> list[str]:
    """Values of every generated password and cloud access key in the stack (the mocks make them deterministic)."""
    import base64

    from tools.render import mock_bytes, mock_password

    passwords = [
        mock_password(r.name, int(r.inputs["length"]), bool(r.inputs.get("special", True)))
        for r in rendering.find_all(type="random:index/randomPassword:RandomPassword")
    ]
    access_keys = [mock_password(r.name, 40, special=True) for r in rendering.find_all(type="aws:iam/accessKey:AccessKey")]
    # Random bytes as the program stores them: URL-safe base64 (Airflow's Fernet key).
    keys = [
        base64.urlsafe_b64encode(mock_bytes(r.name, int(r.inputs["length"]))).decode()
        for r in rendering.find_all(type="random:index/randomBytes:RandomBytes")
    ]
    return passwords + access_keys + keys


def test_generated_secrets_appear_only_inside_secret_objects(rendering):
    secrets = generated_secrets(rendering)
    assert len(secrets) >= 6
    if rendering.stack == "prod":
        assert any(r.type == "aws:iam/accessKey:AccessKey" for r in rendering.resources)
    # Where secrets live in Vault, their values are only in the KV secrets Pulumi writes there.
    in_secrets = " ".join(
        value
        for stored in rendering.find_all(type="vault:kv/secretV2:SecretV2")
        for value in json.loads(unwrap_secrets(stored.inputs["dataJson"])).values()
    )
    for resource in rendering.kubernetes_objects():
        text = json.dumps(resource.manifest(redact=False))
        if resource.kind == "Secret":
            in_secrets += text
        else:
            assert not any(s in text for s in secrets), f"{resource.kind} {resource.name} holds a secret value"
    assert all(s in in_secrets for s in secrets)
    assert not any(s in json.dumps(rendering.outputs) for s in secrets)
    # Nor in any Helm release's values (charts would template them into ConfigMaps or env, and state keeps them).
    releases = [r for r in rendering.resources if r.type.startswith("kubernetes:helm.sh/")]
    assert len(releases) >= 3
    for release in releases:
        values = json.dumps(unwrap_secrets(release.inputs.get("values") or {}), default=str)
        assert not any(s in values for s in secrets), f"Helm release {release.name} holds a secret value"


def test_no_default_credentials_anywhere(rendering):
    text = json.dumps([r.manifest(redact=False) for r in rendering.kubernetes_objects()]).lower()
    for credential in DEFAULT_CREDENTIALS:
        assert credential not in text


def test_secret_values_reach_containers_only_by_reference(rendering):
    secret_like = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY)$")
    for _, manifest in workloads(rendering):
        for container in containers(manifest):
            for item in container.get("env", []):
                if secret_like.search(item["name"]):
                    assert "value" not in item, f"{container['name']}: {item['name']} is a literal"


def test_images_are_pinned_release_tags(rendering):
    for _, manifest in workloads(rendering):
        for container in containers(manifest):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag, image


def test_every_pod_is_hardened_for_the_restricted_profile(rendering):
    for resource, manifest in workloads(rendering):
        spec = pod_spec(manifest)
        # The exceptions: the Vault snapshot job logs in to Vault with its ServiceAccount token (Kubernetes auth), and
        # the KubernetesExecutor's scheduler starts and deletes task pods in its namespace.
        uses_token = spec.get("serviceAccountName") in ("vault-snapshot", "airflow-scheduler")
        assert spec["automountServiceAccountToken"] is uses_token, resource.name
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(manifest):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert set(container["resources"]["requests"]) >= {"cpu", "memory"}
            assert set(container["resources"]["limits"]) >= {"cpu", "memory"}


def test_long_running_containers_have_probes(rendering):
    for resource, manifest in workloads(rendering):
        if resource.kind in ("Job", "CronJob"):
            continue
        for container in containers(manifest, init=False):
            assert "readinessProbe" in container and "livenessProbe" in container, container["name"]


def test_rendered_files_are_stable_so_reviews_diff_cleanly(rendering, tmp_path):
    from tools.render import render_stack, write_manifests

    first = {p.name: p.read_text() for p in write_manifests(rendering, tmp_path / "first")}
    again = {p.name: p.read_text() for p in write_manifests(render_stack(rendering.stack), tmp_path / "again")}
    assert first == again
    assert any(name.startswith("helm-") for name in first)
    assert not any("@:/%#?" in text for text in first.values()), "Secret values must be redacted in rendered files"


SECRET_PAYLOADS = {
    "kubernetes:core/v1:Secret": ("data", "stringData"),
    "vault:kv/secretV2:SecretV2": ("dataJson",),
}


def test_every_secret_payload_is_a_pulumi_secret_whatever_its_source(rendering):
    # Encrypted in state and masked in previews because the program marks it, not because a source happened to be
    # secret: a payload built from a plain config value or a derived URI must not be stored in clear text.
    payloads = {
        (resource.name, key): resource.inputs[key]
        for resource in rendering.resources if resource.type in SECRET_PAYLOADS
        for key in SECRET_PAYLOADS[resource.type] if key in resource.inputs
    }
    assert payloads, "no Secret payloads rendered: the check would prove nothing"
    assert [where for where, value in payloads.items() if not is_secret(value)] == []


def test_every_generated_password_is_long(rendering):
    # 32 characters of a 62-letter alphabet is ~190 bits: nothing a guesser or a leaked hash table reaches.
    lengths = {r.name: r.inputs["length"] for r in rendering.find_all(type="random:index/randomPassword:RandomPassword")}
    assert lengths and {name: n for name, n in lengths.items() if n < 32} == {}


def test_every_rclone_remote_uses_only_the_credentials_it_is_given(rendering):
    # With env_auth, rclone falls back to the node's or pod's ambient cloud credentials (an instance role, say) when
    # the Secret's keys are missing, and writes where the job's own user could not.
    remotes = {}
    for workload, manifest in workloads(rendering):
        for c in containers(manifest):
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            for name in env:
                match = re.fullmatch(r"RCLONE_CONFIG_(\w+)_TYPE", name)
                if match:
                    remotes[(workload.name, c["name"], match[1])] = env.get(f"RCLONE_CONFIG_{match[1]}_ENV_AUTH")
    assert remotes, "no rclone remote rendered: the check would prove nothing"
    assert {where: value for where, value in remotes.items() if value != "false"} == {}


def test_the_restricted_manifest_is_what_container_security_renders(dev):
    """kube.RESTRICTED_CONTAINER (chart values, Airflow's task pod template) and kube.container_security() (every
    container we declare) are one policy in two forms: the Valkey container's rendered context equals the manifest."""
    from components.kube import RESTRICTED_CONTAINER

    server = named_container(dev.find(kind="StatefulSet", name="redis").manifest(), "valkey")
    assert server["securityContext"] == RESTRICTED_CONTAINER
