"""Per-call time of a vmapped stateful step whose states are batched, jitted
and eager, in purestate, raw JAX and the peers.

The step: a batch of 16 hidden states ``V`` (each of width 32) shares one
weight matrix ``w``; ``V <- 0.9 V + tanh(x @ w)`` and the output is
``sum(V)`` per lane. Run: ``.venv/bin/python benchmarks/bench_vmap.py [--quick]``.
Bars: jitted ≤ 1.05x ``jax.jit(jax.vmap(...))``; eager ≤ 1.5x ``jax.vmap``.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from _harness import Row, built, compare, only, print_rows, same_as_raw, unavailable
from _models import STATE_TREE, purestate_missing
from _peer_worker import with_brainstate

TITLE = "vmap of a stateful step with batched states"
LANES, WIDTH = 16, 32


def arrays():
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH), jnp.float32)
    V = jnp.zeros((LANES, WIDTH), jnp.float32)
    x = jnp.asarray(rng.normal(size=(LANES, WIDTH)), jnp.float32)
    return w, V, x


def lane(V, w, x):
    V = 0.9 * V + jnp.tanh(x @ w)
    return V.sum(), V


def _state_step(states, x):
    out, V = lane(states["V"].value, states["w"].value, x)
    return out, {**states, "V": states["V"].replace(V)}


def raw_jax():
    w, V, x = arrays()
    mapped = jax.vmap(lane, in_axes=(0, None, 0))
    jitted = jax.jit(mapped)
    return (lambda: jitted(V, w, x)), (lambda: mapped(V, w, x))


def purestate():
    why = purestate_missing("augment.vmap", "compile.jit")
    if why:
        return why, why
    import purestate as ps

    w, V, x = arrays()
    states = {"w": ps.ParamState(w), "V": ps.ShortTermState(V)}
    mapped = ps.augment.vmap(_state_step, in_states=ps.ShortTermState)
    jitted = ps.compile.jit(mapped)
    return (lambda: jitted(states, x)), (lambda: mapped(states, x))


def jax_on_state_tree():
    """``jax.jit(jax.vmap(...))`` handed the purestate tree, with the axes
    written by hand: what the `State` nodes cost without any purestate code."""
    import purestate as ps

    w, V, x = arrays()
    states = {"w": ps.ParamState(w), "V": ps.ShortTermState(V)}
    axes = {"V": 0, "w": None}
    mapped = jax.vmap(_state_step, in_axes=(axes, 0), out_axes=(0, axes))
    jitted = jax.jit(mapped)
    return (lambda: jitted(states, x)), (lambda: mapped(states, x))


def brainstate():
    """Run by ``_peer_worker.py`` in brainstate 0.6.0's Python 3.12 process."""
    why = unavailable("brainstate")
    if why:
        return why, why
    import brainstate as bst

    w, V, x = arrays()

    def mapped_step():
        # own states for the jitted and the eager variant: each call changes V
        w_state, V_state = bst.ParamState(w), bst.ShortTermState(V)

        def step(x):
            out, new_V = lane(V_state.value, w_state.value, x)
            V_state.value = new_V
            return out

        axes = {0: {"V": V_state}}
        return bst.transform.vmap(step, in_states=axes, out_states=axes)

    jitted, mapped = bst.transform.jit(mapped_step()), mapped_step()
    return (lambda: jitted(x)), (lambda: mapped(x))


def flax_nnx():
    why = unavailable("flax.nnx")
    if why:
        return why, why
    from flax import nnx

    w, V, x = arrays()

    class Cell(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(w)
            self.V = nnx.Variable(V)

    cell = Cell()

    def step(cell, x):
        out, V = lane(cell.V[...], cell.w[...], x)
        cell.V[...] = V
        return out

    # the weight is shared (axis None), the hidden state is batched (axis 0)
    axes = nnx.StateAxes({nnx.Param: None, nnx.Variable: 0})
    mapped = nnx.vmap(step, in_axes=(axes, 0))
    jitted = nnx.jit(mapped)
    return (lambda: jitted(cell, x)), (lambda: mapped(cell, x))


def equinox():
    why = unavailable("equinox")
    if why:
        return why, why
    import equinox as eqx

    w, V, x = arrays()

    class Cell(eqx.Module):
        w: jax.Array
        V: jax.Array

    cell = Cell(w, V)

    def step(cell, x):
        out, V = lane(cell.V, cell.w, x)
        return out, eqx.tree_at(lambda c: c.V, cell, V)

    axes = Cell(None, 0)  # type: ignore[arg-type]
    mapped = eqx.filter_vmap(step, in_axes=(axes, 0), out_axes=(0, axes))
    jitted = eqx.filter_jit(mapped)
    return (lambda: jitted(cell, x)), (lambda: mapped(cell, x))


BUILDERS = {
    "raw JAX": raw_jax,
    "purestate": purestate,
    STATE_TREE: jax_on_state_tree,
    "brainstate": brainstate,
    "Flax NNX": flax_nnx,
    "Equinox": equinox,
}


def measure(quick: bool, names) -> list[Row]:
    impls = {name: built(b) for name, b in only(BUILDERS, names).items()}
    impls = {name: (b, b) if isinstance(b, str) else b for name, b in impls.items()}
    check = same_as_raw(lambda out: out[0])  # brainstate returns the outputs, not V
    rows = compare(
        f"jitted vmap, {LANES} lanes x {WIDTH}",
        {n: b[0] for n, b in impls.items()},
        rounds=7 if quick else 15,
        check=check,
    )
    rows += compare(
        f"eager vmap, {LANES} lanes x {WIDTH}",
        {n: b[1] for n, b in impls.items()},
        rounds=5 if quick else 11,
        check=check,
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    return with_brainstate(measure, quick)


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
