"""What every settings block shares: unknown keys refused, camelCase keys as users write them, null as absent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

from components.config.resources import ResourceSpec, with_defaults


def null_as_empty(value: Any) -> Any:
    """A key with nothing under it is YAML null: read it as an empty mapping, that is, as the mapping's defaults."""
    return {} if value is None else value


def engine_default(data: Any, engine: str, key: str, value: Any) -> Any:
    """A block's raw `data` with `key` (as users write it) set to `value` when its engine is `engine` and the stack
    file leaves `key` out: a default that depends on the engine, for a `mode="before"` validator."""
    if isinstance(data, Mapping) and data.get("engine") == engine and key not in data:
        return {**data, key: value}
    return data


class Block(BaseModel):
    """A mapping of settings in a stack file (`mlops-platform:mlflow`, its `resources`, ...)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        # Users write camelCase keys; code (and tests) may still build blocks with the Python names.
        validate_by_alias=True,
        validate_by_name=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any) -> Any:
        # `mlflow:` with nothing under it is YAML null: the block's defaults, as if it were absent.
        data = null_as_empty(data)
        if isinstance(data, Mapping):
            return _resources_over_defaults(cls, data)
        return data


def _resources_over_defaults(block: type[Block], data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A `resources` block overrides only what it names: `requests: {memory: 1Gi}` keeps the default CPU request."""
    for name, spec in block.model_fields.items():
        key = spec.alias or name
        given = data.get(key)
        if spec.annotation is ResourceSpec and key in data and (given is None or isinstance(given, Mapping)):
            data = {**data, key: with_defaults(spec.default, given or {})}
    return data
