"""A LIF network simulation: 4,000 leaky integrate-and-fire neurons driven by
a random input current, 10,000 steps of 0.1 ms inside a compiled scan.

The same model three times: ``ps.nn.LIF`` under ``ps.compile.scan``; a
brainstate 0.6.0 module (brainstate moved its ``nn.LIF`` to brainpy, so the
same equations are written on brainstate's ``ShortTermState`` and
``transform.for_loop``), run in its own Python 3.12 process against raw JAX
there (see ``_peer_worker.py``); and hand-written JAX on plain arrays (raw JAX).
Each step draws the current ``I = 1.2 mA + 0.5 mA * N(0, 1)`` per neuron,
applies the soft reset and the exponential-Euler step of
``tau dV/dt = -(V - V_rest) + R I`` (R = 1 ohm, tau = 5 ms, V_th = 1 mV).
Throughput is neurons x steps per second (higher is better).

Run: ``.venv/bin/python benchmarks/bench_lif.py [--quick]``.
"""

from __future__ import annotations

import math
import sys

import brainunit as u
import jax
import jax.numpy as jnp
from _harness import Row, built, compare, only, print_rows, unavailable
from _models import purestate_missing
from _peer_worker import with_brainstate

TITLE = "LIF network simulation"
N, STEPS, DT_MS = 4_000, 10_000, 0.1
TAU_MS, V_TH, V_RESET, V_REST, R = 5.0, 1.0, 0.0, 0.0, 1.0
I_MEAN, I_STD = 1.2, 0.5


def raw_jax():
    decay = math.exp(-DT_MS / TAU_MS)
    span = V_TH - V_RESET

    def step(carry, _):
        V, key = carry
        key, sub = jax.random.split(key)
        current = I_MEAN + I_STD * jax.random.normal(sub, (N,))
        spk = ((V - V_TH) / span >= 0).astype(V.dtype)
        V = V - span * spk
        V_inf = V_REST + R * current
        V = V_inf + (V - V_inf) * decay
        return (V, key), ((V - V_TH) / span >= 0).sum()

    @jax.jit
    def simulate(V, key):
        (V, key), counts = jax.lax.scan(step, (V, key), jnp.arange(STEPS))
        return counts.sum()

    V0, key = jnp.full(N, V_REST), jax.random.key(0)
    return lambda: simulate(V0, key)


def purestate_model() -> tuple[dict, object]:
    """The state tree and the step ``(states, _) -> (spike count, states)``
    of the ``ps.nn.LIF`` network (also timed with progress bars by
    bench_checkpoint.py)."""
    import purestate as ps

    lif = ps.nn.LIF(
        N,
        R=R * u.ohm,
        tau=TAU_MS * u.ms,
        V_th=V_TH * u.mV,
        V_reset=V_RESET * u.mV,
        V_rest=V_REST * u.mV,
    )
    states = {"lif": lif.init(), "rng": ps.RandomState(jax.random.key(0))}

    def step(states, _):
        key, states = ps.random.split(states)
        current = (I_MEAN + I_STD * jax.random.normal(key, (N,))) * u.mA
        spk, lif_states = lif(states["lif"], current)
        return spk.sum(), {**states, "lif": lif_states}

    return states, step


def purestate():
    why = purestate_missing("compile.jit", "compile.scan")
    if why:
        return why
    import purestate as ps

    states, step = purestate_model()

    @ps.compile.jit
    def simulate(states):
        counts, states = ps.compile.scan(step, states, jnp.arange(STEPS))
        return counts.sum(), states

    def run():
        with ps.environ.context(dt=DT_MS * u.ms):
            return simulate(states)[0]

    return run


def brainstate():
    """Run by ``_peer_worker.py`` in brainstate 0.6.0's Python 3.12 process."""
    why = unavailable("brainstate")
    if why:
        return why
    import brainstate as bst

    class LIF(bst.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.V = bst.ShortTermState(jnp.full(n, V_REST) * u.mV)

        def update(self, current):
            span = (V_TH - V_RESET) * u.mV
            dt = bst.environ.get_dt()
            V = self.V.value
            spk = ((V - V_TH * u.mV) / span >= 0).astype(float)
            V = V - span * spk
            V_inf = V_REST * u.mV + R * u.ohm * current
            V = V_inf + (V - V_inf) * u.math.exp(-dt / (TAU_MS * u.ms))
            self.V.value = V.in_unit(u.mV)
            return ((self.V.value - V_TH * u.mV) / span >= 0).sum()

    neuron = LIF(N)
    bst.random.seed(0)

    def step(_):
        current = (I_MEAN + I_STD * bst.random.normal(size=(N,))) * u.mA
        return neuron.update(current)

    @bst.transform.jit
    def simulate():
        return bst.transform.for_loop(step, jnp.arange(STEPS)).sum()

    def run():
        with bst.environ.context(dt=DT_MS * u.ms):
            return simulate()

    return run


def _same_firing(outputs: dict) -> None:
    """The spike totals differ only by the noise draws: within 5 %."""
    base = float(outputs["raw JAX"])
    for name, total in outputs.items():
        if abs(float(total) - base) > 0.05 * base:
            raise AssertionError(f"LIF: {name} fired {float(total)} spikes against {base}")


BUILDERS = {
    "raw JAX": raw_jax,
    "purestate": purestate,
    "brainstate": brainstate,
    "Flax NNX": lambda: "no LIF model in Flax",
    "Equinox": lambda: "no LIF model in Equinox",
}


def measure(quick: bool, names) -> list[Row]:
    impls = {name: built(build) for name, build in only(BUILDERS, names).items()}
    rows = compare(
        f"LIF {N:,} neurons x {STEPS:,} steps (whole run)",
        impls,
        rounds=3 if quick else 9,
        round_s=0.0,
        warmup=1,
        check=_same_firing,
    )
    for row in rows:
        row.work = N * STEPS
    return rows


def run(quick: bool = False) -> list[Row]:
    return with_brainstate(measure, quick)


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
