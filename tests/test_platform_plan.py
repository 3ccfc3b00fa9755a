"""The platform plan, a pure function of the typed config: plain asserts, no Pulumi mocks, no resources."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Mapping

import pulumi
import pytest
import yaml

from components import (
    airflow,
    mlflow_server,
    model_serving,
    object_store,
    observability,
    plan,
    postgres_cluster,
    redis,
    temporal_stack,
)
from components.config import NODE_PORT_ROLES, parse_stack_config
from components.facts import ANYWHERE, CLIENTS, ComponentFacts, NamespaceFact, PodSecurity
from components.plan import PlanError, PlatformPlan, platform_plan
from tools.render import ROOT

SEED_PORTS = {
    "minioApi": 30900, "minioConsole": 30901, "mlflow": 30500, "postgres": 30543, "redis": 30679,
    "temporalGrpc": 30700, "temporalUi": 30233, "prometheus": 30090, "grafana": 30030, "loki": 30100, "serving": 30800,
    "airflow": 30808,
}


def stack_plan(stack: str, **overrides) -> PlatformPlan:
    """The plan of a stack file, with some blocks replaced; secret settings only need to be present."""
    settings = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    raw = {key.split(":", 1)[1]: value for key, value in settings.items()}
    raw.update(overrides)
    if raw.get("secrets", {}).get("store") == "vault":
        raw.setdefault("vaultToken", "set")
    if (raw.get("frontDoor") or {}).get("enabled"):
        raw.setdefault("oidcClientSecret", "set")
    return platform_plan(parse_stack_config(stack, raw))


@pytest.fixture(scope="module")
def dev() -> PlatformPlan:
    return stack_plan("dev")


@pytest.fixture(scope="module")
def prod() -> PlatformPlan:
    return stack_plan("prod")


def flow(planned: PlatformPlan, name: str, namespace: str):
    (found,) = [f for f in planned.flows if f.name == name and f.namespace == namespace]
    return found


def consumers(planned: PlatformPlan) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {use.consumer: (use.namespace, use.buckets) for use in planned.bucket_consumers}


# --- What the stack contains, in which order ---------------------------------------------------------------------


def test_components_come_in_dependency_order(dev, prod):
    assert dev.components == (
        "cluster", "network", "observability", "objects", "cnpg", "postgres", "redis", "mlflow", "serving", "temporal",
        "airflow", "backups", "monitoring",
    )
    # prod serves no model yet (Pulumi.prod.yaml says why), so it has no serving component.
    # prod: Vault and its secret sync first; Loki keeps its chunks in S3, so observability follows the store; the
    # front door after every service it publishes.
    assert prod.components == (
        "cluster", "cert-manager", "vault", "network", "secrets", "objects", "observability", "cnpg", "cnpg-backup", "postgres", "redis",
        "mlflow", "temporal", "airflow", "front-door", "backups", "monitoring",
    )
    assert dev.observability_first and not prod.observability_first


def test_without_observability_nothing_is_monitored_and_no_monitoring_is_built():
    planned = stack_plan("dev", observability={"enabled": False})
    assert not planned.has("observability") and not planned.has("monitoring")
    assert planned.monitored == ()
    assert "observability" not in planned.namespaces
    assert not [f for f in planned.flows if f.name == "prometheus-scrape"]


def test_installing_vault_builds_vault_alone_in_closed_namespaces():
    vault = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["mlops-platform:vault"]
    planned = stack_plan("prod", vault={**vault, "phase": "install"})
    assert planned.installing_vault
    # cert-manager too, before Vault: it issues the certificate Vault's listener serves.
    assert planned.components == ("cluster", "cert-manager", "vault", "network")
    assert list(planned.namespaces) == ["cert-manager", "vault", "external-secrets"]
    assert planned.bucket_consumers == () and planned.backups == {} and planned.monitored == ()
    # Prometheus does not exist yet: no scrape flow, whose empty `from` would admit everything.
    assert {f.name for f in planned.flows} == {"vault-readers", "external-secrets-webhook", "cert-manager-webhook"}


# --- Namespaces and Pod Security ---------------------------------------------------------------------------------


def test_namespaces_are_prefixed_and_restricted_unless_a_component_says_why_not(dev, prod):
    assert dev.namespace_names() == {
        role: f"mlops-{role}"
        for role in ("storage", "mlflow", "data", "temporal", "cnpg", "observability", "node-metrics", "serving", "airflow")
    }
    assert "serving" not in prod.namespaces
    levels = {role: ns.pod_security.level for p in (dev, prod) for role, ns in p.namespaces.items()}
    assert {role: level for role, level in levels.items() if level != "restricted"} == {"node-metrics": "privileged"}
    for role in ("observability", "vault", "external-secrets"):
        assert "tests/test_charts.py" in prod.namespaces[role].pod_security.reason
    for p in (dev, prod):
        assert all(len(ns.pod_security.reason) > 20 for ns in p.namespaces.values())
    assert "node-exporter" in prod.namespaces["node-metrics"].pod_security.reason


def test_components_that_disagree_on_a_namespace_level_are_a_plan_error(monkeypatch):
    def noisy_redis(config):
        return ComponentFacts("redis", namespaces=(NamespaceFact("data", PodSecurity("baseline", "it says so")),))

    monkeypatch.setitem(plan.FACTS, "redis", noisy_redis)
    with pytest.raises(PlanError, match="'data'"):
        stack_plan("dev")


# --- Buckets, databases, backups, monitoring ---------------------------------------------------------------------


def test_each_consumer_gets_only_the_buckets_it_needs(dev, prod):
    assert consumers(dev) == {
        "mlflow": ("mlflow", ("mlflow-artifacts",)),
        # Airflow's task logs: its own bucket and nothing else.
        "airflow": ("airflow", ("airflow-logs",)),
        "postgres-backup": ("data", ("backups",)),
        # SQLite is copied by a job that mounts MLflow's claim, so it runs beside MLflow.
        "mlflow-backup": ("mlflow", ("backups",)),
        # MinIO has no versioning: every bucket is mirrored.
        "object-mirror": ("data", dev.buckets),
    }
    assert consumers(prod) == {
        "loki": ("observability", ("logs",)),
        "mlflow": ("mlflow", ("mlflow-artifacts",)),
        "airflow": ("airflow", ("airflow-logs",)),
        "postgres-backup": ("data", ("backups",)),
        "vault-backup": ("vault", ("backups",)),
    }


def test_with_mlflow_on_postgres_the_plan_has_its_databases_and_a_flow_to_postgres():
    planned = stack_plan("dev", mlflow={"engine": "postgres", "auth": True})
    databases = {d.name: d.consumers for d in planned.databases}
    assert databases["mlflow"] == ("mlflow",) and databases["mlflow_auth"] == ("mlflow",)
    postgres = flow(planned, "postgres-clients", "data")
    assert "mlflow" in postgres.sources and postgres.ports == (postgres_cluster.PORT,) == (5432,)
    assert postgres.pods == {"cnpg.io/cluster": "postgres"}


def test_a_migration_from_sqlite_needs_nothing_the_postgres_engine_does_not_declare(dev):
    """The migration Job runs in MLflow's namespace and reaches PostgreSQL as the server does: the client flow admits
    every pod of the namespace. It uses no bucket, and the SQLite backup ends with the SQLite server."""
    mlflow = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["mlops-platform:mlflow"]
    planned = stack_plan("dev", mlflow={**mlflow, "engine": "postgres", "migrateFrom": "sqlite"})
    on_postgres = stack_plan("dev", mlflow={**mlflow, "engine": "postgres"})
    assert planned.config.mlflow.migrate_from == "sqlite"
    assert dataclasses.replace(planned, config=on_postgres.config) == on_postgres
    postgres = flow(planned, "postgres-clients", "data")
    assert mlflow_server.NAMESPACE in postgres.sources and postgres.source_pods == {}
    assert "mlflow-sqlite" in dev.backups and "mlflow-sqlite" not in planned.backups
    assert consumers(planned)["mlflow"] == consumers(dev)["mlflow"]


def test_prod_databases_keep_the_configured_ones_first_and_know_their_consumers(prod):
    assert [(d.name, d.consumers) for d in prod.databases] == [
        ("platform", ()), ("users", ()), ("labeler", ()),
        ("temporal", ("temporal",)), ("temporal_visibility", ("temporal",)),
        ("mlflow", ("mlflow",)), ("mlflow_auth", ("mlflow",)), ("airflow", ("airflow",)),
    ]
    assert flow(prod, "postgres-clients", "data").sources == ("mlflow", "temporal", "airflow", CLIENTS)


def test_dev_databases_are_the_configured_ones_and_airflows(dev):
    assert [(d.name, d.consumers) for d in dev.databases] == [
        ("platform", ()), ("users", ()), ("labeler", ()), ("airflow", ("airflow",)),
    ]
    assert flow(dev, "postgres-clients", "data").sources == ("airflow", CLIENTS)
    without = stack_plan("dev", airflow={"enabled": False})
    assert [d.name for d in without.databases] == ["platform", "users", "labeler"]
    assert "airflow" not in without.namespaces and not without.has("airflow") and "airflow" not in without.node_ports


def test_what_is_backed_up(dev, prod):
    assert list(dev.backups) == ["postgres-logical", "mlflow-sqlite", "objects-mirror"]
    # S3 versioning undoes deletes (no mirror); Vault's raft snapshots; continuous archiving is its own component.
    assert list(prod.backups) == ["postgres-logical", "vault-snapshot"]
    assert prod.has("cnpg-backup") and not dev.has("cnpg-backup")
    r2 = stack_plan("prod", objectStore={"engine": "r2", "accountId": "0" * 32, "bucketPrefix": "acme", "buckets": ["backups", "mlflow-artifacts", "logs", "airflow-logs"]},
                    vault={"autoUnseal": False}, r2AccessKeyId="i", r2SecretAccessKey="k", cloudflareApiToken="t")
    assert "objects-mirror" in r2.backups


def test_what_is_monitored(dev, prod):
    assert dev.monitored == ("objects", "postgres", "mlflow", "serving", "temporal", "airflow")
    assert prod.monitored == ("cert-manager", "vault", "postgres", "mlflow", "temporal", "airflow")


# --- Flows and NodePorts -----------------------------------------------------------------------------------------


def test_the_dev_plan_exposes_exactly_the_seed_port_map(dev):
    assert {role: planned.node_port for role, planned in dev.node_ports.items()} == SEED_PORTS
    assert set(dev.node_ports) == set(NODE_PORT_ROLES)
    targets = {role: (p.target.namespace, p.target.port) for role, p in dev.node_ports.items()}
    assert targets == {
        "minioApi": ("storage", object_store.S3_PORT), "minioConsole": ("storage", object_store.CONSOLE_PORT),
        "mlflow": ("mlflow", mlflow_server.PORT), "postgres": ("data", postgres_cluster.PORT), "redis": ("data", redis.PORT),
        "temporalGrpc": ("temporal", temporal_stack.GRPC_PORT), "temporalUi": ("temporal", temporal_stack.UI_PORT),
        "prometheus": ("observability", observability.PROMETHEUS_PORT),
        "grafana": ("observability", observability.GRAFANA_PORT), "loki": ("observability", observability.LOKI_PORT),
        "serving": ("serving", model_serving.PORT), "airflow": ("airflow", airflow.API_PORT),
    }
    node_port_flows = {f.name: (f.namespace, f.ports, f.sources) for f in dev.flows if f.name.startswith("node-port-")}
    assert node_port_flows == {
        f"node-port-{SEED_PORTS[role]}": (namespace, (port,), (ANYWHERE,)) for role, (namespace, port) in targets.items()
    }
    assert targets["mlflow"] == ("mlflow", 5000) and targets["grafana"] == ("observability", 3000)


def test_only_model_serving_limits_its_egress_to_mlflow(dev, prod):
    assert [(limit.namespace, limit.destinations) for limit in dev.egress] == [("serving", (("mlflow", mlflow_server.PORT),))]
    assert prod.egress == ()
    assert flow(dev, "mlflow-model-serving", "mlflow").sources == ("serving",)
    assert flow(dev, "serving-clients", "serving").ports == (model_serving.PORT,)


def test_airflow_reaches_mlflow_and_its_clients_reach_the_api_server(dev, prod):
    for planned in (dev, prod):
        # The example DAG logs its run and registers its model in MLflow.
        assert flow(planned, "mlflow-airflow", "mlflow").sources == ("airflow",)
        assert flow(planned, "mlflow-airflow", "mlflow").ports == (mlflow_server.PORT,)
        assert flow(planned, "airflow-clients", "airflow").ports == (airflow.API_PORT,)
        assert "airflow" in flow(planned, "postgres-clients", "data").sources
    assert dev.node_port("airflow") == 30808 and prod.node_port("airflow") is None


def test_prod_exposes_no_node_port(prod):
    assert prod.node_ports == {}
    assert not [f for f in prod.flows if f.name.startswith("node-port-")]


def test_a_node_port_of_a_component_the_stack_leaves_out_is_unused():
    planned = stack_plan("dev", observability={"enabled": False})
    assert set(planned.node_ports) == set(SEED_PORTS) - {"prometheus", "grafana", "loki"}
    assert "node-port-30090" not in {f.name for f in planned.flows}


def test_the_temporal_chart_engine_has_no_node_ports_and_so_no_flows_from_anywhere():
    planned = stack_plan("dev", temporal={"engine": "chart"})
    assert not {"temporalGrpc", "temporalUi"} & set(planned.node_ports)
    assert not [f for f in planned.flows if f.namespace == "temporal" and ANYWHERE in f.sources]


def test_the_s3_api_admits_the_namespaces_of_its_consumers_and_prometheus(dev):
    assert flow(dev, "s3-clients", "storage").sources == ("mlflow", "airflow", "data", "observability", CLIENTS)
    with_vault = stack_plan("dev", secrets={"store": "vault"}, vault={"phase": "configure"})
    assert flow(with_vault, "s3-clients", "storage").sources == ("mlflow", "airflow", "data", "vault", "observability", CLIENTS)


def test_every_flow_connects_namespaces_that_exist(dev, prod):
    for planned in (dev, prod, stack_plan("dev", observability={"enabled": False})):
        for f in planned.flows:
            assert f.namespace in planned.namespaces, f
            assert f.sources and set(f.sources) <= {*planned.namespaces, CLIENTS, ANYWHERE}, f


def test_prod_flows(prod):
    names = {(f.name, f.namespace) for f in prod.flows}
    assert {("vault-readers", "vault"), ("external-secrets-webhook", "external-secrets"), ("cert-manager-webhook", "cert-manager"),
            ("cnpg-webhook", "cnpg"), ("operator-webhook", "observability"), ("mlflow-clients", "mlflow")} <= names
    # No ingress controller's namespace any more: the front door's proxy pods, and only they, reach the published UIs.
    assert flow(prod, "mlflow-clients", "mlflow").sources == ("clients",)
    door = flow(prod, "front-door-mlflow", "mlflow")
    assert door.sources == ("gateway",) and door.ports == (5000,)
    assert door.source_pods == {
        "app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy", "app.kubernetes.io/managed-by": "envoy-gateway",
    }
    scraped = {f.namespace for f in prod.flows if f.name == "prometheus-scrape"}
    assert scraped == set(prod.namespaces) - {"observability"}
    assert "s3-clients" not in {f.name for f in prod.flows}


# --- Purity ------------------------------------------------------------------------------------------------------


def _values(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _values(getattr(value, item.name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from _values(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _values(item)
    else:
        yield value


def test_the_plan_is_plain_data(dev, prod):
    for planned in (dev, prod):
        leaves = list(_values(dataclasses.replace(planned, config=None)))
        assert all(isinstance(v, (str, int, bool, type(None))) for v in leaves), {type(v) for v in leaves}
        assert not any(isinstance(v, (pulumi.Output, pulumi.Resource)) for v in leaves)


def test_making_a_plan_imports_no_cloud_sdk():
    code = (
        "import json, sys, yaml; from components.config import parse_stack_config; from components.plan import platform_plan;"
        "raw = {k.split(':', 1)[1]: v for k, v in yaml.safe_load(open('Pulumi.prod.yaml'))['config'].items()};"
        "platform_plan(parse_stack_config('prod', {**raw, 'vaultToken': 'x', 'oidcClientSecret': 'x'}));"
        "print(json.dumps(sorted(m for m in ('pulumi_aws', 'pulumi_cloudflare', 'pulumi_vault') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
