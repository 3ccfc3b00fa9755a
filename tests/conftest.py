"""Shared fixtures: each stack rendered once from its real stack file, under Pulumi mocks."""

from __future__ import annotations

import functools

import pytest

from tools.charts import StackCharts, render_stack_charts
from tools.reference import crd_schemas, schemas_of
from tools.render import Rendering, render_stack

STACKS = ("dev", "prod")


def pytest_configure(config) -> None:
    # The provider SDKs warn about their own deprecated resources on import; none of them is used here.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_cloudflare")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws")


def pytest_collection_modifyitems(items) -> None:
    """The files that start real servers first (each takes minutes, the mock files seconds), in their own order:
    with two workers taking whole files (scripts/test.sh), the long files no longer end the run on one worker
    while the other sits idle. Stable, so every worker collects the same order."""
    items.sort(key=lambda item: not item.path.name.endswith(("_real.py", "_drills.py")))


@functools.cache
def rendered(stack: str) -> Rendering:
    """The stack under mocks, once per session (also for test modules that parametrize on what it registers)."""
    return render_stack(stack)


@functools.cache
def stack_charts(stack: str) -> StackCharts:
    """Every Helm release of the stack rendered by Helm's engine, once per session (missing charts listed)."""
    return render_stack_charts(rendered(stack))


@functools.cache
def stack_crd_schemas(stack: str) -> dict[tuple[str, str], dict]:
    """The CRD schemas a custom resource of the stack is checked against: the reference CRDs, and those the
    stack's own charts install (the Gateway API and Envoy Gateway come only from the gateway chart)."""
    return {**crd_schemas(), **schemas_of(obj for _, obj in stack_charts(stack).objects())}


@pytest.fixture(scope="session")
def renderings() -> dict[str, Rendering]:
    return {stack: rendered(stack) for stack in STACKS}


@pytest.fixture(scope="session")
def dev(renderings) -> Rendering:
    return renderings["dev"]


@pytest.fixture(scope="session")
def prod(renderings) -> Rendering:
    return renderings["prod"]


@pytest.fixture(params=STACKS)
def rendering(request, renderings) -> Rendering:
    """Each stack in turn, for invariants that hold everywhere."""
    return renderings[request.param]
