"""End to end on Kind: Prometheus scrapes the platform and loaded its alerts, Grafana logs in with the generated
password and has the dashboards and the Loki datasource, Loki holds the platform's logs, and the NetworkPolicies
admit a labelled client namespace to PostgreSQL while refusing an unlabelled one.
Skips, saying why, without a reachable Kind cluster.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.e2e.kind import kubectl, needs_kind

pytestmark = needs_kind
PROMETHEUS = "http://localhost:30090"
GRAFANA = "http://localhost:30030"
LOKI = "http://localhost:30100"
PROBE_IMAGE = "busybox:1.37.0"


def get_json(url: str, headers: dict | None = None) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=15) as response:
        return json.loads(response.read())


def eventually(check, timeout: float = 600, every: float = 10):
    """The first truthy result of `check`, retried until `timeout` (pods, scrapes and log shipping take a while)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout}s: {check.__doc__ or check}")
        time.sleep(every)


def prometheus_query(query: str) -> list[dict]:
    return get_json(f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode({'query': query})}")["data"]["result"]


def test_prometheus_scrapes_mlflow_postgres_and_temporal(platform):
    for query in ('up{namespace="mlops-mlflow", service="mlflow"}', 'cnpg_collector_up{namespace="mlops-data"}', 'up{namespace="mlops-temporal"}'):
        def scraped(query=query):
            """the target answers"""
            return any(sample["value"][1] == "1" for sample in prometheus_query(query))

        eventually(scraped)


def test_prometheus_loaded_the_platform_alerts(platform):
    def loaded():
        """the mlops rule groups are loaded"""
        groups = get_json(f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
        return {rule["name"] for group in groups if group["name"].startswith("mlops-") for rule in group["rules"]}

    names = eventually(loaded)
    assert {"PVCAlmostFull", "PVCFillingSoon", "BackupStale", "BackupJobFailed", "MlflowDown"} <= names


def grafana_auth() -> dict:
    password = base64.b64decode(
        kubectl("-n", "mlops-observability", "get", "secret", "grafana-admin", "-o", "jsonpath={.data.admin-password}").stdout
    ).decode()
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_grafana_has_the_dashboards_and_the_loki_datasource(platform):
    auth = grafana_auth()
    titles = eventually(lambda: {d["title"] for d in get_json(f"{GRAFANA}/api/search?query=MLOps", auth)} or None)
    assert {"MLOps / Storage", "MLOps / Backups", "MLOps / Services"} <= titles
    assert "loki" in {d["type"] for d in get_json(f"{GRAFANA}/api/datasources", auth)}
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{GRAFANA}/api/datasources", {"Authorization": "Basic " + base64.b64encode(b"admin:prom-operator").decode()})
    assert refused.value.code == 401


def test_loki_holds_the_platform_logs(platform):
    def streams():
        """Loki returns log lines of the mlflow namespace"""
        query = urllib.parse.urlencode({"query": '{namespace="mlops-mlflow"}', "limit": "5"})
        return get_json(f"{LOKI}/loki/api/v1/query_range?{query}")["data"]["result"]

    assert eventually(streams)


def reaches_postgres(namespace: str) -> bool:
    pod = f"probe-{uuid.uuid4().hex[:6]}"
    result = kubectl(
        "-n", namespace, "run", pod, "--rm", "-i", "--restart=Never", f"--image={PROBE_IMAGE}", "--",
        "nc", "-z", "-w", "5", "postgres-rw.mlops-data.svc.cluster.local", "5432",
        timeout=180, check=False,
    )
    return result.returncode == 0


def test_only_labelled_namespaces_reach_postgres(platform):
    namespace = f"e2e-client-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    try:
        assert not reaches_postgres(namespace)
        kubectl("label", "namespace", namespace, "mlops.platform/client=true")
        assert reaches_postgres(namespace)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
