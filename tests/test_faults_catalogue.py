"""The fault catalogue (tools/faults.py) stays runnable: each fault's code is found exactly once, so a refactor that
moves or rewrites it is noticed here and not hours into a release check."""

from __future__ import annotations

from collections import Counter

from tools.faults import CATALOGUE, locate, run_pytest, tracked_files
from tools.render import ROOT


def test_every_fault_finds_its_code_exactly_once():
    files = tracked_files(ROOT)
    assert {fault.id: locate(fault, ROOT, files) for fault in CATALOGUE}


def test_the_catalogue_is_large_unique_and_runs_known_tests():
    assert len(CATALOGUE) >= 40
    assert [i for i, n in Counter(f.id for f in CATALOGUE).items() if n > 1] == []
    missing = {f.id: t for f in CATALOGUE for t in f.tests if not (ROOT / t).is_file()}
    assert missing == {}


def test_a_verdict_comes_only_from_pytest_and_a_timeout_is_no_kill(tmp_path):
    (tmp_path / "test_passes.py").write_text("def test_ok():\n    pass\n")
    (tmp_path / "test_fails.py").write_text("def test_broken():\n    assert False\n")
    (tmp_path / "test_hangs.py").write_text("import time\n\ndef test_slow():\n    time.sleep(30)\n")
    assert run_pytest(tmp_path, ["test_passes.py"], timeout=60) == ("SURVIVED", "")
    assert run_pytest(tmp_path, ["test_fails.py"], timeout=60) == ("killed", "test_fails.py::test_broken")
    outcome, _ = run_pytest(tmp_path, ["test_hangs.py"], timeout=3)
    assert outcome == "TIMEOUT"


def test_the_catalogue_test_itself_never_kills_a_fault(tmp_path):
    # Under a fault, a snippet is missing from the scratch copy: the catalogue test would fail and count as a kill.
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_faults_catalogue.py").write_text("def test_snippets():\n    assert False\n")
    (tmp_path / "tests" / "test_other.py").write_text("def test_ok():\n    pass\n")
    assert run_pytest(tmp_path, [], timeout=60) == ("SURVIVED", "")


def test_a_kill_counts_only_when_the_killing_test_passes_without_the_fault(tmp_path, monkeypatch):
    import tools.faults as faults

    scratch = tmp_path / "checkout"
    (scratch / "tests").mkdir(parents=True)
    (scratch / "app.py").write_text("VALUE = 1\n")
    (scratch / "tests" / "test_app.py").write_text("from app import VALUE\n\ndef test_value():\n    assert VALUE == 1\n")
    (scratch / "tests" / "test_flaky.py").write_text("def test_always_broken():\n    assert False\n")
    monkeypatch.setattr(faults, "SEARCHED", ("app.py",))
    files = ["app.py", "tests/test_app.py", "tests/test_flaky.py"]
    real = faults.Fault("value-two", "config", "-", "VALUE = 1", "VALUE = 2", ("tests/test_app.py",))
    assert faults.run_fault(real, scratch, files, quick=True, timeout=60)[:2] == ("killed", "tests/test_app.py::test_value")
    broken = faults.Fault("value-two", "config", "-", "VALUE = 1", "VALUE = 2", ("tests/test_flaky.py",))
    outcome, by, _ = faults.run_fault(broken, scratch, files, quick=True, timeout=60)
    assert outcome == "UNSOUND" and "fails without the fault" in by
    assert (scratch / "app.py").read_text() == "VALUE = 1\n"  # the scratch copy is restored either way
