"""Ingress NetworkPolicies: every platform namespace denies all ingress, then admits exactly the flows declared.

The platform plan declares the flows (who talks to whom, on which port; components/plan.py); this component turns
them into policies. Egress stays open, as the workloads reach cloud APIs, registries and DNS whose addresses policies
cannot name, except where a component knows every peer of its pods (model serving: MLflow only) and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.facts import ANYWHERE, CLIENTS, EgressLimit, Flow
from components.kube import PART_OF

__all__ = ["ANYWHERE", "CLIENT_LABEL", "EgressLimit", "Flow", "NetworkPolicies", "NetworkPoliciesArgs", "egress_spec", "policy_spec"]

CLIENT_LABEL = "mlops.platform/client"
"""Namespaces labelled `mlops.platform/client: "true"` may use the platform's client ports (MLflow, PostgreSQL,
Redis, Temporal, the S3 API)."""
CLUSTER_DNS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
"""The cluster's DNS pods (CoreDNS on Kind and EKS keeps the kube-dns label), which every limited namespace needs."""


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    """The namespaces to close and the flows to open."""

    namespaces: Mapping[str, pulumi.Input[str]]
    """Namespace name by role; each gets a default-deny ingress policy and allows traffic within itself."""
    namespace_names: Mapping[str, str]
    """The same names as plain strings, for namespace selectors."""
    flows: tuple[Flow, ...] = ()
    """Cross-namespace and outside flows."""
    egress: tuple[EgressLimit, ...] = ()
    """Namespaces whose pods may send only to named destinations (and DNS)."""


class NetworkPolicies(pulumi.ComponentResource):
    """Default-deny ingress in every platform namespace, traffic within a namespace, and the declared flows."""

    policy_names: dict[str, list[str]]
    """Policy names by namespace role."""

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:network_policies:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        unknown = {f.namespace for f in args.flows} - set(args.namespaces)
        if unknown:
            raise ValueError(f"flows into namespaces the platform does not create: {sorted(unknown)}")
        self.policy_names = {}
        for role, namespace in sorted(args.namespaces.items()):
            policies = [
                ("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                # Replication, operators and their webhooks' jobs, setup and backup jobs talk within a namespace.
                ("allow-same-namespace", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}),
            ]
            policies += [
                (f"allow-{flow.name}", policy_spec(flow, args.namespace_names))
                for flow in args.flows
                if flow.namespace == role
            ]
            policies += [("limit-egress", egress_spec(limit, args.namespace_names)) for limit in args.egress if limit.namespace == role]
            for policy_name, spec in policies:
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-{role}-{policy_name}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=policy_name, namespace=namespace, labels={"app.kubernetes.io/part-of": PART_OF}
                    ),
                    spec=spec,
                    opts=child,
                )
            self.policy_names[role] = [policy_name for policy_name, _ in policies]
        self.register_outputs({"policy_names": self.policy_names})


def _peer(source: str, names: Mapping[str, str], source_pods: Mapping[str, str]) -> dict:
    if source == CLIENTS:
        selector = {"matchLabels": {CLIENT_LABEL: "true"}}
    else:
        selector = {"matchLabels": {"kubernetes.io/metadata.name": names[source]}}
    peer: dict = {"namespaceSelector": selector}
    if source_pods:
        peer["podSelector"] = {"matchLabels": dict(source_pods)}
    return peer


def egress_spec(limit: EgressLimit, names: Mapping[str, str]) -> dict:
    """The NetworkPolicy spec limiting one namespace's egress to DNS and its destinations."""
    dns = {"to": [CLUSTER_DNS], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [dns] + [
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": names[role]}}}],
             "ports": [{"protocol": "TCP", "port": port}]}
            for role, port in limit.destinations
        ],
    }


def policy_spec(flow: Flow, names: Mapping[str, str]) -> dict:
    """The NetworkPolicy spec admitting one flow."""
    rule: dict = {}
    if ANYWHERE not in flow.sources:
        rule["from"] = [_peer(source, names, flow.source_pods) for source in flow.sources]
    if flow.ports:
        rule["ports"] = [{"protocol": "TCP", "port": port} for port in flow.ports]
    return {
        "podSelector": {"matchLabels": dict(flow.pods)} if flow.pods else {},
        "policyTypes": ["Ingress"],
        "ingress": [rule],
    }
