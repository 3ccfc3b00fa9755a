"""Benchmark: the model-serving app beside `mlflow models serve --env-manager local` on the same tiny model, under the
same bounded load on 127.0.0.1. Not a test: it prints numbers.

    python -m tools.serving_benchmark --requests 3000 --concurrency 4

It starts a throwaway MLflow server (SQLite, proxied artifacts on local disk), registers a scikit-learn linear
model under the alias `champion`, then runs the app with the pod's command and environment
(components.model_serving; only the mount path and the port are local) and MLflow's scoring server, one uvicorn
process each. Each server gets a warm-up, then `--requests` prediction requests from `--concurrency` closed-loop
clients on keep-alive connections. It prints p50/p90/p99 latency, throughput, errors, and the resident memory (RSS)
of each server's process tree after the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from components import model_serving as serving

MODEL, ALIAS = "benchmark-regressor", "champion"
BIN = Path(sys.executable).parent
PAYLOAD = json.dumps({"dataframe_split": {"columns": ["x1", "x2"], "data": [[0.5, 1.0]]}}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path, ready_url: str):
    """A server in its own process group, stopped (the whole group) on exit."""
    with log.open("ab") as handle:
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(ready_url, process)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def base_env(home: Path) -> dict[str, str]:
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "PYTHONUNBUFFERED": "1"}


def tracking_server(root: Path, port: int) -> tuple[list[str], dict[str, str]]:
    argv = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--serve-artifacts",
            "--artifacts-destination", str(root / "artifacts")]
    # The GenAI job runner (eight consumer processes) would only compete with the servers measured here.
    return argv, {**base_env(root), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def register_model(tracking_uri: str) -> str:
    """y = 2*x1 + x2 + 1, registered under ALIAS; the version."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    import sklearn
    from mlflow import MlflowClient
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"x1": [0.0, 1.0, 2.0, 3.0], "x2": [1.0, 0.0, 1.0, 0.0]})
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            LinearRegression().fit(x, 2 * x["x1"] + x["x2"] + 1), name="model", registered_model_name=MODEL,
            input_example=x.head(2), pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
    MlflowClient().set_registered_model_alias(MODEL, ALIAS, info.registered_model_version)
    return str(info.registered_model_version)


def serving_app(root: Path, tracking_uri: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The pod's command and environment; the ConfigMap mount, /tmp and the port made local."""
    app_dir, tmp = root / "app", root / "tmp"
    app_dir.mkdir(parents=True)
    tmp.mkdir()
    shutil.copy(serving.APP_SOURCE, app_dir / serving.APP_FILE)
    argv = [part.replace(serving.APP_DIR, str(app_dir)) for part in serving.SERVE_COMMAND]
    argv[0] = str(BIN / argv[0])
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    env = serving.serve_env(tracking_uri, MODEL, ALIAS)
    env[serving.ENV_DOWNLOAD_DIR] = str(tmp / "models")
    return argv, {**env, **base_env(tmp), "TMPDIR": str(tmp)}


def mlflow_models_serve(root: Path, tracking_uri: str, port: int) -> tuple[list[str], dict[str, str]]:
    root.mkdir(parents=True)
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@{ALIAS}", "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return argv, {**base_env(root), "MLFLOW_TRACKING_URI": tracking_uri}


@dataclass
class Result:
    latencies: list[float]
    errors: int
    seconds: float

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def post(connection, body: bytes) -> int:
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status


def load(port: int, requests: int, concurrency: int) -> Result:
    """`requests` predictions from `concurrency` closed-loop clients, each on one keep-alive connection."""
    import http.client

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    share = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, failed = [], 0
        for _ in range(count):
            started = time.perf_counter()
            status = post(connection, PAYLOAD)
            mine.append(time.perf_counter() - started)
            failed += status != 200
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(n,)) for n in share]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(latencies, errors[0], time.perf_counter() - started)


def tree_rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory of a process and its descendants (MLflow's CLI runs uvicorn as a child): the sum and the
    largest single process, in MiB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    sizes, todo = [], [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        sizes.append(next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0))
    return sum(sizes) / 1024, max(sizes, default=0) / 1024


def first_answer(port: int, check: Callable[[bytes], None]) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/invocations", body=PAYLOAD, headers={"Content-Type": "application/json"})
    check(connection.getresponse().read())
    connection.close()


def compare(servers: dict[str, tuple[int, subprocess.Popen]], options) -> list[dict]:
    """Warm-up, then `--rounds` rounds taking turns (the order alternates), so a change in the machine's other load
    hits both servers alike; latencies and time are summed over the rounds."""
    for port, _ in servers.values():
        load(port, options.warmup, options.concurrency)
    results = {name: Result([], 0, 0.0) for name in servers}
    names = list(servers)
    for round_number in range(options.rounds):
        for name in names if round_number % 2 == 0 else reversed(names):
            result = load(servers[name][0], options.requests // options.rounds, options.concurrency)
            total = results[name]
            results[name] = Result(total.latencies + result.latencies, total.errors + result.errors, total.seconds + result.seconds)
    return [
        {
            "server": name, "p50_ms": result.percentile(0.50), "p90_ms": result.percentile(0.90),
            "p99_ms": result.percentile(0.99), "mean_ms": statistics.fmean(result.latencies) * 1000,
            "rps": len(result.latencies) / result.seconds, "errors": result.errors,
            "rss_mib": tree_rss_mib(servers[name][1].pid),
        }
        for name, result in results.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.serving_benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per server")
    parser.add_argument("--concurrency", type=int, default=4, help="closed-loop clients")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument("--rounds", type=int, default=6, help="turns each server takes (the measured requests split)")
    options = parser.parse_args(argv)

    load_before = os.getloadavg()[0]  # other work on this machine skews every number; printed with them
    root = Path(tempfile.mkdtemp(prefix="serving-benchmark-"))
    try:
        with ExitStack() as stack:
            mlflow_port = free_port()
            tracking_uri = f"http://127.0.0.1:{mlflow_port}"
            stack.enter_context(running(*tracking_server(root, mlflow_port), root / "mlflow.log", f"{tracking_uri}/health"))
            version = register_model(tracking_uri)
            def check(body: bytes) -> None:
                (prediction,) = json.loads(body)["predictions"]
                if abs(prediction - (2 * 0.5 + 1.0 + 1)) > 1e-9:
                    raise SystemExit(f"unexpected prediction {prediction}")

            app_port, serve_port = free_port(), free_port()
            app = stack.enter_context(running(*serving_app(root / "app", tracking_uri, app_port), root / "app.log",
                                              f"http://127.0.0.1:{app_port}/readyz"))
            serve = stack.enter_context(running(*mlflow_models_serve(root / "serve", tracking_uri, serve_port),
                                                root / "serve.log", f"http://127.0.0.1:{serve_port}/ping"))
            for port in (app_port, serve_port):
                first_answer(port, check)
            rows = compare({"app (components/model_serving)": (app_port, app), "mlflow models serve": (serve_port, serve)}, options)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"model {MODEL} v{version} (LinearRegression, 2 features), 1 row per request, dataframe_split; "
          f"{options.requests} requests in {options.rounds} alternating rounds after {options.warmup} warm-up, "
          f"{options.concurrency} clients, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'server':34} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'req/s':>8} {'errors':>7} "
          f"{'RSS MiB (all processes / largest)':>34}")
    for row in rows:
        total, largest = row["rss_mib"]
        print(f"{row['server']:34} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f} {row['p99_ms']:8.2f} {row['mean_ms']:8.2f} "
              f"{row['rps']:8.1f} {row['errors']:7d} {f'{total:.0f} / {largest:.0f}':>34}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
