"""tools.render's snapshot comparison: what proves a refactor leaves every URN, input and option as it was."""

from __future__ import annotations

import copy

from tools.render import compare_snapshots, snapshot


def test_a_stack_is_identical_to_its_own_snapshot(dev):
    assert compare_snapshots(snapshot(dev), snapshot(dev)) == []


def test_every_kind_of_change_is_reported(dev):
    before = snapshot(dev)
    after = copy.deepcopy(before)
    urn = next(u for u in after if "apps/v1:Deployment::" in u)
    renamed = next(u for u in after if u.endswith("::cluster-storage-class"))
    after[urn]["protect"] = not after[urn]["protect"]
    after[urn]["inputs"]["metadata"]["labels"] = {"changed": "yes"}
    after[renamed.replace("cluster-storage-class", "cluster-class")] = after.pop(renamed)
    problems = compare_snapshots(before, after)
    assert f"gone: {renamed}" in problems
    assert f"new: {renamed.replace('cluster-storage-class', 'cluster-class')}" in problems
    assert any(p.startswith(f"changed protect: {urn}") for p in problems)
    assert any(p.startswith(f"changed inputs: {urn}") for p in problems)
    assert len(problems) == 4
