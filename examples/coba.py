"""The COBA network: 4,000 leaky integrate-and-fire neurons with
conductance-based exponential synapses, firing asynchronously and irregularly.

Benchmark 1 of Brette et al. (2007), "Simulation of networks of spiking
neurons: a review of tools and strategies", J. Comput. Neurosci. 23, after
Vogels & Abbott (2005), "Signal propagation and logic gating in networks of
integrate-and-fire neurons", J. Neurosci. 25; with the parameters of the
BrainPy and Brian2 versions of the benchmark:

* 3,200 excitatory and 800 inhibitory neurons, each pair connected with
  probability 2 % (``ps.nn.FixedProb``);
* ``C dV/dt = g_L (E_L - V) + g_e (E_e - V) + g_i (E_i - V) + I_ext`` with
  C = 200 pF, g_L = 10 nS (tau_m = 20 ms), E_L = V_reset = -60 mV,
  V_th = -50 mV, a refractory period of 5 ms, I_ext = 200 pA (20 mV);
* ``tau_e dg_e/dt = -g_e``, ``tau_i dg_i/dt = -g_i`` (tau_e = 5 ms,
  tau_i = 10 ms), E_e = 0 mV, E_i = -80 mV; a spike of an excitatory
  (inhibitory) neuron adds 6 nS (67 nS) to the conductance of its targets
  at the next step: 0.6 and 6.7 in units of g_L;
* initial V ~ Normal(-55 mV, 2 mV), dt = 0.1 ms, exponential Euler.

Each step the conductances decay by their exact factor and take in the
spikes of the previous step; the neuron then integrates over the step with
its input current held fixed (``ps.nn.LIF``; ``ps.nn.ExpConductanceSynapse``
evaluates ``g (E - V)`` at the start of the step). A neuron that spiked at
step k is reset at step k + 1 and held there for 5 ms (50 steps).

Run: ``python examples/coba.py`` (1 s of biological time, about 3 s here, of
which about 1 s is compilation). Prints the mean excitatory and inhibitory
rates and writes ``coba_output/coba_raster.png``: a raster of the spikes and
the population rate. ``--impl dense`` uses a dense connection matrix in
place of the event-driven projection (same connections, same spikes, slower
on CPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

import purestate as ps

DT = 0.1 * u.ms
N_EXC, N_INH = 3200, 800
PROB = 0.02
C_M = 200.0 * u.pF  # membrane capacitance
G_L = 10.0 * u.nS  # leak conductance: tau_m = C / g_L = 20 ms
E_L = -60.0 * u.mV  # leak reversal (and reset) potential
V_TH = -50.0 * u.mV
TAU_REF = 5.0 * u.ms
I_EXT = 200.0 * u.pA  # 20 mV / R
TAU_E, TAU_I = 5.0 * u.ms, 10.0 * u.ms
E_E, E_I = 0.0 * u.mV, -80.0 * u.mV
W_E, W_I = 0.6 * G_L, 6.7 * G_L  # 6 nS and 67 nS
V_INIT_MEAN, V_INIT_SD = -55.0 * u.mV, 2.0 * u.mV


class COBA(ps.nn.Module):
    """The network; one call is one time step: ``net(states) -> (spikes, states)``.

    `n_exc`, `n_inh` and `prob` default to the benchmark's 3,200, 800 and
    2 %; a larger network with ``prob = 80 / (n_exc + n_inh)`` keeps 80
    inputs per neuron, and so about the same rates.

    States: ``'lif'`` (``V`` and the refractory counter), ``'exc'`` and
    ``'inh'`` (the connections, ``LongTermState``), ``'syn_e'`` and
    ``'syn_i'`` (the conductances ``g``), and ``'spikes'``, the spikes of the
    last step (bool), which reach their targets at the next one.
    """

    n_exc: int
    n_inh: int
    lif: ps.nn.LIF
    exc: ps.nn.FixedProb
    inh: ps.nn.FixedProb
    syn_e: ps.nn.ExpConductanceSynapse
    syn_i: ps.nn.ExpConductanceSynapse

    def __init__(
        self, n_exc: int = N_EXC, n_inh: int = N_INH, impl: str = "event", prob: float = PROB
    ):
        n = n_exc + n_inh
        self.n_exc, self.n_inh = n_exc, n_inh
        self.lif = ps.nn.LIF(
            n,
            R=1 / G_L,
            tau=C_M / G_L,
            V_th=V_TH,
            V_reset=E_L,
            V_rest=E_L,
            spk_reset="hard",
            tau_ref=TAU_REF,
        )
        self.exc = ps.nn.FixedProb(n_exc, n, prob, W_E, impl=impl)
        self.inh = ps.nn.FixedProb(n_inh, n, prob, W_I, impl=impl)
        self.syn_e = ps.nn.ExpConductanceSynapse(n, tau=TAU_E, E_rev=E_E)
        self.syn_i = ps.nn.ExpConductanceSynapse(n, tau=TAU_I, E_rev=E_I)

    @property
    def size(self) -> int:
        return self.n_exc + self.n_inh

    def init(self, key: Any = None, batch_size: int | None = None) -> dict:
        if isinstance(key, int):
            key = jax.random.key(key)
        key_children, key_v = jax.random.split(key)
        states = super().init(key_children, batch_size)
        shape = (self.size,) if batch_size is None else (batch_size, self.size)
        noise = jax.random.normal(key_v, shape, states["lif"]["V"].value.dtype)
        V = V_INIT_MEAN + V_INIT_SD * noise
        states = ps.set(states, "lif/V", V.in_unit(u.mV))
        return {**states, "spikes": ps.ShortTermState(jnp.zeros(shape, jnp.bool_))}

    def __call__(self, states: dict) -> tuple[jax.Array, dict]:
        spikes = states["spikes"].value
        V = states["lif"]["V"].value
        g_e, states = self.call_child("exc", states, spikes[..., : self.n_exc])
        g_i, states = self.call_child("inh", states, spikes[..., self.n_exc :])
        I_e, states = self.call_child("syn_e", states, g_e, V)
        I_i, states = self.call_child("syn_i", states, g_i, V)
        out, states = self.call_child("lif", states, I_e + I_i + I_EXT)
        spikes = out > 0
        return spikes, ps.set(states, "spikes", spikes)


def simulator(net: COBA, n_steps: int, progress: Any = True):
    """A compiled function ``states -> (spikes bool[n_steps, N], states)``."""

    @ps.compile.jit
    def simulate(states):
        def step(states, _):
            return net(states)

        return ps.compile.scan(step, states, None, length=n_steps, progress=progress)

    return simulate


def rates(spikes: np.ndarray, n_exc: int, duration_s: float) -> tuple[float, float]:
    """Mean excitatory and inhibitory rates in Hz."""
    counts = spikes.sum(0)
    return float(counts[:n_exc].mean() / duration_s), float(counts[n_exc:].mean() / duration_s)


def isi_cv(spikes: np.ndarray, dt_ms: float) -> float:
    """Mean coefficient of variation of the interspike intervals, over the
    neurons with at least 3 spikes (about 1 for irregular firing, 0 for a
    clock)."""
    cvs = []
    for column in spikes.T:
        times = np.nonzero(column)[0] * dt_ms
        if len(times) >= 3:
            isi = np.diff(times)
            cvs.append(isi.std() / isi.mean())
    return float(np.mean(cvs)) if cvs else float("nan")


def plot(
    spikes: np.ndarray, n_exc: int, dt_ms: float, path: Path, title: str, shown: int = 400
) -> None:
    """A raster of `shown` neurons (E and I in proportion) above the
    population rate of all of them, in 1 ms bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = spikes.shape[1]
    shown_exc = min(n_exc, round(shown * n_exc / n))
    shown_inh = min(n - n_exc, shown - shown_exc)
    picked = np.concatenate([spikes[:, :shown_exc], spikes[:, n_exc : n_exc + shown_inh]], 1)
    steps, neurons = np.nonzero(picked)
    t = steps * dt_ms
    exc = neurons < shown_exc
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(8, 4.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax1.scatter(t[exc], neurons[exc], s=3, c="tab:blue", marker=".", lw=0, rasterized=True)
    ax1.scatter(t[~exc], neurons[~exc], s=3, c="tab:red", marker=".", lw=0, rasterized=True)
    ax1.set(
        ylabel=f"neuron ({shown_exc} E, {shown_inh} I)",
        ylim=(-0.5, shown_exc + shown_inh - 0.5),
        title=title,
    )
    bin_steps = max(1, round(1.0 / dt_ms))  # 1 ms bins
    n_bins = spikes.shape[0] // bin_steps
    per_bin = spikes[: n_bins * bin_steps].reshape(n_bins, bin_steps, -1).sum((1, 2))
    rate = per_bin / n / (bin_steps * dt_ms * 1e-3)
    ax2.plot((np.arange(n_bins) + 0.5) * bin_steps * dt_ms, rate, c="k", lw=0.8)
    # The first volley (every neuron starts near threshold) is off the scale.
    settled = rate[min(n_bins - 1, 50) :] if n_bins > 100 else rate
    ax2.set(
        xlabel="time (ms)",
        ylabel="rate (Hz)",
        xlim=(0, spikes.shape[0] * dt_ms),
        ylim=(0, 1.5 * max(float(settled.max()), 1.0)),
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1000.0, help="in ms (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("coba_output"))
    parser.add_argument("--impl", choices=("event", "dense"), default="event")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    dt_ms = float(DT.to_decimal(u.ms))
    n_steps = round(args.duration / dt_ms)
    net = COBA(impl=args.impl)
    states = net.init(jax.random.key(args.seed))
    simulate = simulator(net, n_steps, progress=not args.no_progress)
    with ps.environ.context(dt=DT):
        start = time.perf_counter()
        compiled = simulate.lower(states).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        spikes, states = compiled(states)
        spikes = np.asarray(spikes)
        run_s = time.perf_counter() - start

    duration_s = n_steps * dt_ms * 1e-3
    rate_e, rate_i = rates(spikes, net.n_exc, duration_s)
    cv = isi_cv(spikes, dt_ms)
    print(
        f"COBA, {net.size} neurons, {n_steps * dt_ms:g} ms, seed {args.seed}, impl {args.impl}: "
        f"compiled in {compile_s:.2f} s, simulated in {run_s:.2f} s"
    )
    print(f"mean rate: E {rate_e:.2f} Hz, I {rate_i:.2f} Hz; mean ISI CV {cv:.2f}")
    path = args.out / "coba_raster.png"
    title = f"COBA: E {rate_e:.1f} Hz, I {rate_i:.1f} Hz (seed {args.seed})"
    plot(spikes, net.n_exc, dt_ms, path, title)
    print(f"wrote {path}")
    return {"rate_e": rate_e, "rate_i": rate_i, "cv": cv, "compile_s": compile_s, "run_s": run_s}


if __name__ == "__main__":
    main()
