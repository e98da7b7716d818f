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


# NumPy arrays and NumPy scalars are optimized like jax.Arrays.


def _numpy_states():
    return {
        "w": ps.ParamState(np.array([1.0, 2.0], np.float32)),
        "s": ps.ParamState(np.float32(2.0)),
    }


def _numpy_grads(i):
    return {"w": np.array([2.0, 4.0], np.float32) * (i + 1), "s": np.float32(-0.5) * (i + 1)}


def test_numpy_values_closed_form_sgd():
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    states = opt.init(_numpy_states())
    grads = {k: ps.ParamState(v) for k, v in _numpy_grads(0).items()}
    for new in (opt.update(states, grads), jax.jit(opt.update)(states, grads)):
        np.testing.assert_allclose(np.asarray(new["w"].value), [0.8, 1.6], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(new["s"].value), 2.05, rtol=1e-6)
        assert np.shape(new["s"].value) == ()


@pytest.mark.parametrize("compiled", ["eager", "jax.jit", "ps.compile.jit"])
def test_numpy_values_equal_optax_on_the_raw_arrays(compiled):
    tx = optax.adam(0.1)
    opt = ps.optim.Optimizer(optax.adam(0.1))
    states = opt.init(_numpy_states())

    def step(states, raw_grads):
        return None, opt.update(states, {k: ps.ParamState(v) for k, v in raw_grads.items()})

    if compiled == "jax.jit":
        step = jax.jit(step)
    elif compiled == "ps.compile.jit":
        step = ps.compile.jit(step)

    params = {"w": np.array([1.0, 2.0], np.float32), "s": np.float32(2.0)}
    opt_state = tx.init(params)
    for a, b in zip(
        jax.tree.leaves(states["optimizer"].value), jax.tree.leaves(opt_state), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for i in range(3):
        _, states = step(states, _numpy_grads(i))
        updates, opt_state = tx.update(_numpy_grads(i), opt_state, params)
        params = optax.apply_updates(params, updates)
        for key in ("w", "s"):
            np.testing.assert_allclose(
                np.asarray(states[key].value), np.asarray(params[key]), rtol=1e-6
            )
    assert float(states["s"].value) != 2.0  # really moved


def test_numpy_values_in_the_grad_recipe_under_jit():
    x = np.linspace(-1.0, 1.0, 5, dtype=np.float32)

    def loss(states, x):
        return jnp.sum((states["w"].value[0] * x + states["s"].value) ** 2), states

    def loss_raw(params, x):
        return jnp.sum((params["w"][0] * x + params["s"]) ** 2)

    opt = ps.optim.Optimizer(optax.sgd(0.05, momentum=0.9))
    grad_fn = ps.augment.grad(loss, opt.wrt)

    @ps.compile.jit
    def train_step(states, x):
        grads, states = grad_fn(states, x)
        return None, opt.update(states, grads)

    states = opt.init(_numpy_states())
    tx = optax.sgd(0.05, momentum=0.9)
    params = {"w": np.array([1.0, 2.0], np.float32), "s": np.float32(2.0)}
    opt_state = tx.init(params)
    for _ in range(4):
        _, states = train_step(states, x)
        updates, opt_state = tx.update(jax.grad(loss_raw)(params, x), opt_state, params)
        params = optax.apply_updates(params, updates)
    for key in ("w", "s"):
        np.testing.assert_allclose(
            np.asarray(states[key].value), np.asarray(params[key]), rtol=1e-5, atol=1e-6
        )


def test_numpy_mantissa_of_a_quantity_is_optimized():
    states = {"V_th": ps.ParamState(np.array([1.0, 2.0], np.float32) * u.mV)}
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    states = opt.init(states)
    new = opt.update(states, {"V_th": ps.ParamState(np.array([1.0, -1.0], np.float32))})
    value = new["V_th"].value
    assert isinstance(value, u.Quantity) and value.unit == u.mV
    np.testing.assert_allclose(np.asarray(value.mantissa), [0.9, 2.1], rtol=1e-6)


def test_numpy_integer_values_are_left_alone():
    states = {"w": ps.ParamState(np.ones(2, np.float32)), "n": ps.ParamState(np.arange(3))}
    opt = ps.optim.Optimizer(optax.sgd(1.0))
    states = opt.init(states)
    new = opt.update(states, {"w": ps.ParamState(np.ones(2, np.float32)), "n": ps.ParamState(None)})
    assert new["n"].value is states["n"].value
    np.testing.assert_array_equal(np.asarray(new["w"].value), [0.0, 0.0])


# The optimizer's own 'optimizer' entry is never optimized, whatever wrt says.


def _recipe_states():
    k1, k2 = jax.random.split(jax.random.key(3))
    return {
        "w": ps.ParamState(jax.random.normal(k1, (3,))),
        "stat": ps.LongTermState(jax.random.normal(k2, (3,))),
        "V": ps.ShortTermState(jnp.full(3, 0.5)),
    }


def _recipe_loss_raw(values, x):
    return jnp.sum((jnp.tanh(values["w"] * x) + values["stat"] * values["V"]) ** 2)


@pytest.mark.parametrize(
    ("wrt", "shown", "trained"),
    [(..., "...", ("V", "stat", "w")), (ps.LongTermState, "LongTermState", ("stat",))],
    ids=["everything", "LongTermState"],
)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
def test_wrt_never_selects_the_optimizer_entry_in_the_grad_recipe(wrt, shown, trained, compiled):
    xs = jax.random.normal(jax.random.key(4), (4, 3))
    opt = ps.optim.Optimizer(optax.adam(1e-2), wrt=wrt)
    assert repr(opt).endswith(f", wrt={shown})")  # wrt as given
    states = opt.init(_recipe_states())
    # adam's state holds an integer count: differentiating it would fail.
    assert "optimizer" not in ps.select(states, opt.wrt)

    def loss(states, x):
        return _recipe_loss_raw({k: states[k].value for k in ("w", "stat", "V")}, x), states

    grad_fn = ps.augment.grad(loss, opt.wrt)

    def step(states, x):
        grads, states = grad_fn(states, x)
        assert sorted(grads) == list(trained)
        return None, opt.update(states, grads)

    if compiled:
        step = ps.compile.jit(step)

    # The reference: optax on the raw arrays of the trained states only.
    initial = {k: s.value for k, s in _recipe_states().items()}
    fixed = {k: v for k, v in initial.items() if k not in trained}
    params = {k: initial[k] for k in trained}

    def loss_raw(params, x):
        return _recipe_loss_raw({**fixed, **params}, x)

    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    for x in xs:
        _, states = step(states, x)
        updates, opt_state = tx.update(jax.grad(loss_raw)(params, x), opt_state, params)
        params = optax.apply_updates(params, updates)
    for key, value in {**fixed, **params}.items():
        np.testing.assert_allclose(
            np.asarray(states[key].value), np.asarray(value), rtol=2e-5, atol=1e-6
        )
    for a, b in zip(
        jax.tree.leaves(states["optimizer"].value), jax.tree.leaves(opt_state), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
    assert type(states["optimizer"]) is ps.LongTermState


def test_only_the_root_optimizer_entry_is_left_out():
    states = {"sub": {"optimizer": ps.ParamState(jnp.ones(2))}, "w": ps.ParamState(jnp.ones(1))}
    opt = ps.optim.Optimizer(optax.sgd(1.0), wrt=...)
    states = opt.init(states)
    assert sorted(ps.flatten(ps.select(states, opt.wrt))) == [("sub", "optimizer"), ("w",)]
    new = opt.update(
        states, {"sub": {"optimizer": ps.ParamState(jnp.ones(2))}, "w": ps.ParamState(jnp.ones(1))}
    )
    np.testing.assert_array_equal(np.asarray(new["sub"]["optimizer"].value), [0.0, 0.0])


def test_a_gradient_for_the_optimizer_entry_is_refused_with_a_hint():
    states = {"w": ps.ParamState(jnp.ones(2))}
    opt = ps.optim.Optimizer(optax.sgd(1.0), wrt=...)
    states = opt.init(states)
    grads = {"w": ps.ParamState(jnp.ones(2)), "optimizer": ps.LongTermState(())}
    with pytest.raises(ps.StateError, match=r"'optimizer'.*never optimized.*opt\.wrt"):
        opt.update(states, grads)


# Missing gradients, None gradients, selectors that match nothing.


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
def test_a_selected_state_without_a_gradient_entry_is_an_error(compiled):
    states = ps.optim.Optimizer(optax.sgd(0.1)).init(_model_states())
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    update = jax.jit(opt.update) if compiled else opt.update
    grads = {"lin": {"weight": ps.ParamState(jnp.ones((3, 2)))}, "scale": ps.ParamState(1.0)}
    with pytest.raises(ps.StateError, match=r"no gradient for the selected states: 'lin/bias'"):
        update(states, grads)
    with pytest.raises(ps.StateError, match=r"'lin/bias', 'lin/weight', 'scale'"):
        update(states, {})


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
def test_none_gradients_leave_values_unchanged_under_weight_decay(compiled):
    # adamw would move a parameter with a zero gradient; a None gradient must not.
    states = {"a": ps.ParamState(jnp.array([1.0, -2.0])), "b": ps.ParamState(jnp.array([3.0]))}
    opt = ps.optim.Optimizer(optax.adamw(0.1, weight_decay=0.5))
    update = jax.jit(opt.update) if compiled else opt.update
    states = opt.init(states)
    tx = optax.adamw(0.1, weight_decay=0.5)
    params = {"a": jnp.array([1.0, -2.0])}
    opt_state = tx.init(params)
    for i in range(3):
        g = jnp.array([0.5, 1.0]) * (i + 1)
        states = update(states, {"a": ps.ParamState(g), "b": ps.ParamState(None)})
        updates, opt_state = tx.update({"a": g}, opt_state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(states["a"].value), np.asarray(params["a"]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(states["b"].value), [3.0])


@pytest.mark.parametrize("wrt", [None, ps.RandomState, "nothing/*", "optimizer"])
def test_a_wrt_matching_no_state_is_an_error_listing_the_paths(wrt):
    states = {"w": ps.ParamState(jnp.ones(2)), "V": ps.ShortTermState(jnp.ones(1))}
    opt = ps.optim.Optimizer(optax.sgd(0.1), wrt=wrt)
    with pytest.raises(ps.StateError, match=r"matches no state.*'V', 'w'"):
        opt.init(states)
    initialised = ps.optim.Optimizer(optax.sgd(0.1)).init(states)
    with pytest.raises(ps.StateError, match=r"matches no state.*'V', 'w'") as info:
        opt.update(initialised, {})
    assert "'optimizer'" not in str(info.value).split("Available paths")[1]
