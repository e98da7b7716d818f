import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def tree():
    return {
        "lif": {"V": ps.ShortTermState(jnp.zeros(3) * u.mV)},
        "linear": {"weight": ps.ParamState(jnp.ones((2, 3))), "bias": ps.ParamState(jnp.zeros(3))},
        "rng": ps.RandomState(jnp.zeros(2, jnp.uint32)),
    }


def test_flatten_is_sorted_and_unflatten_inverts_it():
    flat = ps.flatten(tree())
    assert list(flat) == [
        ("lif", "V"),
        ("linear", "bias"),
        ("linear", "weight"),
        ("rng",),
    ]
    assert list(flat) == sorted(flat)
    again = ps.flatten(ps.unflatten(flat))
    assert list(again) == list(flat)
    assert all(again[p] is flat[p] for p in flat)


def test_unflatten_accepts_string_paths():
    t = ps.unflatten({"a/b": ps.ParamState(1.0)})
    assert list(t) == ["a"] and list(t["a"]) == ["b"]


def test_unflatten_rejects_a_path_that_is_both_state_and_subtree():
    with pytest.raises(ps.StateError, match="a/b"):
        ps.unflatten({("a",): ps.ParamState(1.0), ("a", "b"): ps.ParamState(1.0)})


def test_empty_dicts_hold_no_states():
    assert ps.flatten({"a": {}, "b": {"c": {}}}) == {}


def test_get_and_set():
    t = tree()
    np.testing.assert_array_equal(ps.get(t, "linear/bias"), np.zeros(3))
    np.testing.assert_array_equal(ps.get(t, ("linear", "bias")), np.zeros(3))
    new = ps.set(t, "linear/bias", jnp.full(3, 2.0))
    np.testing.assert_array_equal(ps.get(new, "linear/bias"), np.full(3, 2.0))
    np.testing.assert_array_equal(ps.get(t, "linear/bias"), np.zeros(3))  # unchanged
    assert type(new["linear"]["bias"]) is ps.ParamState
    assert new["lif"] is t["lif"]  # untouched subtrees are shared


def test_raw_array_leaf_is_a_type_error_naming_the_path_and_a_wrapper():
    bad = {"layer": {"w": jnp.ones(3)}}
    for op in (ps.flatten, ps.summary, lambda t: ps.select(t, ...), lambda t: ps.merge(t)):
        with pytest.raises(TypeError, match="layer/w") as info:
            op(bad)
        assert "ps.ParamState" in str(info.value)


def test_other_non_state_leaves_are_rejected_too():
    with pytest.raises(TypeError, match="'x'"):
        ps.flatten({"x": 3})
    with pytest.raises(TypeError, match="a/b"):
        ps.split({"a": {"b": [ps.ParamState(1.0)]}}, ps.ParamState)


def test_non_str_key_is_rejected_naming_where():
    with pytest.raises(TypeError, match="str keys") as info:
        ps.flatten({"layer": {0: ps.ParamState(1.0)}})
    assert "'layer'" in str(info.value)
    with pytest.raises(TypeError, match="str keys"):
        ps.split({1: ps.ParamState(1.0)}, ps.ParamState)


def test_get_unknown_path_is_a_key_error_with_close_matches():
    with pytest.raises(KeyError) as info:
        ps.get(tree(), "linear/weigth")
    message = str(info.value)
    assert "linear/weigth" in message and "'linear/weight'" in message


def test_get_of_a_subtree_says_so():
    with pytest.raises(KeyError, match="subtree"):
        ps.get(tree(), "linear")


def test_set_unknown_path_is_a_key_error():
    with pytest.raises(KeyError, match="lif/U"):
        ps.set(tree(), "lif/U", 1.0)


def test_summary_lists_every_state_with_totals():
    text = ps.summary(tree())
    lines = text.splitlines()
    assert lines[0].split() == ["path", "kind", "shape", "dtype", "unit", "size"]
    row = {line.split()[0]: line.split() for line in lines[2:] if line.strip()}
    assert row["linear/weight"][1:4] == ["ParamState", "(2,", "3)"]
    assert "mV" in row["lif/V"]
    assert row["linear/weight"][-1] == "6"
    assert lines[-1].startswith("4 states, 14 values")


def test_summary_of_pytree_valued_state():
    text = ps.summary({"p": ps.ParamState({"a": jnp.ones(2), "b": jnp.ones((2, 2))})})
    assert "2 arrays" in text and text.splitlines()[-1].startswith("1 state, 6 values")
