"""ps.optim.Optimizer equals hand-written optax on the raw arrays, step by step."""

import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import purestate as ps


def _model_states():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    return {
        "lin": {
            "weight": ps.ParamState(jax.random.normal(k1, (3, 2))),
            "bias": ps.ParamState(jax.random.normal(k2, (2,))),
        },
        "scale": ps.ParamState(jax.random.normal(k3, ())),
        "V": ps.ShortTermState(jnp.zeros(2)),
        "count": ps.LongTermState(jnp.asarray(0)),
    }


def _loss_raw(params, x):
    y = jnp.tanh(x @ params["lin"]["weight"] + params["lin"]["bias"]) * params["scale"]
    return jnp.sum((y - 1.0) ** 2)


def _params_raw(states):
    return {
        "lin": {"weight": states["lin"]["weight"].value, "bias": states["lin"]["bias"].value},
        "scale": states["scale"].value,
    }


def _as_states(raw_grads):
    return jax.tree.map(ps.ParamState, raw_grads)


TRANSFORMS = {
    "adam": lambda: optax.adam(1e-2),
    "sgd_momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "chain_clip_adamw": lambda: optax.chain(
        optax.clip_by_global_norm(0.5), optax.adamw(3e-2, weight_decay=1e-2)
    ),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_optimizer_equals_handwritten_optax(name):
    xs = jax.random.normal(jax.random.key(1), (6, 4, 3))
    states = _model_states()
    opt = ps.optim.Optimizer(TRANSFORMS[name]())
    states = opt.init(states)

    tx = TRANSFORMS[name]()  # the reference: optax on plain arrays
    params = _params_raw(_model_states())
    opt_state = tx.init(params)
    update = jax.jit(opt.update)

    for x in xs:
        raw_grads = jax.grad(_loss_raw)(_params_raw(states), x)
        states = update(states, _as_states(raw_grads))

        ref_grads = jax.grad(_loss_raw)(params, x)
        updates, opt_state = tx.update(ref_grads, opt_state, params)
        params = optax.apply_updates(params, updates)

        got = _params_raw(states)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
        for a, b in zip(
            jax.tree.leaves(states["optimizer"].value), jax.tree.leaves(opt_state), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
    # Non-selected states are untouched and keep their kinds.
    assert type(states["optimizer"]) is ps.LongTermState
    assert type(states["V"]) is ps.ShortTermState
    np.testing.assert_array_equal(np.asarray(states["V"].value), np.zeros(2))
    assert sorted(states) == ["V", "count", "lin", "optimizer", "scale"]


def test_wrt_selects_a_subset():
    states = _model_states()
    opt = ps.optim.Optimizer(optax.sgd(0.1), wrt="lin")
    states = opt.init(states)
    grads = {"lin": {"weight": ps.ParamState(jnp.ones((3, 2))), "bias": ps.ParamState(jnp.ones(2))}}
    new = opt.update(states, grads)
    np.testing.assert_allclose(
        np.asarray(new["lin"]["weight"].value), np.asarray(states["lin"]["weight"].value) - 0.1
    )
    assert new["scale"] is states["scale"]


def test_none_gradients_leave_values_unchanged():
    states = {"a": ps.ParamState(jnp.ones(2)), "b": ps.ParamState(jnp.ones(3))}
    opt = ps.optim.Optimizer(optax.sgd(0.5, momentum=0.9))
    states = opt.init(states)
    grads = {"a": ps.ParamState(jnp.ones(2)), "b": ps.ParamState(None)}
    new = opt.update(states, grads)
    np.testing.assert_allclose(np.asarray(new["a"].value), [0.5, 0.5])
    np.testing.assert_array_equal(np.asarray(new["b"].value), np.ones(3))


def test_equinox_module_values_with_non_array_leaves():
    mlp = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(0))
    states = {"mlp": ps.ParamState(mlp)}
    opt = ps.optim.Optimizer(optax.adam(1e-2))
    states = opt.init(states)

    # Reference: the usual Equinox + optax recipe.
    tx = optax.adam(1e-2)
    ref = mlp
    ref_state = tx.init(eqx.filter(ref, eqx.is_inexact_array))

    def loss(model, x):
        return jnp.sum(model(x) ** 2)

    for i in range(3):
        x = jnp.full((3,), float(i + 1))
        g = eqx.filter_grad(loss)(states["mlp"].value, x)
        states = opt.update(states, {"mlp": ps.ParamState(g)})

        g_ref = eqx.filter_grad(loss)(ref, x)
        updates, ref_state = tx.update(g_ref, ref_state, eqx.filter(ref, eqx.is_inexact_array))
        ref = eqx.apply_updates(ref, updates)

    got = states["mlp"].value
    assert got.activation is mlp.activation  # non-array leaves kept
    for a, b in zip(
        jax.tree.leaves(eqx.filter(got, eqx.is_array)),
        jax.tree.leaves(eqx.filter(ref, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


def test_quantity_parameters_keep_their_unit():
    states = {"V_th": ps.ParamState(jnp.asarray([1.0, 2.0]) * u.mV)}
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    states = opt.init(states)
    new = opt.update(states, {"V_th": ps.ParamState(jnp.asarray([1.0, -1.0]))})
    value = new["V_th"].value
    assert isinstance(value, u.Quantity) and value.unit == u.mV
    np.testing.assert_allclose(np.asarray(value.mantissa), [0.9, 2.1])


def test_integer_states_are_left_alone():
    states = {"w": ps.ParamState(jnp.ones(2)), "n": ps.ParamState(jnp.arange(3))}
    opt = ps.optim.Optimizer(optax.sgd(1.0))
    states = opt.init(states)
    new = opt.update(states, {"w": ps.ParamState(jnp.ones(2)), "n": ps.ParamState(None)})
    np.testing.assert_array_equal(np.asarray(new["n"].value), [0, 1, 2])
    np.testing.assert_array_equal(np.asarray(new["w"].value), [0.0, 0.0])


def test_gradient_paths_must_match_selection():
    states = ps.optim.Optimizer(optax.sgd(0.1)).init(_model_states())
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    missing = {"lin": {"weight": ps.ParamState(jnp.ones((3, 2)))}, "scale": ps.ParamState(1.0)}
    with pytest.raises(ps.StateError, match="lin/bias"):
        opt.update(states, missing)
    extra = {
        "lin": {"weight": ps.ParamState(jnp.ones((3, 2))), "bias": ps.ParamState(jnp.ones(2))},
        "scale": ps.ParamState(1.0),
        "V": ps.ShortTermState(jnp.ones(2)),
    }
    with pytest.raises(ps.StateError, match="'V'"):
        opt.update(states, extra)


def test_gradient_shape_mismatch_names_the_path():
    states = {"w": ps.ParamState(jnp.ones(2))}
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    states = opt.init(states)
    with pytest.raises(ps.StateError, match=r"'w'.*shape"):
        opt.update(states, {"w": ps.ParamState(jnp.ones(3))})


def test_init_and_update_misuse():
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    states = {"w": ps.ParamState(jnp.ones(2))}
    with pytest.raises(ps.StateError, match=r"opt\.init"):
        opt.update(states, {"w": ps.ParamState(jnp.ones(2))})
    with pytest.raises(ps.StateError, match="already"):
        opt.init(opt.init(states))
    with pytest.raises(ps.StateError, match=r"matches no state.*'w'"):
        ps.optim.Optimizer(optax.sgd(0.1), wrt=ps.RandomState).init(states)
    with pytest.raises(TypeError, match="GradientTransformation"):
        ps.optim.Optimizer(0.1)


def test_wrt_everything_does_not_select_the_optimizer_entry():
    states = {"w": ps.ParamState(jnp.ones(2)), "c": ps.LongTermState(jnp.ones(1))}
    opt = ps.optim.Optimizer(optax.sgd(1.0), wrt=...)
    states = opt.init(states)
    grads = {"w": ps.ParamState(jnp.ones(2)), "c": ps.LongTermState(jnp.ones(1))}
    new = opt.update(states, grads)
    np.testing.assert_array_equal(np.asarray(new["c"].value), [0.0])
