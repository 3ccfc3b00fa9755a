"""Every Kubernetes object a stack registers is valid: built-in kinds for Kubernetes 1.33 with kubernetes-validate
--strict, custom resources against the reference CRDs with unknown fields rejected."""

from __future__ import annotations

import os

import kubernetes_validate
import pytest

from tests.conftest import stack_charts, stack_crd_schemas
from tools.reference import crd_schemas, custom_resource_problems, reference_dir
from tools.render import manifests

KUBERNETES_VERSION = "1.33"
needs_reference = pytest.mark.skipif(
    reference_dir() is None, reason="../shared/reference (upstream CRDs) is not beside this checkout"
)


def builtin_problems(manifest: dict) -> str | None:
    """Problems of a built-in object; raises SchemaNotFoundError for a kind Kubernetes does not ship."""
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return str(error)
    return None


def is_builtin(manifest: dict) -> bool:
    try:
        builtin_problems(manifest)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    return True


def objects(rendering, builtin: bool) -> dict[str, dict]:
    return {
        f"{m['kind']}/{m['metadata'].get('name', r.name)}": m
        for r, m in manifests(rendering)
        if is_builtin(m) == builtin
    }


def test_every_builtin_object_validates_strictly(rendering):
    found = objects(rendering, builtin=True)
    assert len(found) >= 20
    assert {name: p for name, m in found.items() if (p := builtin_problems(m))} == {}


@needs_reference
def test_every_custom_resource_validates_against_its_crd(rendering):
    """Against the reference CRDs and those the stack's charts install. A kind no CRD describes fails, unless a chart
    that may ship it is missing from the cache: then the rest is checked and the test skips, naming both."""
    found = objects(rendering, builtin=False)
    assert {m["kind"] for m in found.values()} >= {"Cluster", "Database"}
    schemas = stack_crd_schemas(rendering.stack)
    problems = {name: custom_resource_problems(m, schemas) for name, m in found.items()}
    assert {name: p for name, p in problems.items() if p} == {}
    undescribed = sorted(name for name, p in problems.items() if p is None)
    missing = stack_charts(rendering.stack).missing
    if undescribed and missing and os.environ.get("MLOPS_REQUIRE_CHARTS") != "1":
        pytest.skip(f"no CRD describes {', '.join(undescribed)}; charts not cached: {', '.join(sorted(missing))}")
    assert undescribed == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda m: m["spec"].update(replica=1), "replica"),
        (lambda m: m["spec"].update(replicas="one"), "one"),
    ],
)
def test_the_builtin_validator_rejects_typos_and_wrong_types(dev, mutate, fragment):
    manifest = dev.find(kind="Deployment", name="mlflow").manifest()
    mutate(manifest)
    assert fragment in (builtin_problems(manifest) or "")


@needs_reference
def test_the_crd_validator_rejects_unknown_fields_and_bad_values(dev):
    manifest = dev.find(kind="Cluster", name="postgres").manifest()
    manifest["spec"]["instance"] = 3
    manifest["spec"]["storage"]["size"] = 10
    problems = "\n".join(custom_resource_problems(manifest))
    assert "'instance' was unexpected" in problems
    assert "spec.storage.size" in problems


@needs_reference
def test_reference_crds_cover_the_operators_we_use():
    kinds = set(crd_schemas())
    assert ("postgresql.cnpg.io/v1", "Cluster") in kinds
    assert ("monitoring.coreos.com/v1", "PodMonitor") in kinds


def test_an_unknown_kind_is_neither_builtin_nor_described():
    gadget = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}}
    assert not is_builtin(gadget)
    assert custom_resource_problems(gadget) is None
