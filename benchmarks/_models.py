"""The two training problems of the train-step benchmarks, in every framework.

Each builder returns ``(jitted_step, eager_grad)``: two zero-argument callables
over the same arrays (or a string saying why the framework cannot run it).
`jitted_step` is one training step, gradient and SGD update, compiled;
`eager_grad` is the gradient alone, without jit.

- ``mlp``: a 3-layer MLP of width 32 on a batch of 16 (dispatch-bound: the
  arithmetic takes a few microseconds).
- ``many``: 500 parameter states of shape (4,), grouped 10 to a layer, read
  by one linear model (per-call cost grows with the number of leaves).

This module imports without purestate (the brainstate builder runs in a
Python 3.12 process that has no purestate; see ``_peer_worker.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from _harness import unavailable

LR = 1e-2
WIDTH, BATCH, LAYERS = 32, 16, 3
N_MANY, GROUP, SIZE = 500, 10, 4

Impl = Callable[[], object] | str
STATE_TREE = "JAX on State tree"


# ---------------------------------------------------------------- problems ---


def mlp_arrays() -> tuple[dict, jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    params = {
        f"l{i}": {
            "w": jnp.asarray(rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH), jnp.float32),
            "b": jnp.zeros(WIDTH, jnp.float32),
        }
        for i in range(LAYERS)
    }
    x = jnp.asarray(rng.normal(size=(BATCH, WIDTH)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(BATCH, WIDTH)), jnp.float32)
    return params, x, y


def mlp_loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    h = x
    for i in range(LAYERS):
        h = h @ params[f"l{i}"]["w"] + params[f"l{i}"]["b"]
        if i < LAYERS - 1:
            h = jnp.tanh(h)
    return jnp.mean((h - y) ** 2)


def many_arrays() -> tuple[dict, jax.Array, jax.Array]:
    rng = np.random.default_rng(1)
    params = {
        f"g{g:02d}": {
            f"p{j}": jnp.asarray(rng.normal(size=SIZE), jnp.float32) for j in range(GROUP)
        }
        for g in range(N_MANY // GROUP)
    }
    x = jnp.asarray(rng.normal(size=(BATCH, N_MANY * SIZE)) / N_MANY, jnp.float32)
    y = jnp.asarray(rng.normal(size=(BATCH,)), jnp.float32)
    return params, x, y


def many_loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    # One concatenation rather than 500 separate products: XLA compiles the
    # latter for a minute on CPU, and the per-leaf cost under test (passing and
    # updating 500 states) is the same.
    w = jnp.concatenate(jax.tree.leaves(params))
    return jnp.mean((jnp.tanh(x @ w) - y) ** 2)


PROBLEMS = {"mlp": (mlp_arrays, mlp_loss), "many": (many_arrays, many_loss)}


def sgd(params, grads):
    return jax.tree.map(lambda p, g: p - LR * g, params, grads)


# --------------------------------------------------------------- raw JAX ---


def raw_jax(problem: str) -> tuple[Impl, Impl]:
    make, loss = PROBLEMS[problem]
    params, x, y = make()

    @jax.jit
    def step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return value, sgd(params, grads)

    grad = jax.grad(loss)
    return (lambda: step(params, x, y)), (lambda: grad(params, x, y))


# ------------------------------------------------------------- purestate ---


def _values(states: dict) -> dict:
    return jax.tree.map(lambda s: s.value, states, is_leaf=lambda s: not isinstance(s, dict))


def purestate_missing(*names: str) -> str | None:
    """None if every ``ps.<sub>.<name>`` exists, else the reason."""
    import purestate as ps

    for name in names:
        sub, attr = name.split(".")
        if not hasattr(getattr(ps, sub), attr):
            return f"ps.{name} not implemented yet"
    return None


def purestate(problem: str) -> tuple[Impl, Impl]:
    why = purestate_missing("augment.grad", "compile.jit")
    if why:
        return why, why
    import purestate as ps

    make, loss = PROBLEMS[problem]
    params, x, y = make()
    states = jax.tree.map(ps.ParamState, params)

    def loss_fn(states, x, y):
        return loss(_values(states), x, y), states

    grad = ps.augment.grad(loss_fn, ps.ParamState, return_value=True)

    @ps.compile.jit
    def step(states, x, y):
        (grads, value), states = grad(states, x, y)
        return value, sgd(states, grads)

    eager = ps.augment.grad(loss_fn, ps.ParamState)
    return (lambda: step(states, x, y)), (lambda: eager(states, x, y))


def jax_on_state_tree(problem: str) -> tuple[Impl, Impl]:
    """Plain ``jax.jit``/``jax.grad`` handed the purestate tree itself: what the
    `State` pytree nodes cost by themselves (the reference for
    ``ps.compile.jit``'s per-call cost), without any purestate transform."""
    import purestate as ps

    make, loss = PROBLEMS[problem]
    params, x, y = make()
    states = jax.tree.map(ps.ParamState, params)

    def loss_fn(states, x, y):
        return loss(_values(states), x, y)

    @jax.jit
    def step(states, x, y):
        value, grads = jax.value_and_grad(loss_fn)(states, x, y)
        return value, sgd(states, grads)

    grad = jax.grad(loss_fn)
    return (lambda: step(states, x, y)), (lambda: grad(states, x, y))


# ------------------------------------------------------------- brainstate ---


def brainstate(problem: str) -> tuple[Impl, Impl]:
    """Run by ``_peer_worker.py`` in brainstate 0.6.0's Python 3.12 process."""
    why = unavailable("brainstate")
    if why:
        return why, why
    import brainstate as bst

    make, loss = PROBLEMS[problem]
    params, x, y = make()

    def model():
        # brainstate keeps each parameter in a mutable ParamState that functions
        # read and write in place; grad_states names the states to differentiate.
        states = jax.tree.map(bst.ParamState, params)
        return states, lambda x, y: loss(_values(states), x, y)

    # the step and the eager gradient each get their own states: the step
    # changes its states on every call
    states, loss_fn = model()
    grad = bst.transform.grad(loss_fn, grad_states=states, return_value=True)

    @bst.transform.jit
    def step(x, y):
        grads, value = grad(x, y)
        for st, g in zip(jax.tree.leaves(states), jax.tree.leaves(grads), strict=True):
            st.value = st.value - LR * g
        return value

    eager_states, eager_loss = model()
    eager = bst.transform.grad(eager_loss, grad_states=eager_states)
    return (lambda: step(x, y)), (lambda: eager(x, y))


# ------------------------------------------------------------ Flax NNX ---


def flax_nnx(problem: str) -> tuple[Impl, Impl]:
    why = unavailable("flax.nnx")
    if why:
        return why, why
    from flax import nnx

    make, loss = PROBLEMS[problem]
    params, x, y = make()
    flat, treedef = jax.tree.flatten(params)

    class Model(nnx.Module):
        def __init__(self):
            for i, v in enumerate(flat):
                setattr(self, f"p{i}", nnx.Param(v))

        def values(self):
            return jax.tree.unflatten(
                treedef, [getattr(self, f"p{i}")[...] for i in range(len(flat))]
            )

    model = Model()

    def loss_fn(model, x, y):
        return loss(model.values(), x, y)

    @nnx.jit
    def step(model, x, y):
        value, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        nnx.update(model, sgd(nnx.state(model, nnx.Param), grads))
        return value

    eager = nnx.grad(loss_fn)
    return (lambda: step(model, x, y)), (lambda: eager(model, x, y))


# ------------------------------------------------------------- Equinox ---


def equinox(problem: str) -> tuple[Impl, Impl]:
    why = unavailable("equinox")
    if why:
        return why, why
    import equinox as eqx

    make, loss = PROBLEMS[problem]
    params, x, y = make()

    class Model(eqx.Module):
        params: dict

    model = Model(params)

    def loss_fn(model, x, y):
        return loss(model.params, x, y)

    @eqx.filter_jit
    def step(model, x, y):
        value, grads = eqx.filter_value_and_grad(loss_fn)(model, x, y)
        return value, eqx.apply_updates(model, jax.tree.map(lambda g: -LR * g, grads))

    eager = eqx.filter_grad(loss_fn)
    return (lambda: step(model, x, y)), (lambda: eager(model, x, y))


BUILDERS = {
    "raw JAX": raw_jax,
    "purestate": purestate,
    STATE_TREE: jax_on_state_tree,
    "brainstate": brainstate,
    "Flax NNX": flax_nnx,
    "Equinox": equinox,
}
