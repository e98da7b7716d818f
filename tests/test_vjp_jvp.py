"""ps.augment.vjp / jvp equal jax.vjp / jax.jvp of ``h(selected, *chosen_args)``
written over raw arrays, for nested state trees and several argnums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps

KEYS = jax.random.split(jax.random.key(0), 8)
ENC_W = jax.random.normal(KEYS[0], (2, 3))
ENC_B = jax.random.normal(KEYS[1], (3,))
DEC_W = jax.random.normal(KEYS[2], (3,))
HIDDEN = jax.random.normal(KEYS[3], (3,))
X = jax.random.normal(KEYS[4], (2,))
Y = jax.random.normal(KEYS[5], (3,))
SCALE = jnp.float32(1.7)
COT = jax.random.normal(KEYS[6], (3,))


def make_states():
    return {
        "enc": {"w": ps.ParamState(ENC_W), "b": ps.ParamState(ENC_B)},
        "dec": {"w": ps.ParamState(DEC_W)},
        "hidden": ps.ShortTermState(HIDDEN),
        "count": ps.LongTermState(jnp.int32(0)),
    }


def f(states, x, y, scale):
    """out = ((tanh(x W + b) + hidden / 2) * d) * scale + y; stores h, counts."""
    h = jnp.tanh(x @ states["enc"]["w"].value + states["enc"]["b"].value)
    out = (h + 0.5 * states["hidden"].value) * states["dec"]["w"].value * scale + y
    new = ps.update(
        states,
        {"hidden": ps.ShortTermState(h), "count": ps.LongTermState(states["count"].value + 1)},
    )
    return out, new


def f_aux(states, x, y, scale):
    out, new = f(states, x, y, scale)
    return (out, {"h": new["hidden"].value, "mean": jnp.mean(out)}), new


def raw(params, x, y, scale):
    h = jnp.tanh(x @ params["enc"]["w"] + params["enc"]["b"])
    return (h + 0.5 * HIDDEN) * params["dec"]["w"] * scale + y


PARAMS = {"enc": {"w": ENC_W, "b": ENC_B}, "dec": {"w": DEC_W}}
ARGS = (X, Y, SCALE)


def values(tree):
    """A state tree as the same dict of raw values."""
    return jax.tree.map(lambda s: s.value, tree, is_leaf=lambda s: isinstance(s, ps.State))


def assert_param_tree(tree, paths):
    flat = ps.flatten(tree)
    assert set(flat) == set(paths)
    assert all(type(s) is ps.ParamState for s in flat.values())


def assert_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert jax.tree.structure(a) == jax.tree.structure(b)


def assert_new_states(new):
    h = jnp.tanh(X @ ENC_W + ENC_B)
    np.testing.assert_allclose(new["hidden"].value, h, rtol=1e-6)
    assert type(new["hidden"]) is ps.ShortTermState
    assert int(new["count"].value) == 1
    np.testing.assert_array_equal(new["enc"]["w"].value, ENC_W)


ALL_PARAM_PATHS = [("enc", "w"), ("enc", "b"), ("dec", "w")]


def chosen(argnums):
    return argnums if isinstance(argnums, tuple) else (argnums,)


def raw_h(argnums, selected=True, sub=None):
    """h(selected, *chosen_args) over raw arrays; `sub` picks part of PARAMS."""
    positions = [a % 3 for a in chosen(argnums)]

    def h(*primals):
        params = PARAMS
        if selected:
            params = {**PARAMS, **primals[0]} if sub else primals[0]
            primals = primals[1:]
        args = list(ARGS)
        for i, p in zip(positions, primals, strict=True):
            args[i] = p
        return raw(params, *args)

    return h, positions


# -------------------------------------------------------------------------- vjp


@pytest.mark.parametrize("argnums", [(), 0, (0, 2), (2, 0), -1, (1,)])
def test_vjp_with_states_and_argnums_equals_jax_vjp(argnums):
    (out, vjp_fn), new = ps.augment.vjp(
        f, make_states(), *ARGS, grad_states=ps.ParamState, argnums=argnums
    )
    h, positions = raw_h(argnums)
    ref_out, ref_vjp = jax.vjp(h, PARAMS, *(ARGS[i] for i in positions))
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    cts = vjp_fn(COT)
    ref_cts = ref_vjp(COT)
    assert isinstance(cts, tuple) and len(cts) == 1 + len(positions)
    assert_param_tree(cts[0], ALL_PARAM_PATHS)
    assert_close(values(cts[0]), ref_cts[0])
    assert_close(cts[1:], ref_cts[1:])
    assert_new_states(new)


def test_vjp_of_a_nested_selection_by_path():
    (out, vjp_fn), new = ps.augment.vjp(f, make_states(), *ARGS, grad_states="enc", argnums=1)
    h, _ = raw_h(1, sub=True)
    ref_out, ref_vjp = jax.vjp(h, {"enc": PARAMS["enc"]}, Y)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    (states_ct, y_ct), (ref_states_ct, ref_y_ct) = vjp_fn(COT), ref_vjp(COT)
    assert_param_tree(states_ct, [("enc", "w"), ("enc", "b")])
    assert_close(values(states_ct), ref_states_ct)
    np.testing.assert_allclose(y_ct, ref_y_ct, rtol=1e-6)
    assert_new_states(new)


@pytest.mark.parametrize("argnums", [0, (0, 1), (2, 1, 0)])
def test_vjp_without_grad_states_differentiates_only_the_args(argnums):
    (out, vjp_fn), new = ps.augment.vjp(f, make_states(), *ARGS, argnums=argnums)
    h, positions = raw_h(argnums, selected=False)
    ref_out, ref_vjp = jax.vjp(h, *(ARGS[i] for i in positions))
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    cts, ref_cts = vjp_fn(COT), ref_vjp(COT)
    assert isinstance(cts, tuple) and len(cts) == len(positions)
    assert_close(cts, ref_cts)
    assert_new_states(new)


def test_vjp_with_aux():
    result, new = ps.augment.vjp(
        f_aux, make_states(), *ARGS, grad_states=ps.ParamState, argnums=(0,), has_aux=True
    )
    assert isinstance(result, tuple) and len(result) == 3
    out, vjp_fn, aux = result
    h, _ = raw_h((0,))
    ref_out, ref_vjp = jax.vjp(h, PARAMS, X)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    np.testing.assert_allclose(aux["h"], jnp.tanh(X @ ENC_W + ENC_B), rtol=1e-6)
    np.testing.assert_allclose(aux["mean"], jnp.mean(ref_out), rtol=1e-6)
    states_ct, x_ct = vjp_fn(COT)
    ref_states_ct, ref_x_ct = ref_vjp(COT)
    assert_close(values(states_ct), ref_states_ct)
    np.testing.assert_allclose(x_ct, ref_x_ct, rtol=1e-5)
    assert_new_states(new)


def test_vjp_of_a_dict_valued_state_keeps_its_structure():
    def g(states, x):
        p = states["layer"].value
        return jnp.tanh(x @ p["w"]) * p["scale"], states

    p = {"w": ENC_W, "scale": jnp.float32(2.0)}
    states = {"layer": ps.ParamState(p), "other": ps.LongTermState(jnp.ones(2))}
    (out, vjp_fn), _ = ps.augment.vjp(g, states, X, grad_states=ps.ParamState)
    ref_out, ref_vjp = jax.vjp(lambda p: jnp.tanh(X @ p["w"]) * p["scale"], p)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    (ct,) = vjp_fn(COT)
    assert set(ct) == {"layer"} and type(ct["layer"]) is ps.ParamState
    assert_close(ct["layer"].value, ref_vjp(COT)[0])


def test_vjp_composes_with_jit():
    def grads_of(states, x, y, scale, cot):
        (_, vjp_fn), new = ps.augment.vjp(f, states, x, y, scale, grad_states=ps.ParamState)
        return vjp_fn(cot)[0], new

    cts, new = ps.compile.jit(grads_of)(make_states(), *ARGS, COT)
    h, _ = raw_h(())
    assert_close(values(cts), jax.vjp(h, PARAMS)[1](COT)[0])
    assert_new_states(new)


# -------------------------------------------------------------------------- jvp


def param_tangent(seed=7):
    keys = jax.random.split(jax.random.key(seed), 3)
    return {
        "enc": {"w": jax.random.normal(keys[0], (2, 3)), "b": jax.random.normal(keys[1], (3,))},
        "dec": {"w": jax.random.normal(keys[2], (3,))},
    }


def as_param_states(tree):
    return jax.tree.map(ps.ParamState, tree)


ARG_TANGENTS = (jnp.array([0.3, -0.2]), jnp.array([1.0, 0.0, -1.0]), jnp.float32(0.5))


@pytest.mark.parametrize("argnums", [(), 0, (0, 2), -1])
def test_jvp_with_states_and_argnums_equals_jax_jvp(argnums):
    h, positions = raw_h(argnums)
    tangent = param_tangent()
    tangents = (as_param_states(tangent), *(ARG_TANGENTS[i] for i in positions))
    (out, out_tangent), new = ps.augment.jvp(
        f, make_states(), ARGS, tangents, grad_states=ps.ParamState, argnums=argnums
    )
    ref_out, ref_tangent = jax.jvp(
        h,
        (PARAMS, *(ARGS[i] for i in positions)),
        (tangent, *(ARG_TANGENTS[i] for i in positions)),
    )
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    np.testing.assert_allclose(out_tangent, ref_tangent, rtol=1e-5, atol=1e-6)
    assert_new_states(new)


@pytest.mark.parametrize("argnums", [1, (0, 1)])
def test_jvp_without_grad_states(argnums):
    h, positions = raw_h(argnums, selected=False)
    tangents = tuple(ARG_TANGENTS[i] for i in positions)
    (out, out_tangent), new = ps.augment.jvp(f, make_states(), ARGS, tangents, argnums=argnums)
    ref_out, ref_tangent = jax.jvp(h, tuple(ARGS[i] for i in positions), tangents)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    np.testing.assert_allclose(out_tangent, ref_tangent, rtol=1e-5, atol=1e-6)
    assert_new_states(new)


def test_jvp_with_aux_and_a_list_of_args():
    tangent = param_tangent(3)
    result, new = ps.augment.jvp(
        f_aux,
        make_states(),
        list(ARGS),
        [as_param_states(tangent), ARG_TANGENTS[2]],
        grad_states=ps.ParamState,
        argnums=2,
        has_aux=True,
    )
    assert isinstance(result, tuple) and len(result) == 3
    out, out_tangent, aux = result
    h, _ = raw_h(2)
    ref_out, ref_tangent = jax.jvp(h, (PARAMS, SCALE), (tangent, ARG_TANGENTS[2]))
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    np.testing.assert_allclose(out_tangent, ref_tangent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aux["mean"], jnp.mean(ref_out), rtol=1e-6)
    assert_new_states(new)


def test_jvp_and_vjp_are_transposes():
    # <vjp(c), t> == <c, jvp(t)> for the selected states and the first argument.
    tangent = param_tangent(11)
    (_, vjp_fn), _ = ps.augment.vjp(f, make_states(), *ARGS, grad_states=ps.ParamState, argnums=0)
    states_ct, x_ct = vjp_fn(COT)
    (_, out_tangent), _ = ps.augment.jvp(
        f, make_states(), ARGS, (as_param_states(tangent), ARG_TANGENTS[0]), ps.ParamState, 0
    )
    pairs = zip(jax.tree.leaves(values(states_ct)), jax.tree.leaves(tangent), strict=True)
    lhs = sum(jnp.vdot(a, b) for a, b in pairs) + jnp.vdot(x_ct, ARG_TANGENTS[0])
    np.testing.assert_allclose(lhs, jnp.vdot(COT, out_tangent), rtol=1e-4)


# ----------------------------------------------------------------------- errors


def test_nothing_to_differentiate_is_an_error():
    with pytest.raises((TypeError, ValueError), match="argnums"):
        ps.augment.vjp(f, make_states(), *ARGS)
    with pytest.raises((TypeError, ValueError), match="argnums"):
        ps.augment.jvp(f, make_states(), ARGS, ())


@pytest.mark.parametrize("n_tangents", [0, 1, 3])
def test_jvp_with_the_wrong_number_of_tangents_is_an_error(n_tangents):
    tangents = (as_param_states(param_tangent()), *ARG_TANGENTS)[:n_tangents]
    with pytest.raises((TypeError, ValueError), match="tangent"):
        ps.augment.jvp(f, make_states(), ARGS, tangents, grad_states=ps.ParamState, argnums=0)


def test_has_aux_with_an_output_that_is_not_a_pair_is_a_type_error():
    def triple(states, x, y, scale):
        out, new = f(states, x, y, scale)
        return (out, out, out), new

    with pytest.raises(TypeError, match="has_aux"):
        ps.augment.vjp(f, make_states(), *ARGS, grad_states=ps.ParamState, has_aux=True)
    with pytest.raises(TypeError, match="has_aux"):
        ps.augment.vjp(triple, make_states(), *ARGS, argnums=0, has_aux=True)
    with pytest.raises(TypeError, match="has_aux"):
        ps.augment.jvp(triple, make_states(), ARGS, (ARG_TANGENTS[0],), argnums=0, has_aux=True)


def test_grad_states_matching_nothing_lists_the_paths():
    with pytest.raises(ps.StateError) as info:
        ps.augment.vjp(f, make_states(), *ARGS, grad_states=ps.RandomState)
    assert "enc/w" in str(info.value) and "count" in str(info.value)


@pytest.mark.parametrize("argnums", [3, -4, (0, 0), 1.0])
def test_bad_argnums_are_named(argnums):
    with pytest.raises((TypeError, ValueError), match="argnums"):
        ps.augment.vjp(f, make_states(), *ARGS, argnums=argnums)
