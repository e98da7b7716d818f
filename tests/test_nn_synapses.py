"""ps.nn.ExpCurrentSynapse and ps.nn.ExpConductanceSynapse against the closed
form of ``tau dg/dt = -g`` (``g(t) = g(0) exp(-t / tau)``) and a float64
numpy loop of the jumps, and their unit checks."""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def scan(module, states, *xs, dt):
    @jax.jit
    def sim(states, xs):
        def step(states, x):
            out, states = module(states, *x)
            return states, out

        return jax.lax.scan(step, states, xs)

    with ps.environ.context(dt=dt):
        return sim(states, xs)


@pytest.mark.parametrize("tau_ms", [2.0, 5.0, 10.0])
def test_current_decay_is_the_closed_form(tau_ms):
    T, dt_ms = 400, 0.1
    syn = ps.nn.ExpCurrentSynapse(3, tau=tau_ms * u.ms)
    x = np.zeros((T, 3), np.float32)
    x[0] = [5.0, 200.0, 0.0]
    _, cur = scan(syn, syn.init(), jnp.asarray(x) * u.pA, dt=dt_ms * u.ms)
    assert cur.unit == u.pA
    t = np.arange(T) * dt_ms  # the jump at step 0, then n decays
    expected = x[0][None, :].astype(np.float64) * np.exp(-t / tau_ms)[:, None]
    np.testing.assert_allclose(np.asarray(cur.mantissa), expected, rtol=2e-5, atol=1e-9)


def test_conductance_decay_is_the_closed_form_and_current_follows_V():
    T, dt_ms, tau_ms = 300, 0.1, 5.0
    syn = ps.nn.ExpConductanceSynapse(2, tau=tau_ms * u.ms, E_rev=-80 * u.mV)
    g0 = np.asarray([6.0, 67.0], np.float32)
    x = np.zeros((T, 2), np.float32)
    x[0] = g0
    V = np.random.default_rng(0).uniform(-70, -50, size=(T, 2)).astype(np.float32)
    states, cur = scan(
        syn, syn.init(), jnp.asarray(x) * u.nS, jnp.asarray(V) * u.mV, dt=dt_ms * u.ms
    )
    g = g0[None, :].astype(np.float64) * np.exp(-np.arange(T) * dt_ms / tau_ms)[:, None]
    np.testing.assert_allclose(
        np.asarray(ps.get(states, "g").to_decimal(u.nS)), g[-1], rtol=2e-5, atol=1e-12
    )
    # nS * mV = pA
    np.testing.assert_allclose(
        np.asarray(cur.to_decimal(u.pA)), g * (-80.0 - V.astype(np.float64)), rtol=2e-5, atol=1e-6
    )


def test_jumps_add_to_the_decayed_value():
    """Random input trains against a float64 loop ``s = s exp(-dt/tau) + x``."""
    T, N, dt_ms, tau_ms = 500, 4, 0.1, 10.0
    rng = np.random.default_rng(1)
    x = (rng.random((T, 2, N)) < 0.05) * rng.uniform(0.5, 2.0, size=(T, 2, N))
    x = x.astype(np.float32)
    syn = ps.nn.ExpConductanceSynapse(N, tau=tau_ms * u.ms)
    states = syn.init(batch_size=2)
    assert states["g"].value.shape == (2, N) and type(states["g"]) is ps.ShortTermState
    V = jnp.full((T, 2, N), -60.0) * u.mV
    _, cur = scan(syn, states, jnp.asarray(x) * u.nS, V, dt=dt_ms * u.ms)
    decay, g, expected = np.exp(-dt_ms / tau_ms), np.zeros((2, N)), []
    for xt in x.astype(np.float64):
        g = g * decay + xt
        expected.append(g * 60.0)
    np.testing.assert_allclose(np.asarray(cur.to_decimal(u.pA)), np.stack(expected), rtol=1e-5)


def test_inputs_in_other_units_are_converted():
    syn = ps.nn.ExpConductanceSynapse(1, tau=5 * u.ms)
    with ps.environ.context(dt=0.1 * u.ms):
        _, a = syn(syn.init(), jnp.ones(1) * u.uS, jnp.zeros(1) * u.mV)
        _, b = syn(syn.init(), jnp.full(1, 1000.0) * u.nS, jnp.zeros(1) * u.mV)
    np.testing.assert_allclose(np.asarray(a["g"].value.mantissa), 1000.0)
    np.testing.assert_allclose(np.asarray(b["g"].value.mantissa), 1000.0)


def test_wrong_units_are_clear_errors():
    cond = ps.nn.ExpConductanceSynapse(2)
    cur = ps.nn.ExpCurrentSynapse(2)
    V = jnp.zeros(2) * u.mV
    with ps.environ.context(dt=0.1 * u.ms):
        with pytest.raises(ps.nn.UnitError, match=r"conductance in siemens.*got a Quantity in mV"):
            cond(cond.init(), jnp.ones(2) * u.mV, V)
        with pytest.raises(ps.nn.UnitError, match="conductance"):
            cond(cond.init(), jnp.ones(2), V)  # no unit
        with pytest.raises(ps.nn.UnitError, match="postsynaptic potential V"):
            cond(cond.init(), jnp.ones(2) * u.nS, jnp.zeros(2))
        with pytest.raises(ps.nn.UnitError, match=r"current in amperes.*got a Quantity in nS"):
            cur(cur.init(), jnp.ones(2) * u.nS)
    with pytest.raises(ps.nn.UnitError, match="tau must be a time"):
        ps.nn.ExpCurrentSynapse(2, tau=5 * u.mV)
    with pytest.raises(ps.nn.UnitError, match="E_rev must be a voltage"):
        ps.nn.ExpConductanceSynapse(2, E_rev=0 * u.nS)
    with pytest.raises(ps.nn.MissingSettingError, match="dt"):
        cur(cur.init(), jnp.ones(2) * u.pA)


def test_synapse_drives_a_lif_under_jit_and_grad():
    """Current from the synapse into ps.nn.LIF; d(total spikes)/d(weight) is finite."""
    syn = ps.nn.ExpCurrentSynapse(2, tau=5 * u.ms)
    lif = ps.nn.LIF(2, R=1 * u.Gohm, tau=10 * u.ms, V_th=10 * u.mV)

    def total(w):
        states = {"syn": syn.init(), "lif": lif.init()}

        def step(states, _):
            cur, s = syn(states["syn"], w * jnp.ones(2) * u.pA)
            spk, l_ = lif(states["lif"], cur)
            return {"syn": s, "lif": l_}, spk

        _, spikes = jax.lax.scan(step, states, None, length=200)
        return spikes.sum()

    with ps.environ.context(dt=0.1 * u.ms):
        count = jax.jit(total)(1.0)
        g = jax.grad(total)(1.0)
    assert float(count) > 0 and np.isfinite(float(g))
