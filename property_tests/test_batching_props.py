"""ps.augment.vmap / pmap equal plain jax.vmap / jax.pmap on random trees with
random choices of batched states and axes."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given

import purestate as ps

B = 4  # = the number of forced host devices, so pmap runs the same cases

trees = ps.testing.state_trees(
    max_states=4,
    shapes=st.sampled_from([(2,), (2, 3), (3, 2)]),
    kinds=(ps.ParamState, ps.ShortTermState),
)


def update(value, x):
    return jnp.tanh(value * 0.5 + x)


@st.composite
def cases(draw):
    tree = draw(trees)
    flat = ps.flatten(tree)
    batched = {p: draw(st.sampled_from([None, 0, 1, -1])) for p in flat}
    x_axis = draw(st.sampled_from([0, 1, None]))
    out_axis = draw(st.sampled_from([0, 1]))
    return tree, batched, x_axis, out_axis


def insert_batch(value, axis, seed):
    """A batched version of `value` with B lanes on `axis`."""
    lanes = jnp.stack([value + 0.1 * (i + seed) for i in range(B)])
    return jnp.moveaxis(lanes, 0, axis % (value.ndim + 1))


def run_case(transform, tree, batched, x_axis, out_axis, axis_name=None):
    flat = ps.flatten(tree)
    inputs = {
        p: s if batched[p] is None else s.replace(insert_batch(s.value, batched[p], i))
        for i, (p, s) in enumerate(flat.items())
    }
    states = ps.unflatten(inputs)
    x = jnp.linspace(-1, 1, B * 2).reshape((B, 2) if x_axis != 1 else (2, B))
    in_states = {}
    for p, axis in batched.items():
        if axis is not None:
            in_states.setdefault(axis, []).append("/".join(p))

    def f(states, x):
        x_sum = jnp.sum(x) if axis_name is None else jax.lax.psum(jnp.sum(x), axis_name)
        new = {
            p: s.replace(update(s.value, jnp.sum(x))) if batched[p] is not None else s
            for p, s in ps.flatten(states).items()
        }
        return x * 2 + x_sum, ps.unflatten(new)

    mapped = transform(
        f,
        in_axes=x_axis,
        out_axes=out_axis,
        in_states={a: tuple(ps_) for a, ps_ in in_states.items()},
        axis_name=axis_name,
        axis_size=B if x_axis is None and not in_states else None,
    )
    out, new = mapped(states, x)

    # Reference: the same computation with plain jax on raw arrays.
    paths = list(flat)
    raw_in = [inputs[p].value for p in paths]
    axes = [batched[p] for p in paths]

    def raw(values, x):
        x_sum = jnp.sum(x) if axis_name is None else jax.lax.psum(jnp.sum(x), axis_name)
        new_vals = [
            update(v, jnp.sum(x)) if a is not None else v
            for v, a in zip(values, axes, strict=False)
        ]
        return x * 2 + x_sum, new_vals

    jax_transform = jax.vmap if transform is ps.augment.vmap else jax.pmap
    ref_out, ref_vals = jax_transform(
        raw,
        in_axes=(axes, x_axis),
        out_axes=(out_axis, [a for a in axes]),
        axis_name=axis_name,
        **({"axis_size": B} if x_axis is None and not in_states else {}),
    )(raw_in, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    for p, ref in zip(paths, ref_vals, strict=False):
        np.testing.assert_allclose(ps.get(new, p), ref, rtol=1e-5, atol=1e-6)
        assert type(ps.flatten(new)[p]) is type(flat[p])


@given(cases(), st.sampled_from([None, "batch"]))
def test_vmap_equals_jax_vmap(case, axis_name):
    run_case(ps.augment.vmap, *case, axis_name=axis_name)


@given(cases())
def test_pmap_equals_jax_pmap(case):
    _tree, batched, x_axis, _ = case
    # jax.pmap needs a mapped argument even with axis_size.
    assume(x_axis is not None or any(a is not None for a in batched.values()))
    # jax.pmap (JAX 0.10) mis-shards negative axes; ps.augment.pmap rejects them.
    assume(all(a is None or a >= 0 for a in batched.values()))
    run_case(ps.augment.pmap, *case, axis_name="devices")


@given(trees)
def test_undeclared_batched_writes_are_always_reported(tree):
    paths = sorted("/".join(p) for p in ps.flatten(tree))

    def writes_everything(states, x):
        return None, jax.tree.map(lambda v: v + jnp.sum(x), states)

    try:
        ps.augment.vmap(writes_everything)(tree, jnp.ones((B, 2)))
    except ps.BatchAxisError as error:
        assert all(f"'{p}'" in str(error) for p in paths)
    else:
        raise AssertionError("no BatchAxisError")
