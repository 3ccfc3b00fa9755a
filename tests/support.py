"""Helpers for reading rendered Kubernetes objects in tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tools.render import Registered, Rendering, unwrap_secrets

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet")


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def workloads(rendering: Rendering) -> Iterator[tuple[Registered, dict[str, Any]]]:
    for resource in rendering.kubernetes_objects():
        if resource.kind in WORKLOAD_KINDS:
            yield resource, resource.manifest(redact=False)


def containers(manifest: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    spec = pod_spec(manifest)
    return (spec.get("initContainers", []) if init else []) + spec["containers"]


def container(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in containers(manifest) if c["name"] == name)


def env_of(container_manifest: dict[str, Any]) -> dict[str, Any]:
    """name -> literal value, or ('secret', secret name, key) for a secretKeyRef."""
    result = {}
    for item in container_manifest.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        result[item["name"]] = ("secret", ref["name"], ref["key"]) if ref else item.get("value")
    return result


def secret_data(rendering: Rendering, namespace: str, name: str) -> dict[str, str]:
    """The plain values of Secret `name` in `namespace`: a rendered Secret's stringData, or, where secrets live in
    Vault, the data of the KV secret its ExternalSecret syncs from."""
    for secret in rendering.find_all(kind="Secret"):
        if secret.metadata.get("name") == name and secret.metadata.get("namespace") == namespace:
            return secret.manifest(redact=False)["stringData"]
    return vault_secret_data(rendering, namespace, name)


def vault_secret_data(rendering: Rendering, namespace: str, name: str) -> dict[str, str]:
    external = next(
        r for r in rendering.find_all(kind="ExternalSecret")
        if r.metadata.get("name") == name and r.metadata.get("namespace") == namespace
    )
    (source,) = external.inputs["spec"]["dataFrom"]
    path = unwrap_secrets(source)["extract"]["key"]
    stored = next(r for r in rendering.find_all(type="vault:kv/secretV2:SecretV2") if r.inputs["name"] == path)
    return json.loads(unwrap_secrets(stored.inputs["dataJson"]))


def chart_objects(rendering: Rendering, resource: str) -> list[dict[str, Any]]:
    """The objects Helm renders for the release declared as `resource`, with the program's values; skips when
    helm-python-sdk or the chart (in the cache) is missing."""
    pytest.importorskip("helm_python", reason="helm-python-sdk (the test requirements) renders the chart")
    from tools.charts import ChartNotCached, helm_releases, render_release

    (release,) = [r for r in helm_releases(rendering) if r.resource == resource]
    try:
        return render_release(release).objects
    except ChartNotCached as missing:
        pytest.skip(str(missing))
