"""COBA benchmark: 1 s of biological time of the COBA network (4,000 LIF
neurons with conductance-based exponential synapses, dt = 0.1 ms; Brette et
al. 2007, Benchmark 1) in purestate, hand-written JAX, Brian2 and BrainPy.

Every simulator runs the same network (the parameters of examples/coba.py)
in its own subprocess, and in its own Python environment for the peers:

* purestate: ``examples/coba.py`` itself (``ps.nn.FixedProb`` event-driven
  and dense), compiled ahead of time, then timed;
* hand-written JAX: the same equations on plain arrays, float32, in one
  ``jax.lax.scan``; ``event``: each step a ``while_loop`` over the neurons
  that spiked (each found by an ``argmax`` over the spikes not yet
  handled), adding their rows of target indices; ``dense``: ``spikes @ W``
  with a float32 weight matrix;
* Brian2 (``--brian2-python``): ``NeuronGroup`` with ``exponential_euler``,
  runtime mode with Cython code generation (``cython``) and C++ standalone
  (``cpp_standalone``: the simulation loop time that Brian2 measures in the
  binary, excluding the synapse creation and the binary's start);
* BrainPy 2.9 (``--brainpy-python``): ``brainpy.state`` on brainstate 0.6.0
  (the COBA example of brainpy.state: ``LIFRef``, ``AlignPostProj`` with
  ``brainstate.nn.EventFixedProb``, ``Expon``, ``COBA``) under
  ``brainstate.transform.jit``; and the classic ``brainpy.dyn`` API (the COBA
  example of BrainPy's repository: ``LifRefLTC``, ``FullProjAlignPostMg``
  with ``EventCSRLinear``) under ``DSRunner``.

Each row: the build time (constructing the network, with its random
connections, and compiling it or generating its code; see the notes under
the table), then the median wall time of `--repeats` runs of 1 s from the
same initial state (after an untimed first run; dense rows: one run,
without), and the mean E and I rates of the last run (the networks are
drawn independently, so the rates agree only in distribution: about 18-24
Hz). No progress bars while timing.

``--scale 10`` runs the 40,000-neuron network with the same 80 inputs per
neuron (connection probability 0.2 %); dense rows are left out there.

The peers need Python 3.12 environments: ``--setup`` creates them under
``--envs`` (default /tmp/purestate_bench_envs) with pip, pinned to the
versions measured: brian2 2.10.1 with cython; brainpy 2.9.0 with numba
(which brings brainstate 0.6.0 and its own jax). A peer whose environment is
missing is reported as such.

Run: ``.venv/bin/python benchmarks/bench_coba.py [--setup] [--scale 10]
[--markdown benchmarks/coba_results.md]``. ``make bench`` (benchmarks/run_all.py)
runs it through `run` and puts its tables into docs/performance.md; it is not
part of ``make test``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
EXAMPLE = ROOT / "examples" / "coba.py"
DEFAULT_ENVS = Path("/tmp/purestate_bench_envs")

# The network (see examples/coba.py), in the plain numbers the peers take.
N_EXC, N_INH, PROB = 3200, 800, 0.02
DT_MS, DURATION_MS = 0.1, 1000.0
TAU_M, TAU_E, TAU_I, TAU_REF = 20.0, 5.0, 10.0, 5.0  # ms
E_L, V_TH, E_E, E_I = -60.0, -50.0, 0.0, -80.0  # mV
C_PF, G_L_NS, I_EXT_PA = 200.0, 10.0, 200.0
W_E_NS, W_I_NS = 6.0, 67.0

PEERS = {
    "brian2": ["brian2==2.10.1", "cython"],
    "brainpy": ["brainpy==2.9.0", "numba"],
}

# name: (environment, worker, label)
ROWS = {
    "purestate-event": ("main", "purestate", "purestate, event-driven (FixedProb impl='event')"),
    "purestate-dense": ("main", "purestate", "purestate, dense (FixedProb impl='dense')"),
    "jax-event": ("main", "jax", "hand-written JAX, event-driven"),
    "jax-dense": ("main", "jax", "hand-written JAX, dense matrix"),
    "brian2-cpp_standalone": ("brian2", "brian2", "Brian2, cpp_standalone"),
    "brian2-cython": ("brian2", "brian2", "Brian2, runtime (cython)"),
    "brainpy-state": ("brainpy", "brainpy_state", "BrainPy 2.9 brainpy.state (brainstate 0.6.0)"),
    "brainpy-dyn": ("brainpy", "brainpy_dyn", "BrainPy 2.9 classic brainpy.dyn"),
}


def sizes(scale: float) -> tuple[int, int, float]:
    n_exc, n_inh = round(N_EXC * scale), round(N_INH * scale)
    return n_exc, n_inh, PROB / scale  # 80 inputs per neuron


def result(**fields) -> None:
    print("RESULT " + json.dumps(fields), flush=True)


def timed_repeats(run, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def rates_of(counts, n_exc: int) -> tuple[float, float]:
    """Mean E and I rates (Hz) of per-neuron spike counts over 1 s."""
    seconds = DURATION_MS / 1000.0
    return float(counts[:n_exc].mean() / seconds), float(counts[n_exc:].mean() / seconds)


# ---------------------------------------------------------------- workers


def worker_purestate(name: str, scale: float, repeats: int, seed: int) -> None:
    import importlib.util

    import jax
    import numpy as np

    import purestate as ps

    spec = importlib.util.spec_from_file_location("coba_example", EXAMPLE)
    coba = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = coba
    spec.loader.exec_module(coba)

    n_exc, n_inh, prob = sizes(scale)
    impl = name.split("-")[1]
    begin = time.perf_counter()  # build: construction and compilation
    net = coba.COBA(n_exc, n_inh, impl=impl, prob=prob)
    states = net.init(jax.random.key(seed))
    n_steps = round(DURATION_MS / DT_MS)

    # Spike counts per neuron rather than the raster: what a benchmark keeps.
    @ps.compile.jit
    def simulate(states):
        def step(states, counts, _):
            spikes, states = net(states)
            return (counts + spikes, None), states

        (counts, _), states = ps.compile.scan(
            step, states, None, length=n_steps, init=jax.numpy.zeros(net.size, np.int32)
        )
        return counts, states

    with ps.environ.context(dt=coba.DT):
        compiled = simulate.lower(states).compile()
        build = time.perf_counter() - begin
        if impl == "event":  # a first run, untimed (a dense run takes a minute)
            jax.block_until_ready(compiled(states))
        out = []
        times = timed_repeats(
            lambda: out.append(jax.block_until_ready(compiled(states)[0])), repeats
        )
    rate_e, rate_i = rates_of(np.asarray(out[-1]), n_exc)
    result(
        build_s=build,
        times=times,
        rate_e=rate_e,
        rate_i=rate_i,
        versions=f"purestate {ps.__version__}, jax {jax.__version__}",
    )


def worker_jax(name: str, scale: float, repeats: int, seed: int) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    n_exc, n_inh, prob = sizes(scale)
    n = n_exc + n_inh
    n_steps = round(DURATION_MS / DT_MS)
    begin = time.perf_counter()  # build: construction and compilation
    rng = np.random.default_rng(seed)
    V0 = jnp.asarray(-55.0 + 2.0 * rng.standard_normal(n), jnp.float32)

    def padded_targets(n_pre):
        """Each presynaptic neuron's targets, each of the n with probability
        prob, padded with n: the positions of the successes of a Bernoulli
        sequence, from geometric gaps."""
        width = int(n * prob + 8 * np.sqrt(n * prob) + 10)
        pos = np.cumsum(rng.geometric(prob, (n_pre, width + 1)), axis=1) - 1
        assert (pos[:, -1] >= n).all(), "a neuron drew more targets than the width"
        return np.where(pos[:, :width] < n, pos[:, :width], n).astype(np.int32)

    targets_e, targets_i = padded_targets(n_exc), padded_targets(n_inh)

    def matrix(targets):
        out = np.zeros((targets.shape[0], n + 1), np.float32)
        np.put_along_axis(out, targets, 1.0, axis=1)
        return out[:, :n]

    if name == "jax-dense":
        # conductance increments in units of g_L; rows: presynaptic neurons
        W_e = jnp.asarray(matrix(targets_e) * (W_E_NS / G_L_NS))
        W_i = jnp.asarray(matrix(targets_i) * (W_I_NS / G_L_NS))

        def inputs(spikes):
            s = spikes.astype(jnp.float32)
            return s[:n_exc] @ W_e, s[n_exc:] @ W_i

    else:
        targets_e, targets_i = jnp.asarray(targets_e), jnp.asarray(targets_i)

        def scatter(spikes, targets, weight):
            # one neuron that spiked at a time: the first still active
            def body(carry):
                k, active, g = carry
                i = jnp.argmax(active)
                return k + 1, active.at[i].set(False), g.at[targets[i]].add(weight)

            count = spikes.sum()
            init = (0, spikes, jnp.zeros(n + 1, jnp.float32))
            return jax.lax.while_loop(lambda c: c[0] < count, body, init)[2][:n]

        def inputs(spikes):
            return (
                scatter(spikes[:n_exc], targets_e, W_E_NS / G_L_NS),
                scatter(spikes[n_exc:], targets_i, W_I_NS / G_L_NS),
            )

    # conductances in units of g_L, V in mV
    decay_e, decay_i = np.float32(np.exp(-DT_MS / TAU_E)), np.float32(np.exp(-DT_MS / TAU_I))
    decay_m = np.float32(np.exp(-DT_MS / TAU_M))
    n_ref = round(TAU_REF / DT_MS)
    drive = I_EXT_PA / G_L_NS  # mV

    def step(carry, _):
        V, g_e, g_i, left, spikes, counts = carry
        x_e, x_i = inputs(spikes)
        g_e = g_e * decay_e + x_e
        g_i = g_i * decay_i + x_i
        fire = (V >= V_TH) & (left == 0)
        V = jnp.where(fire, E_L, V)
        V_inf = E_L + g_e * (E_E - V) + g_i * (E_I - V) + drive
        V_new = V_inf + (V - V_inf) * decay_m
        left = jnp.where(fire, n_ref, jnp.maximum(left - 1, 0))
        held = left > 0
        V = jnp.where(held, V, V_new)
        spikes = (V >= V_TH) & ~held
        return (V, g_e, g_i, left, spikes, counts + spikes), None

    zeros = jnp.zeros(n, jnp.float32)
    init = (V0, zeros, zeros, jnp.zeros(n, jnp.int32), jnp.zeros(n, bool), jnp.zeros(n, jnp.int32))

    @jax.jit
    def simulate(init):
        return jax.lax.scan(step, init, None, length=n_steps)[0][-1]

    compiled = simulate.lower(init).compile()
    build = time.perf_counter() - begin
    if name == "jax-event":  # a first run, untimed (a dense run takes a minute)
        jax.block_until_ready(compiled(init))
    out = []
    times = timed_repeats(lambda: out.append(jax.block_until_ready(compiled(init))), repeats)
    rate_e, rate_i = rates_of(np.asarray(out[-1]), n_exc)
    result(
        build_s=build, times=times, rate_e=rate_e, rate_i=rate_i, versions=f"jax {jax.__version__}"
    )


def worker_brian2(name: str, scale: float, repeats: int, seed: int) -> None:
    import tempfile

    import brian2 as b2
    import numpy as np
    from brian2 import ms, mV, nS, pA, pF

    n_exc, n_inh, prob = sizes(scale)
    n = n_exc + n_inh
    mode = name.split("-", 1)[1]
    if mode == "cpp_standalone":
        directory = tempfile.mkdtemp(prefix="brian2_coba_")
        b2.set_device("cpp_standalone", directory=directory, build_on_run=False)
    else:
        b2.prefs.codegen.target = "cython"
    b2.defaultclock.dt = DT_MS * ms
    b2.seed(seed)
    namespace = {
        "C": C_PF * pF,
        "g_L": G_L_NS * nS,
        "E_L": E_L * mV,
        "E_e": E_E * mV,
        "E_i": E_I * mV,
        "I_ext": I_EXT_PA * pA,
        "tau_e": TAU_E * ms,
        "tau_i": TAU_I * ms,
        "V_th": V_TH * mV,
        "w_e": W_E_NS * nS,
        "w_i": W_I_NS * nS,
    }
    eqs = """
    dv/dt = (g_L * (E_L - v) + g_e * (E_e - v) + g_i * (E_i - v) + I_ext) / C : volt (unless refractory)
    dg_e/dt = -g_e / tau_e : siemens
    dg_i/dt = -g_i / tau_i : siemens
    """
    begin = time.perf_counter()  # build: construction and compilation
    P = b2.NeuronGroup(
        n,
        eqs,
        threshold="v > V_th",
        reset="v = E_L",
        refractory=TAU_REF * ms,
        method="exponential_euler",
        namespace=namespace,
    )
    P.v = "-55*mV + 2*mV*randn()"
    Ce = b2.Synapses(P[:n_exc], P, on_pre="g_e += w_e", namespace=namespace)
    Ci = b2.Synapses(P[n_exc:], P, on_pre="g_i += w_i", namespace=namespace)
    Ce.connect(p=prob)
    Ci.connect(p=prob)
    monitor = b2.SpikeMonitor(P, record=False)  # counts only
    net = b2.Network(P, Ce, Ci, monitor)
    duration = DURATION_MS * ms
    versions = f"brian2 {b2.__version__}, numpy {np.__version__}"

    if mode == "cpp_standalone":
        net.run(duration)
        b2.device.build(directory=directory, compile=True, run=True, with_output=False)
        build = time.perf_counter() - begin - b2.device._last_run_time
        times, binary = [b2.device._last_run_time], [b2.device.timers["run_binary"]]
        for _ in range(repeats - 1):
            b2.device.run(directory=directory, with_output=False)
            times.append(b2.device._last_run_time)
            binary.append(b2.device.timers["run_binary"])
        counts = np.asarray(monitor.count)
        versions += f", {b2.prefs.codegen.cpp.compiler or 'gcc'}"
        note = (
            "build: code generation, C++ compilation and the binary less its simulation loop; "
            f"run: the simulation loop as timed by Brian2 (the whole binary, with the synapse "
            f"creation and the start: {statistics.median(binary):.2f} s)"
        )
    else:
        net.store()
        net.run(10 * ms)  # code generation and Cython compilation
        build = time.perf_counter() - begin
        counts_list = []

        def run():
            net.restore()
            net.run(duration)
            counts_list.append(np.asarray(monitor.count).copy())

        times = timed_repeats(run, repeats)
        counts = counts_list[-1]
        import Cython

        versions += f", Cython {Cython.__version__}"
        note = (
            "build: construction and a 10 ms run (code generation and Cython compilation, "
            "cached on disk for later processes)"
        )
    rate_e, rate_i = rates_of(counts, n_exc)
    result(build_s=build, times=times, rate_e=rate_e, rate_i=rate_i, versions=versions, note=note)


def worker_brainpy_state(name: str, scale: float, repeats: int, seed: int) -> None:
    import brainevent
    import brainpy
    import brainpy.state
    import brainstate
    import braintools
    import brainunit as u
    import jax
    import numpy as np

    n_exc, n_inh, prob = sizes(scale)
    brainstate.random.seed(seed)

    # The COBA example of brainpy.state, in physical units: as published
    # (R = 1 ohm by default, weights 0.6 mS and 6.7 mS, input 20 mA) the
    # synaptic currents come out 1000 times too weak (mS * mV = uA, beside an
    # input in mA) and the network fires at 50.7 Hz, as without synapses.
    class EINet(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.n_exc, self.n_inh = n_exc, n_inh
            self.num = n_exc + n_inh
            self.N = brainpy.state.LIFRef(
                self.num,
                R=100.0 * u.Mohm,  # 1 / g_L
                V_rest=-60.0 * u.mV,
                V_th=-50.0 * u.mV,
                V_reset=-60.0 * u.mV,
                tau=20.0 * u.ms,
                tau_ref=5.0 * u.ms,
                V_initializer=braintools.init.Normal(-55.0 * u.mV, 2.0 * u.mV),
            )
            self.E = brainpy.state.AlignPostProj(
                comm=brainstate.nn.EventFixedProb(
                    n_exc, self.num, conn_num=prob, conn_weight=W_E_NS * u.nS
                ),
                syn=brainpy.state.Expon.desc(self.num, tau=5.0 * u.ms),
                out=brainpy.state.COBA.desc(E=0.0 * u.mV),
                post=self.N,
            )
            self.I = brainpy.state.AlignPostProj(
                comm=brainstate.nn.EventFixedProb(
                    n_inh, self.num, conn_num=prob, conn_weight=W_I_NS * u.nS
                ),
                syn=brainpy.state.Expon.desc(self.num, tau=10.0 * u.ms),
                out=brainpy.state.COBA.desc(E=-80.0 * u.mV),
                post=self.N,
            )

        def update(self, t, inp):
            with brainstate.environ.context(t=t):
                spk = self.N.get_spike() != 0.0
                self.E(spk[: self.n_exc])
                self.I(spk[self.n_exc :])
                self.N(inp)
                return self.N.get_spike()

    begin = time.perf_counter()  # build: construction and compilation
    net = EINet()
    brainstate.nn.init_all_states(net)
    initial = {k: v.value for k, v in net.states().items()}

    @brainstate.transform.jit
    def simulate():
        times = u.math.arange(0.0 * u.ms, DURATION_MS * u.ms, brainstate.environ.get_dt())
        spikes = brainstate.transform.for_loop(lambda t: net.update(t, I_EXT_PA * u.pA), times)
        return (spikes != 0).sum(0)

    def reset():
        for k, state in net.states().items():
            state.value = initial[k]

    with brainstate.environ.context(dt=DT_MS * u.ms):
        jax.block_until_ready(simulate())
        build = time.perf_counter() - begin
        out = []

        def run():
            reset()
            out.append(jax.block_until_ready(simulate()))

        times = timed_repeats(run, repeats)
    rate_e, rate_i = rates_of(np.asarray(out[-1]), n_exc)
    versions = (
        f"brainpy {brainpy.__version__}, brainstate {brainstate.__version__}, "
        f"brainevent {brainevent.__version__}, jax {jax.__version__}"
    )
    result(
        build_s=build - statistics.median(times),  # the first call less a run
        times=times,
        rate_e=rate_e,
        rate_i=rate_i,
        versions=versions,
        note="build: construction and the first call (tracing, compilation, a run), less the median run",
    )


def worker_brainpy_dyn(name: str, scale: float, repeats: int, seed: int) -> None:
    import brainpy as bp
    import brainpy.math as bm
    import jax
    import numpy as np

    n_exc, n_inh, prob = sizes(scale)
    bm.random.seed(seed)
    bm.set_dt(DT_MS)
    pars = dict(
        V_rest=-60.0,
        V_th=-50.0,
        V_reset=-60.0,
        tau=20.0,
        tau_ref=5.0,
        V_initializer=bp.init.Normal(-55.0, 2.0),
    )

    # The COBA example of BrainPy's repository (EICOBA_PostAlign).
    class EICOBA(bp.DynamicalSystem):
        def __init__(self, num_exc, num_inh, inp=20.0):
            super().__init__()
            self.inp = inp
            self.E = bp.dyn.LifRefLTC(num_exc, **pars)
            self.I = bp.dyn.LifRefLTC(num_inh, **pars)

            def proj(pre, post, weight, tau, E):
                return bp.dyn.FullProjAlignPostMg(
                    pre=pre,
                    delay=None,
                    comm=bp.dnn.EventCSRLinear(
                        bp.conn.FixedProb(prob, pre=pre.num, post=post.num), weight
                    ),
                    syn=bp.dyn.Expon.desc(post.varshape, tau=tau),
                    out=bp.dyn.COBA.desc(E=E),
                    post=post,
                )

            self.E2E = proj(self.E, self.E, 0.6, 5.0, 0.0)
            self.E2I = proj(self.E, self.I, 0.6, 5.0, 0.0)
            self.I2E = proj(self.I, self.E, 6.7, 10.0, -80.0)
            self.I2I = proj(self.I, self.I, 6.7, 10.0, -80.0)

        def update(self):
            self.E2I()
            self.I2I()
            self.I2E()
            self.E2E()
            self.E(self.inp)
            self.I(self.inp)

    begin = time.perf_counter()  # build: construction and compilation
    net = EICOBA(n_exc, n_inh)
    runner = bp.DSRunner(
        net,
        monitors={"E": lambda: net.E.spike.sum(), "I": lambda: net.I.spike.sum()},
        progress_bar=False,
        numpy_mon_after_run=True,
    )
    initial = {k: v.value for k, v in net.vars().unique().items()}

    def reset():
        for k, var in net.vars().unique().items():
            var.value = initial[k]

    runner.run(DURATION_MS)
    build = time.perf_counter() - begin
    counts = []

    def run():
        reset()
        runner.run(DURATION_MS)
        counts.append((np.asarray(runner.mon["E"]).sum(), np.asarray(runner.mon["I"]).sum()))

    times = timed_repeats(run, repeats)
    seconds = DURATION_MS / 1000.0
    rate_e, rate_i = counts[-1][0] / n_exc / seconds, counts[-1][1] / n_inh / seconds
    result(
        build_s=build - statistics.median(times),  # the first run less a run
        times=times,
        rate_e=float(rate_e),
        rate_i=float(rate_i),
        versions=f"brainpy {bp.__version__}, jax {jax.__version__}",
        note="build: construction and the first run (tracing, compilation, a run), less the median run",
    )


WORKERS = {
    "purestate": worker_purestate,
    "jax": worker_jax,
    "brian2": worker_brian2,
    "brainpy_state": worker_brainpy_state,
    "brainpy_dyn": worker_brainpy_dyn,
}

# ---------------------------------------------------------------- driver


def find_python312() -> str | None:
    """A Python 3.12 that runs: pyenv's, else python3.12 on PATH (a pyenv
    shim on PATH may point at no installed version)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python")))
    candidates = [*candidates[::-1], shutil.which("python3.12") or ""]
    for python in filter(None, candidates):
        check = [python, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"]
        if subprocess.run(check, capture_output=True).returncode == 0:
            return python
    return None


def setup_envs(envs: Path) -> None:
    python = find_python312()
    if python is None:
        raise SystemExit("--setup needs Python 3.12 (python3.12 on PATH, or pyenv's 3.12.x)")
    for peer, packages in PEERS.items():
        env = envs / peer
        if not (env / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", *packages], check=True
        )


def run_row(name: str, python: str, args) -> dict:
    cmd = [python, str(HERE), "--worker", name, "--scale", str(args.scale)]
    cmd += ["--repeats", str(args.repeats if "dense" not in name else 1), "--seed", str(args.seed)]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {args.timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit status {proc.returncode}: " + " / ".join(tail)[-300:]}


def table(rows: list[tuple[str, dict]], args) -> str:
    n_exc, n_inh, prob = sizes(args.scale)
    lines = [
        f"COBA, {n_exc + n_inh:,} neurons ({n_exc:,} E, {n_inh:,} I), connection probability "
        f"{100 * prob:g} %, 1 s of biological time at dt = 0.1 ms; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"median of {args.repeats} runs after a first one (dense: 1 run).",
        "",
        "| simulator | build / compile (s) | 1 s of biology (s) | rate E (Hz) | rate I (Hz) | versions |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in rows:
        label = ROWS[name][2]
        if "error" in r:
            lines.append(f"| {label} | - | - | - | - | not run: {r['error']} |")
            continue
        median = statistics.median(r["times"])
        lines.append(
            f"| {label} | {r['build_s']:.2f} | {median:.3f} | {r['rate_e']:.1f} | "
            f"{r['rate_i']:.1f} | {r['versions']} |"
        )
    notes = [f"{ROWS[n][2]}: {r['note']}" for n, r in rows if r.get("note")]
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(ROWS), help="rows to run (default all)")
    parser.add_argument("--scale", type=float, default=1.0, help="10: 40,000 neurons")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per row")
    parser.add_argument("--envs", type=Path, default=DEFAULT_ENVS)
    parser.add_argument("--brian2-python", help="default: ENVS/brian2/bin/python")
    parser.add_argument("--brainpy-python", help="default: ENVS/brainpy/bin/python")
    parser.add_argument("--setup", action="store_true", help="create the peers' environments")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def collect(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """Run the rows `args` asks for, each in its own process, printing each."""
    pythons = {
        "main": sys.executable,
        "brian2": args.brian2_python or str(args.envs / "brian2" / "bin" / "python"),
        "brainpy": args.brainpy_python or str(args.envs / "brainpy" / "bin" / "python"),
    }
    names = args.only or [n for n in ROWS if not (args.scale > 1 and "dense" in n)]
    rows = []
    for name in names:
        python = pythons[ROWS[name][0]]
        if not Path(python).exists():
            r = {"error": f"no environment at {python} (run with --setup)"}
        else:
            r = run_row(name, python, args)
        rows.append((name, r))
        if "error" in r:
            print(f"{ROWS[name][2]}: not run: {r['error']}", flush=True)
        else:
            print(
                f"{ROWS[name][2]}: build {r['build_s']:.2f} s, 1 s of biology in "
                f"{statistics.median(r['times']):.3f} s (runs: "
                f"{', '.join(f'{t:.3f}' for t in r['times'])}), rates E {r['rate_e']:.1f} Hz, "
                f"I {r['rate_i']:.1f} Hz [{r['versions']}]",
                flush=True,
            )
    return rows


# ------------------------------------------------- make bench (run_all.py)

TITLE = "COBA network, 1 s of biological time"


def run(quick: bool = False) -> list[dict]:
    """The section of `make bench`: 4,000 neurons (every row) and, unless
    `quick`, 40,000 (`--scale 10`); `quick` runs the event-driven purestate
    and hand-written JAX rows only. The peers' environments are built when
    missing (a failure leaves their rows "not run", with the reason)."""
    if not quick and not all((DEFAULT_ENVS / peer / "bin" / "python").exists() for peer in PEERS):
        try:
            setup_envs(DEFAULT_ENVS)
        except (SystemExit, OSError, subprocess.CalledProcessError) as error:
            print(f"COBA: could not build the peers' environments: {error}", flush=True)
    runs = (
        [["--only", "purestate-event", "jax-event", "--repeats", "2"]]
        if quick
        else [
            ["--repeats", "5"],
            ["--scale", "10", "--repeats", "3"],
        ]
    )
    rows = []
    for argv in runs:
        args = parse(argv)
        rows += [
            {"scale": args.scale, "repeats": args.repeats, "name": name, **r}
            for name, r in collect(args)
        ]
    return rows


def markdown(rows: list[dict]) -> str:
    """One table per network size, as `--markdown` writes it."""
    parts = []
    for scale in dict.fromkeys(r["scale"] for r in rows):
        mine = [r for r in rows if r["scale"] == scale]
        args = argparse.Namespace(scale=scale, repeats=mine[0]["repeats"])
        parts.append(table([(r["name"], r) for r in mine], args))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        WORKERS[ROWS[args.worker][1]](args.worker, args.scale, args.repeats, args.seed)
        return
    if args.setup:
        setup_envs(args.envs)
    text = table(collect(args), args)
    print()
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
