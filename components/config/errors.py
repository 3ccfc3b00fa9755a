"""pydantic's ValidationError, worded for people editing Pulumi.<stack>.yaml: one line per problem, naming the key
as they write it (`mlops-platform:objectStore.buckets[2]`), the value found, and what is allowed."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from typing import Any

import pulumi
import typing_extensions
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from components.config.problems import PROBLEMS, ROOT_PROBLEMS, VALUE

Path = tuple[str | int, ...]

_NOT_A_MAPPING = ("model_type", "model_attributes_type", "dataclass_type", "dict_type", "typed_dict_type")
_UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")


class ConfigError(pulumi.RunError):
    """A stack setting is invalid; the message names every bad key, its value and what is allowed."""


def describe(
    error: ValidationError,
    stack: str,
    project: str,
    root: type[BaseModel],
    hidden: frozenset[str],
    root_extra_keys: tuple[str, ...] = (),
) -> ConfigError:
    """One ConfigError listing every problem of `error`; values of keys in `hidden` (secrets) show as [secret]."""
    words = _Wording(root, root_extra_keys)
    lines = [
        f"{project}:{_dotted(path)} = {_shown(path, value, hidden)}: {allowed}"
        for details in error.errors()
        for path, value, allowed in words.problems(details)
    ]
    return ConfigError(
        f"invalid configuration in Pulumi.{stack}.yaml ({len(lines)} problem(s)):\n  - " + "\n  - ".join(lines)
    )


class _Wording:
    """Turns one pydantic error into (key path, value, what is allowed) triples."""

    def __init__(self, root: type[BaseModel], root_extra_keys: tuple[str, ...]) -> None:
        self.root = root
        self.root_extra_keys = root_extra_keys

    def problems(self, details: ErrorDetails) -> Iterator[tuple[Path, Any, str]]:
        loc, kind = tuple(details["loc"]), details["type"]
        if kind in (PROBLEMS, ROOT_PROBLEMS):
            base = () if kind == ROOT_PROBLEMS else loc
            for problem in details["ctx"]["problems"]:
                yield (*base, *problem.key.split(".")), problem.value, problem.allowed
        elif kind == VALUE:
            yield loc, details["input"], details["ctx"]["allowed"]
        elif kind in _UNKNOWN_KEY:
            yield loc, details["input"], f"unknown key (a typo?); allowed keys: {', '.join(self.keys_at(loc[:-1]))}"
        elif kind == "missing":
            yield loc, None, f"required when {_dotted(loc[:-1])} is set" if loc[:-1] else "required"
        elif kind in _NOT_A_MAPPING:
            yield loc, details["input"], "expected a mapping of settings"
        else:  # a shape no format anticipated: pydantic's own words are still better than a traceback
            yield loc, details["input"], details["msg"]

    def keys_at(self, path: Path) -> list[str]:
        """The keys users may write in the block at `path`, as they write them."""
        shape: Any = self.root
        for part in path:
            # A list item (serving.models[0]) has the keys of the list's item type.
            shape = _item_type(shape) if isinstance(part, int) else _keys(shape).get(part)
        extra = self.root_extra_keys if not path else ()
        return sorted({*_keys(shape), *extra})


def _keys(shape: Any) -> dict[str, Any]:
    """Key -> type of the keys a model, pydantic dataclass or TypedDict accepts (Annotated and Optional unwrapped)."""
    shape = _unwrap(shape)
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        return {field.alias or name: field.annotation for name, field in shape.model_fields.items()}
    if hasattr(shape, "__pydantic_fields__"):
        return {name: field.annotation for name, field in shape.__pydantic_fields__.items()}
    if typing_extensions.is_typeddict(shape):
        return typing_extensions.get_type_hints(shape)
    return {}


def _item_type(shape: Any) -> Any:
    """The item type of a list or tuple shape (`tuple[ServedModel, ...]` -> ServedModel), or None."""
    shape = _unwrap(shape)
    if typing.get_origin(shape) in (list, tuple):
        return typing.get_args(shape)[0]
    return None


def _unwrap(shape: Any) -> Any:
    origin = typing.get_origin(shape)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(shape)[0])
    if origin in (typing.Union, types.UnionType):
        return _unwrap(next(a for a in typing.get_args(shape) if a is not types.NoneType))
    return shape


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _shown(path: Path, value: Any, hidden: frozenset[str]) -> str:
    if path and path[0] in hidden:
        return "[secret]"
    return json.dumps(value, default=str)
