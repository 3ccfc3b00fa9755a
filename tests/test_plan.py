"""tools.plan: the capacity table and footprint of each stack, and the dev memory budget it enforces."""

from __future__ import annotations

from components.config import quantity_value
from tools.plan import DEV_CORE_BUDGET, DEV_TOTAL_BUDGET, budget_problems, claims, main, report, workloads
from tools.render import render_stack


def test_dev_fits_its_memory_budget(dev):
    _, totals = report("dev", dev)
    assert totals["core_memory_requests"] <= DEV_CORE_BUDGET
    assert totals["memory_requests"] <= DEV_TOTAL_BUDGET
    assert budget_problems("dev", totals) == []


def test_the_check_fails_a_dev_stack_over_budget(capsys):
    heavy = render_stack("dev", overrides={"mlops-platform:redis": {"resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "1Gi"}}}})
    _, totals = report("dev", heavy)
    problems = budget_problems("dev", totals)
    assert f"dev core memory requests {totals['core_memory_requests'] / 2**30:.2f}Gi exceed 1.0 GiB" in problems
    assert f"dev memory requests {totals['memory_requests'] / 2**30:.2f}Gi exceed 3.5 GiB" in problems
    assert main(["--stack", "dev", "--check"]) == 0
    out = capsys.readouterr().out
    assert "core (PostgreSQL, Redis, MinIO, MLflow, Temporal) memory requests" in out
    # Airflow's four processes and its statsd-exporter: 256 + 256 + 208 + 240 + 16 MiB.
    assert "airflow memory requests: 976Mi" in out


def test_every_claim_and_chart_claim_is_in_the_table(rendering):
    table = {c.claim: c for c in claims(rendering)}
    ours = {r.inputs["metadata"]["name"] for r in rendering.find_all(kind="PersistentVolumeClaim")}
    assert ours <= set(table)
    assert {"postgres-<n>", "prometheus-db", "alertmanager-db", "grafana", "loki-storage"} <= set(table)
    storage_class = rendering.find(kind="StorageClass").inputs["metadata"]["name"]
    assert {c.storage_class for c in table.values()} == {storage_class}
    _, totals = report(rendering.stack, rendering)
    assert totals["storage"] == sum(c.count * quantity_value(c.size) for c in table.values())


def test_workloads_count_replicas_and_every_observability_component(prod):
    items = {(w.component, w.name): w for w in workloads(prod)}
    assert items[("MLflow", "mlflow")].replicas == 2
    assert items[("PostgreSQL", "instance")].replicas == 3
    assert items[("Temporal", "history")].replicas == 2
    observability = {name for component, name in items if component == "Observability"}
    assert {"prometheus", "alertmanager", "grafana", "loki", "alloy", "kube-state-metrics"} <= observability
    # cert-manager (Vault's certificate, the backup plugin's) and the plugin set their resources: they are counted.
    assert {("cert-manager", "controller"), ("cert-manager", "webhook"), ("cert-manager", "cainjector")} <= set(items)
    assert ("CloudNativePG", "barman-cloud plugin") in items
    assert all(w.requests.get("memory") for w in items.values())
