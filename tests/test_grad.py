import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

x = jnp.ones((1, 2))
y = jnp.ones((1, 3))


def linear_states():
    w = jax.random.normal(jax.random.key(0), (2, 3))
    return {"weight": ps.ParamState(w), "bias": ps.ParamState(jnp.zeros(3))}


def loss_fn(states, x, y):
    pred = x @ states["weight"].value + states["bias"].value
    return jnp.mean((y - pred) ** 2), states


def raw_loss(params, x, y):
    return jnp.mean((y - (x @ params["weight"] + params["bias"])) ** 2)


def raw_params(states):
    return {k: s.value for k, s in states.items()}


def as_states(arrays):
    return {k: ps.ParamState(v) for k, v in arrays.items()}


def test_seed_example_gradients_match_jax():
    states = linear_states()
    grads, new_states = ps.augment.grad(loss_fn, ps.ParamState)(states, x, y)
    ref = jax.grad(raw_loss)(raw_params(states), x, y)
    ps.testing.assert_trees_allclose(grads, as_states(ref))
    assert new_states.keys() == states.keys()


@pytest.mark.parametrize(
    ("return_value", "has_aux"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_result_structure_for_return_value_and_has_aux(return_value, has_aux):
    def f(states, x, y):
        loss, states = loss_fn(states, x, y)
        return ((loss, {"loss2": 2 * loss}) if has_aux else loss), states

    states = linear_states()
    result, _ = ps.augment.grad(f, ps.ParamState, has_aux=has_aux, return_value=return_value)(
        states, x, y
    )
    ref_value, ref_grads = jax.value_and_grad(raw_loss)(raw_params(states), x, y)
    parts = result if (return_value or has_aux) else (result,)
    assert len(parts) == 1 + return_value + has_aux
    ps.testing.assert_trees_allclose(parts[0], as_states(ref_grads))
    if return_value:
        np.testing.assert_allclose(parts[1], ref_value, rtol=1e-6)
    if has_aux:
        np.testing.assert_allclose(parts[-1]["loss2"], 2 * ref_value, rtol=1e-6)


def test_hessian_jacobian_and_composition_of_the_seed_example():
    states = linear_states()
    hess, _ = ps.augment.hessian(loss_fn, ps.ParamState)(states, x, y)
    ref = jax.hessian(lambda s: loss_fn(s, x, y)[0])(states)
    ps.testing.assert_trees_allclose(hess, ref)
    jac, _ = ps.augment.jacobian(loss_fn, ps.ParamState)(states, x, y)
    ps.testing.assert_trees_allclose(jac, jax.jacrev(lambda s: loss_fn(s, x, y)[0])(states))

    # grad of the sum of the gradient (the tutorial's composite_grad) equals the
    # row sums of the Hessian.
    def grad_sum(s, x, y):
        g, s = ps.augment.grad(loss_fn, ps.ParamState)(s, x, y)
        return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(g)), s

    composite, _ = ps.augment.grad(grad_sum, ps.ParamState)(states, x, y)
    expected = jax.grad(
        lambda s: sum(
            jnp.sum(v) for v in jax.tree.leaves(jax.grad(lambda t: loss_fn(t, x, y)[0])(s))
        )
    )(states)
    ps.testing.assert_trees_allclose(composite, expected, atol=1e-5)


def test_dict_valued_state_hessian_does_not_fail():
    # brainstate's hessian fails with a KeyError on this layout.
    states = {"linear": ps.ParamState({"weight": jnp.ones((2, 3)), "bias": jnp.zeros(3)})}

    def f(s, x):
        p = s["linear"].value
        return jnp.sum(jnp.tanh(x @ p["weight"] + p["bias"]) ** 2), s

    hess, _ = ps.augment.hessian(f, ps.ParamState)(states, x)
    ps.testing.assert_trees_allclose(hess, jax.hessian(lambda s: f(s, x)[0])(states), atol=1e-5)


def test_argnums_and_grad_states_none():
    states = linear_states()
    g_x, _ = ps.augment.grad(loss_fn)(states, x, y)
    np.testing.assert_allclose(g_x, jax.grad(raw_loss, 1)(raw_params(states), x, y), rtol=1e-6)
    (g_s, (g_x2, g_y)), _ = ps.augment.grad(loss_fn, ps.ParamState, argnums=(0, 1))(states, x, y)
    ref_p, ref_x, ref_y = jax.grad(raw_loss, (0, 1, 2))(raw_params(states), x, y)
    ps.testing.assert_trees_allclose(g_s, as_states(ref_p))
    np.testing.assert_allclose(g_x2, ref_x, rtol=1e-6)
    np.testing.assert_allclose(g_y, ref_y, rtol=1e-6)


def test_only_selected_states_are_differentiated():
    states = {"w": ps.ParamState(jnp.float32(2.0)), "v": ps.ShortTermState(jnp.float32(3.0))}

    def f(s):
        return s["w"].value ** 2 * s["v"].value, s

    grads, _ = ps.augment.grad(f, ps.ParamState)(states)
    assert list(grads) == ["w"]
    np.testing.assert_allclose(grads["w"].value, 12.0)


def test_new_states_are_the_states_after_the_forward_pass():
    def f(s):
        count = s["n"].value + 1
        return jnp.sum(s["w"].value ** 2), ps.set(s, "n", count)

    states = {"w": ps.ParamState(jnp.ones(2)), "n": ps.LongTermState(jnp.zeros((), jnp.int32))}
    for transform in (ps.augment.grad, ps.augment.jacrev, ps.augment.jacfwd, ps.augment.hessian):
        _, new = transform(f, ps.ParamState)(states)
        assert int(new["n"].value) == 1


def test_unit_aware_gradients_carry_value_unit_over_state_unit():
    states = {
        "V": ps.ShortTermState(jnp.array([1.0, 2.0]) * u.mV),
        "g": ps.ParamState(jnp.float32(3.0) * u.mS),
    }

    def current(s):
        return u.math.sum(s["g"].value * s["V"].value), s  # mS * mV = uA

    grads, _ = ps.augment.grad(current, ..., unit_aware=True)(states)
    assert u.get_unit(grads["V"].value) == u.get_unit(1 * u.mS * u.mV) / u.mV
    np.testing.assert_allclose(grads["V"].value.to_decimal(u.mS), [3.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(grads["g"].value.to_decimal(u.mV), 3.0, rtol=1e-6)
    plain, _ = ps.augment.grad(current, ...)(states)
    assert not isinstance(plain["V"].value, u.Quantity)
    np.testing.assert_allclose(plain["V"].value, [3.0, 3.0])


def test_equinox_module_state_gets_none_for_non_array_leaves():
    mlp = eqx.nn.MLP(2, 1, 4, 1, key=jax.random.key(0))
    states = {"mlp": ps.ParamState(mlp)}

    def f(s, x):
        return jnp.sum(s["mlp"].value(x)), s

    grads, _ = ps.augment.grad(f, ps.ParamState)(states, jnp.ones(2))
    ref = eqx.filter_grad(lambda m: jnp.sum(m(jnp.ones(2))))(mlp)
    ps.testing.assert_trees_allclose(grads["mlp"].value, ref)
    assert grads["mlp"].value.activation is None


def test_selector_matching_nothing_lists_available_paths():
    with pytest.raises(ps.StateError, match="'bias', 'weight'"):
        ps.augment.grad(loss_fn, ps.ShortTermState)(linear_states(), x, y)


def test_non_scalar_value_for_grad_is_a_clear_error():
    with pytest.raises(TypeError, match="scalar.*vector_grad"):
        ps.augment.grad(lambda s: (s["w"].value * 2, s), "w")({"w": ps.ParamState(jnp.ones(2))})


def test_has_aux_without_a_pair_is_a_clear_error():
    with pytest.raises(TypeError, match="has_aux=True"):
        ps.augment.grad(loss_fn, ps.ParamState, has_aux=True)(linear_states(), x, y)


def test_argnums_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="argnums holds 3.*2 positional"):
        ps.augment.grad(loss_fn, ps.ParamState, argnums=3)(linear_states(), x, y)


def test_integer_state_needs_allow_int():
    states = {"n": ps.ParamState(jnp.arange(3)), "w": ps.ParamState(jnp.ones(3))}

    def f(s):
        return jnp.sum(s["w"].value * s["n"].value), s

    with pytest.raises(ps.StateError, match="'n'.*allow_int"):
        ps.augment.grad(f, ps.ParamState)(states)
    grads, _ = ps.augment.grad(f, ps.ParamState, allow_int=True)(states)
    ref = jax.grad(lambda s: f(s)[0], allow_int=True)(states)
    assert grads["n"].value.dtype == ref["n"].value.dtype  # float0, as jax gives
    np.testing.assert_allclose(grads["w"].value, [0.0, 1.0, 2.0])


def test_vector_grad_sums_vjps():
    def f(s):
        return s["w"].value ** 3, s

    grads, _ = ps.augment.vector_grad(f, "w")({"w": ps.ParamState(jnp.arange(3.0))})
    np.testing.assert_allclose(grads["w"].value, 3 * np.arange(3.0) ** 2)


def test_grad_composes_with_jit():
    step = ps.compile.jit(ps.augment.grad(loss_fn, ps.ParamState, return_value=True))
    states = linear_states()
    (grads, value), _ = step(states, x, y)
    ref_value, ref_grads = jax.value_and_grad(raw_loss)(raw_params(states), x, y)
    ps.testing.assert_trees_allclose(grads, as_states(ref_grads))
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
