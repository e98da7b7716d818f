"""Differentiation: argnums validation, has_aux mistakes, units of argument
gradients, jacobian nesting, integer and NumPy-valued states."""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import purestate as ps

GRADS = {
    "grad": ps.augment.grad,
    "vector_grad": ps.augment.vector_grad,
    "jacrev": ps.augment.jacrev,
    "jacfwd": ps.augment.jacfwd,
    "hessian": ps.augment.hessian,
}


def params():
    return {"w": ps.ParamState(jnp.array([1.0, 2.0]))}


def scalar_loss(states, x, y):
    return jnp.sum(states["w"].value * x * y), states


def assert_trees_equal_allclose(got, ref, rtol=1e-6):
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-6)


# --------------------------------------------------------------------- argnums


@pytest.mark.parametrize("name", list(GRADS))
@pytest.mark.parametrize("grad_states", [None, ps.ParamState])
def test_duplicate_argnums_are_rejected_when_the_transform_is_made(name, grad_states):
    """argnums=(0, 0) is a ValueError/TypeError naming argnums, raised at creation."""
    with pytest.raises((ValueError, TypeError), match="argnums"):
        GRADS[name](scalar_loss, grad_states, argnums=(0, 0))


@pytest.mark.parametrize("name", ["grad", "jacrev"])
def test_duplicate_argnums_after_normalising_negatives_are_rejected(name):
    """argnums=(0, -2) on a two-argument call names the same argument twice: an error naming argnums."""
    g = GRADS[name](scalar_loss, argnums=(0, -2))
    with pytest.raises((ValueError, TypeError), match="argnums"):
        g(params(), jnp.ones(2), jnp.ones(2))


@pytest.mark.parametrize("name", list(GRADS))
@pytest.mark.parametrize("argnums", [0.5, "0", (0, 1.0), (0, "1")])
def test_non_integer_argnums_are_a_type_error_at_creation(name, argnums):
    """Non-int argnums raise TypeError naming argnums when the transform is made."""
    with pytest.raises(TypeError, match="argnums"):
        GRADS[name](scalar_loss, argnums=argnums)


def test_negative_argnums_count_from_the_end_as_in_jax():
    """argnums=-1 differentiates the last positional argument, as jax.grad does."""
    x, y = jnp.array([1.0, 3.0]), jnp.array([2.0, 5.0])
    g, _ = ps.augment.grad(scalar_loss, argnums=-1)(params(), x, y)
    ref = jax.grad(lambda x, y: jnp.sum(jnp.array([1.0, 2.0]) * x * y), argnums=-1)(x, y)
    np.testing.assert_allclose(g, ref)


def test_out_of_range_argnums_is_an_error_naming_argnums():
    """argnums beyond the positional arguments is an error naming argnums."""
    g = ps.augment.grad(scalar_loss, argnums=2)
    with pytest.raises((ValueError, TypeError), match="argnums"):
        g(params(), jnp.ones(2), jnp.ones(2))


# --------------------------------------------------------------------- has_aux


NOT_PAIRS = {
    "bare_value": lambda states, x: (jnp.sum(x**2), states),
    "triple": lambda states, x: ((jnp.sum(x**2), x, x), states),
}


@pytest.mark.parametrize("name", list(GRADS))
@pytest.mark.parametrize("output", list(NOT_PAIRS))
def test_has_aux_with_a_non_pair_output_is_a_type_error_saying_what_to_change(name, output):
    """has_aux=True with an output that is not (value, aux) is a TypeError naming has_aux."""
    g = GRADS[name](NOT_PAIRS[output], argnums=0, has_aux=True)
    with pytest.raises(TypeError, match="has_aux") as info:
        g({}, jnp.array([1.0, 2.0]))
    assert "Tracer" not in str(info.value)


@pytest.mark.parametrize("grad_states", [None, ps.ParamState])
def test_forgotten_has_aux_under_grad_is_a_type_error_suggesting_it(grad_states):
    """A ((value, aux), states) output without has_aux raises TypeError suggesting has_aux=True."""

    def f(states, x):
        return (jnp.sum(states["w"].value * x), {"aux": x}), states

    g = ps.augment.grad(f, grad_states)
    with pytest.raises(TypeError, match=r"has_aux=True") as info:
        g(params(), jnp.array([1.0, 2.0]))
    assert "Tracer" not in str(info.value)


def test_has_aux_pair_matches_jax_grad_has_aux():
    """A correct (value, aux) output with has_aux=True gives jax.grad's (grads, aux)."""

    def f(states, x):
        return (jnp.sum(x**3), x * 2), states

    x = jnp.array([1.0, 2.0])
    (g, aux), _ = ps.augment.grad(f, argnums=0, has_aux=True)({}, x)
    ref_g, ref_aux = jax.grad(lambda x: (jnp.sum(x**3), x * 2), has_aux=True)(x)
    np.testing.assert_allclose(g, ref_g)
    np.testing.assert_allclose(aux, ref_aux)


def test_non_scalar_value_under_grad_is_a_type_error_mentioning_scalar():
    """grad of a vector value is a TypeError that says a scalar is needed."""
    g = ps.augment.grad(lambda s, x: (x**2, s), argnums=0)
    with pytest.raises(TypeError, match="scalar"):
        g({}, jnp.array([1.0, 2.0]))


# ------------------------------------------------------------------ unit_aware


X_MS = jnp.array([1.0, 2.0, 3.0]) * u.ms


def assert_quantity_close(got, ref, unit):
    assert isinstance(got, u.Quantity), repr(got)
    assert not isinstance(got.mantissa, u.Quantity), repr(got)
    assert got.unit == unit, (got.unit, unit)
    np.testing.assert_allclose(
        np.asarray(got.to_decimal(unit)), np.asarray(ref.to_decimal(unit)), rtol=1e-6
    )


def test_unit_aware_vector_grad_of_a_quantity_argument_matches_brainunit():
    """vector_grad(x**3, unit_aware=True) on x in ms has unit ms**2, as brainunit.autograd."""
    g, _ = ps.augment.vector_grad(lambda s, x: (x**3, s), unit_aware=True)({}, X_MS)
    ref = u.autograd.vector_grad(lambda x: x**3)(X_MS)
    assert_quantity_close(g, ref, u.ms**2)


def test_unit_aware_grad_of_a_quantity_argument_matches_brainunit():
    """grad(sum(x**3), unit_aware=True) on x in ms has unit ms**2, as brainunit.autograd."""
    g, _ = ps.augment.grad(lambda s, x: (u.math.sum(x**3), s), unit_aware=True)({}, X_MS)
    ref = u.autograd.grad(lambda x: u.math.sum(x**3))(X_MS)
    assert_quantity_close(g, ref, u.ms**2)


def test_unit_aware_grad_of_state_and_argument_matches_brainunit():
    """State and argument gradients carry value_unit / input_unit, as brainunit.autograd."""
    w = jnp.array([2.0, -1.0]) * u.mV
    x = jnp.array([3.0, 0.5]) * u.ms
    states = {"w": ps.ParamState(w)}
    (gs, gx), _ = ps.augment.grad(
        lambda s, x: (u.math.sum(s["w"].value * x), s), ps.ParamState, argnums=0, unit_aware=True
    )(states, x)
    ref_w, ref_x = u.autograd.grad(lambda w, x: u.math.sum(w * x), argnums=(0, 1))(w, x)
    assert_quantity_close(gs["w"].value, ref_w, u.ms)
    assert_quantity_close(gx, ref_x, u.mV)


def test_unit_aware_hessian_of_an_argument_is_a_flat_quantity():
    """hessian(sum(x**3), unit_aware=True) is one Quantity (unit ms) equal to diag(6 x)."""
    h, _ = ps.augment.hessian(lambda s, x: (u.math.sum(x**3), s), unit_aware=True)({}, X_MS)
    ref = u.autograd.hessian(lambda x: u.math.sum(x**3))(X_MS)
    assert_quantity_close(h, ref, u.ms)
    np.testing.assert_allclose(np.asarray(h.to_decimal(u.ms)), np.diag([6.0, 12.0, 18.0]))


def test_unit_aware_hessian_of_a_state_has_no_nested_quantity():
    """hessian over a Quantity state gives Quantity leaves with plain mantissas and unit mV."""
    w = jnp.array([1.0, 2.0]) * u.mV
    h, _ = ps.augment.hessian(
        lambda s: (u.math.sum(s["w"].value ** 3), s), ps.ParamState, unit_aware=True
    )({"w": ps.ParamState(w)})
    leaves = jax.tree.leaves(h, is_leaf=lambda v: isinstance(v, u.Quantity))
    assert len(leaves) == 1
    ref = u.autograd.hessian(lambda w: u.math.sum(w**3))(w)
    assert_quantity_close(leaves[0], ref, u.mV)
    # the selected tree nested in itself, as jax.hessian on the mantissas
    plain = jax.hessian(lambda sel: jnp.sum(sel["w"].value ** 3))({"w": ps.ParamState(w.mantissa)})
    assert jax.tree.structure(h, is_leaf=lambda v: isinstance(v, u.Quantity)) == (
        jax.tree.structure(plain)
    )


# --------------------------------------------------------------------- jacobians


def h_diff(x, y):
    """A tuple output whose parts and arguments all have different shapes."""
    return (x * jnp.sum(y), jnp.concatenate([x, y]) ** 2)


def h_same(x, y):
    """A tuple output with equal shapes: a swap of nesting changes the values."""
    return (x * y, x - 2.0 * y)


@pytest.mark.parametrize("name", ["jacrev", "jacfwd"])
@pytest.mark.parametrize("h", [h_diff, h_same], ids=["different_shapes", "equal_shapes"])
def test_jacobian_with_argnums_tuple_nests_output_outside_as_jax(name, h):
    """Tuple output and argnums=(0, 1): output structure outside, argnums inside, as jax."""
    x = jnp.array([1.0, 2.0])
    y = jnp.array([3.0, -1.0, 0.5]) if h is h_diff else jnp.array([3.0, -1.0])
    jac, _ = GRADS[name](lambda s, x, y: (h(x, y), s), argnums=(0, 1))({}, x, y)
    ref = getattr(jax, name)(h, argnums=(0, 1))(x, y)
    assert_trees_equal_allclose(jac, ref)


@pytest.mark.parametrize("name", ["jacrev", "jacfwd"])
def test_jacobian_of_states_and_argnums_tuple_match_jax(name):
    """With grad_states and argnums=(0, 1), (state_jac, arg_jac) equal the two jax jacobians."""
    x = jnp.array([1.0, 2.0])
    y = jnp.array([3.0, -1.0, 0.5])
    states = {"w": ps.ParamState(jnp.array([0.5, -2.0])), "c": ps.ShortTermState(jnp.ones(2))}

    def raw(sel, x, y):
        w = sel["w"].value
        return (w * x * jnp.sum(y), jnp.concatenate([w * x, y]) ** 2)

    sel = {"w": states["w"]}
    (jac_s, jac_a), _ = GRADS[name](
        lambda s, x, y: (raw(s, x, y), s), ps.ParamState, argnums=(0, 1)
    )(states, x, y)
    jax_jac = getattr(jax, name)
    assert_trees_equal_allclose(jac_s, jax_jac(lambda sel: raw(sel, x, y))(sel))
    assert_trees_equal_allclose(jac_a, jax_jac(lambda x, y: raw(sel, x, y), argnums=(0, 1))(x, y))


# ---------------------------------------------------------------- integer states


def _int_value_loss(states):
    v = states["w"].value
    m = v.mantissa if isinstance(v, u.Quantity) else v
    return jnp.sum(m * 1.0), states


def _grad_error(value, unit_aware=False):
    with pytest.raises(ps.StateError) as info:
        ps.augment.grad(_int_value_loss, ps.ParamState, unit_aware=unit_aware)(
            {"w": ps.ParamState(value), "f": ps.ParamState(jnp.float32(1.0))}
        )
    return str(info.value)


def test_python_int_state_under_grad_is_the_int_array_error():
    """ParamState(3) under grad raises the same StateError as ParamState(int array)."""
    reference = _grad_error(jnp.array(3))
    assert "'w'" in reference
    assert _grad_error(3) == reference


@pytest.mark.parametrize("unit_aware", [False, True])
def test_int_mantissa_quantity_state_under_grad_is_a_state_error(unit_aware):
    """ParamState(3 * u.mV) under grad raises a StateError naming it (never a None gradient)."""
    message = _grad_error(3 * u.mV, unit_aware=unit_aware)
    assert "'w'" in message and "'f'" not in message


def test_python_float_quantity_state_is_differentiated_like_an_array():
    """ParamState(0.5 * u.mV) (Python-float mantissa) gets jax.grad's gradient."""

    def loss(states):
        v = states["w"].value
        m = v.mantissa if isinstance(v, u.Quantity) else v
        return jnp.sum(m**2), states

    g, _ = ps.augment.grad(loss, ps.ParamState)({"w": ps.ParamState(0.5 * u.mV)})
    leaf = g["w"].value
    mantissa = leaf.mantissa if isinstance(leaf, u.Quantity) else leaf
    np.testing.assert_allclose(np.asarray(mantissa), float(jax.grad(lambda v: v**2)(0.5)))


# ----------------------------------------------------------------- NumPy values


NUMPY_VALUES = {
    "ndarray": np.array([1.0, 2.0], np.float32),
    "scalar": np.float32(2.0),
}


@pytest.mark.parametrize("kind", list(NUMPY_VALUES))
@pytest.mark.parametrize("jitted", [False, True])
def test_numpy_valued_param_gets_jax_grad(kind, jitted):
    """A NumPy array or scalar ParamState gets exactly jax.grad's gradient."""
    value = NUMPY_VALUES[kind]
    g = ps.augment.grad(lambda s: (jnp.sum(s["w"].value ** 2), s), ps.ParamState)
    if jitted:
        g = ps.compile.jit(g)
    grads, _ = g({"w": ps.ParamState(value)})
    ref = jax.grad(lambda w: jnp.sum(w**2))(value)
    assert grads["w"].value is not None
    np.testing.assert_allclose(np.asarray(grads["w"].value), np.asarray(ref))


@pytest.mark.parametrize("kind", list(NUMPY_VALUES))
@pytest.mark.parametrize("jitted", [False, True])
def test_optimizer_updates_numpy_valued_params_as_optax(kind, jitted):
    """Optimizer.update moves a NumPy-valued ParamState as optax.sgd does on the array."""
    value = NUMPY_VALUES[kind]
    opt = ps.optim.Optimizer(optax.sgd(0.1), wrt=ps.ParamState)
    states = opt.init({"w": ps.ParamState(value)})
    loss = ps.augment.grad(lambda s: (jnp.sum(s["w"].value ** 2), s), opt.wrt)

    def step(states):
        grads, states = loss(states)
        return None, opt.update(states, grads)

    if jitted:
        step = ps.compile.jit(step)
    _, new = step(states)
    tx = optax.sgd(0.1)
    raw_grad = jax.grad(lambda w: jnp.sum(w**2))(value)
    updates, _ = tx.update(raw_grad, tx.init(jnp.asarray(value)), jnp.asarray(value))
    ref = optax.apply_updates(jnp.asarray(value), updates)
    np.testing.assert_allclose(np.asarray(new["w"].value), np.asarray(ref), rtol=1e-6)
