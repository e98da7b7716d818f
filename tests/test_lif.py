"""ps.nn.LIF against the closed-form exponential-Euler solution, computed in numpy.

Between steps the input current is constant, so ``tau dV/dt = -(V - V_rest) + R I``
has the exact solution ``V(t + dt) = V_inf + (V(t) - V_inf) exp(-dt / tau)`` with
``V_inf = V_rest + R I``. The reference below applies it in float64 with the
reset rules of ps.nn.LIF (spike where ``V >= V_th``).
"""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def reference_lif(I_mA, *, dt_ms, tau_ms, R_ohm, V_th, V_reset, V_rest, reset):
    """Trajectory in mV (ohm * mA = mV) and spikes, float64, one step per input row."""
    V = np.full(I_mA.shape[1:], V_rest, dtype=np.float64)
    decay = np.exp(-dt_ms / tau_ms)
    Vs, spikes, closest = [], [], np.inf
    for current in I_mA.astype(np.float64):
        fired = V_th <= V
        V = V - (V_th - V_reset) * fired if reset == "soft" else np.where(fired, V_reset, V)
        V_inf = V_rest + R_ohm * current
        V = V_inf + (V - V_inf) * decay
        closest = min(closest, np.abs(V - V_th).min())
        Vs.append(V)
        spikes.append((V_th <= V).astype(np.float64))
    return np.stack(Vs), np.stack(spikes), closest


def run_lif(lif, currents, batch_size, dt):
    states = lif.init(batch_size=batch_size)

    @jax.jit
    def run(states, currents):
        def step(states, current):
            spk, states = lif(states, current)
            return states, (spk, states["V"].value)

        return jax.lax.scan(step, states, currents)

    with ps.environ.context(dt=dt):
        _, (spikes, Vs) = run(states, currents)
    return spikes, Vs


PARAMS = {
    "soft": dict(tau_ms=5.0, R_ohm=1.0, V_th=1.0, V_reset=0.0, V_rest=0.0),
    "hard": dict(tau_ms=8.0, R_ohm=2.0, V_th=1.0, V_reset=-0.3, V_rest=-0.1),
}


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_trajectory_matches_closed_form_exponential_euler(reset):
    p = PARAMS[reset]
    T, B, N = 400, 4, 5
    rng = np.random.default_rng(42)
    I_mA = rng.uniform(0.0, 3.0, size=(T, B, N)).astype(np.float32)

    lif = ps.nn.LIF(
        N,
        R=p["R_ohm"] * u.ohm,
        tau=p["tau_ms"] * u.ms,
        V_th=p["V_th"] * u.mV,
        V_reset=p["V_reset"] * u.mV,
        V_rest=p["V_rest"] * u.mV,
        spk_reset=reset,
    )
    spikes, Vs = run_lif(lif, jnp.asarray(I_mA) * u.mA, B, 0.1 * u.ms)
    V_ref, spk_ref, closest = reference_lif(I_mA, dt_ms=0.1, reset=reset, **p)
    # The comparison is well posed: no V of the reference sits on the threshold.
    assert closest > 2e-5

    assert isinstance(Vs, u.Quantity) and Vs.unit == u.mV
    np.testing.assert_allclose(np.asarray(Vs.mantissa), V_ref, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(np.asarray(spikes), spk_ref)
    assert spk_ref.sum() > 100  # the resets were exercised


def test_units_are_converted_not_assumed():
    """Currents in uA with R in kohm give the same trajectory as mA with ohm."""
    T, N = 200, 3
    I_mA = np.random.default_rng(1).uniform(0.0, 3.0, size=(T, N)).astype(np.float32)
    lif_ma = ps.nn.LIF(N, R=1.0 * u.ohm, tau=5 * u.ms)
    lif_ua = ps.nn.LIF(N, R=1.0 * u.kohm, tau=5000 * u.us)
    spk_a, _ = run_lif(lif_ma, jnp.asarray(I_mA) * u.mA, None, 0.1 * u.ms)
    spk_b, V_b = run_lif(lif_ua, jnp.asarray(I_mA) * u.uA, None, 100 * u.us)
    V_ref, spk_ref, _ = reference_lif(
        I_mA, dt_ms=0.1, tau_ms=5.0, R_ohm=1.0, V_th=1.0, V_reset=0.0, V_rest=0.0, reset="soft"
    )
    np.testing.assert_allclose(np.asarray(V_b.to_decimal(u.mV)), V_ref, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(spk_b), spk_ref)
    np.testing.assert_array_equal(np.asarray(spk_a), np.asarray(spk_b))


def test_seed_example_one_step():
    lif = ps.nn.LIF(3)
    states = lif.init(batch_size=4)
    assert states["V"].value.shape == (4, 3)
    with ps.environ.context(dt=0.1 * u.ms):
        spikes, states = lif(states, jnp.ones((4, 3)) * u.mA)
    np.testing.assert_array_equal(np.asarray(spikes), np.zeros((4, 3)))
    V = states["V"].value
    assert V.unit == u.mV
    np.testing.assert_allclose(
        np.asarray(V.mantissa), np.full((4, 3), 1 - np.exp(-0.02)), rtol=1e-6
    )


def test_state_shapes_dtype_and_start_value():
    lif = ps.nn.LIF((2, 3), V_rest=-65 * u.mV, V_th=-50 * u.mV, V_reset=-70 * u.mV)
    unbatched, batched = lif.init(), lif.init(batch_size=5)
    assert unbatched["V"].value.shape == (2, 3)
    assert batched["V"].value.shape == (5, 2, 3)
    assert type(batched["V"]) is ps.ShortTermState
    assert batched["V"].value.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(batched["V"].value.to_decimal(u.mV)), -65.0)


def test_surrogate_gradient_through_one_step():
    """d spike / d I after one step from rest: g((V1 - V_th) / span) * R (1 - e^{-dt/tau}) / span."""
    lif = ps.nn.LIF(1, tau=5 * u.ms, V_th=1 * u.mV, spk_fun=ps.surrogate.ReluGrad(0.3, 1.0))
    states = lif.init()

    def spike_of(i_ma):
        spk, _ = lif(states, jnp.reshape(i_ma, (1,)) * u.mA)
        return spk[0]

    with ps.environ.context(dt=0.1 * u.ms):
        for i_ma in [5.0, 30.0, 60.0]:
            got = float(jax.grad(spike_of)(i_ma))
            a = 1 - np.exp(-0.02)
            x = i_ma * a - 1.0
            expected = 0.3 * max(1.0 - abs(x), 0.0) * a
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)


def test_hard_reset_does_not_differentiate_through_the_jump():
    lif = ps.nn.LIF(1, spk_reset="hard", V_reset=0 * u.mV, spk_fun=ps.surrogate.ReluGrad())
    fired = {"V": ps.ShortTermState(jnp.asarray([1.2]) * u.mV)}

    def v_after(v0):
        _, new = lif({"V": ps.ShortTermState(jnp.reshape(v0, (1,)) * u.mV)}, jnp.zeros(1) * u.mA)
        return new["V"].value.mantissa[0]

    with ps.environ.context(dt=0.1 * u.ms):
        _, new = lif(fired, jnp.zeros(1) * u.mA)
        np.testing.assert_allclose(np.asarray(new["V"].value.mantissa), [0.0], atol=1e-7)
        # V_new = (V - (stop_grad(V) - V_reset) * spk(V)) * e, span = V_th - V_reset = 1 mV
        # => dV_new/dV0 = (1 - (V0 - V_reset) * g) * e: the surrogate path only, no -spk
        # term from differentiating the jump itself.
        e = np.exp(-0.02)
        v0 = 1.2
        g = 0.3 * max(1.0 - abs(v0 - 1.0), 0.0)
        np.testing.assert_allclose(float(jax.grad(v_after)(v0)), (1 - v0 * g) * e, rtol=1e-5)


def test_wrong_units_name_the_quantity():
    lif = ps.nn.LIF(3)
    states = lif.init()
    with ps.environ.context(dt=0.1 * u.ms):
        with pytest.raises(ps.nn.UnitError, match=r"current.*amperes.*mV"):
            lif(states, jnp.ones(3) * u.mV)
        with pytest.raises(TypeError, match=r"current.*no unit"):
            lif(states, jnp.ones(3))
    with pytest.raises(KeyError, match="'dt'"):
        lif(states, jnp.ones(3) * u.mA)
    with ps.environ.context(dt=0.1), pytest.raises(u.DimensionMismatchError, match="'dt'"):
        lif(states, jnp.ones(3) * u.mA)
    with ps.environ.context(dt=0.1 * u.mV), pytest.raises(ps.nn.UnitError, match=r"'dt'.*time"):
        lif(states, jnp.ones(3) * u.mA)
    with pytest.raises(ps.nn.UnitError, match="tau"):
        ps.nn.LIF(3, tau=5 * u.mV)
    with pytest.raises(ps.nn.UnitError, match="V_th"):
        ps.nn.LIF(3, V_th=1.0)
    with pytest.raises(ps.nn.UnitError, match="R"):
        ps.nn.LIF(3, R=1 * u.mA)
    with pytest.raises(ValueError, match="spk_reset"):
        ps.nn.LIF(3, spk_reset="sometimes")


def test_units_compile_away():
    """Under jit the step is a handful of array ops: no unit bookkeeping remains."""
    lif = ps.nn.LIF(3)
    states = lif.init(batch_size=2)
    with ps.environ.context(dt=0.1 * u.ms):
        jaxpr = jax.make_jaxpr(lif)(states, jnp.ones((2, 3)) * u.mA)
    assert len(jaxpr.jaxpr.eqns) < 25
    assert len(jaxpr.jaxpr.invars) == 2  # V and I mantissas only


def test_hashable_equal_and_immutable():
    assert ps.nn.LIF(3) == ps.nn.LIF(3)
    assert hash(ps.nn.LIF(3)) == hash(ps.nn.LIF(3))
    assert hash(ps.nn.LIF(3, tau=5 * u.ms)) != hash(ps.nn.LIF(3, tau=6 * u.ms))
    lif = ps.nn.LIF(3)
    with pytest.raises(AttributeError):
        lif.tau = 1 * u.ms


def test_seed_example_under_augment_vmap():
    """The tutorial's batched call: vmap over the batched V equals the batched call."""
    lif = ps.nn.LIF(3)
    states = lif.init(batch_size=4)
    x = jnp.linspace(1.0, 80.0, 12).reshape(4, 3) * u.mA
    with ps.environ.context(dt=0.1 * u.ms):
        spk_v, new_v = ps.augment.vmap(lif, in_states=ps.ShortTermState)(states, x)
        spk_b, new_b = lif(states, x)
    np.testing.assert_array_equal(np.asarray(spk_v), np.asarray(spk_b))
    assert spk_b.sum() > 0
    np.testing.assert_allclose(
        np.asarray(new_v["V"].value.mantissa), np.asarray(new_b["V"].value.mantissa), rtol=1e-6
    )
