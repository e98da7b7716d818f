"""ps.compile loops and cond agree with Python loops / `if` over the same
stateful function, and jit agrees with eager execution, on random trees."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
from hypothesis import given

import purestate as ps

trees = ps.testing.state_trees(max_states=4, quantities=True, dict_values=True)


def decay(states, x):
    """Every float leaf decays towards x; returns the sum of the mantissas."""
    new = jax.tree.map(lambda v: 0.9 * v + 0.1 * x, states)
    total = sum(jnp.sum(leaf) for leaf in jax.tree.leaves(new))
    return total, new


def python_loop(states, xs):
    ys = []
    for x in xs:
        y, states = decay(states, x)
        ys.append(y)
    return jnp.stack(ys), states


@given(trees, st.integers(1, 5))
def test_scan_and_for_loop_equal_a_python_loop(tree, n):
    xs = jnp.linspace(-1.0, 1.0, n)
    ref_ys, ref_states = python_loop(tree, xs)
    ys, states = ps.compile.scan(decay, tree, xs)
    ps.testing.assert_trees_allclose((ys, states), (ref_ys, ref_states), rtol=1e-5, atol=1e-5)
    ys2, states2 = ps.compile.for_loop(decay, tree, xs)
    ps.testing.assert_trees_allclose((ys2, states2), (ref_ys, ref_states), rtol=1e-5, atol=1e-5)


@given(trees, st.integers(0, 4))
def test_while_loop_equals_a_python_while(tree, n):
    def body(states, i):
        _, states = decay(states, 1.0)
        return i + 1, states

    i, states = ps.compile.while_loop(lambda s, i: i < n, body, tree, 0)
    ref, j = tree, 0
    while j < n:
        j, ref = body(ref, j)
    assert int(i) == j
    ps.testing.assert_trees_allclose(states, ref, rtol=1e-5, atol=1e-5)


@given(trees, st.booleans())
def test_cond_equals_python_if(tree, pred):
    def keep(states, x):
        return jnp.float32(0.0) + x, states

    out, states = ps.compile.cond(pred, decay, keep, tree, 0.5)
    ref_out, ref_states = decay(tree, 0.5) if pred else keep(tree, 0.5)
    ps.testing.assert_trees_allclose((out, states), (ref_out, ref_states), rtol=1e-5, atol=1e-5)


# One jitted function for every example: the trees Hypothesis draws one after
# another (other keys, kinds, nesting, shapes) must never be served a trace
# cached for an earlier layout.
shared_jit_decay = ps.compile.jit(decay)


@given(trees)
def test_jit_equals_eager(tree):
    out, states = shared_jit_decay(tree, 0.25)
    ref_out, ref_states = decay(tree, 0.25)
    ps.testing.assert_trees_allclose((out, states), (ref_out, ref_states), rtol=1e-5, atol=1e-5)
