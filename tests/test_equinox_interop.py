"""An `equinox.Module` held in a ParamState, trained with ps.augment.grad and
ps.optim.Optimizer, equals the usual Equinox + optax recipe step by step."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import purestate as ps


def _data():
    kx = jax.random.key(1)
    x = jax.random.normal(kx, (32, 3))
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    return x, y


def _mse(model, x, y):
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def _array_leaves(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


def test_mlp_in_a_param_state_trains_like_equinox_and_optax():
    mlp = eqx.nn.MLP(3, 1, 16, 2, key=jax.random.key(0))
    x, y = _data()

    def loss(states, x, y):
        n = states["steps"].value
        return _mse(states["mlp"].value, x, y), {**states, "steps": states["steps"].replace(n + 1)}

    states = {"mlp": ps.ParamState(mlp), "steps": ps.LongTermState(jnp.asarray(0))}
    opt = ps.optim.Optimizer(optax.adam(1e-2), wrt=ps.ParamState)
    states = opt.init(states)
    grad_fn = ps.augment.grad(loss, ps.ParamState, return_value=True)

    # The reference: plain Equinox and optax.
    tx = optax.adam(1e-2)
    ref = mlp
    ref_state = tx.init(eqx.filter(ref, eqx.is_inexact_array))

    losses = []
    for _ in range(5):
        (grads, value), states_after = grad_fn(states, x, y)
        assert sorted(ps.flatten(grads)) == [("mlp",)]
        assert type(grads["mlp"]) is ps.ParamState
        assert grads["mlp"].value.activation is None  # non-arrays get None, as filter_grad
        states = opt.update(states_after, grads)

        ref_value, ref_grads = eqx.filter_value_and_grad(_mse)(ref, x, y)
        updates, ref_state = tx.update(ref_grads, ref_state, eqx.filter(ref, eqx.is_inexact_array))
        ref = eqx.apply_updates(ref, updates)

        np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-5)
        for a, b in zip(_array_leaves(states["mlp"].value), _array_leaves(ref), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        losses.append(float(value))

    assert int(states["steps"].value) == 5
    assert losses[-1] < losses[0]
    trained = states["mlp"].value
    assert isinstance(trained, eqx.nn.MLP) and trained.activation is mlp.activation


def test_training_step_under_filter_jit():
    """The whole step (grad + optimizer) compiles; non-array leaves stay static."""
    mlp = eqx.nn.MLP(3, 1, 8, 1, key=jax.random.key(2))
    x, y = _data()
    opt = ps.optim.Optimizer(optax.sgd(0.1, momentum=0.9))
    states = opt.init({"mlp": ps.ParamState(mlp)})

    def loss(states, x, y):
        return _mse(states["mlp"].value, x, y), states

    @eqx.filter_jit
    def step(states, x, y):
        grads, states = ps.augment.grad(loss, ps.ParamState)(states, x, y)
        return opt.update(states, grads)

    tx = optax.sgd(0.1, momentum=0.9)
    ref, ref_state = mlp, tx.init(eqx.filter(mlp, eqx.is_inexact_array))
    for _ in range(3):
        states = step(states, x, y)
        g = eqx.filter_grad(_mse)(ref, x, y)
        updates, ref_state = tx.update(g, ref_state, eqx.filter(ref, eqx.is_inexact_array))
        ref = eqx.apply_updates(ref, updates)
    for a, b in zip(_array_leaves(states["mlp"].value), _array_leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
