"""The log shipper: Grafana Alloy tailing every pod's logs through the Kubernetes API and pushing them to Loki."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.observability.footprint import FOOTPRINT
from components.versions import CHARTS

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def release(
    name: str, namespace: pulumi.Input[str], loki_url: pulumi.Input[str], child: pulumi.ResourceOptions, after: pulumi.Resource
) -> k8s.helm.v3.Release:
    """The Alloy release, once Loki is there to receive."""
    return kube.helm_release(
        f"{name}-log-shipper",
        CHARTS["alloy"],
        release_name="alloy",
        namespace=namespace,
        values=alloy_values(loki_url),
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[after])),
    )


def alloy_config(loki_url: str) -> str:
    """Alloy pipeline: every pod's container logs, read through the Kubernetes API (no hostPath), labelled and
    pushed to Loki."""
    relabel = "\n".join(
        f'  rule {{\n    source_labels = ["{source}"]\n    target_label  = "{target}"\n  }}'
        for source, target in (
            ("__meta_kubernetes_namespace", "namespace"),
            ("__meta_kubernetes_pod_name", "pod"),
            ("__meta_kubernetes_pod_container_name", "container"),
            ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "app"),
        )
    )
    return (
        'discovery.kubernetes "pods" {\n  role = "pod"\n}\n\n'
        f'discovery.relabel "pods" {{\n  targets = discovery.kubernetes.pods.targets\n{relabel}\n}}\n\n'
        'loki.source.kubernetes "pods" {\n  targets    = discovery.relabel.pods.output\n'
        "  forward_to = [loki.write.platform.receiver]\n}\n\n"
        f'loki.write "platform" {{\n  endpoint {{\n    url = "{loki_url}/loki/api/v1/push"\n  }}\n}}\n'
    )


def alloy_values(loki_url: pulumi.Input[str]) -> dict:
    return {
        # One replica tailing through the API server: no DaemonSet, no hostPath, no root.
        "controller": {"type": "deployment", "replicas": 1},
        "crds": {"create": False},
        "alloy": {
            "configMap": {"content": pulumi.Output.from_input(loki_url).apply(alloy_config)},
            "enableReporting": False,
            "mounts": {"varlog": False, "dockercontainers": False},
            "resources": FOOTPRINT["alloy"].as_k8s(),
            "securityContext": {**RESTRICTED_CONTAINER, "runAsNonRoot": True, "runAsUser": 473, "runAsGroup": 473},
        },
        "configReloader": {"resources": FOOTPRINT["config-reloader"].as_k8s()},
        # Only what log tailing needs, instead of the chart's default read access to every Secret and ConfigMap.
        # The chart prints `rules` then `clusterRules` into one ClusterRole, and an empty list there as a stray `[]`
        # that breaks the render (Alloy 1.11.1): both lists carry part of the one rule set, neither may be empty.
        "rbac": {
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}],
            "clusterRules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}],
        },
    }
