"""The platform plan: what a stack contains, decided once, as plain data.

`platform_plan(config)` is a pure function of the typed config: it declares no resource and holds no Output. It
collects what each component module says about itself (`facts(config)`: the namespace it runs in and that
namespace's Pod Security level, the traffic it receives, its NodePort targets, its metrics, the buckets and
databases it uses; see components/facts.py) and decides which components the stack has and in which order they are
built, who may use which bucket, where each database's credentials must appear, the network flows between
namespaces, the NodePorts, what is backed up and what is monitored. `__main__.py` builds the components from it
(components/assembly.py) and decides none of this again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from components import (
    airflow,
    backups,
    cert_manager,
    cnpg_operator,
    front_door,
    mlflow_server,
    model_serving,
    object_store,
    observability,
    postgres_cluster,
    redis,
    secret_sync,
    temporal_stack,
    vault_server,
)
from components.config import StackConfig
from components.facts import (
    ANYWHERE,
    CLIENTS,
    BucketUse,
    ComponentFacts,
    EgressLimit,
    Flow,
    NodePortTarget,
    PodSecurity,
)

FACTS: Mapping[str, Callable[[StackConfig], ComponentFacts]] = {
    "vault": vault_server.facts,
    "secrets": secret_sync.facts,
    "observability": observability.facts,
    "objects": object_store.facts,
    "cert-manager": cert_manager.facts,
    "cnpg": cnpg_operator.facts,
    "postgres": postgres_cluster.facts,
    "redis": redis.facts,
    "mlflow": mlflow_server.facts,
    "serving": model_serving.facts,
    "temporal": temporal_stack.facts,
    "airflow": airflow.facts,
    "front-door": front_door.facts,
    "backups": backups.facts,
}
"""Where each component's facts come from, by component name; the foundation, the network policies, the backup
plugin (it runs in the operator's namespace) and the monitoring rules have none of their own."""
VAULT_INSTALL = ("cluster", "cert-manager", "vault", "network")
"""What the first phase of a Vault stack builds: Vault alone, in its closed namespace, and cert-manager, which
issues the certificate Vault serves TLS with (the Certificates exist before the Vault pods start)."""


def vault_serves_tls(config: StackConfig) -> bool:
    """A Vault the stack deploys serves TLS, always: its certificate comes from cert-manager (an existing Vault's
    TLS is its operator's business)."""
    return config.vault is not None and config.vault.deploy


CERT_MANAGER_USERS: Mapping[str, Callable[[StackConfig], bool]] = {
    # The barman-cloud plugin's chart asks cert-manager for its TLS certificates.
    "continuous backups": lambda config: config.backups.continuous,
    "Vault's TLS listener": vault_serves_tls,
    "the front door's certificates": lambda config: config.front_door.enabled,
}
"""What needs cert-manager, by reason; a new user of certificates adds its line here."""


def needs_cert_manager(config: StackConfig) -> bool:
    """Whether the stack runs cert-manager: something in it needs a certificate (CERT_MANAGER_USERS)."""
    return any(needed(config) for needed in CERT_MANAGER_USERS.values())


class PlanError(ValueError):
    """Component facts contradict each other or the config: a mistake in the program, not in a stack file."""


@dataclass(frozen=True)
class PlannedNamespace:
    """A namespace the stack creates."""

    role: str
    """Role (`mlflow`, `data`, ...)."""
    name: str
    """Kubernetes name, `<prefix>-<role>`."""
    pod_security: PodSecurity
    """Level enforced there, and why."""


@dataclass(frozen=True)
class PlannedDatabase:
    """A database on the PostgresCluster."""

    name: str
    """Database and owner role name."""
    consumers: tuple[str, ...]
    """Namespace roles, besides the cluster's, whose pods need its credentials Secret."""


@dataclass(frozen=True)
class PlannedNodePort:
    """A host port (dev) and what it reaches."""

    node_port: int
    """The NodePort, also the port on localhost (Kind maps it)."""
    component: str
    """The component whose Service gets it."""
    target: NodePortTarget
    """The namespace and the pods' port behind it."""


@dataclass(frozen=True)
class PlatformPlan:
    """Everything a stack contains and how the pieces connect; no resources, no Outputs."""

    config: StackConfig
    """The typed config the plan was made from (sizes, resources, schedules are read from it)."""
    components: tuple[str, ...]
    """Components built in this run, by resource name, in build order."""
    namespaces: Mapping[str, PlannedNamespace]
    """Namespaces by role."""
    buckets: tuple[str, ...]
    """Every bucket of the object store, by logical name."""
    bucket_consumers: tuple[BucketUse, ...]
    """Workloads with object-store credentials of their own, and the buckets each may use."""
    databases: tuple[PlannedDatabase, ...]
    """Databases on the PostgresCluster; the first is created at bootstrap."""
    flows: tuple[Flow, ...]
    """Ingress admitted across namespaces; everything else is denied."""
    egress: tuple[EgressLimit, ...]
    """Namespaces whose egress is limited to named destinations (and DNS); the others' egress is open."""
    node_ports: Mapping[str, PlannedNodePort]
    """Host NodePorts by `nodePorts` key."""
    backups: Mapping[str, BucketUse]
    """Backup CronJobs by name, each with the bucket consumer it uploads as (continuous PostgreSQL archiving is the
    `cnpg-backup` component)."""
    monitored: tuple[str, ...]
    """Components Prometheus scrapes."""
    routes: tuple[front_door.Route, ...] = ()
    """What the front door publishes on `<host>.<domain>`, and how each is signed in to; empty without it."""

    @property
    def installing_vault(self) -> bool:
        """The first phase of a Vault stack: Vault alone, nothing can be written into it yet."""
        return self.components == VAULT_INSTALL

    @property
    def observability_first(self) -> bool:
        """Whether observability comes before the object store (Loki on its own claim, MinIO scraped from the start)."""
        return self.has("observability") and self.components.index("observability") < self.components.index("objects")

    def has(self, component: str) -> bool:
        return component in self.components

    def monitors(self, component: str) -> bool:
        return component in self.monitored

    def namespace_names(self) -> dict[str, str]:
        """Namespace name by role."""
        return {role: namespace.name for role, namespace in self.namespaces.items()}

    def node_port(self, role: str) -> int | None:
        """The NodePort of `nodePorts` key `role`, or None."""
        planned = self.node_ports.get(role)
        return planned.node_port if planned else None

    def consumer(self, name: str) -> BucketUse | None:
        return next((use for use in self.bucket_consumers if use.consumer == name), None)


def platform_plan(config: StackConfig) -> PlatformPlan:
    """The plan of the configured stack; raises PlanError if component facts contradict each other or the config."""
    stack = _stack_components(config)
    components = VAULT_INSTALL if config.installing_vault else stack
    # Namespaces and flows come from the whole configured stack, kept to this phase's namespaces: while Vault is
    # being installed its namespaces exist already, closed to all but what Vault itself needs.
    every = [FACTS[name](config) for name in stack if name in FACTS]
    built = [facts for facts in every if facts.name in components]
    namespaces = _namespaces(config, every)
    monitored = tuple(f.name for f in built if f.metrics) if "observability" in components else ()
    consumers = tuple(use for facts in built for use in facts.buckets)
    node_ports = _node_ports(config, built)
    _check_buckets(config, consumers)
    return PlatformPlan(
        config=config,
        components=components,
        namespaces=namespaces,
        buckets=config.object_store.buckets,
        bucket_consumers=consumers,
        databases=_databases(config, every),
        flows=_flows(every, set(namespaces), consumers, node_ports, scraped="objects" in monitored),
        egress=_egress(every, set(namespaces)),
        node_ports=node_ports,
        backups=backups.jobs(config) if "backups" in components else {},
        monitored=monitored,
        routes=front_door.routes(config) if "front-door" in components else (),
    )


def _stack_components(config: StackConfig) -> tuple[str, ...]:
    """Every component of the configured stack, in build order: foundation, secrets, storage, data, apps, backups,
    monitoring."""
    vault = config.vault
    watched = config.observability.enabled
    # With a cloud object store Loki keeps its chunks in a bucket, so observability follows the store; otherwise it
    # comes first, so MinIO is scraped from the start.
    logs_in_bucket = watched and bool(observability.facts(config).buckets)
    return (
        "cluster",
        # Before Vault: Vault's listener serves a certificate cert-manager issues.
        *(["cert-manager"] if needs_cert_manager(config) else []),
        *(["vault"] if vault and vault.deploy else []),
        "network",
        *(["secrets"] if vault else []),
        *(["observability"] if watched and not logs_in_bucket else []),
        "objects",
        *(["observability"] if logs_in_bucket else []),
        "cnpg",
        # Continuous WAL archiving needs the barman-cloud plugin (and cert-manager, above).
        *(["cnpg-backup"] if config.backups.continuous else []),
        "postgres",
        "redis",
        "mlflow",
        # Model serving reads MLflow's registry; with no model listed there is nothing to build.
        *(["serving"] if config.serving.models else []),
        "temporal",
        # Airflow's example pipeline logs to MLflow; its database is on the PostgresCluster.
        *(["airflow"] if config.airflow.enabled else []),
        # The way in from outside: every published service exists before its route.
        *(["front-door"] if config.front_door.enabled else []),
        "backups",
        *(["monitoring"] if watched else []),
    )


def _namespaces(config: StackConfig, every: list[ComponentFacts]) -> dict[str, PlannedNamespace]:
    """The config's namespace roles (config.namespace_roles decides which exist, and their order), each with the Pod
    Security level of the components that run there."""
    levels: dict[str, PodSecurity] = {}
    for facts in every:
        for namespace in facts.namespaces:
            if levels.setdefault(namespace.role, namespace.pod_security) != namespace.pod_security:
                raise PlanError(f"components disagree on the Pod Security level of namespace {namespace.role!r}")
    roles = namespace_roles(config)
    unowned = [role for role in roles if role not in levels]
    homeless = sorted(set(levels) - set(roles)) if not config.installing_vault else []
    if unowned or homeless:
        raise PlanError(f"namespaces without a component: {unowned}; components without their namespace: {homeless}")
    return {role: PlannedNamespace(role, config.namespace(role), levels[role]) for role in roles}


def namespace_roles(config: StackConfig) -> tuple[str, ...]:
    """config.namespace_roles, with cert-manager's when the stack needs it (right after the operator's, or first)."""
    roles = list(config.namespace_roles)
    if needs_cert_manager(config):
        roles.insert(roles.index("cnpg") + 1 if "cnpg" in roles else 0, cert_manager.NAMESPACE)
    return tuple(roles)


def _databases(config: StackConfig, every: list[ComponentFacts]) -> tuple[PlannedDatabase, ...]:
    """config.databases (the configured ones first, then those engines need), each with the namespaces that use it."""
    used = {database: [] for database in config.databases}
    for facts in every:
        for use in facts.databases:
            for database in use.databases:
                if database not in used:
                    raise PlanError(f"{facts.name} needs database {database!r}, which the stack does not create")
                used[database].append(use.namespace)
    return tuple(PlannedDatabase(database, tuple(namespaces)) for database, namespaces in used.items())


def _check_buckets(config: StackConfig, consumers: tuple[BucketUse, ...]) -> None:
    missing = sorted({b for use in consumers for b in use.buckets} - set(config.object_store.buckets))
    if missing:
        raise PlanError(f"bucket consumers use buckets the stack does not create: {missing}")


def _node_ports(config: StackConfig, built: list[ComponentFacts]) -> dict[str, PlannedNodePort]:
    """Each configured NodePort whose component is in the stack (a NodePort of a component left out is unused)."""
    targets = {role: (facts.name, target) for facts in built for role, target in facts.node_ports.items()}
    return {
        role: PlannedNodePort(port, *targets[role])
        for role, port in sorted(config.node_ports.items())
        if role in targets
    }


def _flows(
    every: list[ComponentFacts],
    roles: set[str],
    consumers: tuple[BucketUse, ...],
    node_ports: Mapping[str, PlannedNodePort],
    scraped: bool,
) -> tuple[Flow, ...]:
    """Every flow the components declare, plus those the plan derives: database and bucket users to their stores,
    Prometheus to every namespace, the host to each NodePort's pods. Only into and from namespaces that exist."""
    flows = [flow for facts in every for flow in facts.flows]
    flows.append(postgres_cluster.client_flow(_unique(use.namespace for facts in every for use in facts.databases)))
    if object_store.NAMESPACE in roles:
        # MinIO serves its metrics on the S3 port: its scraper is one more user of it.
        scraper = (observability.NAMESPACE,) if scraped else ()
        flows.append(object_store.client_flow((*_unique(use.namespace for use in consumers), *scraper)))
    if any(facts.name == "observability" for facts in every):
        flows += [observability.scrape_flow(role) for role in sorted(roles - {observability.NAMESPACE})]
    flows += [
        Flow(f"node-port-{planned.node_port}", planned.target.namespace, (planned.target.port,), (ANYWHERE,))
        for planned in node_ports.values()
    ]
    existing = [
        replace(flow, sources=tuple(s for s in flow.sources if s in roles or s in (CLIENTS, ANYWHERE)))
        for flow in flows
        if flow.namespace in roles
    ]
    # A flow none of whose sources exist is dropped: a policy with an empty `from` admits every source.
    return tuple(flow for flow in existing if flow.sources)


def _egress(every: list[ComponentFacts], roles: set[str]) -> tuple[EgressLimit, ...]:
    """Each declared egress limit of a namespace that exists; a destination namespace that does not exist is left
    out, so the limit only ever narrows."""
    limits = [limit for facts in every for limit in facts.egress if limit.namespace in roles]
    return tuple(replace(limit, destinations=tuple(d for d in limit.destinations if d[0] in roles)) for limit in limits)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
