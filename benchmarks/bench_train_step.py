"""Per-call time of a jitted training step (gradient + SGD update), and of the
gradient without jit, in purestate, raw JAX and the peers.

Run: ``.venv/bin/python benchmarks/bench_train_step.py [--quick]``.
Bars: jitted step ≤ 1.05x raw JAX; eager gradient ≤ 1.5x ``jax.grad``.
"""

from __future__ import annotations

import sys

from _harness import Row, compare, print_rows
from _models import BUILDERS

TITLE = "Training step (grad + SGD update)"
PROBLEM_NAMES = {
    "mlp": "MLP 3x32, batch 16",
    "many": "500 parameter states",
}


def run(quick: bool = False) -> list[Row]:
    rounds = 7 if quick else 15
    rows = []
    for problem, label in PROBLEM_NAMES.items():
        built = {name: build(problem) for name, build in BUILDERS.items()}
        jitted = {name: impls[0] for name, impls in built.items()}
        eager = {name: impls[1] for name, impls in built.items()}
        rows += compare(f"jitted step, {label}", jitted, rounds=rounds)
        rows += compare(f"eager grad, {label}", eager, rounds=max(3, rounds // 2), warmup=1)
    return rows


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
