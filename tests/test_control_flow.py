"""ps.compile control flow (scan with a carry, checkpointed loops,
bounded_while_loop, switch, ifelse, map) against jax.lax on the same model
written over raw arrays, Python loops and numpy."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

W0 = jnp.array([0.5, -0.3, 0.8])
V0 = jnp.array([0.1, 0.2, -0.1])


def make_states(v=V0, w=W0):
    return {
        "cell": {"v": ps.ShortTermState(v), "n": ps.LongTermState(jnp.int32(0))},
        "w": ps.ParamState(w),
    }


def step(states, x):
    """v <- tanh(w v + x); n <- n + 1; y = sum(w v)."""
    v = jnp.tanh(states["w"].value * states["cell"]["v"].value + x)
    n = states["cell"]["n"].value + 1
    new = ps.update(states, {"cell": {"v": ps.ShortTermState(v), "n": ps.LongTermState(n)}})
    return jnp.sum(states["w"].value * v), new


def raw_step(carry, x, w):
    v, n = carry
    v = jnp.tanh(w * v + x)
    return (v, n + 1), jnp.sum(w * v)


def step_with_carry(states, c, x):
    """The same cell driven by a plain carry ``c = {'a': float, 'k': int}``."""
    y, states = step(states, x + c["a"])
    v = states["cell"]["v"].value
    return ({"a": 0.5 * c["a"] + jnp.mean(v), "k": c["k"] + 1}, y + c["a"]), states


def raw_step_with_carry(carry, x, w):
    (v, n), c = carry
    (v, n), y = raw_step((v, n), x + c["a"], w)
    return ((v, n), {"a": 0.5 * c["a"] + jnp.mean(v), "k": c["k"] + 1}), y + c["a"]


def xs_of(length, seed=0):
    return jax.random.normal(jax.random.key(seed), (length, 3))


def init_carry(a=0.25):
    return {"a": jnp.float32(a), "k": jnp.int32(0)}


def assert_cell(states, v, n, w=W0):
    assert type(states["cell"]["v"]) is ps.ShortTermState
    assert type(states["cell"]["n"]) is ps.LongTermState
    assert type(states["w"]) is ps.ParamState
    np.testing.assert_allclose(states["cell"]["v"].value, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(states["cell"]["n"].value, n)
    np.testing.assert_array_equal(states["w"].value, w)


# ---------------------------------------------------------------- scan / for_loop


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("unroll", [1, 3, True])
def test_scan_with_init_equals_lax_scan_with_states_and_carry(reverse, unroll):
    xs = xs_of(7)
    (carry, ys), new = ps.compile.scan(
        step_with_carry, make_states(), xs, reverse=reverse, unroll=unroll, init=init_carry()
    )
    ((v, n), ref_carry), ref_ys = jax.lax.scan(
        lambda c, x: raw_step_with_carry(c, x, W0),
        ((V0, jnp.int32(0)), init_carry()),
        xs,
        reverse=reverse,
    )
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry["a"], ref_carry["a"], rtol=1e-5)
    assert int(carry["k"]) == int(ref_carry["k"]) == 7
    assert_cell(new, v, n)


def test_scan_with_init_equals_a_python_loop():
    xs = xs_of(5)
    (carry, ys), new = ps.compile.scan(step_with_carry, make_states(), xs, init=init_carry())
    states, c, ref_ys = make_states(), init_carry(), []
    for x in xs:
        (c, y), states = step_with_carry(states, c, x)
        ref_ys.append(y)
    np.testing.assert_allclose(ys, np.stack(ref_ys), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry["a"], c["a"], rtol=1e-5)
    ps.testing.assert_trees_allclose(new, states)


@pytest.mark.parametrize("with_init", [False, True])
def test_scan_over_length_without_xs(with_init):
    def tick(states, *c_and_x):
        *c, x = c_and_x
        assert x is None
        y, states = step(states, 1.0)
        return ((c[0] * 2, y) if c else y), states

    def raw_tick(carry, x):
        (v, n), c = carry
        (v, n), y = raw_step((v, n), 1.0, W0)
        return ((v, n), c * 2), y

    kwargs = {"init": jnp.float32(1.0)} if with_init else {}
    out, new = ps.compile.scan(tick, make_states(), None, length=6, **kwargs)
    ((v, _), c), ref_ys = jax.lax.scan(raw_tick, ((V0, jnp.int32(0)), jnp.float32(1.0)), None, 6)
    if with_init:
        np.testing.assert_allclose(out[0], c)
        out = out[1]
    np.testing.assert_allclose(out, ref_ys, rtol=1e-5, atol=1e-6)
    assert_cell(new, v, 6)


@pytest.mark.parametrize("reverse", [False, True])
def test_for_loop_with_several_sequences_equals_lax_scan(reverse):
    a, b = xs_of(6, 1), jnp.arange(6.0)

    def three(states, x, scale, offset):
        y, states = step(states, x * scale + offset["o"])
        return (y, x.sum()), states

    offsets = {"o": jnp.linspace(-1.0, 1.0, 6)}
    ys, new = ps.compile.for_loop(three, make_states(), a, b, offsets, reverse=reverse)

    def raw(carry, xs):
        x, scale, offset = xs
        carry, y = raw_step(carry, x * scale + offset["o"], W0)
        return carry, (y, x.sum())

    (v, n), ref = jax.lax.scan(raw, (V0, jnp.int32(0)), (a, b, offsets), reverse=reverse)
    np.testing.assert_allclose(ys[0], ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ys[1], ref[1], rtol=1e-6)
    assert_cell(new, v, n)


def test_for_loop_without_sequences_needs_length():
    ys, new = ps.compile.for_loop(lambda s: step(s, 0.5), make_states(), length=4)
    (v, _), ref = jax.lax.scan(lambda c, _: raw_step(c, 0.5, W0), (V0, jnp.int32(0)), length=4)
    np.testing.assert_allclose(ys, ref, rtol=1e-5, atol=1e-6)
    assert_cell(new, v, 4)


def _run_scan(states, xs, a0):
    (carry, ys), states = ps.compile.scan(step_with_carry, states, xs, init=init_carry(a0))
    return carry["a"] + jnp.sum(ys**2), states


def _raw_run(w, xs, a0, v0=V0):
    (_, carry), ys = jax.lax.scan(
        lambda c, x: raw_step_with_carry(c, x, w), ((v0, jnp.int32(0)), init_carry(a0)), xs
    )
    return carry["a"] + jnp.sum(ys**2)


def test_scan_with_init_under_jit_equals_lax_scan():
    xs = xs_of(9, 2)
    loss, new = ps.compile.jit(_run_scan)(make_states(), xs, 0.3)
    np.testing.assert_allclose(loss, jax.jit(_raw_run)(W0, xs, 0.3), rtol=1e-5)
    assert int(new["cell"]["n"].value) == 9


def test_grad_through_scan_with_init_equals_jax_grad_of_lax_scan():
    xs = xs_of(8, 3)
    (state_grads, a_grad), new = ps.augment.grad(_run_scan, ps.ParamState, argnums=1)(
        make_states(), xs, jnp.float32(0.3)
    )
    ref_w, ref_a = jax.grad(_raw_run, argnums=(0, 2))(W0, xs, jnp.float32(0.3))
    assert set(state_grads) == {"w"} and type(state_grads["w"]) is ps.ParamState
    np.testing.assert_allclose(state_grads["w"].value, ref_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a_grad, ref_a, rtol=1e-4, atol=1e-6)
    assert int(new["cell"]["n"].value) == 8


def test_vmap_over_batched_states_through_scan_equals_jax_vmap():
    xs = xs_of(5, 4)
    v_batch = jax.random.normal(jax.random.key(5), (4, 3))
    states = make_states(v=v_batch)
    states = ps.set(states, "cell/n", jnp.zeros(4, jnp.int32))

    def run(states, xs):
        ys, states = ps.compile.scan(step, states, xs)
        return ys, states

    ys, new = ps.augment.vmap(run, in_axes=None, in_states="cell")(states, xs)

    def raw(v0):
        return jax.lax.scan(lambda c, x: raw_step(c, x, W0), (v0, jnp.int32(0)), xs)

    (v, n), ref_ys = jax.vmap(raw)(v_batch)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-6)
    assert ys.shape == (4, 5)
    assert_cell(new, v, n)


# ----------------------------------------------------------- checkpointed loops

LENGTH = 10
BLOCK_SIZES = [1, 3, LENGTH, LENGTH + 7, None]  # 3 and the default (3) do not divide 10


def _raw_plain(w, xs, v0=V0):
    _, ys = jax.lax.scan(lambda c, x: raw_step(c, x, w), (v0, jnp.int32(0)), xs)
    return ys


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_checkpointed_scan_equals_scan_and_lax_scan(block_size):
    xs = xs_of(LENGTH, 6)
    ys, new = ps.compile.checkpointed_scan(step, make_states(), xs, block_size=block_size)
    (v, n), raw_ys = jax.lax.scan(lambda c, x: raw_step(c, x, W0), (V0, jnp.int32(0)), xs)
    np.testing.assert_allclose(ys, raw_ys, rtol=1e-5, atol=1e-6)
    assert_cell(new, v, n)

    def loss(states, xs):
        ys, states = ps.compile.checkpointed_scan(step, states, xs, block_size=block_size)
        return jnp.sum(ys**2), states

    (grads, xs_grad), new = ps.augment.grad(loss, ps.ParamState, argnums=0)(make_states(), xs)
    ref_w, ref_xs = jax.grad(lambda w, xs: jnp.sum(_raw_plain(w, xs) ** 2), argnums=(0, 1))(W0, xs)
    np.testing.assert_allclose(grads["w"].value, ref_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(xs_grad, ref_xs, rtol=1e-4, atol=1e-6)
    assert_cell(new, v, n)


@pytest.mark.parametrize("block_size", [4])
def test_checkpointed_scan_with_init_equals_scan_with_init(block_size):
    xs = xs_of(LENGTH, 7)

    def loss(states, xs, a0, checkpointed):
        run = ps.compile.checkpointed_scan if checkpointed else ps.compile.scan
        kwargs = {"block_size": block_size} if checkpointed else {}
        (c, ys), states = run(step_with_carry, states, xs, init=init_carry(a0), **kwargs)
        return c["a"] + jnp.sum(ys**2), states

    value, new = loss(make_states(), xs, jnp.float32(0.2), True)
    ref_value, ref_new = loss(make_states(), xs, jnp.float32(0.2), False)
    np.testing.assert_allclose(value, _raw_run(W0, xs, 0.2), rtol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    ps.testing.assert_trees_allclose(new, ref_new)

    g = ps.augment.grad(loss, ps.ParamState, argnums=1)
    (grads, a_grad), _ = g(make_states(), xs, jnp.float32(0.2), True)
    ref_w, ref_a = jax.grad(_raw_run, argnums=(0, 2))(W0, xs, jnp.float32(0.2))
    np.testing.assert_allclose(grads["w"].value, ref_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a_grad, ref_a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("block_size", [4, 12])
def test_checkpointed_for_loop_equals_for_loop_and_lax_scan(block_size):
    a, b = xs_of(LENGTH, 8), jnp.linspace(0.5, 1.5, LENGTH)

    def two(states, x, scale):
        return step(states, x * scale)

    def loss(states, a, b, checkpointed):
        if checkpointed:
            ys, states = ps.compile.checkpointed_for_loop(two, states, a, b, block_size=block_size)
        else:
            ys, states = ps.compile.for_loop(two, states, a, b)
        return jnp.sum(ys**2), states

    value, new = loss(make_states(), a, b, True)
    ref_value, ref_new = loss(make_states(), a, b, False)
    raw_ys = _raw_plain(W0, a * b[:, None])
    np.testing.assert_allclose(value, jnp.sum(raw_ys**2), rtol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    ps.testing.assert_trees_allclose(new, ref_new)
    assert int(new["cell"]["n"].value) == LENGTH

    (grads, a_grad), _ = ps.augment.grad(loss, ps.ParamState, argnums=0)(make_states(), a, b, True)
    ref_w, ref_a = jax.grad(
        lambda w, a: jnp.sum(_raw_plain(w, a * b[:, None]) ** 2), argnums=(0, 1)
    )(W0, a)
    np.testing.assert_allclose(grads["w"].value, ref_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a_grad, ref_a, rtol=1e-4, atol=1e-6)


def test_checkpointed_scan_under_jax_grad_and_jit_of_a_raw_function():
    xs = xs_of(13, 9)

    def raw_entry(w, xs):
        states = make_states(w=w)
        ys, _ = ps.compile.checkpointed_scan(step, states, xs, block_size=4)
        return jnp.sum(ys**2)

    got = jax.jit(jax.grad(raw_entry))(W0, xs)
    ref = jax.grad(lambda w: jnp.sum(_raw_plain(w, xs) ** 2))(W0)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("block_size", [0, -2, 2.5, True, "4"])
def test_checkpointed_loops_reject_a_bad_block_size(block_size):
    with pytest.raises((TypeError, ValueError), match="block_size"):
        ps.compile.checkpointed_scan(step, make_states(), xs_of(4), block_size=block_size)
    with pytest.raises((TypeError, ValueError), match="block_size"):
        ps.compile.checkpointed_for_loop(step, make_states(), xs_of(4), block_size=block_size)


def test_checkpointed_scan_stores_far_less_for_reverse_mode():
    steps, width = 2000, 1000

    def wide_step(states, x):
        v = jnp.tanh(states["w"].value * states["v"].value + x)
        return jnp.sum(v), ps.set(states, "v", v)

    def loss(run):
        def f(w, xs):
            states = {"v": ps.ShortTermState(jnp.zeros(width)), "w": ps.ParamState(w)}
            ys, _ = run(wide_step, states, xs)
            return jnp.sum(ys)

        return f

    w, xs = jnp.full(width, 0.5), jnp.ones((steps, 1))
    temp = {}
    for name, run in (("scan", ps.compile.scan), ("checkpointed", ps.compile.checkpointed_scan)):
        analysis = jax.jit(jax.grad(loss(run))).lower(w, xs).compile().memory_analysis()
        if analysis is None or getattr(analysis, "temp_size_in_bytes", None) is None:
            pytest.skip("this backend gives no memory analysis of compiled programs")
        temp[name] = analysis.temp_size_in_bytes
    # scan stores every step's state (steps * width floats = 8 MB);
    # sqrt-blocking stores about 2 * sqrt(steps) of them.
    assert temp["scan"] >= steps * width * 4
    assert temp["checkpointed"] * 4 < temp["scan"], temp


# ------------------------------------------------------------ bounded_while_loop


def grow(states, i):
    x = states["x"].value * states["w"].value + 0.1
    return i + 1, ps.set(states, "x", x)


def below(limit):
    return lambda states, i: states["x"].value < limit


def grow_states(x=1.0, w=1.3):
    return {"x": ps.ParamState(jnp.float32(x)), "w": ps.ParamState(jnp.float32(w))}


def python_steps(limit, max_steps, x=1.0, w=1.3):
    """How many steps the loop runs, found with concrete numbers."""
    k = 0
    while k < max_steps and np.float32(x) < limit:
        x, k = np.float32(x) * np.float32(w) + np.float32(0.1), k + 1
    return k


def raw_steps(x, w, k):
    for _ in range(k):
        x = x * w + 0.1
    return x


@pytest.mark.parametrize(("base", "max_steps"), [(2, 20), (3, 10), (16, 100), (7, 8), (2, 9)])
def test_bounded_while_loop_equals_while_loop_when_the_condition_ends_it(base, max_steps):
    limit = 10.0
    k = python_steps(limit, 1000)
    assert k == 8 and k <= max_steps
    i, new = ps.compile.bounded_while_loop(
        below(limit), grow, grow_states(), 0, max_steps=max_steps, base=base
    )
    ref_i, ref_new = ps.compile.while_loop(below(limit), grow, grow_states(), 0)
    raw_x, raw_i = jax.lax.while_loop(
        lambda c: c[0] < limit,
        lambda c: (c[0] * 1.3 + 0.1, c[1] + 1),
        (jnp.float32(1.0), 0),
    )
    assert int(i) == int(ref_i) == int(raw_i) == k
    np.testing.assert_allclose(new["x"].value, raw_x, rtol=1e-6)
    ps.testing.assert_trees_allclose(new, ref_new)
    assert type(new["x"]) is ps.ParamState


@pytest.mark.parametrize(("base", "max_steps"), [(2, 0), (2, 1), (4, 5), (2, 17), (16, 16)])
def test_bounded_while_loop_stops_after_max_steps(base, max_steps):
    def count(states, i):
        return i + 1, ps.set(states, "x", states["x"].value * 1.5 + jnp.float32(i))

    i, new = ps.compile.bounded_while_loop(
        lambda s, i: True, count, grow_states(), 0, max_steps=max_steps, base=base
    )
    x, j = np.float32(1.0), 0
    for _ in range(max_steps):
        x, j = x * np.float32(1.5) + np.float32(j), j + 1
    assert int(i) == j == max_steps
    np.testing.assert_allclose(new["x"].value, x, rtol=1e-6)


@pytest.mark.parametrize(
    ("base", "limit", "max_steps"), [(2, 10.0, 30), (16, 10.0, 30), (3, 1e6, 5)]
)
def test_grad_through_bounded_while_loop_equals_the_python_loop(base, limit, max_steps):
    k = python_steps(limit, max_steps)
    assert k == min(8 if limit == 10.0 else 10**9, max_steps)

    def final_x(states):
        _, states = ps.compile.bounded_while_loop(
            below(limit), grow, states, 0, max_steps=max_steps, base=base
        )
        return states["x"].value, states

    grads, new = ps.augment.grad(final_x, ps.ParamState)(grow_states())
    ref_x, ref_w = jax.grad(raw_steps, argnums=(0, 1))(jnp.float32(1.0), jnp.float32(1.3), k)
    np.testing.assert_allclose(grads["x"].value, ref_x, rtol=1e-5)
    np.testing.assert_allclose(grads["w"].value, ref_w, rtol=1e-5)
    np.testing.assert_allclose(new["x"].value, raw_steps(1.0, 1.3, k), rtol=1e-5)

    def raw_entry(x, w):
        return final_x(grow_states(x, w))[0]

    got = jax.jit(jax.grad(raw_entry, argnums=(0, 1)))(jnp.float32(1.0), jnp.float32(1.3))
    np.testing.assert_allclose(got, (ref_x, ref_w), rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_steps": -1}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"max_steps": True}, "max_steps"),
        ({"max_steps": "3"}, "max_steps"),
        ({"max_steps": 4, "base": 1}, "base"),
        ({"max_steps": 4, "base": 0}, "base"),
        ({"max_steps": 4, "base": 2.0}, "base"),
    ],
)
def test_bounded_while_loop_rejects_bad_max_steps_and_base(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        ps.compile.bounded_while_loop(below(10.0), grow, grow_states(), 0, **kwargs)


def test_bounded_while_loop_requires_max_steps():
    with pytest.raises(TypeError, match="max_steps"):
        ps.compile.bounded_while_loop(below(10.0), grow, grow_states(), 0)


# ------------------------------------------------------------------ switch / ifelse


def branch_add(states, x):
    v = states["cell"]["v"].value + x
    return v * states["w"].value, ps.set(states, "cell/v", v)


def branch_double(states, x):
    v = states["cell"]["v"].value * 2.0
    n = states["cell"]["n"].value + 10
    return x - states["w"].value, ps.update(
        states, {"cell": {"v": ps.ShortTermState(v), "n": ps.LongTermState(n)}}
    )


def branch_sin(states, x):
    n = states["cell"]["n"].value + 1
    return jnp.sin(x), ps.set(states, "cell/n", n)


BRANCHES = [branch_add, branch_double, branch_sin]


def raw_branches(w):
    def add(v, n, x):
        v = v + x
        return v * w, v, n

    def double(v, n, x):
        return x - w, v * 2.0, n + 10

    def sine(v, n, x):
        return jnp.sin(x), v, n + 1

    return [add, double, sine]


@pytest.mark.parametrize("index", [-5, -1, 0, 1, 2, 3, 100])
def test_switch_equals_lax_switch_including_clamping(index):
    x = jnp.array([1.0, -2.0, 0.5])
    out, new = ps.compile.switch(index, BRANCHES, make_states(), x)
    ref_out, v, n = jax.lax.switch(index, raw_branches(W0), V0, jnp.int32(0), x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    assert_cell(new, v, n)
    python_branch = BRANCHES[min(max(index, 0), len(BRANCHES) - 1)]
    py_out, py_new = python_branch(make_states(), x)
    np.testing.assert_allclose(out, py_out, rtol=1e-6)
    ps.testing.assert_trees_allclose(new, py_new)


def test_switch_with_a_traced_index_under_jit():
    x = jnp.array([1.0, -2.0, 0.5])
    jitted = ps.compile.jit(lambda s, i, x: ps.compile.switch(i, BRANCHES, s, x))
    for index in (-2, 0, 1, 2, 7):
        out, new = jitted(make_states(), jnp.int32(index), x)
        ref_out, v, n = jax.lax.switch(jnp.int32(index), raw_branches(W0), V0, jnp.int32(0), x)
        np.testing.assert_allclose(out, ref_out, rtol=1e-6)
        assert_cell(new, v, n)


def test_grad_through_switch_equals_jax_grad_of_lax_switch():
    x = jnp.array([1.0, -2.0, 0.5])

    def loss(states, i, x):
        out, states = ps.compile.switch(i, BRANCHES, states, x)
        return jnp.sum(out**2), states

    def raw_loss(w, index):
        return jnp.sum(jax.lax.switch(index, raw_branches(w), V0, 0, x)[0] ** 2)

    for index in (0, 1):
        grads, _ = ps.augment.grad(loss, ps.ParamState)(make_states(), index, x)
        ref = jax.grad(raw_loss)(W0, index)
        np.testing.assert_allclose(grads["w"].value, ref, rtol=1e-5)


def test_switch_branch_changing_a_state_dtype_names_the_path_and_the_branch():
    def to_half(states, x):
        v = states["cell"]["v"].value.astype(jnp.float16)
        return x, ps.set(states, "cell/v", v)

    with pytest.raises(ps.StateError) as info:
        ps.compile.switch(0, [branch_add, to_half], make_states(), jnp.ones(3))
    message = str(info.value)
    assert "cell/v" in message and "to_half" in message
    assert "float16" in message and "float32" in message


def test_switch_branch_changing_a_state_shape_names_the_path_and_the_branch():
    def widen(states, x):
        v = jnp.concatenate([states["cell"]["v"].value, x])
        return x, ps.set(states, "cell/v", v)

    with pytest.raises(ps.StateError) as info:
        ps.compile.switch(1, [widen, branch_add], make_states(), jnp.ones(3))
    message = str(info.value)
    assert "cell/v" in message and "widen" in message
    assert re.search(r"\[3\]|\(3,\)", message) and re.search(r"\[6\]|\(6,\)", message)


def test_switch_branch_dropping_a_state_names_the_path():
    def drops(states, x):
        return x, {"w": states["w"], "cell": {"v": states["cell"]["v"]}}

    with pytest.raises(ps.StateError) as info:
        ps.compile.switch(0, [branch_add, drops], make_states(), jnp.ones(3))
    assert "cell/n" in str(info.value) and "drops" in str(info.value)


def test_switch_branches_with_different_outputs_name_both_branches():
    def pair(states, x):
        return (x, x), states

    with pytest.raises(ps.StateError) as info:
        ps.compile.switch(0, [branch_sin, pair], make_states(), jnp.ones(3))
    message = str(info.value)
    assert "branch_sin" in message and "pair" in message


def _python_ifelse(x, w):
    if x < 0:
        return -x * w, "neg"
    elif x < 10:
        return x + w, "small"
    else:
        return x * 0 + w, "large"


def ifelse_branches():
    def neg(states, x):
        return -x * states["w"].value, ps.set(states, "cell/n", states["cell"]["n"].value + 1)

    def small(states, x):
        return x + states["w"].value, ps.set(states, "cell/n", states["cell"]["n"].value + 2)

    def large(states, x):
        return x * 0 + states["w"].value, states

    return [neg, small, large]


@pytest.mark.parametrize("x", [-3.0, 0.0, 9.5, 10.0, 42.0])
def test_ifelse_takes_the_first_true_condition_else_the_last_branch(x):
    xs = jnp.float32(x)
    out, new = ps.compile.ifelse([xs < 0, xs < 10], ifelse_branches(), make_states(), xs)
    ref_out, taken = _python_ifelse(x, np.asarray(W0))
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    assert int(new["cell"]["n"].value) == {"neg": 1, "small": 2, "large": 0}[taken]

    # The same, traced under jit, with Python-bool and array conditions mixed.
    jitted = ps.compile.jit(
        lambda s, x: ps.compile.ifelse([x < 0, x < 10], ifelse_branches(), s, x)
    )
    out_jit, new_jit = jitted(make_states(), xs)
    np.testing.assert_allclose(out_jit, ref_out, rtol=1e-6)
    ps.testing.assert_trees_allclose(new_jit, new)


@pytest.mark.parametrize(
    ("conditions", "taken"),
    [([True, True, False], 0), ([False, True, True], 1), ([False, False, True], 2), ([], 0)],
)
def test_ifelse_with_python_conditions(conditions, taken):
    def label(k):
        return lambda states, x: (x + k, states)

    branches = [label(100 * k) for k in range(len(conditions) + 1)]
    out, _ = ps.compile.ifelse(conditions, branches, make_states(), jnp.float32(1.0))
    none_true = not any(conditions)
    assert float(out) == 1.0 + 100 * (len(conditions) if none_true else taken)


def test_switch_without_branches_is_a_value_error():
    with pytest.raises(ValueError, match="branch"):
        ps.compile.switch(0, [], make_states(), jnp.float32(1.0))


@pytest.mark.parametrize("n_branches", [1, 2, 4])
def test_ifelse_with_the_wrong_number_of_branches_is_a_value_error(n_branches):
    branches = [lambda s, x: (x, s)] * n_branches
    with pytest.raises(ValueError, match="branches"):
        ps.compile.ifelse([True, False], branches, make_states(), jnp.float32(1.0))


# ---------------------------------------------------------------------------- map


def predict(states, x):
    h = jnp.tanh(x["a"] @ states["w"].value[:, None] + states["cell"]["v"].value)
    return {"h": h, "s": jnp.sum(h) * x["b"]}, states


@pytest.mark.parametrize("batch_size", [None, 1, 3, 5, 12])
def test_map_equals_lax_map(batch_size):
    xs = {"a": jax.random.normal(jax.random.key(3), (10, 2, 3)), "b": jnp.arange(10.0)}
    states = make_states()
    ys, new = ps.compile.map(predict, states, xs, batch_size=batch_size)
    ref = jax.lax.map(lambda x: predict(states, x)[0], xs, batch_size=batch_size)
    python = [predict(states, jax.tree.map(lambda a, i=i: a[i], xs))[0] for i in range(10)]
    np.testing.assert_allclose(ys["h"], ref["h"], rtol=1e-6)
    np.testing.assert_allclose(ys["s"], ref["s"], rtol=1e-5)
    np.testing.assert_allclose(ys["h"], np.stack([p["h"] for p in python]), rtol=1e-5)
    ps.testing.assert_trees_allclose(new, states)


def test_map_writing_a_state_names_it():
    def writes(states, x):
        return x, ps.set(states, "cell/v", states["cell"]["v"].value + x)

    with pytest.raises(ps.StateError) as info:
        ps.compile.map(writes, make_states(), jnp.ones((4, 3)))
    message = str(info.value)
    assert "cell/v" in message
    assert "cell/n" not in message and "'w'" not in message


def _noisy(states, x):
    key, states = ps.random.split(states, "rng")
    return x + jax.random.normal(key, (2,)) * states["w"].value, states


def _key_data(key):
    return np.asarray(jax.random.key_data(key))


@pytest.mark.parametrize("batch_size", [None, 3])
def test_map_splits_random_states_per_element(batch_size):
    states = {"rng": ps.RandomState(jax.random.key(42)), "w": ps.ParamState(jnp.float32(1.0))}
    xs = jnp.zeros((8, 2))
    mapped = ps.compile.jit(lambda s, xs: ps.compile.map(_noisy, s, xs, batch_size=batch_size))
    ys, new = mapped(states, xs)
    assert ys.shape == (8, 2)
    # Every element draws from its own key.
    assert len({tuple(row) for row in np.asarray(ys).round(6)}) == 8
    # The state comes back advanced (a new key), and the kind is kept.
    assert type(new["rng"]) is ps.RandomState
    assert not np.array_equal(_key_data(new["rng"].value), _key_data(states["rng"].value))
    np.testing.assert_array_equal(new["w"].value, 1.0)
    # A pure function of its inputs: the same tree gives the same draws and key.
    ys2, new2 = mapped(states, xs) if batch_size else ps.compile.map(_noisy, states, xs)
    np.testing.assert_array_equal(ys2, ys)
    np.testing.assert_array_equal(_key_data(new2["rng"].value), _key_data(new["rng"].value))
    # The advanced state draws something else.
    ys3, _ = mapped(new, xs)
    assert not np.any(np.all(np.isclose(np.asarray(ys3), np.asarray(ys)), axis=1))


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_map_rejects_a_bad_batch_size(batch_size):
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        ps.compile.map(
            predict,
            make_states(),
            {"a": jnp.ones((4, 2, 3)), "b": jnp.ones(4)},
            batch_size=batch_size,
        )
