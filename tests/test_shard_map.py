"""ps.augment.shard_map: errors, the decorator form, random keys, ps.environ,
and a LIF population split along its neuron axis.

Runs on the 4 forced host devices of conftest.py. Each result is compared
with the same computation on the global arrays without sharding (plain JAX,
or the purestate function called directly). Random trees, specs and the
compositions with jit, grad and scan are in
property_tests/test_shard_map_props.py.
"""

from __future__ import annotations

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import purestate as ps


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return Mesh(np.array(jax.devices()[:4]), ("x",))


def sharded(fun, mesh, **options):
    options.setdefault("in_specs", P("x"))
    options.setdefault("out_specs", P())
    return ps.augment.shard_map(fun, mesh=mesh, **options)


# ------------------------------------------------------------ the results ---


def test_outside_jit_equals_plain_jax_on_the_global_arrays(mesh):
    """Called directly (no jit): a split weight matrix, a split and a
    replicated state, against the same arithmetic in plain JAX."""

    def step(states, x):
        w, v, gain = (states[k].value for k in ("w", "v", "gain"))
        y = x @ w  # (2, 8) @ (8, 12) with w's rows and x's columns split over x
        y = jax.lax.psum(y, "x")
        new_v = v * 0.5 + w.sum(0)  # v, w's column sums: per shard of w's rows
        new_v = jax.lax.psum(new_v - v * 0.5, "x") + v * 0.5
        return y * gain, ps.set(states, "v", new_v)

    w = jnp.arange(96.0).reshape(8, 12) / 96
    states = {
        "w": ps.ParamState(w),
        "v": ps.ShortTermState(jnp.ones(12)),
        "gain": ps.ParamState(jnp.float32(2.0)),
    }
    x = jnp.linspace(-1, 1, 16).reshape(2, 8)
    fun = sharded(step, mesh, in_specs=P(None, "x"), state_specs={"w": P("x")})
    y, new = fun(states, x)

    np.testing.assert_allclose(y, (x @ w) * 2.0, rtol=1e-5)
    np.testing.assert_allclose(ps.get(new, "v"), 0.5 + w.sum(0), rtol=1e-5)
    np.testing.assert_array_equal(ps.get(new, "w"), w)
    assert ps.get(new, "w").sharding.is_equivalent_to(NamedSharding(mesh, P("x")), 2)
    assert type(ps.flatten(new)[("w",)]) is ps.ParamState


def test_decorator_form(mesh):
    @ps.augment.shard_map(
        mesh=mesh, in_specs=P("x"), out_specs=P("x"), state_specs={ps.ShortTermState: P("x")}
    )
    def leak(states, x):
        v = 0.9 * states["v"].value + x
        return v * 2, ps.set(states, "v", v)

    assert leak.__name__ == "leak"
    states = {"v": ps.ShortTermState(jnp.arange(8.0))}
    out, new = leak(states, jnp.ones(8))
    np.testing.assert_allclose(ps.get(new, "v"), 0.9 * jnp.arange(8.0) + 1)
    np.testing.assert_allclose(out, 2 * (0.9 * jnp.arange(8.0) + 1))


def test_a_lif_population_split_along_its_neurons_fires_as_unsplit(mesh):
    """ps.nn.LIF's state is a brainunit Quantity; split over 4 devices, 50
    steps under jit and scan spike exactly as the unsplit population."""
    n, steps = 64, 50
    lif = ps.nn.LIF(n)
    currents = jax.random.uniform(jax.random.key(1), (steps, n), minval=0.0, maxval=40.0)

    def run(states, currents):
        def step(states, current):
            return lif(states, current * u.mA)

        return ps.compile.scan(step, states, currents)

    in_shards = ps.augment.shard_map(
        run, mesh=mesh, in_specs=P(None, "x"), out_specs=P(None, "x"), state_specs={"V": P("x")}
    )
    with ps.environ.context(dt=0.1 * u.ms):
        spikes, new = ps.compile.jit(in_shards)(lif.init(), currents)
        ref_spikes, ref_new = ps.compile.jit(run)(lif.init(), currents)

    assert float(ref_spikes.sum()) > 10  # the population fires
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert u.get_unit(ps.get(new, "V")) == u.mV
    np.testing.assert_allclose(
        u.get_mantissa(ps.get(new, "V")), u.get_mantissa(ps.get(ref_new, "V")), rtol=1e-6
    )


# ------------------------------------------------------------- the errors ---


def writes(states, x):
    """Writes 'per_shard' with its shard's sum (differs between shards) and
    'total' with the psum (equal on every shard); 'split' is split."""
    local = x.sum()
    new = ps.set(states, "per_shard", states["per_shard"].value + local)
    new = ps.set(new, "total", states["total"].value + jax.lax.psum(local, "x"))
    new = ps.set(new, "split", states["split"].value + x)
    return local[None], new


def error_states():
    return {
        "per_shard": ps.ShortTermState(jnp.zeros(())),
        "total": ps.ShortTermState(jnp.zeros(())),
        "split": ps.ShortTermState(jnp.zeros(8)),
        "untouched": ps.ParamState(jnp.ones(3)),
    }


@pytest.mark.parametrize("jitted", [False, True])
def test_a_state_written_per_shard_but_declared_replicated_is_named(mesh, jitted):
    fun = sharded(writes, mesh, out_specs=P("x"), state_specs={"split": P("x")})
    if jitted:
        fun = ps.compile.jit(fun)
    with pytest.raises(ps.BatchAxisError, match="per_shard") as info:
        fun(error_states(), jnp.arange(8.0))
    message = str(info.value)
    for fine in ("total", "'split'", "untouched"):
        assert fine not in message, message
    assert "state_specs" in message  # says how to fix it
    assert isinstance(info.value, ValueError)


def test_every_state_written_per_shard_is_named(mesh):
    def writes_two(states, x):
        local = x.sum()
        return None, {k: s.replace(s.value + local) for k, s in states.items()}

    states = {k: ps.ShortTermState(jnp.zeros(())) for k in ("a", "b")}
    with pytest.raises(ps.BatchAxisError, match="'a'.*'b'"):
        sharded(writes_two, mesh, out_specs=None)(states, jnp.arange(8.0))


def test_declaring_the_state_split_accepts_the_same_writes(mesh):
    """The fix the message suggests: give 'per_shard' a spec. A scalar cannot
    be split, so it becomes one value per shard, shape (4,) globally."""
    states = {**error_states(), "per_shard": ps.ShortTermState(jnp.zeros(4))}
    fun = sharded(writes, mesh, out_specs=P("x"), state_specs={("split", "per_shard"): P("x")})

    local, new = fun(states, jnp.arange(8.0))
    np.testing.assert_allclose(local, [1.0, 5.0, 9.0, 13.0])  # shard sums of 0..7
    np.testing.assert_allclose(ps.get(new, "per_shard"), [1.0, 5.0, 9.0, 13.0])
    np.testing.assert_allclose(ps.get(new, "total"), 28.0)
    np.testing.assert_allclose(ps.get(new, "split"), jnp.arange(8.0))


@pytest.mark.parametrize("selector", ["nope", "per_shard/deeper", ps.LongTermState])
def test_a_selector_matching_nothing_is_a_state_error(mesh, selector):
    fun = sharded(writes, mesh, out_specs=P("x"), state_specs={selector: P("x")})
    with pytest.raises(ps.StateError, match="matches no state|not in the tree") as info:
        fun(error_states(), jnp.arange(8.0))
    assert "state_specs" in str(info.value)
    assert "'per_shard'" in str(info.value)  # lists the paths there are


def test_a_spec_naming_an_axis_the_mesh_lacks_is_a_state_error(mesh):
    with pytest.raises(ps.StateError, match=r"\['y'\]"):
        sharded(writes, mesh, state_specs={"split": P("y")})


def test_state_specs_takes_partition_specs_only(mesh):
    with pytest.raises(TypeError, match="PartitionSpec"):
        sharded(writes, mesh, state_specs={"split": "x"})


def test_mesh_must_be_a_mesh():
    with pytest.raises(TypeError, match="Mesh"):
        ps.augment.shard_map(writes, mesh=jax.devices(), in_specs=P(), out_specs=P())


# ---------------------------------------------------------- random states ---


def draw(states, x):
    key, states = ps.random.split(states)
    return jax.random.normal(key, (2,)) + 0 * x.sum(), states


def test_a_replicated_random_state_gives_every_shard_the_same_key(mesh):
    """Observed behaviour: a RandomState outside state_specs is replicated, so
    ps.random.split returns the same key on every shard and every shard
    draws the same numbers: those of the unsharded call. It comes back
    advanced once, as after the unsharded call (unlike ps.augment.vmap, which
    splits RandomStates per lane)."""
    states = {"rng": ps.RandomState(jax.random.key(0))}
    out, new = sharded(draw, mesh, out_specs=P("x"))(states, jnp.zeros(8))
    ref_out, ref_new = draw(states, jnp.zeros(8))

    per_shard = np.asarray(out).reshape(4, 2)
    for shard in per_shard:
        np.testing.assert_array_equal(shard, ref_out)
    np.testing.assert_array_equal(
        jax.random.key_data(ps.get(new, "rng")), jax.random.key_data(ps.get(ref_new, "rng"))
    )
    assert isinstance(ps.flatten(new)[("rng",)], ps.RandomState)


def test_draws_differ_between_shards_after_folding_in_the_shard_index(mesh):
    """Per-shard randomness: fold the shard's index into the common key."""

    def per_shard_draw(states, x):
        key, states = ps.random.split(states)
        key = jax.random.fold_in(key, jax.lax.axis_index("x"))
        return jax.random.normal(key, (2,)) + 0 * x.sum(), states

    states = {"rng": ps.RandomState(jax.random.key(0))}
    out, new = sharded(per_shard_draw, mesh, out_specs=P("x"))(states, jnp.zeros(8))
    key, _ = ps.random.split(states)
    expected = [jax.random.normal(jax.random.fold_in(key, i), (2,)) for i in range(4)]
    np.testing.assert_array_equal(np.asarray(out).reshape(4, 2), np.stack(expected))
    assert len({tuple(row) for row in np.asarray(out).reshape(4, 2).tolist()}) == 4
    _, ref_new = draw(states, jnp.zeros(8))
    np.testing.assert_array_equal(
        jax.random.key_data(ps.get(new, "rng")), jax.random.key_data(ps.get(ref_new, "rng"))
    )


def test_a_random_state_advanced_per_shard_is_named(mesh):
    def keeps_per_shard_key(states, x):
        key = jax.random.fold_in(states["rng"].value, jax.lax.axis_index("x"))
        return x, ps.set(states, "rng", key)

    states = {"rng": ps.RandomState(jax.random.key(0)), "v": ps.ShortTermState(jnp.zeros(8))}
    with pytest.raises(ps.BatchAxisError, match="'rng'") as info:
        sharded(keeps_per_shard_key, mesh, out_specs=P("x"), state_specs={"v": P("x")})(
            states, jnp.zeros(8)
        )
    assert "'v'" not in str(info.value)


# ------------------------------------------------------------ ps.environ ---


def leaky(states, x):
    dt = ps.environ.get("dt")
    v = states["v"].value + x * dt
    return jax.lax.psum(v.sum(), "x"), ps.set(states, "v", v)


@pytest.mark.parametrize("jitted", [False, True])
def test_environ_settings_read_inside_retrace_when_changed(mesh, jitted):
    fun = sharded(leaky, mesh, state_specs={"v": P("x")})
    if jitted:
        fun = ps.compile.jit(fun)
    states = {"v": ps.ShortTermState(jnp.zeros(8))}
    for dt in (0.1, 0.25, 0.1, 0.5):
        with ps.environ.context(dt=dt):
            total, new = fun(states, jnp.ones(8))
        np.testing.assert_allclose(total, 8 * dt, rtol=1e-6)
        np.testing.assert_allclose(ps.get(new, "v"), jnp.full(8, dt), rtol=1e-6)
    with pytest.raises(KeyError, match="dt"):
        fun(states, jnp.ones(8))


def test_a_traced_setting_is_an_input_not_baked_in(mesh):
    """jax.grad over dt, read inside the sharded function: d(total)/d(dt) =
    sum(x) = 8, and the trace is not reused with a stale value."""
    fun = sharded(leaky, mesh, state_specs={"v": P("x")})
    states = {"v": ps.ShortTermState(jnp.zeros(8))}

    def total(dt):
        with ps.environ.context(dt=dt):
            return fun(states, jnp.ones(8))[0]

    assert float(jax.grad(total)(0.3)) == pytest.approx(8.0)
    assert float(total(0.3)) == pytest.approx(2.4)
