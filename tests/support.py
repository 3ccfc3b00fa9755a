"""Helpers for reading rendered Kubernetes objects in tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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
