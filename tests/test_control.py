import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def step(states, x):
    v = 0.9 * states["v"].value + x
    n = states["n"].value + 1
    return v.sum(), ps.update(states, {"v": ps.ShortTermState(v), "n": ps.LongTermState(n)})


def init():
    return {"v": ps.ShortTermState(jnp.zeros(2)), "n": ps.LongTermState(jnp.zeros((), jnp.int32))}


def test_scan_matches_python_loop_and_lax_scan():
    xs = jnp.arange(10.0).reshape(5, 2)
    ys, final = ps.compile.scan(step, init(), xs)
    states, loop_ys = init(), []
    for x in xs:
        y, states = step(states, x)
        loop_ys.append(y)
    np.testing.assert_allclose(ys, np.stack(loop_ys), rtol=1e-6)
    ps.testing.assert_trees_allclose(final, states)

    def raw(v, x):
        v = 0.9 * v + x
        return v, v.sum()

    v, raw_ys = jax.lax.scan(raw, jnp.zeros(2), xs, reverse=True)
    ys_rev, final_rev = ps.compile.scan(step, init(), xs, reverse=True)
    np.testing.assert_allclose(ys_rev, raw_ys, rtol=1e-6)
    np.testing.assert_allclose(final_rev["v"].value, v, rtol=1e-6)


def test_for_loop_passes_several_sequences():
    def f(states, a, b):
        return step(states, a * b)

    a, b = jnp.ones((4, 2)), jnp.arange(8.0).reshape(4, 2)
    ys, final = ps.compile.for_loop(f, init(), a, b)
    ys_ref, final_ref = ps.compile.scan(step, init(), a * b)
    np.testing.assert_allclose(ys, ys_ref)
    ps.testing.assert_trees_allclose(final, final_ref)
    assert int(final["n"].value) == 4


def test_while_loop_matches_python():
    def body(states, i):
        _, states = step(states, jnp.ones(2))
        return i + 1, states

    i, final = ps.compile.while_loop(lambda s, i: s["v"].value[0] < 3.0, body, init(), 0)
    states, j = init(), 0
    while states["v"].value[0] < 3.0:
        j, states = body(states, j)
    assert int(i) == j
    ps.testing.assert_trees_allclose(final, states)


@pytest.mark.parametrize("pred", [True, False])
def test_cond_threads_states_through_either_branch(pred):
    def reset(states, x):
        return -x.sum(), ps.set(states, "v", jnp.zeros(2))

    out, final = ps.compile.cond(pred, step, reset, init(), jnp.ones(2))
    ref_out, ref_states = (step if pred else reset)(init(), jnp.ones(2))
    np.testing.assert_allclose(out, ref_out)
    ps.testing.assert_trees_allclose(final, ref_states)


def test_a_state_changing_shape_in_a_loop_names_path_and_shapes():
    def grows(states, x):
        return x, ps.set(states, "v", jnp.concatenate([states["v"].value, x[None]]))

    with pytest.raises(ps.StateError) as info:
        ps.compile.scan(grows, init(), jnp.ones(3))
    message = str(info.value)
    assert "'v'" in message and "float32[2]" in message and "float32[3]" in message


def test_a_state_changing_dtype_in_a_loop_is_an_error():
    def casts(states, x):
        return x, ps.set(states, "n", states["n"].value.astype(jnp.float32))

    with pytest.raises(ps.StateError, match=r"'n'.*int32.*float32"):
        ps.compile.scan(casts, init(), jnp.ones(3))


def test_cond_branches_with_different_state_layouts_are_an_error():
    def other(states, x):
        return x.sum(), ps.set(states, "v", jnp.zeros(3))

    with pytest.raises(ps.StateError, match="'v'"):
        ps.compile.cond(True, step, other, init(), jnp.ones(2))
