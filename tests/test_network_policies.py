"""NetworkPolicies: every namespace the platform creates denies ingress by default and admits only declared flows."""

from __future__ import annotations

import pytest

from components.network_policies import CLIENT_LABEL, Flow, policy_spec
from tools.render import render_stack


def policies(rendering) -> dict[str, dict[str, dict]]:
    found: dict[str, dict[str, dict]] = {}
    for policy in rendering.find_all(kind="NetworkPolicy"):
        found.setdefault(policy.metadata["namespace"], {})[policy.metadata["name"]] = policy.inputs["spec"]
    return found


def sources(spec: dict) -> set[str]:
    """Namespace names (or `clients`, or `anywhere`) a policy admits."""
    (rule,) = spec["ingress"]
    if "from" not in rule:
        return {"anywhere"}
    names = set()
    for peer in rule["from"]:
        labels = peer.get("namespaceSelector", {}).get("matchLabels", {})
        names.add(labels.get("kubernetes.io/metadata.name") or ("clients" if labels.get(CLIENT_LABEL) == "true" else "?"))
    return names


def ports(spec: dict) -> set[int]:
    (rule,) = spec["ingress"]
    return {p["port"] for p in rule.get("ports", [])}


def test_every_platform_namespace_denies_ingress_by_default(rendering):
    found = policies(rendering)
    namespaces = {ns.metadata["name"] for ns in rendering.find_all(kind="Namespace")}
    assert set(found) == namespaces
    for namespace, by_name in found.items():
        deny = by_name["default-deny-ingress"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}, namespace
        assert by_name["allow-same-namespace"]["ingress"] == [{"from": [{"podSelector": {}}]}]


def test_prod_mlflow_reaches_postgres_and_so_does_temporal(prod):
    postgres = policies(prod)["mlops-data"]["allow-postgres-clients"]
    assert sources(postgres) == {"mlops-mlflow", "mlops-temporal", "mlops-airflow", "clients"}
    assert ports(postgres) == {5432}
    assert postgres["podSelector"] == {"matchLabels": {"cnpg.io/cluster": "postgres"}}


def test_dev_postgres_clients_are_labelled_namespaces_and_the_node_port(dev):
    data = policies(dev)["mlops-data"]
    # Airflow keeps its run history in its database there.
    assert sources(data["allow-postgres-clients"]) == {"mlops-airflow", "clients"}
    assert sources(data["allow-node-port-30543"]) == {"anywhere"} and ports(data["allow-node-port-30543"]) == {5432}


def test_the_object_store_admits_its_consumers_only_on_the_s3_port(dev):
    s3 = policies(dev)["mlops-storage"]["allow-s3-clients"]
    # MLflow's artifacts and SQLite backup, the dumps and mirror in data, Prometheus' scrape.
    assert sources(s3) == {"mlops-mlflow", "mlops-airflow", "mlops-data", "mlops-observability", "clients"}
    assert ports(s3) == {9000}


def test_prometheus_alone_scrapes_every_other_namespace(rendering):
    found = policies(rendering)
    for namespace, by_name in found.items():
        if namespace == "mlops-observability":
            assert "allow-prometheus-scrape" not in by_name
            continue
        scrape = by_name["allow-prometheus-scrape"]
        (peer,) = scrape["ingress"][0]["from"]
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "mlops-observability"}
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_webhooks_are_reachable_from_the_api_server(rendering):
    found = policies(rendering)
    assert ports(found["mlops-cnpg"]["allow-cnpg-webhook"]) == {9443}
    assert ports(found["mlops-observability"]["allow-operator-webhook"]) == {10250}
    if rendering.stack == "prod":
        assert ports(found["mlops-cert-manager"]["allow-cert-manager-webhook"]) == {10250}


def test_prod_mlflow_admits_the_gateway_proxies_only_and_no_node_ports(prod):
    mlflow = policies(prod)["mlops-mlflow"]
    # No ingress controller's namespace (ingress-nginx is retired): clients, and the front door's proxy pods alone.
    assert sources(mlflow["allow-mlflow-clients"]) == {"clients"}
    (rule,) = mlflow["allow-front-door-mlflow"]["ingress"]
    assert rule["from"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlops-gateway"}},
        "podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy", "app.kubernetes.io/managed-by": "envoy-gateway",
        }},
    }]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    assert not [name for by_name in policies(prod).values() for name in by_name if name.startswith("allow-node-port")]


def test_each_dev_node_port_is_admitted_on_its_target_port_only(dev):
    node_port_policies = {
        name: spec for by_name in policies(dev).values() for name, spec in by_name.items() if name.startswith("allow-node-port")
    }
    # The seed port map, model serving's 30800 and Airflow's 30808.
    assert len(node_port_policies) == 12
    assert all(len(ports(spec)) == 1 and sources(spec) == {"anywhere"} for spec in node_port_policies.values())


def test_a_flow_into_an_unknown_namespace_is_refused():
    from components.network_policies import NetworkPolicies, NetworkPoliciesArgs
    from tools.render import render_program

    def program():
        NetworkPolicies("n", NetworkPoliciesArgs(namespaces={"a": "ns-a"}, namespace_names={"a": "ns-a"}, flows=(Flow("x", "b", (1,), ("a",)),)))

    with pytest.raises(Exception, match="does not create"):
        render_program(program)


def test_a_flow_spec_names_ports_and_peers():
    spec = policy_spec(Flow("x", "a", (80, 443), ("b", "clients")), {"a": "ns-a", "b": "ns-b"})
    assert spec["ingress"] == [{
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns-b"}}},
            {"namespaceSelector": {"matchLabels": {CLIENT_LABEL: "true"}}},
        ],
        "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}],
    }]


def test_without_observability_there_is_no_scrape_flow_nor_its_node_ports():
    rendering = render_stack("dev", overrides={"mlops-platform:observability": {"enabled": False}})
    assert not [p for p in rendering.find_all(kind="NetworkPolicy") if p.metadata["name"] == "allow-prometheus-scrape"]
    # The nodePorts block still names them, but nothing serves them: no URL to hand out.
    assert set(rendering.outputs["local_urls"]) == {
        "minioApi", "minioConsole", "mlflow", "postgres", "redis", "temporalGrpc", "temporalUi", "serving", "airflow",
    }


def test_only_the_sync_operator_reads_vault_and_the_api_server_reaches_its_webhook(prod):
    found = policies(prod)
    readers = found["mlops-vault"]["allow-vault-readers"]
    assert sources(readers) == {"mlops-external-secrets"} and ports(readers) == {8200}
    assert ports(found["mlops-external-secrets"]["allow-external-secrets-webhook"]) == {10250}


def test_while_installing_vault_only_its_namespaces_are_closed():
    import yaml

    from tools.render import ROOT

    vault = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["mlops-platform:vault"]
    installing = render_stack("prod", overrides={"mlops-platform:vault": {**vault, "phase": "install"}})
    assert set(policies(installing)) == {"mlops-cert-manager", "mlops-vault", "mlops-external-secrets"}
    # Prometheus does not exist yet: no scrape policy, whose `from` would be empty, which admits everything.
    assert set(policies(installing)["mlops-vault"]) == {"default-deny-ingress", "allow-same-namespace", "allow-vault-readers"}
    assert_no_policy_admits_every_source(installing)


def assert_no_policy_admits_every_source(rendering):
    for policy in rendering.find_all(kind="NetworkPolicy"):
        for rule in policy.inputs["spec"].get("ingress", []):
            assert rule.get("from", ["absent"]) != [], f"{policy.name}: an empty `from` admits every source"


def test_no_policy_admits_every_source(rendering):
    assert_no_policy_admits_every_source(rendering)


def test_with_minio_and_vault_the_snapshot_job_reaches_the_s3_port():
    rendering = render_stack("dev", overrides={"mlops-platform:secrets": {"store": "vault"}, "mlops-platform:vault": {"phase": "configure"}})
    s3 = policies(rendering)["mlops-storage"]["allow-s3-clients"]
    assert "mlops-vault" in sources(s3)
    assert rendering.find(kind="CronJob", name="backup-vault-snapshot").metadata["namespace"] == "mlops-vault"


# Who may reach what, one row per policy a stack renders beyond the two every namespace has. Sources are namespace
# names, `clients` (namespaces labelled as platform clients) or `anywhere`; a `/prometheus` suffix means only the
# Prometheus pods of that namespace.
SCRAPE = {"mlops-observability/prometheus"}
EXPECTED_SOURCES = {
    "dev": {
        ("mlops-cnpg", "allow-cnpg-webhook"): {"anywhere"},
        ("mlops-data", "allow-node-port-30543"): {"anywhere"},
        ("mlops-data", "allow-node-port-30679"): {"anywhere"},
        ("mlops-data", "allow-postgres-clients"): {"clients", "mlops-airflow"},
        ("mlops-data", "allow-postgres-operator"): {"mlops-cnpg"},
        ("mlops-data", "allow-redis-clients"): {"clients"},
        ("mlops-mlflow", "allow-mlflow-clients"): {"clients"},
        # The serving pods load models through MLflow (it proxies artifacts): their one flow into the platform.
        ("mlops-mlflow", "allow-mlflow-model-serving"): {"mlops-serving"},
        ("mlops-mlflow", "allow-node-port-30500"): {"anywhere"},
        ("mlops-observability", "allow-node-port-30030"): {"anywhere"},
        ("mlops-observability", "allow-node-port-30090"): {"anywhere"},
        ("mlops-observability", "allow-node-port-30100"): {"anywhere"},
        ("mlops-observability", "allow-operator-webhook"): {"anywhere"},
        ("mlops-storage", "allow-node-port-30900"): {"anywhere"},
        ("mlops-storage", "allow-node-port-30901"): {"anywhere"},
        ("mlops-storage", "allow-s3-clients"): {"clients", "mlops-airflow", "mlops-data", "mlops-mlflow", "mlops-observability"},
        ("mlops-temporal", "allow-node-port-30233"): {"anywhere"},
        ("mlops-temporal", "allow-node-port-30700"): {"anywhere"},
        ("mlops-temporal", "allow-temporal-clients"): {"clients"},
        ("mlops-serving", "allow-serving-clients"): {"clients"},
        ("mlops-serving", "allow-node-port-30800"): {"anywhere"},
        # Airflow: its UI and API for clients, and the example DAG's run and model into MLflow.
        ("mlops-airflow", "allow-airflow-clients"): {"clients"},
        ("mlops-airflow", "allow-node-port-30808"): {"anywhere"},
        ("mlops-mlflow", "allow-mlflow-airflow"): {"mlops-airflow"},
        **{(ns, "allow-prometheus-scrape"): SCRAPE for ns in
           ("mlops-cnpg", "mlops-data", "mlops-mlflow", "mlops-node-metrics", "mlops-storage", "mlops-temporal", "mlops-serving",
            "mlops-airflow")},
    },
    "prod": {
        ("mlops-cert-manager", "allow-cert-manager-webhook"): {"anywhere"},
        ("mlops-cnpg", "allow-cnpg-webhook"): {"anywhere"},
        ("mlops-data", "allow-postgres-clients"): {"clients", "mlops-mlflow", "mlops-temporal", "mlops-airflow"},
        ("mlops-airflow", "allow-airflow-clients"): {"clients"},
        ("mlops-mlflow", "allow-mlflow-airflow"): {"mlops-airflow"},
        ("mlops-data", "allow-postgres-operator"): {"mlops-cnpg"},
        ("mlops-data", "allow-redis-clients"): {"clients"},
        ("mlops-external-secrets", "allow-external-secrets-webhook"): {"anywhere"},
        ("mlops-mlflow", "allow-mlflow-clients"): {"clients"},
        # The front door: anyone to the proxies, the proxies alone to each published service.
        ("mlops-gateway", "allow-front-door-public"): {"anywhere"},
        ("mlops-mlflow", "allow-front-door-mlflow"): {"mlops-gateway/envoy"},
        ("mlops-temporal", "allow-front-door-temporal"): {"mlops-gateway/envoy"},
        ("mlops-airflow", "allow-front-door-airflow"): {"mlops-gateway/envoy"},
        **{("mlops-observability", f"allow-front-door-{host}"): {"mlops-gateway/envoy"} for host in ("grafana", "prometheus", "alertmanager")},
        ("mlops-observability", "allow-operator-webhook"): {"anywhere"},
        ("mlops-temporal", "allow-temporal-clients"): {"clients"},
        ("mlops-vault", "allow-vault-readers"): {"mlops-external-secrets"},
        **{(ns, "allow-prometheus-scrape"): SCRAPE for ns in
           ("mlops-cert-manager", "mlops-cnpg", "mlops-data", "mlops-external-secrets", "mlops-gateway", "mlops-mlflow",
            "mlops-node-metrics", "mlops-temporal", "mlops-vault", "mlops-airflow")},
    },
}
# "anywhere" only where the caller cannot be a pod a namespace selector could name, with the reason.
ANYWHERE_BECAUSE = {
    "webhook": "admission webhooks are called by the API server, which is not a pod (and on managed control planes "
               "not even in the pod network)",
    "node-port": "NodePort traffic arrives from the node (kube-proxy SNAT) or the laptop, not from a pod",
    "front-door-public": "the gateway's load balancer brings traffic from outside the cluster, to the proxy pods only",
}


def peer_names(spec: dict) -> set[str]:
    (rule,) = spec["ingress"]
    if "from" not in rule:
        return {"anywhere"}
    names = set()
    for peer in rule["from"]:
        labels = peer.get("namespaceSelector", {}).get("matchLabels", {})
        name = labels.get("kubernetes.io/metadata.name") or ("clients" if labels.get(CLIENT_LABEL) == "true" else "?")
        pods = peer.get("podSelector", {}).get("matchLabels")
        names.add(f"{name}/{pods['app.kubernetes.io/name']}" if pods else name)
    return names


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_policy_admits_exactly_its_expected_sources(renderings, stack):
    found = {
        (namespace, name): peer_names(spec)
        for namespace, by_name in policies(renderings[stack]).items()
        for name, spec in by_name.items()
        if name not in ("default-deny-ingress", "allow-same-namespace") and "Ingress" in spec["policyTypes"]
    }
    assert found == EXPECTED_SOURCES[stack]


def test_model_serving_may_send_to_mlflow_and_dns_only(dev, prod):
    limits = {(ns, name): spec for ns, by_name in policies(dev).items() for name, spec in by_name.items() if "Egress" in spec["policyTypes"]}
    assert list(limits) == [("mlops-serving", "limit-egress")]
    spec = limits["mlops-serving", "limit-egress"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Egress"]
    dns, mlflow = spec["egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert mlflow == {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlops-mlflow"}}}],
                      "ports": [{"protocol": "TCP", "port": 5000}]}
    # Prod serves no model: no namespace, no limit; every other namespace keeps open egress.
    assert not [name for by_name in policies(prod).values() for name in by_name if name == "limit-egress"]


def test_anywhere_is_only_for_callers_that_cannot_be_pods():
    for stack, table in EXPECTED_SOURCES.items():
        for (namespace, name), allowed in table.items():
            if "anywhere" in allowed:
                assert any(reason in name for reason in ANYWHERE_BECAUSE), f"{stack} {namespace}/{name} admits anywhere without a reason"
