"""Helpers for reading rendered Kubernetes objects in tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tools.render import Registered, Rendering

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
    """The plain (unredacted) stringData of a rendered Secret."""
    secret = next(
        r for r in rendering.find_all(kind="Secret")
        if r.metadata.get("name") == name and r.metadata.get("namespace") == namespace
    )
    return secret.manifest(redact=False)["stringData"]
