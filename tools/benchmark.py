"""Benchmark: how long the program takes to evaluate under mocks, per stack, against the floor of importing the
provider SDKs. Each run is a fresh interpreter; prints the median of several runs. Not a test: it prints numbers.

    python -m tools.benchmark --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tools.render import ROOT

FLOOR = "import pulumi, pulumi_kubernetes, pulumi_aws, pulumi_random, pulumi_cloudflare, pulumi_vault"
EVALUATE = "from tools.render import render_stack; r = render_stack({stack!r}); print(len(r.resources))"


def timed(code: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, result.stdout.strip()


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
    print(f"SDK import floor: median {floor:.2f}s over {options.runs} runs ({', '.join(f'{s:.2f}' for s in samples)})")
    for stack in options.stacks:
        total, samples, resources = median_of(EVALUATE.format(stack=stack), options.runs)
        print(
            f"{stack}: {resources} resources, median {total:.2f}s over {options.runs} runs "
            f"({', '.join(f'{s:.2f}' for s in samples)}); above the floor: {total - floor:.2f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
