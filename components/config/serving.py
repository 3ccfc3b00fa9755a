"""`mlops-platform:serving`: registered MLflow models served over HTTP, each following an alias."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from components.config.base import Block
from components.config.formats import DnsLabel, matching, whole
from components.config.problems import Problem, invalid, reject
from components.config.resources import ResourceSpec

Replicas = whole(1, 20)
ModelName = matching(
    # What a `models:/<name>@<alias>` URI carries without escaping: no '/', '@', ':' or spaces.
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "expected a registered model name of letters, digits, '.', '_' and '-' (as in models:/<name>@<alias>)",
    256,
)
Alias = matching(
    # MLflow's own rule for aliases, plus the names it reserves: `latest` and version-like `v<digits>`.
    r"^(?!latest$)(?![vV][0-9]+$)[A-Za-z0-9_-]+$",
    "expected an MLflow alias of letters, digits, '_' and '-', such as champion (not latest, not v<number>)",
    255,
)


class ServedModel(Block):
    """One registered model served by its own Deployment and Service, following one alias."""

    name: DnsLabel = Field(description="Name of the Deployment and Service (a DNS label, unique in the list).")
    model: ModelName = Field(description="Registered model name in MLflow.")
    alias: Alias = Field(
        "champion",
        description="Alias to serve (models:/<model>@<alias>); moving it in MLflow rolls the new version out.",
    )
    replicas: Replicas = Field(1, description="Serving pods; each holds one copy of the model in memory.")
    resources: ResourceSpec = Field(
        # One pod serving a tiny scikit-learn model measured 263 MiB RSS (tools/serving_benchmark.py): the request
        # covers it with room for a small model; the limit leaves room for a larger one and for a version being
        # loaded beside the served one during an alias move.
        ResourceSpec({"cpu": "100m", "memory": "384Mi"}, {"cpu": "1", "memory": "1Gi"}),
        description="Requests and limits of each serving pod; size memory for two copies of the model (an alias move loads the new one beside the old).",
    )


def _a_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return value
    raise invalid("expected a list of models, each {name, model, alias, replicas, resources}")


class ServingConfig(Block):
    """Model serving: one Deployment and Service per listed model."""

    models: Annotated[tuple[ServedModel, ...], BeforeValidator(_a_list)] = Field(
        (),
        description="Models to serve, each {name, model, alias, replicas, resources}; empty or absent: nothing is deployed.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ServingConfig:
        first: dict[str, int] = {}
        problems = []
        for index, served in enumerate(self.models):
            if served.name in first:
                allowed = f"already the name of serving.models[{first[served.name]}]; each name must be unique"
                problems.append(Problem(f"models[{index}].name", served.name, allowed))
            first.setdefault(served.name, index)
        reject(problems)
        return self
