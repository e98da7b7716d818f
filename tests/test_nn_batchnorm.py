"""ps.nn.BatchNorm against a float64 numpy reference and against
eqx.nn.BatchNorm (mode='batch'), in training and inference, with an explicit
batch axis and per sample under ps.augment.vmap with an axis name."""

import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def reference_steps(xs, momentum, eps, weight, bias, axis=-1):
    """Outputs of successive training steps and the running statistics after each."""
    C = xs[0].shape[axis]
    mean_r, var_r = np.zeros(C), np.ones(C)
    outs, stats = [], []
    for x in xs:
        x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
        flat = x.reshape(-1, C)
        m, v = flat.mean(0), flat.var(0)  # biased variance
        outs.append(np.moveaxis((x - m) / np.sqrt(v + eps) * weight + bias, -1, axis))
        mean_r = momentum * mean_r + (1 - momentum) * m
        var_r = momentum * var_r + (1 - momentum) * v
        stats.append((mean_r, var_r))
    return outs, stats


def test_training_and_inference_against_numpy():
    rng = np.random.default_rng(0)
    B, C, momentum, eps = 16, 5, 0.9, 1e-3
    xs = [
        rng.normal(3.0, 2.0, size=(B, C)).astype(np.float32) * np.arange(1, C + 1) for _ in range(4)
    ]
    bn = ps.nn.BatchNorm(C, momentum=momentum, eps=eps)
    states = bn.init()
    assert sorted(states) == ["bias", "mean", "var", "weight"]
    assert type(states["mean"]) is ps.LongTermState and type(states["var"]) is ps.LongTermState
    assert type(states["weight"]) is ps.ParamState and type(states["bias"]) is ps.ParamState
    weight = rng.normal(size=C).astype(np.float32)
    bias = rng.normal(size=C).astype(np.float32)
    states = ps.set(ps.set(states, "weight", jnp.asarray(weight)), "bias", jnp.asarray(bias))
    outs, stats = reference_steps(xs, momentum, eps, weight, bias)
    step = jax.jit(bn)
    for x, out, (m, v) in zip(xs, outs, stats, strict=True):
        y, states = step(states, jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(y), out, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(states["mean"].value), m, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(states["var"].value), v, rtol=1e-5, atol=1e-5)
    # Inference: the running statistics, unchanged.
    x = rng.normal(size=(3, C)).astype(np.float32)
    expected = (x - m) / np.sqrt(v + eps) * weight + bias
    for inference_bn, settings in [
        (bn, {"fit": False}),
        (ps.nn.BatchNorm(C, momentum=momentum, eps=eps, inference=True), {}),
    ]:
        with ps.environ.context(**settings):
            y, same = inference_bn(states, jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
        assert same is states
    with ps.environ.context(fit=True):
        _, moved = bn(states, jnp.asarray(x))
    assert not np.allclose(np.asarray(moved["mean"].value), m)


def test_feature_axis_and_spatial_axes():
    """Features on axis 1 of (B, C, L): statistics over B and L."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3, 7)).astype(np.float32) + np.asarray([0.0, 5.0, -5.0])[:, None]
    bn = ps.nn.BatchNorm(3, feature_axis=1, affine=False)
    assert sorted(bn.init()) == ["mean", "var"]
    y, states = bn(bn.init(), jnp.asarray(x))
    outs, stats = reference_steps([x], 0.99, 1e-5, 1.0, 0.0, axis=1)
    np.testing.assert_allclose(np.asarray(y), outs[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(states["mean"].value), stats[0][0], rtol=1e-5)


def eqx_batchnorm(C, momentum, eps):
    return eqx.nn.make_with_state(eqx.nn.BatchNorm)(
        C, axis_name="batch", momentum=momentum, eps=eps, mode="batch"
    )


@pytest.mark.parametrize("spatial", [False, True])
def test_equals_equinox_under_vmap_with_axis_name(spatial):
    """Per sample under ps.augment.vmap(axis_name='batch') against
    jax.vmap(eqx.nn.BatchNorm) with the same axis name: training outputs and
    running statistics (eqx's 'batch' mode keeps the same exponential averages,
    from zeros and ones), then inference."""
    rng = np.random.default_rng(2)
    B, C, momentum, eps = 8, 4, 0.8, 1e-5
    shape = (B, C, 5) if spatial else (B, C)
    xs = [rng.normal(1.0, 3.0, size=shape).astype(np.float32) for _ in range(3)]

    eqx_bn, eqx_state = eqx_batchnorm(C, momentum, eps)
    eqx_train = jax.vmap(eqx_bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))

    bn = ps.nn.BatchNorm(C, axis_name="batch", momentum=momentum, eps=eps, feature_axis=0)
    step = ps.compile.jit(ps.augment.vmap(bn, axis_name="batch"))
    states = bn.init()
    for x in xs:
        y_eqx, eqx_state = eqx_train(jnp.asarray(x), eqx_state)
        y, states = step(states, jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_eqx), rtol=1e-5, atol=1e-5)
        hidden_mean, hidden_var = eqx_state.get(eqx_bn.batch_state_index)
        np.testing.assert_allclose(
            np.asarray(states["mean"].value), np.asarray(hidden_mean), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(states["var"].value), np.asarray(hidden_var), rtol=1e-5, atol=1e-6
        )
        assert states["mean"].value.shape == (C,)  # unbatched: the same on every lane

    # Inference. eqx divides its averages by 1 - momentum**count (a debiasing
    # this module does not do); with its counter at 0 it uses them as they are.
    eqx_state = eqx_state.set(eqx_bn.batch_counter, jnp.asarray(0))
    eqx_infer = jax.vmap(
        lambda x, s: eqx_bn(x, s, inference=True),
        axis_name="batch",
        in_axes=(0, None),
        out_axes=(0, None),
    )
    x = rng.normal(size=shape).astype(np.float32)
    y_eqx, _ = eqx_infer(jnp.asarray(x), eqx_state)
    with ps.environ.context(fit=False):
        y, same = ps.augment.vmap(bn, axis_name="batch")(states, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_eqx), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(same["mean"].value), np.asarray(states["mean"].value))


def test_lanes_see_the_whole_batch_and_gradients_flow():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    bn = ps.nn.BatchNorm(3, axis_name="b")
    y_lanes, _ = ps.augment.vmap(bn, axis_name="b")(bn.init(), x)
    y_batch, _ = ps.nn.BatchNorm(3)(bn.init(), x)
    np.testing.assert_allclose(np.asarray(y_lanes), np.asarray(y_batch), rtol=1e-5, atol=1e-5)

    def loss(states, x):
        y, states = ps.augment.vmap(bn, axis_name="b")(states, x)
        return jnp.sum(y[:, 0] * jnp.arange(6.0)), states

    grads, _ = ps.augment.grad(loss, ps.ParamState)(bn.init(), x)
    assert sorted(ps.flatten(grads)) == [("bias",), ("weight",)]
    assert float(jnp.abs(grads["weight"].value).sum()) > 0


def test_input_checks():
    bn = ps.nn.BatchNorm(3)
    with pytest.raises(ps.nn.UnitError, match="plain array; got a Quantity in mV"):
        bn(bn.init(), jnp.ones((2, 3)) * u.mV)
    with pytest.raises(ValueError, match="expected 3 features along axis -1"):
        bn(bn.init(), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="training needs a batch"):
        bn(bn.init(), jnp.ones(3))
    with ps.environ.context(fit=False):
        y, _ = bn(bn.init(), jnp.ones(3))  # inference needs no batch
    np.testing.assert_allclose(np.asarray(y), 1 / np.sqrt(1 + 1e-5), rtol=1e-6)
    with pytest.raises(ValueError, match="momentum"):
        ps.nn.BatchNorm(3, momentum=1.5)
    named = ps.nn.BatchNorm(3, axis_name="batch")
    with pytest.raises(NameError, match=r"enclosing ps.augment.vmap.*axis_name='batch'"):
        named(named.init(), jnp.ones((4, 3)))
