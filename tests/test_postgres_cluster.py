"""PostgresCluster on CloudNativePG: instances, storage, owner roles and databases, credentials, metrics, access."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pulumi
import pytest

from components.config import ResourceSpec
from components.postgres_cluster import Database, PostgresCluster, PostgresClusterArgs
from components.versions import CHARTS, IMAGES
from tests.support import secret_data
from tools.reference import chart_values, custom_resource_problems, reference_dir, unknown_values_keys
from tools.render import render_program, render_stack

APPLICATION_DATABASES = ("platform", "users", "labeler")


def cluster_spec(rendering) -> dict:
    return rendering.find(kind="Cluster", name="postgres").manifest()["spec"]


def test_dev_runs_one_instance_and_prod_three_spread_over_nodes(dev, prod):
    assert cluster_spec(dev)["instances"] == 1
    assert cluster_spec(prod)["instances"] == 3
    affinity = cluster_spec(prod)["affinity"]
    assert affinity["enablePodAntiAffinity"] is True
    assert affinity["podAntiAffinityType"] == "required"
    assert affinity["topologyKey"] == "kubernetes.io/hostname"


def test_storage_resources_and_image_come_from_config_and_pins(dev, prod):
    assert cluster_spec(dev)["storage"] == {"size": "10Gi", "storageClass": "mlops-retained"}
    assert cluster_spec(prod)["storage"] == {"size": "50Gi", "storageClass": "mlops-retained-gp3"}
    assert cluster_spec(prod)["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert cluster_spec(dev)["imageName"] == IMAGES["postgres"]
    assert ":17." in IMAGES["postgres"]


def test_no_superuser_is_handed_to_applications(rendering):
    spec = cluster_spec(rendering)
    assert spec["enableSuperuserAccess"] is False
    for role in spec["managed"]["roles"]:
        assert role["login"] is True
        assert role["superuser"] is False and role["createrole"] is False and role["createdb"] is False


def databases(rendering) -> dict[str, dict]:
    return {r.inputs["spec"]["name"]: r.inputs["spec"] for r in rendering.find_all(kind="Database")}


def test_application_databases_exist_in_both_stacks_each_owned_by_its_role(rendering):
    found = databases(rendering)
    engines = {"temporal", "temporal_visibility", "mlflow", "mlflow_auth"}
    # Airflow's database in both stacks (its metadata needs PostgreSQL even where MLflow runs on SQLite).
    expected = set(APPLICATION_DATABASES) | {"airflow"} | (engines if rendering.stack == "prod" else set())
    assert set(found) == expected
    roles = {r["name"]: r for r in cluster_spec(rendering)["managed"]["roles"]}
    for name, spec in found.items():
        assert spec["owner"] == name and name in roles
        assert spec["cluster"] == {"name": "postgres"}
        assert spec["ensure"] == "present"
        assert spec["databaseReclaimPolicy"] == "retain"


def test_bootstrap_creates_the_first_database_instead_of_a_stray_app_database(dev):
    assert cluster_spec(dev)["bootstrap"]["initdb"] == {"database": "platform", "owner": "platform", "secret": {"name": "postgres-platform"}}


def test_each_owner_password_is_generated_into_the_secret_its_role_reads(rendering):
    roles = {r["name"]: r for r in cluster_spec(rendering)["managed"]["roles"]}
    for name, role in roles.items():
        secret_name = role["passwordSecret"]["name"]
        data = secret_data(rendering, "mlops-data", secret_name)
        password = rendering.find(type="random:index/randomPassword:RandomPassword", name=f"postgres-{name}-password")
        assert password.inputs["length"] >= 32 and password.inputs["special"] is True
        assert data["username"] == name and data["dbname"] == name
        declared = next(r for r in rendering.find_all(kind="Secret") + rendering.find_all(kind="ExternalSecret") if r.metadata["name"] == secret_name)
        # A Secret written directly, or one External Secrets creates from Vault with the same type and labels.
        secret_type = declared.inputs["type"] if declared.kind == "Secret" else declared.inputs["spec"]["target"]["template"]["type"]
        assert secret_type == "kubernetes.io/basic-auth"
        assert declared.metadata["labels"]["cnpg.io/reload"] == "true"


def test_connection_uri_round_trips_a_password_full_of_uri_reserved_characters(dev):
    data = secret_data(dev, "mlops-data", "postgres-users")
    assert any(c in data["password"] for c in "@:/%#?"), "the mock password must exercise URI escaping"
    uri = urlsplit(data["uri"])
    assert uri.scheme == "postgresql"
    assert unquote(uri.username) == "users"
    assert unquote(uri.password) == data["password"]
    assert uri.hostname == "postgres-rw.mlops-data.svc.cluster.local" and uri.port == 5432
    assert uri.path == "/users" and uri.query == "sslmode=require"


def test_sqlalchemy_users_get_the_same_uri_with_psycopg2_named(dev):
    # SQLAlchemy >= 2.1 reads a plain postgresql:// as psycopg 3, on which MLflow 3.15.1's registry fails; MLflow's
    # image ships psycopg2. libpq tools (psql, pg_dump) do not understand a driver suffix: they keep `uri`.
    data = secret_data(dev, "mlops-data", "postgres-users")
    assert data["sqlalchemy-uri"] == data["uri"].replace("postgresql://", "postgresql+psycopg2://", 1)
    assert data["sqlalchemy-uri"].startswith("postgresql+psycopg2://users:") and data["uri"].startswith("postgresql://users:")


def test_temporal_credentials_are_copied_into_temporals_namespace_in_prod(prod, dev):
    for database in ("temporal", "temporal-visibility"):
        assert secret_data(prod, "mlops-temporal", f"postgres-{database}") == secret_data(prod, "mlops-data", f"postgres-{database}")
    assert not [r for r in dev.find_all(kind="Secret") if r.metadata["namespace"] == "mlops-temporal"]


def test_cluster_is_declared_after_the_operator_and_databases_after_the_cluster(rendering):
    operator = rendering.find(type="kubernetes:helm.sh/v4:Chart", name="cnpg-chart")
    cluster = rendering.find(kind="Cluster")
    assert operator.urn in cluster.dependencies
    for database in rendering.find_all(kind="Database"):
        assert cluster.urn in database.dependencies


def test_read_write_endpoint_and_dev_node_port(dev, prod):
    assert dev.outputs["postgres_host"] == "postgres-rw.mlops-data.svc.cluster.local"
    service = dev.find(kind="Service", name="postgres-rw-node-port").inputs["spec"]
    assert service["type"] == "NodePort"
    assert service["selector"] == {"cnpg.io/cluster": "postgres", "cnpg.io/instanceRole": "primary"}
    assert service["ports"][0]["nodePort"] == 30543 and service["ports"][0]["port"] == 5432
    assert not prod.find_all(kind="Service", name="postgres-rw-node-port")


def test_the_pod_monitor_waits_for_the_prometheus_crds_and_goes_with_them(rendering):
    monitor = rendering.find(kind="PodMonitor", name="postgres-pod-monitor")
    assert rendering.find(type="kubernetes:helm.sh/v3:Release", name="observability-metrics").urn in monitor.dependencies
    without = render_stack(rendering.stack, overrides={"mlops-platform:observability": {"enabled": False}})
    assert not without.find_all(kind="PodMonitor")


def render_cluster_with_metrics():
    def program() -> None:
        crds = pulumi.CustomResource("test:index:PrometheusCrds", "prometheus-crds", {})
        operator = pulumi.CustomResource("test:index:Operator", "operator", {})
        PostgresCluster(
            "postgres",
            PostgresClusterArgs(
                namespace="mlops-data",
                operator=operator,
                instances=1,
                size="1Gi",
                storage_class="mlops-retained",
                resources=ResourceSpec({"cpu": "10m", "memory": "64Mi"}, {"cpu": "1", "memory": "256Mi"}),
                databases=(Database("platform"),),
                metrics_after=[crds],
            ),
        )

    return render_program(program)


def test_pod_monitor_scrapes_the_metrics_port_once_prometheus_crds_exist():
    rendering = render_cluster_with_metrics()
    monitor = rendering.find(kind="PodMonitor")
    spec = monitor.inputs["spec"]
    assert spec["selector"] == {"matchLabels": {"cnpg.io/cluster": "postgres"}}
    assert spec["podMetricsEndpoints"] == [{"port": "metrics"}]
    crds = rendering.find(type="test:index:PrometheusCrds")
    assert crds.urn in monitor.dependencies
    if reference_dir() is not None:
        assert custom_resource_problems(monitor.manifest()) == []


def test_operator_chart_is_pinned_with_its_crds(rendering):
    chart = rendering.find(type="kubernetes:helm.sh/v4:Chart", name="cnpg-chart").inputs
    assert chart["chart"] == "cloudnative-pg"
    assert chart["version"] == CHARTS["cloudnative-pg"].version == "0.29.0"
    assert chart["repositoryOpts"]["repo"] == "https://cloudnative-pg.github.io/charts"
    assert chart["namespace"] == "mlops-cnpg"
    assert chart["values"]["crds"] == {"create": True}


@pytest.mark.skipif(reference_dir() is None, reason="../shared/reference (upstream chart values) is not beside this checkout")
def test_every_operator_value_exists_in_the_pinned_chart(dev):
    values = dev.find(type="kubernetes:helm.sh/v4:Chart", name="cnpg-chart").inputs["values"]
    assert unknown_values_keys(values, chart_values("cloudnative-pg", "0.29.0")) == []
    assert unknown_values_keys({"crd": {"create": True}}, chart_values("cloudnative-pg", "0.29.0")) == ["crd"]
