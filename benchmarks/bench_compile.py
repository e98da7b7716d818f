"""``ps.compile``: per-call overhead of ``jit`` on the same arrays, a
10,000-step ``scan``, and the trace-and-compile time of the first call.

Run: ``.venv/bin/python benchmarks/bench_compile.py [--quick]``.
Bars: a jitted call within 1.05x of ``jax.jit``; the scan at the speed of
``jax.lax.scan``; first-call time within 1.2x of ``jax.jit`` and growing
linearly with the number of states.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from _harness import Row, built, compare, compare_once, only, print_rows, same_as_raw, unavailable
from _models import STATE_TREE, purestate_missing
from _peer_worker import with_brainstate

TITLE = "ps.compile: jit overhead, scan, first-call compile time"
SCAN_STEPS, SCAN_WIDTH = 10_000, 100


def arrays(n_states: int) -> dict:
    """``n_states`` arrays of shape (2,), ten to a group."""
    groups = max(1, n_states // 10)
    return {
        f"g{g}": {f"s{j}": jnp.full(2, float(j)) for j in range(n_states // groups)}
        for g in range(groups)
    }


def relax(tree):
    return jax.tree.map(lambda v: v * 0.9 + 1.0, tree)


def as_states(tree):
    import purestate as ps

    return jax.tree.map(ps.ShortTermState, tree)


def _pick(builders: dict, names) -> dict:
    """Each builder among `names` built: a callable, or why it cannot run."""
    return {name: built(build) for name, build in only(builders, names).items()}


# ------------------------------------------------------- per-call overhead ---


def jit_impls(n_states: int, names, fresh: bool = False) -> dict:
    """Jitted ``states -> relaxed states``. Each builder sets up the states and
    returns a factory of the call; with ``fresh``, each impl builds a new
    jitted function and calls it once."""
    tree = arrays(n_states)

    def raw():
        def make():
            f = jax.jit(lambda t: (None, relax(t)))
            return lambda: f(tree)

        return make

    def pure():
        import purestate as ps

        states = as_states(tree)

        def make():
            f = ps.compile.jit(lambda s: (None, relax(s)))
            return lambda: f(states)

        return make

    def on_state_tree():
        states = as_states(tree)

        def make():
            f = jax.jit(lambda s: (None, relax(s)))
            return lambda: f(states)

        return make

    def bstate():
        """Run by ``_peer_worker.py`` in brainstate 0.6.0's Python 3.12 process."""
        import brainstate as bst

        leaves = [bst.ShortTermState(v) for v in jax.tree.leaves(tree)]

        def make():
            @bst.transform.jit
            def f():
                for s in leaves:
                    s.value = s.value * 0.9 + 1.0

            # the new values live in the states: wait for them, as for raw JAX's
            return lambda: (f(), [s.value for s in leaves])

        return make

    def nnx_impl():
        from flax import nnx

        class Model(nnx.Module):
            def __init__(self):
                self.vars = nnx.data([nnx.Variable(v) for v in jax.tree.leaves(tree)])

        model = Model()

        def make():
            @nnx.jit
            def f(model):
                for v in model.vars:
                    v[...] = v[...] * 0.9 + 1.0

            return lambda: f(model)

        return make

    def eqx_impl():
        import equinox as eqx

        def make():
            f = eqx.filter_jit(lambda t: (None, relax(t)))
            return lambda: f(tree)

        return make

    builders = {
        "raw JAX": raw,
        "purestate": lambda: purestate_missing("compile.jit") or pure(),
        STATE_TREE: on_state_tree,
        "brainstate": lambda: unavailable("brainstate") or bstate(),
        "Flax NNX": lambda: unavailable("flax.nnx") or nnx_impl(),
        "Equinox": lambda: unavailable("equinox") or eqx_impl(),
    }
    impls = _pick(builders, names)
    if fresh:
        return {k: (lambda m=v: m()()) if callable(v) else v for k, v in impls.items()}
    return {k: v() if callable(v) else v for k, v in impls.items()}


def lower_impls(n_states: int, names) -> dict:
    """Factories that trace and lower a fresh jitted update without compiling
    it: the part of the first call that purestate can influence (XLA's own
    compile time is the same for every implementation handed the same HLO)."""
    tree = arrays(n_states)

    def lower(jit, args):
        def factory():
            jit(lambda t: (None, relax(t))).lower(args)

        return factory

    def pure():
        import purestate as ps

        return lower(ps.compile.jit, as_states(tree))

    builders = {
        "raw JAX": lambda: lower(jax.jit, tree),
        "purestate": lambda: purestate_missing("compile.jit") or pure(),
        STATE_TREE: lambda: lower(jax.jit, as_states(tree)),
    }
    return _pick(builders, names)


# ------------------------------------- a step that leaves its weights alone ---

WEIGHTS = 1_000


def unchanged_weights_impls(names) -> dict:
    """One jitted step of ``v <- 0.9 v + tanh(W v + x)`` with a 1,000 x 1,000
    weight that the step reads and does not change. Raw JAX returns only `v`;
    a stateful function returns every state, and `jax.jit` copies an input
    returned as it is, so the weight's 4 MB are copied per call unless the
    implementation hands unchanged states back itself."""
    rng = np.random.default_rng(3)
    W = jnp.asarray(rng.normal(size=(WEIGHTS, WEIGHTS)) / np.sqrt(WEIGHTS), jnp.float32)
    v0, x = jnp.zeros(WEIGHTS), jnp.ones(WEIGHTS)

    def update(W, v, x):
        return 0.9 * v + jnp.tanh(W @ v + x)

    def raw():
        f = jax.jit(update)
        return lambda: f(W, v0, x)

    def step(states, x):
        v = update(states["W"].value, states["v"].value, x)
        return None, {**states, "v": states["v"].replace(v)}

    def state_tree(jit):
        import purestate as ps

        states = {"W": ps.ParamState(W), "v": ps.ShortTermState(v0)}
        f = jit(step)
        return lambda: f(states, x)

    def pure():
        import purestate as ps

        return state_tree(ps.compile.jit)

    def bstate():
        """Run by ``_peer_worker.py`` in brainstate 0.6.0's Python 3.12 process."""
        import brainstate as bst

        W_state, v_state = bst.ParamState(W), bst.ShortTermState(v0)

        @bst.transform.jit
        def f(x):
            v_state.value = update(W_state.value, v_state.value, x)

        def call():  # return the new v, as raw JAX does (and so wait for it)
            f(x)
            return v_state.value

        return call

    def nnx_impl():
        from flax import nnx

        class Cell(nnx.Module):
            def __init__(self):
                self.W = nnx.Param(W)
                self.v = nnx.Variable(v0)

        cell = Cell()

        @nnx.jit
        def f(cell, x):
            cell.v[...] = update(cell.W[...], cell.v[...], x)

        return lambda: f(cell, x)

    def eqx_impl():
        import equinox as eqx

        tree = {"W": W, "v": v0}
        f = eqx.filter_jit(lambda t, x: {**t, "v": update(t["W"], t["v"], x)})
        return lambda: f(tree, x)

    builders = {
        "raw JAX": raw,
        "purestate": lambda: purestate_missing("compile.jit") or pure(),
        STATE_TREE: lambda: state_tree(jax.jit),
        "brainstate": lambda: unavailable("brainstate") or bstate(),
        "Flax NNX": lambda: unavailable("flax.nnx") or nnx_impl(),
        "Equinox": lambda: unavailable("equinox") or eqx_impl(),
    }
    return _pick(builders, names)


# ------------------------------------------------------------------ scan ---


def scan_impls(names) -> dict:
    V0 = jnp.zeros(SCAN_WIDTH)
    xs = jnp.sin(jnp.arange(SCAN_STEPS) * 0.01)

    def cell(V, n, x):
        V = 0.99 * V + x
        return V, n + 1, V.mean()

    def raw():
        def body(carry, x):
            V, n, y = cell(*carry, x)
            return (V, n), y

        f = jax.jit(lambda V, xs: jax.lax.scan(body, (V, jnp.int32(0)), xs))
        return lambda: f(V0, xs)

    def pure():
        import purestate as ps

        states = {"V": ps.ShortTermState(V0), "n": ps.LongTermState(jnp.int32(0))}

        def body(states, x):
            V, n, y = cell(states["V"].value, states["n"].value, x)
            return y, {"V": states["V"].replace(V), "n": states["n"].replace(n)}

        f = ps.compile.jit(lambda states, xs: ps.compile.scan(body, states, xs))
        return lambda: f(states, xs)

    def bstate():
        """Run by ``_peer_worker.py`` in brainstate 0.6.0's Python 3.12 process."""
        import brainstate as bst

        V_state, n_state = bst.ShortTermState(V0), bst.LongTermState(jnp.int32(0))

        def body(x):
            V_state.value, n_state.value, y = cell(V_state.value, n_state.value, x)
            return y

        f = bst.transform.jit(lambda xs: bst.transform.for_loop(body, xs))

        def call():  # the final carry lives in the states: return it as raw JAX does
            ys = f(xs)
            return (V_state.value, n_state.value), ys

        return call

    builders = {
        "raw JAX": raw,
        "purestate": lambda: purestate_missing("compile.jit", "compile.scan") or pure(),
        "brainstate": lambda: unavailable("brainstate") or bstate(),
        "Flax NNX": lambda: "no stateful scan in this case (nnx.scan needs a module-shaped carry)",
        "Equinox": lambda: "no stateful scan; Equinox uses jax.lax.scan directly (= raw JAX)",
    }
    return _pick(builders, names)


def measure(quick: bool, names) -> list[Row]:
    rows = []
    rounds = 7 if quick else 15
    check = same_as_raw()
    for n in (10, 1_000):
        impls = jit_impls(n, names)
        rows += compare(f"jit per call, {n:,} states", impls, rounds=rounds, check=check)
    rows += compare(
        f"jitted step leaving a {WEIGHTS:,}x{WEIGHTS:,} weight unchanged",
        unchanged_weights_impls(names),
        rounds=rounds,
        check=check,
    )
    rows += compare(
        f"scan of {SCAN_STEPS:,} steps (whole scan)",
        scan_impls(names),
        rounds=5 if quick else 11,
        check=check,
    )
    sizes = (10, 1_000) if quick else (10, 1_000, 10_000)
    for n in sizes:
        if n >= 10_000:
            # XLA alone compiles for ~20 s here; peers are left to the smaller trees.
            kept = [i for i in names if i in ("raw JAX", "purestate", STATE_TREE)]
            impls = jit_impls(n, kept, fresh=True)
            impls |= {i: "skipped at this size (time)" for i in names if i not in impls}
        else:
            impls = jit_impls(n, names, fresh=True)
        rows += compare_once(
            f"first call (trace + compile), {n:,} states", impls, rounds=2 if n >= 10_000 else 5
        )
    for n in (10, 1_000, 10_000):
        rows += compare_once(
            f"trace + lower only (no XLA compile), {n:,} states", lower_impls(n, names), rounds=3
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    return with_brainstate(measure, quick)


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
