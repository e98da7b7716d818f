import jax
import jax.numpy as jnp
import numpy as np

import purestate as ps


def block(states, x):
    w = states["w"].value
    for _ in range(4):
        x = jnp.sin(x @ w)
    return x, states


def loss(fn):
    return lambda states, x: (jnp.sum(fn(states, x)[0]), states)


def test_remat_gives_the_same_values_and_gradients():
    states = {"w": ps.ParamState(jax.random.normal(jax.random.key(0), (8, 8)) / 3)}
    x = jnp.ones((2, 8))
    plain, _ = ps.augment.grad(loss(block), ps.ParamState, return_value=True)(states, x)
    remat, _ = ps.augment.grad(loss(ps.augment.remat(block)), ps.ParamState, return_value=True)(
        states, x
    )
    ps.testing.assert_trees_allclose(remat, plain)
    ref = jax.grad(lambda w: jnp.sum(block({"w": ps.ParamState(w)}, x)[0]))(states["w"].value)
    np.testing.assert_allclose(remat[0]["w"].value, ref, rtol=1e-5)


def test_remat_keeps_fewer_residuals():
    x = jnp.ones((2, 8))

    def residuals(fn):
        def f(w):
            return jnp.sum(fn({"w": ps.ParamState(w)}, x)[0])

        _, vjp_fn = jax.vjp(f, jnp.eye(8))
        return len(jax.tree.leaves(vjp_fn))

    assert residuals(ps.augment.remat(block)) < residuals(block)
