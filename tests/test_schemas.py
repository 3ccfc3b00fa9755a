"""Every Kubernetes object a stack registers is valid for Kubernetes 1.33, strictly (unknown fields fail)."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tools.render import manifests

KUBERNETES_VERSION = "1.33"


def schema_problems(manifest: dict) -> str | None:
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return f"no schema for {manifest['apiVersion']} {manifest['kind']}: an object we cannot check is a failure"
    except kubernetes_validate.ValidationError as error:
        return f"{error.path}: {error.message}" if hasattr(error, "path") else str(error)
    return None


def test_every_object_validates_strictly(rendering):
    problems = {
        f"{manifest['kind']}/{manifest['metadata'].get('name', resource.name)}": schema_problems(manifest)
        for resource, manifest in manifests(rendering)
    }
    assert len(problems) >= 14
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda m: m["spec"].update(replica=1), "replica"),
        (lambda m: m["spec"].update(replicas="one"), "one"),
    ],
)
def test_the_validator_rejects_typos_and_wrong_types(dev, mutate, fragment):
    manifest = dev.find(kind="Deployment", name="mlflow").manifest()
    mutate(manifest)
    assert fragment in (schema_problems(manifest) or "")


def test_an_unknown_kind_is_reported_not_passed():
    assert "no schema" in schema_problems({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}})
