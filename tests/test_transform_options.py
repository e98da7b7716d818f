"""Options of the transforms: static arguments of vmap/pmap, donated and
sharded arguments of jit, and jax.eval_shape on stateful functions and
module initialisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import purestate as ps

OPS = {"sin": jnp.sin, "cos": jnp.cos, "square": jnp.square}


def apply(states, x, op, n):
    """`op` (a name or a function) applied `n` times (Python control flow)."""
    fn = OPS[op] if isinstance(op, str) else op
    for _ in range(n):
        x = fn(x) * states["w"].value
    total = states["seen"].value + n
    return x, ps.set(states, "seen", total)


def states0():
    return {"w": ps.ParamState(jnp.float32(0.9)), "seen": ps.LongTermState(jnp.int32(0))}


def reference(xs, op, n):
    fn = OPS[op] if isinstance(op, str) else op

    def one(x):
        for _ in range(n):
            x = fn(x) * 0.9
        return x

    return jax.vmap(one)(xs)


XS = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)


# ----------------------------------------------------------- vmap / pmap statics


@pytest.mark.parametrize(("op", "n"), [("sin", 1), ("cos", 3), (jnp.tanh, 2), ("square", 0)])
def test_vmap_static_argnums_pass_python_objects_unmapped(op, n):
    out, new = ps.augment.vmap(apply, static_argnums=(1, 2))(states0(), XS, op, n)
    np.testing.assert_allclose(out, reference(XS, op, n), rtol=1e-6)
    assert int(new["seen"].value) == n
    assert type(new["seen"]) is ps.LongTermState


def test_vmap_static_argnums_negative_and_retrace_for_another_value():
    mapped = ps.augment.vmap(apply, static_argnums=(-2, -1))
    out1, _ = mapped(states0(), XS, "sin", 2)
    out2, _ = mapped(states0(), XS, "cos", 2)
    out3, _ = mapped(states0(), XS, "sin", 1)
    np.testing.assert_allclose(out1, reference(XS, "sin", 2), rtol=1e-6)
    np.testing.assert_allclose(out2, reference(XS, "cos", 2), rtol=1e-6)
    np.testing.assert_allclose(out3, reference(XS, "sin", 1), rtol=1e-6)


def test_vmap_static_argnames_for_keyword_arguments():
    def kw(states, x, *, op="sin", n=1, shift):
        out, states = apply(states, x, op, n)
        return out + shift, states

    shifts = jnp.arange(4.0)
    mapped = ps.augment.vmap(kw, static_argnames=("op", "n"))
    out, new = mapped(states0(), XS, op="cos", n=2, shift=shifts)  # shift: mapped keyword
    ref = reference(XS, "cos", 2) + shifts[:, None]
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert int(new["seen"].value) == 2
    out, _ = mapped(states0(), XS, op=jnp.tanh, n=1, shift=shifts)
    np.testing.assert_allclose(out, reference(XS, jnp.tanh, 1) + shifts[:, None], rtol=1e-6)


def test_vmap_static_argnums_with_in_axes_and_batched_states():
    def scaled(states, x, op, y):
        out, states = apply(states, x, op, 1)
        v = states["v"].value + out.sum() * y
        return out, ps.set(states, "v", v)

    states = {**states0(), "v": ps.ShortTermState(jnp.zeros((3,)))}
    y = jnp.float32(2.0)
    mapped = ps.augment.vmap(scaled, in_axes=(1, None, None), static_argnums=1, in_states="v")
    out, new = mapped(states, XS, "sin", y)
    ref = jax.vmap(lambda x: jnp.sin(x) * 0.9, in_axes=1)(XS)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    np.testing.assert_allclose(new["v"].value, ref.sum(axis=1) * 2.0, rtol=1e-5)


def test_pmap_static_argnums_and_argnames():
    n_dev = jax.device_count()
    assert n_dev == 4, "conftest.py forces 4 host devices"
    out, new = ps.augment.pmap(apply, static_argnums=(1, 2))(states0(), XS, "cos", 2)
    np.testing.assert_allclose(out, reference(XS, "cos", 2), rtol=1e-6)
    assert int(new["seen"].value) == 2

    def kw(states, x, op, *, n):
        return apply(states, x, op, n)

    pmapped = ps.augment.pmap(kw, static_argnums=1, static_argnames="n", axis_name="d")
    out, _ = pmapped(states0(), XS, jnp.tanh, n=3)
    np.testing.assert_allclose(out, reference(XS, jnp.tanh, 3), rtol=1e-6)
    out, _ = pmapped(states0(), XS, "sin", n=1)
    np.testing.assert_allclose(out, reference(XS, "sin", 1), rtol=1e-6)


# ------------------------------------------------------------------ jit options


def axpy(states, x, y):
    # Two outputs of the arguments' shape, so that both buffers can be reused.
    return (x * states["a"].value + y, y - x), states


def test_jit_donate_argnums_deletes_the_donated_argument_only():
    states = {"a": ps.ParamState(jnp.float32(3.0))}
    jitted = ps.compile.jit(axpy, donate_argnums=0)
    x, y = jnp.arange(4.0), jnp.ones(4)
    (out, diff), new = jitted(states, x, y)
    assert x.is_deleted()
    assert not y.is_deleted() and not states["a"].value.is_deleted()
    np.testing.assert_array_equal(out, 3.0 * np.arange(4.0) + 1.0)
    np.testing.assert_array_equal(diff, 1.0 - np.arange(4.0))
    assert float(new["a"].value) == 3.0


@pytest.mark.parametrize("donate", [-1, (1,), (0, 1), (-2,)], ids=["-1", "1", "0_1", "-2"])
def test_jit_donate_argnums_counts_args_after_states(donate):
    states = {"a": ps.ParamState(jnp.float32(2.0))}
    x, y = jnp.arange(4.0), jnp.full(4, 5.0)
    (out, _), _ = ps.compile.jit(axpy, donate_argnums=donate)(states, x, y)
    positions = {p % 2 for p in (donate if isinstance(donate, tuple) else (donate,))}
    assert x.is_deleted() == (0 in positions)
    assert y.is_deleted() == (1 in positions)
    assert not states["a"].value.is_deleted()
    np.testing.assert_array_equal(out, 2.0 * np.arange(4.0) + 5.0)


def _mesh():
    devices = jax.devices()
    assert len(devices) == 4, "conftest.py forces 4 host devices"
    return Mesh(np.array(devices), ("d",))


def layer(states, x, b):
    h = jnp.tanh(x @ states["w"].value + b)
    return (h, h.sum(axis=1)), ps.set(states, "calls", states["calls"].value + 1)


def layer_states():
    w = jax.random.normal(jax.random.key(1), (3, 5))
    return {"w": ps.ParamState(w), "calls": ps.LongTermState(jnp.int32(0))}


def test_jit_in_and_out_shardings_equal_the_unsharded_result():
    mesh = _mesh()
    rows, replicated = NamedSharding(mesh, P("d")), NamedSharding(mesh, P())
    x = jax.random.normal(jax.random.key(2), (8, 3))
    b = jnp.linspace(0.0, 1.0, 5)
    jitted = ps.compile.jit(
        layer, in_shardings=(rows, replicated), out_shardings=(rows, replicated)
    )
    (h, s), new = jitted(layer_states(), x, b)
    (ref_h, ref_s), ref_new = layer(layer_states(), x, b)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5)
    np.testing.assert_allclose(s, ref_s, rtol=1e-5)
    ps.testing.assert_trees_allclose(new, ref_new)
    assert h.sharding.is_equivalent_to(rows, h.ndim)
    assert len(h.addressable_shards) == 4
    assert {shard.data.shape for shard in h.addressable_shards} == {(2, 5)}
    assert s.sharding.is_equivalent_to(replicated, s.ndim)
    assert s.sharding.is_fully_replicated


def test_jit_out_shardings_as_one_sharding_for_the_whole_output():
    mesh = _mesh()
    rows = NamedSharding(mesh, P("d"))
    x = jax.random.normal(jax.random.key(3), (8, 3))
    b = jnp.zeros(5)
    (h, s), _ = ps.compile.jit(layer, out_shardings=rows)(layer_states(), x, b)
    (ref_h, ref_s), _ = layer(layer_states(), x, b)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5)
    np.testing.assert_allclose(s, ref_s, rtol=1e-5)
    assert h.sharding.is_equivalent_to(rows, h.ndim)
    assert s.sharding.is_equivalent_to(rows, s.ndim)


def test_jit_in_shardings_accept_arguments_placed_elsewhere():
    mesh = _mesh()
    cols = NamedSharding(mesh, P(None, "d"))
    x = jax.device_put(jax.random.normal(jax.random.key(4), (2, 8)), jax.devices()[1])

    def f(states, x):
        return x * states["a"].value, states

    states = {"a": ps.ParamState(jnp.float32(2.0))}
    out, _ = ps.compile.jit(f, in_shardings=cols, out_shardings=cols)(states, x)
    np.testing.assert_allclose(out, 2.0 * np.asarray(x), rtol=1e-6)
    assert out.sharding.is_equivalent_to(cols, 2)


# ------------------------------------------------------------------ eval_shape


def _is_state(x):
    return isinstance(x, ps.State)


def assert_shapes_of(abstract, concrete):
    """`abstract` holds ShapeDtypeStructs where `concrete` holds arrays, with
    the same state kinds and paths."""
    a_flat, c_flat = ps.flatten(abstract), ps.flatten(concrete)
    assert list(a_flat) == list(c_flat)
    for path, state in c_flat.items():
        assert type(a_flat[path]) is type(state), path
        a_leaves, c_leaves = jax.tree.leaves(a_flat[path].value), jax.tree.leaves(state.value)
        assert len(a_leaves) == len(c_leaves)
        for a, c in zip(a_leaves, c_leaves, strict=True):
            assert isinstance(a, jax.ShapeDtypeStruct), (path, a)
            assert (a.shape, a.dtype) == (c.shape, c.dtype), path


def test_eval_shape_of_a_stateful_function():
    states = {
        "lin": {"w": ps.ParamState(jnp.ones((3, 4))), "b": ps.ParamState(jnp.zeros(4))},
        "h": ps.ShortTermState(jnp.zeros((2, 4))),
        "steps": ps.LongTermState(jnp.int32(0)),
        "rng": ps.RandomState(jax.random.key(0)),
    }

    def f(states, x):
        key, states = ps.random.split(states, "rng")
        h = x @ states["lin"]["w"].value + states["lin"]["b"].value
        h = h + jax.random.normal(key, h.shape)
        new = ps.update(
            states,
            {"h": ps.ShortTermState(h), "steps": ps.LongTermState(states["steps"].value + 1)},
        )
        return h.mean(axis=0), new

    x = jnp.ones((2, 3))
    for fun in (f, ps.compile.jit(f)):
        out_shape, new_shapes = jax.eval_shape(fun, states, x)
        out, new = f(states, x)
        assert isinstance(out_shape, jax.ShapeDtypeStruct)
        assert (out_shape.shape, out_shape.dtype) == (out.shape, out.dtype)
        assert_shapes_of(new_shapes, new)


def test_eval_shape_through_a_scan_of_a_module():
    linear = ps.nn.Linear(3, 3)
    states = linear.init(jax.random.key(0))

    def run(states, xs):
        return ps.compile.scan(lambda s, x: linear(s, x), states, xs)

    xs = jnp.ones((7, 2, 3))
    ys_shape, new_shapes = jax.eval_shape(run, states, xs)
    ys, new = run(states, xs)
    assert (ys_shape.shape, ys_shape.dtype) == (ys.shape, ys.dtype) == ((7, 2, 3), ys.dtype)
    assert_shapes_of(new_shapes, new)


@pytest.mark.parametrize(
    "module",
    [ps.nn.Linear(3, 4), ps.nn.Sequential(ps.nn.Linear(3, 5), ps.nn.Linear(5, 2))],
    ids=["linear", "sequential"],
)
def test_eval_shape_of_module_init(module):
    key = jax.random.key(0)
    abstract = jax.eval_shape(module.init, key)
    concrete = module.init(key)
    assert_shapes_of(abstract, concrete)
    assert all(type(s) is ps.ParamState for s in ps.flatten(abstract).values())


def test_eval_shape_of_linear_init_gives_the_documented_layout():
    abstract = jax.eval_shape(ps.nn.Linear(3, 4).init, jax.random.key(1))
    assert set(abstract) == {"weight", "bias"}
    assert abstract["weight"].value.shape == (3, 4)
    assert abstract["bias"].value.shape == (4,)
    assert abstract["weight"].value.dtype == jnp.zeros(()).dtype
