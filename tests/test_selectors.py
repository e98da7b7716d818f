import jax.numpy as jnp
import pytest

import purestate as ps


class Synapse(ps.ShortTermState):
    pass


def tree():
    return {
        "encoder": {"weight": ps.ParamState(jnp.ones((2, 2))), "bias": ps.ParamState(jnp.zeros(2))},
        "decoder": {"weight": ps.ParamState(jnp.ones((2, 2)))},
        "lif": {"V": ps.ShortTermState(jnp.zeros(2)), "g": Synapse(jnp.zeros(2))},
        "count": ps.LongTermState(jnp.zeros(())),
    }


def paths(t):
    return sorted("/".join(p) for p in ps.flatten(t))


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (ps.ParamState, ["decoder/weight", "encoder/bias", "encoder/weight"]),
        (ps.ShortTermState, ["lif/V", "lif/g"]),  # subclasses count
        (Synapse, ["lif/g"]),
        ("lif/V", ["lif/V"]),
        ("encoder", ["encoder/bias", "encoder/weight"]),  # a prefix selects the subtree
        ("*/weight", ["decoder/weight", "encoder/weight"]),
        ("*", ["count", "decoder/weight", "encoder/bias", "encoder/weight", "lif/V", "lif/g"]),
        ("*er", ["decoder/weight", "encoder/bias", "encoder/weight"]),
        (lambda path, state: state.value.ndim == 2, ["decoder/weight", "encoder/weight"]),
        ({"lif": {"V": None}, "count": None}, ["count", "lif/V"]),
        (("lif/V", ps.LongTermState), ["count", "lif/V"]),
        (["lif/V", "decoder"], ["decoder/weight", "lif/V"]),
        (..., ["count", "decoder/weight", "encoder/bias", "encoder/weight", "lif/V", "lif/g"]),
        (None, []),
        (ps.Not(ps.ParamState), ["count", "lif/V", "lif/g"]),
        (ps.All(ps.ParamState, "*/weight"), ["decoder/weight", "encoder/weight"]),
        (ps.Any("count", Synapse), ["count", "lif/g"]),
        (ps.All(), ["count", "decoder/weight", "encoder/bias", "encoder/weight", "lif/V", "lif/g"]),
        (ps.Any(), []),
    ],
)
def test_every_selector_form(selector, expected):
    assert paths(ps.select(tree(), selector)) == expected


def test_glob_is_case_sensitive_and_anchored():
    assert paths(ps.select(tree(), "LIF")) == []
    assert paths(ps.select(tree(), "ncoder")) == []


def test_split_first_selector_wins_and_rest_is_last():
    w, params, rest = ps.split(tree(), "*/weight", ps.ParamState)
    assert paths(w) == ["decoder/weight", "encoder/weight"]
    assert paths(params) == ["encoder/bias"]
    assert paths(rest) == ["count", "lif/V", "lif/g"]


def test_split_prunes_empty_subtrees():
    (params, rest) = ps.split(tree(), ps.ParamState)
    assert "lif" not in params and "encoder" not in rest


def test_merge_of_split_is_the_same_tree_with_identical_states():
    t = tree()
    merged = ps.merge(*ps.split(t, ps.ShortTermState, "encoder"))
    flat, again = ps.flatten(t), ps.flatten(merged)
    assert list(flat) == list(again)
    assert all(flat[p] is again[p] for p in flat)


def test_merge_of_overlapping_trees_names_the_path():
    with pytest.raises(ps.StateError, match="encoder/bias"):
        ps.merge(tree(), {"encoder": {"bias": ps.ParamState(jnp.ones(2))}})
    with pytest.raises(ValueError, match="'lif'"):
        ps.merge(tree(), {"lif": ps.ShortTermState(0.0)})


def test_update_overwrites_and_keeps_everything_else():
    t = tree()
    new = ps.update(t, {"lif": {"V": ps.ShortTermState(jnp.ones(2))}})
    assert float(ps.get(new, "lif/V").sum()) == 2.0
    assert new["encoder"] is t["encoder"]
    assert float(ps.get(t, "lif/V").sum()) == 0.0


def test_update_unknown_path_is_a_key_error_with_close_matches():
    with pytest.raises(KeyError) as info:
        ps.update(tree(), {"lif": {"v": ps.ShortTermState(jnp.ones(2))}})
    assert "lif/v" in str(info.value) and "'lif/V'" in str(info.value)


def test_update_may_not_change_a_kind():
    with pytest.raises(ps.StateError, match="lif/V"):
        ps.update(tree(), {"lif": {"V": ps.ParamState(jnp.ones(2))}})


@pytest.mark.parametrize("bad", [3, 2.5, object(), int, ps.ParamState(1.0)])
def test_unsupported_selector_is_a_type_error_listing_the_forms(bad):
    with pytest.raises(TypeError) as info:
        ps.select(tree(), bad)
    message = str(info.value)
    for form in ("State subclass", "glob", "callable", "state tree", "tuple", "...", "ps.Not"):
        assert form in message


def test_tree_selector_with_unknown_paths_is_an_error():
    with pytest.raises(ps.StateError, match="lif/U"):
        ps.select(tree(), {"lif": {"U": ps.ShortTermState(0.0)}})


def test_predicate_selectors_see_current_values_not_a_stale_cache():
    def big(path, state):
        return float(state.value.sum()) > 1

    t = {"a": ps.ParamState(jnp.zeros(2))}
    assert paths(ps.select(t, big)) == []
    t2 = ps.set(t, "a", jnp.ones(2))
    assert paths(ps.select(t2, big)) == ["a"]


def test_cached_decisions_follow_kind_changes_at_the_same_path():
    t1 = {"a": ps.ParamState(1.0)}
    t2 = {"a": ps.ShortTermState(1.0)}
    assert paths(ps.select(t1, ps.ParamState)) == ["a"]
    assert paths(ps.select(t2, ps.ParamState)) == []
