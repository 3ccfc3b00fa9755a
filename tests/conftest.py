"""Shared fixtures: each stack rendered once from its real stack file, under Pulumi mocks."""

from __future__ import annotations

import pytest

from tools.render import Rendering, render_stack

STACKS = ("dev", "prod")


def pytest_configure(config) -> None:
    # The provider SDKs warn about their own deprecated resources on import; none of them is used here.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_cloudflare")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws")


@pytest.fixture(scope="session")
def renderings() -> dict[str, Rendering]:
    return {stack: render_stack(stack) for stack in STACKS}


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
