"""Explicit providers built from typed config; Pulumi.yaml disables the ambient default providers."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from components.config import StackConfig


def kubernetes_provider(config: StackConfig) -> k8s.Provider:
    """The one kubernetes provider every component uses, pinned to a kubeconfig context."""
    return k8s.Provider(
        "kubernetes",
        context=config.kube_context,
        # Server-side apply handles large CRDs and field ownership; it is the default, stated here to stay so.
        enable_server_side_apply=True,
    )
