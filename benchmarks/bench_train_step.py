"""Per-call time of a jitted training step (gradient + SGD update), and of the
gradient without jit, in purestate, raw JAX and the peers.

Run: ``.venv/bin/python benchmarks/bench_train_step.py [--quick]``.
Bars: jitted step ≤ 1.05x raw JAX; eager gradient ≤ 1.5x ``jax.grad``.
"""

from __future__ import annotations

import sys

from _harness import Row, built, compare, only, print_rows, same_as_raw
from _models import BUILDERS
from _peer_worker import with_brainstate

TITLE = "Training step (grad + SGD update)"
PROBLEM_NAMES = {
    "mlp": "MLP 3x32, batch 16",
    "many": "500 parameter states",
}


def measure(quick: bool, names) -> list[Row]:
    rounds = 7 if quick else 15
    rows = []
    for problem, label in PROBLEM_NAMES.items():
        impls = {name: built(build, problem) for name, build in only(BUILDERS, names).items()}
        impls = {name: (b, b) if isinstance(b, str) else b for name, b in impls.items()}
        jitted = {name: b[0] for name, b in impls.items()}
        eager = {name: b[1] for name, b in impls.items()}
        # raw JAX's step returns (loss, new parameters); brainstate's the loss
        check = same_as_raw(lambda out: out[0])
        rows += compare(f"jitted step, {label}", jitted, rounds=rounds, check=check)
        rows += compare(
            f"eager grad, {label}",
            eager,
            rounds=max(3, rounds // 2),
            warmup=1,
            check=same_as_raw(),
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    return with_brainstate(measure, quick)


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
