"""The offline gate: checkov over every rendered object of both stacks, yamllint over the YAML we write.

Both tools are installed by scripts/test.sh; locally they skip (saying why) when absent, in CI (`CI=true`) their
absence fails the build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.render import ROOT, write_manifests

CHECKOV = ROOT / ".ci" / "checkov" / "bin" / "checkov"
YAMLLINT = shutil.which("yamllint") or str(ROOT / "venv" / "bin" / "yamllint")


def require(tool: str | Path, why: str) -> None:
    if not Path(tool).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is missing in CI: {why}")
        pytest.skip(f"{tool} is not installed ({why}); scripts/test.sh installs it")


@pytest.fixture(scope="module")
def checkov_reports(renderings, tmp_path_factory) -> dict[str, dict]:
    require(CHECKOV, "checkov scans the rendered manifests")
    reports = {}
    for stack, rendering in renderings.items():
        out = tmp_path_factory.mktemp(f"rendered-{stack}")
        write_manifests(rendering, out)
        result = subprocess.run(
            # Not --quiet: the report must list the skipped checks too.
            [str(CHECKOV), "-d", str(out), "--framework", "kubernetes", "--compact", "--skip-download", "-o", "json"],
            capture_output=True, text=True, timeout=900,
        )
        report = json.loads(result.stdout)
        reports[stack] = report[0] if isinstance(report, list) else report
    return reports


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_checkov_finds_no_failed_check(checkov_reports, stack):
    report = checkov_reports[stack]
    failed = [(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 200
    assert report["summary"]["parsing_errors"] == 0


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_skipped_check_carries_its_reason(checkov_reports, stack):
    skipped = checkov_reports[stack]["results"]["skipped_checks"]
    assert skipped, "the workloads skip image digests and pull policy, with reasons"
    for check in skipped:
        comment = check["check_result"].get("suppress_comment") or ""
        assert len(comment.split()) >= 5, (check["check_id"], check["resource"], comment)
    assert {c["check_id"] for c in skipped} <= {"CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_38", "CKV_K8S_40", "CKV_K8S_43"}


def test_checkov_fails_a_workload_that_breaks_a_rule(renderings, tmp_path):
    require(CHECKOV, "checkov scans the rendered manifests")
    dev = renderings["dev"]
    manifest = dev.find(kind="Deployment", name="mlflow").manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    (tmp_path / "deployment.yaml").write_text(json.dumps(manifest))
    result = subprocess.run(
        [str(CHECKOV), "-f", str(tmp_path / "deployment.yaml"), "--framework", "kubernetes", "--compact", "--quiet",
         "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )
    failed = {f["check_id"] for f in json.loads(result.stdout)["results"]["failed_checks"]}
    assert "CKV_K8S_20" in failed  # containers should not run with allowPrivilegeEscalation


def yaml_files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files", "*.yaml", "*.yml", ".yamllint"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in tracked.stdout.splitlines() if line]


def test_yamllint_passes_on_the_yaml_we_write():
    require(YAMLLINT, "yamllint checks the stack files, workflows and Kind config")
    files = yaml_files()
    assert {"Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", ".github/workflows/test.yml"} <= set(files)
    result = subprocess.run([YAMLLINT, "--strict", *files], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_fails_on_bad_yaml(tmp_path):
    require(YAMLLINT, "yamllint checks the stack files, workflows and Kind config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("config:\n  a: 1\n  a: 2\n")
    result = subprocess.run([YAMLLINT, "--strict", "-c", str(ROOT / ".yamllint"), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "duplication of key" in result.stdout
