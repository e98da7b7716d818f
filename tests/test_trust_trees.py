"""State trees across every transform: invalid keys, non-array leaves,
pickling, Python numbers as arrays, key order and empty subtrees."""

import copy
import pickle

import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

N = jax.local_device_count()


# ------------------------------------------------------------------ bad keys


def slash_tree():
    return {"a/b": ps.ParamState(1.0), "a": {"b": ps.ShortTermState(2.0)}, "b": ps.ParamState(3.0)}


def mixed_key_tree():
    return {17: ps.ParamState(1.0), "b": ps.ParamState(3.0)}


def int_key_tree():
    return {"b": ps.ParamState(3.0), "sub": {17: ps.ShortTermState(1.0)}}


def empty_key_tree():
    return {"outer": {"": ps.ShortTermState(1.0)}, "b": ps.ParamState(3.0)}


BAD_TREES = {
    "slash": (slash_tree, ["a/b"]),
    "mixed_types": (mixed_key_tree, ["17"]),
    "nested_int": (int_key_tree, ["17", "sub"]),
    "empty_string": (empty_key_tree, ["outer"]),
}


def _body(states, x):
    return x, states


def _use_jit(t):
    ps.compile.jit(_body)(t, jnp.ones(2))


def _use_grad(t):
    ps.augment.grad(lambda s, x: (jnp.sum(x), s), argnums=0)(t, jnp.ones(2))


def _use_grad_states(t):
    ps.augment.grad(lambda s: (s["b"].value * 2.0, s), ps.ParamState)(t)


def _use_vmap(t):
    ps.augment.vmap(_body)(t, jnp.ones(2))


def _use_pmap(t):
    ps.augment.pmap(_body)(t, jnp.ones(N))


def _use_scan(t):
    ps.compile.scan(_body, t, jnp.ones(2))


def _use_for_loop(t):
    ps.compile.for_loop(_body, t, jnp.ones(2))


def _use_cond(t):
    ps.compile.cond(True, _body, _body, t, jnp.ones(2))


def _use_while(t):
    ps.compile.while_loop(lambda s, i: i < 2, lambda s, i: (i + 1, s), t, 0)


def _use_remat(t):
    ps.augment.remat(_body)(t, jnp.ones(2))


USES = {
    "get": lambda t, bad: ps.get(t, "a/b" if bad == "slash" else "b"),
    "set": lambda t, bad: ps.set(t, "b", 5.0),
    "select": lambda t, bad: ps.select(t, "a/b" if bad == "slash" else "b"),
    "split": lambda t, bad: ps.split(t, ps.ParamState),
    "flatten": lambda t, bad: ps.flatten(t),
    "summary": lambda t, bad: ps.summary(t),
    "merge": lambda t, bad: ps.merge(t, {"zz": ps.ParamState(0.0)}),
    "update": lambda t, bad: ps.update(t, {"b": ps.ParamState(5.0)}),
    "jit": lambda t, bad: _use_jit(t),
    "grad": lambda t, bad: _use_grad(t),
    "grad_states": lambda t, bad: _use_grad_states(t),
    "vmap": lambda t, bad: _use_vmap(t),
    "pmap": lambda t, bad: _use_pmap(t),
    "scan": lambda t, bad: _use_scan(t),
    "for_loop": lambda t, bad: _use_for_loop(t),
    "cond": lambda t, bad: _use_cond(t),
    "while_loop": lambda t, bad: _use_while(t),
    "remat": lambda t, bad: _use_remat(t),
}


@pytest.mark.parametrize("bad", list(BAD_TREES))
@pytest.mark.parametrize("use", list(USES))
def test_an_invalid_key_is_a_type_error_naming_its_path(use, bad):
    """Keys with '/', non-str keys and '' are a TypeError naming the path, never a JAX error."""
    make, names = BAD_TREES[bad]
    with pytest.raises(TypeError) as info:
        USES[use](make(), bad)
    message = str(info.value)
    for name in names:
        assert name in message, message
    assert "Comparator" not in message and "Tracer" not in message, message


def test_a_slash_key_is_never_confused_with_a_nested_path():
    """ps.get(t, 'a/b') on {'a/b': ..., 'a': {'b': ...}} never returns the nested state."""
    with pytest.raises(TypeError, match="a/b"):
        ps.get(slash_tree(), "a/b")
    with pytest.raises(TypeError, match="a/b"):
        ps.select(slash_tree(), "a/b")


# ---------------------------------------------------------- non-array leaves


def mlp(key=0):
    return eqx.nn.MLP(2, 2, 4, 1, key=jax.random.key(key))


def net_states():
    return {"net": ps.ParamState(mlp()), "h": ps.ShortTermState(jnp.array([0.1, -0.2]))}


def net_step(states, x):
    h = states["net"].value(states["h"].value + x)
    return h, ps.set(states, "h", h)


def assert_close_trees(a, b, rtol=1e-5):
    """Same structure; array leaves close; other leaves (functions, None) identical."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if eqx.is_array(x) or eqx.is_array(y):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-6)
        else:
            assert x is y, (x, y)


def python_loop(xs):
    net, h, ys = mlp(), jnp.array([0.1, -0.2]), []
    for x in xs:
        h = net(h + x)
        ys.append(h)
    return jnp.stack(ys), h


def test_mlp_state_through_scan_matches_a_python_loop():
    """A state holding an eqx.nn.MLP runs through scan like a Python loop over the MLP."""
    xs = jnp.arange(6.0).reshape(3, 2) / 6
    ys, new = ps.compile.scan(net_step, net_states(), xs)
    ref_ys, ref_h = python_loop(xs)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5)
    np.testing.assert_allclose(new["h"].value, ref_h, rtol=1e-5)
    assert new["net"].value.activation is mlp().activation


def test_mlp_state_through_for_loop_matches_a_python_loop():
    """A state holding an eqx.nn.MLP runs through for_loop with two sequences."""
    a = jnp.arange(6.0).reshape(3, 2) / 6
    b = jnp.ones((3, 2)) * 0.5
    ys, new = ps.compile.for_loop(lambda s, a, b: net_step(s, a * b), net_states(), a, b)
    ref_ys, ref_h = python_loop(a * b)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5)
    np.testing.assert_allclose(new["h"].value, ref_h, rtol=1e-5)


@pytest.mark.parametrize("pred", [True, False])
def test_mlp_state_through_cond_matches_eager(pred):
    """cond with an MLP-valued state equals the chosen branch run eagerly."""

    def other(states, x):
        return -x, ps.set(states, "h", states["h"].value * 2)

    x = jnp.array([0.3, 0.4])
    out, new = ps.compile.cond(pred, net_step, other, net_states(), x)
    ref_out, ref_new = (net_step if pred else other)(net_states(), x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5)
    np.testing.assert_allclose(new["h"].value, ref_new["h"].value, rtol=1e-5)


def test_mlp_state_through_while_loop_matches_python():
    """while_loop with an MLP-valued state equals the same steps in Python."""

    def body(states, i):
        _, states = net_step(states, jnp.ones(2))
        return i + 1, states

    i, new = ps.compile.while_loop(lambda s, i: i < 3, body, net_states(), 0)
    _, ref_h = python_loop(jnp.ones((3, 2)))
    assert int(i) == 3
    np.testing.assert_allclose(new["h"].value, ref_h, rtol=1e-5)


def _apply_net(states, x):
    return states["net"].value(x), states


@pytest.mark.parametrize("kind", ["vmap", "pmap"])
def test_broadcast_mlp_state_under_maps_matches_jax_vmap(kind):
    """An unmapped MLP-valued state is broadcast: equals jax.vmap of the MLP."""
    xs = jnp.arange(2.0 * N).reshape(N, 2) / 8
    transform = ps.augment.vmap if kind == "vmap" else ps.augment.pmap
    out, new = transform(_apply_net)({"net": ps.ParamState(mlp())}, xs)
    np.testing.assert_allclose(out, jax.vmap(mlp())(xs), rtol=1e-5)
    assert_close_trees(new["net"].value, mlp())


@pytest.mark.parametrize("kind", ["vmap", "pmap"])
def test_batched_mlp_state_in_in_states_matches_filter_vmap(kind):
    """A batch of MLPs in in_states maps lane by lane, as eqx.filter_vmap does."""
    keys = jax.random.split(jax.random.key(1), N)
    mlps = eqx.filter_vmap(lambda k: eqx.nn.MLP(2, 2, 4, 1, key=k))(keys)
    xs = jnp.arange(2.0 * N).reshape(N, 2) / 8
    transform = ps.augment.vmap if kind == "vmap" else ps.augment.pmap
    out, new = transform(_apply_net, in_states="net")({"net": ps.ParamState(mlps)}, xs)
    ref = eqx.filter_vmap(lambda m, x: m(x))(mlps, xs)
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    assert_close_trees(new["net"].value, mlps)


def _mlp_loss(states, x):
    return jnp.sum(states["net"].value(x) ** 2), states


def _ref_grad(x):
    return eqx.filter_grad(lambda m: jnp.sum(m(x) ** 2))(mlp())


def test_mlp_state_through_remat_matches_the_mlp_and_filter_grad():
    """remat of an MLP-valued function gives the MLP's output and eqx.filter_grad's gradient."""
    x = jnp.array([0.3, -0.7])
    out, _ = ps.augment.remat(_apply_net)({"net": ps.ParamState(mlp())}, x)
    np.testing.assert_allclose(out, mlp()(x), rtol=1e-5)
    grads, _ = ps.augment.grad(ps.augment.remat(_mlp_loss), ps.ParamState)(
        {"net": ps.ParamState(mlp())}, x
    )
    assert_close_trees(grads["net"].value, _ref_grad(x))


def test_mlp_state_under_grad_matches_filter_grad():
    """grad over an MLP-valued ParamState equals eqx.filter_grad (None for the activation)."""
    x = jnp.array([0.3, -0.7])
    grads, _ = ps.augment.grad(_mlp_loss, ps.ParamState)({"net": ps.ParamState(mlp())}, x)
    assert_close_trees(grads["net"].value, _ref_grad(x))


def _swap_activation(states, *rest):
    net = eqx.tree_at(lambda m: m.activation, states["net"].value, jax.nn.tanh)
    return jnp.float32(0.0), ps.set(states, "net", net)


CHANGERS = {
    "jit": lambda s: ps.compile.jit(_swap_activation)(s, jnp.ones(2)),
    "scan": lambda s: ps.compile.scan(_swap_activation, s, jnp.ones(2)),
    "for_loop": lambda s: ps.compile.for_loop(_swap_activation, s, jnp.ones(2)),
    "cond": lambda s: ps.compile.cond(True, _swap_activation, _swap_activation, s),
    "while_loop": lambda s: ps.compile.while_loop(
        lambda st, i: i < 1, lambda st, i: (i + 1, _swap_activation(st)[1]), s, 0
    ),
    "vmap": lambda s: ps.augment.vmap(_swap_activation)(s, jnp.ones(2)),
    "pmap": lambda s: ps.augment.pmap(_swap_activation)(s, jnp.ones(N)),
    "remat": lambda s: ps.augment.remat(_swap_activation)(s, jnp.ones(2)),
    "grad": lambda s: ps.augment.grad(
        lambda st: (jnp.sum(st["w"].value), _swap_activation(st)[1]), ps.ParamState
    )(s),
}


@pytest.mark.parametrize("where", list(CHANGERS))
def test_changing_a_non_array_leaf_is_a_state_error_naming_the_state(where):
    """A function that changes a non-array leaf raises StateError naming that state only."""
    states = {"net": ps.ParamState(mlp()), "w": ps.ParamState(jnp.ones(2))}
    with pytest.raises(ps.StateError, match="'net'") as info:
        CHANGERS[where](states)
    assert "'w'" not in str(info.value)


# ----------------------------------------------------------------- pickling


class Synapse(ps.ShortTermState):
    """A user-defined state kind."""


def every_kind():
    return {
        "state": ps.State(jnp.arange(3.0)),
        "param": ps.ParamState(jnp.ones((2, 2))),
        "short": ps.ShortTermState(jnp.array([1.0, -1.0]) * u.mV),
        "long": ps.LongTermState(jnp.asarray(7)),
        "typed_key": ps.RandomState(jax.random.key(0)),
        "raw_key": ps.RandomState(jax.random.PRNGKey(1)),
        "user": Synapse(jnp.float32(0.5)),
        "dict_value": ps.ParamState({"a": jnp.ones(2), "b": jnp.zeros(1)}),
        "nested": {"inner": {"v": ps.ShortTermState(jnp.zeros(3))}},
    }


def assert_same_tree(a, b):
    """Same dict keys in order, same kinds, equal values (typed keys by key_data)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same_tree(a[k], b[k])
        return
    assert type(a) is type(b), (type(a), type(b))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert y.dtype == x.dtype
            np.testing.assert_array_equal(jax.random.key_data(x), jax.random.key_data(y))
        else:
            assert np.asarray(x).dtype == np.asarray(y).dtype
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _cloudpickle_round_trip(obj):
    cloudpickle = pytest.importorskip("cloudpickle")
    return cloudpickle.loads(cloudpickle.dumps(obj))


ROUND_TRIPS = {
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "cloudpickle": _cloudpickle_round_trip,
}


@pytest.mark.parametrize("how", list(ROUND_TRIPS))
@pytest.mark.parametrize("name", list(every_kind()))
def test_every_state_kind_round_trips(how, name):
    """pickle, copy, deepcopy and cloudpickle give back an equal state of the same kind."""
    state = every_kind()[name]
    assert_same_tree(ROUND_TRIPS[how](state), every_kind()[name])


@pytest.mark.parametrize("how", list(ROUND_TRIPS))
def test_a_whole_tree_round_trips(how):
    """A tree of every kind survives a round trip with keys, kinds and values unchanged."""
    assert_same_tree(ROUND_TRIPS[how](every_kind()), every_kind())


def test_a_bare_typed_key_state_pickles_and_still_draws_the_same_numbers():
    """A pickled RandomState(jax.random.key(0)) draws what the original key draws."""
    back = pickle.loads(pickle.dumps(ps.RandomState(jax.random.key(0))))
    np.testing.assert_array_equal(
        jax.random.normal(back.value, (3,)), jax.random.normal(jax.random.key(0), (3,))
    )


def test_a_copied_state_is_still_immutable_and_replaceable():
    """A deep-copied state still refuses attribute writes and supports replace."""
    st = copy.deepcopy(ps.ParamState(jnp.ones(2)))
    with pytest.raises(AttributeError):
        st.value = jnp.zeros(2)
    np.testing.assert_array_equal(st.replace(jnp.zeros(2)).value, np.zeros(2))
    assert type(st.replace(jnp.zeros(2))) is ps.ParamState


# -------------------------------------------------- Python numbers are arrays


@pytest.mark.parametrize("number", [0, 0.5, True, 1 + 2j], ids=["int", "float", "bool", "complex"])
def test_a_python_number_value_becomes_the_array_jax_would_make(number):
    """ps.LongTermState(number).value is a jax array with the dtype jnp.asarray gives."""
    value = ps.LongTermState(number).value
    ref = jnp.asarray(number)
    assert isinstance(value, jax.Array)
    assert value.dtype == ref.dtype and value.shape == ()
    assert value.item() == number


def test_a_python_number_mantissa_becomes_an_array():
    """The Python-number mantissa of 0.5 * u.mV becomes an array when the state is made."""
    value = ps.ParamState(0.5 * u.mV).value
    assert isinstance(value, u.Quantity) and value.unit == u.mV
    assert isinstance(value.mantissa, jax.Array)
    assert value.mantissa.dtype == jnp.asarray(0.5).dtype


def _incr(states, *rest):
    return jnp.float32(0.0), ps.set(states, "count", states["count"].value + 1)


INCREMENTERS = {
    "jit": (lambda s: ps.compile.jit(_incr)(s, 1.0), 1),
    "scan": (lambda s: ps.compile.scan(_incr, s, jnp.ones(4)), 4),
    "for_loop": (lambda s: ps.compile.for_loop(_incr, s, jnp.ones(3)), 3),
    "cond": (lambda s: ps.compile.cond(False, _incr, _incr, s), 1),
    "while_loop": (
        lambda s: ps.compile.while_loop(
            lambda st, i: st["count"].value < 5, lambda st, i: (i, _incr(st)[1]), s, 0
        ),
        5,
    ),
    "vmap": (lambda s: ps.augment.vmap(_incr)(s, jnp.ones(3)), 1),
    "pmap": (lambda s: ps.augment.pmap(_incr)(s, jnp.ones(N)), 1),
    "remat": (lambda s: ps.augment.remat(_incr)(s), 1),
    "grad": (
        lambda s: ps.augment.grad(lambda st: (jnp.sum(st["w"].value), _incr(st)[1]), ps.ParamState)(
            s
        ),
        1,
    ),
}


@pytest.mark.parametrize("where", list(INCREMENTERS))
def test_every_transform_can_increment_a_python_int_counter(where):
    """A counter made as LongTermState(0) is incremented like a Python int in every transform."""
    run, steps = INCREMENTERS[where]
    _, new = run({"count": ps.LongTermState(0), "w": ps.ParamState(jnp.ones(2))})
    python_count = 0
    for _ in range(steps):
        python_count += 1
    assert int(new["count"].value) == python_count
    assert jnp.issubdtype(new["count"].value.dtype, jnp.integer)


# ---------------------------------------------------------- branch messages


def _layout_changer(states, x):
    return x, ps.set(states, "v", jnp.zeros(3))


def _layout_keeper(states, x):
    return x, states


def test_cond_layout_error_speaks_of_branches_not_a_loop_body():
    """cond with branches of different layouts: StateError naming the path, not 'loop body'."""
    states = {"v": ps.ShortTermState(jnp.zeros(2))}
    with pytest.raises(ps.StateError, match="'v'") as info:
        ps.compile.cond(True, _layout_keeper, _layout_changer, states, jnp.ones(2))
    message = str(info.value)
    assert "loop" not in message.lower(), message
    assert "cond" in message or "branch" in message.lower(), message


# ------------------------------------------------- key order and empty subtrees


def key_layout(tree):
    """Nested (key, sub-layout) lists in dict order; None for a leaf state."""
    if isinstance(tree, dict):
        return [(k, key_layout(v)) for k, v in tree.items()]
    return None


def ordered_states():
    return {
        "z": {"b": ps.ShortTermState(jnp.float32(0.0)), "a": ps.ParamState(jnp.float32(1.0))},
        "c": ps.LongTermState(jnp.asarray(0)),
        "m": {"y": ps.ShortTermState(jnp.zeros(2)), "x": {"q": ps.ParamState(jnp.ones(2))}},
    }


def with_empty_subtrees():
    states = ordered_states()
    return {
        "z": states["z"],
        "empty": {},
        "c": states["c"],
        "m": {"y": states["m"]["y"], "e": {}, "x": states["m"]["x"]},
    }


def _touch(states, *rest):
    """Writes a new (unbatched) value into one state."""
    b = states["z"]["b"].value + 1.0
    return jnp.float32(0.0), ps.set(states, "z/b", b)


def _touch_loss(states):
    out, new = _touch(states)
    return jnp.sum(states["m"]["x"]["q"].value) + out, new


RUNNERS = {
    "jit": lambda s: ps.compile.jit(_touch)(s, 1.0)[1],
    "grad": lambda s: ps.augment.grad(_touch_loss, ps.ParamState)(s)[1],
    "vmap": lambda s: ps.augment.vmap(_touch)(s, jnp.ones(3))[1],
    "pmap": lambda s: ps.augment.pmap(_touch)(s, jnp.ones(N))[1],
    "scan": lambda s: ps.compile.scan(_touch, s, jnp.ones(2))[1],
    "for_loop": lambda s: ps.compile.for_loop(_touch, s, jnp.ones(2))[1],
    "cond": lambda s: ps.compile.cond(True, _touch, _touch, s)[1],
    "while_loop": lambda s: ps.compile.while_loop(
        lambda st, i: i < 2, lambda st, i: (i + 1, _touch(st)[1]), s, 0
    )[1],
    "remat": lambda s: ps.augment.remat(_touch)(s)[1],
}


STEPS = {"scan": 2, "for_loop": 2, "while_loop": 2}  # the others call _touch once


@pytest.mark.parametrize("where", list(RUNNERS))
def test_new_states_keep_the_input_key_order(where):
    """Returned states have the input's keys in the input's order, at every depth."""
    states = ordered_states()
    new = RUNNERS[where](states)
    assert key_layout(new) == key_layout(states)
    b = 0.0
    for _ in range(STEPS.get(where, 1)):
        b += 1.0
    np.testing.assert_allclose(np.asarray(new["z"]["b"].value), b)


@pytest.mark.parametrize("where", list(RUNNERS))
def test_empty_subtrees_come_back_as_they_went_in(where):
    """An empty-dict subtree comes back where it was, as ps.compile.jit returns it."""
    states = with_empty_subtrees()
    new = RUNNERS[where](states)
    assert key_layout(new) == key_layout(states)
    assert key_layout(new) == key_layout(RUNNERS["jit"](with_empty_subtrees()))
    assert jax.tree.structure(new) == jax.tree.structure(states)
