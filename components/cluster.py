"""Cluster foundation: the platform's namespaces and the Retain StorageClass every claim uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.config import StorageConfig
from components.kube import PART_OF, POD_SECURITY_VERSION, stateful


@dataclass(frozen=True)
class ClusterFoundationArgs:
    """Namespaces and storage for one stack."""

    namespaces: dict[str, str]
    """Namespace name by role (`storage`, `mlflow`, ...)."""
    storage: StorageConfig
    """The StorageClass to create; its reclaimPolicy is always Retain."""
    protect: bool = False
    """Protect the StorageClass (prod): deleting it would orphan every claim's provisioning."""
    pod_security: Mapping[str, str] = field(default_factory=dict)
    """Pod Security level enforced per namespace role (`restricted` where absent); the platform plan holds each
    level's reason."""


class ClusterFoundation(pulumi.ComponentResource):
    """Namespaces labelled for Pod Security Admission, and a StorageClass whose volumes outlive their claims."""

    namespaces: dict[str, pulumi.Output[str]]
    """Namespace name by role; depending on it orders workloads after their namespace."""
    storage_class: pulumi.Output[str]
    """Name of the Retain StorageClass."""

    def __init__(self, name: str, args: ClusterFoundationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:cluster:ClusterFoundation", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.namespaces = {
            role: _namespace(f"{name}-ns-{role}", namespace, role, args.pod_security.get(role, "restricted"), child).metadata.name
            for role, namespace in sorted(args.namespaces.items())
        }
        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-storage-class",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.storage.class_name, labels={"app.kubernetes.io/part-of": PART_OF}),
            provisioner=args.storage.provisioner,
            # Retain: deleting a claim (or the whole release) leaves the volume and its data behind for recovery.
            reclaim_policy="Retain",
            volume_binding_mode=args.storage.volume_binding_mode,
            allow_volume_expansion=args.storage.allow_volume_expansion,
            parameters=dict(args.storage.parameters) or None,
            opts=stateful(child, args.protect),
        )
        self.storage_class = storage_class.metadata.name
        self.register_outputs({"namespaces": self.namespaces, "storage_class": self.storage_class})


def _namespace(name: str, namespace: str, role: str, level: str, opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
    # Every workload we author meets the restricted profile, so it is enforced there. Where a looser level must be
    # enforced, restricted is still audited and warned about, so every violation stays visible.
    pod_security = {
        f"pod-security.kubernetes.io/{mode}{suffix}": value
        for mode, mode_level in (("enforce", level), ("audit", "restricted"), ("warn", "restricted"))
        for suffix, value in (("", mode_level), ("-version", POD_SECURITY_VERSION))
    }
    return k8s.core.v1.Namespace(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=namespace,
            labels={"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/component": role, **pod_security},
        ),
        opts=opts,
    )
