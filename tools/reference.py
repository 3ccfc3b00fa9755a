"""Checks against upstream reference data: CRD schemas for custom resources, values.yaml for Helm values.

The data lives outside the project (`../shared/reference/charts/<chart>/<version>/`, or $MLOPS_REFERENCE_DIR);
callers skip, saying so, when it is absent.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools.render import ROOT


def reference_dir() -> Path | None:
    """The reference data directory, or None when this checkout has none beside it."""
    path = Path(os.environ.get("MLOPS_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
    return path if (path / "charts").is_dir() else None


class UpstreamLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: the CRDs are megabytes
    """PyYAML that also accepts the bare `=` value some upstream CRDs contain."""


UpstreamLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _documents(path: Path) -> list[Any]:
    text = path.read_text()
    if path.name.endswith(".tmpl"):
        # Helm templates: drop the template-only lines, keep the YAML between them.
        text = "\n".join(line for line in text.splitlines() if "{{" not in line)
    return [doc for doc in yaml.load_all(text, Loader=UpstreamLoader) if isinstance(doc, dict)]


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """openAPIV3Schema by (apiVersion, kind), for every CRD in the reference charts."""
    root = reference_dir()
    if root is None:
        return {}
    return schemas_of(doc for path in sorted(root.glob("charts/*/*/crds/*.yaml*")) for doc in _documents(path))


def schemas_of(documents: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict]:
    """openAPIV3Schema by (apiVersion, kind) of the CustomResourceDefinitions among `documents`, made strict."""
    schemas: dict[tuple[str, str], dict] = {}
    for doc in documents:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


def _strict(schema: Any) -> Any:
    """A copy where objects with declared properties reject unknown fields (as the API server prunes/rejects)."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "pattern" in node and isinstance(node["pattern"], str):
                node["pattern"] = _python_pattern(node["pattern"])
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def _python_pattern(pattern: str) -> str:
    """Go (RE2) patterns as Python's `re` accepts them: inline flags such as `(?i)` must lead the pattern."""
    flags = "".join(re.findall(r"\(\?([a-z]+)\)", pattern))
    if flags:
        pattern = "(?" + "".join(sorted(set(flags))) + ")" + re.sub(r"\(\?[a-z]+\)", "", pattern)
    return pattern


def custom_resource_problems(
    manifest: Mapping[str, Any], schemas: Mapping[tuple[str, str], dict] | None = None
) -> list[str] | None:
    """Schema violations of a custom resource, or None when no CRD describes its kind (the reference CRDs, or
    `schemas`, e.g. those the rendered charts ship)."""
    schema = (crd_schemas() if schemas is None else schemas).get((manifest["apiVersion"], manifest["kind"]))
    if schema is None:
        return None
    validator = jsonschema.Draft7Validator(schema)
    return sorted(
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(dict(manifest))
    )


def chart_values(chart: str, version: str) -> dict | None:
    """The pinned chart's default values.yaml, or None when the reference data is absent."""
    root = reference_dir()
    path = root / "charts" / chart / version / "values.yaml" if root else None
    if path is None or not path.exists():
        return None
    return yaml.load(path.read_text(), Loader=UpstreamLoader) or {}


def unknown_values_keys(values: Mapping[str, Any], reference: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Paths in `values` that the chart's values.yaml does not declare. Below a key whose default is empty
    ({} or null) the chart takes free-form content, so nothing there is checked; nor below `resources`, a
    Kubernetes ResourceRequirements whose default may list requests only."""
    unknown = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in reference:
            unknown.append(path)
        elif key == "resources":
            continue
        elif isinstance(value, Mapping) and isinstance(reference[key], Mapping) and reference[key]:
            unknown += unknown_values_keys(value, reference[key], f"{path}.")
    return unknown
