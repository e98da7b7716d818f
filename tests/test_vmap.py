import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def foo(states):
    """The tutorial's Foo: b = a * b."""
    return None, ps.set(states, "b", states["a"].value * states["b"].value)


def foo_states():
    return {"a": ps.ParamState(jnp.arange(4)), "b": ps.ShortTermState(jnp.arange(4))}


def test_foo_raises_batch_axis_error_naming_b_and_out_states():
    with pytest.raises(ps.BatchAxisError) as info:
        ps.augment.vmap(foo, in_states="a")(foo_states())
    message = str(info.value)
    assert "'b'" in message and "out_states" in message and "'a'" not in message


def test_foo_works_with_out_states():
    _, new = ps.augment.vmap(foo, in_states="a", out_states="b")(foo_states())
    np.testing.assert_array_equal(new["b"].value, np.outer(np.arange(4), np.arange(4)))
    assert type(new["b"]) is ps.ShortTermState
    np.testing.assert_array_equal(new["a"].value, np.arange(4))


def test_batch_axis_error_lists_every_offending_state():
    def writes_two(states, x):
        return None, ps.update(
            states,
            {"p": ps.ShortTermState(states["p"].value + x), "q": {"r": ps.ShortTermState(x * 2)}},
        )

    states = {
        "p": ps.ShortTermState(0.0),
        "q": {"r": ps.ShortTermState(0.0)},
        "k": ps.ParamState(1.0),
    }
    with pytest.raises(ps.BatchAxisError, match="'p', 'q/r'"):
        ps.augment.vmap(writes_two)(states, jnp.ones(3))
    with pytest.raises(ps.BatchAxisError, match="'p', 'q/r'"):
        ps.augment.vmap(writes_two, axis_name="batch")(states, jnp.ones(3))


def test_seed_lif_states_batched_with_in_states():
    lif = ps.nn.LIF(3)
    states = lif.init(None, batch_size=4)
    x = jnp.ones((4, 3)) * u.mA
    with ps.environ.context(dt=0.1 * u.ms):
        spikes, new = ps.augment.vmap(lif, in_states=ps.ShortTermState)(states, x)
    np.testing.assert_array_equal(spikes, np.zeros((4, 3)))
    expected = (1 - np.exp(-0.1 / 5)) * np.ones((4, 3))  # R I (1 - e^{-dt/tau}) in mV
    np.testing.assert_allclose(new["V"].value.to_decimal(u.mV), expected, rtol=1e-5)


def test_matches_jax_vmap_with_axes_and_kwargs():
    def step(states, x, scale, *, shift):
        v = states["v"].value * scale + x + shift
        return v.sum(), ps.set(states, "v", v)

    v0 = jnp.arange(6.0).reshape(2, 3)
    x = jnp.arange(6.0).reshape(2, 3)
    shift = jnp.arange(3.0)
    out, new = ps.augment.vmap(step, in_axes=(1, None), in_states={1: "v"})(
        {"v": ps.ShortTermState(v0)}, x, 2.0, shift=shift
    )

    def raw(v, x, scale, shift):
        v = v * scale + x + shift
        return v.sum(), v

    ref_out, ref_v = jax.vmap(raw, in_axes=(1, 1, None, 0), out_axes=(0, 1))(v0, x, 2.0, shift)
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(new["v"].value, ref_v)


def test_random_states_are_split_per_lane_and_pure():
    def draw(states):
        return jax.random.uniform(states["rng"].value), states

    states = {"rng": ps.RandomState(jax.random.key(42))}
    out, new = ps.augment.vmap(draw, axis_size=4)(states)
    out_again, _new_again = ps.augment.vmap(draw, axis_size=4)(states)
    np.testing.assert_array_equal(out, out_again)  # a pure function of the states
    assert len(set(np.asarray(out).tolist())) == 4  # lanes draw differently
    # By hand: split once, fold the lane index into the first key.
    lane_base, next_key = jax.random.split(jax.random.key(42))
    by_hand = jnp.stack([jax.random.uniform(jax.random.fold_in(lane_base, i)) for i in range(4)])
    np.testing.assert_array_equal(out, by_hand)
    np.testing.assert_array_equal(
        jax.random.key_data(new["rng"].value), jax.random.key_data(next_key)
    )
    assert new["rng"].value.shape == ()


def test_random_key_advances_even_without_draws_and_raw_keys_work():
    states = {"rng": ps.RandomState(jax.random.PRNGKey(0))}
    _, new = ps.augment.vmap(lambda s, x: (x, s))(states, jnp.ones(2))
    np.testing.assert_array_equal(new["rng"].value, jax.random.split(jax.random.PRNGKey(0))[1])


@pytest.mark.parametrize(
    ("kwargs", "call", "match"),
    [
        (dict(in_axes=(0, 0)), lambda f, s: f(s, jnp.ones(3)), "in_axes has 2 entries"),
        (dict(in_states="a"), lambda f, s: f(s, jnp.ones(3)), r"'a': 4"),
        (dict(in_axes=None), lambda f, s: f(s, jnp.ones(3)), "axis_size"),
        (dict(in_states={1: "a"}), lambda f, s: f(s, jnp.ones(4)), r"'a' \(rank 1, axis 1\)"),
    ],
)
def test_bad_input_is_a_clear_batch_axis_error(kwargs, call, match):
    f = ps.augment.vmap(lambda s, x: (x, s), **kwargs)
    with pytest.raises(ps.BatchAxisError, match=match):
        call(f, foo_states())


def test_composes_with_grad_and_jit():
    def loss(states, x):
        return jnp.sum((x @ states["w"].value) ** 2), states

    states = {"w": ps.ParamState(jnp.ones((2, 3)))}
    xs = jnp.arange(8.0).reshape(4, 2)
    per_example = ps.compile.jit(ps.augment.vmap(ps.augment.grad(loss, ps.ParamState), in_axes=0))
    grads, _ = per_example(states, xs)
    ref = jax.vmap(jax.grad(lambda w, x: jnp.sum((x @ w) ** 2)), in_axes=(None, 0))(
        states["w"].value, xs
    )
    np.testing.assert_allclose(grads["w"].value, ref, rtol=1e-6)


def test_pytree_in_axes_and_out_axes_match_jax_vmap():
    def step(states, inputs):
        y = inputs["a"] * states["w"].value + inputs["b"]
        return {"y": y, "mean": jnp.mean(inputs["b"])}, states

    inputs = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(2)}
    states = {"w": ps.ParamState(jnp.float32(2.0))}
    in_axes = ({"a": 1, "b": None},)
    out_axes = {"y": 1, "mean": None}
    out, _ = ps.augment.vmap(step, in_axes=in_axes, out_axes=out_axes)(states, inputs)
    ref = jax.vmap(lambda i: step(states, i)[0], in_axes=in_axes, out_axes=out_axes)(inputs)
    ps.testing.assert_trees_allclose(out, ref)
