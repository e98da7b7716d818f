"""Control flow on random state trees agrees with Python: scan with a plain
carry, checkpointed loops (values and gradients), bounded_while_loop, switch,
ifelse and map."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings

import purestate as ps

trees = ps.testing.state_trees(max_states=3)

# The heavier properties (a gradient per example) run half as many examples
# as the loaded profile asks for.
fewer = settings(max_examples=max(1, settings.default.max_examples // 2))


def decay(states, x):
    """Every leaf decays towards x; returns the sum of the new leaves."""
    new = jax.tree.map(lambda v: 0.9 * v + 0.1 * x, states)
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(new)), new


def python_loop(body, states, xs, reverse=False):
    ys = [None] * len(xs)
    for i in reversed(range(len(xs))) if reverse else range(len(xs)):
        ys[i], states = body(states, xs[i])
    return jnp.stack(ys), states


def close(a, b):
    ps.testing.assert_trees_allclose(a, b, rtol=1e-5, atol=1e-5)


@given(trees, st.integers(1, 6), st.booleans(), st.floats(-1.0, 1.0, width=32))
def test_scan_with_init_equals_a_python_loop(tree, n, reverse, c0):
    def body(states, c, x):
        total, states = decay(states, x + c)
        return (0.5 * c + 0.01 * total, total * c), states

    xs = jnp.linspace(-1.0, 1.0, n)
    (c, ys), new = ps.compile.scan(body, tree, xs, reverse=reverse, init=jnp.float32(c0))

    carry = jnp.float32(c0)

    def python_body(states, x):
        nonlocal carry
        (carry, y), states = body(states, carry, x)
        return y, states

    ref_ys, ref_new = python_loop(python_body, tree, xs, reverse)
    close((c, ys, new), (carry, ref_ys, ref_new))


block_sizes = st.one_of(st.none(), st.integers(1, 10))


@fewer
@given(trees, st.integers(1, 8), block_sizes, st.booleans())
def test_checkpointed_loops_equal_a_python_loop_in_value_and_gradient(tree, n, block, for_loop):
    xs = jnp.linspace(-1.0, 1.0, n)
    scales = jnp.linspace(0.5, 1.5, n)

    def body(states, x, scale):
        return decay(states, x * scale)

    def run(states):
        if for_loop:
            return ps.compile.checkpointed_for_loop(body, states, xs, scales, block_size=block)
        return ps.compile.checkpointed_scan(
            lambda s, xz: body(s, *xz), states, (xs, scales), block_size=block
        )

    def python(states):
        return python_loop(lambda s, xz: body(s, *xz), states, list(zip(xs, scales, strict=True)))

    ys, new = run(tree)
    ref_ys, ref_new = python(tree)
    close((ys, new), (ref_ys, ref_new))

    def loss(states):
        ys, states = run(states)
        return jnp.sum(ys**2), states

    grads, _ = ps.augment.grad(loss, ...)(tree)
    ref_grads = jax.grad(lambda t: jnp.sum(python(t)[0] ** 2))(tree)
    ps.testing.assert_trees_allclose(grads, ref_grads, rtol=1e-4, atol=1e-4)


@given(trees, st.integers(0, 12), st.integers(0, 12), st.integers(2, 5))
def test_bounded_while_loop_runs_min_of_the_condition_and_max_steps(tree, n, max_steps, base):
    def body(states, i):
        _, states = decay(states, 1.0)
        return i + 1, states

    i, new = ps.compile.bounded_while_loop(
        lambda s, i: i < n, body, tree, 0, max_steps=max_steps, base=base
    )
    ref, j = tree, 0
    while j < min(n, max_steps):
        j, ref = body(ref, j)
    assert int(i) == j
    close(new, ref)


def scaled_by(k):
    def branch(states, x):
        new = jax.tree.map(lambda v: v * k + x, states)
        return jnp.float32(k) * x, new

    return branch


BRANCHES = [scaled_by(0.5), decay, scaled_by(-1.0)]


@given(trees, st.integers(-4, 6), st.floats(-2.0, 2.0, width=32))
def test_switch_equals_clamped_python_indexing(tree, index, x):
    def float_out(branch):
        def wrapped(states, x):
            out, states = branch(states, x)
            return jnp.asarray(out, jnp.float32), states

        return wrapped

    branches = [float_out(b) for b in BRANCHES]
    out, new = ps.compile.switch(index, branches, tree, jnp.float32(x))
    ref = branches[min(max(index, 0), len(branches) - 1)](tree, jnp.float32(x))
    close((out, new), ref)


@given(trees, st.lists(st.booleans(), max_size=3), st.booleans())
def test_ifelse_takes_the_first_true_condition(tree, conditions, as_arrays):
    branches = [scaled_by(float(k + 1)) for k in range(len(conditions) + 1)]
    given_conditions = [jnp.asarray(c) for c in conditions] if as_arrays else conditions
    out, new = ps.compile.ifelse(given_conditions, branches, tree, jnp.float32(0.5))
    taken = next((k for k, c in enumerate(conditions) if c), len(conditions))
    close((out, new), branches[taken](tree, jnp.float32(0.5)))


@given(trees, st.integers(1, 9), st.one_of(st.none(), st.integers(1, 10)))
def test_map_equals_lax_map(tree, n, batch_size):
    def read(states, x):
        total = sum(jnp.sum(leaf) for leaf in jax.tree.leaves(states))
        return {"y": total * x["a"] + x["b"], "n": x["b"] * 2}, states

    xs = {"a": jnp.linspace(-1.0, 1.0, n), "b": jnp.arange(n, dtype=jnp.float32)}
    ys, new = ps.compile.map(read, tree, xs, batch_size=batch_size)
    ref = jax.lax.map(lambda x: read(tree, x)[0], xs, batch_size=batch_size)
    close(ys, ref)
    close(new, tree)
    np.testing.assert_array_equal(ys["n"], 2 * np.arange(n))
