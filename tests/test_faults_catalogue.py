"""The fault catalogue (tools/faults.py) stays runnable: each fault's code is found exactly once, so a refactor that
moves or rewrites it is noticed here and not hours into a release check."""

from __future__ import annotations

from collections import Counter

from tools.faults import CATALOGUE, locate, tracked_files
from tools.render import ROOT


def test_every_fault_finds_its_code_exactly_once():
    files = tracked_files(ROOT)
    assert {fault.id: locate(fault, ROOT, files) for fault in CATALOGUE}


def test_the_catalogue_is_large_unique_and_runs_known_tests():
    assert len(CATALOGUE) >= 40
    assert [i for i, n in Counter(f.id for f in CATALOGUE).items() if n > 1] == []
    missing = {f.id: t for f in CATALOGUE for t in f.tests if not (ROOT / t).is_file()}
    assert missing == {}
