"""`check_new_states` accepts exactly the trees with the same paths and kinds,
checked against a path -> kind map built with `ps.flatten`."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import purestate as ps
from purestate._stateful import call_stateful, check_new_states


def kinds(tree: dict) -> dict:
    return {path: type(state) for path, state in ps.flatten(tree).items()}


def rebuilt(tree: dict) -> dict:
    """Same layout, new dicts and new State objects."""
    return {k: rebuilt(v) if isinstance(v, dict) else v.replace(v.value) for k, v in tree.items()}


@given(ps.testing.state_trees(), ps.testing.state_trees())
def test_accepts_iff_same_paths_and_kinds(old, new):
    for candidate in (new, rebuilt(old)):
        if kinds(old) == kinds(candidate):
            check_new_states(old, candidate, "f")
        else:
            with pytest.raises(ps.StateError):
                check_new_states(old, candidate, "f")


@given(ps.testing.state_trees(min_states=2), st.data())
def test_names_rekinded_and_missing_paths(tree, data):
    paths = sorted(ps.flatten(tree))
    path = data.draw(st.sampled_from(paths))
    flat = dict(ps.flatten(tree))
    old_state = flat[path]
    other = ps.LongTermState if type(old_state) is not ps.LongTermState else ps.ParamState
    flat[path] = other(old_state.value)
    with pytest.raises(ps.StateError, match="re-kinded"):
        check_new_states(tree, ps.unflatten(flat), "f")
    del flat[path]
    with pytest.raises(ps.StateError, match="missing"):
        check_new_states(tree, ps.unflatten(flat), "f")


def test_empty_subtree_is_tolerated_as_before():
    tree = {"a": ps.ParamState(1.0)}
    check_new_states(tree, {"a": ps.ParamState(2.0), "b": {}}, "f")


def test_raw_array_in_new_states_is_a_type_error():
    tree = {"a": ps.ParamState(1.0)}
    with pytest.raises(TypeError, match="'a'"):
        call_stateful(lambda s: (None, {"a": jnp.ones(())}), tree)
