"""Timing harness shared by the benchmark cases.

Every case hands `compare` several implementations of the same computation,
each a zero-argument callable. They are all warmed up first (compilation is
not what a per-call benchmark measures), then timed in interleaved rounds, so
that a burst of load from other processes on the machine hits every
implementation alike rather than whichever happened to run during it. Each
call's result is waited for with `jax.block_until_ready`, so asynchronous
dispatch cannot hide work, and implementations that block inside (Equinox's
`filter_jit`) are not penalised against those that do not.

An implementation that cannot run the case is given as a string saying why;
it shows up in the table with that reason instead of a number. A case with
nothing to set against raw JAX is not timed.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

BASELINE = "raw JAX"
PIPELINED = os.environ.get("BENCH_PIPELINED") == "1"


@dataclasses.dataclass
class Row:
    """One implementation's result in one case."""

    case: str
    impl: str
    seconds: float | None  # median seconds per call (None: could not run)
    note: str = ""
    baseline: float | None = None  # the raw-JAX median of the same case
    work: float | None = None  # units of work per call (LIF: neurons x steps)

    @property
    def ratio(self) -> float | None:
        """Time relative to raw JAX (below 1: faster)."""
        if self.seconds is None or not self.baseline:
            return None
        return self.seconds / self.baseline

    @property
    def rate(self) -> float | None:
        """Work per second, for cases that define `work`."""
        if self.seconds is None or self.work is None:
            return None
        return self.work / self.seconds


def _time_calls(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    if PIPELINED:
        jax.block_until_ready([fn() for _ in range(number)])
    else:
        for _ in range(number):
            jax.block_until_ready(fn())
    return (time.perf_counter() - start) / number


def _calibrate(fn: Callable[[], object], target_s: float) -> int:
    """How many calls take about `target_s` seconds (at least one)."""
    one = _time_calls(fn, 3)
    return max(1, int(target_s / max(one, 1e-7)))


def compare(
    case: str,
    impls: dict[str, Callable[[], object] | str],
    *,
    rounds: int = 15,
    round_s: float = 0.05,
    warmup: int = 3,
    check: Callable[[dict[str, object]], None] | None = None,
) -> list[Row]:
    """Median per-call time of each implementation, timed in interleaved rounds.

    `impls` maps a name to a zero-argument callable or to a string giving the
    reason it cannot run. `check`, if given, receives every runnable
    implementation's first result so the case can assert they agree: a fast
    wrong answer is not a result. (The first, because an implementation that
    updates its states in place starts the next call from different values.)
    """
    runnable = {name: fn for name, fn in impls.items() if callable(fn)}
    if not set(runnable) - {BASELINE}:
        return rows_from(case, impls, {})
    outputs = {}
    for name, fn in runnable.items():
        outputs[name] = jax.block_until_ready(fn())
        for _ in range(warmup - 1):
            jax.block_until_ready(fn())
    if check is not None:
        check(outputs)
    numbers = {name: _calibrate(fn, round_s) for name, fn in runnable.items()}
    medians = interleaved(
        {name: functools.partial(_time_calls, fn, numbers[name]) for name, fn in runnable.items()},
        rounds,
    )
    return rows_from(case, impls, medians)


def interleaved(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The median of each timer (a call returning seconds) over `rounds`
    rounds, each timer once per round, with the garbage collector off."""
    samples: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            # rotate the order so that no implementation always runs first
            for name in names[r % len(names) :] + names[: r % len(names)]:
                samples[name].append(timers[name]())
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}


def compare_once(
    case: str,
    impls: dict[str, Callable[[], object] | str],
    *,
    rounds: int = 3,
) -> list[Row]:
    """Median time of a call that must not be warmed up (trace and compile).

    Each implementation is a factory: calling it builds a fresh function and
    calls it once, so every round pays the full first-call cost.
    """
    runnable = {name: fn for name, fn in impls.items() if callable(fn)}
    if not set(runnable) - {BASELINE}:
        return rows_from(case, impls, {})
    samples: dict[str, list[float]] = {name: [] for name in runnable}
    names = list(runnable)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            start = time.perf_counter()
            jax.block_until_ready(runnable[name]())
            samples[name].append(time.perf_counter() - start)
    return rows_from(case, impls, {n: statistics.median(s) for n, s in samples.items()})


def rows_from(
    case: str,
    impls: dict[str, Callable[[], object] | str],
    medians: dict[str, float],
) -> list[Row]:
    base = medians.get(BASELINE)
    rows = []
    for name, fn in impls.items():
        if name in medians:
            rows.append(Row(case, name, medians[name], baseline=base))
        elif not callable(fn):
            rows.append(Row(case, name, None, note=str(fn), baseline=base))
    return rows


def print_rows(rows: list[Row]) -> None:
    for row in rows:
        print(format_row(row), flush=True)


def format_value(row: Row) -> str:
    if row.seconds is None:
        return "—"
    s = row.seconds
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def format_row(row: Row) -> str:
    ratio = "" if row.ratio is None else f"{row.ratio:6.2f}x"
    note = f"  ({row.note})" if row.note else ""
    if row.rate is not None:
        note = f"  {row.rate:.3g} per s" + note
    return f"{row.case:52s} {row.impl:18s} {format_value(row):>12s} {ratio:>8s}{note}"


def only(impls: dict, names) -> dict:
    """The implementations among `names`, in the order of `impls`."""
    return {name: impl for name, impl in impls.items() if name in names}


def built(builder: Callable, *args) -> object:
    """``builder(*args)``, or the reason it failed (a peer whose API does not fit)."""
    try:
        return builder(*args)
    except Exception as err:
        return f"failed to build: {type(err).__name__}: {str(err)[:80]}"


def same_as_raw(pick: Callable[[object], object] = lambda out: out, rtol: float = 1e-4):
    """A `check` for `compare`: brainstate's first result equals raw JAX's,
    of which `pick` takes the part brainstate returns (within `rtol`)."""

    def check(outputs: dict[str, object]) -> None:
        if BASELINE not in outputs or "brainstate" not in outputs:
            return
        want = jax.tree.leaves(pick(outputs[BASELINE]))
        got = jax.tree.leaves(outputs["brainstate"])
        assert len(got) == len(want), f"brainstate returned {len(got)} arrays, not {len(want)}"
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=rtol)

    return check


def unavailable(module: str) -> str | None:
    """None if `module` imports, else the reason it cannot be used."""
    try:
        __import__(module)
    except Exception as err:  # any import failure makes the peer unavailable
        return f"{module} not installed or not importable ({type(err).__name__})"
    return None
