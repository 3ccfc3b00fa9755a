"""Redis (Valkey): mock checks of the StatefulSet, then a real server started with exactly its arguments.

Debian ships Redis, not Valkey; Valkey keeps Redis's flags, config file syntax and CLI, so the container's
`valkey-server`/`valkey-cli` map to `redis-server`/`redis-cli` like a host name maps to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from urllib.parse import unquote, urlsplit

import pytest

from components.versions import IMAGES
from tests.realservers import LocalMapping, container_command, container_env, free_port, needs_debian
from tests.support import container, pod_spec, secret_data

NAMESPACE = "mlops-data"


def statefulset(rendering) -> dict:
    return rendering.find(kind="StatefulSet", name="redis").manifest(redact=False)


def test_pinned_valkey_with_append_only_persistence_on_a_retained_claim(rendering):
    manifest = statefulset(rendering)
    server = container(manifest, "valkey")
    assert server["image"] == IMAGES["valkey"]
    args = server["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--dir") + 1] == "/data"
    volumes = {v["name"]: v for v in pod_spec(manifest)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "redis-data"
    claim = rendering.find(kind="PersistentVolumeClaim", name="redis-data").inputs["spec"]
    assert claim["resources"]["requests"]["storage"] == {"dev": "2Gi", "prod": "10Gi"}[rendering.stack]


def test_password_reaches_the_server_only_from_its_secret(dev):
    manifest = statefulset(dev)
    server = container(manifest, "valkey")
    data = secret_data(dev, NAMESPACE, "redis-auth")
    assert data["password"] not in " ".join(server["args"])
    assert data["auth.conf"] == f'requirepass "{data["password"]}"\n'
    auth = next(v for v in pod_spec(manifest)["volumes"] if v["name"] == "auth")
    assert auth["secret"]["secretName"] == "redis-auth"
    assert all(data["password"] not in json.dumps(c.inputs) for c in dev.find_all(kind="ConfigMap"))


def test_url_round_trips_the_password_and_names_the_service(dev):
    data = secret_data(dev, NAMESPACE, "redis-auth")
    url = urlsplit(data["url"])
    assert url.scheme == "redis" and url.hostname == "redis.mlops-data.svc.cluster.local" and url.port == 6379
    assert url.username == "default" and unquote(url.password) == data["password"]
    assert dev.outputs["redis_url_secret"] == "redis-auth"


def test_dev_node_port(dev, prod):
    assert dev.find(kind="Service", name="redis").inputs["spec"]["ports"][0]["nodePort"] == 30679
    assert prod.find(kind="Service", name="redis").inputs["spec"]["type"] == "ClusterIP"


requires_redis = needs_debian(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="Debian's redis-server is not installed (scripts/test.sh installs it)",
)


@pytest.fixture
def redis_pod(dev, tmp_path):
    """The StatefulSet's container as a local process: its args, its auth file from the rendered Secret."""
    manifest = statefulset(dev)
    server = container(manifest, "valkey")
    data, auth = tmp_path / "data", tmp_path / "auth"
    data.mkdir()
    auth.mkdir()
    (auth / "auth.conf").write_text(secret_data(dev, NAMESPACE, "redis-auth")["auth.conf"])
    port = free_port()
    mapping = LocalMapping(paths={"/data": data, "/etc/valkey/auth": auth})
    argv = container_command(server, mapping)
    argv[0] = shutil.which("redis-server")
    argv[argv.index("--port") + 1] = str(port)
    env = container_env(server, dev, NAMESPACE, mapping)
    probe = container_command({"command": server["readinessProbe"]["exec"]["command"]}, mapping)
    probe[-1] = probe[-1].replace("valkey-cli", "redis-cli").replace("-p 6379", f"-p {port}")
    pod = {"argv": argv, "env": env, "port": port, "data": data, "probe": probe, "process": None}

    def start() -> None:
        pod["process"] = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while subprocess.run(probe, env=env, capture_output=True).returncode != 0:
            assert pod["process"].poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "readiness probe never passed"
            time.sleep(0.1)

    pod["start"] = start
    yield pod
    if pod["process"] and pod["process"].poll() is None:
        pod["process"].kill()
        pod["process"].wait()


def cli(pod, *args: str, auth: bool = True) -> subprocess.CompletedProcess:
    env = dict(pod["env"]) if auth else {k: v for k, v in pod["env"].items() if k != "REDISCLI_AUTH"}
    return subprocess.run(["redis-cli", "-p", str(pod["port"]), *args], env=env, capture_output=True, text=True, timeout=30)


@requires_redis
def test_real_server_requires_the_password_and_the_probe_passes_with_it(redis_pod, dev):
    redis_pod["start"]()
    assert "NOAUTH" in cli(redis_pod, "ping", auth=False).stdout
    without_auth = {k: v for k, v in redis_pod["env"].items() if k != "REDISCLI_AUTH"}
    assert subprocess.run(redis_pod["probe"], env=without_auth, capture_output=True).returncode != 0
    assert cli(redis_pod, "ping").stdout.strip() == "PONG"
    url = secret_data(dev, NAMESPACE, "redis-auth")["url"].replace(
        "redis.mlops-data.svc.cluster.local:6379", f"127.0.0.1:{redis_pod['port']}"
    )
    assert subprocess.run(["redis-cli", "-u", url, "ping"], capture_output=True, text=True).stdout.strip() == "PONG"


@requires_redis
def test_append_only_file_survives_a_killed_server(redis_pod):
    redis_pod["start"]()
    keys = 2000
    script = "".join(f"SET session:{i} value-{i}\n" for i in range(keys))
    loaded = subprocess.run(
        ["redis-cli", "-p", str(redis_pod["port"])], input=script, env=redis_pod["env"], capture_output=True, text=True
    )
    assert loaded.stdout.count("OK") == keys
    assert "aof_enabled:1" in cli(redis_pod, "info", "persistence").stdout
    time.sleep(1.5)  # appendfsync everysec: one fsync interval
    os.kill(redis_pod["process"].pid, signal.SIGKILL)
    redis_pod["process"].wait()
    assert not list(redis_pod["data"].glob("*.rdb")), "RDB snapshots are off: only the AOF may carry the data"

    redis_pod["start"]()
    assert cli(redis_pod, "dbsize").stdout.strip() == str(keys)
    assert cli(redis_pod, "get", f"session:{keys - 1}").stdout.strip() == f"value-{keys - 1}"
