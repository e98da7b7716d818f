"""vmap/pmap: selectors that match nothing or clash, axis_size, out_axes=None
errors, batched random keys, NumPy-valued states."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

N = jax.local_device_count()
MAPS = {"vmap": ps.augment.vmap, "pmap": ps.augment.pmap}


def states_ab():
    return {
        "weight": ps.ParamState(jnp.arange(float(N))),
        "bias": ps.ShortTermState(jnp.arange(float(N))),
    }


def passthrough(states, x):
    return x * 2, states


def assert_lists_paths(message, paths=("weight", "bias")):
    for path in paths:
        assert f"'{path}'" in message, message


@pytest.mark.parametrize("kind", list(MAPS))
@pytest.mark.parametrize("option", ["in_states", "out_states"])
@pytest.mark.parametrize("form", ["glob", "axis_map"])
def test_a_selector_matching_nothing_is_a_state_error_listing_available_paths(kind, option, form):
    """in_states/out_states that match no state raise StateError naming it and listing paths."""
    selector = "bais" if form == "glob" else {0: "bais"}
    with pytest.raises(ps.StateError) as info:
        MAPS[kind](passthrough, **{option: selector})(states_ab(), jnp.ones(N))
    message = str(info.value)
    assert "bais" in message
    assert_lists_paths(message)


@pytest.mark.parametrize("kind", list(MAPS))
def test_a_kind_selector_matching_nothing_is_a_state_error(kind):
    """A State subclass selector that matches nothing is an error listing paths."""
    with pytest.raises(ps.StateError) as info:
        MAPS[kind](passthrough, in_states=ps.RandomState)(states_ab(), jnp.ones(N))
    assert_lists_paths(str(info.value))


def test_jit_state_shardings_selector_matching_nothing_is_a_state_error():
    """ps.compile.jit(state_shardings={'nope': ...}) raises StateError listing available paths."""
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with pytest.raises(ps.StateError) as info:
        ps.compile.jit(passthrough, state_shardings={"nope": sharding})(states_ab(), jnp.ones(N))
    message = str(info.value)
    assert "nope" in message
    assert_lists_paths(message)


def test_a_typo_in_in_states_never_gives_numbers():
    """The typo in_states='bais' (meant 'bias') is an error, while the right name matches jax.vmap."""

    def f(states, x):
        return states["bias"].value + x, states

    with pytest.raises(ps.StateError):
        ps.augment.vmap(f, in_states="bais")(states_ab(), jnp.ones(N))
    out, _ = ps.augment.vmap(f, in_states="bias")(states_ab(), jnp.ones(N))
    ref = jax.vmap(lambda b, x: b + x)(states_ab()["bias"].value, jnp.ones(N))
    np.testing.assert_allclose(out, ref)


@pytest.mark.parametrize("kind", list(MAPS))
@pytest.mark.parametrize(
    ("in_states", "out_states"),
    [
        ({0: "bias"}, {1: "bias"}),
        ({0: "bias", 1: ps.ShortTermState}, None),
        ("bias", {1: ps.ShortTermState}),
    ],
    ids=["in_vs_out", "within_in_states", "default_axis_vs_out"],
)
def test_one_state_given_two_axes_is_a_state_error_naming_it(kind, in_states, out_states):
    """A state given two different axes raises StateError naming it (never silently dropped)."""
    states = {
        "bias": ps.ShortTermState(jnp.zeros((N, N))),
        "weight": ps.ParamState(jnp.ones(N)),
    }
    with pytest.raises(ps.StateError, match="'bias'"):
        MAPS[kind](passthrough, in_states=in_states, out_states=out_states)(states, jnp.ones(N))


def _per_lane_init(states):
    v = states["v"].value + jax.lax.axis_index("lane")
    return None, ps.set(states, "v", v)


@pytest.mark.parametrize("kind", list(MAPS))
def test_axis_size_with_only_states_creates_per_lane_states(kind):
    """map(init, axis_size=n) over a states-only function creates per-lane states."""
    states = {"v": ps.ShortTermState(jnp.zeros(2)), "w": ps.ParamState(jnp.ones(2))}
    out, new = MAPS[kind](_per_lane_init, out_states="v", axis_name="lane", axis_size=N)(states)
    assert out is None
    np.testing.assert_allclose(np.asarray(new["v"].value), np.arange(N)[:, None] + np.zeros((N, 2)))
    np.testing.assert_allclose(np.asarray(new["w"].value), np.ones(2))
    assert type(new["v"]) is ps.ShortTermState


def test_pmap_with_axis_size_and_random_states_matches_vmap():
    """pmap(init, axis_size=n) draws per-lane states exactly as vmap(axis_size=n) does."""

    def init(states):
        key, states = ps.random.split(states)
        return None, ps.set(states, "v", jax.random.normal(key, (2,)))

    states = {"rng": ps.RandomState(jax.random.key(3)), "v": ps.ShortTermState(jnp.zeros(2))}
    _, by_pmap = ps.augment.pmap(init, out_states="v", axis_size=N)(states)
    _, by_vmap = ps.augment.vmap(init, out_states="v", axis_size=N)(states)
    np.testing.assert_allclose(by_pmap["v"].value, by_vmap["v"].value, rtol=1e-6)
    np.testing.assert_array_equal(
        jax.random.key_data(by_pmap["rng"].value), jax.random.key_data(by_vmap["rng"].value)
    )
    assert by_pmap["v"].value.shape == (N, 2)


@pytest.mark.parametrize("kind", list(MAPS))
def test_negative_axis_size_is_a_batch_axis_error(kind):
    """axis_size=-1 raises BatchAxisError (when the map is made or called)."""
    states = {"v": ps.ShortTermState(jnp.zeros(2))}
    with pytest.raises(ps.BatchAxisError, match="axis_size"):
        MAPS[kind](_per_lane_init, out_states="v", axis_name="lane", axis_size=-1)(states)


@pytest.mark.parametrize("kind", list(MAPS))
def test_axis_size_disagreeing_with_mapped_args_is_a_batch_axis_error(kind):
    """axis_size that differs from a mapped argument's axis raises BatchAxisError."""
    with pytest.raises(ps.BatchAxisError, match="axis_size"):
        MAPS[kind](passthrough, axis_size=N - 1)(states_ab(), jnp.ones(N))


@pytest.mark.parametrize("kind", list(MAPS))
def test_axis_size_disagreeing_with_mapped_states_is_a_batch_axis_error(kind):
    """axis_size that differs from an in_states state's axis raises BatchAxisError naming it."""
    with pytest.raises(ps.BatchAxisError, match="'bias'"):
        MAPS[kind](passthrough, in_states="bias", axis_size=N - 1)(states_ab(), jnp.ones(N - 1))


@pytest.mark.parametrize("kind", list(MAPS))
@pytest.mark.parametrize("axis_name", [None, "i"])
def test_batched_output_with_out_axes_none_does_not_blame_states(kind, axis_name):
    """A batched output with out_axes=None raises BatchAxisError that blames no state."""
    states = {"wgt": ps.ParamState(jnp.float32(1.0)), "vmem": ps.ShortTermState(jnp.float32(0.0))}
    with pytest.raises(ps.BatchAxisError) as info:
        MAPS[kind](passthrough, out_axes=None, axis_name=axis_name)(states, jnp.arange(float(N)))
    message = str(info.value)
    assert "wgt" not in message and "vmem" not in message, message
    assert "out_axes" in message


def test_pmap_replicated_output_with_out_axes_none_matches_jax_pmap():
    """A psum-replicated output with out_axes=None is allowed and equals jax.pmap."""

    def total(states, x):
        return jax.lax.psum(x * states["wgt"].value, "i"), states

    states = {"wgt": ps.ParamState(jnp.float32(3.0))}
    x = jnp.arange(float(N))
    out, _ = ps.augment.pmap(total, out_axes=None, axis_name="i")(states, x)
    ref = jax.pmap(lambda x: jax.lax.psum(x * 3.0, "i"), axis_name="i", out_axes=None)(x)
    np.testing.assert_allclose(out, ref)


def test_a_pmap_failure_that_is_not_about_batching_keeps_jaxs_error():
    """JAX rejects an ordered callback on several devices (a ValueError, as
    for batching mistakes); it must reach the user as it is, not as a
    BatchAxisError about out_axes."""

    def noisy(states, x):
        jax.debug.callback(lambda v: None, x, ordered=True)
        return x, states

    def jax_error():
        jax.pmap(lambda x: (jax.debug.callback(lambda v: None, x, ordered=True), x)[1])(
            jnp.arange(float(N))
        )

    with pytest.raises(ValueError) as reference:
        jax_error()
    with pytest.raises(ValueError) as info:
        ps.augment.pmap(noisy)({"wgt": ps.ParamState(jnp.float32(1.0))}, jnp.arange(float(N)))
    assert not isinstance(info.value, ps.BatchAxisError), info.value
    assert str(info.value) == str(reference.value)


def _draw(states, x):
    return jax.random.normal(states["noise"].value) + 0 * x, states


@pytest.mark.parametrize("kind", list(MAPS))
def test_batched_random_state_left_out_of_in_states_names_its_path(kind):
    """A RandomState holding a batch of keys but not in in_states raises BatchAxisError naming it."""
    states = {
        "noise": ps.RandomState(jax.random.split(jax.random.key(0), N)),
        "wgt": ps.ParamState(jnp.float32(1.0)),
    }
    with pytest.raises(ps.BatchAxisError) as info:
        MAPS[kind](_draw)(states, jnp.ones(N))
    message = str(info.value)
    assert "'noise'" in message
    assert "split accepts" not in message
    assert "in_states" in message


@pytest.mark.parametrize("kind", list(MAPS))
def test_batched_random_state_in_in_states_draws_like_jax_vmap(kind):
    """A batch of keys declared in in_states gives each lane its own key, as jax.vmap does."""
    keys = jax.random.split(jax.random.key(0), N)
    states = {"noise": ps.RandomState(keys), "wgt": ps.ParamState(jnp.float32(1.0))}
    out, new = MAPS[kind](_draw, in_states="noise")(states, jnp.ones(N))
    ref = jax.vmap(jax.random.normal)(keys)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert new["noise"].value.shape == (N,)


def test_numpy_valued_state_in_in_states_is_batched_like_jax_vmap():
    """A NumPy-array state in in_states is mapped exactly as jax.vmap maps the array."""
    w = np.arange(2.0 * N, dtype=np.float32).reshape(N, 2)
    x = np.ones((N, 2), np.float32)

    def f(states, x):
        new_w = states["w"].value * 2 + x
        return jnp.sum(new_w), ps.set(states, "w", new_w)

    out, new = ps.augment.vmap(f, in_states="w")({"w": ps.ParamState(w)}, x)
    ref_out, ref_w = jax.vmap(lambda w, x: (jnp.sum(w * 2 + x), w * 2 + x))(w, x)
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(new["w"].value, ref_w)


def test_numpy_scalar_state_broadcast_under_vmap_matches_jax_vmap():
    """A NumPy-scalar state left unmapped is broadcast as jax.vmap broadcasts it."""
    x = jnp.arange(3.0)
    out, new = ps.augment.vmap(lambda s, x: (s["k"].value * x, s))(
        {"k": ps.ParamState(np.float32(2.5))}, x
    )
    np.testing.assert_allclose(out, jax.vmap(lambda x: np.float32(2.5) * x)(x))
    np.testing.assert_allclose(new["k"].value, 2.5)
