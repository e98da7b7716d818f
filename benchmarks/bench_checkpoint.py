"""``ps.compile.checkpointed_scan`` and ``progress=`` on a 10,000-step LIF
simulation of 4,000 neurons (dt 0.1 ms).

The model (the gradient case and the first progress model): ``ps.nn.LIF`` neurons (tau 5 ms, V_th 1 mV, soft reset, R 1 ohm,
the ``ps.surrogate.ReluGrad`` spike) driven by the current
``I_t = 1.2 mA + x_t @ W``, where `x_t` is a fixed random input of 16
channels per step and `W` (16 x 4,000) a ``ParamState``. The loss is the mean
firing rate over all steps and neurons.

Two cases:

1. **Memory of the gradient.** ``ps.augment.grad(loss, "w")`` with the
   simulation under ``ps.compile.scan`` and under
   ``ps.compile.checkpointed_scan`` (default ``block_size``, a divisor of the
   length near its square root: 100 here, and an explicit one), compiled
   once; ``W`` is read but never changed by the body, so the checkpointed
   loop keeps it out of its carry. The memory is
   the compiled executable's ``memory_analysis()`` (XLA's buffer assignment:
   the temporaries, where reverse mode keeps its residuals, and the
   arguments and outputs), and the time is per gradient evaluation, with the
   ratio to the plain scan. Raw JAX, ``jax.lax.scan`` against a
   ``jax.checkpoint``-ed scan over blocks of 100 closing over ``W``, is the
   reference. The case asserts that the gradients agree and that
   checkpointing uses less memory.
2. **Progress-bar overhead.** A forward simulation, jitted, under
   ``ps.compile.scan`` with ``progress=None``, ``progress=True`` (about 100
   updates) and ``progress=10`` (1,000 updates), the bar writing to a null
   stream, on two models: the fast one above (the input ``x_t`` fixed, a run
   takes tens of ms), with the same blocked loop without a bar
   (``checkpointed_scan(block_size=100)``, whose forward pass is the loop a
   bar of 100 updates runs) to separate the cost of the blocks from the cost
   of the host callbacks; and benchmarks/bench_lif.py's model, whose step
   draws the current ``1.2 mA + 0.5 mA * N(0, 1)`` per neuron from a
   ``RandomState`` inside the loop (a run takes about half a second). It
   prints the cost per bar update (the time a bar adds over
   ``progress=None``, divided by its number of updates) and asserts nothing
   about it.

Run: ``.venv/bin/python benchmarks/bench_checkpoint.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import sys
import time
from collections.abc import Callable

import _harness as harness
import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
from _harness import Row, format_value, print_rows

import purestate as ps

TITLE = "Checkpointed scan and progress bars"
N, STEPS, DT_MS, INPUTS = 4_000, 10_000, 0.1, 16
TAU_MS, V_TH, V_RESET, V_REST, R = 5.0, 1.0, 0.0, 0.0, 1.0
I_MEAN, I_STD = 1.2, 0.5
EXPLICIT_BLOCK = 1_000
RAW_BLOCK = 100
SPIKE = ps.surrogate.ReluGrad()
MB = 1e6

SCAN = "ps.compile.scan"
CKPT = "ps.compile.checkpointed_scan"
RAW_SCAN = "raw JAX: jax.lax.scan"
RAW_CKPT = f"raw JAX: jax.checkpoint per block of {RAW_BLOCK}"


def default_block(length: int) -> int:
    """The block size `checkpointed_scan` picks by default (its documented
    rule): a divisor of `length` near ``sqrt(length)``, else the rounded root."""
    root = math.sqrt(length)
    near = range(max(1, math.ceil(root / 2)), int(2 * root) + 1)
    divisors = [d for d in near if length % d == 0]
    return min(divisors, key=lambda d: abs(d - root)) if divisors else max(1, round(root))


@dataclasses.dataclass
class MemoryRow(Row):
    """A gradient row: time plus the compiled executable's memory analysis."""

    temp_bytes: int | None = None
    argument_bytes: int | None = None
    output_bytes: int | None = None
    reference_temp_bytes: int | None = None  # the plain scan's, same family


def inputs() -> tuple[jax.Array, jax.Array]:
    """The input `xs` (STEPS x INPUTS) and the initial weight `W` (INPUTS x N)."""
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(STEPS, INPUTS)), jnp.float32)
    W = jnp.asarray(rng.normal(size=(INPUTS, N)) * I_STD / math.sqrt(INPUTS), jnp.float32)
    return xs, W


# --------------------------------------------------------------- purestate ---


def purestate_model(W: jax.Array) -> tuple[dict, Callable]:
    """The state tree and the step ``(states, x_t) -> (rate_t, states)``."""
    lif = ps.nn.LIF(
        N,
        R=R * u.ohm,
        tau=TAU_MS * u.ms,
        V_th=V_TH * u.mV,
        V_reset=V_RESET * u.mV,
        V_rest=V_REST * u.mV,
        spk_fun=SPIKE,
    )
    states = {"w": ps.ParamState(W), "lif": lif.init()}

    def step(states, x):
        current = (I_MEAN + x @ states["w"].value) * u.mA
        spk, lif_states = lif(states["lif"], current)
        return spk.mean(), {**states, "lif": lif_states}

    return states, step


def loss_with(loop: Callable) -> Callable:
    def loss(states, xs):
        rates, states = loop(states, xs)
        return rates.mean(), states

    return loss


# ------------------------------------------------------------------ raw JAX ---


def raw_loss(W: jax.Array, xs: jax.Array, block: int | None) -> jax.Array:
    """The same model on plain arrays (`W` closed over, not carried);
    `block`: checkpoint per block of steps."""
    span = V_TH - V_RESET
    decay = math.exp(-DT_MS / TAU_MS)

    def step(V, x):
        current = I_MEAN + x @ W
        V = V - span * SPIKE((V - V_TH) / span)
        V_inf = V_REST + R * current
        V = V_inf + (V - V_inf) * decay
        return V, SPIKE((V - V_TH) / span).mean()

    V0 = jnp.full(N, V_REST, jnp.float32)
    if block is None:
        _, rates = jax.lax.scan(step, V0, xs)
    else:
        run_block = jax.checkpoint(lambda c, xb: jax.lax.scan(step, c, xb))
        _, rates = jax.lax.scan(run_block, V0, xs.reshape(-1, block, INPUTS))
    return rates.mean()


# ------------------------------------------------------------------ timing ---


def interleaved(impls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call, one call per implementation per round (the
    calls take seconds: no calibration)."""
    return harness.interleaved(
        {name: functools.partial(one_call, fn) for name, fn in impls.items()}, rounds
    )


def one_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


# ---------------------------------------------------- 1: memory of the grad ---


def gradient_case(quick: bool) -> list[Row]:
    xs, W = inputs()
    states, step = purestate_model(W)
    dt = DT_MS * u.ms
    loops = {
        SCAN: lambda s, xs: ps.compile.scan(step, s, xs),
        f"{CKPT} (default block_size: {default_block(STEPS)})": (
            lambda s, xs: ps.compile.checkpointed_scan(step, s, xs)
        ),
    }
    if not quick:
        loops[f"{CKPT}(block_size={EXPLICIT_BLOCK:,})"] = lambda s, xs: (
            ps.compile.checkpointed_scan(step, s, xs, block_size=EXPLICIT_BLOCK)
        )
    compiled, stats, calls = {}, {}, {}
    with ps.environ.context(dt=dt):
        for name, loop in loops.items():
            grad = ps.compile.jit(ps.augment.grad(loss_with(loop), "w"))
            compiled[name] = grad.lower(states, xs).compile()
            stats[name] = compiled[name].memory_analysis()
    for name in loops:
        calls[name] = lambda c=compiled[name]: _in_dt(c, dt, states, xs)
    for name, block in {RAW_SCAN: None, RAW_CKPT: RAW_BLOCK}.items():
        grad = jax.jit(jax.grad(raw_loss), static_argnums=(2,))
        compiled[name] = grad.lower(W, xs, block).compile()
        stats[name] = compiled[name].memory_analysis()
        calls[name] = lambda c=compiled[name]: c(W, xs)

    grads = {name: jax.block_until_ready(call()) for name, call in calls.items()}
    grads = {n: g[0]["w"].value if n in loops else g for n, g in grads.items()}
    _check_gradients(grads)
    _check_memory(stats)

    seconds = interleaved(calls, rounds=1 if quick else 7)
    rows = []
    for name in calls:
        base = RAW_SCAN if name.startswith("raw JAX") else SCAN
        s = stats[name]
        rows.append(
            MemoryRow(
                f"gradient of {N:,} LIF neurons x {STEPS:,} steps",
                name,
                seconds[name],
                baseline=seconds[base],
                work=N * STEPS,
                temp_bytes=int(s.temp_size_in_bytes),
                argument_bytes=int(s.argument_size_in_bytes),
                output_bytes=int(s.output_size_in_bytes),
                reference_temp_bytes=int(stats[base].temp_size_in_bytes),
                note=(
                    f"temp {s.temp_size_in_bytes / MB:.1f} MB, "
                    f"args {s.argument_size_in_bytes / MB:.2f} MB, "
                    f"out {s.output_size_in_bytes / MB:.2f} MB"
                ),
            )
        )
    return rows


def _in_dt(compiled, dt, states, xs):
    with ps.environ.context(dt=dt):
        return compiled(states, xs)


def _check_gradients(grads: dict[str, jax.Array]) -> None:
    """Every gradient equals the plain scan's (and raw JAX's equals purestate's)."""
    ref = np.asarray(grads[SCAN])
    if not np.any(ref):
        raise AssertionError("checkpoint benchmark: the reference gradient is all zeros")
    scale = float(np.abs(ref).max())
    for name, g in grads.items():
        if not np.allclose(np.asarray(g), ref, rtol=1e-4, atol=1e-5 * scale):
            diff = float(np.abs(np.asarray(g) - ref).max())
            raise AssertionError(
                f"checkpoint benchmark: the gradient of {name!r} differs from {SCAN}'s "
                f"by up to {diff:.3g} (largest entry {scale:.3g})"
            )


def _check_memory(stats: dict) -> None:
    """Checkpointing must need less memory than the plain scan it replaces."""
    for name, s in stats.items():
        base = RAW_SCAN if name.startswith("raw JAX") else SCAN
        if name != base and s.temp_size_in_bytes >= stats[base].temp_size_in_bytes:
            raise AssertionError(
                f"checkpoint benchmark: {name!r} needs {s.temp_size_in_bytes / MB:.1f} MB of "
                f"temporaries, not less than {base}'s {stats[base].temp_size_in_bytes / MB:.1f} MB"
            )


# ------------------------------------------------ 2: progress-bar overhead ---


class _Sink(io.TextIOBase):
    """A null stream that counts what it is sent (to check that the bar ran)."""

    chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)

    def writable(self) -> bool:
        return True


NO_BAR = "progress=None"
BAR = "progress=True (about 100 updates)"
BAR_10 = "progress=10 (1,000 updates)"
BLOCKS = f"{CKPT}(block_size=100), no bar: the bar's loop without callbacks"
UPDATES = {BAR: STEPS // max(1, STEPS // 100), BAR_10: STEPS // 10}

FIXED = f"forward run of {N:,} LIF neurons x {STEPS:,} steps, fixed input x_t @ W"
RANDOM = (
    f"forward run of {N:,} LIF neurons x {STEPS:,} steps, "
    "random input drawn per step from a RandomState"
)


def random_input_model() -> tuple[dict, Callable]:
    """benchmarks/bench_lif.py's model (the current drawn per step and
    neuron inside the loop), its step returning the fraction of neurons
    that spiked, ``(states, _) -> (rate_t, states)``."""
    import bench_lif

    states, count_step = bench_lif.purestate_model()

    def step(states, x):
        count, states = count_step(states, x)
        return count / bench_lif.N, states

    return states, step


def _progress_rows(
    case: str, states: dict, step: Callable, xs: jax.Array, loops: dict, rounds: int
) -> list[Row]:
    """Time the forward run under each loop in `loops` (name -> progress= or
    a loop function), the bars writing to a null stream."""
    dt = DT_MS * u.ms
    sink = _Sink()
    calls = {}

    def scan_with(progress):
        return lambda s, xs: ps.compile.scan(step, s, xs, progress=progress)

    for name, how in loops.items():
        sim = ps.compile.jit(loss_with(how if callable(how) else scan_with(how)))

        def call(sim=sim):
            with ps.environ.context(dt=dt):
                return sim(states, xs)[0]

        calls[name] = call
    with contextlib.redirect_stderr(sink):
        rates = {name: float(call()) for name, call in calls.items()}  # compile, warm up
        if sink.chars == 0:
            raise AssertionError(f"progress benchmark ({case}): the progress bars wrote nothing")
        for name, rate in rates.items():
            if not (0 < rate < 1 and math.isclose(rate, rates[NO_BAR], rel_tol=1e-6)):
                raise AssertionError(f"progress benchmark ({case}): {name} gives rate {rate}")
        seconds = interleaved(calls, rounds=rounds)
    rows = [
        Row(case, name, seconds[name], baseline=seconds[NO_BAR], work=N * STEPS) for name in calls
    ]
    print(f"{case}: {per_update_text(rows)}", flush=True)
    return rows


def _blocks_without_bar(step: Callable) -> Callable:
    """The loop a bar of 100 updates runs, without its callbacks."""
    return lambda s, xs: ps.compile.checkpointed_scan(step, s, xs, block_size=100)


def progress_case(quick: bool) -> list[Row]:
    xs, W = inputs()
    states, step = purestate_model(W)
    fixed = _progress_rows(
        FIXED,
        states,
        step,
        xs,
        {
            NO_BAR: None,
            BAR: True,
            BAR_10: 10,
            BLOCKS: _blocks_without_bar(step),
        },
        rounds=3 if quick else 21,
    )
    drawn_states, drawn_step = random_input_model()
    drawn = _progress_rows(
        RANDOM,
        drawn_states,
        drawn_step,
        jnp.arange(STEPS),
        {
            NO_BAR: None,
            BAR: True,
            BAR_10: 10,
            BLOCKS: _blocks_without_bar(drawn_step),
        },
        rounds=2 if quick else 15,
    )
    return fixed + drawn


def per_update(rows: list[Row]) -> dict[str, float]:
    """Seconds a bar adds per update over progress=None, by row name."""
    by = {r.impl: r.seconds for r in rows}
    if not by.get(NO_BAR):
        return {}
    return {
        name: (by[name] - by[NO_BAR]) / updates for name, updates in UPDATES.items() if by.get(name)
    }


def per_update_text(rows: list[Row]) -> str:
    """The cost per bar update over progress=None, and at 100 updates over the
    same blocked loop without callbacks (the callbacks alone)."""
    cost = per_update(rows)
    text = "cost per bar update " + ", ".join(
        f"{cost[name] * 1e3:.2f} ms at {UPDATES[name]:,} updates" for name in cost
    )
    by = {r.impl: r.seconds for r in rows}
    if by.get(BAR) and by.get(BLOCKS):
        text += (
            f"; the callbacks alone (progress=True against {CKPT}(block_size=100) "
            f"without a bar): {(by[BAR] - by[BLOCKS]) / UPDATES[BAR] * 1e3:.2f} ms per update"
        )
    return text


# ------------------------------------------------------------------ output ---


def run(quick: bool = False) -> list[Row]:
    return gradient_case(quick) + progress_case(quick)


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / MB:,.1f} MB"


def markdown(rows: list[Row]) -> str:
    """The tables for docs/performance.md (run_all.py calls this)."""
    memory = [r for r in rows if isinstance(r, MemoryRow)]
    progress = [r for r in rows if not isinstance(r, MemoryRow)]
    lines = []
    if memory:
        lines += [
            f"{memory[0].case} (`memory_analysis()` of the compiled gradient; time per "
            "gradient evaluation, and its ratio to the plain scan of the same family):",
            "",
            "| loop | temporaries | vs scan | arguments + outputs | time per gradient | vs scan |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in memory:
            mem_ratio = (
                f"{r.temp_bytes / r.reference_temp_bytes:.3f}x"
                if r.temp_bytes is not None and r.reference_temp_bytes
                else ""
            )
            io_bytes = (r.argument_bytes or 0) + (r.output_bytes or 0)
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
            lines.append(
                f"| {r.impl} | {_mb(r.temp_bytes)} | {mem_ratio} | {_mb(io_bytes)} "
                f"| {format_value(r)} | {ratio} |"
            )
        lines.append("")
    for case in dict.fromkeys(r.case for r in progress):
        case_rows = [r for r in progress if r.case == case]
        cost = per_update(case_rows)
        lines += [
            f"{case}, jitted, `ps.compile.scan` (the bar writing to a null stream; "
            "cost per update: the time a bar adds over progress=None, divided by its "
            "number of updates):",
            "",
            "| loop | time per run | vs progress=None | cost per update |",
            "| --- | --- | --- | --- |",
        ]
        for r in case_rows:
            ratio = f"{r.ratio:.3f}x" if r.ratio is not None else ""
            per = f"{cost[r.impl] * 1e3:.2f} ms" if r.impl in cost else ""
            lines.append(f"| {r.impl} | {format_value(r)} | {ratio} | {per} |")
        lines += ["", f"From the rows above: {per_update_text(case_rows)}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    rows = run(quick="--quick" in sys.argv)
    print_rows(rows)
    print()
    print(markdown(rows))
