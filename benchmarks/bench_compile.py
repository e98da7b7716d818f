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
from _harness import Row, compare, compare_once, print_rows, unavailable
from _models import STATE_TREE, purestate_missing

import purestate as ps

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
    return jax.tree.map(ps.ShortTermState, tree)


# ------------------------------------------------------- per-call overhead ---


def jit_impls(n_states: int, fresh: bool = False) -> dict:
    """Jitted ``states -> relaxed states``. With ``fresh``, each impl is a
    factory that builds a new jitted function and calls it once."""
    tree = arrays(n_states)
    states = as_states(tree)
    impls = {}

    def raw():
        f = jax.jit(lambda t: (None, relax(t)))
        return lambda: f(tree)

    impls["raw JAX"] = raw

    why = purestate_missing("compile.jit")
    if why:
        impls["purestate"] = why
    else:

        def pure():
            f = ps.compile.jit(lambda s: (None, relax(s)))
            return lambda: f(states)

        impls["purestate"] = pure

    def on_state_tree():
        f = jax.jit(lambda s: (None, relax(s)))
        return lambda: f(states)

    impls[STATE_TREE] = on_state_tree

    why = unavailable("brainstate")
    if why:
        impls["brainstate"] = why
    else:
        import brainstate as bst

        bst_states = jax.tree.map(bst.ShortTermState, tree)
        leaves = jax.tree.leaves(bst_states, is_leaf=lambda s: isinstance(s, bst.State))

        def bstate():
            @bst.transform.jit
            def f():
                for s in leaves:
                    s.value = s.value * 0.9 + 1.0

            return f

        impls["brainstate"] = bstate

    why = unavailable("flax.nnx")
    if why:
        impls["Flax NNX"] = why
    else:
        from flax import nnx

        class Model(nnx.Module):
            def __init__(self):
                self.vars = nnx.data([nnx.Variable(v) for v in jax.tree.leaves(tree)])

        model = Model()

        def nnx_impl():
            @nnx.jit
            def f(model):
                for v in model.vars:
                    v[...] = v[...] * 0.9 + 1.0

            return lambda: f(model)

        impls["Flax NNX"] = nnx_impl

    why = unavailable("equinox")
    if why:
        impls["Equinox"] = why
    else:
        import equinox as eqx

        def eqx_impl():
            f = eqx.filter_jit(lambda t: (None, relax(t)))
            return lambda: f(tree)

        impls["Equinox"] = eqx_impl

    if fresh:
        return {k: (lambda m=v: m()()) if callable(v) else v for k, v in impls.items()}
    return {k: v() if callable(v) else v for k, v in impls.items()}


def lower_impls(n_states: int) -> dict:
    """Factories that trace and lower a fresh jitted update without compiling
    it: the part of the first call that purestate can influence (XLA's own
    compile time is the same for every implementation handed the same HLO)."""
    tree = arrays(n_states)
    states = as_states(tree)

    def lower(jit, args):
        def factory():
            jit(lambda t: (None, relax(t))).lower(args)

        return factory

    impls = {"raw JAX": lower(jax.jit, tree)}
    why = purestate_missing("compile.jit")
    impls["purestate"] = why or lower(ps.compile.jit, states)
    impls[STATE_TREE] = lower(jax.jit, states)
    return impls


# ------------------------------------- a step that leaves its weights alone ---

WEIGHTS = 1_000


def unchanged_weights_impls() -> dict:
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

    raw = jax.jit(update)
    impls = {"raw JAX": lambda: raw(W, v0, x)}
    states = {"W": ps.ParamState(W), "v": ps.ShortTermState(v0)}

    def step(states, x):
        v = update(states["W"].value, states["v"].value, x)
        return None, {**states, "v": states["v"].replace(v)}

    why = purestate_missing("compile.jit")
    if why:
        impls["purestate"] = why
    else:
        pure = ps.compile.jit(step)
        impls["purestate"] = lambda: pure(states, x)
    on_tree = jax.jit(step)
    impls[STATE_TREE] = lambda: on_tree(states, x)

    why = unavailable("brainstate")
    if why:
        impls["brainstate"] = why
    else:
        import brainstate as bst

        W_state, v_state = bst.ParamState(W), bst.ShortTermState(v0)

        @bst.transform.jit
        def bst_step(x):
            v_state.value = update(W_state.value, v_state.value, x)

        impls["brainstate"] = lambda: bst_step(x)

    why = unavailable("flax.nnx")
    if why:
        impls["Flax NNX"] = why
    else:
        from flax import nnx

        class Cell(nnx.Module):
            def __init__(self):
                self.W = nnx.Param(W)
                self.v = nnx.Variable(v0)

        cell = Cell()

        @nnx.jit
        def nnx_step(cell, x):
            cell.v[...] = update(cell.W[...], cell.v[...], x)

        impls["Flax NNX"] = lambda: nnx_step(cell, x)

    why = unavailable("equinox")
    if why:
        impls["Equinox"] = why
    else:
        import equinox as eqx

        tree = {"W": W, "v": v0}
        eqx_step = eqx.filter_jit(lambda t, x: {**t, "v": update(t["W"], t["v"], x)})
        impls["Equinox"] = lambda: eqx_step(tree, x)
    return impls


# ------------------------------------------------------------------ scan ---


def scan_impls() -> dict:
    V0 = jnp.zeros(SCAN_WIDTH)
    xs = jnp.sin(jnp.arange(SCAN_STEPS) * 0.01)

    def cell(V, n, x):
        V = 0.99 * V + x
        return V, n + 1, V.mean()

    def raw_body(carry, x):
        V, n, y = cell(*carry, x)
        return (V, n), y

    raw = jax.jit(lambda V, xs: jax.lax.scan(raw_body, (V, jnp.int32(0)), xs))
    impls = {"raw JAX": lambda: raw(V0, xs)}

    why = purestate_missing("compile.jit", "compile.scan")
    if why:
        impls["purestate"] = why
    else:
        states = {"V": ps.ShortTermState(V0), "n": ps.LongTermState(jnp.int32(0))}

        def body(states, x):
            V, n, y = cell(states["V"].value, states["n"].value, x)
            return y, {"V": states["V"].replace(V), "n": states["n"].replace(n)}

        pure = ps.compile.jit(lambda states, xs: ps.compile.scan(body, states, xs))
        impls["purestate"] = lambda: pure(states, xs)

    why = unavailable("brainstate")
    if why:
        impls["brainstate"] = why
    else:
        import brainstate as bst

        V_state, n_state = bst.ShortTermState(V0), bst.LongTermState(jnp.int32(0))

        def bst_body(x):
            V_state.value, n_state.value, y = cell(V_state.value, n_state.value, x)
            return y

        bst_run = bst.transform.jit(lambda xs: bst.transform.for_loop(bst_body, xs))
        impls["brainstate"] = lambda: bst_run(xs)
    impls["Flax NNX"] = "no stateful scan in this case (nnx.scan needs a module-shaped carry)"
    impls["Equinox"] = "no stateful scan; Equinox uses jax.lax.scan directly (= raw JAX)"
    return impls


def run(quick: bool = False) -> list[Row]:
    rows = []
    for n in (10, 1_000):
        rows += compare(f"jit per call, {n:,} states", jit_impls(n), rounds=7 if quick else 15)
    rows += compare(
        f"jitted step leaving a {WEIGHTS:,}x{WEIGHTS:,} weight unchanged",
        unchanged_weights_impls(),
        rounds=7 if quick else 15,
    )
    rows += compare(
        f"scan of {SCAN_STEPS:,} steps (whole scan)", scan_impls(), rounds=5 if quick else 11
    )
    sizes = (10, 1_000) if quick else (10, 1_000, 10_000)
    for n in sizes:
        impls = jit_impls(n, fresh=True)
        if n >= 10_000:
            # XLA alone compiles for ~20 s here; peers are left to the smaller trees.
            impls = {
                k: (
                    v
                    if k in ("raw JAX", "purestate", STATE_TREE)
                    else "skipped at this size (time)"
                )
                for k, v in impls.items()
            }
        rows += compare_once(
            f"first call (trace + compile), {n:,} states", impls, rounds=2 if n >= 10_000 else 5
        )
    for n in (10, 1_000, 10_000):
        rows += compare_once(
            f"trace + lower only (no XLA compile), {n:,} states", lower_impls(n), rounds=3
        )
    return rows


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
