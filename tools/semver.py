"""Masterminds semver constraints, as Helm reads a chart's `kubeVersion`: tools/charts.py refuses a chart whose
constraint the cluster does not meet, as Helm's install action does."""

from __future__ import annotations

import re

_VERSION = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_TERM = re.compile(r"^(>=|<=|!=|=>|=<|>|<|=|~|\^)?\s*(\S+)$")


def satisfies(version: str, constraint: str) -> bool:
    """Whether a release version (no pre-release) meets a Masterminds semver constraint as Helm reads `kubeVersion`:
    `||` alternatives of comma- or space-separated terms, operators = != > < >= <= ~ ^, wildcards, and a `-0`
    pre-release suffix (which only widens ranges to pre-releases)."""
    actual = _parse(version)[0]
    return any(all(_term_holds(actual, term) for term in _terms(alternative)) for alternative in constraint.split("||"))


def _terms(alternative: str) -> list[str]:
    alternative = re.sub(r"(>=|<=|!=|=>|=<|>|<|=|~|\^)\s+", r"\1", alternative.strip())
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alternative)
    if hyphen:
        return [f">={hyphen[1]}", f"<={hyphen[2]}"]
    return [t for t in re.split(r"[\s,]+", alternative) if t]


def _parse(text: str) -> tuple[tuple[int, int, int], int]:
    """(major, minor, patch) with wildcards as 0, and how many leading parts were given exactly."""
    match = _VERSION.match(text.strip())
    if not match:
        raise ValueError(f"not a semantic version: {text!r}")
    parts = [p for p in match.groups()]
    exact = 0
    for part in parts:
        if part is None or part in "xX*":
            break
        exact += 1
    numbers = tuple(int(p) if p and p not in "xX*" else 0 for p in parts)
    return numbers, exact  # type: ignore[return-value]


def _term_holds(actual: tuple[int, int, int], term: str) -> bool:
    match = _TERM.match(term)
    if not match:
        raise ValueError(f"not a version constraint: {term!r}")
    operator, target = match[1] or "=", match[2]
    bound, exact = _parse(target)
    if operator in ("=", "!=") and exact < 3:
        inside = actual[:exact] == bound[:exact]
        return inside if operator == "=" else not inside
    if operator == "~":
        upper = (bound[0] + 1, 0, 0) if exact <= 1 else (bound[0], bound[1] + 1, 0)
        return bound <= actual < upper
    if operator == "^":
        upper = (bound[0] + 1, 0, 0) if bound[0] or exact <= 1 else ((0, bound[1] + 1, 0) if bound[1] or exact <= 2 else (0, 0, bound[2] + 1))
        return bound <= actual < upper
    if operator in (">", "<=") and exact < 3:
        # `>1.2` means above every 1.2.x; `<=1.2` includes every 1.2.x.
        bound = (bound[0] + 1, 0, 0) if exact <= 1 else (bound[0], bound[1] + 1, 0)
        return actual >= bound if operator == ">" else actual < bound
    comparisons = {
        "=": actual == bound, "!=": actual != bound, ">": actual > bound, "<": actual < bound,
        ">=": actual >= bound, "=>": actual >= bound, "<=": actual <= bound, "=<": actual <= bound,
    }
    return comparisons[operator]
