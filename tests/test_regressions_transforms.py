"""Regression tests for the transforms: hessian layouts, empty subtrees,
Quantity arguments, keyword names, dict subclasses, Python-number and NumPy
state values, error pass-through in vmap/pmap, cleared layout tables, jit's
static/donated positions, and states that checkpointed loops leave out of
their carry.

Each test compares with an independent reference (jax.hessian, jax.grad,
brainunit.autograd, eager calls, jax.lax.scan, a Python loop) or checks the
exact error type and the paths its message names.
"""

import collections

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps
import purestate._layout as layout_module

N = jax.local_device_count()


def strip(tree):
    """`tree` with every State replaced by its value (recursively)."""
    if isinstance(tree, ps.State):
        return strip(tree.value)
    if isinstance(tree, dict):
        return {k: strip(v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(strip(v) for v in tree)
    return tree


def assert_same_tree(got, ref):
    """Equal pytree structure, and leaves equal in value (and shape)."""
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        assert np.shape(a) == np.shape(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def flat_values(tree):
    """``{path: value}`` of a state tree (for comparing trees whose dict types differ)."""
    return {path: np.asarray(state.value) for path, state in ps.flatten(tree).items()}


def assert_same_states(got, ref):
    g, r = flat_values(got), flat_values(ref)
    assert list(g) == list(r)
    for path in g:
        np.testing.assert_allclose(g[path], r[path], rtol=1e-6, err_msg=str(path))


# -- hessian: the output's structure outside, blocks as jax.hessian -----------


def test_hessian_with_argnums_and_a_tuple_output_is_jax_hessian():
    def f(states, x, y):
        return (x**2 * y, x * y**3), states

    h = jax.jit(lambda x, y: ps.augment.hessian(f, argnums=(0, 1))({}, x, y)[0])(1.0, 2.0)
    ref = jax.jit(jax.hessian(lambda x, y: (x**2 * y, x * y**3), argnums=(0, 1)))(1.0, 2.0)
    assert_same_tree(h, ref)


def test_hessian_with_argnums_and_a_dict_output_is_jax_hessian():
    def out(x, y):
        return {"p": x * y**2, "q": jnp.sum(x**3) * y}

    x, y = jnp.array([3.0, 4.0]), jnp.array(0.5)
    hessian = ps.augment.hessian(lambda s, x, y: (out(x, y), s), argnums=(0, 1))
    h = jax.jit(lambda x, y: hessian({}, x, y)[0])(x, y)
    assert_same_tree(h, jax.jit(jax.hessian(out, argnums=(0, 1)))(x, y))


def _blocks(r):
    """jax.hessian(argnums=(0, 1)) of ``(w, y)`` at one output, as purestate
    arranges it with w the state 'w': ((H_ss, H_sa), (H_as, H_aa))."""
    return (({"w": {"w": r[0][0]}}, {"w": r[0][1]}), ({"w": r[1][0]}, r[1][1]))


def test_hessian_of_states_and_argnums_puts_a_tuple_output_outside_the_blocks():
    def out(w, y):
        return (w**2 * y, w * y**3)

    hessian = ps.augment.hessian(lambda s, y: (out(s["w"].value, y), s), "w", argnums=0)
    h = jax.jit(lambda w, y: hessian({"w": ps.ParamState(w)}, y)[0])(1.0, 2.0)
    ref = jax.jit(jax.hessian(out, argnums=(0, 1)))(1.0, 2.0)
    assert_same_tree(strip(h), tuple(_blocks(r) for r in ref))


def test_hessian_of_states_and_argnums_puts_a_dict_output_outside_the_blocks():
    def out(w, y):
        return {"p": w * y**2, "q": jnp.sum(w**3) * y}

    w, y = jnp.array([1.0, 2.0]), jnp.array(0.5)
    hessian = ps.augment.hessian(lambda s, y: (out(s["w"].value, y), s), "w", argnums=0)
    h = jax.jit(lambda w, y: hessian({"w": ps.ParamState(w)}, y)[0])(w, y)
    ref = jax.jit(jax.hessian(out, argnums=(0, 1)))(w, y)
    assert_same_tree(strip(h), {k: _blocks(r) for k, r in ref.items()})


def test_hessian_of_states_with_a_dict_output_is_jax_hessian_of_the_dict():
    w = jnp.array([1.0, 2.0])

    def out(p):
        return {"a": p["w"] ** 3, "b": jnp.sum(p["w"] ** 2)}

    hessian = ps.augment.hessian(lambda s: (out({"w": s["w"].value}), s), "w")
    h = jax.jit(lambda w: hessian({"w": ps.ParamState(w)})[0])(w)
    assert_same_tree(strip(h), jax.jit(jax.hessian(out))({"w": w}))


# -- a state under an input's empty subtree is an extra path ---------------------


def _adds_under_empty(states, x):
    return x, {"a": states["a"], "e": {"new": ps.ParamState(jnp.ones(()))}}


def _replaces_empty(states, x):
    return x, {"a": states["a"], "e": ps.ParamState(jnp.ones(()))}


TRANSFORMS_OF_A_CALL = {
    "jit": lambda f: ps.compile.jit(f),
    "scan": lambda f: lambda s, x: ps.compile.scan(f, s, jnp.ones(2) * x),
    "vmap": lambda f: ps.augment.vmap(f, in_axes=None, axis_size=2),
}


@pytest.mark.parametrize("transform", list(TRANSFORMS_OF_A_CALL))
@pytest.mark.parametrize(
    ("fun", "extra"), [(_adds_under_empty, "'e/new'"), (_replaces_empty, "'e'")]
)
def test_a_state_added_where_the_input_had_an_empty_subtree_is_refused(transform, fun, extra):
    states = {"a": ps.ShortTermState(jnp.zeros(())), "e": {}}
    g = TRANSFORMS_OF_A_CALL[transform](fun)
    with pytest.raises(ps.StateError) as info:
        g(states, 1.0)
    assert extra in str(info.value)


# -- Quantity arguments ----------------------------------------------------------


def _no_quantity(tree):
    leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, u.Quantity))
    assert leaves
    for leaf in leaves:
        assert not isinstance(leaf, u.Quantity), tree
        assert isinstance(leaf, jax.Array), tree


def _potential(states, current):
    return states["V"].value ** 2 * current, states


def _quantity_states():
    return {"V": ps.ShortTermState(jnp.array(2.0) * u.mV)}


def test_gradients_of_quantities_without_units_are_the_mantissas_gradients():
    current = 3.0 * u.mA
    g, _ = ps.augment.grad(_potential, "V", argnums=0)(_quantity_states(), current)
    _no_quantity(g)
    ref = jax.grad(lambda v, i: v**2 * i, argnums=(0, 1))(2.0, 3.0)
    assert_same_tree(strip(g), ({"V": ref[0]}, ref[1]))

    h, _ = ps.augment.hessian(_potential, "V", argnums=0)(_quantity_states(), current)
    _no_quantity(h)
    ref = jax.hessian(lambda v, i: v**2 * i, argnums=(0, 1))(2.0, 3.0)
    expected = (({"V": {"V": ref[0][0]}}, {"V": ref[0][1]}), ({"V": ref[1][0]}, ref[1][1]))
    assert_same_tree(strip(h), expected)


def test_gradient_of_a_tree_argument_holding_a_quantity_is_a_tree_of_arrays():
    def f(states, d):
        return states["V"].value * d["I"] * d["g"], states

    d = {"I": 3.0 * u.mA, "g": jnp.array(2.0)}
    g, _ = ps.augment.grad(f, "V", argnums=0)(_quantity_states(), d)
    _no_quantity(g)
    ref = jax.grad(lambda v, d: v * d["I"] * d["g"], argnums=(0, 1))(
        2.0, {"I": 3.0, "g": jnp.array(2.0)}
    )
    assert_same_tree(strip(g), ({"V": ref[0]}, ref[1]))


def _assert_same_quantities(got, ref):
    is_q = lambda x: isinstance(x, u.Quantity)  # noqa: E731
    got_leaves = jax.tree.leaves(got, is_leaf=is_q)
    ref_leaves = jax.tree.leaves(ref, is_leaf=is_q)
    assert len(got_leaves) == len(ref_leaves)
    for a, b in zip(got_leaves, ref_leaves, strict=True):
        assert is_q(a) and is_q(b)
        assert a.unit == b.unit, (a, b)
        np.testing.assert_allclose(np.asarray(a.mantissa), np.asarray(b.mantissa), rtol=1e-6)


def test_unit_aware_gradients_have_brainunits_units():
    voltage, current = 2.0 * u.mV, 3.0 * u.mA
    g, _ = ps.augment.grad(_potential, "V", argnums=0, unit_aware=True)(_quantity_states(), current)
    ref = u.autograd.grad(lambda v, i: v**2 * i, argnums=(0, 1))(voltage, current)
    _assert_same_quantities((g[0]["V"].value, g[1]), ref)

    h, _ = ps.augment.hessian(_potential, "V", argnums=0, unit_aware=True)(
        _quantity_states(), current
    )
    ref = u.autograd.hessian(lambda v, i: v**2 * i, argnums=(0, 1))(voltage, current)
    got = (
        (h[0][0]["V"].value["V"].value, h[0][1]["V"].value),
        (h[1][0]["V"].value, h[1][1]),
    )
    _assert_same_quantities(got, ref)


# -- keyword arguments with the names of jit's internals ---------------------------


def _with_internal_names(states, x, values=1.0, layout=1.0, env_key=1.0, settings=1.0, tracers=1.0):
    return x * values + 2 * layout + 3 * env_key + 5 * settings + 7 * tracers, states


def test_jit_accepts_keyword_arguments_named_like_its_internals():
    kwargs = dict(values=3.0, layout=0.5, env_key=-1.0, settings=2.0, tracers=0.25)
    states = {"v": ps.ShortTermState(jnp.zeros(2))}
    expected, _ = _with_internal_names(states, 2.0, **kwargs)
    out, new = ps.compile.jit(_with_internal_names)(states, 2.0, **kwargs)
    np.testing.assert_allclose(out, expected)
    assert_same_states(new, states)
    out, _ = ps.augment.remat(_with_internal_names)(states, 2.0, **kwargs)
    np.testing.assert_allclose(out, expected)


def test_static_argnames_may_name_parameters_called_like_jits_internals():
    def f(states, x, layout="add", settings=2):
        return (x + settings if layout == "add" else x * settings), states

    g = ps.compile.jit(f, static_argnames=("layout", "settings"))
    states = {"v": ps.ShortTermState(jnp.zeros(2))}
    for layout, settings in [("add", 2), ("mul", 3), ("add", 5)]:
        out, _ = g(states, 2.0, layout=layout, settings=settings)
        assert float(out) == float(f(states, 2.0, layout=layout, settings=settings)[0])
    out, _ = g(states, 2.0, "mul", 4)  # static also when passed positionally
    assert float(out) == 8.0


# -- dict subclasses ----------------------------------------------------------------


def _accumulate(states, x):
    v = states["dd"]["v"].value + states["layer"]["w"].value * x
    return v.sum(), ps.set(states, "dd/v", v)


def _subclassed_tree():
    return {
        "layer": collections.OrderedDict(
            w=ps.ParamState(jnp.arange(2.0)), b=ps.ParamState(jnp.ones(2))
        ),
        "dd": collections.defaultdict(dict, v=ps.ShortTermState(jnp.zeros(2))),
    }


def test_ordered_and_default_dict_subtrees_in_jit_equal_eager():
    expected, expected_states = _accumulate(_subclassed_tree(), 2.0)
    out, new = ps.compile.jit(_accumulate)(_subclassed_tree(), 2.0)
    np.testing.assert_allclose(out, expected)
    assert_same_states(new, expected_states)


def test_ordered_and_default_dict_subtrees_in_scan_equal_a_python_loop():
    xs = jnp.arange(1.0, 4.0)
    states, ys_ref = _subclassed_tree(), []
    for x in xs:
        y, states = _accumulate(states, x)
        ys_ref.append(y)
    ys, new = ps.compile.scan(_accumulate, _subclassed_tree(), xs)
    np.testing.assert_allclose(ys, np.stack(ys_ref))
    assert_same_states(new, states)


def test_a_top_level_ordered_dict_and_returning_dict_subclasses_work():
    states = collections.OrderedDict(w=ps.ParamState(jnp.ones(2)))
    out, new = ps.compile.jit(lambda s, x: (s["w"].value * x, s))(states, 2.0)
    np.testing.assert_allclose(out, [2.0, 2.0])
    assert_same_states(new, states)

    plain = {"w": ps.ParamState(jnp.ones(2)), "v": ps.ShortTermState(jnp.zeros(2))}
    for wrap in (collections.OrderedDict, lambda s: collections.defaultdict(dict, s)):
        out, new = ps.compile.jit(lambda s, x, wrap=wrap: (x, wrap(s)))(plain, 1.0)
        assert float(out) == 1.0
        assert_same_states(new, plain)


# -- Python numbers put in by jax.tree.map ---------------------------------------------


def test_a_python_float_state_value_from_tree_map_differentiates_and_jits_once():
    states = jax.tree.map(float, {"w": ps.ParamState(jnp.array(3.0))})
    assert type(states["w"].value) is float  # the constructor was bypassed

    g, _ = ps.augment.grad(lambda s: (s["w"].value ** 2, s), "w")(states)
    np.testing.assert_allclose(g["w"].value, jax.grad(lambda w: w**2)(3.0))

    calls = []

    def f(s, x):
        calls.append(None)
        return s["w"].value * x, s

    jitted = ps.compile.jit(f)
    for v in [1.0, 2.0, 3.0]:
        out, _ = jitted(jax.tree.map(lambda _, v=v: v, states), 2.0)
        np.testing.assert_allclose(out, 2.0 * v)
    assert len(calls) == 1


# -- vmap/pmap let the user's ValueErrors through ------------------------------------------


def _inner_vmap_mismatch(states, x):
    jax.vmap(lambda a, b: a * b)(jnp.ones(3), jnp.ones(5))
    return x, states


def _raises_out_axes_message(states, x):
    raise ValueError("learning-rate schedule: out_axes of the decoder must be set")


def _inner_vmap_reference():
    with pytest.raises(ValueError) as info:
        jax.vmap(lambda a, b: a * b)(jnp.ones(3), jnp.ones(5))
    return str(info.value)


MAPS = {
    "vmap": ps.augment.vmap,
    "pmap": pytest.param(ps.augment.pmap, marks=pytest.mark.multidevice),
}


@pytest.mark.parametrize("mapper", MAPS.values(), ids=list(MAPS))
@pytest.mark.parametrize(
    ("fun", "message"),
    [
        (_inner_vmap_mismatch, _inner_vmap_reference),
        (
            _raises_out_axes_message,
            lambda: "learning-rate schedule: out_axes of the decoder must be set",
        ),
    ],
    ids=["inconsistent-sizes", "out_axes"],
)
def test_a_users_value_error_passes_through_unchanged(mapper, fun, message):
    states = {"h": ps.ShortTermState(jnp.zeros((N, 3)))}
    with pytest.raises(ValueError) as info:
        mapper(fun, in_states="h")(states, jnp.ones(N))
    assert type(info.value) is ValueError
    assert str(info.value) == message()


@pytest.mark.parametrize("mapper", MAPS.values(), ids=list(MAPS))
def test_a_real_size_mismatch_with_a_mapped_state_names_both_sizes(mapper):
    states = {"h": ps.ShortTermState(jnp.zeros((N, 3)))}
    with pytest.raises(ps.BatchAxisError) as info:
        mapper(lambda s, x: (x, s), in_states="h")(states, jnp.ones(N + 1))
    message = str(info.value)
    assert f"'h': {N}" in message
    assert str(N + 1) in message


# -- layouts still compare equal after the intern table is cleared ---------------------


def test_scan_calling_a_jit_on_a_new_subtree_survives_a_cleared_layout_table(monkeypatch):
    limit = 6
    monkeypatch.setattr(layout_module, "_MAX_LAYOUTS", limit)
    monkeypatch.setattr(layout_module, "_known", {})
    states = {"v": ps.ShortTermState(jnp.zeros(())), "extra": ps.State(jnp.ones(()))}
    # The table is cleared at each possible point of the scan's trace once.
    for filled in range(limit + 1):
        layout_module._known.clear()
        for i in range(filled):
            layout_module.take_apart({f"filler{i}": ps.State(jnp.zeros(()))})
        inner = ps.compile.jit(lambda s, x: (x, s))

        def body(states, x, inner=inner):
            _, sub = inner({"fresh": states["v"]}, x)  # a layout not seen before
            return x, ps.set(states, "v", sub["fresh"].value + x)

        ys, new = ps.compile.scan(body, states, jnp.ones(3))  # the first call
        np.testing.assert_array_equal(ys, [1.0, 1.0, 1.0])
        assert float(ps.get(new, "v")) == 3.0, filled


# -- jit's static and donated positions ------------------------------------------------


def _two_args(states, a, b):
    return a + b, states


def test_static_argnums_beyond_the_signature_fail_at_creation():
    with pytest.raises(ValueError, match="static_argnums"):
        ps.compile.jit(_two_args, static_argnums=5)


def test_negative_donate_argnums_count_from_the_end_of_the_signature():
    a, b = jnp.ones(3), jnp.arange(3.0)
    out, _ = ps.compile.jit(_two_args, donate_argnums=-1)({}, a, b)
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
    assert b.is_deleted()
    assert not a.is_deleted()


def test_negative_donate_argnums_with_var_positional_fail_at_creation():
    with pytest.raises(ValueError, match="donate_argnums"):
        ps.compile.jit(lambda states, *args: (args, states), donate_argnums=-1)


# -- NumPy state values ------------------------------------------------------------------


def test_an_unchanged_numpy_state_comes_back_as_a_jax_array_not_the_callers_buffer():
    buffer = np.zeros(3, np.float32)
    states = {"w": ps.ParamState(buffer), "v": ps.ShortTermState(jnp.zeros(3))}
    step = ps.compile.jit(lambda s, x: (x, ps.set(s, "v", s["v"].value + s["w"].value)))
    _, new = step(states, 1.0)
    w = new["w"].value
    reference = jax.jit(lambda w: w)(np.zeros(3, np.float32))
    assert isinstance(w, jax.Array) and not isinstance(w, np.ndarray)
    assert type(w) is type(reference)
    assert w.dtype == reference.dtype
    buffer[:] = 7.0  # the caller reuses its buffer
    np.testing.assert_array_equal(np.asarray(w), np.zeros(3))


# -- checkpointed loops leave unchanged states out of the carry --------------------------


def _rnn_step(states, x):
    v = jnp.tanh(states["W"].value @ states["v"].value + x)
    return v.sum(), ps.set(states, "v", v)


def _grad_w_in_tree(loop, **options):
    def run(w, v0, xs):
        def loss(states, xs):
            ys, states = loop(_rnn_step, states, xs, **options)
            return ys.sum(), states

        states = {"W": ps.ParamState(w), "v": ps.ShortTermState(v0)}
        return ps.augment.grad(loss, "W")(states, xs)[0]["W"].value

    return run


def _grad_w_closed_over(w, v0, xs):
    def loss(w):
        def step(states, x):
            v = jnp.tanh(w @ states["v"].value + x)
            return v.sum(), ps.set(states, "v", v)

        ys, _ = ps.compile.checkpointed_scan(step, {"v": ps.ShortTermState(v0)}, xs, block_size=4)
        return ys.sum()

    return jax.grad(loss)(w)


def test_checkpointed_scan_does_not_store_an_unchanged_state_per_block():
    n, steps = 32, 32
    w = jnp.full((n, n), 0.01)
    v0 = jnp.zeros(n)
    xs = jnp.full((steps, n), 0.1)
    in_tree = _grad_w_in_tree(ps.compile.checkpointed_scan, block_size=4)
    compiled = jax.jit(in_tree).lower(w, v0, xs).compile()
    reference = jax.jit(_grad_w_closed_over).lower(w, v0, xs).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    temp_reference = reference.memory_analysis().temp_size_in_bytes
    # Storing W at each of the 8 block boundaries would add 8 * 4 KiB.
    assert temp <= 1.2 * temp_reference + 1024, (temp, temp_reference)

    grads = compiled(w, v0, xs)
    np.testing.assert_allclose(grads, reference(w, v0, xs), rtol=1e-5)
    np.testing.assert_allclose(
        grads, jax.jit(_grad_w_in_tree(ps.compile.scan))(w, v0, xs), rtol=1e-5
    )


def test_bounded_while_loop_with_an_unchanged_state_has_the_python_loops_gradient():
    n, steps = 4, 5
    w = jnp.arange(n * n, dtype=jnp.float32).reshape(n, n) / 50.0
    v0 = jnp.linspace(0.1, 0.4, n)

    def body(states, i):
        v = jnp.tanh(states["W"].value @ states["v"].value + 0.1)
        return i + 1, ps.set(states, "v", v)

    def loss(states):
        _, states = ps.compile.bounded_while_loop(
            lambda s, i: i < steps, body, states, 0, max_steps=8, base=2
        )
        return jnp.sum(ps.get(states, "v") ** 2), states

    def python_loop(w):
        v = v0
        for _ in range(steps):
            v = jnp.tanh(w @ v + 0.1)
        return jnp.sum(v**2)

    states = {"W": ps.ParamState(w), "v": ps.ShortTermState(v0)}
    g, new = jax.jit(ps.augment.grad(loss, "W"))(states)
    np.testing.assert_allclose(
        g["W"].value, jax.jit(jax.grad(python_loop))(w), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_array_equal(ps.get(new, "W"), w)
