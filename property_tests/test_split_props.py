"""Laws of select / split / merge over random trees and random selectors."""

import hypothesis.strategies as st
import jax.numpy as jnp
from hypothesis import given

import purestate as ps

trees = ps.testing.state_trees(
    max_states=8,
    dtypes=(jnp.float32, jnp.int32, jnp.bool_),
    quantities=True,
    dict_values=True,
)


def chosen(tree, selector):
    return set(ps.flatten(ps.select(tree, selector)))


def by_hand(tree, selector):
    """The paths a selector picks, computed from the selector forms' definitions."""
    compiled = ps._selectors.as_selector(selector)
    return {p for p, s in ps.flatten(tree).items() if compiled.matches(p, s)}


@given(st.data())
def test_merge_of_split_rebuilds_the_tree(data):
    tree = data.draw(trees)
    sels = data.draw(st.lists(ps.testing.selectors(tree), max_size=3))
    merged = ps.merge(*ps.split(tree, *sels))
    flat, again = ps.flatten(tree), ps.flatten(merged)
    assert list(flat) == list(again)
    assert all(flat[p] is again[p] for p in flat)


@given(st.data())
def test_every_state_lands_in_the_first_matching_part(data):
    tree = data.draw(trees)
    sels = data.draw(st.lists(ps.testing.selectors(tree), max_size=3))
    parts = [set(ps.flatten(p)) for p in ps.split(tree, *sels)]
    for path in ps.flatten(tree):
        homes = [i for i, part in enumerate(parts) if path in part]
        assert len(homes) == 1
        matching = [i for i, s in enumerate(sels) if path in by_hand(tree, s)]
        assert homes[0] == (matching[0] if matching else len(sels))


@given(st.data())
def test_not_partitions_the_tree(data):
    tree = data.draw(trees)
    sel = data.draw(ps.testing.selectors(tree))
    picked, unpicked = chosen(tree, sel), chosen(tree, ps.Not(sel))
    assert picked.isdisjoint(unpicked)
    assert picked | unpicked == set(ps.flatten(tree))


@given(st.data())
def test_all_and_any_obey_the_set_laws(data):
    tree = data.draw(trees)
    a, b, c = (data.draw(ps.testing.selectors(tree)) for _ in range(3))
    A, B, C = chosen(tree, a), chosen(tree, b), chosen(tree, c)
    everything = set(ps.flatten(tree))
    assert chosen(tree, ps.All(a, b)) == A & B
    assert chosen(tree, ps.Any(a, b)) == A | B
    assert chosen(tree, (a, b)) == A | B
    assert chosen(tree, ps.All(a, ps.Any(b, c))) == A & (B | C)  # distributive
    assert chosen(tree, ps.Not(ps.Any(a, b))) == everything - (A | B)  # De Morgan
    assert chosen(tree, ps.Not(ps.All(a, b))) == everything - (A & B)
    assert chosen(tree, ps.All()) == everything
    assert chosen(tree, ps.Any()) == set()


@given(st.data())
def test_a_tree_used_as_a_selector_selects_exactly_its_paths(data):
    tree = data.draw(trees)
    sub = data.draw(ps.testing.subtrees(tree))
    assert chosen(tree, sub) == set(ps.flatten(sub))
    assert chosen(tree, tree) == set(ps.flatten(tree))


@given(st.data())
def test_select_is_split_first_part_and_order_is_sorted(data):
    tree = data.draw(trees)
    sel = data.draw(ps.testing.selectors(tree))
    selected = ps.select(tree, sel)
    assert list(ps.flatten(selected)) == sorted(by_hand(tree, sel))


@given(st.data())
def test_update_with_a_selected_part_is_identity(data):
    tree = data.draw(trees)
    sel = data.draw(ps.testing.selectors(tree))
    updated = ps.update(tree, ps.select(tree, sel))
    assert ps.flatten(updated) == ps.flatten(tree)
