"""The e2e fixture: the dev platform, brought up once per session with the README's command."""

from __future__ import annotations

import subprocess

import pytest

from tools.render import ROOT


@pytest.fixture(scope="session")
def platform():
    """The dev stack, up (idempotent: an existing stack is only updated)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "dev-up.sh")], check=True, timeout=1800)
