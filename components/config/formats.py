"""Value formats of settings (quantities, DNS names, crons, ARNs, ...), each with the sentence users read when a
value does not fit, and the JSON Schema editors check it with.

Each format checks the raw value itself, before pydantic sees it: pydantic's lax mode would turn "1" into 1 and
"yes" into true, and its own messages ("Input should be a valid integer") name neither the rule nor an example.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from components.config.problems import invalid

# Kubernetes' own grammar for resource.Quantity (k8s.io/apimachinery/pkg/api/resource).
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
# The same grammar without a sign, in JSON Schema's dialect (no named groups); zero still passes it.
_POSITIVE_QUANTITY = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
_SUFFIX_FACTORS = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}
_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON5 = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"
CRON6 = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{5}}$"
AWS_REGION = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"
RESERVED_DATABASES = ("postgres", "template0", "template1")


def quantity_value(text: str) -> float:
    """The numeric value of a Kubernetes quantity (`512Mi` -> 536870912.0); raises ValueError if malformed."""
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(text)
    suffix = match["suffix"] or ""
    factor = 10 ** int(suffix[1:]) if suffix[:1] in ("e", "E") else _SUFFIX_FACTORS[suffix]
    return float(match["number"]) * factor


def _format(python_type: Any, fits: Callable[[Any], bool], allowed: str, schema: dict[str, Any]) -> Any:
    def check(value: Any) -> Any:
        if fits(value):
            return value
        raise invalid(allowed)

    return Annotated[python_type, BeforeValidator(check), WithJsonSchema(schema)]


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_quantity(value: Any) -> bool:
    try:
        return isinstance(value, str) and quantity_value(value) > 0
    except ValueError:
        return False


def matching(pattern: str, allowed: str, max_length: int | None = None) -> Any:
    """A string matching `pattern` (a regex both Python and JSON Schema understand)."""
    compiled = re.compile(pattern)
    schema: dict[str, Any] = {"type": "string", "pattern": pattern}
    if max_length:
        schema["maxLength"] = max_length

    def fits(value: Any) -> bool:
        short_enough = isinstance(value, str) and (not max_length or len(value) <= max_length)
        return short_enough and bool(compiled.fullmatch(value))

    return _format(str, fits, allowed, schema)


def whole(low: int, high: int) -> Any:
    """A whole number from `low` to `high` (true and 2.0 are not)."""
    return _format(
        int, lambda v: _is_whole(v) and low <= v <= high, f"expected a whole number from {low} to {high}",
        {"type": "integer", "minimum": low, "maximum": high},
    )


def one_of(*allowed: str) -> Any:
    """One of the `allowed` words."""
    return _format(
        Literal[allowed], lambda v: isinstance(v, str) and v in allowed, f"allowed values: {', '.join(allowed)}",
        {"type": "string", "enum": list(allowed)},
    )


Text = _format(str, _is_text, "expected a non-empty string", {"type": "string", "minLength": 1})
Flag = _format(bool, lambda v: isinstance(v, bool), "expected true or false", {"type": "boolean"})
Quantity = _format(
    str, _is_positive_quantity, "expected a positive Kubernetes quantity such as 5Gi, 512Mi or 500m (not 5GB)",
    {"type": "string", "pattern": _POSITIVE_QUANTITY},
)
DnsLabel = matching(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "expected a lowercase DNS label (a-z, 0-9, '-'), at most 40 characters", 40
)
DnsName = matching(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "expected a lowercase DNS name (a-z, 0-9, '-', '.')", 253)
Url = matching(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/.*)?$", "expected an http(s) URL such as https://vault.example.com:8200")
Rfc3339 = matching(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
    "expected an RFC 3339 time such as 2026-11-22T10:00:00Z",
)
BucketName = matching(
    # S3's rules: 3-63 characters, no two dots in a row.
    r"^(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "bucket names are 3-63 characters of a-z, 0-9, '.', '-', starting and ending alphanumeric",
)
DatabaseName = _format(
    str,
    lambda v: isinstance(v, str) and bool(re.fullmatch(r"[a-z][a-z0-9_]{0,62}", v)) and v not in RESERVED_DATABASES,
    "database names are lowercase letters, digits and '_', start with a letter, and are not postgres/template0/template1",
    {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,62}$", "not": {"enum": list(RESERVED_DATABASES)}},
)


def _string_value(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise invalid('expected a string; quote numbers and booleans in YAML ("true")')


def _mapping(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    raise invalid("expected a mapping of strings to strings")


StringMap = Annotated[dict[str, Annotated[str, BeforeValidator(_string_value)]], BeforeValidator(_mapping)]
"""Strings by name, such as StorageClass parameters."""


def unique_list(item: Any, what: str) -> Any:
    """A non-empty list of `item`s without repeats (a tuple in Python); `what` names the items in messages."""

    def non_empty(value: Any) -> Any:
        if isinstance(value, list | tuple) and value:
            return value
        raise invalid(f"expected a non-empty list of {what}")

    def no_repeats(value: tuple[str, ...]) -> tuple[str, ...]:
        repeated = _repeated(value)
        if repeated:
            raise invalid(f"{what} must be unique; listed more than once: {', '.join(repeated)}")
        return value

    return Annotated[
        tuple[item, ...],
        BeforeValidator(non_empty),
        AfterValidator(no_repeats),
        Field(json_schema_extra={"minItems": 1, "uniqueItems": True}),
    ]


def _repeated(values: tuple[str, ...]) -> list[str]:
    return sorted({v for v in values if values.count(v) > 1})
