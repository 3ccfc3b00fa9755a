"""Model serving for real: the platform's MLflow (the rendered dev Deployment, SQLite + moto S3 with proxied
artifacts; and the rendered prod Deployment with basic auth on PostgreSQL), a scikit-learn model registered under
an alias, and the serving app started with exactly the pod's command and environment (components.model_serving),
beside `mlflow models serve` on the same model.

Only what a pod has and this machine lacks is mapped: the ConfigMap mount and /tmp become temporary directories
(the app file is copied there alone, as the ConfigMap delivers it) and ports become free local ones. Cluster DNS is
a `sitecustomize` shim per process, and it is also the network policy: the app's process resolves only MLflow's
in-cluster name, MLflow's only the object store's. So the app sends the Host header MLflow's allow-list expects,
and an app that tried to fetch artifacts from the object store itself (MLflow >= 3.x offers clients presigned URLs
for that) would fail here as it would behind the platform's NetworkPolicies.
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import functools
import http.client
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from components import mlflow_server
from components import model_serving as serving
from tests.conftest import rendered
from tests.realservers import (
    LocalMapping,
    apply_declared_roles_and_databases,
    cluster_dns,
    container_command,
    container_env,
    ensure_bucket,
    free_port,
    moto_server,
    postgres_bin,
    postgres_server,
    resolve_to_loopback,
    start,
    stop,
    wait_for_http,
)
from tests.support import container, secret_data
from tools.render import Rendering, render_stack

pd = pytest.importorskip("pandas")
sklearn = pytest.importorskip("sklearn", reason="scikit-learn (an MLflow dependency, shipped in the -full image)")

NAMESPACE = "mlops-mlflow"
MLFLOW_HOST = f"{mlflow_server.SERVICE_NAME}.{NAMESPACE}.svc.cluster.local"
IN_CLUSTER_MLFLOW = f"http://{MLFLOW_HOST}:{mlflow_server.PORT}"
STORAGE_HOST = "minio.mlops-storage.svc.cluster.local"
IN_CLUSTER_S3 = f"http://{STORAGE_HOST}:9000"
MODEL = "tiny-regressor"
FRAME = {"x1": [0.5, 1.5, -2.0, 10.0], "x2": [1.0, 0.0, 3.25, -4.5]}



def frame() -> pd.DataFrame:
    return pd.DataFrame(FRAME)


ROWS = [list(row) for row in zip(*FRAME.values(), strict=True)]
RECORDS = [dict(zip(FRAME, row, strict=True)) for row in ROWS]
# One request per input format of MLflow's scoring protocol (and CSV, which it also accepts).
REQUESTS = {
    "dataframe_split": ({"dataframe_split": {"columns": list(FRAME), "data": ROWS}}, "application/json"),
    "dataframe_records": ({"dataframe_records": RECORDS}, "application/json"),
    "instances": ({"instances": RECORDS}, "application/json"),
    "inputs": ({"inputs": FRAME}, "application/json"),
    "csv": ("x1,x2\n" + "".join(f"{a},{b}\n" for a, b in ROWS), "text/csv"),
}

# Requests a client can get wrong, each of which must get a 4xx with a message.
MALFORMED = {
    "not JSON": ("{nope", "application/json"),
    "empty body": ("", "application/json"),
    "a JSON list": ("[1, 2]", "application/json"),
    "JSON null": ("null", "application/json"),
    "no input field": ('{"rows": [[1, 2]]}', "application/json"),
    "two input fields": (json.dumps({"inputs": FRAME, "instances": [{"x1": 1.0, "x2": 2.0}]}), "application/json"),
    "split without data": ('{"dataframe_split": {"columns": ["x1", "x2"]}}', "application/json"),
    "split not an object": ('{"dataframe_split": 5}', "application/json"),
    "records not a list": ('{"dataframe_records": "x1=1"}', "application/json"),
    "a missing column": ('{"dataframe_records": [{"x1": 1.0}]}', "application/json"),
    "a string for a number": ('{"dataframe_records": [{"x1": "one", "x2": 2.0}]}', "application/json"),
    "ragged inputs": ('{"inputs": {"x1": [1.0, 2.0], "x2": [1.0]}}', "application/json"),
    "a NaN": ('{"dataframe_records": [{"x1": NaN, "x2": 1.0}]}', "application/json"),
    "bad CSV": ('x1,x2\n1,"', "text/csv"),
    "not UTF-8": (b"\xff\xfe{}", "application/json"),
    "unsupported content type": ("<x1>1</x1>", "application/xml"),
    "a form post (curl -d default)": ("x1=1&x2=2", "application/x-www-form-urlencoded"),
    "no content type": ('{"inputs": {"x1": [1.0], "x2": [2.0]}}', None),
    "a charset other than UTF-8": ('{"inputs": {"x1": [1.0], "x2": [2.0]}}', "application/json; charset=latin-1"),
}


# ----------------------------------------------------------------------------------------------------------------
# HTTP and processes


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(port: int, path: str, body: str | bytes | None = None, content_type: str | None = None, timeout: float = 30) -> Answer:
    """GET, or POST `body` with exactly the Content-Type given (none when None; urllib would add a form type)."""
    data = body.encode() if isinstance(body, str) else body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST" if data is not None else "GET", path, body=data,
                           headers={"Content-Type": content_type} if content_type else {})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text exposition, or None."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


def predict(port: int, name: str) -> Answer:
    payload, content_type = REQUESTS[name]
    return call(port, "/invocations", payload if isinstance(payload, str) else json.dumps(payload), content_type)


def eventually(check, timeout: float = 90.0, interval: float = 0.3, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(interval)


@dataclass
class ServingPod:
    """The serving app as the pod runs it."""

    process: subprocess.Popen
    port: int
    log: Path
    root: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        answer = call(self.port, "/metrics")
        assert answer.status == 200
        return answer.body.decode()

    def wait_ready(self, version: str | None = None, timeout: float = 180.0) -> dict:
        def ready():
            assert self.process.poll() is None, f"the app exited:\n{self.log_text()[-4000:]}"
            answer = call(self.port, "/readyz")
            if answer.status == 200 and (version is None or answer.json()["version"] == version):
                return answer.json()
            return None

        try:
            return eventually(ready, timeout, what=f"/readyz with version {version}")
        except AssertionError as error:
            raise AssertionError(f"{error}; last /readyz: {call(self.port, '/readyz').body!r}\n{self.log_text()[-4000:]}") from None




SERVING_NAMESPACE = "mlops-serving"


def rendered_server(rendering: Rendering, deployment: str) -> dict:
    """The serving container of a rendered Deployment in the serving namespace."""
    (found,) = [d for d in rendering.find_all(kind="Deployment", name=deployment) if d.metadata["namespace"] == SERVING_NAMESPACE]
    return container(found.manifest(redact=False), "server")


def start_serving_pod(root: Path, env: dict[str, str], mlflow_port: int) -> ServingPod:
    """Run the rendered container's command with `env` (the container's environment) as the kubelet would, MLflow on
    `mlflow_port`."""
    root.mkdir(parents=True, exist_ok=True)
    app_dir, tmp = root / "app", root / "tmp"
    for directory in (app_dir, tmp):
        directory.mkdir(exist_ok=True)
    # The ConfigMap holds the app file and nothing else: the app must run with no other file of this repository.
    shutil.copy(serving.APP_SOURCE, app_dir / serving.APP_FILE)
    port = free_port()
    mapping = LocalMapping(paths={serving.APP_DIR: app_dir, "/tmp": tmp}, text={IN_CLUSTER_MLFLOW: f"http://{MLFLOW_HOST}:{mlflow_port}"})
    argv = container_command(rendered_server(rendered("dev"), "example"), mapping)
    argv[argv.index("--port") + 1] = str(port)
    process_env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        **{name: mapping.apply(value) for name, value in env.items()},
        # What the pod has and this machine lacks: cluster DNS (MLflow only: the pod's one egress flow), and /tmp as
        # the default temporary directory.
        **cluster_dns(root, MLFLOW_HOST),
        "TMPDIR": str(tmp),
    }
    log = root / "app.log"
    process = start(argv, process_env, log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process, timeout=90)
    except Exception:
        stop(process)
        raise AssertionError(log.read_text()[-4000:]) from None
    return ServingPod(process, port, log, root)


@contextlib.contextmanager
def serving_pod(root: Path, env: dict[str, str], mlflow_port: int) -> Iterator[ServingPod]:
    pod = start_serving_pod(root, env, mlflow_port)
    try:
        yield pod
    finally:
        stop(pod.process)


def pod_env(model: str = MODEL, alias: str = "champion", poll_seconds: int = 1, **extra: str) -> dict[str, str]:
    """The container environment of the dev stack's rendered serving Deployment, with this test's model and alias
    and a one-second poll, so alias moves show quickly."""
    env = {item["name"]: item["value"] for item in rendered_server(rendered("dev"), "example")["env"]}
    assert env == serving.serve_env(IN_CLUSTER_MLFLOW, "example-model", "champion"), "the dev pod has no secret env"
    return {**env, serving.ENV_MODEL: model, serving.ENV_ALIAS: alias, serving.ENV_POLL: str(poll_seconds), **extra}


# ----------------------------------------------------------------------------------------------------------------
# The registry


@contextlib.contextmanager
def tracking(url: str) -> Iterator[None]:
    """MLflow's fluent API on `url`, from the test's side: a developer's client, which may reach the object store."""
    import mlflow

    mlflow.set_tracking_uri(url)
    try:
        with resolve_to_loopback(STORAGE_HOST):
            yield
    finally:
        mlflow.set_tracking_uri(None)


def register_version(url: str, slope: float | None, experiment: str = "serving-check") -> str:
    """Log and register one version: y = slope*x1 + x2 + 1, or (slope None) an unfitted model that cannot predict.
    Logged with a serving input example, as mlflow.sklearn.log_model(input_example=...) writes it."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"x1": [0.0, 1.0, 2.0, 3.0], "x2": [1.0, 0.0, 1.0, 0.0]})
    model = LinearRegression()
    if slope is not None:
        model.fit(x, slope * x["x1"] + x["x2"] + 1)
    with tracking(url):
        mlflow.set_experiment(experiment)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model, name="model", registered_model_name=MODEL, input_example=x.head(2),
                signature=infer_signature(x, x["x1"]),
                # Given, not inferred: inference runs the model in a subprocess and adds nothing here.
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            )
    return str(info.registered_model_version)


def set_alias(url: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=url).set_registered_model_alias(MODEL, alias, version)


def pyfunc_predictions(url: str, model_uri: str) -> list[float]:
    import mlflow.pyfunc

    with tracking(url):
        return mlflow.pyfunc.load_model(model_uri).predict(frame()).tolist()


# ----------------------------------------------------------------------------------------------------------------
# Fixtures: the dev MLflow pod, the registered versions, the app following `champion`


@pytest.fixture(scope="module")
def dev_mlflow(renderings, tmp_path_factory):
    """The rendered dev MLflow pod (init container, then server) against moto, as tests/test_mlflow_real.py runs it."""
    dev = renderings["dev"]
    deployment = dev.find(kind="Deployment", name="mlflow").manifest(redact=False)
    root = tmp_path_factory.mktemp("serving-mlflow")
    for directory in ("data", "tmp"):
        (root / directory).mkdir()
    port = free_port()
    with moto_server() as moto:
        mapping = LocalMapping(
            paths={"/mlflow": root / "data", "/tmp": root / "tmp"},
            text={IN_CLUSTER_S3: f"http://{STORAGE_HOST}:{moto.port}", ":30500": f":{port}"},
        )
        server = container(deployment, "mlflow")
        argv = container_command(server, mapping)
        argv[argv.index("--port") + 1] = str(port)
        env = {**container_env(server, dev, NAMESPACE, mapping), **cluster_dns(root, STORAGE_HOST)}
        boto3.client(
            "s3", endpoint_url=moto.endpoint, region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="mlflow-artifacts")
        init = container(deployment, "db-upgrade")
        subprocess.run(container_command(init, mapping), env=container_env(init, dev, NAMESPACE, mapping), check=True,
                       capture_output=True, timeout=180)
        process = start(argv, env, root / "server.log")
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", process, timeout=120)
            yield {"port": port, "url": f"http://localhost:{port}", "root": root}
        finally:
            stop(process)


@pytest.fixture(scope="module")
def registry(dev_mlflow):
    """Three versions of one model: two that predict differently and one that cannot predict at all."""
    url = dev_mlflow["url"]
    versions = {"v1": register_version(url, 2.0), "v2": register_version(url, 3.0), "broken": register_version(url, None)}
    set_alias(url, "champion", versions["v1"])
    return versions


@pytest.fixture(scope="module")
def champion_pod(dev_mlflow, registry, tmp_path_factory):
    with serving_pod(tmp_path_factory.mktemp("serving-champion"), pod_env(), dev_mlflow["port"]) as pod:
        pod.wait_ready(registry["v1"])
        yield pod


@pytest.fixture(scope="module")
def mlflow_models_serve(dev_mlflow, registry, tmp_path_factory):
    """MLflow's own scoring server on the same model, the one clients may switch from."""
    port, log = free_port(), tmp_path_factory.mktemp("models-serve") / "serve.log"
    argv = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "MLFLOW_TRACKING_URI": dev_mlflow["url"], "HOME": str(log.parent),
           **cluster_dns(log.parent, STORAGE_HOST)}
    process = start(argv, env, log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", process, timeout=120)
        yield port
    finally:
        stop(process)


# ----------------------------------------------------------------------------------------------------------------
# Without servers: what the ConfigMap delivers


@functools.cache
def load_app_module():
    """The app file as a module (importing it starts nothing: uvicorn calls its factory)."""
    spec = importlib.util.spec_from_file_location("model_serving_app", serving.APP_SOURCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_the_app_imports_only_what_the_mlflow_image_ships():
    tree = ast.parse(serving.APP_SOURCE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    # mlflow[extras] brings prometheus_client (prometheus-flask-exporter); mlflow-skinny brings fastapi and uvicorn.
    assert third_party == {"fastapi", "mlflow", "prometheus_client"}


def test_the_pod_command_and_environment_name_what_the_app_reads():
    app = load_app_module()
    assert (app.ENV_MODEL, app.ENV_ALIAS, app.ENV_POLL, app.ENV_DOWNLOAD_DIR) == (
        serving.ENV_MODEL, serving.ENV_ALIAS, serving.ENV_POLL, serving.ENV_DOWNLOAD_DIR)
    assert serving.SERVE_COMMAND[:3] == ("uvicorn", f"{Path(serving.APP_FILE).stem}:create_app", "--factory")
    assert callable(app.create_app)
    assert serving.SERVE_COMMAND[serving.SERVE_COMMAND.index("--port") + 1] == str(serving.PORT)
    env = serving.serve_env(IN_CLUSTER_MLFLOW, MODEL, "champion")
    assert env["MLFLOW_TRACKING_URI"] == IN_CLUSTER_MLFLOW
    assert not set(env) & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", *serving.CREDENTIAL_ENV}
    assert app.settings_from(env).download_dir.startswith("/tmp/")


def test_a_bad_configuration_names_every_bad_variable():
    app = load_app_module()
    with pytest.raises(ValueError) as error:
        app.settings_from({app.ENV_POLL: "soon"})
    for name in ("MLFLOW_TRACKING_URI", app.ENV_MODEL, app.ENV_ALIAS, f"{app.ENV_POLL}='soon'"):
        assert name in str(error.value)


# ----------------------------------------------------------------------------------------------------------------
# The dev platform: serving, equivalence, metrics, bad requests, alias moves


def test_ready_and_predicts_what_pyfunc_predicts_in_every_input_format(champion_pod, dev_mlflow, registry):
    assert call(champion_pod.port, "/healthz").status == 200
    assert champion_pod.wait_ready() == {"ready": True, "model": MODEL, "alias": "champion", "version": registry["v1"]}
    expected = pyfunc_predictions(dev_mlflow["url"], f"models:/{MODEL}@champion")
    assert expected == pytest.approx([2.0 * a + b + 1 for a, b in zip(FRAME["x1"], FRAME["x2"], strict=True)])
    for name in REQUESTS:
        answer = predict(champion_pod.port, name)
        assert answer.status == 200, (name, answer.body)
        assert answer.json() == {"predictions": expected}, name
        assert answer.headers["x-model-version"] == registry["v1"]


def test_clients_can_switch_from_mlflow_models_serve(champion_pod, mlflow_models_serve):
    for name in REQUESTS:
        ours, theirs = predict(champion_pod.port, name), predict(mlflow_models_serve, name)
        assert (ours.status, ours.json()) == (theirs.status, theirs.json()), name
    for path in ("/ping", "/health"):
        assert call(champion_pod.port, path).status == call(mlflow_models_serve, path).status == 200
    assert call(champion_pod.port, "/version").body == call(mlflow_models_serve, "/version").body


def test_malformed_requests_get_a_4xx_with_a_message(champion_pod, mlflow_models_serve):
    for name, (body, content_type) in MALFORMED.items():
        answer = call(champion_pod.port, "/invocations", body, content_type)
        assert 400 <= answer.status < 500, (name, answer.status, answer.body)
        message = answer.json()["message"] if answer.headers["content-type"] == "application/json" else answer.body.decode()
        assert len(message) > 20, (name, message)
        assert "Traceback" not in answer.body.decode() and "stack_trace" not in answer.body.decode(), name
        # Where MLflow's server answers with a client error, the same one (it answers 500 with no content type).
        theirs = call(mlflow_models_serve, "/invocations", body, content_type)
        if theirs.status < 500:
            assert answer.status == theirs.status, name
    assert call(champion_pod.port, "/invocations", '{"nope"', "application/json").json()["error_code"] == "BAD_REQUEST"
    assert champion_pod.process.poll() is None and champion_pod.wait_ready()


def test_metrics_count_requests_by_status_and_show_the_served_version(champion_pod, registry):
    predict(champion_pod.port, "inputs")
    call(champion_pod.port, "/invocations", "{nope", "application/json")
    metrics = champion_pod.metrics()
    labels = {"model": MODEL, "alias": "champion"}
    assert sample(metrics, "model_version_info", **labels, version=registry["v1"]) == 1.0
    assert metrics.count("model_version_info{") == 1
    assert sample(metrics, "model_serving_ready", **labels) == 1.0
    assert sample(metrics, "model_serving_requests_total", **labels, status="200") >= 1
    assert sample(metrics, "model_serving_requests_total", **labels, status="400") >= 1
    assert sample(metrics, "model_serving_request_duration_seconds_count", **labels, status="200") >= 1
    assert sample(metrics, "model_serving_request_duration_seconds_bucket", **labels, status="200", le="+Inf") >= 1
    assert sample(metrics, "process_resident_memory_bytes") > 0
    assert "_created" not in metrics
    assert "serving" in champion_pod.log_text() and f"version={registry['v1']}" in champion_pod.log_text()


def test_an_alias_move_reaches_the_pod_without_downtime_and_a_broken_version_never_serves(dev_mlflow, registry, tmp_path):
    url = dev_mlflow["url"]
    set_alias(url, "challenger", registry["v1"])
    expected = {
        registry["v1"]: pyfunc_predictions(url, f"models:/{MODEL}/{registry['v1']}"),
        registry["v2"]: pyfunc_predictions(url, f"models:/{MODEL}/{registry['v2']}"),
    }
    with serving_pod(tmp_path / "pod", pod_env(alias="challenger"), dev_mlflow["port"]) as pod:
        pod.wait_ready(registry["v1"])
        answers, done = [], threading.Event()

        def traffic():
            while not done.is_set():
                answers.append(predict(pod.port, "dataframe_split"))

        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            clients = [pool.submit(traffic) for _ in range(2)]
            try:
                set_alias(url, "challenger", registry["v2"])
                pod.wait_ready(registry["v2"], timeout=120)
                eventually(lambda: answers and answers[-1].headers.get("x-model-version") == registry["v2"], what="v2 answering")
                # Then the alias moves to a version that cannot predict: it is loaded and rejected, v2 keeps serving.
                set_alias(url, "challenger", registry["broken"])
                eventually(lambda: "rejected" in pod.log_text(), timeout=120, what="the broken version rejected")
                time.sleep(2)  # a few more polls: it is never swapped in
            finally:
                done.set()
                for client in clients:
                    client.result()

        # No request failed while versions changed, and each answer is exactly its version's predictions.
        assert len(answers) > 20
        assert [a.status for a in answers if a.status != 200] == []
        for answer in answers:
            assert answer.json() == {"predictions": expected[answer.headers["x-model-version"]]}
        served = [a.headers["x-model-version"] for a in answers]
        assert set(served) == {registry["v1"], registry["v2"]} and served[-1] == registry["v2"]

        assert pod.wait_ready()["version"] == registry["v2"]
        log = pod.log_text()
        assert f"event=serving model={MODEL} alias=challenger version={registry['v2']} previous={registry['v1']}" in log
        assert f"event=keeping_version model={MODEL} alias=challenger version={registry['v2']} candidate={registry['broken']}" in log
        metrics, labels = pod.metrics(), {"model": MODEL, "alias": "challenger"}
        assert sample(metrics, "model_version_info", **labels, version=registry["v2"]) == 1.0
        assert metrics.count("model_version_info{") == 1
        assert sample(metrics, "model_serving_alias_checks_total", **labels, result="swapped") == 2.0
        # Rejected once, and not downloaded again on each later poll.
        assert sample(metrics, "model_serving_alias_checks_total", **labels, result="rejected") >= 2
        assert log.count("event=keeping_version") == 1
        # Only the served version and the one before it stay on the pod's emptyDir.
        assert len(list((pod.root / "tmp" / "models").iterdir())) == 2


def test_an_unknown_model_or_alias_leaves_the_pod_alive_and_not_ready_with_the_reason(dev_mlflow, registry, tmp_path):
    port = dev_mlflow["port"]
    cases = {"no-such-model": {"model": "no-such-model", "alias": "champion"}, "no-such-alias": {"model": MODEL, "alias": "no-such-alias"}}
    with contextlib.ExitStack() as stack:
        # Both pods start together: most of a start is importing MLflow.
        pods = {missing: stack.enter_context(serving_pod(tmp_path / missing, pod_env(**labels), port)) for missing, labels in cases.items()}
        for missing, pod in pods.items():
            reason = eventually(lambda pod=pod: "cannot resolve" in call(pod.port, "/readyz").body.decode() and call(pod.port, "/readyz"),
                                what="a not-ready reason")
            assert reason.status == 503
            assert missing in reason.json()["reason"] and "not found" in reason.json()["reason"], reason.json()
            assert "event=model_not_ready" in pod.log_text() and missing in pod.log_text()
            answer = call(pod.port, "/invocations", json.dumps(REQUESTS["inputs"][0]), "application/json")
            assert answer.status == 503 and missing in answer.json()["message"]
        time.sleep(3)  # several polls later: still alive, still saying why, never restarted
        for missing, pod in pods.items():
            assert pod.process.poll() is None
            assert call(pod.port, "/healthz").status == 200 and call(pod.port, "/readyz").status == 503
            metrics = pod.metrics()
            assert sample(metrics, "model_serving_ready", **cases[missing]) == 0.0
            assert sample(metrics, "model_serving_alias_checks_total", **cases[missing], result="resolve_failed") >= 3
            assert "model_version_info{" not in metrics
        # Once the alias exists, the pod becomes ready on its own: no restart, no manual step.
        set_alias(dev_mlflow["url"], "no-such-alias", registry["v1"])
        assert pods["no-such-alias"].wait_ready(registry["v1"], timeout=120)["version"] == registry["v1"]


# ----------------------------------------------------------------------------------------------------------------
# The prod shape: MLflow with basic auth (rendered prod Deployment on PostgreSQL), a read-only serving user


PROD_POSTGRES = "postgres-rw.mlops-data.svc.cluster.local:5432"
AWS_S3 = "https://s3.eu-central-1.amazonaws.com"
PROD_BUCKET = "acme-mlops-prod-mlflow-artifacts"


@pytest.fixture(scope="module")
def prod_serving() -> Rendering:
    """Prod (MLflow with basic auth, secrets in Vault) serving this test's model: the reader Job and the pod's
    Secret references exist only where a model is listed."""
    return render_stack("prod", overrides={"mlops-platform:serving": {"models": [{"name": "tiny", "model": MODEL}]}})


@pytest.fixture(scope="module")
def prod_mlflow(prod_serving, tmp_path_factory):
    """The rendered prod MLflow pod, as tests/test_mlflow_prod_real.py runs it: db upgrade, then one server."""
    if postgres_bin() is None or shutil.which("openssl") is None:
        pytest.skip("Debian's postgresql (and openssl) are not installed (scripts/test.sh installs them)")
    pytest.importorskip("psycopg2", reason="MLflow's PostgreSQL driver (psycopg2-binary, test requirements)")
    prod = prod_serving
    deployment = prod.find(kind="Deployment", name="mlflow").manifest(redact=False)
    root = tmp_path_factory.mktemp("serving-mlflow-prod")
    port = free_port()
    with moto_server() as moto, postgres_server() as pg:
        apply_declared_roles_and_databases(prod, pg["admin"])
        text = {
            PROD_POSTGRES: f"127.0.0.1:{pg['port']}", AWS_S3: moto.endpoint,
            # The rendered URIs say postgresql://, which SQLAlchemy >= 2.1 binds to psycopg 3, through which MLflow
            # 3.15.1 cannot set an alias ("operator does not exist: integer = character varying"). psycopg2 is
            # the driver MLflow's [db] extra ships; reported, to be fixed where the URI is generated.
            "postgresql://": "postgresql+psycopg2://",
        }
        auth_dir, tmp = root / "auth", root / "tmp"
        auth_dir.mkdir()
        tmp.mkdir()
        auth = secret_data(prod, NAMESPACE, "mlflow-auth")
        (auth_dir / "basic_auth.ini").write_text(LocalMapping(text=text).apply(auth["basic_auth.ini"]))
        mapping = LocalMapping(paths={"/etc/mlflow/auth": auth_dir, "/tmp": tmp}, text=text)
        server = container(deployment, "mlflow")
        env = container_env(server, prod, NAMESPACE, mapping)
        client = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        ensure_bucket(client, PROD_BUCKET, env["AWS_DEFAULT_REGION"])
        init = container(deployment, "db-upgrade")
        subprocess.run(container_command(init, mapping), env=container_env(init, prod, NAMESPACE, mapping),
                       check=True, capture_output=True, timeout=300)
        argv = container_command(server, mapping)
        argv[argv.index("--port") + 1] = str(port)
        process = start(argv, env, root / "server.log")
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", process, timeout=180)
            yield {"port": port, "url": f"http://{MLFLOW_HOST}:{port}", "admin": (auth["admin-username"], auth["admin-password"])}
        finally:
            stop(process)


def run_reader_job(rendering: Rendering, mlflow_port: int, root: Path) -> subprocess.CompletedProcess:
    """The rendered bootstrap Job's container (command, environment, Secrets from the rendered ones), MLflow mapped to
    `mlflow_port`; the process resolves MLflow's in-cluster name only."""
    (job,) = [j for j in rendering.find_all(kind="Job") if j.metadata["labels"]["app.kubernetes.io/name"] == serving.APP]
    worker = container(job.manifest(redact=False), "create-reader")
    mapping = LocalMapping(text={IN_CLUSTER_MLFLOW: f"http://{MLFLOW_HOST}:{mlflow_port}"})
    env = {**container_env(worker, rendering, job.metadata["namespace"], mapping), **cluster_dns(root, MLFLOW_HOST)}
    return subprocess.run(container_command(worker, mapping), env=env, capture_output=True, text=True, timeout=180)


def test_the_reader_job_creates_a_read_only_user_and_converges_on_every_run(prod_mlflow, prod_serving, tmp_path):
    from mlflow.server.auth.client import AuthServiceClient

    first = run_reader_job(prod_serving, prod_mlflow["port"], tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"event=user result=created username={serving.READER_USERNAME}" in first.stdout
    assert f"result=granted username={serving.READER_USERNAME} registered_model={MODEL} permission=READ" in first.stdout
    assert f"result=granted username={serving.READER_USERNAME} experiment=* permission=READ" in first.stdout
    # What MLflow stored, not what the Job says it asked for.
    with resolve_to_loopback(MLFLOW_HOST), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", prod_mlflow["admin"][0])
        patch.setenv("MLFLOW_TRACKING_PASSWORD", prod_mlflow["admin"][1])
        stored = AuthServiceClient(prod_mlflow["url"]).get_user_permission(serving.READER_USERNAME, "registered_model", MODEL)
        assert stored.permission == "READ"
    # A second run (a replaced Job, a retried pod) succeeds and changes nothing that matters.
    again = run_reader_job(prod_serving, prod_mlflow["port"], tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "event=user result=password_set" in again.stdout and again.stdout.count("result=regranted") == 2
    # A grant widened by hand is narrowed back to READ by the next run.
    with resolve_to_loopback(MLFLOW_HOST), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", prod_mlflow["admin"][0])
        patch.setenv("MLFLOW_TRACKING_PASSWORD", prod_mlflow["admin"][1])
        admin = AuthServiceClient(prod_mlflow["url"])
        admin.revoke_user_permission(serving.READER_USERNAME, "registered_model", MODEL)
        admin.grant_user_permission(serving.READER_USERNAME, "registered_model", MODEL, "MANAGE")
        assert run_reader_job(prod_serving, prod_mlflow["port"], tmp_path).returncode == 0
        assert admin.get_user_permission(serving.READER_USERNAME, "registered_model", MODEL).permission == "READ"


def test_the_reader_job_fails_loudly_with_a_wrong_admin_password(prod_mlflow, prod_serving, tmp_path, monkeypatch):
    import tests.realservers as realservers

    def wrong_admin(rendering, namespace, name):
        data = secret_data(rendering, namespace, name)
        return {**data, "admin-password": "not-the-admin-password"} if name == "mlflow-auth" else data

    monkeypatch.setattr(realservers, "secret_data", wrong_admin)
    result = run_reader_job(prod_serving, prod_mlflow["port"], tmp_path)
    assert result.returncode != 0
    assert "event=failed HTTP 401" in result.stderr, result.stdout + result.stderr


def test_with_mlflow_auth_the_rendered_pod_serves_as_the_read_only_user(prod_mlflow, prod_serving, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    url = prod_mlflow["url"]
    assert run_reader_job(prod_serving, prod_mlflow["port"], tmp_path).returncode == 0
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", prod_mlflow["admin"][0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", prod_mlflow["admin"][1])
    with resolve_to_loopback(MLFLOW_HOST):
        # A training pipeline (as the admin here) registers the model after the user exists.
        version = register_version(url, 2.0, experiment="prod-training")
        set_alias(url, "champion", version)
        expected = pyfunc_predictions(url, f"models:/{MODEL}@champion")
        # Someone narrows the user to its registered model alone.
        admin = AuthServiceClient(url)
        admin.revoke_user_permission(serving.READER_USERNAME, "experiment", "*")

        # The rendered prod pod: its command, its environment, its credentials from the rendered reader Secret (a
        # one-second poll instead of 30, so the test need not wait).
        env = container_env(rendered_server(prod_serving, "tiny"), prod_serving, SERVING_NAMESPACE, LocalMapping())
        assert env[serving.CREDENTIAL_ENV[0]] == serving.READER_USERNAME
        with serving_pod(tmp_path / "pod", {**env, serving.ENV_POLL: "1"}, prod_mlflow["port"]) as pod:
            # READ on the registered model resolves the alias, but the version's files are the logged model's, which
            # MLflow's artifact proxy guards by the experiment it was logged in: a clear reason, not a crash.
            reason = eventually(lambda: "cannot load" in call(pod.port, "/readyz").body.decode() and call(pod.port, "/readyz"),
                                what="a permission reason")
            assert reason.status == 503 and ("403" in reason.json()["reason"] or "PERMISSION_DENIED" in reason.json()["reason"]), reason.json()
            # The Job's next run restores READ on every experiment; the pod picks it up without a restart.
            rerun = run_reader_job(prod_serving, prod_mlflow["port"], tmp_path)
            assert "result=granted username=model-serving experiment=* permission=READ" in rerun.stdout, rerun.stdout + rerun.stderr
            assert pod.wait_ready(version, timeout=120)["version"] == version
            answer = predict(pod.port, "dataframe_records")
            assert (answer.status, answer.json()) == (200, {"predictions": expected})

        # Read-only: the serving user cannot move the alias it follows.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", env[serving.CREDENTIAL_ENV[0]])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", env[serving.CREDENTIAL_ENV[1]])
        with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403"):
            MlflowClient(tracking_uri=url).set_registered_model_alias(MODEL, "champion", version)
