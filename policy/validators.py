"""The invariants users care about, as pure functions of one resource: type, inputs and `protect`.

Each returns the violations it finds (empty: compliant). `pack.py` wraps them as Pulumi policies; the tests run
them on unit inputs and on every resource both stacks register.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from typing import Any

STATEFUL_TYPES = frozenset({
    "kubernetes:core/v1:PersistentVolumeClaim",
    "kubernetes:storage.k8s.io/v1:StorageClass",
    "kubernetes:postgresql.cnpg.io/v1:Cluster",
    "kubernetes:postgresql.cnpg.io/v1:Database",
    "aws:s3/bucket:Bucket",
    "cloudflare:index/r2Bucket:R2Bucket",
    "vault:index/mount:Mount",
    "aws:kms/key:Key",
})
"""Resources whose deletion loses data (or, for the StorageClass, the provisioning of every claim)."""

DEFAULT_CREDENTIALS = frozenset({
    "admin", "password", "password1234", "prom-operator", "minioadmin", "changeme", "postgres", "root", "secret",
})
"""Passwords shipped as upstream defaults (Grafana's prom-operator, MLflow's password1234, MinIO's minioadmin, ...)."""

SECRET_NAME = re.compile(r"(password|passwd|secret|token|credential|private[-_]?key|access[-_]?key)", re.IGNORECASE)
# A boolean is no secret: `automountServiceAccountToken: false` in a pod template is a setting, not a token.
SECRET_ASSIGNMENT = re.compile(
    r"(password|passwd|secret|token)\s*[:=]\s*['\"]?(?!(?:true|false)\b)[^\s'\"{}$]{4,}", re.IGNORECASE
)
WORKLOAD_TYPES = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet")


def _names_a_secret(leaf: str) -> bool:
    """`existingSecret`, `secretKey`, `passwordKey`, `secretName` name where a secret is, not the secret itself."""
    return leaf.lower().endswith(("key", "secret", "name", "ref"))


def _plain(value: Any) -> Any:
    """Policy runtimes may wrap secret values; compare what they hold."""
    return getattr(value, "value", value)


def stateful_resources_protected(resource_type: str, protect: bool, require_protection: bool) -> list[str]:
    if require_protection and resource_type in STATEFUL_TYPES and not protect:
        return [f"{resource_type} holds state: set protect (and retain_on_delete) so `pulumi destroy` cannot delete it"]
    return []


def storage_classes_retain(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type == "kubernetes:storage.k8s.io/v1:StorageClass" and props.get("reclaimPolicy") != "Retain":
        return [f"StorageClass reclaimPolicy is {props.get('reclaimPolicy')!r}: use Retain so volumes outlive their claims"]
    return []


def _secret_values(props: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in (_plain(props.get("stringData")) or {}).items():
        yield key, str(_plain(value))
    for key, value in (_plain(props.get("data")) or {}).items():
        try:
            yield key, base64.b64decode(str(_plain(value))).decode()
        except ValueError:
            yield key, str(_plain(value))


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    value = _plain(value)
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value


def no_default_credentials(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    found = []
    if resource_type == "kubernetes:core/v1:Secret":
        found = [key for key, value in _secret_values(props) if SECRET_NAME.search(key) and value.strip() in DEFAULT_CREDENTIALS]
    elif resource_type.startswith("kubernetes:helm.sh/"):
        found = [
            path for path, value in _walk(props.get("values") or {})
            if isinstance(value, str)
            and SECRET_NAME.search(leaf := path.rsplit(".", 1)[-1])
            and not _names_a_secret(leaf)
            and value.strip() in DEFAULT_CREDENTIALS
        ]
    return [f"{key} is a well-known default credential: generate it (pulumi_random) instead" for key in found]


def _pod_specs(resource_type: str, props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    kind = resource_type.rsplit(":", 1)[-1]
    if kind not in WORKLOAD_TYPES:
        return
    spec = _plain(props.get("spec")) or {}
    if kind == "Pod":
        yield spec
        return
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    yield (spec.get("template") or {}).get("spec") or {}


def _containers(resource_type: str, props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for pod in _pod_specs(resource_type, props):
        yield from (pod.get("initContainers") or []) + (pod.get("containers") or [])


def no_plaintext_secrets(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Secrets live in Secrets: never in ConfigMaps, container env literals or Helm values."""
    problems = []
    if resource_type == "kubernetes:core/v1:ConfigMap":
        for key, value in {**(props.get("data") or {})}.items():
            if SECRET_ASSIGNMENT.search(str(_plain(value))) or (SECRET_NAME.search(key) and _plain(value)):
                problems.append(f"ConfigMap key {key} holds what looks like a secret: use a Secret")
    for container in _containers(resource_type, props):
        for env in container.get("env") or []:
            if SECRET_NAME.search(env.get("name", "")) and env.get("value") not in (None, ""):
                problems.append(f"container {container.get('name')} sets {env['name']} as a literal: use valueFrom.secretKeyRef")
    if resource_type.startswith("kubernetes:helm.sh/"):
        for path, value in _walk(props.get("values") or {}):
            leaf = path.rsplit(".", 1)[-1]
            if re.search(r"(password|token|apiKey)$", leaf, re.IGNORECASE) and isinstance(value, str) and value:
                problems.append(f"Helm value {path} is a literal secret: give the chart an existing Secret instead")
    return problems


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and name.rsplit(":", 1)[1] not in ("", "latest")


def images_pinned(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    return [
        f"container {c.get('name')} image {c.get('image')!r} is not pinned to a release tag or digest"
        for c in _containers(resource_type, props)
        if not _pinned(str(_plain(c.get("image")) or ""))
    ]


def violations(resource_type: str, props: Mapping[str, Any], protect: bool, require_protection: bool) -> dict[str, list[str]]:
    """Every policy's violations for one resource, by policy name."""
    return {
        "stateful-resources-protected": stateful_resources_protected(resource_type, protect, require_protection),
        "storage-classes-retain": storage_classes_retain(resource_type, props),
        "no-default-credentials": no_default_credentials(resource_type, props),
        "no-plaintext-secrets": no_plaintext_secrets(resource_type, props),
        "images-pinned": images_pinned(resource_type, props),
    }
