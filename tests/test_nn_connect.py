"""ps.nn.FixedProb: connection counts against the binomial law, the event-driven
and dense implementations against each other and a numpy ``spikes @ W``, and
the unit check of the weight where the projection feeds a synapse."""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def mask_of(states, n_post):
    """The bool connection matrix, read in numpy from either implementation."""
    if "mask" in states:
        return np.asarray(states["mask"].value)
    targets = np.asarray(states["targets"].value)
    mask = np.zeros((targets.shape[0], n_post + 1), bool)
    mask[np.arange(targets.shape[0])[:, None], targets] = True
    return mask[:, :n_post]


@pytest.mark.parametrize(("n_pre", "n_post", "prob"), [(2000, 1500, 0.02), (600, 800, 0.3)])
def test_connection_counts_follow_the_binomial_law(n_pre, n_post, prob):
    proj = ps.nn.FixedProb(n_pre, n_post, prob, weight=1.0)
    states = proj.init(jax.random.key(11))
    assert list(states) == ["targets"] and type(states["targets"]) is ps.LongTermState
    targets = np.asarray(states["targets"].value)
    assert targets.dtype == np.int32 and targets.shape == (n_pre, proj.max_degree)
    # Rows are sorted, distinct targets padded with n_post.
    valid = targets < n_post
    assert np.all(np.diff(np.where(valid, targets, n_post), axis=1) >= 0)
    assert np.all(np.diff(targets, axis=1)[valid[:, 1:]] > 0)
    mask = mask_of(states, n_post)
    out_deg, in_deg = mask.sum(1), mask.sum(0)
    np.testing.assert_array_equal(out_deg, valid.sum(1))
    total, n = mask.sum(), n_pre * n_post
    assert abs(total - n * prob) < 4 * np.sqrt(n * prob * (1 - prob))
    # Out-degrees ~ Binomial(n_post, p), in-degrees ~ Binomial(n_pre, p).
    assert abs(out_deg.mean() - n_post * prob) < 4 * np.sqrt(n_post * prob * (1 - prob) / n_pre)
    assert abs(out_deg.var() / (n_post * prob * (1 - prob)) - 1) < 4 * np.sqrt(2 / n_pre)
    assert abs(in_deg.var() / (n_pre * prob * (1 - prob)) - 1) < 4 * np.sqrt(2 / n_post)
    # Every post neuron is reached uniformly: the first and second halves alike.
    half = n_post // 2
    a, b = mask[:, :half].sum(), mask[:, half : 2 * half].sum()
    assert abs(a - b) < 4 * np.sqrt(2 * n_pre * half * prob)


def test_same_key_same_connections_in_both_implementations():
    key = jax.random.key(5)
    event = ps.nn.FixedProb(300, 200, 0.1, weight=2 * u.nS)
    dense = ps.nn.FixedProb(300, 200, 0.1, weight=2 * u.nS, impl="dense")
    se, sd = event.init(key), dense.init(key)
    assert list(sd) == ["mask"] and sd["mask"].value.dtype == jnp.bool_
    assert sd["mask"].value.shape == (300, 200)
    np.testing.assert_array_equal(mask_of(se, 200), mask_of(sd, 200))
    assert not np.array_equal(mask_of(event.init(jax.random.key(6)), 200), mask_of(se, 200))


@pytest.mark.parametrize("spike_kind", ["bool", "float", "weighted"])
def test_event_and_dense_equal_numpy_spikes_at_W(spike_kind):
    n_pre, n_post, w = 500, 300, 0.6
    key = jax.random.key(1)
    event = ps.nn.FixedProb(n_pre, n_post, 0.05, weight=w * u.nS)
    dense = ps.nn.FixedProb(n_pre, n_post, 0.05, weight=w * u.nS, impl="dense")
    se, sd = event.init(key), dense.init(key)
    W = mask_of(sd, n_post).astype(np.float64) * w
    rng = np.random.default_rng(0)
    for rate in [0.0, 0.002, 0.02, 0.5, 1.0]:
        s = rng.random((3, n_pre)) < rate  # a batch of 3
        if spike_kind == "bool":
            spikes = jnp.asarray(s)
        elif spike_kind == "float":
            spikes = jnp.asarray(s, jnp.float32)
        else:
            spikes = jnp.asarray(s * rng.uniform(0.5, 2.0, s.shape), jnp.float32)
        expected = np.asarray(spikes, np.float64) @ W
        ge, same = jax.jit(event)(se, spikes)
        np.testing.assert_array_equal(np.asarray(same["targets"].value), se["targets"].value)
        gd, _ = jax.jit(dense)(sd, spikes)
        assert ge.unit == u.nS and gd.unit == u.nS and ge.shape == (3, n_post)
        np.testing.assert_allclose(np.asarray(ge.mantissa), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(gd.mantissa), expected, rtol=1e-5, atol=1e-5)
    one, same = event(se, jnp.zeros(n_pre).at[7].set(1.0))  # unbatched, eager
    assert same is se
    np.testing.assert_allclose(np.asarray(one.mantissa), W[7], rtol=1e-6)


def test_without_self_connections_and_edge_probabilities():
    n = 50
    for prob in [0.2, 1.0]:
        proj = ps.nn.FixedProb(n, n, prob, weight=1.0, include_self=False)
        mask = mask_of(proj.init(jax.random.key(0)), n)
        assert not mask[np.arange(n), np.arange(n)].any()
    np.testing.assert_array_equal(mask, ~np.eye(n, dtype=bool))  # p = 1: all but self
    full = ps.nn.FixedProb(n, 30, 1.0, weight=1.0)
    assert mask_of(full.init(0), 30).all()
    empty = ps.nn.FixedProb(n, 30, 0.0, weight=1.0)
    out, _ = empty(empty.init(0), jnp.ones(n))
    np.testing.assert_array_equal(np.asarray(out), 0.0)
    with pytest.raises(ValueError, match="include_self=False needs n_pre == n_post"):
        ps.nn.FixedProb(3, 4, 0.5, 1.0, include_self=False)


def test_too_small_max_degree_is_an_error_not_a_cut():
    proj = ps.nn.FixedProb(100, 1000, 0.1, weight=1.0, max_degree=20)
    with pytest.raises(ValueError, match="more than max_degree=20"):
        proj.init(jax.random.key(0))
    # Under a trace it cannot tell, and cuts; the default bound never does.
    assert ps.nn.FixedProb(100, 1000, 0.1, weight=1.0).max_degree >= 100 + 7 * 9


def test_gradients_of_event_equal_dense():
    key = jax.random.key(2)
    event = ps.nn.FixedProb(200, 150, 0.1, weight=0.5)
    dense = ps.nn.FixedProb(200, 150, 0.1, weight=0.5, impl="dense")
    se, sd = event.init(key), dense.init(key)
    rng = np.random.default_rng(3)
    spikes = jnp.asarray(rng.random((2, 200)) < 0.1, jnp.float32)
    r = jnp.asarray(rng.normal(size=(2, 150)), jnp.float32)

    def loss(module, states):
        return lambda s: jnp.sum(jnp.tanh(module(states, s)[0]) * r)

    ge = jax.grad(loss(event, se))(spikes)
    gd = jax.grad(loss(dense, sd))(spikes)
    np.testing.assert_allclose(np.asarray(ge), np.asarray(gd), rtol=1e-5, atol=1e-6)
    v = jnp.asarray(rng.normal(size=(2, 200)), jnp.float32)
    _, te = jax.jvp(lambda s: event(se, s)[0], (spikes,), (v,))
    _, td = jax.jvp(lambda s: dense(sd, s)[0], (spikes,), (v,))
    np.testing.assert_allclose(np.asarray(te), np.asarray(td), rtol=1e-5, atol=1e-5)


def test_equal_under_augment_vmap_lanes():
    key = jax.random.key(4)
    event = ps.nn.FixedProb(400, 100, 0.05, weight=1 * u.pA)
    dense = ps.nn.FixedProb(400, 100, 0.05, weight=1 * u.pA, impl="dense")
    se, sd = event.init(key), dense.init(key)
    spikes = jnp.asarray(np.random.default_rng(5).random((6, 400)) < 0.03)
    ge, new = ps.augment.vmap(event)(se, spikes)
    gd, _ = ps.augment.vmap(dense)(sd, spikes)
    assert new["targets"].value.shape == se["targets"].value.shape  # shared, unbatched
    np.testing.assert_allclose(np.asarray(ge.mantissa), np.asarray(gd.mantissa), rtol=1e-6)


def test_event_work_does_not_touch_an_n_pre_by_n_post_array():
    """No value in the event-driven step (loops included) has n_pre * n_post
    entries; the dense one multiplies by the full matrix."""
    n_pre, n_post = 1000, 800
    event = ps.nn.FixedProb(n_pre, n_post, 0.02, weight=1.0)
    states = event.init(0)

    def sizes(jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                yield int(np.prod(var.aval.shape))
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", param)
                if hasattr(inner, "eqns"):
                    yield from sizes(inner)

    for dtype in [jnp.bool_, jnp.float32]:
        jaxpr = jax.make_jaxpr(lambda s: event(states, s)[0])(jnp.zeros(n_pre, dtype))
        assert max(sizes(jaxpr.jaxpr)) < n_pre * n_post // 10
        assert "while" in str(jaxpr)


def test_weight_units_are_checked_where_the_projection_feeds_a_synapse():
    proj = ps.nn.FixedProb(20, 10, 0.5, weight=6 * u.mV)  # meant: 6 nS
    syn = ps.nn.ExpConductanceSynapse(10, tau=5 * u.ms)
    states = {"proj": proj.init(0), "syn": syn.init()}
    with ps.environ.context(dt=0.1 * u.ms):
        x, _ = proj(states["proj"], jnp.ones(20))
        with pytest.raises(ps.nn.UnitError, match=r"conductance in siemens.*got a Quantity in mV"):
            syn(states["syn"], x, jnp.zeros(10) * u.mV)
        cur = ps.nn.ExpCurrentSynapse(10)
        with pytest.raises(ps.nn.UnitError, match=r"current in amperes.*got a Quantity in mV"):
            cur(cur.init(), x)
    with pytest.raises(ps.nn.UnitError, match="weight must be a number or a Quantity"):
        ps.nn.FixedProb(20, 10, 0.5, weight="6 nS")
    with pytest.raises(ValueError, match="weight must be a scalar"):
        ps.nn.FixedProb(20, 10, 0.5, weight=jnp.ones(3) * u.nS)
    with pytest.raises(ValueError, match="prob must be in"):
        ps.nn.FixedProb(20, 10, 1.5, weight=1.0)
    with pytest.raises(ValueError, match="impl"):
        ps.nn.FixedProb(20, 10, 0.5, weight=1.0, impl="csr")
    with pytest.raises(ValueError, match=r"spikes must have shape \(\.\.\., 20\)"):
        proj(states["proj"], jnp.ones(10))


def test_modules_are_hashable_and_keys_accepted():
    a = ps.nn.FixedProb(20, 10, 0.5, weight=6 * u.nS)
    assert a == ps.nn.FixedProb(20, 10, 0.5, weight=6 * u.nS)
    assert hash(a) == hash(ps.nn.FixedProb(20, 10, 0.5, weight=6 * u.nS))
    assert a != ps.nn.FixedProb(20, 10, 0.5, weight=7 * u.nS)
    np.testing.assert_array_equal(
        np.asarray(a.init(3)["targets"].value),
        np.asarray(a.init(jax.random.key(3))["targets"].value),
    )
    with pytest.raises(TypeError, match="PRNG key"):
        a.init(None)
