"""The CloudNativePG operator, installed once per cluster from its pinned chart."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components import kube
from components.config import ResourceSpec, StackConfig
from components.facts import ANYWHERE, ComponentFacts, Flow, NamespaceFact
from components.versions import CHARTS

NAMESPACE = "cnpg"
WEBHOOK_PORT = 9443


def facts(config: StackConfig) -> ComponentFacts:
    """The operator runs in `cnpg`; its admission webhook on WEBHOOK_PORT is called by the API server, not a pod."""
    return ComponentFacts(
        "cnpg",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(Flow("cnpg-webhook", NAMESPACE, (WEBHOOK_PORT,), (ANYWHERE,)),),
    )


@dataclass(frozen=True)
class CnpgOperatorArgs:
    """Where the operator runs and what it may use."""

    namespace: pulumi.Input[str]
    """Namespace of the operator Deployment (it watches every namespace)."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "50m", "memory": "128Mi"}, {"cpu": "500m", "memory": "256Mi"})
    )
    """Requests and limits of the operator."""


class CnpgOperator(pulumi.ComponentResource):
    """CloudNativePG: the operator and its CRDs. Clusters must depend on `ready` so the CRDs exist first."""

    ready: pulumi.Resource
    """The chart release; depend on it before declaring any postgresql.cnpg.io resource."""

    def __init__(self, name: str, args: CnpgOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:cnpg_operator:CnpgOperator", name, None, opts)
        # helm.v4.Chart: the chart has no hooks we need, and previews show a diff per object.
        self.ready = kube.helm_chart(
            f"{name}-chart",
            CHARTS["cloudnative-pg"],
            namespace=args.namespace,
            values={
                "crds": {"create": True},
                "config": {"clusterWide": True},
                "resources": args.resources.as_k8s(),
                # We create our own PodMonitor per cluster, once the Prometheus CRDs are part of the stack.
                "monitoring": {"podMonitorEnabled": False},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
