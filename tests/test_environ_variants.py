"""Cached transforms keep one trace per distinct values of the ps.environ
settings their traces read.

Regression tests: each compares with eager code, a closed form or plain JAX,
or counts the Python-side calls of the traced function.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

N = jax.local_device_count()


def counted(fun):
    """`fun` and a list whose length is the number of times it ran."""
    calls = []

    def wrapped(states, *args, **kwargs):
        calls.append(None)
        return fun(states, *args, **kwargs)

    return wrapped, calls


def one_state():
    return {"v": ps.ShortTermState(jnp.zeros(()))}


# -- pmap's check for batched writes is made per settings --------------------


@pytest.mark.multidevice
def test_pmap_checks_batched_writes_again_when_a_setting_changes():
    def f(states, x):
        if ps.environ.get("write"):
            # A per-device value written into a state declared nowhere.
            return x.sum(), ps.set(states, "cell/membrane", x)
        return x.sum(), states

    g = ps.augment.pmap(f)
    states = {"cell": {"membrane": ps.ShortTermState(jnp.zeros(()))}}
    x = jnp.arange(1.0, N + 1.0)
    with ps.environ.context(write=False):
        out, new = g(states, x)
    np.testing.assert_array_equal(out, jax.pmap(jnp.sum)(x))
    assert float(ps.get(new, "cell/membrane")) == 0.0

    with ps.environ.context(write=True), pytest.raises(ps.BatchAxisError) as info:
        g(states, x)
    assert "cell/membrane" in str(info.value)

    # The setting back to False: the first trace is still good.
    with ps.environ.context(write=False):
        out, new = g(states, x)
    np.testing.assert_array_equal(out, jax.pmap(jnp.sum)(x))
    assert float(ps.get(new, "cell/membrane")) == 0.0


# -- tuples key by their leaves' types ------------------------------------------


def scale_by_first(states, x):
    return x * ps.environ.get("k")[0], states


@pytest.mark.parametrize(
    "transform",
    [
        ps.compile.jit,
        ps.augment.remat,
        lambda f: ps.augment.pmap(f, in_axes=None, axis_size=1),
    ],
    ids=["jit", "remat", "pmap"],
)
def test_tuple_settings_whose_leaves_compare_equal_give_eager_dtypes(transform):
    g = transform(scale_by_first)
    x = jnp.arange(3)
    # True == 1 == 1.0 in Python, and (True,) == (1,) == (1.0,), but each
    # gives another result dtype. In this order a reused trace shows.
    for k in [(True,), (1.0,), (1,)]:
        with ps.environ.context(k=k):
            expected, _ = scale_by_first(one_state(), x)
            out, _ = g(one_state(), x)
        assert out.dtype == expected.dtype, k
        np.testing.assert_array_equal(np.reshape(out, (-1,)), expected)


# -- one trace per distinct values of the settings read -------------------------


def test_equal_dict_settings_share_a_trace_and_a_changed_one_retraces():
    f, calls = counted(lambda s, x: (x * ps.environ.get("cfg")["scale"], s))
    g = ps.compile.jit(f)
    for _ in range(3):
        with ps.environ.context(cfg={"scale": 2.0}):  # a new, equal dict each time
            out, _ = g(one_state(), 1.0)
        assert float(out) == 2.0
    assert len(calls) == 1

    with ps.environ.context(cfg={"scale": 3.0}):
        out, _ = g(one_state(), 1.0)
    assert float(out) == 3.0
    assert len(calls) == 2

    with ps.environ.context(cfg={"scale": 2.0}):  # back to the first value
        out, _ = g(one_state(), 1.0)
    assert float(out) == 2.0
    assert len(calls) == 2


def test_settings_the_function_never_reads_never_retrace():
    def step(states, x):
        return x, ps.set(states, "v", states["v"].value + x)

    f, calls = counted(step)
    g = ps.compile.jit(f)
    states = one_state()
    for i in range(5):
        with ps.environ.context(i=i, t=i * 0.1):
            _, states = g(states, 1.0)
    assert float(ps.get(states, "v")) == 5.0
    assert len(calls) == 1


def test_a_setting_read_only_on_a_second_layout_takes_effect():
    def f(states, x):
        # Reads "scale" only for inputs longer than 2.
        if x.shape[0] > 2:
            return x * ps.environ.get("scale"), states
        return x, states

    g = ps.compile.jit(f)
    calls = [
        (2.0, 2),  # reads nothing
        (2.0, 3),  # reads scale under the trace of the first call's settings
        (5.0, 3),
        (5.0, 2),
        (7.0, 3),
        (2.0, 3),
        (7.0, 2),
    ]
    for scale, n in calls:
        with ps.environ.context(scale=scale):
            out, _ = g(one_state(), jnp.ones(n))
            expected, _ = f(one_state(), jnp.ones(n))
        np.testing.assert_array_equal(out, expected, err_msg=f"scale={scale}, n={n}")


def test_an_outer_jit_retraces_when_a_setting_read_only_by_an_inner_jit_changes():
    inner = ps.compile.jit(lambda s, x: (x * ps.environ.get("dt"), s))
    outer = ps.compile.jit(lambda s, x: inner(s, x + 1.0))
    with ps.environ.context(dt=1.0):
        inner(one_state(), 1.0)  # traced standalone first: cached before outer
        out, _ = outer(one_state(), 1.0)
    assert float(out) == 2.0
    with ps.environ.context(dt=3.0):
        out, _ = outer(one_state(), 1.0)
    assert float(out) == 6.0
    with ps.environ.context(dt=1.0):
        out, _ = outer(one_state(), 1.0)
    assert float(out) == 2.0


# -- traced settings ------------------------------------------------------------


def euler(states, x):
    dt = ps.environ.get("dt")
    v = states["v"].value + dt * x
    return v.sum(), ps.set(states, "v", v)


@pytest.mark.parametrize(
    "transform",
    [
        ps.compile.jit,
        ps.augment.remat,
        pytest.param(
            lambda f: ps.augment.pmap(f, in_axes=None, axis_size=2),
            marks=pytest.mark.multidevice,
        ),
    ],
    ids=["jit", "remat", "pmap"],
)
def test_a_traced_setting_is_an_input_of_the_cached_trace(transform):
    g = transform(euler)
    x = jnp.arange(3.0)
    states = {"v": ps.ShortTermState(jnp.ones(3))}

    def total(dt):
        with ps.environ.context(dt=dt):
            out, _ = g(states, x)
        return jnp.reshape(out, (-1,))[0]

    # Closed form: sum(1 + dt * x) = 3 + 3 dt, d/ddt = sum(x) = 3.
    dts = jnp.array([0.5, 2.0])
    np.testing.assert_allclose(jax.vmap(total)(dts), 3.0 + 3.0 * np.asarray(dts))
    np.testing.assert_allclose(jax.grad(total)(0.5), 3.0)
    np.testing.assert_allclose(jax.jit(total)(4.0), 15.0)
    with ps.environ.context(dt=1.5):  # a concrete dt after the traced ones
        np.testing.assert_allclose(jnp.reshape(g(states, x)[0], (-1,))[0], 7.5)


# -- compiled functions refuse other settings -----------------------------------


def test_compiled_function_refuses_a_changed_setting_it_read():
    g = ps.compile.jit(lambda s, x: (x * ps.environ.get("dt"), s))
    with ps.environ.context(dt=2.0):
        compiled = g.lower(one_state(), jnp.ones(2)).compile()
        out, _ = compiled(one_state(), jnp.ones(2))
    np.testing.assert_array_equal(out, [2.0, 2.0])
    with ps.environ.context(dt=2.0, unrelated=1):  # a setting it never read
        out, _ = compiled(one_state(), jnp.ones(2))
    np.testing.assert_array_equal(out, [2.0, 2.0])
    with ps.environ.context(dt=3.0), pytest.raises(ps.StateError, match="ps.environ"):
        compiled(one_state(), jnp.ones(2))
