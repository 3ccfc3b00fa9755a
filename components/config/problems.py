"""How a broken rule travels through pydantic to the one message users read (worded by `errors.describe`).

Every check raises a pydantic custom error of one of these types; pydantic collects them all, with the location of
each, instead of stopping at the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

VALUE = "config_value"
"""A value that does not fit its format; the message says what is allowed."""
PROBLEMS = "config_problems"
"""A rule over several keys of one block; each problem's key is relative to the block."""
ROOT_PROBLEMS = "config_root_problems"
"""A rule across blocks; each problem's key is a full path such as `mlflow.artifactBucket`."""


def invalid(allowed: str) -> PydanticCustomError:
    """The error of a value that does not fit; `allowed` is shown after the key and the value."""
    return PydanticCustomError(VALUE, "{allowed}", {"allowed": allowed})


@dataclass(frozen=True)
class Problem:
    """One broken rule: the key as users write it, the value found, and what is allowed."""

    key: str
    value: Any
    allowed: str


def reject(problems: list[Problem], *, across_blocks: bool = False) -> None:
    """Raise every problem of a rule at once (nothing when the list is empty)."""
    if problems:
        summary = "; ".join(f"{p.key}: {p.allowed}" for p in problems)
        kind = ROOT_PROBLEMS if across_blocks else PROBLEMS
        raise PydanticCustomError(kind, "{summary}", {"summary": summary, "problems": tuple(problems)})
