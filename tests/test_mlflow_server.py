"""MlflowServer, sqlite engine: one replica on a retained claim, artifacts proxied to the object store."""

from __future__ import annotations

from components.versions import IMAGES, MLFLOW_VERSION
from tests.support import container, env_of, pod_spec, secret_data


def deployment(rendering):
    return rendering.find(kind="Deployment", name="mlflow").manifest()


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_single_replica_recreated_so_the_sqlite_file_has_one_writer(dev):
    spec = deployment(dev)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_runs_the_pinned_full_image(dev):
    assert container(deployment(dev), "mlflow")["image"] == IMAGES["mlflow"] == f"ghcr.io/mlflow/mlflow:v{MLFLOW_VERSION}-full"


def test_sqlite_backend_lives_on_the_retained_claim(dev):
    manifest = deployment(dev)
    args = container(manifest, "mlflow")["args"]
    assert flag(args, "--backend-store-uri") == "sqlite:////mlflow/mlflow.db"
    assert {"name": "data", "mountPath": "/mlflow"} in container(manifest, "mlflow")["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec(manifest)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "mlflow-data"
    claim = dev.find(kind="PersistentVolumeClaim", name="mlflow-data").inputs["spec"]
    assert claim["resources"]["requests"] == {"storage": "5Gi"}


def test_artifacts_are_served_from_the_artifact_bucket(dev):
    args = container(deployment(dev), "mlflow")["args"]
    assert "--serve-artifacts" in args
    assert flag(args, "--artifacts-destination") == "s3://mlflow-artifacts/"
    assert flag(args, "--host") == "0.0.0.0"


def test_s3_credentials_come_only_from_the_object_store_secret(dev):
    env = env_of(container(deployment(dev), "mlflow"))
    assert env["AWS_ACCESS_KEY_ID"] == ("secret", "mlflow-s3-credentials", "AWS_ACCESS_KEY_ID")
    assert env["AWS_SECRET_ACCESS_KEY"] == ("secret", "mlflow-s3-credentials", "AWS_SECRET_ACCESS_KEY")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.mlops-storage.svc.cluster.local:9000"
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"


def test_allowed_hosts_cover_service_names_and_the_dev_host_port(dev):
    hosts = flag(container(deployment(dev), "mlflow")["args"], "--allowed-hosts").split(",")
    for name in ("mlflow", "mlflow.mlops-mlflow", "mlflow.mlops-mlflow.svc", "mlflow.mlops-mlflow.svc.cluster.local"):
        assert name in hosts and f"{name}:*" in hosts
    assert "localhost:30500" in hosts
    assert "*" not in hosts


def test_prod_has_no_host_port_in_allowed_hosts(prod):
    hosts = flag(container(deployment(prod), "mlflow")["args"], "--allowed-hosts")
    assert "localhost" not in hosts


def test_health_probes(dev):
    server = container(deployment(dev), "mlflow")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_existing_database_is_upgraded_before_the_server_starts(dev):
    upgrade = container(deployment(dev), "db-upgrade")
    assert upgrade["image"] == IMAGES["mlflow"]
    assert 'mlflow db upgrade "sqlite:////mlflow/mlflow.db"' in upgrade["args"][0]


def test_service_and_node_port(dev, prod):
    spec = dev.find(kind="Service", name="mlflow").inputs["spec"]
    assert spec["type"] == "NodePort"
    assert spec["ports"] == [{"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP", "nodePort": 30500}]
    assert prod.find(kind="Service", name="mlflow").inputs["spec"]["type"] == "ClusterIP"
    assert dev.outputs["local_urls"]["mlflow"] == "http://localhost:30500"


# --- postgres engine (prod): HA replicas, credentials from Secrets, basic auth, ingress ---------------------------


def test_prod_runs_replicas_that_roll_one_at_a_time_spread_over_nodes(prod):
    spec = deployment(prod)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    spread = pod_spec(deployment(prod))["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["whenUnsatisfiable"] == "DoNotSchedule"
    budget = prod.find(kind="PodDisruptionBudget", name="mlflow").inputs["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/component": "server"}


def test_prod_backend_uri_reaches_server_and_upgrade_only_from_the_database_secret(prod):
    manifest = deployment(prod)
    server, upgrade = container(manifest, "mlflow"), container(manifest, "db-upgrade")
    assert "--backend-store-uri" not in server["args"]
    for c in (server, upgrade):
        assert env_of(c)["MLFLOW_BACKEND_STORE_URI"] == ("secret", "postgres-mlflow", "sqlalchemy-uri")
    assert upgrade["args"] == ['exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"']
    assert not prod.find_all(kind="PersistentVolumeClaim", name="mlflow-data")


def test_prod_requires_basic_auth_with_a_generated_admin_and_a_shared_session_key(prod):
    import configparser

    server = container(deployment(prod), "mlflow")
    assert flag(server["args"], "--app-name") == "basic-auth"
    env = env_of(server)
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == ("secret", "mlflow-auth", "flask-secret-key")
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/auth/basic_auth.ini"
    auth = secret_data(prod, "mlops-mlflow", "mlflow-auth")
    ini = configparser.ConfigParser()
    ini.read_string(auth["basic_auth.ini"])
    assert ini["mlflow"]["admin_password"] == auth["admin-password"] != "password1234"
    assert ini["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    # psycopg2 named, as for the tracking store: MLflow's registry fails on psycopg 3 (postgres_cluster.sqlalchemy_uri).
    assert ini["mlflow"]["database_uri"] == secret_data(prod, "mlops-data", "postgres-mlflow-auth")["sqlalchemy-uri"]
    assert ini["mlflow"]["database_uri"].startswith("postgresql+psycopg2://mlflow_auth:")
    assert "%" in ini["mlflow"]["database_uri"], "the URI must exercise ConfigParser's '%' escaping"


def test_prod_accepts_the_host_the_front_door_publishes_it_on(prod):
    route = prod.find(kind="HTTPRoute", name="mlflow").inputs
    assert route["spec"]["hostnames"] == ["mlflow.mlops.example.com"]
    hosts = flag(container(deployment(prod), "mlflow")["args"], "--allowed-hosts").split(",")
    assert "mlflow.mlops.example.com" in hosts and "mlflow.mlops.example.com:*" in hosts


def test_dev_keeps_sqlite_without_auth_ingress_or_budget(dev):
    # No Ingress anywhere: the retired ingress-nginx is gone; the front door (off in dev) publishes MLflow.
    assert "--app-name" not in container(deployment(dev), "mlflow")["args"]
    assert not dev.find_all(kind="Ingress") and not dev.find_all(kind="PodDisruptionBudget")


# Every way the README, the stack outputs, the probes and Prometheus reach MLflow, and pod addresses from the
# ranges common CNI plugins assign (Prometheus scrapes `<pod IP>:5000`). Each must pass MLflow's Host allow-list.
POD_ADDRESSES = {
    "10.244.1.7": "Kind / flannel default pod CIDR",
    "10.42.0.9": "k3s default pod CIDR",
    "10.1.0.12": "MicroK8s (Calico) default",
    "10.0.3.4": "AKS kubenet / Azure CNI overlay",
    "192.168.12.5": "Calico's default IP pool",
    "172.17.0.3": "Docker bridge (kind nodes, minikube)",
    "172.31.40.2": "AWS VPC CNI in a default VPC",
    "172.16.0.8": "start of 172.16.0.0/12",
}
STRANGERS = ("attacker.example.com", "8.8.8.8:5000", "10.244.1.7:8080", "mlflow.evil.example.com", "100.64.0.1:5000")


def access_paths(rendering) -> dict[str, str]:
    """Host header -> why a client sends it."""
    from components.kube import cluster_dns_names

    paths = {}
    for name in cluster_dns_names("mlflow", "mlops-mlflow"):
        paths[name] = "a client in the cluster through the Service, port 80 implied"
        paths[f"{name}:5000"] = "a client in the cluster through the Service port"
    for address, why in POD_ADDRESSES.items():
        paths[f"{address}:5000"] = f"Prometheus scraping a pod: {why}"
    service = rendering.find(kind="Service", name="mlflow").inputs["spec"]
    for port in service.get("ports", []):
        if port.get("nodePort"):
            node_port = int(port["nodePort"])
            paths[f"localhost:{node_port}"] = "the README's tracking URI (Kind's port map)"
            paths[f"127.0.0.1:{node_port}"] = "the seed port map binds 127.0.0.1"
    for route in rendering.find_all(kind="HTTPRoute"):
        for host in route.inputs["spec"].get("hostnames", []) if route.inputs["metadata"]["namespace"] == "mlops-mlflow" else []:
            paths[host] = "the front door's host, as browsers send it"
            paths[f"{host}:443"] = "the front door's host with an explicit port"
    return paths


def test_every_documented_access_path_passes_mlflows_own_host_check_and_strangers_do_not(renderings):
    from mlflow.server.security_utils import is_allowed_host_header

    for stack, rendering in renderings.items():
        allowed = [h.strip() for h in flag(container(deployment(rendering), "mlflow")["args"], "--allowed-hosts").split(",")]
        refused = {host: why for host, why in access_paths(rendering).items() if not is_allowed_host_header(allowed, host)}
        assert refused == {}, stack
        assert [host for host in STRANGERS if is_allowed_host_header(allowed, host)] == [], stack
    assert any(":30500" in host for host in access_paths(renderings["dev"])), "dev's NodePort is an access path"


def test_stored_secrets_are_encrypted_under_a_generated_passphrase_that_survives_an_engine_switch(dev, prod):
    # Unset, MLflow falls back to a passphrase printed in its source. The same Pulumi resource in both engines keeps
    # the value when a stack moves from sqlite to postgres, so what was encrypted stays readable.
    for rendering in (dev, prod):
        env = env_of(container(deployment(rendering), "mlflow"))
        assert env["MLFLOW_CRYPTO_KEK_PASSPHRASE"] == ("secret", "mlflow-crypto", "kek-passphrase")
    passphrases = [r for r in (dev, prod) for r in r.find_all(type="random:index/randomPassword:RandomPassword") if r.name == "mlflow-kek-passphrase"]
    assert len(passphrases) == 2 and len({p.urn.split("::", 1)[1] for p in passphrases}) == 1  # the same but for the stack
    assert all(p.inputs["length"] >= 32 for p in passphrases)
    assert len(secret_data(dev, "mlops-mlflow", "mlflow-crypto")["kek-passphrase"]) >= 32
