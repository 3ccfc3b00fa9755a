"""Benchmark: how long the program takes to evaluate under mocks, per stack, against the floor of importing `pulumi`
and the `pulumi_kubernetes` modules the program builds resources from. Each run is a fresh interpreter; prints the
median of several runs and each stack's ratio to the floor (goal: dev within 2x). Not a test: it prints numbers.

    python -m tools.benchmark --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tools.render import ROOT

KUBERNETES_MODULES = ("core.v1", "apps.v1", "batch.v1", "networking.v1", "storage.v1", "meta.v1", "apiextensions", "helm.v3", "helm.v4")
"""The pulumi_kubernetes API modules the components declare resources from; every stack needs them."""
FLOOR = "import pulumi, pulumi_kubernetes, " + ", ".join(f"pulumi_kubernetes.{module}" for module in KUBERNETES_MODULES)
EVALUATE = "from tools.render import render_stack; r = render_stack({stack!r}); print(len(r.resources))"
DEV_GOAL = 2.0
"""Dev should evaluate within this multiple of the floor: what is above it is our code, not the SDKs."""


def timed(code: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def median_of(code: str, runs: int) -> tuple[float, list[float], str]:
    samples, output = [], ""
    for _ in range(runs):
        seconds, output = timed(code)
        samples.append(seconds)
    return statistics.median(samples), samples, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stacks", nargs="+", default=["dev", "prod"])
    options = parser.parse_args(argv)
    floor, samples, _ = median_of(FLOOR, options.runs)
    print(
        f"floor (import pulumi + pulumi_kubernetes {', '.join(KUBERNETES_MODULES)}): "
        f"median {floor:.2f}s over {options.runs} runs ({', '.join(f'{s:.2f}' for s in samples)})"
    )
    for stack in options.stacks:
        total, samples, resources = median_of(EVALUATE.format(stack=stack), options.runs)
        goal = f" (goal for dev: <= {DEV_GOAL:.0f}x)" if stack == "dev" else ""
        print(
            f"{stack}: {resources} resources, median {total:.2f}s over {options.runs} runs "
            f"({', '.join(f'{s:.2f}' for s in samples)}); {total / floor:.1f}x the floor{goal}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
