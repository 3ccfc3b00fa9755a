"""Real Airflow (its own virtualenv, .ci/airflow) run with exactly the commands and environment of
components/airflow: PostgreSQL from Debian over TLS with the URI as the PostgresCluster writes it, moto as the object
store, and the platform's MLflow (the rendered dev Deployment) as the tracking server.

Only what a pod has and this machine lacks is mapped: the emptyDirs and the DAG ConfigMap become temporary
directories, in-cluster host names and ports become local ones, and cluster DNS is a `sitecustomize` shim (the task
reaches MLflow by its Service name, so MLflow's Host allow-list sees what it sees in the cluster). The Secrets are
filled as the component will fill them: a generated database password with URI-reserved characters, generated keys.

Prints each process's memory (the whole process tree: a pod's memory) and the timings; run with `-s` to see them.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

from components import airflow as af
from components import mlflow_server
from components.postgres_cluster import connection_fields
from components.versions import AIRFLOW_PROVIDERS, AIRFLOW_VERSION, IMAGES, MLFLOW_VERSION
from tests.realservers import (
    LocalMapping,
    cluster_dns,
    container_command,
    container_env,
    free_port,
    moto_server,
    needs_debian,
    postgres_bin,
    postgres_server,
    require_binary,
    resolve_to_loopback,
    start,
    stop,
    wait_for_http,
)
from tests.support import container
from tools.render import ROOT

psycopg = pytest.importorskip("psycopg")

pytestmark = needs_debian(
    postgres_bin() is None or shutil.which("openssl") is None,
    reason="Debian's postgresql (and openssl) are not installed (scripts/test.sh installs them)",
)

AIRFLOW_VENV = ROOT / ".ci" / "airflow"
NAMESPACE = "mlops-airflow"
API_HOST = f"{af.SERVICE_NAME}.{NAMESPACE}.svc.cluster.local:{af.API_PORT}"
POSTGRES_HOST = "postgres-rw.mlops-data.svc.cluster.local:5432"
STORAGE_HOST = "minio.mlops-storage.svc.cluster.local"
IN_CLUSTER_S3 = f"http://{STORAGE_HOST}:9000"
MLFLOW_HOST = f"{mlflow_server.SERVICE_NAME}.mlops-mlflow.svc.cluster.local"
IN_CLUSTER_MLFLOW = f"http://{MLFLOW_HOST}:{mlflow_server.PORT}"
STATSD_HOST = f"{af.STATSD_SERVICE}.{NAMESPACE}.svc.cluster.local"
REGION = "us-east-1"
ADMIN = "admin"


TIMINGS: dict[str, float] = {}


@contextlib.contextmanager
def timed(what: str):
    started = time.monotonic()
    yield
    TIMINGS[what] = round(time.monotonic() - started, 1)




def dag_constants() -> dict:
    """The example DAG's module-level constants, read without importing Airflow."""
    tree = ast.parse(af.EXAMPLE_DAG.read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, (ast.Constant, ast.List))
    }


# ----------------------------------------------------------------------------------------------------------------
# Process memory: a pod's memory is its whole process tree (LocalExecutor tasks, API workers, DAG parsers).


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                pids.append(int(stat.parent.name))
    return pids


def group_memory_mib(pgid: int) -> tuple[float, float]:
    """(RSS, PSS) of every process in the group, in MiB. RSS counts shared pages once per process; PSS splits them."""
    rss = pss = 0
    for pid in _group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024, pss / 1024


class MemorySampler:
    """Peak memory per process over the test, sampled every half second; and a snapshot when all are idle."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.peak: dict[str, tuple[float, float]] = {}
        self.idle: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name, process in list(self.processes.items()):
                rss, pss = group_memory_mib(process.pid)
                old = self.peak.get(name, (0.0, 0.0))
                self.peak[name] = (max(old[0], rss), max(old[1], pss))

    def snapshot_idle(self) -> None:
        self.idle = {name: group_memory_mib(process.pid) for name, process in self.processes.items()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------------------------------------
# The site: object store, MLflow, PostgreSQL, and the Airflow pods' commands and environment


@pytest.fixture(scope="module")
def airflow_bin() -> Path:
    return require_binary(AIRFLOW_VENV / "bin" / "airflow", "Airflow's virtualenv .ci/airflow")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_server() as moto:
        client = boto3.client("s3", endpoint_url=moto.endpoint, region_name=REGION,
                              aws_access_key_id="airflow-logs-user", aws_secret_access_key="airflow-logs-secret")
        for bucket in ("mlflow-artifacts", af.LOGS_BUCKET):
            client.create_bucket(Bucket=bucket)
        yield {"port": moto.port, "client": client}


@pytest.fixture(scope="module")
def mlflow(renderings, s3, tmp_path_factory):
    """The rendered dev MLflow pod (init container, then server), as tests/test_mlflow_real.py runs it."""
    dev = renderings["dev"]
    deployment = dev.find(kind="Deployment", name="mlflow").manifest(redact=False)
    root = tmp_path_factory.mktemp("airflow-mlflow")
    for directory in ("data", "tmp"):
        (root / directory).mkdir()
    port = free_port()
    mapping = LocalMapping(
        paths={"/mlflow": root / "data", "/tmp": root / "tmp"},
        text={IN_CLUSTER_S3: f"http://{STORAGE_HOST}:{s3['port']}", ":30500": f":{port}"},
    )
    server = container(deployment, "mlflow")
    argv = container_command(server, mapping)
    argv[argv.index("--port") + 1] = str(port)
    env = {**container_env(server, dev, "mlops-mlflow", mapping), **cluster_dns(root, STORAGE_HOST)}
    init = container(deployment, "db-upgrade")
    subprocess.run(container_command(init, mapping), env=container_env(init, dev, "mlops-mlflow", mapping),
                   check=True, capture_output=True, timeout=180)
    process = start(argv, env, root / "server.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, timeout=120)
        yield {"port": port, "url": f"http://{MLFLOW_HOST}:{port}"}
    finally:
        stop(process)


@pytest.fixture(scope="module")
def database():
    """PostgreSQL with the `airflow` owner and database as the PostgresCluster declares them, and its Secret's fields
    (a generated password with URI-reserved characters, as the real generator may produce)."""
    password = secrets.token_urlsafe(18) + "@:/%#?"
    with postgres_server() as pg:
        with psycopg.connect(**pg["admin"]) as db:
            db.execute(f"CREATE ROLE {af.DATABASE} LOGIN PASSWORD '{password}'")
            db.execute(f"CREATE DATABASE {af.DATABASE} OWNER {af.DATABASE}")
        fields = connection_fields("postgres", "mlops-data", af.DATABASE, password)
        yield {**pg, "secret": fields, "local_uri": fields["uri"].replace(POSTGRES_HOST, f"127.0.0.1:{pg['port']}")}


class StatsdListener:
    """The statsd-exporter's UDP port: every line the processes send (the exporter itself cannot run here)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.5)
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                self.lines += self.socket.recv(65535).decode(errors="replace").splitlines()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture(scope="module")
def site(airflow_bin, s3, mlflow, database, renderings, tmp_path_factory):
    """Commands and environments of the Airflow pods, mapped to this machine; the Secrets as the component fills them.
    The environment is the rendered dev scheduler's (every process has the same, tests/test_airflow.py)."""
    root = tmp_path_factory.mktemp("airflow-pods")
    home, tmp, dags = root / "home", root / "tmp", root / "dags"
    for directory in (home, tmp, dags):
        directory.mkdir()
    # The ConfigMap: the DAG files and nothing else of this repository.
    shutil.copy(af.EXAMPLE_DAG, dags / af.EXAMPLE_DAG.name)
    api_port = free_port()
    statsd = StatsdListener()
    ports = {af.WORKER_LOG_PORT: free_port(), af.TRIGGERER_LOG_PORT: free_port(), af.SCHEDULER_HEALTH_PORT: free_port(),
             af.STATSD_PORT: statsd.port}
    mapping = LocalMapping(
        paths={af.HOME: home, af.DAGS_DIR: dags, af.TMP_DIR: tmp},
        text={
            API_HOST: f"127.0.0.1:{api_port}",
            IN_CLUSTER_S3: f"http://127.0.0.1:{s3['port']}",
            IN_CLUSTER_MLFLOW: mlflow["url"],
            POSTGRES_HOST: f"127.0.0.1:{database['port']}",
            STATSD_HOST: "127.0.0.1",
        },
    )
    secret_values = {
        af.DATABASE_SECRET: database["secret"],
        af.KEYS_SECRET: {
            "fernet-key": af.fernet_key(base64.b64encode(os.urandom(32)).decode()),
            "api-secret-key": secrets.token_urlsafe(32),
            "jwt-secret": secrets.token_urlsafe(32),
        },
        # A leading `-`: an argument parser that takes it for an option fails the bootstrap's `users create`.
        af.ADMIN_SECRET: {"username": ADMIN, "password": "-" + secrets.token_urlsafe(18)},
        af.S3_SECRET: {"AWS_ACCESS_KEY_ID": "airflow-logs-user", "AWS_SECRET_ACCESS_KEY": "airflow-logs-secret"},
    }
    scheduler = container(renderings["dev"].find(kind="Deployment", name="airflow-scheduler").manifest(redact=False), "airflow")
    literal = {item["name"]: item["value"] for item in scheduler["env"] if "value" in item}
    references = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in scheduler["env"] if "valueFrom" in item}
    assert {name: (ref["name"], ref["key"]) for name, ref in references.items()} == {
        name: (ref.secret, ref.key) for name, ref in af.SECRET_ENV.items()
    }

    def env(secret_env) -> dict[str, str]:
        values = {name: mapping.apply(value) for name, value in literal.items()}
        for name, ref in secret_env.items():
            values[name] = mapping.apply(secret_values[ref.secret][ref.key])
        for name, value in values.items():
            for port, local in ports.items():
                if value == str(port):
                    values[name] = str(local)
        return {
            "PATH": f"{AIRFLOW_VENV / 'bin'}:/usr/bin:/bin",
            **values,
            # What the pod has and this machine lacks: cluster DNS for MLflow's Service name, /tmp as TMPDIR.
            **cluster_dns(root, MLFLOW_HOST),
            "TMPDIR": str(tmp),
            # This machine's CA bundle for the task's package downloads (the image trusts its own).
            **{k: os.environ[k] for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT") if k in os.environ},
        }

    def argv(command) -> list[str]:
        mapped = container_command({"command": list(command)}, mapping)
        if mapped[0] == "airflow":
            mapped[0] = str(airflow_bin)
        if "--port" in mapped:
            mapped[mapped.index("--port") + 1] = str(api_port)
        return mapped

    sampler = MemorySampler()
    site = {
        "root": root, "api_port": api_port, "ports": ports, "env": env, "argv": argv, "secrets": secret_values,
        "database": database, "s3": s3["client"], "mlflow": mlflow, "memory": sampler, "processes": {},
        "statsd": statsd,
    }
    yield site
    sampler.close()
    statsd.close()
    stop_processes(site)
    report = {
        name: {"idle_rss_mib": round(sampler.idle.get(name, (0, 0))[0]), "idle_pss_mib": round(sampler.idle.get(name, (0, 0))[1]),
               "peak_rss_mib": round(rss), "peak_pss_mib": round(pss)}
        for name, (rss, pss) in sampler.peak.items()
    }
    print(f"\nairflow memory per process tree (MiB): {json.dumps(report)}\nairflow timings (s): {json.dumps(TIMINGS)}")


def run(site, command, secret_env=af.SECRET_ENV, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(site["argv"](command), env=site["env"](secret_env), capture_output=True, text=True,
                          timeout=timeout)


def schema_fingerprint(uri: str) -> tuple:
    with psycopg.connect(uri) as db:
        version = db.execute("select version_num from alembic_version").fetchall()
        columns = db.execute(
            "select table_name, column_name, data_type, is_nullable, column_default from information_schema.columns"
            " where table_schema = 'public' order by 1, 2"
        ).fetchall()
        indexes = db.execute("select indexname, indexdef from pg_indexes where schemaname = 'public' order by 1").fetchall()
    return version, columns, indexes


def start_processes(site) -> None:
    env = site["env"](af.SECRET_ENV)
    for name, process in af.PROCESSES.items():
        running = start(site["argv"](process.command), env, site["root"] / f"{name}.log")
        site["processes"][name] = running
        site["memory"].processes[name] = running


def stop_processes(site) -> None:
    """SIGTERM to every process at once (as a rollout of all four Deployments would), then wait for each."""
    running = [site["processes"].pop(name) for name in list(site["processes"])]
    site["memory"].processes.clear()
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
    for process in running:
        stop(process)


def http(site, method: str, path: str, body=None, token: str | None = None, port: int | None = None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port or site['api_port']}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Accept": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, str(error)


def token(site, password: str | None = None) -> str | None:
    password = password or site["secrets"][af.ADMIN_SECRET]["password"]
    status, body = http(site, "POST", "/auth/token", {"username": ADMIN, "password": password})
    return body["access_token"] if status in (200, 201) else None


def logs(site) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(site["root"].glob("*.log")))


def bucket_logs(site) -> str:
    keys = [o["Key"] for o in site["s3"].list_objects_v2(Bucket=af.LOGS_BUCKET).get("Contents", [])]
    return "\n".join(site["s3"].get_object(Bucket=af.LOGS_BUCKET, Key=key)["Body"].read().decode()[-6000:] for key in keys)


def wait_until(check, timeout: float, what: str, site=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        for name, process in (site or {}).get("processes", {}).items():
            assert process.poll() is None, f"{name} exited with {process.returncode}\n{logs(site)}"
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout:.0f}s" + (f"\n{logs(site)}" if site else ""))


def healthy(site) -> bool:
    status, body = http(site, "GET", "/api/v2/monitor/health")
    return status == 200 and all(body[part]["status"] == "healthy"
                                 for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))


def probes_pass(site) -> None:
    """Each process's own probe, as the kubelet runs it (the exec probes, each in its own pod, at the same time)."""
    started, checks = time.monotonic(), {}
    for name, process in af.PROCESSES.items():
        probe = process.probe
        if isinstance(probe, af.HttpProbe):
            port = site["api_port"] if probe.port == af.API_PORT else site["ports"][probe.port]
            status, _ = http(site, "GET", probe.path, port=port)
            assert status == 200, f"{name}: {probe.path} answered {status}"
        else:
            checks[name] = subprocess.Popen(site["argv"](probe.command), env=site["env"](af.SECRET_ENV),
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, check in checks.items():
        timeout = af.PROCESSES[name].probe.timeout_seconds
        output = check.communicate(timeout=timeout)[0]
        TIMINGS[f"exec probe of the {name}"] = took = round(time.monotonic() - started, 1)
        assert check.returncode == 0, f"{name}: {af.PROCESSES[name].probe.command}\n{output}"
        # The kubelet's criterion. (Two at once on a 2-core machine at load 6 took 32 s: the timeout is not slack.)
        assert took < timeout, f"{name}'s probe took {took}s of its {timeout}s"


# ----------------------------------------------------------------------------------------------------------------
# The pods' lifecycle, in order: migrate (twice), bootstrap the admin, run, trigger, restart


@pytest.fixture(scope="module")
def migrated(site):
    with timed("first airflow db migrate"):
        first = run(site, af.MIGRATE_COMMAND)
    assert first.returncode == 0, first.stdout + first.stderr
    return first


@pytest.fixture(scope="module")
def running(site, migrated):
    with timed("four processes healthy, admin bootstrapped meanwhile"):
        start_processes(site)
        # The bootstrap needs the migrated database only, not the processes: it runs while they start.
        admin = subprocess.Popen(site["argv"](af.ADMIN_COMMAND), env=site["env"]({**af.SECRET_ENV, **af.ADMIN_ENV}),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = admin.communicate(timeout=300)[0]
        assert admin.returncode == 0, output
        assert f'User "{ADMIN}" created with role "Admin"' in output
        wait_until(lambda: healthy(site), 240, "a healthy api-server, scheduler, triggerer and dag-processor", site)
    time.sleep(5)  # past the start-up work (first DAG parse, initial heartbeats)
    site["memory"].snapshot_idle()
    return site


@pytest.fixture(scope="module")
def dag_run(running):
    site = running
    dag_id = dag_constants()["DAG_ID"]
    access = token(site)
    with timed("example DAG parsed"):
        wait_until(lambda: http(site, "GET", f"/api/v2/dags/{dag_id}", token=access)[0] == 200, 180,
                   "the example DAG in the API", site)
    status, _ = http(site, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, access)
    assert status == 200
    with timed("example DAG run (virtualenv built, model trained and registered)"):
        status, run_ = http(site, "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None}, access)
        assert status == 200, run_

        def finished():
            _, body = http(site, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_['dag_run_id']}", token=access)
            return body if isinstance(body, dict) and body["state"] in ("success", "failed") else None

        final = wait_until(finished, 420, "the DAG run's end", site)
    status, tasks = http(site, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_['dag_run_id']}/taskInstances", token=access)
    status, xcom = http(site, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_['dag_run_id']}/taskInstances/"
                        "train_and_register/xcomEntries/return_value?deserialize=true", token=access)
    return {"dag_id": dag_id, "run": final, "tasks": tasks["task_instances"], "xcom": xcom.get("value") if status == 200 else xcom}


# ----------------------------------------------------------------------------------------------------------------


def test_pins_match_the_image_and_the_platform(airflow_bin):
    requirements = (ROOT / "scripts" / "airflow-requirements.txt").read_text()
    assert f"apache-airflow=={AIRFLOW_VERSION}\n" in requirements
    for provider, version in AIRFLOW_PROVIDERS.items():
        assert f"apache-airflow-providers-{provider}=={version}\n" in requirements
    assert IMAGES["airflow"] == f"apache/airflow:{AIRFLOW_VERSION}-python3.11"
    constraints = (ROOT / "scripts" / "airflow-constraints.txt").read_text()
    for pin in re.findall(r"^([\w.-]+==[\w.]+)$", requirements, re.MULTILINE):
        assert re.search(rf"^{re.escape(pin)}$", constraints, re.MULTILINE | re.IGNORECASE), f"{pin} not in the constraints"
    # The example task's MLflow client is the server's release, its other packages the releases the platform's MLflow
    # (and the serving tests) use, so the model it logs loads there; its interpreter is the image's.
    for pin in dag_constants()["REQUIREMENTS"]:
        name, version = pin.split("==")
        assert version == (MLFLOW_VERSION if name == "mlflow-skinny" else importlib.metadata.version(name)), pin
    assert 'python_version="3.11"' in af.EXAMPLE_DAG.read_text()
    found = subprocess.run(
        [airflow_bin.parent / "python", "-c", "import sys, airflow; print(f'{sys.version_info[0]}.{sys.version_info[1]}', airflow.__version__)"],
        capture_output=True, text=True, timeout=120, env={"AIRFLOW_HOME": str(AIRFLOW_VENV / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert found.stdout.split() == ["3.11", AIRFLOW_VERSION], found.stdout + found.stderr


def test_no_secret_is_a_literal_value():
    literal = af.process_env(namespace=NAMESPACE, logs_bucket=af.LOGS_BUCKET, s3_endpoint=IN_CLUSTER_S3,
                             s3_region=REGION, mlflow_tracking_uri=IN_CLUSTER_MLFLOW)
    assert not set(literal) & (set(af.SECRET_ENV) | set(af.ADMIN_ENV))
    assert not [name for name in literal if re.search(r"PASSWORD|SECRET|FERNET|SQL_ALCHEMY_CONN|ACCESS_KEY", name)]
    connection = json.loads(literal[f"AIRFLOW_CONN_{af.LOG_CONNECTION_ID.upper()}"])
    assert not {"login", "password"} & set(connection) and set(connection["extra"]) == {"endpoint_url", "region_name"}
    # The admin's password reaches only the bootstrap, as environment, never an argument of the pod spec.
    assert "$AIRFLOW_ADMIN_PASSWORD" in af.ADMIN_COMMAND[-1]
    assert all("ADMIN" not in " ".join(p.command) for p in af.PROCESSES.values())


def test_migrations_run_over_tls_and_a_second_migrate_changes_nothing(site, migrated):
    uri = site["database"]["local_uri"]
    with psycopg.connect(uri) as db:
        ssl, user = db.execute("select ssl, current_user from pg_stat_ssl where pid = pg_backend_pid()").fetchone()
        assert (ssl, user) == (True, af.DATABASE)
        tables = {row[0] for row in db.execute("select tablename from pg_tables where schemaname = 'public'")}
    assert {"dag", "dag_run", "task_instance", "ab_user", "alembic_version"} <= tables
    before = schema_fingerprint(uri)
    with timed("second airflow db migrate"):
        again = run(site, af.MIGRATE_COMMAND)
    assert again.returncode == 0, again.stdout + again.stderr
    assert schema_fingerprint(uri) == before
    assert "Running upgrade" not in again.stdout + again.stderr


def test_the_api_server_answers_the_generated_admin_and_refuses_anonymous_calls(running):
    site = running
    probes_pass(site)
    assert http(site, "GET", "/api/v2/dags")[0] == 401
    assert token(site, password="admin") is None
    access = token(site)
    assert access
    status, body = http(site, "GET", "/api/v2/dags", token=access)
    assert status == 200 and "dags" in body
    status, _ = http(site, "GET", "/api/v2/dags", token=access + "x")
    assert status in (401, 403)


def test_the_example_dag_runs_and_its_model_is_registered_in_mlflow_under_the_alias(dag_run, site):
    from mlflow import MlflowClient

    assert dag_run["run"]["state"] == "success", bucket_logs(site) or logs(site)
    assert [task["state"] for task in dag_run["tasks"]] == ["success"]
    constants = dag_constants()
    with resolve_to_loopback(MLFLOW_HOST):
        client = MlflowClient(tracking_uri=site["mlflow"]["url"])
        version = client.get_model_version_by_alias(constants["MODEL_NAME"], constants["ALIAS"])
        run_ = client.get_run(version.run_id)
        experiment = client.get_experiment(run_.info.experiment_id).name
    assert version.run_id == dag_run["xcom"]["run_id"] and version.version == dag_run["xcom"]["version"]
    assert run_.info.status == "FINISHED"
    assert run_.data.params == {"model": "LinearRegression", "rows": "5"}
    assert run_.data.metrics["r2"] == pytest.approx(1.0)
    assert experiment == constants["EXPERIMENT"]


def test_the_task_log_lands_in_the_logs_bucket(dag_run, site):
    def task_logs():
        keys = [o["Key"] for o in site["s3"].list_objects_v2(Bucket=af.LOGS_BUCKET).get("Contents", [])]
        return [key for key in keys if f"dag_id={dag_run['dag_id']}/" in key and "task_id=train_and_register" in key]

    # The task's supervisor uploads once the task process has exited, which may be after the run is marked done.
    task_logs = wait_until(task_logs, 60, "the task log in the bucket", site)
    body = site["s3"].get_object(Bucket=af.LOGS_BUCKET, Key=task_logs[0])["Body"].read().decode()
    # The task's own output, through the virtualenv: MLflow registering the model.
    assert f"Created version '{dag_run['xcom']['version']}' of model '{dag_constants()['MODEL_NAME']}'" in body, body[-3000:]


def test_restarting_every_process_loses_no_run_history_and_logs_still_read_from_the_bucket(dag_run, running):
    site = running
    run_id = dag_run["run"]["dag_run_id"]
    with timed("stop: all four processes"):
        stop_processes(site)
    # The exec probes are not vacuous: with their process gone they fail (run together: each starts Airflow's CLI).
    exec_probes = {name: p.probe.command for name, p in af.PROCESSES.items() if isinstance(p.probe, af.ExecProbe)}
    checks = {name: subprocess.Popen(site["argv"](command), env=site["env"](af.SECRET_ENV), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for name, command in exec_probes.items()}
    for name, check in checks.items():
        output = check.communicate(timeout=120)[0]
        assert check.returncode != 0, f"{name}'s probe passed with {name} stopped:\n{output}"
    # Nothing local survives a pod's restart: the emptyDirs are new.
    shutil.rmtree(site["root"] / "home")
    (site["root"] / "home").mkdir()
    with timed("restart: four processes healthy again"):
        start_processes(site)
        wait_until(lambda: healthy(site), 240, "health after the restart", site)
    access = token(site)
    status, body = http(site, "GET", f"/api/v2/dags/{dag_run['dag_id']}/dagRuns", token=access)
    assert status == 200
    assert [(r["dag_run_id"], r["state"]) for r in body["dag_runs"]] == [(run_id, "success")]
    path = f"/api/v2/dags/{dag_run['dag_id']}/dagRuns/{run_id}/taskInstances/train_and_register/logs/1"
    status, log = http(site, "GET", path, token=access)
    assert status == 200, log
    assert af.LOGS_BUCKET in json.dumps(log), json.dumps(log)[:2000]


def test_the_admin_bootstrap_is_idempotent_and_the_secret_stays_the_source_of_truth(running):
    site = running
    old = site["secrets"][af.ADMIN_SECRET]["password"]
    # Rotated to a password with a leading `-` and shell/option look-alikes, through `users reset-password`.
    site["secrets"][af.ADMIN_SECRET]["password"] = new = "--password=" + secrets.token_urlsafe(18) + " -x"
    with timed("admin bootstrap (existing user, rotated password)"):
        again = run(site, af.ADMIN_COMMAND, {**af.SECRET_ENV, **af.ADMIN_ENV})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "password reset successfully" in again.stdout + again.stderr
    assert token(site, new) and token(site, old) is None
    with psycopg.connect(site["database"]["local_uri"]) as db:
        assert db.execute("select count(*) from ab_user").fetchone() == (1,)


def test_metrics_reach_statsd_under_the_names_the_exporter_maps(dag_run, site):
    """The rendered metrics settings, on the wire: what the statsd-exporter's mapping (and so the alerts) expects."""
    import yaml

    from components.airflow.component import STATSD_MAPPINGS

    lines = site["statsd"].lines
    matches = {m["match"] for m in yaml.safe_load(STATSD_MAPPINGS)["mappings"]}
    assert any(line.startswith("airflow.scheduler_heartbeat:") and line.endswith("|c") for line in lines), lines[:50]
    # InfluxDB-style tags after the name: the exporter strips them into labels, then maps the bare name.
    runs = [line for line in lines if line.startswith(f"airflow.dagrun.duration.success,dag_id={dag_run['dag_id']}")]
    assert runs and runs[0].endswith("|ms"), [line for line in lines if "dagrun" in line][:20]
    assert {"airflow.scheduler_heartbeat", "airflow.dagrun.duration.success", "airflow.dagrun.duration.failed"} <= matches


def test_fernet_keys_from_random_bytes_are_valid(airflow_bin):
    key = af.fernet_key(base64.b64encode(bytes(range(250, 256)) * 5 + b"\xfb\xff").decode())
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", key)
    check = subprocess.run([airflow_bin.parent / "python", "-c", "import sys; from cryptography.fernet import Fernet; "
                            "Fernet(sys.argv[1])", key], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
