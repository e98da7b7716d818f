"""ps.nn.PoissonSpikes: spike counts against the Bernoulli(rate * dt) law with a
fixed seed, the keys it draws against jax.random by hand, and its checks."""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def run(source, states, T, dt, rate=None):
    @jax.jit
    def sim(states):
        def step(states, _):
            spk, states = source(states) if rate is None else source(states, rate=rate)
            return states, spk

        return jax.lax.scan(step, states, None, length=T)

    with ps.environ.context(dt=dt):
        return sim(states)


@pytest.mark.parametrize(
    ("rate_hz", "dt_ms"), [(20.0, 0.1), (5.0, 1.0), (400.0, 1.0), (2000.0, 0.25)]
)
def test_rate_within_a_few_standard_errors(rate_hz, dt_ms):
    N, T = 2000, 500
    source = ps.nn.PoissonSpikes(N, rate=rate_hz * u.Hz)
    _, spikes = run(source, source.init(jax.random.key(42)), T, dt_ms * u.ms)
    p = rate_hz * dt_ms * 1e-3
    n = N * T
    count = float(np.asarray(spikes).sum())
    assert abs(count - n * p) < 4 * np.sqrt(n * p * (1 - p))
    rate = count / (n * dt_ms * 1e-3)
    assert abs(rate - rate_hz) < 4 * np.sqrt(p * (1 - p) / n) / (dt_ms * 1e-3)
    # Per neuron: counts are Binomial(T, p), with the binomial variance.
    per = np.asarray(spikes).sum(0)
    var = T * p * (1 - p)
    assert abs(per.var() / var - 1) < 4 * np.sqrt(2 / N)
    # Successive steps are independent: lag-1 correlation near 0.
    s = np.asarray(spikes, np.float64)
    corr = np.mean((s[1:] - p) * (s[:-1] - p)) / (p * (1 - p))
    assert abs(corr) < 4 / np.sqrt(n)


def test_draws_equal_jax_random_by_hand():
    key = jax.random.key(3)
    source = ps.nn.PoissonSpikes((4, 5), rate=jnp.linspace(0.0, 900.0, 5) * u.Hz)
    states = source.init(key, batch_size=2)
    assert sorted(states) == ["rng", "spike"]
    assert type(states["rng"]) is ps.RandomState and type(states["spike"]) is ps.ShortTermState
    assert states["spike"].value.shape == (2, 4, 5)
    k = key
    prob = np.linspace(0.0, 900.0, 5) * 1e-3
    for _ in range(3):
        with ps.environ.context(dt=1 * u.ms):
            spikes, states = source(states)
        k, fresh = jax.random.split(k)
        expected = np.asarray(jax.random.uniform(fresh, (2, 4, 5))) < prob.astype(np.float32)
        np.testing.assert_array_equal(np.asarray(spikes), expected.astype(np.float32))
        np.testing.assert_array_equal(np.asarray(states["spike"].value), np.asarray(spikes))
    np.testing.assert_array_equal(
        np.asarray(jax.random.key_data(states["rng"].value)), np.asarray(jax.random.key_data(k))
    )


def test_bool_spikes_rate_override_and_edges():
    source = ps.nn.PoissonSpikes(100, rate=10 * u.Hz, dtype=bool)
    states = source.init(0)
    with ps.environ.context(dt=1 * u.ms):
        spikes, _ = source(states, rate=1 * u.kHz)  # p = 1: always
        assert spikes.dtype == jnp.bool_ and bool(spikes.all())
        spikes, _ = source(states, rate=5 * u.kHz)  # p > 1 is clipped to 1
        assert bool(spikes.all())
        spikes, _ = source(states, rate=0 * u.Hz)
        assert not bool(spikes.any())
        rates = jnp.where(jnp.arange(100) < 50, 0.0, 1000.0) * u.Hz
        spikes, _ = source(states, rate=rates)
        np.testing.assert_array_equal(np.asarray(spikes), np.arange(100) >= 50)
    # Traced rates (an input encoding) work under jit.
    _, spikes = run(source, states, 50, 1 * u.ms, rate=jnp.full(100, 200.0) * u.Hz)
    assert 0.1 < float(np.asarray(spikes).mean()) < 0.3


def test_lanes_draw_their_own_keys_under_vmap():
    source = ps.nn.PoissonSpikes(64, rate=500 * u.Hz)
    states = source.init(jax.random.key(0), batch_size=8)
    with ps.environ.context(dt=1 * u.ms):
        spikes, new = ps.augment.vmap(source, in_states="spike")(states)
    assert spikes.shape == (8, 64)
    assert len({row.tobytes() for row in np.asarray(spikes)}) == 8
    assert new["rng"].value.shape == ()


def test_rate_is_checked():
    with pytest.raises(
        ps.nn.UnitError, match=r"rate must be a frequency in hertz.*got a Quantity in ms"
    ):
        ps.nn.PoissonSpikes(3, rate=5 * u.ms)
    with pytest.raises(ps.nn.UnitError, match="rate must be a frequency"):
        ps.nn.PoissonSpikes(3, rate=20.0)
    with pytest.raises(ValueError, match="rate must be >= 0"):
        ps.nn.PoissonSpikes(3, rate=-1 * u.Hz)
    with pytest.raises(ValueError, match="does not broadcast"):
        ps.nn.PoissonSpikes(3, rate=jnp.ones(4) * u.Hz)
    with pytest.raises(TypeError, match="dtype"):
        ps.nn.PoissonSpikes(3, rate=1 * u.Hz, dtype=jnp.int32)
    source = ps.nn.PoissonSpikes(3, rate=1 * u.Hz)
    with pytest.raises(TypeError, match="PRNG key"):
        source.init(None)
    with ps.environ.context(dt=1 * u.ms), pytest.raises(ps.nn.UnitError, match="frequency"):
        source(source.init(0), rate=jnp.ones(3) * u.mV)
    with pytest.raises(ps.nn.MissingSettingError, match="dt"):
        source(source.init(0))
