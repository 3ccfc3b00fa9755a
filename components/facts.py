"""The shapes of what each component says about itself, as plain data the platform plan assembles.

A component module declares, next to its code, a `facts(config)` function returning `ComponentFacts`: the namespace
its pods run in (and that namespace's Pod Security level, with the reason), the traffic it must receive, the ports
behind its NodePorts, what Prometheus scrapes, the buckets and databases it uses. `components/plan.py` collects
them. Nothing here imports Pulumi: facts are names and numbers, so the plan stays a pure function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CLIENTS = "clients"
"""A flow source: namespaces labelled `mlops.platform/client: "true"` (the platform's users' workloads)."""
ANYWHERE = "anywhere"
"""A flow source for traffic that comes from outside any pod: dev NodePorts, and the API server calling webhooks."""


@dataclass(frozen=True)
class PodSecurity:
    """The Pod Security Standards level a namespace enforces, and why (restricted is audited and warned everywhere)."""

    level: str
    """restricted, baseline or privileged."""
    reason: str
    """Why this level: what runs in the namespace and what it needs."""


RESTRICTED = PodSecurity("restricted", "every pod here is one we author, and each meets the restricted profile")
"""The level wherever only our own workloads run."""
CHART_RESTRICTED = PodSecurity(
    "restricted", "the chart's pods, rendered by Helm with our values, are admitted at restricted (tests/test_charts.py)"
)
"""The level where third-party chart pods run: proven, not assumed, by rendering every release."""


@dataclass(frozen=True)
class NamespaceFact:
    """A namespace (by role) a component's pods run in."""

    role: str
    """Namespace role; the namespace is `<prefix>-<role>`."""
    pod_security: PodSecurity = RESTRICTED
    """The level enforced there."""


@dataclass(frozen=True)
class Flow:
    """Ingress the platform needs: into pods of `namespace` (optionally only those matching `pods`) on `ports`."""

    name: str
    """Policy name suffix, e.g. `mlflow-clients`."""
    namespace: str
    """Namespace role the traffic goes into."""
    ports: tuple[int, ...]
    """TCP ports admitted; empty: every port."""
    sources: tuple[str, ...]
    """Namespace roles the traffic may come from, `clients` for namespaces with the client label, or `anywhere`."""
    pods: Mapping[str, str] = field(default_factory=dict)
    """Labels of the receiving pods; empty: every pod of the namespace."""
    source_pods: Mapping[str, str] = field(default_factory=dict)
    """Labels the sending pods must carry (with namespace sources); empty: any pod."""


@dataclass(frozen=True)
class EgressLimit:
    """Pods of `namespace` may send only to `destinations` (and to the cluster's DNS); all other egress is denied.
    For workloads whose every peer the platform knows; the rest keep open egress (cloud APIs, registries)."""

    namespace: str
    """Namespace role whose pods are limited."""
    destinations: tuple[tuple[str, int], ...]
    """(namespace role, TCP port) pairs its pods may reach."""


@dataclass(frozen=True)
class NodePortTarget:
    """Where traffic arriving at a dev NodePort goes: the namespace and the port its pods listen on."""

    namespace: str
    """Namespace role of the receiving pods."""
    port: int
    """The pods' port behind the NodePort."""


@dataclass(frozen=True)
class Metrics:
    """An endpoint Prometheus scrapes."""

    namespace: str
    """Namespace role of the scraped pods."""
    port: int
    """Port the metrics are served on."""
    path: str = "/metrics"
    """HTTP path of the metrics."""


@dataclass(frozen=True)
class BucketUse:
    """A workload that reads and writes some buckets with credentials of its own."""

    consumer: str
    """Consumer name; names its object-store user and its Secret `<consumer>-s3-credentials`."""
    namespace: str
    """Namespace role of its pods, where its credentials Secret must exist."""
    buckets: tuple[str, ...]
    """Logical bucket names it may use; every other bucket is denied."""


@dataclass(frozen=True)
class DatabaseUse:
    """Databases on the PostgresCluster whose owner credentials a component's pods need."""

    databases: tuple[str, ...]
    """Database names (each owned by a login role of the same name)."""
    namespace: str
    """Namespace role of the pods, where the credentials Secrets must exist."""


@dataclass(frozen=True)
class ComponentFacts:
    """What one component says about itself in a given stack."""

    name: str
    """The component's resource name (`mlflow`); it is part of every child's URN."""
    namespaces: tuple[NamespaceFact, ...] = ()
    """Namespaces its pods run in, with their Pod Security levels."""
    flows: tuple[Flow, ...] = ()
    """Traffic it receives from other namespaces (clients, operators, webhook calls)."""
    egress: tuple[EgressLimit, ...] = ()
    """Namespaces whose pods may send only where it says."""
    node_ports: Mapping[str, NodePortTarget] = field(default_factory=dict)
    """The targets of the NodePorts it can be given, by `nodePorts` key (`mlflow`, `minioApi`, ...)."""
    metrics: tuple[Metrics, ...] = ()
    """What Prometheus scrapes of it when observability is on."""
    buckets: tuple[BucketUse, ...] = ()
    """Object-store consumers it runs."""
    databases: tuple[DatabaseUse, ...] = ()
    """Databases it needs credentials for."""
