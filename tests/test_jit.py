import threading

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def leak(states, x):
    """One leaky-integrator step reading dt from ps.environ."""
    dt = ps.environ.get("dt")
    v = states["v"].value
    v = v + dt * (x - v)
    return v.sum(), ps.set(states, "v", v)


def raw_leak(v, x, dt):
    v = v + dt * (x - v)
    return v.sum(), v


def test_jit_equals_eager_and_plain_jax():
    states = {"v": ps.ShortTermState(jnp.arange(3.0))}
    x = jnp.ones(3)
    with ps.environ.context(dt=0.1):
        out, new = ps.compile.jit(leak)(states, x)
        eager_out, eager_new = leak(states, x)
    ref_out, ref_v = jax.jit(raw_leak, static_argnums=2)(jnp.arange(3.0), x, 0.1)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    np.testing.assert_allclose(out, eager_out, rtol=1e-6)
    ps.testing.assert_trees_allclose(new, {"v": ps.ShortTermState(ref_v)})
    ps.testing.assert_trees_allclose(new, eager_new)


def test_a_changed_environ_value_retraces():
    step = ps.compile.jit(leak)
    states = {"v": ps.ShortTermState(jnp.zeros(2))}
    x = jnp.ones(2)
    with ps.environ.context(dt=0.1):
        a, _ = step(states, x)
    with ps.environ.context(dt=0.5):
        b, _ = step(states, x)
    np.testing.assert_allclose(a, 0.2, rtol=1e-6)
    np.testing.assert_allclose(b, 1.0, rtol=1e-6)  # a stale trace would give 0.2


def test_quantity_environ_values_retrace_too():
    def f(states):
        return states["v"].value * (ps.environ.get("dt") / u.ms), states

    step = ps.compile.jit(f)
    states = {"v": ps.ShortTermState(jnp.ones(()))}
    with ps.environ.context(dt=0.1 * u.ms):
        a, _ = step(states)
    with ps.environ.context(dt=0.2 * u.ms):
        b, _ = step(states)
    np.testing.assert_allclose([a, b], [0.1, 0.2], rtol=1e-6)


def test_recompiles_on_shape_dtype_and_kind_changes():
    traces = []

    def f(states):
        traces.append(1)
        return None, states

    step = ps.compile.jit(f)
    step({"a": ps.ParamState(jnp.zeros(2))})
    step({"a": ps.ParamState(jnp.ones(2))})
    assert len(traces) == 1
    step({"a": ps.ParamState(jnp.zeros(3))})
    step({"a": ps.ParamState(jnp.zeros(2, jnp.int32))})
    step({"a": ps.ShortTermState(jnp.zeros(2))})
    step({"a": ps.ParamState(jnp.zeros(2)), "b": ps.ParamState(jnp.zeros(2))})
    assert len(traces) == 5


def test_static_argnums_count_args_after_states():
    def f(states, x, n):
        return x * n, states

    step = ps.compile.jit(f, static_argnums=1)
    out, _ = step({}, jnp.ones(2), 3)
    np.testing.assert_array_equal(out, 3 * np.ones(2))
    kw = ps.compile.jit(f, static_argnames="n")
    out, _ = kw({}, jnp.ones(2), n=4)
    np.testing.assert_array_equal(out, 4 * np.ones(2))


def test_stateful_convention_is_checked_at_trace_time():
    def drops_a_state(states):
        return None, {}

    with pytest.raises(ps.StateError, match="missing paths: 'w'"):
        ps.compile.jit(drops_a_state)({"w": ps.ParamState(1.0)})


def test_donate_states_deletes_the_input_buffers():
    step = ps.compile.jit(lambda s: (None, jax.tree.map(lambda v: v + 1, s)), donate_states=True)
    states = {"w": ps.ParamState(jnp.zeros(4))}
    _, new = step(states)
    assert states["w"].value.is_deleted()
    np.testing.assert_array_equal(new["w"].value, np.ones(4))
    with pytest.raises((RuntimeError, ValueError), match="deleted"):  # JAX's own error
        step(states)


def test_state_shardings_place_selected_states():
    devices = jax.devices()
    assert len(devices) == 4, "conftest.py forces 4 host devices"
    mesh = jax.sharding.Mesh(np.array(devices), ("d",))
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    step = ps.compile.jit(
        lambda s: (None, jax.tree.map(lambda v: v * 2, s)), state_shardings={ps.ParamState: sharded}
    )
    states = {"w": ps.ParamState(jnp.arange(8.0)), "v": ps.ShortTermState(jnp.arange(8.0))}
    _, new = step(states)
    assert new["w"].value.sharding.is_equivalent_to(sharded, 1)
    assert len(new["w"].value.addressable_shards) == 4
    np.testing.assert_array_equal(new["w"].value, 2 * np.arange(8.0))
    np.testing.assert_array_equal(new["v"].value, 2 * np.arange(8.0))


def test_environ_nests_restores_on_error_and_is_per_thread():
    with ps.environ.context(dt=1):
        with pytest.raises(RuntimeError), ps.environ.context(dt=2):
            assert ps.environ.get("dt") == 2
            raise RuntimeError
        assert ps.environ.get("dt") == 1
        seen = {}

        def other():
            seen["before"] = ps.environ.get("dt", None)
            with ps.environ.context(dt=3):
                seen["inside"] = ps.environ.get("dt")

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen == {"before": None, "inside": 3}
        assert ps.environ.get("dt") == 1
    with pytest.raises(KeyError, match="dt"):
        ps.environ.get("dt")


def test_states_holding_equinox_modules_with_function_leaves():
    import equinox as eqx
    import optax

    mlp = eqx.nn.MLP(2, 1, 8, 1, key=jax.random.key(0))
    states = {"mlp": ps.ParamState(mlp)}
    opt = ps.optim.Optimizer(optax.sgd(0.1))
    states = opt.init(states)
    x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))

    def loss(states, x, y):
        return jnp.mean((jax.vmap(states["mlp"].value)(x) - y) ** 2), states

    @ps.compile.jit
    def step(states, x, y):
        (grads, value), states = ps.augment.grad(loss, ps.ParamState, return_value=True)(
            states, x, y
        )
        return value, opt.update(states, grads)

    value, new = step(states, x, y)
    value2, _ = step(new, x, y)

    @eqx.filter_jit
    def ref_step(model, opt_state, x, y):
        value, grads = eqx.filter_value_and_grad(lambda m: jnp.mean((jax.vmap(m)(x) - y) ** 2))(
            model
        )
        updates, opt_state = optax.sgd(0.1).update(grads, opt_state)
        return value, eqx.apply_updates(model, updates), opt_state

    ref_value, ref_model, ref_opt = ref_step(
        mlp, optax.sgd(0.1).init(eqx.filter(mlp, eqx.is_array)), x, y
    )
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    ref_value2, _, _ = ref_step(ref_model, ref_opt, x, y)
    np.testing.assert_allclose(value2, ref_value2, rtol=1e-5)
    assert new["mlp"].value.activation is mlp.activation


def _nested_states():
    return {
        "layer": {"w": ps.ParamState(jnp.arange(3.0)), "b": ps.ParamState(jnp.ones(3))},
        "v": ps.ShortTermState(jnp.full(3, 2.0)),
        "count": ps.LongTermState(jnp.zeros((), jnp.int32)),
    }


def test_nested_mixed_kinds_match_jax_jit_on_plain_arrays():
    def f(states, x):
        w, b, v = states["layer"]["w"].value, states["layer"]["b"].value, states["v"].value
        v = 0.5 * v + w * x + b
        new = ps.set(states, "v", v)
        return v.sum(), ps.set(new, "count", states["count"].value + 1)

    @jax.jit
    def plain(w, b, v, count, x):
        v = 0.5 * v + w * x + b
        return v.sum(), v, count + 1

    states = _nested_states()
    out, new = ps.compile.jit(f)(states, 2.0)
    ref_out, ref_v, ref_count = plain(
        jnp.arange(3.0), jnp.ones(3), jnp.full(3, 2.0), jnp.zeros((), jnp.int32), 2.0
    )
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(ps.get(new, "v"), ref_v)
    assert int(ps.get(new, "count")) == int(ref_count)
    assert jax.tree.structure(new) == jax.tree.structure(states)  # kinds and nesting kept


def test_output_keeps_the_input_key_order_whatever_order_fun_returns():
    def reorders(states):
        return None, {k: states[k] for k in sorted(states, reverse=True)}

    states = {
        "b": ps.ParamState(jnp.ones(1)),
        "a": ps.ParamState(jnp.zeros(1)),
        "c": ps.ParamState(jnp.full(1, 2.0)),
    }
    _, new = ps.compile.jit(reorders)(states)
    assert list(new) == ["b", "a", "c"]
    for key in states:
        np.testing.assert_array_equal(new[key].value, states[key].value)


def test_same_shapes_under_other_kinds_or_key_order_are_not_served_a_stale_trace():
    traces = []

    def scale_params(states):
        traces.append(1)
        params, rest = ps.split(states, ps.ParamState)
        return None, ps.merge(jax.tree.map(lambda v: 10 * v, params), rest)

    step = ps.compile.jit(scale_params)
    a, b = jnp.ones(2), jnp.full(2, 2.0)
    _, new = step({"x": ps.ParamState(a), "y": ps.ShortTermState(b)})
    np.testing.assert_array_equal(new["x"].value, 10 * a)
    np.testing.assert_array_equal(new["y"].value, b)
    # Same keys and shapes, kinds swapped: a new trace, the other state scaled.
    _, new = step({"x": ps.ShortTermState(a), "y": ps.ParamState(b)})
    np.testing.assert_array_equal(new["x"].value, a)
    np.testing.assert_array_equal(new["y"].value, 10 * b)
    assert (type(new["x"]), type(new["y"])) == (ps.ShortTermState, ps.ParamState)
    # Same states, keys in another order: correct values under the right keys.
    _, new = step({"y": ps.ParamState(b), "x": ps.ShortTermState(a)})
    np.testing.assert_array_equal(new["y"].value, 10 * b)
    np.testing.assert_array_equal(new["x"].value, a)
    assert len(traces) == 3
    # A nested dict where a state was: new layout, new trace.
    _, new = step({"x": {"inner": ps.ParamState(a)}, "y": ps.ParamState(b)})
    np.testing.assert_array_equal(new["x"]["inner"].value, 10 * a)
    assert len(traces) == 4


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ({"w": jnp.ones(2)}, ps.StateError, "not a State"),
        ({1: ps.ParamState(jnp.ones(2))}, ps.StateError, "str keys"),
        (ps.ParamState(jnp.ones(2)), ps.StateError, "ParamState"),
        ([ps.ParamState(jnp.ones(2))], ps.StateError, "dict"),
    ],
)
def test_trees_that_are_not_state_trees_get_the_general_paths_errors(bad, error, match):
    step = ps.compile.jit(lambda s: (None, s))
    step({"w": ps.ParamState(jnp.ones(2))})  # the fast path is warm
    with pytest.raises(error, match=match):
        step(bad)


def test_empty_and_deep_trees():
    step = ps.compile.jit(lambda s, x: (x + 1, jax.tree.map(lambda v: v * 2, s)))
    out, new = step({}, 1.0)
    assert new == {} and float(out) == 2.0
    deep = {"a": {"b": {"c": {"d": ps.ShortTermState(jnp.ones(2))}}, "e": {}}}
    _, new = step(deep, 1.0)
    np.testing.assert_array_equal(new["a"]["b"]["c"]["d"].value, 2 * np.ones(2))
    assert new["a"]["e"] == {}


def test_states_returned_unchanged_are_handed_back_not_copied():
    # jax.jit copies every output, even an input returned as is; the states a
    # step leaves alone come back as the very arrays that went in.
    w, v = jnp.arange(6.0).reshape(2, 3), jnp.zeros(3)
    states = {"w": ps.ParamState(w), "v": ps.ShortTermState(v), "tau": ps.LongTermState(2.0 * u.ms)}

    @ps.compile.jit
    def step(states, x):
        v = states["v"].value + x @ states["w"].value
        return v.sum(), ps.set(states, "v", v)

    ref_out, ref_v = jax.jit(lambda w, v, x: ((v + x @ w).sum(), v + x @ w))(w, v, jnp.ones(2))
    out, new = step(states, jnp.ones(2))
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(new["v"].value, ref_v)
    assert new["w"].value is w
    # A Quantity passed through: the same mantissa array, not a copy.
    assert new["tau"].value.mantissa is states["tau"].value.mantissa
    assert new["tau"].value.unit == states["tau"].value.unit
    assert list(new) == list(states) and type(new["tau"]) is ps.LongTermState


def test_which_states_pass_through_is_per_trace():
    def bump(states, which):
        return None, ps.set(states, which, states[which].value + 1)

    step = ps.compile.jit(bump, static_argnums=0)
    states = {"a": ps.ShortTermState(jnp.zeros(2)), "b": ps.ShortTermState(jnp.full(2, 5.0))}
    for which, other in [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a")]:
        _, new = step(states, which)
        np.testing.assert_array_equal(new[which].value, states[which].value + 1)
        assert new[other].value is states[other].value


def test_donated_states_are_not_handed_back():
    w = jnp.ones(3)
    states = {"w": ps.ParamState(w), "v": ps.ShortTermState(jnp.zeros(3))}
    step = ps.compile.jit(
        lambda s: (None, ps.set(s, "v", s["v"].value + s["w"].value)), donate_states=True
    )
    _, new = step(states)
    np.testing.assert_array_equal(new["w"].value, np.ones(3))
    np.testing.assert_array_equal(new["v"].value, np.ones(3))
    assert new["w"].value is not w and w.is_deleted()


def test_passed_through_states_under_outer_transforms():
    step = ps.compile.jit(lambda s, x: ((s["w"].value * x).sum(), s))  # hands every state back

    def loss(w):
        out, new = step({"w": ps.ParamState(w)}, 3.0)
        return out + (new["w"].value ** 2).sum()

    def plain(w):
        return (w * 3.0).sum() + (w**2).sum()

    w = jnp.array([1.0, -2.0])
    np.testing.assert_allclose(jax.grad(loss)(w), jax.grad(plain)(w))
    ws = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(jax.vmap(loss)(ws), jax.vmap(plain)(ws))
