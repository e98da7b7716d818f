"""Each ps.augment derivative equals the matching jax transform on the selected
subtree with the other states held fixed."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
from hypothesis import given

import purestate as ps

trees = ps.testing.state_trees(max_states=4, quantities=True, dict_values=True)


def value_of(states, x):
    """A smooth scalar of every float leaf (mantissas) and an argument."""
    leaves = [jnp.asarray(leaf, jnp.float32) for leaf in jax.tree.leaves(states)]
    total = sum(jnp.sum(jnp.sin(leaf) * (i + 1.0) * x) for i, leaf in enumerate(leaves))
    return total + x**2


def stateful(states, x):
    return value_of(states, x), states


def reference(transform, tree, sel, x, **kw):
    selected, rest = ps.split(tree, sel)
    plain = jax.tree.map(
        lambda v: v.mantissa if hasattr(v, "mantissa") else v,
        selected,
        is_leaf=lambda v: hasattr(v, "mantissa"),
    )

    def h(sub):
        back = jax.tree.map(
            lambda old, new: type(old)(new) if hasattr(old, "mantissa") else new,
            selected,
            sub,
            is_leaf=lambda v: hasattr(v, "mantissa"),
        )
        return value_of(ps.merge(back, rest), x)

    return transform(h, **kw)(plain)


@st.composite
def cases(draw):
    tree = draw(trees)
    sel = draw(ps.testing.selectors(tree).filter(lambda s: ps.flatten(ps.select(tree, s))))
    return tree, sel


@given(cases(), st.sampled_from(["grad", "jacrev", "jacfwd", "vector_grad"]))
def test_first_order_equals_jax(case, kind):
    tree, sel = case
    x = jnp.float32(0.7)
    ours, new_states = getattr(ps.augment, kind)(stateful, sel)(tree, x)
    ref_transform = {
        "grad": jax.grad,
        "jacrev": jax.jacrev,
        "jacfwd": jax.jacfwd,
        "vector_grad": jax.grad,
    }[kind]
    ps.testing.assert_trees_allclose(
        ours, reference(ref_transform, tree, sel, x), rtol=1e-4, atol=1e-5
    )
    ps.testing.assert_trees_allclose(new_states, tree)


@given(cases())
def test_hessian_equals_jax_and_jacfwd_of_grad(case):
    tree, sel = case
    x = jnp.float32(0.3)
    ours, _ = ps.augment.hessian(stateful, sel)(tree, x)
    ps.testing.assert_trees_allclose(
        ours, reference(jax.hessian, tree, sel, x), rtol=1e-4, atol=1e-5
    )
    nested, _ = ps.augment.jacfwd(ps.augment.grad(stateful, sel), sel)(tree, x)
    ps.testing.assert_trees_allclose(nested, ours, rtol=1e-4, atol=1e-5)


@given(cases())
def test_grad_with_argnums_equals_jax(case):
    tree, sel = case
    x = jnp.float32(0.5)
    (g_states, g_x), _ = ps.augment.grad(stateful, sel, argnums=0)(tree, x)
    ref_states = reference(jax.grad, tree, sel, x)
    ps.testing.assert_trees_allclose(g_states, ref_states, rtol=1e-4, atol=1e-5)
    ref_x = jax.grad(lambda y: value_of(tree, y))(x)
    ps.testing.assert_trees_allclose(g_x, ref_x, rtol=1e-4, atol=1e-5)
