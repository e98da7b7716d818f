"""ps.nn: Module nesting and keys, Linear, initialisers, Sequential, LI, LeakyReadout, Dropout."""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import purestate as ps

# ---------------------------------------------------------------- initialisers


@pytest.mark.parametrize("fan_in", [64, 512])
def test_kaiming_normal_std_is_sqrt_two_over_fan_in(fan_in):
    w = np.asarray(ps.nn.init.kaiming_normal(jax.random.key(0), (fan_in, 400), jnp.float32))
    assert w.shape == (fan_in, 400) and w.dtype == np.float32
    n = w.size
    # The sample std of n normals is within ~4/sqrt(2n) (relative) of the true std.
    assert abs(w.std() / np.sqrt(2.0 / fan_in) - 1) < 4 / np.sqrt(2 * n)
    assert abs(w.mean()) < 4 * np.sqrt(2.0 / fan_in) / np.sqrt(n)


def test_other_initialisers():
    key = jax.random.key(1)
    np.testing.assert_array_equal(np.asarray(ps.nn.init.zeros(key, (2, 3), jnp.float32)), 0.0)
    np.testing.assert_array_equal(np.asarray(ps.nn.init.ones(key, (2,), jnp.float32)), 1.0)
    np.testing.assert_array_equal(
        np.asarray(ps.nn.init.constant(0.25)(key, (3,), jnp.float32)), 0.25
    )
    u_w = np.asarray(ps.nn.init.kaiming_uniform(key, (300, 300), jnp.float32))
    assert np.abs(u_w).max() <= np.sqrt(6 / 300)
    assert abs(u_w.std() / np.sqrt(2 / 300) - 1) < 0.02
    x_w = np.asarray(ps.nn.init.xavier_normal(key, (200, 600), jnp.float32))
    assert abs(x_w.std() / np.sqrt(2 / 800) - 1) < 0.02
    l_w = np.asarray(ps.nn.init.lecun_normal(key, (400, 300), jnp.float32))
    assert abs(l_w.std() / np.sqrt(1 / 400) - 1) < 0.02
    n_w = np.asarray(ps.nn.init.normal(0.1)(key, (100_000,), jnp.float32))
    assert abs(n_w.std() / 0.1 - 1) < 0.02
    assert ps.nn.init.normal(0.1) == ps.nn.init.normal(0.1)
    assert hash(ps.nn.init.constant(1.0)) == hash(ps.nn.init.constant(1.0))


# ---------------------------------------------------------------------- Linear


def test_linear_states_and_statistics():
    layer = ps.nn.Linear(256, 300)
    states = layer.init(jax.random.key(0))
    assert sorted(ps.flatten(states)) == [("bias",), ("weight",)]
    assert type(states["weight"]) is ps.ParamState and type(states["bias"]) is ps.ParamState
    w, b = np.asarray(states["weight"].value), np.asarray(states["bias"].value)
    assert w.shape == (256, 300) and b.shape == (300,)
    assert w.dtype == np.float32
    assert abs(w.std() / np.sqrt(2 / 256) - 1) < 0.02
    np.testing.assert_array_equal(b, 0.0)
    # batch_size does not batch parameters
    assert layer.init(jax.random.key(0), batch_size=7)["weight"].value.shape == (256, 300)


def test_linear_forward_is_x_at_w_plus_b():
    layer = ps.nn.Linear(3, 2, b_init=ps.nn.init.normal(1.0))
    states = layer.init(jax.random.key(2))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    y, new = layer(states, jnp.asarray(x))
    expected = x @ np.asarray(states["weight"].value) + np.asarray(states["bias"].value)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6)
    assert new is states or ps.flatten(new) == ps.flatten(states)


def test_linear_keys_and_options():
    layer = ps.nn.Linear(4, 3)
    a, b = layer.init(jax.random.key(0)), layer.init(jax.random.key(0))
    c = layer.init(jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a["weight"].value), np.asarray(b["weight"].value))
    assert not np.allclose(np.asarray(a["weight"].value), np.asarray(c["weight"].value))
    np.testing.assert_array_equal(
        np.asarray(layer.init(0)["weight"].value), np.asarray(a["weight"].value)
    )  # int seeds are accepted
    raw = layer.init(jax.random.PRNGKey(0))
    assert raw["weight"].value.shape == (4, 3)
    no_bias = ps.nn.Linear(4, 3, b_init=None).init(jax.random.key(0))
    assert list(no_bias) == ["weight"]
    y, _ = ps.nn.Linear(4, 3, b_init=None)(no_bias, jnp.ones(4))
    np.testing.assert_allclose(np.asarray(y), np.asarray(no_bias["weight"].value).sum(0), rtol=1e-6)
    with pytest.raises(TypeError, match="PRNG key"):
        layer.init(None)


# ------------------------------------------------------ Module and Sequential


class Net(ps.nn.Module):
    encoder: ps.nn.Linear
    spiking: ps.nn.LIF
    act: ps.nn.Module
    decoder: ps.nn.Sequential
    gain: float

    def __init__(self):
        self.encoder = ps.nn.Linear(2, 3)
        self.spiking = ps.nn.LIF(3)
        self.act = Stateless()
        self.decoder = ps.nn.Sequential(ps.nn.Linear(3, 4), jax.nn.relu, ps.nn.Linear(4, 1))
        self.gain = 2.0

    def __call__(self, states, x):
        h, states = self.call_child("encoder", states, x)
        s, states = self.call_child("spiking", states, h * u.mA)
        s, states = self.call_child("act", states, s)
        return self.call_child("decoder", states, s * self.gain)


class Stateless(ps.nn.Module):
    def __call__(self, states, x):
        return x, states


def test_nested_modules_keep_children_under_their_names():
    net = Net()
    states = net.init(jax.random.key(0), batch_size=5)
    assert sorted(ps.flatten(states)) == [
        ("decoder", "0", "bias"),
        ("decoder", "0", "weight"),
        ("decoder", "2", "bias"),
        ("decoder", "2", "weight"),
        ("encoder", "bias"),
        ("encoder", "weight"),
        ("spiking", "V"),
    ]
    assert "act" not in states  # no states, no key (and no empty dict)
    assert ps.get(states, "spiking/V").shape == (5, 3)
    with ps.environ.context(dt=0.1 * u.ms):
        y, new = net(states, jnp.ones((5, 2)))
    assert y.shape == (5, 1)
    assert sorted(ps.flatten(new)) == sorted(ps.flatten(states))
    assert {type(s) for s in ps.flatten(new).values()} == {ps.ParamState, ps.ShortTermState}


def test_children_get_distinct_deterministic_keys():
    net = Net()
    a, b = net.init(jax.random.key(3)), net.init(jax.random.key(3))
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf_a), np.asarray(leaf_b))
    w0 = np.asarray(ps.get(a, "decoder/0/weight"))
    # The two Linear(3, .) weights come from different keys: the child's key is
    # jax.random.split(parent_key, n_children)[index].
    k_decoder = jax.random.split(jax.random.key(3), 4)[3]
    k_layer0 = jax.random.split(k_decoder, 3)[0]
    expected = ps.nn.Linear(3, 4).init(k_layer0)["weight"].value
    np.testing.assert_array_equal(w0, np.asarray(expected))


class Stack(ps.nn.Module):
    blocks: tuple
    heads: dict

    def __init__(self):
        self.blocks = (ps.nn.Linear(2, 2), jnp.tanh, ps.nn.Linear(2, 2))
        self.heads = {"a": ps.nn.Linear(2, 1), "b": ps.nn.Linear(2, 3)}

    def __call__(self, states, x):
        for name in ("blocks/0", "blocks/2"):
            x, states = self.call_child(name, states, x)
        a, states = self.call_child("heads/a", states, x)
        b, states = self.call_child("heads/b", states, x)
        return (a, b), states


def test_modules_in_tuple_and_dict_fields():
    stack = Stack()
    assert [name for name, _ in stack.children()] == ["blocks/0", "blocks/2", "heads/a", "heads/b"]
    states = stack.init(jax.random.key(0))
    assert sorted(ps.flatten(states)) == [
        ("blocks", "0", "bias"),
        ("blocks", "0", "weight"),
        ("blocks", "2", "bias"),
        ("blocks", "2", "weight"),
        ("heads", "a", "bias"),
        ("heads", "a", "weight"),
        ("heads", "b", "bias"),
        ("heads", "b", "weight"),
    ]
    x = np.asarray([1.0, -2.0], dtype=np.float32)
    (a, b), new = stack(states, jnp.asarray(x))
    w = {p: np.asarray(s.value) for p, s in ps.flatten(states).items()}
    h = x @ w[("blocks", "0", "weight")] + w[("blocks", "0", "bias")]
    h = h @ w[("blocks", "2", "weight")] + w[("blocks", "2", "bias")]
    np.testing.assert_allclose(
        np.asarray(b), h @ w[("heads", "b", "weight")] + w[("heads", "b", "bias")], rtol=1e-5
    )
    assert a.shape == (1,)
    assert sorted(ps.flatten(new)) == sorted(ps.flatten(states))


def test_sequential_keys_nesting_and_forward():
    inner = ps.nn.Sequential(ps.nn.Linear(2, 2), jnp.tanh)
    seq = ps.nn.Sequential(inner, ps.nn.Linear(2, 3), jax.nn.relu, ps.nn.Linear(3, 1))
    states = seq.init(jax.random.key(0))
    assert sorted(ps.flatten(states)) == [
        ("0", "0", "bias"),
        ("0", "0", "weight"),
        ("1", "bias"),
        ("1", "weight"),
        ("3", "bias"),
        ("3", "weight"),
    ]
    assert len(seq) == 4 and seq[1] == ps.nn.Linear(2, 3)
    x = np.asarray([[0.5, -1.0]], dtype=np.float32)
    w = {p: np.asarray(s.value) for p, s in ps.flatten(states).items()}
    h = np.tanh(x @ w[("0", "0", "weight")] + w[("0", "0", "bias")])
    h = np.maximum(h @ w[("1", "weight")] + w[("1", "bias")], 0)
    expected = h @ w[("3", "weight")] + w[("3", "bias")]
    y, _ = jax.jit(seq)(states, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)


def test_sequential_rejects_non_callables():
    with pytest.raises(TypeError, match="layer 1"):
        ps.nn.Sequential(ps.nn.Linear(1, 1), 3)


def test_modules_are_hashable_and_hold_no_states():
    assert hash(Net()) == hash(Net())
    assert ps.nn.Linear(2, 3) == ps.nn.Linear(2, 3)
    assert ps.nn.Linear(2, 3) != ps.nn.Linear(2, 4)

    class Bad(ps.nn.Module):
        w: ps.ParamState

        def __init__(self):
            self.w = ps.ParamState(jnp.ones(2))

        def __call__(self, states, x):
            return x, states

    with pytest.raises(TypeError, match=r"Bad\.w holds a ParamState"):
        Bad()


def test_spiking_net_grads_and_training_step():
    """ps.augment.grad over a ps.nn model equals plain jax.grad on the parameter
    subtree; one Optimizer step on top equals optax by hand."""
    net = Net()
    states = net.init(jax.random.key(0), batch_size=2)
    x = 100.0 * jnp.ones((2, 2))

    def loss(states, x):
        y, states = net(states, x)
        return jnp.sum(y**2), states

    params, rest = ps.split(states, ps.ParamState)

    def loss_raw(params):
        return loss(ps.merge(params, rest), x)[0]

    with ps.environ.context(dt=0.1 * u.ms):
        grads, new = ps.augment.grad(loss, ps.ParamState)(states, x)
        expected = jax.grad(loss_raw)(params)
    assert sorted(ps.flatten(grads)) == sorted(ps.flatten(params))
    for path, g in ps.flatten(grads).items():
        np.testing.assert_allclose(
            np.asarray(g.value), np.asarray(ps.get(expected, path)), rtol=1e-6
        )
    assert any(float(jnp.abs(g.value).sum()) > 0 for g in ps.flatten(grads).values())

    opt = ps.optim.Optimizer(optax.sgd(0.1))
    trained = opt.update(opt.init(new), grads)
    for path, p in ps.flatten(params).items():
        np.testing.assert_allclose(
            np.asarray(ps.get(trained, path)),
            np.asarray(p.value) - 0.1 * np.asarray(ps.get(expected, path)),
            rtol=1e-6,
            atol=1e-7,
        )


# --------------------------------------------------------- LI and LeakyReadout


def test_li_matches_the_recurrence():
    T, N = 50, 4
    xs = np.random.default_rng(0).normal(size=(T, 2, N)).astype(np.float32)
    li = ps.nn.LI(N, tau=10 * u.ms)
    states = li.init(batch_size=2)
    with ps.environ.context(dt=1 * u.ms):
        _, ys = jax.lax.scan(lambda s, x: li(s, x)[::-1], states, jnp.asarray(xs))
    decay, V, expected = np.exp(-0.1), np.zeros((2, N)), []
    for x in xs.astype(np.float64):
        V = decay * V + x
        expected.append(V)
    np.testing.assert_allclose(np.asarray(ys), np.stack(expected), rtol=1e-5, atol=1e-5)


def test_leaky_readout_matches_the_recurrence():
    T, B, n_in, n_out = 30, 3, 5, 2
    readout = ps.nn.LeakyReadout(n_in, n_out, tau=4 * u.ms)
    states = readout.init(jax.random.key(0), batch_size=B)
    assert sorted(states) == ["r", "weight"]
    assert type(states["weight"]) is ps.ParamState and type(states["r"]) is ps.ShortTermState
    assert states["r"].value.shape == (B, n_out)
    W = np.asarray(states["weight"].value, dtype=np.float64)
    xs = (np.random.default_rng(1).random((T, B, n_in)) < 0.3).astype(np.float32)
    with ps.environ.context(dt=0.5 * u.ms):
        _, ys = jax.lax.scan(lambda s, x: readout(s, x)[::-1], states, jnp.asarray(xs))
    decay, r, expected = np.exp(-0.125), np.zeros((B, n_out)), []
    for x in xs.astype(np.float64):
        r = decay * r + x @ W
        expected.append(r)
    np.testing.assert_allclose(np.asarray(ys), np.stack(expected), rtol=1e-5, atol=1e-5)


def test_readouts_need_dt():
    li = ps.nn.LI(2)
    with pytest.raises(KeyError, match="'dt'"):
        li(li.init(), jnp.ones(2))


# --------------------------------------------------------------------- Dropout


def test_dropout_mask_equals_jax_random_by_hand():
    rate, key = 0.3, jax.random.key(5)
    drop = ps.nn.Dropout(rate)
    states = drop.init(key)
    assert list(states) == ["rng"] and type(states["rng"]) is ps.RandomState
    x = jnp.arange(1.0, 201.0).reshape(4, 50)
    k = key
    for _ in range(3):  # successive calls draw successive keys
        y, states = jax.jit(drop)(states, x)
        k, fresh = jax.random.split(k)
        keep = np.asarray(jax.random.bernoulli(fresh, 1 - rate, x.shape))
        np.testing.assert_allclose(
            np.asarray(y), np.where(keep, np.asarray(x) / (1 - rate), 0.0), rtol=1e-6
        )
        np.testing.assert_array_equal(
            np.asarray(jax.random.key_data(states["rng"].value)),
            np.asarray(jax.random.key_data(k)),
        )
    assert 0.15 < 1 - keep.mean() < 0.45
    # Within a batch, each row (lane) gets its own mask.
    assert not all((keep[0] == keep[i]).all() for i in range(1, 4))


def test_dropout_inference_fit_and_edge_rates():
    x = jnp.ones(10)
    states = ps.nn.Dropout(0.5).init(jax.random.key(0))
    y, same = ps.nn.Dropout(0.5, inference=True)(states, x)
    np.testing.assert_array_equal(np.asarray(y), 1.0)
    assert same is states
    with ps.environ.context(fit=False):
        y, same = ps.nn.Dropout(0.5)(states, x)
    np.testing.assert_array_equal(np.asarray(y), 1.0)
    y, _ = ps.nn.Dropout(1.0)(states, x)
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    y, _ = ps.nn.Dropout(0.0)(states, x)
    np.testing.assert_array_equal(np.asarray(y), 1.0)
    with pytest.raises(ValueError, match="rate"):
        ps.nn.Dropout(1.5)
    y, _ = ps.nn.Dropout(0.5)(states, jnp.ones(4) * u.mA)
    assert y.unit == u.mA


def test_dropout_lanes_under_augment_vmap():
    drop = ps.nn.Dropout(0.5)
    states = drop.init(jax.random.key(0))
    y, new = ps.augment.vmap(drop)(states, jnp.ones((8, 64)))
    masks = np.asarray(y) > 0
    # Each lane draws from its own key, and the state holds one advanced key.
    assert len({m.tobytes() for m in masks}) == 8
    assert new["rng"].value.shape == ()
    assert not np.array_equal(
        np.asarray(jax.random.key_data(new["rng"].value)),
        np.asarray(jax.random.key_data(states["rng"].value)),
    )


@pytest.mark.parametrize(
    ("module", "x"),
    [
        (ps.nn.Linear(2, 2), jnp.ones(2)),
        (ps.nn.LIF(2), jnp.ones(2) * u.mA),
        (ps.nn.LI(2), jnp.ones(2)),
        (ps.nn.LeakyReadout(2, 2), jnp.ones(2)),
        (ps.nn.Dropout(0.5), jnp.ones(2)),
        (ps.nn.Sequential(ps.nn.Linear(2, 2)), jnp.ones(2)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_modules_return_every_state_they_were_given(module, x):
    """A model called on a larger tree (e.g. with the optimizer's entry) keeps it."""
    states = {**module.init(jax.random.key(0)), "optimizer": ps.LongTermState(jnp.zeros(1))}
    with ps.environ.context(dt=0.1 * u.ms):
        _, new = module(states, x)
    assert sorted(ps.flatten(new)) == sorted(ps.flatten(states))
    assert new["optimizer"] is states["optimizer"]
