"""Capacity plan of a stack, from what the program registers under mocks: every claim (component, claim, size,
class, purpose) with the total storage, and the CPU and memory requests and limits of every workload, including the
chart components whose resources we set.

    python -m tools.plan --stack dev            # print the plan
    python -m tools.plan --stack dev --check    # also fail when dev exceeds its memory budget
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from components.config import quantity_value
from components.observability import FOOTPRINT
from tools.render import Rendering, render_stack, unwrap_secrets

CORE = ("PostgreSQL", "Redis", "MinIO", "MLflow", "Temporal")
"""The platform's core services; dev's requests of these must stay within DEV_CORE_BUDGET."""
DEV_CORE_BUDGET = 1.0 * 2**30
# 2.5 GiB until Airflow (issue 15): its four processes request their measured idle PSS, 0.95 GiB together, so the
# goal for all of dev (core, observability, serving and Airflow) is 3.5 GiB.
DEV_TOTAL_BUDGET = 3.5 * 2**30
GiB = 2**30


@dataclass(frozen=True)
class Claim:
    component: str
    claim: str
    size: str
    storage_class: str
    purpose: str
    count: int = 1


@dataclass(frozen=True)
class Workload:
    component: str
    name: str
    replicas: int
    requests: Mapping[str, str]
    limits: Mapping[str, str]

    def total(self, kind: str, resource: str) -> float:
        amounts = self.requests if kind == "requests" else self.limits
        return self.replicas * quantity_value(amounts[resource]) if resource in amounts else 0.0


COMPONENT_OF_APP = {"airflow": "Airflow", "minio": "MinIO", "mlflow": "MLflow", "redis": "Redis", "temporal": "Temporal", "backups": "Backups"}
CLAIM_PURPOSE = {
    "minio-data": "every bucket's objects (dev object store)",
    "mlflow-data": "MLflow's SQLite database",
    "redis-data": "Valkey's append-only file",
    "temporal-data": "Temporal dev server's SQLite database",
}


def _summed(containers: list[dict], kind: str) -> dict[str, str]:
    total: dict[str, float] = {}
    for container in containers:
        for resource, amount in ((container.get("resources") or {}).get(kind) or {}).items():
            total[resource] = total.get(resource, 0.0) + quantity_value(str(amount))
    return {resource: repr(amount) for resource, amount in total.items()}


def _authored(rendering: Rendering) -> Iterator[Workload]:
    for resource in rendering.kubernetes_objects():
        if resource.kind not in ("Deployment", "StatefulSet"):
            continue
        manifest = unwrap_secrets(resource.inputs)
        containers = manifest["spec"]["template"]["spec"]["containers"]
        app = manifest["metadata"]["labels"]["app.kubernetes.io/name"]
        yield Workload(
            COMPONENT_OF_APP.get(app, app), manifest["metadata"]["name"], int(manifest["spec"].get("replicas", 1)),
            _summed(containers, "requests"), _summed(containers, "limits"),
        )


def _spec(component: str, name: str, replicas: int, resources: Mapping[str, Any]) -> Workload:
    return Workload(component, name, replicas, dict(resources.get("requests") or {}), dict(resources.get("limits") or {}))


def _releases(rendering: Rendering) -> dict[str, dict]:
    return {
        r.name: unwrap_secrets(r.inputs.get("values") or {})
        for r in rendering.resources
        if r.type.startswith("kubernetes:helm.sh/")
    }


def _charts(rendering: Rendering, nodes: int) -> Iterator[Workload]:
    releases = _releases(rendering)
    if "cnpg-chart" in releases:
        yield _spec("CloudNativePG", "operator", 1, releases["cnpg-chart"]["resources"])
    for cluster in rendering.find_all(kind="Cluster"):
        spec = unwrap_secrets(cluster.inputs)["spec"]
        yield _spec("PostgreSQL", "instance", int(spec["instances"]), spec["resources"])
    for store in rendering.find_all(type="kubernetes:barmancloud.cnpg.io/v1:ObjectStore"):
        sidecar = unwrap_secrets(store.inputs)["spec"].get("instanceSidecarConfiguration") or {}
        for cluster in rendering.find_all(kind="Cluster"):
            yield _spec("PostgreSQL", "barman-cloud sidecar", int(cluster.inputs["spec"]["instances"]), sidecar.get("resources") or {})
    if "temporal-chart" in releases:
        server = releases["temporal-chart"]["server"]
        for service in ("frontend", "history", "matching", "worker"):
            yield _spec("Temporal", service, int(server["replicaCount"]), server[service]["resources"])
    if "observability-metrics" in releases:
        metrics = releases["observability-metrics"]
        yield _spec("Observability", "prometheus", 1, metrics["prometheus"]["prometheusSpec"]["resources"])
        yield _spec("Observability", "alertmanager", 1, metrics["alertmanager"]["alertmanagerSpec"]["resources"])
        yield _spec("Observability", "config-reloaders (prometheus, alertmanager)", 2, FOOTPRINT["config-reloader"].as_k8s())
        yield _spec("Observability", "prometheus-operator", 1, metrics["prometheusOperator"]["resources"])
        yield _spec("Observability", "grafana", 1, metrics["grafana"]["resources"])
        yield _spec("Observability", "grafana sidecars (dashboards, datasources)", 2, metrics["grafana"]["sidecar"]["resources"])
        yield _spec("Observability", "kube-state-metrics", 1, metrics["kube-state-metrics"]["resources"])
        yield _spec("Observability", f"node-exporter (x{nodes} nodes)", nodes, metrics["prometheus-node-exporter"]["resources"])
    if "cert-manager-chart" in releases:
        certificates = releases["cert-manager-chart"]
        for part, resources in (("controller", certificates["resources"]), ("webhook", certificates["webhook"]["resources"]),
                                ("cainjector", certificates["cainjector"]["resources"])):
            yield _spec("cert-manager", part, 1, resources)
    if "cnpg-backup-barman-cloud" in releases:
        yield _spec("CloudNativePG", "barman-cloud plugin", 1, releases["cnpg-backup-barman-cloud"]["resources"])
    if "vault-chart" in releases:
        server = releases["vault-chart"]["server"]
        yield _spec("Vault", "server (raft peer)", int(server["ha"]["replicas"]), server["resources"])
        for sidecar in server.get("extraContainers") or []:
            yield _spec("Vault", f"{sidecar['name']} sidecar", int(server["ha"]["replicas"]), sidecar["resources"])
    if "secrets-operator" in releases:
        operator = releases["secrets-operator"]
        for part, resources in (("controller", operator["resources"]), ("webhook", operator["webhook"]["resources"]),
                                ("cert-controller", operator["certController"]["resources"])):
            yield _spec("External Secrets", part, 1, resources)
    if "front-door-envoy-gateway" in releases:
        controller = releases["front-door-envoy-gateway"]["deployment"]["envoyGateway"]
        yield _spec("Front door", "envoy-gateway controller", 1, controller["resources"])
    for proxy in rendering.find_all(type="kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"):
        deployment = unwrap_secrets(proxy.inputs)["spec"]["provider"]["kubernetes"]["envoyDeployment"]
        yield _spec("Front door", "envoy proxy", int(deployment["replicas"]), deployment["container"]["resources"])
    if "observability-logs" in releases:
        yield _spec("Observability", "loki", 1, releases["observability-logs"]["singleBinary"]["resources"])
    if "observability-log-shipper" in releases:
        shipper = releases["observability-log-shipper"]
        yield _spec("Observability", "alloy", 1, shipper["alloy"]["resources"])
        yield _spec("Observability", "alloy config-reloader", 1, shipper["configReloader"]["resources"])


UNSET = {
    "temporal-chart": "temporal web UI",
}
"""Chart components whose resources the program leaves at the chart's defaults."""


def unset(rendering: Rendering) -> list[str]:
    names = {r.name for r in rendering.resources if r.type.startswith("kubernetes:helm.sh/")}
    return [what for release, what in UNSET.items() if release in names]


def workloads(rendering: Rendering, nodes: int = 1) -> list[Workload]:
    return [*_authored(rendering), *_charts(rendering, nodes)]


def claims(rendering: Rendering) -> list[Claim]:
    found = []
    for resource in rendering.find_all(kind="PersistentVolumeClaim"):
        manifest = unwrap_secrets(resource.inputs)
        name = manifest["metadata"]["name"]
        app = manifest["metadata"]["labels"]["app.kubernetes.io/name"]
        found.append(Claim(
            COMPONENT_OF_APP.get(app, app), name, manifest["spec"]["resources"]["requests"]["storage"],
            manifest["spec"]["storageClassName"], CLAIM_PURPOSE.get(name, ""),
        ))
    for cluster in rendering.find_all(kind="Cluster"):
        spec = unwrap_secrets(cluster.inputs)["spec"]
        found.append(Claim("PostgreSQL", "postgres-<n>", spec["storage"]["size"], spec["storage"]["storageClass"],
                           "data directory and WAL of each instance", int(spec["instances"])))
    releases = _releases(rendering)
    if "observability-metrics" in releases:
        metrics = releases["observability-metrics"]
        for component, template, purpose in (
            ("prometheus", metrics["prometheus"]["prometheusSpec"]["storageSpec"], "metrics TSDB"),
            ("alertmanager", metrics["alertmanager"]["alertmanagerSpec"]["storage"], "silences and notification log"),
        ):
            spec = template["volumeClaimTemplate"]["spec"]
            found.append(Claim("Observability", f"{component}-db", spec["resources"]["requests"]["storage"], spec["storageClassName"], purpose))
        grafana = metrics["grafana"]["persistence"]
        found.append(Claim("Observability", "grafana", grafana["size"], grafana["storageClassName"], "Grafana's database"))
    if "vault-chart" in releases:
        server = releases["vault-chart"]["server"]
        replicas = int(server["ha"]["replicas"])
        for claim, purpose in (("dataStorage", "raft data of each server"), ("auditStorage", "audit log of each server")):
            spec = server[claim]
            found.append(Claim("Vault", f"{claim[:-7]}-vault-<n>", spec["size"], spec["storageClass"], purpose, replicas))
    if "observability-logs" in releases:
        loki = releases["observability-logs"]
        persistence = loki["singleBinary"]["persistence"]
        purpose = "log chunks and index" if loki["loki"]["storage"]["type"] == "filesystem" else "Loki WAL and caches (chunks in the bucket)"
        found.append(Claim("Observability", "loki-storage", persistence["size"], persistence["storageClass"], purpose))
    return found


def _fmt_memory(value: float) -> str:
    return f"{value / 2**20:.0f}Mi" if value < GiB else f"{value / GiB:.2f}Gi"


def _fmt_cpu(value: float) -> str:
    return f"{value * 1000:.0f}m"


def report(stack: str, rendering: Rendering, nodes: int = 1) -> tuple[str, dict[str, float]]:
    lines = [f"# Capacity plan: stack {stack}", "", "## Storage", ""]
    header = f"{'component':<15}{'claim':<16}{'size':>7}  {'x':>2}  {'class':<20}purpose"
    lines += [header, "-" * len(header)]
    total_storage = 0.0
    for claim in claims(rendering):
        total_storage += claim.count * quantity_value(claim.size)
        lines.append(f"{claim.component:<15}{claim.claim:<16}{claim.size:>7}  {claim.count:>2}  {claim.storage_class:<20}{claim.purpose}")
    lines += ["", f"total storage: {total_storage / GiB:.0f}Gi", "", "## Workloads (steady state; backup CronJobs run briefly)", ""]
    header = f"{'component':<15}{'workload':<44}{'n':>2}  {'cpu req':>8}{'cpu lim':>8}{'mem req':>9}{'mem lim':>9}"
    lines += [header, "-" * len(header)]
    items = workloads(rendering, nodes)
    for item in items:
        lines.append(
            f"{item.component:<15}{item.name:<44}{item.replicas:>2}  "
            f"{_fmt_cpu(item.total('requests', 'cpu')):>8}{_fmt_cpu(item.total('limits', 'cpu')):>8}"
            f"{_fmt_memory(item.total('requests', 'memory')):>9}{_fmt_memory(item.total('limits', 'memory')):>9}"
        )
    totals = {
        "storage": total_storage,
        "cpu_requests": sum(i.total("requests", "cpu") for i in items),
        "memory_requests": sum(i.total("requests", "memory") for i in items),
        "memory_limits": sum(i.total("limits", "memory") for i in items),
        "core_memory_requests": sum(i.total("requests", "memory") for i in items if i.component in CORE),
        "observability_memory_requests": sum(i.total("requests", "memory") for i in items if i.component == "Observability"),
        "airflow_memory_requests": sum(i.total("requests", "memory") for i in items if i.component == "Airflow"),
    }
    lines += [
        "",
        f"requests: cpu {_fmt_cpu(totals['cpu_requests'])}, memory {_fmt_memory(totals['memory_requests'])}; "
        f"memory limits {_fmt_memory(totals['memory_limits'])}",
        f"core ({', '.join(CORE)}) memory requests: {_fmt_memory(totals['core_memory_requests'])}",
        f"observability memory requests: {_fmt_memory(totals['observability_memory_requests'])}",
        # KubernetesExecutor task pods come and go with the tasks: not in this steady-state sum.
        f"airflow memory requests: {_fmt_memory(totals['airflow_memory_requests'])}",
    ]
    if unset(rendering):
        lines.append(f"not counted (chart defaults, not set by us): {', '.join(unset(rendering))}")
    return "\n".join(lines), totals


def budget_problems(stack: str, totals: Mapping[str, float]) -> list[str]:
    """Dev must fit a laptop: core services within 1.0 GiB of requests, everything within 3.5 GiB."""
    if stack != "dev":
        return []
    problems = []
    if totals["core_memory_requests"] > DEV_CORE_BUDGET:
        problems.append(f"dev core memory requests {_fmt_memory(totals['core_memory_requests'])} exceed 1.0 GiB")
    if totals["memory_requests"] > DEV_TOTAL_BUDGET:
        problems.append(f"dev memory requests {_fmt_memory(totals['memory_requests'])} exceed 3.5 GiB")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name (Pulumi.<stack>.yaml)")
    parser.add_argument("--nodes", type=int, default=1, help="nodes that run a node-exporter each (default 1)")
    parser.add_argument("--check", action="store_true", help="fail when dev exceeds its memory budget")
    options = parser.parse_args(argv)
    text, totals = report(options.stack, render_stack(options.stack), options.nodes)
    print(text)
    problems = budget_problems(options.stack, totals) if options.check else []
    for problem in problems:
        print(f"plan: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
