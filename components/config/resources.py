"""Container requests and limits, the one settings shape every workload block shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass
from typing_extensions import TypedDict

from components.config.formats import Quantity, quantity_value
from components.config.problems import Problem, reject

RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")

Amounts = TypedDict(
    "Amounts",
    {
        "cpu": Annotated[Quantity, Field(description="CPU, in cores (1) or millicores (500m).")],
        "memory": Annotated[Quantity, Field(description="Memory, in bytes with a binary suffix (512Mi, 1Gi).")],
        "ephemeral-storage": Annotated[Quantity, Field(description="Scratch disk of the container (1Gi).")],
    },
    total=False,
)
"""Quantities by resource name; a plain dict at run time, so components can copy it into a manifest."""
Amounts.__pydantic_config__ = ConfigDict(extra="forbid")


# A pydantic dataclass rather than a model: components build their own defaults as `ResourceSpec(requests, limits)`.
@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ResourceSpec:
    """Container requests and limits, as Kubernetes quantities keyed by resource name (`cpu`, `memory`)."""

    requests: Amounts = Field(default_factory=dict, description="Guaranteed resources the scheduler reserves.")
    limits: Amounts = Field(
        default_factory=dict,
        description="Hard ceiling; memory over it gets the container OOM-killed.",
    )

    def as_k8s(self) -> dict[str, dict[str, str]]:
        return {"requests": dict(self.requests), "limits": dict(self.limits)}

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceSpec:
        reject([
            Problem(f"requests.{name}", request, f"must not exceed its limit {self.limits[name]}")
            for name, request in self.requests.items()
            if name in self.limits and quantity_value(request) > quantity_value(self.limits[name])
        ])
        return self


def with_defaults(default: ResourceSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` (a raw `resources` block) over `default`, resource by resource."""
    merged = dict(given)
    for kind in ("requests", "limits"):
        amounts = given.get(kind)
        if amounts is None:
            merged[kind] = dict(getattr(default, kind))
        elif isinstance(amounts, Mapping):
            merged[kind] = {**getattr(default, kind), **amounts}
    return merged
