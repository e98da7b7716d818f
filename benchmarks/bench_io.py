"""``ps.io.save`` and ``ps.io.restore`` against orbax alone on the same arrays.

Cases: flat trees of 10, 1,000 and 10,000 ``ParamState``s, each holding a
float32 array of 16 values, and one ``ParamState`` holding a 100 MB float32
array. The reference is orbax-checkpoint writing the plain dict
``{name: array}`` of the same arrays with the engine ``ps.io`` uses (a
synchronous ``ocp.Checkpointer(ocp.StandardCheckpointHandler())``), and
restoring it onto the same device from an abstract target
(``jax.ShapeDtypeStruct``s with the arrays' sharding), which is what
``ps.io.restore`` does without ``like``. So the ratio is what purestate adds:
its record of the tree (paths, kinds, dtypes, units) in the step metadata,
the checks of the target directory, and rebuilding the states.

Each implementation saves into a fresh directory and restores from it; the
two run one after the other, in alternating order, for several rounds. Each
row shows the median time and the ratio to orbax, which is the median over
rounds of the two times of the same round (so that load from other processes
hits both alike). The row "purestate outside orbax" is the time ps.io spends
outside orbax's checkpointer calls, measured by timing those calls: the part
of the ratio that is purestate's own work rather than the noise of the disk.
An untimed first round checks that both restore the saved arrays. Times include
writing to the local disk (the temporary directory), so they depend on the
file system as much as on the CPU.

Run: ``.venv/bin/python benchmarks/bench_io.py [--quick]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from _harness import Row, format_value, print_rows

import purestate as ps
from purestate.io import _orbax as ps_orbax

TITLE = "Saving and restoring (ps.io against orbax)"
ORBAX = "orbax"
PURESTATE = "purestate"
OWN = "purestate outside orbax"
SIZES = (10, 1_000, 10_000)
STATE_VALUES = 16
BIG_MB = 100
# Rounds per case: a save of 10,000 arrays takes tens of seconds.
ROUNDS = {10: 31, 1_000: 7, 10_000: 3, "big": 9}


def arrays_of(n: int) -> dict[str, jax.Array]:
    return {
        f"s{i:05d}": jnp.full(STATE_VALUES, float(i), jnp.float32) + jnp.arange(STATE_VALUES)
        for i in range(n)
    }


def big_array() -> dict[str, jax.Array]:
    n = BIG_MB * 1_000_000 // 4
    return {"w": jax.random.normal(jax.random.key(0), (n,), jnp.float32)}


class _OrbaxClock:
    """Adds up the time that ps.io spends inside orbax's checkpointer, so
    that what purestate itself does (recording and checking the tree,
    rebuilding the states) can be told apart from orbax's work."""

    def __init__(self) -> None:
        self.seconds = 0.0
        checkpointer = ps_orbax.checkpointer()
        for method in ("save", "restore"):
            setattr(checkpointer, method, self._timed(getattr(checkpointer, method)))

    def _timed(self, fn: Callable) -> Callable:
        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                # Restored arrays may still be on their way to the device:
                # that wait is orbax's too.
                return jax.block_until_ready(fn(*args, **kwargs))
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def implementations(
    arrays: dict[str, jax.Array],
) -> dict[str, tuple[Callable[[Path], None], Callable[[Path], dict]]]:
    """name -> (save into a directory, restore from it as {name: array})."""
    checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    abstract = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding) for k, v in arrays.items()
    }
    states = {k: ps.ParamState(v) for k, v in arrays.items()}

    def orbax_save(path: Path) -> None:
        checkpointer.save(path, args=ocp.args.StandardSave(arrays))

    def orbax_restore(path: Path) -> dict:
        return checkpointer.restore(path, args=ocp.args.StandardRestore(abstract))

    def ps_save(path: Path) -> None:
        ps.io.save(path, states)

    def ps_restore(path: Path) -> dict:
        return {k: s.value for k, s in ps.io.restore(path).items()}

    return {ORBAX: (orbax_save, orbax_restore), PURESTATE: (ps_save, ps_restore)}


def measure(
    case: str, arrays: dict[str, jax.Array], rounds: int, root: Path, clock: _OrbaxClock
) -> list[Row]:
    """Rows for saving and restoring: each implementation's median time, its
    ratio to orbax (the median over rounds of the two times taken in the same
    round), and the median time purestate spent outside orbax."""
    impls = implementations(arrays)
    names = list(impls)
    times: dict[tuple[str, str], list[float]] = {}
    for name in names:  # warm-up, untimed: a fast wrong answer is not a result
        save, restore = impls[name]
        save(root / "warm-up")
        restored = restore(root / "warm-up")
        assert list(restored) == list(arrays), name
        for key, value in arrays.items():
            np.testing.assert_array_equal(restored[key], value, err_msg=f"{name} {key}")
        shutil.rmtree(root / "warm-up")
    for r in range(rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            save, restore = impls[name]
            path = root / f"{name}-{r}"
            inside = clock.seconds
            start = time.perf_counter()
            save(path)
            saved = time.perf_counter()
            inside_save = clock.seconds - inside
            jax.block_until_ready(restore(path))
            done = time.perf_counter()
            inside_restore = clock.seconds - inside - inside_save
            times.setdefault(("save", name), []).append(saved - start)
            times.setdefault(("restore", name), []).append(done - saved)
            if name == PURESTATE:
                times.setdefault(("save", OWN), []).append(saved - start - inside_save)
                times.setdefault(("restore", OWN), []).append(done - saved - inside_restore)
            shutil.rmtree(path)
    rows = []
    for op in ("save", "restore"):
        base = times[(op, ORBAX)]
        for name in [*names, OWN]:
            mine = times[(op, name)]
            seconds = statistics.median(mine)
            ratio = statistics.median(m / b for m, b in zip(mine, base, strict=True))
            rows.append(Row(f"{op}, {case}", name, seconds, baseline=seconds / ratio))
    return rows


def run(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    sizes = SIZES[:2] if quick else SIZES
    clock = _OrbaxClock()
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            rounds = 2 if quick else ROUNDS[n]
            case = f"{n:,} states of {STATE_VALUES} float32"
            rows += measure(case, arrays_of(n), rounds, Path(tmp), clock)
            print_rows(rows[-6:])
        rounds = 2 if quick else ROUNDS["big"]
        rows += measure(f"one {BIG_MB} MB array", big_array(), rounds, Path(tmp), clock)
        print_rows(rows[-6:])
    return rows


def markdown(rows: list[Row]) -> str:
    cases = list(dict.fromkeys(r.case for r in rows))
    by = {(r.case, r.impl): r for r in rows}
    lines = [
        "| case | orbax | purestate | purestate / orbax | purestate's own work |",
        "| --- | --- | --- | --- | --- |",
    ]
    for case in cases:
        base, ours, own = by[(case, ORBAX)], by[(case, PURESTATE)], by[(case, OWN)]
        ratio = "" if ours.ratio is None else f"**{ours.ratio:.2f}x**"
        share = "" if own.ratio is None else f"{format_value(own)} ({own.ratio:.1%} of orbax)"
        lines.append(
            f"| {case} | {format_value(base)} | {format_value(ours)} | {ratio} | {share} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no 10,000-state case")
    args = parser.parse_args()
    print(f"{TITLE}: median seconds per call, ratio to orbax\n")
    rows = run(quick=args.quick)
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
