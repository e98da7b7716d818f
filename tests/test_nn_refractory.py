"""ps.nn.LIF with a refractory period against a numpy loop written with a
last-spike time, in float64.

The reference neuron spikes at step ``n`` when its integrated ``V >= V_th``,
records ``last = n``, is reset at the next step, and does not integrate while
``n - last <= n_ref`` with ``n_ref = round(tau_ref / dt)``.
"""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def reference_lif_ref(I_mA, *, dt_ms, tau_ms, R_ohm, V_th, V_reset, V_rest, reset, n_ref):
    """Spikes (T, ...) and V (T, ...), with a last-spike time per neuron."""
    V = np.full(I_mA.shape[1:], V_rest, dtype=np.float64)
    last = np.full(I_mA.shape[1:], -(10**9))
    pending = np.zeros(I_mA.shape[1:], dtype=bool)  # spiked at the last step
    decay = np.exp(-dt_ms / tau_ms)
    n_ref = np.broadcast_to(n_ref, V.shape)
    Vs, spikes, closest = [], [], np.inf
    for n, current in enumerate(I_mA.astype(np.float64)):
        if reset == "soft":
            V = np.where(pending, V - (V_th - V_reset), V)
        else:
            V = np.where(pending, V_reset, V)
        refractory = n - last <= n_ref
        V_inf = V_rest + R_ohm * current
        V = np.where(refractory, V, V_inf + (V - V_inf) * decay)
        closest = min(closest, np.abs(V - V_th)[~refractory].min(initial=np.inf))
        fired = ~refractory & (V_th <= V)
        last = np.where(fired, n, last)
        pending = fired
        Vs.append(V)
        spikes.append(fired.astype(np.float64))
    return np.stack(Vs), np.stack(spikes), closest


def run(lif, currents, batch_size, dt):
    @jax.jit
    def sim(states, currents):
        def step(states, current):
            spk, states = lif(states, current)
            return states, (spk, states["V"].value)

        return jax.lax.scan(step, states, currents)

    with ps.environ.context(dt=dt):
        return sim(lif.init(batch_size=batch_size), currents)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("tau_ref_ms", [0.0, 0.1, 0.3, 5.0])
def test_spike_times_equal_a_last_spike_time_loop(reset, tau_ref_ms):
    T, B, N = 1500, 3, 6
    rng = np.random.default_rng(5)
    I_mA = rng.uniform(0.0, 25.0, size=(T, B, N)).astype(np.float32)
    params = dict(tau_ms=20.0, R_ohm=1.0, V_th=10.0, V_reset=0.0, V_rest=0.0)
    lif = ps.nn.LIF(
        N,
        R=params["R_ohm"] * u.ohm,
        tau=params["tau_ms"] * u.ms,
        V_th=params["V_th"] * u.mV,
        V_reset=params["V_reset"] * u.mV,
        V_rest=params["V_rest"] * u.mV,
        spk_reset=reset,
        tau_ref=tau_ref_ms * u.ms,
    )
    _, (spikes, Vs) = run(lif, jnp.asarray(I_mA) * u.mA, B, 0.1 * u.ms)
    n_ref = round(tau_ref_ms / 0.1)
    V_ref, spk_ref, closest = reference_lif_ref(I_mA, dt_ms=0.1, reset=reset, n_ref=n_ref, **params)
    assert closest > 1e-4  # no reference V sits on the threshold
    np.testing.assert_array_equal(np.asarray(spikes), spk_ref)
    np.testing.assert_allclose(np.asarray(Vs.to_decimal(u.mV)), V_ref, atol=1e-4, rtol=0)
    assert spk_ref.sum() > 50  # resets and refractory periods were exercised
    # Inter-spike intervals are at least n_ref + 1 steps.
    t, *where = np.nonzero(spk_ref)
    for idx in set(zip(*where, strict=True)):
        times = t[np.all(np.stack(where, 1) == idx, axis=1)]
        assert np.diff(times).min(initial=10**9) >= n_ref + 1


def test_zero_tau_ref_is_the_plain_lif():
    T, N = 300, 4
    I_mA = np.random.default_rng(1).uniform(0.0, 3.0, size=(T, N)).astype(np.float32)
    plain = ps.nn.LIF(N)
    zero = ps.nn.LIF(N, tau_ref=0 * u.ms)
    assert plain == zero and hash(plain) == hash(zero)
    assert list(zero.init()) == ["V"] and not zero.refractory
    _, (spk_a, V_a) = run(plain, jnp.asarray(I_mA) * u.mA, None, 0.1 * u.ms)
    _, (spk_b, V_b) = run(zero, jnp.asarray(I_mA) * u.mA, None, 0.1 * u.ms)
    np.testing.assert_array_equal(np.asarray(spk_a), np.asarray(spk_b))
    np.testing.assert_array_equal(np.asarray(V_a.mantissa), np.asarray(V_b.mantissa))


def test_refractory_state_shape_kind_and_per_neuron_periods():
    lif = ps.nn.LIF(3, tau_ref=jnp.asarray([0.0, 0.2, 0.5]) * u.ms, spk_reset="hard")
    states = lif.init(batch_size=2)
    assert sorted(states) == ["V", "refractory"]
    assert type(states["refractory"]) is ps.ShortTermState
    assert states["refractory"].value.shape == (2, 3)
    assert states["refractory"].value.dtype == jnp.int32
    T = 200
    I_mA = np.full((T, 2, 3), 1000.0, np.float32)  # fires whenever it may
    _, (spikes, _) = run(lif, jnp.asarray(I_mA) * u.mA, 2, 0.1 * u.ms)
    _, spk_ref, _ = reference_lif_ref(
        I_mA,
        dt_ms=0.1,
        tau_ms=5.0,
        R_ohm=1.0,
        V_th=1.0,
        V_reset=0.0,
        V_rest=0.0,
        reset="hard",
        n_ref=np.array([0, 2, 5]),
    )
    np.testing.assert_array_equal(np.asarray(spikes), spk_ref)
    # One spike every n_ref + 1 steps.
    np.testing.assert_array_equal(np.asarray(spikes).sum(0)[0], [T, T // 3 + 1, T // 6 + 1])


def test_tau_ref_in_other_time_units_and_dt():
    """5 ms at dt = 100 us is 50 steps, as 5 ms at 0.1 ms."""
    T, N = 600, 3
    I_mA = np.random.default_rng(3).uniform(10.0, 30.0, size=(T, N)).astype(np.float32)
    kw = dict(tau=20 * u.ms, V_th=-50 * u.mV, V_reset=-60 * u.mV, V_rest=-60 * u.mV)
    a = ps.nn.LIF(N, tau_ref=5 * u.ms, spk_reset="hard", **kw)
    b = ps.nn.LIF(N, tau_ref=5000 * u.us, spk_reset="hard", **kw)
    _, (spk_a, _) = run(a, jnp.asarray(I_mA) * u.mA, None, 0.1 * u.ms)
    _, (spk_b, _) = run(b, jnp.asarray(I_mA) * u.mA, None, 100 * u.us)
    np.testing.assert_array_equal(np.asarray(spk_a), np.asarray(spk_b))
    assert np.asarray(spk_a).sum() > 5


def test_surrogate_gradient_flows_outside_the_refractory_period():
    lif = ps.nn.LIF(2, tau_ref=0.5 * u.ms)

    def total(i_ma):
        states = lif.init()

        def step(states, _):
            spk, states = lif(states, i_ma * u.mA)
            return states, spk

        _, spikes = jax.lax.scan(step, states, None, length=40)
        return spikes.sum()

    with ps.environ.context(dt=0.1 * u.ms):
        g = jax.grad(total)(jnp.asarray([30.0, 60.0]))
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)


def test_tau_ref_is_checked():
    with pytest.raises(ps.nn.UnitError, match="tau_ref must be a time"):
        ps.nn.LIF(2, tau_ref=5 * u.mV)
    with pytest.raises(ps.nn.UnitError, match="tau_ref"):
        ps.nn.LIF(2, tau_ref=5.0)
    with pytest.raises(ValueError, match="tau_ref must be >= 0"):
        ps.nn.LIF(2, tau_ref=-1 * u.ms)
