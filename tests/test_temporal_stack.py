"""TemporalStack: the CLI dev server on a retained SQLite claim (dev), the Helm chart on PostgreSQL (prod)."""

from __future__ import annotations

import pytest

from components.versions import CHARTS, IMAGES
from tests.support import container, pod_spec
from tools.reference import chart_values, reference_dir, unknown_values_keys


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def dev_deployment(dev) -> dict:
    return dev.find(kind="Deployment", name="temporal").manifest()


def release(prod):
    return prod.find(type="kubernetes:helm.sh/v3:Release", name="temporal-chart")


def test_dev_server_listens_on_all_interfaces_and_keeps_its_database_on_the_claim(dev):
    manifest = dev_deployment(dev)
    server = container(manifest, "temporal")
    assert server["image"] == IMAGES["temporal-cli"]
    args = server["args"]
    assert args[:2] == ["server", "start-dev"]
    assert flag(args, "--ip") == "0.0.0.0"
    assert flag(args, "--db-filename") == "/data/temporal.db"
    assert flag(args, "--metrics-port") == "9090"
    assert {"name": "data", "mountPath": "/data"} in server["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec(manifest)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "temporal-data"
    assert dev.find(kind="PersistentVolumeClaim", name="temporal-data").inputs["spec"]["resources"]["requests"] == {"storage": "5Gi"}


def test_dev_server_runs_as_the_images_user_and_is_recreated(dev):
    manifest = dev_deployment(dev)
    security = pod_spec(manifest)["securityContext"]
    assert security["runAsUser"] == 1000 and security["fsGroup"] == 1000
    assert manifest["spec"]["strategy"] == {"type": "Recreate"}
    assert manifest["spec"]["replicas"] == 1


def test_dev_grpc_and_ui_services_with_seed_node_ports(dev):
    frontend = dev.find(kind="Service", name="temporal-frontend").inputs["spec"]["ports"][0]
    ui = dev.find(kind="Service", name="temporal-ui").inputs["spec"]["ports"][0]
    assert (frontend["port"], frontend["nodePort"]) == (7233, 30700)
    assert (ui["port"], ui["nodePort"]) == (8233, 30233)
    assert dev.outputs["temporal_address"] == "temporal-frontend.mlops-temporal.svc.cluster.local:7233"


def test_dev_has_no_chart_and_prod_no_dev_server(dev, prod):
    assert not dev.find_all(type="kubernetes:helm.sh/v3:Release", name="temporal-chart")
    assert not prod.find_all(kind="Deployment", name="temporal")
    assert not prod.find_all(kind="PersistentVolumeClaim", name="temporal-data")


def test_prod_runs_the_pinned_chart_as_a_release_so_its_schema_hook_runs(prod):
    inputs = release(prod).inputs
    assert inputs["chart"] == "temporal" and inputs["version"] == CHARTS["temporal"].version == "1.6.0"
    assert inputs["repositoryOpts"]["repo"] == "https://go.temporal.io/helm-charts"
    assert inputs["namespace"] == "mlops-temporal"
    assert inputs["values"]["schema"]["useHelmHooks"] is True


@pytest.mark.parametrize(("store", "database", "secret"), [("default", "temporal", "postgres-temporal"),
                                                         ("visibility", "temporal_visibility", "postgres-temporal-visibility")])
def test_prod_stores_live_on_the_postgres_cluster_with_credentials_from_secrets(prod, store, database, secret):
    sql = release(prod).inputs["values"]["server"]["config"]["persistence"]["datastores"][store]["sql"]
    assert sql["pluginName"] == "postgres12_pgx"
    assert sql["databaseName"] == database and sql["user"] == database
    assert sql["connectAddr"] == "postgres-rw.mlops-data.svc.cluster.local:5432"
    assert sql["existingSecret"] == secret and sql["secretKey"] == "password"
    assert "password" not in sql
    assert sql["createDatabase"] is False and sql["manageSchema"] is True


def test_prod_shards_replicas_resources_and_ui_from_config(prod):
    values = release(prod).inputs["values"]
    assert values["server"]["config"]["persistence"]["numHistoryShards"] == 512
    assert values["server"]["replicaCount"] == 2
    for service in ("frontend", "history", "matching", "worker"):
        assert values["server"][service]["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert values["web"]["enabled"] is True
    assert values["server"]["image"] == {"repository": "temporalio/server", "tag": "1.31.2"}


def test_prod_chart_waits_for_its_databases(prod):
    dependencies = release(prod).dependencies
    for database in ("postgres-database-temporal", "postgres-database-temporal_visibility"):
        assert prod.find(kind="Database", name=database).urn in dependencies


@pytest.mark.skipif(reference_dir() is None, reason="../shared/reference (upstream chart values) is not beside this checkout")
def test_every_temporal_value_exists_in_the_pinned_chart(prod):
    reference = chart_values("temporal", CHARTS["temporal"].version)
    assert unknown_values_keys(release(prod).inputs["values"], reference) == []
