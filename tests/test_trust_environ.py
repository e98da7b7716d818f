"""Transforms read ps.environ at trace time, never reuse a stale trace, key
unhashable settings by content, and accept traced settings."""

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

N = jax.local_device_count()


def scaled(states, x):
    """x * dt, with dt read from ps.environ."""
    return x * ps.environ.get("dt"), states


def scaled_step(states, x):
    """A scan body: accumulates x * dt in a state and returns it."""
    acc = states["acc"].value + x * ps.environ.get("dt")
    return acc, ps.set(states, "acc", acc)


def tree():
    return {"w": ps.ParamState(jnp.float32(1.0))}


def acc_tree():
    return {"acc": ps.ShortTermState(jnp.zeros(2))}


def _pmap_case():
    f = ps.augment.pmap(scaled)
    x = jnp.arange(1.0, N + 1.0)
    return (lambda: f(tree(), x)[0]), (lambda dt: np.asarray(x) * dt)


def _vmap_case():
    f = ps.augment.vmap(scaled)
    x = jnp.arange(1.0, 4.0)
    return (lambda: f(tree(), x)[0]), (lambda dt: np.asarray(x) * dt)


def _remat_case():
    f = ps.augment.remat(scaled)
    x = jnp.arange(1.0, 4.0)
    return (lambda: f(tree(), x)[0]), (lambda dt: np.asarray(x) * dt)


def _jit_remat_case():
    f = ps.compile.jit(ps.augment.remat(scaled))
    x = jnp.arange(1.0, 4.0)
    return (lambda: f(tree(), x)[0]), (lambda dt: np.asarray(x) * dt)


def _grad_remat_case():
    f = ps.augment.grad(
        lambda s, x: (jnp.sum(ps.augment.remat(scaled)(s, x)[0] ** 2), s), argnums=0
    )
    x = jnp.arange(1.0, 4.0)
    return (lambda: f(tree(), x)[0]), (lambda dt: 2 * np.asarray(x) * dt**2)


def _scan_remat_case():
    body = ps.augment.remat(scaled_step)
    xs = jnp.arange(6.0).reshape(3, 2)

    def run():
        ys, _ = ps.compile.scan(body, acc_tree(), xs)
        return ys

    return run, (lambda dt: np.cumsum(np.asarray(xs) * dt, axis=0))


def _jit_scan_remat_case():
    body = ps.augment.remat(scaled_step)
    xs = jnp.arange(6.0).reshape(3, 2)
    f = ps.compile.jit(lambda s, xs: ps.compile.scan(body, s, xs))

    def run():
        return f(acc_tree(), xs)[0]

    return run, (lambda dt: np.cumsum(np.asarray(xs) * dt, axis=0))


CASES = {
    "pmap": _pmap_case,
    "vmap": _vmap_case,
    "remat": _remat_case,
    "jit_of_remat": _jit_remat_case,
    "grad_of_remat": _grad_remat_case,
    "remat_in_scan_body": _scan_remat_case,
    "remat_in_scan_body_under_jit": _jit_scan_remat_case,
}


@pytest.mark.parametrize("case", list(CASES))
def test_transform_retraces_when_dt_changes(case):
    """Each transform reads dt at trace time and retraces when it changes (no stale trace)."""
    run, expected = CASES[case]()
    for dt in (1.0, 2.0, 0.5, 2.0):
        with ps.environ.context(dt=dt):
            got = run()
        np.testing.assert_allclose(np.asarray(got), expected(dt), rtol=1e-6)


def test_pmap_retraces_when_a_quantity_dt_changes():
    """pmap retraces when a Quantity dt changes (value and unit)."""
    f = ps.augment.pmap(scaled)
    x = jnp.arange(1.0, N + 1.0)
    for dt in (0.1 * u.ms, 0.2 * u.ms, 0.2 * u.second):
        with ps.environ.context(dt=dt):
            out, _ = f(tree(), x)
        np.testing.assert_allclose(
            np.asarray(out.to_decimal(u.ms)),
            np.asarray(x) * float(dt.to_decimal(u.ms)),
            rtol=1e-6,
        )


def test_pmap_lif_uses_the_current_dt():
    """A LIF step under pmap follows dt changes like the same step run eagerly."""
    lif = ps.nn.LIF(2)
    states = lif.init(None, batch_size=N)
    current = jnp.ones((N, 2)) * u.mA
    mapped = ps.augment.pmap(lif, in_states=ps.ShortTermState)
    for dt in (0.1 * u.ms, 0.5 * u.ms):
        with ps.environ.context(dt=dt):
            _, new = mapped(states, current)
            _, ref = lif(states, current)
        np.testing.assert_allclose(
            np.asarray(new["V"].value.to_decimal(u.mV)),
            np.asarray(ref["V"].value.to_decimal(u.mV)),
            rtol=1e-5,
        )


def _cfg_scale(states, x):
    return x * ps.environ.get("cfg")["scale"], states


def test_dict_settings_are_keyed_by_content_not_identity():
    """Fresh dicts (possibly at a freed address) with different contents never share a trace."""
    f = ps.compile.jit(_cfg_scale)
    got = []
    for s in range(1, 7):
        with ps.environ.context(cfg={"scale": s}):
            got.append(float(f(tree(), jnp.float32(1.0))[0]))
    assert got == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("wrap", ["pmap", "remat", "vmap"])
def test_dict_settings_are_keyed_by_content_in_other_transforms(wrap):
    """pmap, remat and vmap also key dict settings by content."""
    transform = {
        "pmap": ps.augment.pmap,
        "remat": ps.augment.remat,
        "vmap": ps.augment.vmap,
    }[wrap]
    f = transform(_cfg_scale)
    x = jnp.ones(N)
    for s in range(1, 5):
        with ps.environ.context(cfg={"scale": s}):
            out = f(tree(), x)[0]
        np.testing.assert_allclose(np.asarray(out), np.full(N, float(s)))


def test_list_settings_are_keyed_by_content():
    """A list setting read inside jit follows its contents."""
    f = ps.compile.jit(lambda s, x: (x * ps.environ.get("gains")[1], s))
    for g in range(1, 5):
        with ps.environ.context(gains=[0.0, float(g)]):
            assert float(f(tree(), jnp.float32(2.0))[0]) == 2.0 * g


def test_tuple_holding_a_quantity_is_keyed_by_content():
    """A tuple holding a Quantity is compared by its contents (value and unit)."""
    f = ps.compile.jit(lambda s, x: (x * ps.environ.get("cfg")[0], s))
    for q in (1.0 * u.ms, 2.0 * u.ms, 3.0 * u.ms, 3.0 * u.second):
        with ps.environ.context(cfg=(q, "label")):
            out = f(tree(), jnp.float32(2.0))[0]
        np.testing.assert_allclose(
            float(out.to_decimal(u.ms)), 2.0 * float(q.to_decimal(u.ms)), rtol=1e-6
        )


def test_equal_dict_settings_share_a_trace():
    """Distinct dict objects that compare equal reuse one trace."""
    traces = []

    def f(states, x):
        traces.append(1)
        return x * ps.environ.get("cfg")["scale"], states

    jitted = ps.compile.jit(f)
    kept = [{"scale": 2.0} for _ in range(3)]  # all alive: distinct ids, equal contents
    for cfg in kept:
        with ps.environ.context(cfg=cfg):
            assert float(jitted(tree(), jnp.float32(1.0))[0]) == 2.0
    assert len(traces) == 1


class Incomparable:
    """A value that can be neither hashed nor compared."""

    __hash__ = None

    def __eq__(self, other):
        raise TypeError("Incomparable values cannot be compared")


@pytest.mark.parametrize("wrap", ["jit", "pmap", "remat"])
def test_a_setting_that_cannot_be_compared_is_a_type_error_naming_it(wrap):
    """A setting that cannot be compared raises TypeError naming the setting."""
    transform = {
        "jit": ps.compile.jit,
        "pmap": ps.augment.pmap,
        "remat": ps.augment.remat,
    }[wrap]

    def f(states, x):
        ps.environ.get("weird_setting")  # read, not used
        return x * 2, states

    with (
        pytest.raises(TypeError, match="weird_setting"),
        ps.environ.context(weird_setting=Incomparable()),
    ):
        transform(f)(tree(), jnp.ones(N))


def _jit_under_dt(dt, x):
    with ps.environ.context(dt=dt):
        return ps.compile.jit(scaled)(tree(), x)[0]


JITTED_SCALED = ps.compile.jit(scaled)


def _shared_jit_under_dt(dt, x):
    with ps.environ.context(dt=dt):
        return JITTED_SCALED(tree(), x)[0]


def test_traced_setting_under_jax_vmap_equals_closed_form():
    """jax.vmap over dt through a jitted function gives dt * x per lane, twice in a row."""
    x = jnp.arange(1.0, 4.0)
    for dts in (jnp.array([0.5, 1.0, 2.0]), jnp.array([3.0, 4.0, 5.0])):
        out = jax.vmap(lambda dt: _shared_jit_under_dt(dt, x))(dts)
        np.testing.assert_allclose(np.asarray(out), np.outer(dts, x), rtol=1e-6)


def test_traced_setting_under_jax_jit_is_not_baked_in():
    """jax.jit over dt through ps.compile.jit follows the runtime dt."""
    x = jnp.arange(1.0, 4.0)
    outer = jax.jit(lambda dt: _shared_jit_under_dt(dt, x))
    for dt in (0.5, 1.5, 2.5):
        np.testing.assert_allclose(np.asarray(outer(dt)), np.asarray(x) * dt, rtol=1e-6)


def _sin_scaled(states, x):
    return jnp.sum(jnp.sin(x * ps.environ.get("dt"))), states


def _run_jit(dt, x):
    return ps.compile.jit(_sin_scaled)(tree(), x)[0]


def _run_vmap(dt, x):
    return jnp.sum(ps.augment.vmap(_sin_scaled)(tree(), x[:, None])[0])


def _run_remat(dt, x):
    return ps.augment.remat(_sin_scaled)(tree(), x)[0]


def _run_scan(dt, x):
    def body(states, xt):
        return jnp.sin(xt * ps.environ.get("dt")), states

    ys, _ = ps.compile.scan(body, tree(), x)
    return jnp.sum(ys)


def _run_jit_scan(dt, x):
    def body(states, xt):
        return jnp.sin(xt * ps.environ.get("dt")), states

    ys, _ = ps.compile.jit(lambda s, xs: ps.compile.scan(body, s, xs))(tree(), x)
    return jnp.sum(ys)


RUNNERS = {
    "jit": _run_jit,
    "vmap": _run_vmap,
    "remat": _run_remat,
    "scan": _run_scan,
    "jit_of_scan": _run_jit_scan,
}


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_jax_grad_over_a_traced_dt_setting_equals_closed_form(runner):
    """jax.grad over dt set in ps.environ equals d/d dt sum(sin(dt x)) = sum(x cos(dt x))."""
    x = jnp.array([0.5, 1.0, 2.0])

    def loss(dt):
        with ps.environ.context(dt=dt):
            return RUNNERS[runner](dt, x)

    for dt in (0.3, 0.7):
        value, grad = jax.value_and_grad(loss)(dt)
        xn = np.asarray(x, np.float64)
        np.testing.assert_allclose(float(value), np.sum(np.sin(dt * xn)), rtol=1e-5)
        np.testing.assert_allclose(float(grad), np.sum(xn * np.cos(dt * xn)), rtol=1e-5)
        plain = jax.grad(lambda d: jnp.sum(jnp.sin(x * d)))(dt)
        np.testing.assert_allclose(float(grad), float(plain), rtol=1e-5)


def test_jax_vmap_over_a_traced_dt_through_a_fresh_jit_equals_closed_form():
    """jax.vmap over dt, with the jitted function made inside, gives dt * x."""
    x = jnp.arange(1.0, 3.0)
    dts = jnp.array([0.1, 0.2, 0.3, 0.4])
    out = jax.vmap(lambda dt: _jit_under_dt(dt, x))(dts)
    np.testing.assert_allclose(np.asarray(out), np.outer(dts, x), rtol=1e-6)
