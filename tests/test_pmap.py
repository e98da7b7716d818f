import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

N = jax.local_device_count()


def test_four_host_devices():
    assert N == 4, "conftest.py forces 4 host CPU devices"


def test_pmap_with_in_states_and_pmean_matches_jax_pmap():
    def step(states, x):
        v = states["v"].value + x
        mean = jax.lax.pmean(v, "i")
        return mean, ps.update(states, {"v": ps.ShortTermState(v), "avg": ps.LongTermState(mean)})

    v0 = jnp.arange(8.0).reshape(4, 2)
    x = jnp.ones((4, 2))
    states = {"v": ps.ShortTermState(v0), "avg": ps.LongTermState(jnp.zeros(2))}
    out, new = ps.augment.pmap(step, in_states="v", axis_name="i")(states, x)
    ref = jax.pmap(lambda v, x: jax.lax.pmean(v + x, "i"), axis_name="i")(v0, x)
    np.testing.assert_allclose(out, ref)
    np.testing.assert_allclose(new["v"].value, v0 + 1)
    np.testing.assert_allclose(new["avg"].value, ref[0])  # replicated, returned unbatched


def test_pmap_detects_undeclared_per_device_states():
    def foo(states):
        return None, ps.set(states, "b", states["a"].value * states["b"].value)

    states = {"a": ps.ParamState(jnp.arange(4)), "b": ps.ShortTermState(jnp.arange(4))}
    with pytest.raises(ps.BatchAxisError, match="'b'"):
        ps.augment.pmap(foo, in_states="a")(states)
    _, new = ps.augment.pmap(foo, in_states="a", out_states="b")(states)
    np.testing.assert_array_equal(new["b"].value, np.outer(np.arange(4), np.arange(4)))


def test_pmap_random_keys_per_device():
    def draw(states, x):
        return jax.random.normal(states["rng"].value) + 0 * x, states

    states = {"rng": ps.RandomState(jax.random.key(1))}
    out, _ = ps.augment.pmap(draw)(states, jnp.zeros(N))
    lane_base, _ = jax.random.split(jax.random.key(1))
    by_hand = [jax.random.normal(jax.random.fold_in(lane_base, i)) for i in range(N)]
    np.testing.assert_allclose(out, by_hand, rtol=1e-6)


def test_pmap_rejects_negative_axes_that_jax_pmap_mishandles():
    with pytest.raises(ps.BatchAxisError, match="negative"):
        ps.augment.pmap(lambda s, x: (x, s), in_states={-1: ps.ParamState})
