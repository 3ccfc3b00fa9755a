"""Benchmark: how long the program takes to evaluate under mocks, per stack, against the floor of importing `pulumi`
and the `pulumi_kubernetes` modules the program builds resources from. Each run is a fresh interpreter; prints the
median wall-clock and CPU time of several runs and each stack's ratio to the floor (goal: dev within 2x). The ratio
is taken on CPU time, which other load on the machine disturbs less than wall-clock time. Not a test: it prints
numbers.

    python -m tools.benchmark --runs 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from tools.render import ROOT

KUBERNETES_MODULES = ("core.v1", "apps.v1", "batch.v1", "networking.v1", "storage.v1", "meta.v1", "apiextensions", "helm.v3", "helm.v4")
"""The pulumi_kubernetes API modules the components declare resources from; every stack needs them."""
FLOOR = "import pulumi, pulumi_kubernetes, " + ", ".join(f"pulumi_kubernetes.{module}" for module in KUBERNETES_MODULES)
EVALUATE = "from tools.render import render_stack; r = render_stack({stack!r}); print(len(r.resources))"
DEV_GOAL = 2.0
"""Dev should evaluate within this multiple of the floor: what is above it is our code, not the SDKs."""


@dataclass(frozen=True)
class Timing:
    """Medians of several fresh-interpreter runs of one piece of code."""

    wall: float
    """Median wall-clock seconds."""
    cpu: float
    """Median CPU seconds (user + system) of the interpreter."""
    samples: list[float]
    """Every run's wall-clock seconds."""
    output: str
    """The last line the code printed."""

    def describe(self, runs: int) -> str:
        return (
            f"median {self.wall:.2f}s wall, {self.cpu:.2f}s CPU over {runs} runs "
            f"({', '.join(f'{s:.2f}' for s in self.samples)})"
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(code: str) -> tuple[float, float, str]:
    """Wall-clock and CPU seconds of one fresh interpreter running `code`, and the last line it printed."""
    cpu_before, started = _children_cpu(), time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    lines = result.stdout.strip().splitlines()
    return wall, cpu, lines[-1] if lines else ""


def median_of(code: str, runs: int) -> Timing:
    walls, cpus, output = [], [], ""
    for _ in range(runs):
        wall, cpu, output = timed(code)
        walls.append(wall)
        cpus.append(cpu)
    return Timing(statistics.median(walls), statistics.median(cpus), walls, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stacks", nargs="+", default=["dev", "prod"])
    options = parser.parse_args(argv)
    floor = median_of(FLOOR, options.runs)
    print(f"floor (import pulumi + pulumi_kubernetes {', '.join(KUBERNETES_MODULES)}): {floor.describe(options.runs)}")
    for stack in options.stacks:
        evaluation = median_of(EVALUATE.format(stack=stack), options.runs)
        goal = f" (goal for dev: <= {DEV_GOAL:.0f}x)" if stack == "dev" else ""
        print(
            f"{stack}: {evaluation.output} resources, {evaluation.describe(options.runs)}; "
            f"{evaluation.cpu / floor.cpu:.1f}x the floor's CPU time, {evaluation.wall / floor.wall:.1f}x its wall-clock{goal}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
