"""Run what the program puts into containers as real processes on 127.0.0.1.

A container's command, arguments and environment are taken from the rendered manifest; only in-cluster host
names, mount paths and ports are rewritten to local ones. Secret references are resolved from the rendered
Secrets, as the kubelet would.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import secret_data
from tools.render import Rendering


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            env[item["name"]] = secret_data(rendering, namespace, ref["name"])[ref["key"]]
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
