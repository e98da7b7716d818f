"""ps.surrogate: exact Heaviside forward, closed-form surrogate derivatives backward."""

import math

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

X = np.linspace(-3.0, 3.0, 241, dtype=np.float32)  # includes 0 exactly


def _sigmoid_slope(x, alpha):
    e = np.exp(-alpha * x)
    return alpha * e / (1.0 + e) ** 2


# Closed forms written out here, independently of the implementation.
CASES = [
    (ps.surrogate.ReluGrad(), lambda x: 0.3 * np.maximum(1.0 - np.abs(x), 0.0)),
    (
        ps.surrogate.ReluGrad(alpha=0.5, width=2.0),
        lambda x: np.where(np.abs(x) < 2.0, 0.5 * (2.0 - np.abs(x)), 0.0),
    ),
    (ps.surrogate.Sigmoid(), lambda x: _sigmoid_slope(x, 4.0)),
    (ps.surrogate.Sigmoid(alpha=1.5), lambda x: _sigmoid_slope(x, 1.5)),
    (ps.surrogate.InvSquare(), lambda x: 1.0 / (100.0 * np.abs(x) + 1.0) ** 2),
    (ps.surrogate.InvSquare(alpha=3.0), lambda x: (1.0 + 3.0 * np.abs(x)) ** -2.0),
    (ps.surrogate.Arctan(), lambda x: 1.0 / (1.0 + (math.pi * x) ** 2)),
    (
        ps.surrogate.Gaussian(sigma=0.7),
        lambda x: np.exp(-0.5 * (x / 0.7) ** 2) / (0.7 * math.sqrt(2 * math.pi)),
    ),
]
IDS = [repr(s).replace("\n", "") for s, _ in CASES]


@pytest.mark.parametrize(("spike", "slope"), CASES, ids=IDS)
def test_forward_is_heaviside_with_h0_one(spike, slope):
    y = spike(jnp.asarray(X))
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), (X >= 0).astype(np.float32))
    assert float(spike(0.0)) == 1.0
    assert float(spike(-1e-7)) == 0.0


@pytest.mark.parametrize(("spike", "slope"), CASES, ids=IDS)
def test_grad_equals_closed_form(spike, slope):
    grads = jax.vmap(jax.grad(spike))(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(grads), slope(X.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("spike", "slope"), CASES, ids=IDS)
def test_jvp_and_vjp_agree_with_closed_form(spike, slope):
    x = jnp.asarray(X)
    tangent = jnp.linspace(-1.0, 1.0, X.size)
    _, jvp_out = jax.jvp(spike, (x,), (tangent,))
    expected = slope(X.astype(np.float64)) * np.asarray(tangent)
    np.testing.assert_allclose(np.asarray(jvp_out), expected, rtol=1e-5, atol=1e-6)
    _, vjp = jax.vjp(spike, x)
    (cotangent_out,) = vjp(tangent)
    np.testing.assert_allclose(np.asarray(cotangent_out), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_output_and_gradient_keep_the_input_dtype(dtype):
    spike = ps.surrogate.ReluGrad()
    x = jnp.asarray([-0.5, 0.0, 0.5], dtype=dtype)
    assert spike(x).dtype == dtype
    assert jax.grad(lambda v: spike(v).sum())(x).dtype == dtype


def test_integer_input_gives_float_spikes():
    y = ps.surrogate.ReluGrad()(jnp.asarray([-1, 0, 1]))
    assert jnp.issubdtype(y.dtype, jnp.floating)
    np.testing.assert_array_equal(np.asarray(y), [0.0, 1.0, 1.0])


def test_second_use_under_jit_and_as_static_argument():
    spike = ps.surrogate.Sigmoid(alpha=2.0)

    @jax.jit
    def f(x):
        return jax.grad(lambda v: spike(v).sum())(x)

    np.testing.assert_allclose(
        np.asarray(f(jnp.asarray([0.0, 1.0]))), _sigmoid_slope(np.array([0.0, 1.0]), 2.0), rtol=1e-5
    )
    # Hashable, equal by hyperparameters: usable as a static argument.
    g = jax.jit(lambda s, x: s(x), static_argnums=0)
    assert hash(ps.surrogate.ReluGrad(0.3, 1.0)) == hash(ps.surrogate.ReluGrad(0.3, 1.0))
    assert ps.surrogate.ReluGrad(0.3, 1.0) == ps.surrogate.ReluGrad(0.3, 1.0)
    np.testing.assert_array_equal(np.asarray(g(spike, jnp.asarray([0.5]))), [1.0])


def test_heaviside_has_zero_gradient():
    assert float(jax.grad(ps.surrogate.heaviside)(0.3)) == 0.0
    np.testing.assert_array_equal(
        np.asarray(ps.surrogate.heaviside(jnp.asarray([-1.0, 0.0, 1.0]))), [0.0, 1.0, 1.0]
    )


def test_quantities_must_be_dimensionless():
    spike = ps.surrogate.ReluGrad()
    with pytest.raises(u.DimensionMismatchError, match="dimensionless"):
        spike(jnp.ones(2) * u.mV)
    ratio = (jnp.asarray([0.5, 1.5]) * u.mV) / (1.0 * u.mV)
    np.testing.assert_array_equal(np.asarray(spike(ratio - 1.0)), [0.0, 1.0])


def test_custom_surrogate_subclass():
    class Box(ps.surrogate.Surrogate):
        half_width: float = 0.5

        def surrogate_grad(self, x):
            return (jnp.abs(x) < self.half_width).astype(x.dtype)

    grads = jax.vmap(jax.grad(Box()))(jnp.asarray([-1.0, -0.2, 0.0, 0.3, 0.9]))
    np.testing.assert_array_equal(np.asarray(grads), [0.0, 1.0, 1.0, 1.0, 0.0])
