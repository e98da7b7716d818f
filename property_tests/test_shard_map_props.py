"""ps.augment.shard_map equals the unsharded function on the global arrays.

Random state trees on the 4 forced host devices (conftest.py), over a mesh of
shape (4,) or (2, 2), with random choices of which states are split along
which array axis over which mesh axes (``state_specs``), and of how the
argument and the output are split (``in_specs`` / ``out_specs``). The sharded
function reduces with ``jax.lax.psum`` over the mesh axes a value is split
over; the reference is the same computation written in plain JAX on the
global arrays, without purestate or sharding. Also composed with
`ps.compile.jit`, `ps.augment.grad` (against ``jax.grad`` of the unsharded
function) and `ps.compile.scan` (outside and inside the sharded function).
"""

from __future__ import annotations

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import purestate as ps

# Every array axis is 4 or 8 long, so any mesh axis (2 or 4 devices), or two
# of them together, divides it.
trees = ps.testing.state_trees(
    max_states=4,
    max_depth=2,
    shapes=st.sampled_from([(4,), (8,), (4, 8), (8, 4)]),
    kinds=(ps.ParamState, ps.ShortTermState),
)
X_SHAPE = (4, 8)
STEPS = 3


def make_mesh(shape: tuple[int, ...]) -> Mesh:
    names = ("x",) if len(shape) == 1 else ("a", "b")
    return Mesh(np.array(jax.devices()[:4]).reshape(shape), names)


@st.composite
def specs(draw: st.DrawFn, mesh: Mesh, ndim: int) -> P:
    """A PartitionSpec for an array of `ndim` axes: each array axis unsplit,
    split over one mesh axis, or (2-D mesh) over both; no mesh axis twice."""
    free = list(mesh.axis_names)
    entries: list = []
    for _ in range(ndim):
        choices: list = [None, *free]
        if len(free) == 2:
            choices += [tuple(free), tuple(reversed(free))]
        entry = draw(st.sampled_from(choices))
        used = () if entry is None else entry if isinstance(entry, tuple) else (entry,)
        free = [a for a in free if a not in used]
        entries.append(entry)
    while entries and entries[-1] is None:  # P('a', None) is P('a')
        entries.pop()
    return P(*entries)


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    tree = draw(trees)
    mesh = make_mesh(draw(st.sampled_from([(4,), (2, 2)])))
    flat = ps.flatten(tree)
    state_specs = {path: draw(specs(mesh, state.value.ndim)) for path, state in flat.items()}
    x_spec = draw(specs(mesh, len(X_SHAPE)))
    # Selectors: the states of one spec together (a tuple of '/'-joined
    # paths is a union), or each alone; replicated states unnamed or P().
    grouped = draw(st.booleans())
    selectors: dict = {}
    for path, spec in state_specs.items():
        if spec == P() and draw(st.booleans()):
            continue
        key = spec if grouped else path
        selectors.setdefault(key, (spec, []))[1].append("/".join(path))
    named = {tuple(paths): spec for spec, paths in selectors.values()}
    return tree, mesh, state_specs, named, x_spec


def axes_of(spec: P) -> tuple[str, ...]:
    axes: list[str] = []
    for entry in spec:
        if entry is not None:
            axes.extend(entry if isinstance(entry, tuple) else (entry,))
    return tuple(axes)


def global_sum(local: jax.Array, spec: P) -> jax.Array:
    """The sum over the global array of which `local` is one shard."""
    axes = axes_of(spec)
    return jax.lax.psum(local.sum(), axes) if axes else local.sum()


# The computation, twice: per shard with collectives, and on global arrays.


def step_sharded(state_specs: dict, x_spec: P):
    """``(out, total), states``: every state's sum and the argument's feed a
    scalar `total`; split states move elementwise towards it, replicated
    ParamStates by it, replicated ShortTermStates are left alone."""

    def step(states, x):
        flat = ps.flatten(states)
        total = global_sum(x, x_spec)
        for path, state in flat.items():
            total = total + 0.1 * global_sum(jnp.sin(state.value), state_specs[path])
        new = {}
        for path, state in flat.items():
            if state_specs[path] != P():
                new[path] = state.replace(jnp.tanh(0.5 * state.value + 0.1 * total))
            elif isinstance(state, ps.ParamState):
                new[path] = state.replace(state.value * 0.9 + 0.01 * total)
            else:
                new[path] = state
        return (x * 2.0 + total, total), ps.unflatten(new)

    return step


def step_reference(values: dict, kinds: dict, split: dict, x: jax.Array):
    """`step_sharded` on the global arrays, in plain JAX."""
    total = x.sum()
    for v in values.values():
        total = total + 0.1 * jnp.sin(v).sum()
    new = {}
    for path, v in values.items():
        if split[path]:
            new[path] = jnp.tanh(0.5 * v + 0.1 * total)
        elif kinds[path] is ps.ParamState:
            new[path] = v * 0.9 + 0.01 * total
        else:
            new[path] = v
    return (x * 2.0 + total, total), new


def assert_close(actual, desired, rtol: float = 1e-5, err_msg: str = "") -> None:
    """float32 sums taken in another order: errors scale with the largest value."""
    desired = np.asarray(desired)
    atol = rtol * (1.0 + float(np.max(np.abs(desired), initial=0.0)))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)


def raw(tree: dict) -> tuple[dict, dict, dict]:
    flat = ps.flatten(tree)
    return {p: s.value for p, s in flat.items()}, {p: type(s) for p, s in flat.items()}, flat


def x_of(seed: int = 0) -> jax.Array:
    return jnp.linspace(-1.0, 1.0, int(np.prod(X_SHAPE))).reshape(X_SHAPE) * (1 + 0.1 * seed)


def sharded_step(case: tuple):
    _, mesh, state_specs, named, x_spec = case
    return ps.augment.shard_map(
        step_sharded(state_specs, x_spec),
        mesh=mesh,
        in_specs=x_spec,
        out_specs=(x_spec, P()),
        state_specs=named,
    )


def assert_states_equal(new: dict, expected: dict, kinds: dict) -> None:
    flat = ps.flatten(new)
    assert set(flat) == set(expected)
    for path, want in expected.items():
        assert type(flat[path]) is kinds[path], path
        assert_close(flat[path].value, want, err_msg=str(path))


@given(cases())
def test_shard_map_equals_the_unsharded_function(case):
    tree, mesh, state_specs, _, x_spec = case
    # Under ps.compile.jit: jax.shard_map outside jit runs op by op, about ten
    # times slower here (tests/test_shard_map.py calls it outside jit too).
    (out, total), new = ps.compile.jit(sharded_step(case))(tree, x_of())

    values, kinds, _ = raw(tree)
    split = {p: s != P() for p, s in state_specs.items()}
    (ref_out, ref_total), ref_new = step_reference(values, kinds, split, x_of())
    assert_close(out, ref_out)
    assert_close(total, ref_total)
    assert_states_equal(new, ref_new, kinds)
    # The states come back split as their spec says, the output as out_specs.
    for path, state in ps.flatten(new).items():
        want = NamedSharding(mesh, state_specs[path])
        assert state.value.sharding.is_equivalent_to(want, state.value.ndim), path
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, x_spec), out.ndim)


def has_params(case: tuple) -> bool:
    return any(isinstance(s, ps.ParamState) for s in ps.flatten(case[0]).values())


@given(cases().filter(has_params))
def test_grad_of_shard_map_equals_jax_grad_of_the_unsharded_function(case):
    tree, mesh, state_specs, named, x_spec = case
    flat = ps.flatten(tree)

    def loss_sharded(states, x):
        (out, total), states = step_sharded(state_specs, x_spec)(states, x)
        # The output is split like x: its global sum of squares.
        return global_sum(out**2, x_spec) + total, states

    loss = ps.augment.shard_map(
        loss_sharded, mesh=mesh, in_specs=x_spec, out_specs=P(), state_specs=named
    )
    grad_fn = ps.compile.jit(ps.augment.grad(loss, ps.ParamState, return_value=True))
    (grads, value), new = grad_fn(tree, x_of())

    values, kinds, _ = raw(tree)
    split = {p: s != P() for p, s in state_specs.items()}
    params = [p for p in values if kinds[p] is ps.ParamState]

    def loss_reference(chosen: dict) -> jax.Array:
        (out, total), _ = step_reference({**values, **chosen}, kinds, split, x_of())
        return (out**2).sum() + total

    chosen = {p: values[p] for p in params}
    ref_value, ref_grads = jax.value_and_grad(loss_reference)(chosen)
    assert_close(value, ref_value)
    flat_grads = ps.flatten(grads)
    assert set(flat_grads) == set(params)
    for p in params:
        assert type(flat_grads[p]) is ps.ParamState
        assert_close(flat_grads[p].value, ref_grads[p], rtol=1e-4, err_msg=str(p))
    # new_states are the states after the forward pass.
    _, ref_new = step_reference(values, kinds, split, x_of())
    assert_states_equal(new, ref_new, {p: type(s) for p, s in flat.items()})


def reference_loop(tree: dict, state_specs: dict, xs: jax.Array):
    values, kinds, _ = raw(tree)
    split = {p: s != P() for p, s in state_specs.items()}
    totals = []
    for x in xs:
        (_, total), values = step_reference(values, kinds, split, x)
        totals.append(total)
    return jnp.stack(totals), values, kinds


@given(cases(), st.sampled_from(["scan of shard_map", "shard_map of scan"]))
def test_shard_map_composes_with_scan_under_jit(case, order):
    tree, mesh, state_specs, named, x_spec = case
    xs = jnp.stack([x_of(i) for i in range(STEPS)])
    step = step_sharded(state_specs, x_spec)

    def only_total(states, x):
        (_, total), states = step(states, x)
        return total, states

    if order == "scan of shard_map":
        sharded = ps.augment.shard_map(
            only_total, mesh=mesh, in_specs=x_spec, out_specs=P(), state_specs=named
        )

        def run(states, xs):
            return ps.compile.scan(sharded, states, xs)

    else:

        def run_per_shard(states, xs):
            return ps.compile.scan(only_total, states, xs)

        run = ps.augment.shard_map(
            run_per_shard,
            mesh=mesh,
            in_specs=P(None, *x_spec),  # the time axis is not split
            out_specs=P(),
            state_specs=named,
        )
    totals, new = ps.compile.jit(run)(tree, xs)

    ref_totals, ref_values, kinds = reference_loop(tree, state_specs, xs)
    assert_close(totals, ref_totals)
    assert_states_equal(new, ref_values, kinds)
