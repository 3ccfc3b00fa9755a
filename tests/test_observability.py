"""ObservabilityStack: the three releases, their values against the pinned charts, what Prometheus scrapes, and
how Grafana's and Alertmanager's secrets are handled."""

from __future__ import annotations

import json

import pytest
import yaml

from components.observability import ALERTMANAGER_CONFIG_SECRET, FOOTPRINT, GRAFANA_ADMIN_SECRET, retention_size
from components.versions import CHARTS
from tests.support import containers, secret_data, workloads
from tools.reference import chart_values, reference_dir, unknown_values_keys
from tools.render import ROOT, is_secret, render_stack

PROD_OBSERVABILITY = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["mlops-platform:observability"]
RELEASES = {"metrics": "kube-prometheus-stack", "logs": "loki", "log-shipper": "alloy"}
needs_reference = pytest.mark.skipif(reference_dir() is None, reason="../shared/reference (chart values) is not beside this checkout")

# Keys the pinned charts document only in comments of their values.yaml, which the chart templates read.
COMMENTED_KEYS = {
    "kube-prometheus-stack": {"alertmanager.alertmanagerSpec.configSecret"},
    "loki": {"loki.storage.bucketNames"},
}
# Loki's own configuration blocks, which the chart renders verbatim into loki.yaml (its defaults list a few keys).
LOKI_CONFIG_KEYS = {"loki.limits_config.retention_period"}
# kube-prometheus-stack passes these sections to its subcharts (grafana 12.11.1, kube-state-metrics 8.4.0,
# prometheus-node-exporter 4.56.1), whose own values.yaml files are not in ../shared/reference: the keys below are
# theirs, so only they are exempt, and each is named.
SUBCHART_KEYS = {
    "grafana.resources",
    "grafana.persistence",
    "grafana.deploymentStrategy",
    "grafana.initChownData",
    "grafana.sidecar.resources",
    "grafana.service.type",
    "grafana.service.nodePort",
    # With the front door: Grafana's own generic OAuth (grafana.ini) and its client secret from a Secret.
    "grafana.grafana.ini",
    "grafana.envValueFrom",
    "kube-state-metrics.resources",
    "prometheus-node-exporter.resources",
}


def release(rendering, role: str):
    return rendering.find(type="kubernetes:helm.sh/v3:Release", name=f"observability-{role}")


def values(rendering, role: str) -> dict:
    return release(rendering, role).inputs["values"]


@pytest.mark.parametrize("role", sorted(RELEASES))
def test_each_release_is_its_pinned_chart_in_the_observability_namespace(rendering, role):
    found = release(rendering, role)
    chart = CHARTS[RELEASES[role]]
    assert (found.inputs["chart"], found.inputs["version"]) == (chart.name, chart.version)
    assert found.inputs["repositoryOpts"]["repo"] == chart.repository
    assert found.inputs["namespace"] == "mlops-observability"


def test_loki_comes_from_grafana_community_and_logs_are_shipped_by_alloy_not_promtail(dev):
    assert CHARTS["loki"].repository == "https://grafana-community.github.io/helm-charts"
    charts = {r.inputs["chart"] for r in dev.find_all(type="kubernetes:helm.sh/v3:Release")}
    assert "alloy" in charts and "promtail" not in charts


@needs_reference
@pytest.mark.parametrize("role", sorted(RELEASES))
def test_every_values_key_exists_in_the_pinned_chart(rendering, role):
    chart = RELEASES[role]
    reference = chart_values(chart, CHARTS[chart].version)
    unknown = set(unknown_values_keys(values(rendering, role), reference))
    assert unknown - COMMENTED_KEYS.get(chart, set()) - SUBCHART_KEYS - LOKI_CONFIG_KEYS == set()


@needs_reference
def test_the_values_check_would_catch_a_typo(dev):
    reference = chart_values("kube-prometheus-stack", CHARTS["kube-prometheus-stack"].version)
    typo = {"prometheus": {"prometheusSpec": {"retension": "7d"}}}
    assert unknown_values_keys(typo, reference) == ["prometheus.prometheusSpec.retension"]


@needs_reference
def test_commented_keys_really_are_documented_by_the_chart():
    for chart, keys in COMMENTED_KEYS.items():
        text = (reference_dir() / "charts" / chart / CHARTS[chart].version / "values.yaml").read_text()
        for key in keys:
            assert f"# {key.rsplit('.', 1)[-1]}:" in text, key


def test_the_operator_webhook_hooks_run_because_the_release_is_helm_v3(rendering):
    metrics = values(rendering, "metrics")
    assert "admissionWebhooks" in metrics["prometheusOperator"]
    assert metrics["prometheusOperator"]["admissionWebhooks"].get("enabled", True) is not False


def test_prometheus_keeps_its_tsdb_on_a_retained_claim_with_retention_from_config(renderings):
    for stack, retention, size in (("dev", "3d", "5Gi"), ("prod", "30d", "100Gi")):
        spec = values(renderings[stack], "metrics")["prometheus"]["prometheusSpec"]
        assert spec["retention"] == retention
        assert spec["retentionSize"] == retention_size(size)
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["resources"]["requests"]["storage"] == size
        assert claim["storageClassName"] == renderings[stack].find(kind="StorageClass").metadata["name"]
    assert retention_size("5Gi") == "4096MB"


def test_prometheus_picks_up_monitors_and_rules_from_every_namespace(rendering):
    spec = values(rendering, "metrics")["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False


def test_grafana_admin_is_generated_into_a_secret_and_never_in_values(rendering):
    grafana = values(rendering, "metrics")["grafana"]
    assert grafana["admin"] == {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"}
    assert "adminPassword" not in grafana
    data = secret_data(rendering, "mlops-observability", GRAFANA_ADMIN_SECRET)
    assert data["admin-user"] == "admin"
    assert len(data["admin-password"]) == 32 and data["admin-password"] not in ("prom-operator", "admin")
    password = rendering.find(type="random:index/randomPassword:RandomPassword", name="observability-grafana-admin-password")
    assert password.inputs["length"] == 32
    dumped = json.dumps(values(rendering, "metrics"), default=str)
    assert data["admin-password"] not in dumped and "prom-operator" not in dumped


def test_grafana_keeps_its_database_on_a_retained_claim_and_is_recreated(rendering):
    grafana = values(rendering, "metrics")["grafana"]
    assert grafana["persistence"]["enabled"] is True
    assert grafana["persistence"]["storageClassName"] == rendering.find(kind="StorageClass").metadata["name"]
    assert grafana["deploymentStrategy"] == {"type": "Recreate"}
    assert grafana["initChownData"] == {"enabled": False}


def test_grafana_provisions_loki_beside_the_default_prometheus_datasource(rendering):
    grafana = values(rendering, "metrics")["grafana"]
    (loki,) = grafana["additionalDataSources"]
    assert (loki["type"], loki["uid"]) == ("loki", "loki")
    assert loki["url"] == "http://loki.mlops-observability.svc.cluster.local:3100"
    assert grafana.get("sidecar", {}).get("datasources", {}).get("defaultDatasourceEnabled", True) is True


def test_alertmanager_reads_its_whole_config_from_our_secret_with_a_null_receiver_by_default(rendering):
    spec = values(rendering, "metrics")["alertmanager"]["alertmanagerSpec"]
    assert spec["useExistingSecret"] is True and spec["configSecret"] == ALERTMANAGER_CONFIG_SECRET
    assert "config" not in values(rendering, "metrics")["alertmanager"]
    config = yaml.safe_load(secret_data(rendering, "mlops-observability", ALERTMANAGER_CONFIG_SECRET)["alertmanager.yaml"])
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["platform"] == {"name": "platform"}  # receiver: none notifies nobody
    assert config["route"]["receiver"] == "platform"


def test_a_webhook_receiver_url_is_a_secret_that_reaches_only_the_alertmanager_secret():
    url = "https://hooks.example.com/services/T000/B000/very-secret-token"
    rendering = render_stack(
        "prod",
        overrides={
            "mlops-platform:observability": {**PROD_OBSERVABILITY, "alerting": {"receiver": "slack", "slackChannel": "#mlops-alerts"}},
            "mlops-platform:alertmanagerReceiverUrl": url,
        },
    )
    # prod keeps it in Vault: the one resource holding the URL is the KV secret the Secret is synced from.
    (secret,) = [r for r in rendering.find_all(type="vault:kv/secretV2:SecretV2") if r.inputs["name"].endswith(f"/{ALERTMANAGER_CONFIG_SECRET}")]
    assert is_secret(secret.inputs["dataJson"])
    config = yaml.safe_load(secret_data(rendering, "mlops-observability", ALERTMANAGER_CONFIG_SECRET)["alertmanager.yaml"])
    slack = {r["name"]: r for r in config["receivers"]}["platform"]["slack_configs"][0]
    assert (slack["api_url"], slack["channel"]) == (url, "#mlops-alerts")
    everything_else = [r for r in rendering.resources if r is not secret]
    assert url not in json.dumps([r.inputs for r in everything_else], default=str)


def test_loki_is_monolithic_without_caches_canary_or_gateway_and_keeps_its_claim(rendering):
    loki = values(rendering, "logs")
    assert loki["deploymentMode"] == "Monolithic"
    assert loki["singleBinary"]["replicas"] == 1
    assert {loki[t]["replicas"] for t in ("read", "write", "backend")} == {0}
    for part in ("chunksCache", "resultsCache", "lokiCanary", "gateway", "test", "minio"):
        assert loki[part]["enabled"] is False, part
    persistence = loki["singleBinary"]["persistence"]
    assert (persistence["whenDeleted"], persistence["whenScaled"]) == ("Retain", "Retain")
    assert persistence["storageClass"] == rendering.find(kind="StorageClass").metadata["name"]
    config = loki["loki"]
    (period,) = config["schemaConfig"]["configs"]
    assert (period["store"], period["schema"]) == ("tsdb", "v13")
    assert config["compactor"]["retention_enabled"] is True


def test_dev_loki_uses_its_filesystem_and_prod_loki_the_logs_bucket_with_secret_credentials(dev, prod):
    dev_loki = values(dev, "logs")
    assert dev_loki["loki"]["storage"] == {"type": "filesystem"}
    assert dev_loki["loki"]["limits_config"]["retention_period"] == "168h"
    prod_loki = values(prod, "logs")
    storage = prod_loki["loki"]["storage"]
    assert storage["type"] == "s3"
    assert set(storage["bucketNames"].values()) == {"acme-mlops-prod-logs"}
    assert storage["s3"]["endpoint"] == "s3.eu-central-1.amazonaws.com"
    assert "accessKeyId" not in storage["s3"] and "secretAccessKey" not in storage["s3"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in prod_loki["singleBinary"]["extraEnv"]}
    assert env == {
        "AWS_ACCESS_KEY_ID": {"name": "loki-s3-credentials", "key": "AWS_ACCESS_KEY_ID"},
        "AWS_SECRET_ACCESS_KEY": {"name": "loki-s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"},
    }
    assert prod_loki["loki"]["schemaConfig"]["configs"][0]["object_store"] == "s3"
    assert prod_loki["loki"]["limits_config"]["retention_period"] == "720h"
    # The loki credentials Secret exists in the observability namespace, scoped to the logs bucket alone.
    assert secret_data(prod, "mlops-observability", "loki-s3-credentials").keys() == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_alloy_tails_pods_through_the_api_with_minimal_rbac_and_no_host_paths(rendering):
    alloy = values(rendering, "log-shipper")
    assert alloy["controller"]["type"] == "deployment"
    config = alloy["alloy"]["configMap"]["content"]
    assert 'loki.source.kubernetes "pods"' in config
    assert 'url = "http://loki.mlops-observability.svc.cluster.local:3100/loki/api/v1/push"' in config
    assert alloy["alloy"]["mounts"] == {"varlog": False, "dockercontainers": False}
    # The chart joins both lists into one ClusterRole (rendered and checked in tests/test_charts.py); an empty one breaks it.
    rules = alloy["rbac"]["rules"] + alloy["rbac"]["clusterRules"]
    assert alloy["rbac"]["rules"] and alloy["rbac"]["clusterRules"]
    assert {resource for rule in rules for resource in rule["resources"]} == {"pods", "pods/log", "namespaces"}
    assert all(rule["verbs"] == ["get", "list", "watch"] and rule["apiGroups"] == [""] for rule in rules)
    security = alloy["alloy"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["capabilities"] == {"drop": ["ALL"]}


def test_node_exporter_alone_runs_in_the_privileged_namespace(rendering):
    metrics = values(rendering, "metrics")
    assert metrics["prometheus-node-exporter"]["namespaceOverride"] == "mlops-node-metrics"
    levels = {
        ns.metadata["name"]: ns.metadata["labels"]["pod-security.kubernetes.io/enforce"] for ns in rendering.find_all(kind="Namespace")
    }
    assert levels["mlops-node-metrics"] == "privileged"
    assert levels["mlops-observability"] == "restricted"
    assert "privileged" not in {level for name, level in levels.items() if name != "mlops-node-metrics"}
    for ns in rendering.find_all(kind="Namespace"):
        assert ns.metadata["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


def test_every_chart_component_has_explicit_memory_requests(rendering):
    metrics = values(rendering, "metrics")
    requests = [
        metrics["prometheus"]["prometheusSpec"]["resources"],
        metrics["alertmanager"]["alertmanagerSpec"]["resources"],
        metrics["prometheusOperator"]["resources"],
        metrics["prometheusOperator"]["prometheusConfigReloader"]["resources"],
        metrics["prometheusOperator"]["admissionWebhooks"]["patch"]["resources"],
        metrics["grafana"]["resources"],
        metrics["grafana"]["sidecar"]["resources"],
        metrics["kube-state-metrics"]["resources"],
        metrics["prometheus-node-exporter"]["resources"],
        values(rendering, "logs")["singleBinary"]["resources"],
        values(rendering, "log-shipper")["alloy"]["resources"],
        values(rendering, "log-shipper")["configReloader"]["resources"],
    ]
    assert all(r["requests"]["memory"] and r["limits"]["memory"] for r in requests)
    assert set(FOOTPRINT) >= {"alertmanager", "kube-state-metrics", "node-exporter", "alloy"}


def test_dev_node_ports_follow_the_seed_map(dev, prod):
    metrics = values(dev, "metrics")
    assert metrics["prometheus"]["service"] == {"type": "NodePort", "nodePort": 30090}
    assert metrics["grafana"]["service"] == {"type": "NodePort", "nodePort": 30030}
    loki = dev.find(kind="Service", name="loki-node-port").inputs["spec"]
    assert loki["ports"][0]["nodePort"] == 30100
    assert loki["selector"]["app.kubernetes.io/component"] == "single-binary"
    assert values(prod, "metrics")["prometheus"]["service"] == {}
    assert prod.find_all(kind="Service", name="loki-node-port") == []


def test_prod_protects_the_releases_that_own_claims_and_dev_does_not(dev, prod):
    for role in ("metrics", "logs"):
        assert release(prod, role).protect is True
        assert release(dev, role).protect is False


def _monitors(rendering, kind):
    return [r.manifest() for r in rendering.find_all(kind=kind)]


def _labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_service_monitor_names_a_port_of_a_service_it_selects(rendering):
    monitors = _monitors(rendering, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} >= {"mlflow"}
    services = [s.manifest() for s in rendering.find_all(kind="Service")]
    for monitor in monitors:
        selected = [
            s for s in services
            if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
            and _labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))
        ]
        ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports, (monitor["metadata"]["name"], endpoint["port"], ports)


def test_every_pod_monitor_names_a_container_port_of_pods_it_selects(dev):
    (temporal,) = [m for m in _monitors(dev, "PodMonitor") if m["metadata"]["name"] == "temporal"]
    pods = [
        (manifest["spec"]["template"]["metadata"]["labels"], manifest)
        for _, manifest in workloads(dev) if manifest["kind"] == "Deployment"
    ]
    selected = [m for labels, m in pods if _labels_match(temporal["spec"]["selector"]["matchLabels"], labels)]
    ports = {p["name"] for m in selected for c in containers(m) for p in c.get("ports", [])}
    assert [e["port"] for e in temporal["spec"]["podMetricsEndpoints"]] == ["metrics"] and "metrics" in ports


def test_the_port_check_would_catch_a_renamed_port(dev):
    monitor = next(m for m in _monitors(dev, "ServiceMonitor") if m["metadata"]["name"] == "mlflow")
    service = dev.find(kind="Service", name="mlflow").manifest()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert "metrics" not in {p["name"] for p in service["spec"]["ports"]}


def test_prod_mlflow_metrics_are_scraped_with_the_admin_login_from_its_secret(prod):
    (endpoint,) = next(m for m in _monitors(prod, "ServiceMonitor") if m["metadata"]["name"] == "mlflow")["spec"]["endpoints"]
    assert endpoint["basicAuth"] == {
        "username": {"name": "mlflow-auth", "key": "admin-username"},
        "password": {"name": "mlflow-auth", "key": "admin-password"},
    }


def test_monitors_and_rules_wait_for_the_prometheus_crds(rendering):
    crds = release(rendering, "metrics").urn
    kinds = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
    found = [r for kind in kinds for r in rendering.find_all(kind=kind)]
    assert len(found) >= 3
    for resource in found:
        assert crds in resource.dependencies, resource.name


def test_prod_temporal_chart_creates_its_service_monitors_after_the_crds(prod):
    temporal = prod.find(type="kubernetes:helm.sh/v3:Release", name="temporal-chart")
    assert temporal.inputs["values"]["server"]["metrics"]["serviceMonitor"]["enabled"] is True
    assert release(prod, "metrics").urn in temporal.dependencies


def test_without_observability_nothing_of_it_is_declared():
    rendering = render_stack("dev", overrides={"mlops-platform:observability": {"enabled": False}})
    assert rendering.find_all(type="kubernetes:helm.sh/v3:Release") == []
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert rendering.find_all(kind=kind) == []
    assert "mlops-observability" not in {ns.metadata["name"] for ns in rendering.find_all(kind="Namespace")}
    mlflow = rendering.find(kind="Deployment", name="mlflow").manifest()
    minio_env = {e["name"] for c in containers(rendering.find(kind="StatefulSet", name="minio").manifest()) for e in c.get("env", [])}
    assert "MINIO_PROMETHEUS_AUTH_TYPE" not in minio_env
    assert mlflow  # MLflow itself is unchanged: /metrics is served either way
