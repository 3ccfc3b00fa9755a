"""What the e2e tests share: the reason to skip without a Kind cluster, kubectl, and the platform fixture."""

from __future__ import annotations

import shutil
import subprocess

import pytest

CONTEXT = "kind-mlops"


def cluster_unreachable_reason() -> str | None:
    for tool in ("kubectl", "pulumi", "kind", "docker"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; the e2e test needs a Kind cluster (scripts/dev-up.sh)"
    probe = subprocess.run(
        ["kubectl", "--context", CONTEXT, "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=20
    )
    if probe.returncode != 0:
        return f"no Kubernetes cluster reachable at context {CONTEXT}: {probe.stderr.strip()[:200]}"
    return None


needs_kind = pytest.mark.skipif((reason := cluster_unreachable_reason()) is not None, reason=reason or "")


def kubectl(*args: str, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["kubectl", "--context", CONTEXT, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result
