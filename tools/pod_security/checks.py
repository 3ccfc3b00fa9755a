"""What every control shares: reading a pod the way upstream's Go types see it, upstream's wording of a denial, and
the shape of a control with its revisions. The helpers keep their leading underscore: they are this package's
internals, shared by the baseline and restricted modules."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# --- reading a pod spec the way the Go types see it ---------------------------------------------------------------

Spec = Mapping[str, Any]
Meta = Mapping[str, Any]
Result = tuple[str, str] | None
"""A check's outcome: None when allowed, else (reason, detail) in upstream's words."""


def _obj(value: Any) -> Mapping[str, Any]:
    """A nested object, with null/absent read as empty (Go reads fields of a nil pointer as unset)."""
    return value if isinstance(value, Mapping) else {}


def _set(parent: Mapping[str, Any], key: str) -> bool:
    """Whether a pointer field is set: present and not null. `{}` is set."""
    return parent.get(key) is not None


def _containers(spec: Spec) -> list[Mapping[str, Any]]:
    # Every check visits init, regular and ephemeral containers, in this order (upstream visitContainers).
    return [_obj(c) for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or ()]


def _name(item: Mapping[str, Any]) -> str:
    return item.get("name") or ""


def _context(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return _obj(container.get("securityContext"))


def _pod_context(spec: Spec) -> Mapping[str, Any]:
    return _obj(spec.get("securityContext"))


def _is_windows(spec: Spec) -> bool:
    return _obj(spec.get("os")).get("name") == "windows"


def _volumes(spec: Spec) -> list[Mapping[str, Any]]:
    return [_obj(v) for v in spec.get("volumes") or ()]


def _seccomp_types(spec: Spec) -> tuple[bool | None, list[str], list[str], set[str]]:
    """The pod's seccomp (None unset, True allowed, False forbidden), containers setting a forbidden type, containers
    leaving it unset, and the forbidden types."""
    bad_types: set[str] = set()

    def allowed(context: Mapping[str, Any]) -> bool | None:
        if not _set(context, "seccompProfile"):
            return None
        kind = _obj(context["seccompProfile"]).get("type", "")
        if kind in ("RuntimeDefault", "Localhost"):
            return True
        bad_types.add(kind)
        return False

    pod = allowed(_pod_context(spec))
    verdicts = [(_name(c), allowed(_context(c))) for c in _containers(spec)]
    explicit = [name for name, ok in verdicts if ok is False]
    unset = [name for name, ok in verdicts if ok is None]
    return pod, explicit, unset, bad_types


# --- upstream's message helpers --------------------------------------------------------------------------------------


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _quoted(items: list[str]) -> str:
    # Upstream's joinQuote: wraps without escaping, so quoted annotation values come out doubly quoted.
    return '"' + '", "'.join(items) + '"' if items else ""


def _go_quote(value: str) -> str:
    # Go's %q; JSON agrees with it for printable text, which annotation values are in practice.
    return json.dumps(value, ensure_ascii=False)


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_quoted(names)}"


def _setters(pod: bool, containers: list[str]) -> list[str]:
    """Who set a forbidden value: "pod" and/or 'containers "a", "b"'."""
    return (["pod"] if pod else []) + ([_containers_phrase(containers)] if containers else [])


def _bad_containers(spec: Spec, is_bad: Callable[[Mapping[str, Any]], bool]) -> list[str]:
    return [_name(c) for c in _containers(spec) if is_bad(_context(c))]


# --- the shape of the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    since: tuple[int, int]
    """First policy version (major, minor) this revision applies to."""
    check: Callable[[Meta, Spec], Result]
    overrides: tuple[str, ...] = ()
    """Baseline checks this restricted revision replaces at the restricted level (it checks the same fields, stricter)."""


@dataclass(frozen=True)
class Check:
    id: str
    """Upstream's check ID; the API server lists violations baseline first, then restricted, each sorted by it."""
    level: str
    revisions: tuple[Revision, ...]
    """In increasing `since` order."""
