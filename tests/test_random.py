"""ps.random.split: one fresh key out, the tree with that RandomState advanced."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def _data(key):
    return (
        np.asarray(jax.random.key_data(key))
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        else np.asarray(key)
    )


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "raw"])
def test_split_matches_jax_random_split_by_hand(make_key):
    k0 = make_key(7)
    states = {"model": {"rng": ps.RandomState(k0)}, "w": ps.ParamState(jnp.ones(2))}
    key, new = ps.random.split(states)

    advanced, fresh = jax.random.split(k0)
    np.testing.assert_array_equal(_data(key), _data(fresh))
    np.testing.assert_array_equal(_data(ps.get(new, "model/rng")), _data(advanced))
    assert key.dtype == k0.dtype and key.shape == k0.shape
    # Everything else is untouched; the input tree is not modified.
    assert new["w"] is states["w"]
    np.testing.assert_array_equal(_data(ps.get(states, "model/rng")), _data(k0))
    assert type(new["model"]["rng"]) is ps.RandomState


def test_successive_splits_give_distinct_keys_and_are_deterministic():
    states = {"rng": ps.RandomState(jax.random.key(0))}
    keys = []
    for _ in range(5):
        key, states = ps.random.split(states)
        keys.append(tuple(_data(key)))
    assert len(set(keys)) == 5
    again, _ = ps.random.split({"rng": ps.RandomState(jax.random.key(0))})
    assert tuple(_data(again)) == keys[0]


def test_split_under_jit_equals_eager():
    states = {"rng": ps.RandomState(jax.random.key(3))}
    k_eager, s_eager = ps.random.split(states)
    k_jit, s_jit = jax.jit(ps.random.split)(states)
    np.testing.assert_array_equal(_data(k_eager), _data(k_jit))
    np.testing.assert_array_equal(_data(s_eager["rng"].value), _data(s_jit["rng"].value))


def test_path_picks_one_of_several():
    states = {
        "a": {"rng": ps.RandomState(jax.random.key(1))},
        "b": ps.RandomState(jax.random.key(2)),
    }
    key, new = ps.random.split(states, "a/rng")
    np.testing.assert_array_equal(_data(key), _data(jax.random.split(jax.random.key(1))[1]))
    assert new["b"] is states["b"]
    key_b, _ = ps.random.split(states, ("b",))
    np.testing.assert_array_equal(_data(key_b), _data(jax.random.split(jax.random.key(2))[1]))


def test_several_random_states_without_path_names_them():
    states = {
        "a": {"rng": ps.RandomState(jax.random.key(1))},
        "b": ps.RandomState(jax.random.key(2)),
    }
    with pytest.raises(ps.StateError, match=r"'a/rng'.*'b'"):
        ps.random.split(states)


def test_no_random_state_is_a_state_error():
    with pytest.raises(ps.StateError, match="no RandomState"):
        ps.random.split({"w": ps.ParamState(1.0)})


def test_path_to_a_non_random_state_or_unknown_path():
    states = {"w": ps.ParamState(1.0), "rng": ps.RandomState(jax.random.key(0))}
    with pytest.raises(ps.StateError, match=r"'w'.*ParamState"):
        ps.random.split(states, "w")
    with pytest.raises(KeyError, match="rgn"):
        ps.random.split(states, "rgn")


def test_random_state_holding_a_non_key():
    with pytest.raises(ps.StateError, match="'rng'"):
        ps.random.split({"rng": ps.RandomState(jnp.zeros(3))})
