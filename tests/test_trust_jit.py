"""ps.compile.jit: static arguments follow jax.jit's rules, calls with the
wrong convention say what the convention is, and non-array leaves never
change what a later call (or .lower) accepts."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def tree():
    return {"w": ps.ParamState(jnp.arange(3.0) + 0.123)}


def repeat(states, x, n):
    """Python control flow on n: needs n static."""
    for _ in range(n):
        x = x * 2.0 + states["w"].value
    return x, states


def by_mode(states, x, mode):
    if mode == "double":
        return x * 2.0, states
    return x * 3.0, states


def raw_repeat(x, n):
    return repeat(tree(), x, n)[0]


# ------------------------------------------------------------- static arguments


def test_negative_static_argnums_makes_the_last_user_argument_static():
    """static_argnums=-1 marks the last positional argument static, as jax.jit does."""
    f = ps.compile.jit(repeat, static_argnums=-1)
    ref = jax.jit(raw_repeat, static_argnums=-1)
    x = jnp.ones(3)
    for n in (3, 5, 3):
        out, new = f(tree(), x, n)
        np.testing.assert_allclose(out, ref(x, n), rtol=1e-6)
        np.testing.assert_allclose(new["w"].value, tree()["w"].value)


def test_negative_static_argnums_works_with_a_string_argument():
    """static_argnums=-1 with a string that selects a branch follows the string."""
    f = ps.compile.jit(by_mode, static_argnums=-1)
    x = jnp.arange(3.0)
    for mode in ("double", "triple", "double"):
        out, _ = f(tree(), x, mode)
        np.testing.assert_allclose(out, by_mode(tree(), x, mode)[0])


def test_negative_static_argnums_among_several_arguments_matches_jax_jit():
    """static_argnums=(-2,) picks the second-to-last positional argument, as jax.jit does."""

    def f(states, x, n, scale):
        out, states = repeat(states, x, n)
        return out * scale, states

    jitted = ps.compile.jit(f, static_argnums=(-2,))
    ref = jax.jit(lambda x, n, scale: f(tree(), x, n, scale)[0], static_argnums=(-2,))
    x = jnp.ones(3)
    for n, scale in ((2, 0.5), (4, 1.5)):
        np.testing.assert_allclose(jitted(tree(), x, n, scale)[0], ref(x, n, scale), rtol=1e-6)


@pytest.mark.parametrize("how", ["positional", "keyword"])
def test_static_argnames_is_static_however_the_argument_is_passed(how):
    """static_argnames='n' makes n static whether it is passed by name or position."""
    f = ps.compile.jit(repeat, static_argnames="n")
    ref = jax.jit(raw_repeat, static_argnames="n")
    x = jnp.ones(3)
    for n in (2, 4):
        out, _ = f(tree(), x, n) if how == "positional" else f(tree(), x, n=n)
        np.testing.assert_allclose(out, ref(x, n) if how == "positional" else ref(x, n=n))


def test_static_argnums_is_static_when_passed_by_keyword():
    """static_argnums=1 makes n static also when it is passed as n=..., as jax.jit does."""
    f = ps.compile.jit(repeat, static_argnums=1)
    ref = jax.jit(raw_repeat, static_argnums=1)
    x = jnp.ones(3)
    for n in (2, 3):
        np.testing.assert_allclose(f(tree(), x, n=n)[0], ref(x, n=n))


# --------------------------------------------------------- calling convention


def assert_states_first_message(message, states):
    assert re.search(r"\(states\b", message), message  # spells out f(states, ...)
    assert repr(states) not in message, message
    assert "0.123" not in message, message
    assert "Tracer" not in message, message


def test_states_in_second_position_is_a_type_error_explaining_the_convention():
    """sim(n, states) jitted with static_argnums=0: TypeError saying states come first."""

    @ps.compile.jit(static_argnums=0)
    def sim(n, states):
        return n, states

    states = tree()
    with pytest.raises(TypeError) as info:
        sim(3, states)
    assert_states_first_message(str(info.value), states)


@pytest.mark.parametrize("bad", [5, "states", jnp.ones(3)], ids=["int", "str", "array"])
def test_a_non_tree_as_states_is_a_type_error_naming_the_convention(bad):
    """A non-tree where the states go is a TypeError naming f(states, *args), not a tracer."""
    f = ps.compile.jit(lambda states, x: (x, states))
    with pytest.raises(TypeError) as info:
        f(bad, jnp.ones(2))
    message = str(info.value)
    assert re.search(r"\(states\b", message) or "state tree" in message, message
    assert "Tracer" not in message, message


# ---------------------------------------------------------- non-array leaves


def mlp():
    return eqx.nn.MLP(2, 2, 4, 1, key=jax.random.key(0))


def step(states, x):
    """Uses the MLP if present, increments the counter if present."""
    out = x
    if "net" in states:
        out = states["net"].value(x)
    if "count" in states:
        states = ps.set(states, "count", states["count"].value + 1)
    return out, states


TREES = {
    "mlp": lambda: {"net": ps.ParamState(mlp())},
    "int_counter": lambda: {"count": ps.LongTermState(0)},
    "array_counter": lambda: {"count": ps.LongTermState(jnp.asarray(5))},
    "both": lambda: {"net": ps.ParamState(mlp()), "count": ps.LongTermState(0)},
}


def check_against_eager(out, new, states, x):
    ref_out, ref_new = step(states, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), rtol=1e-6)
    assert list(new) == list(ref_new)
    if "count" in new:
        assert int(new["count"].value) == int(ref_new["count"].value)
    if "net" in new:
        assert new["net"].value.activation is states["net"].value.activation


@pytest.mark.parametrize(
    "order",
    [
        ("mlp", "int_counter", "array_counter", "both"),
        ("int_counter", "mlp", "both", "int_counter"),
        ("both", "int_counter", "mlp"),
    ],
)
def test_one_jitted_function_accepts_every_tree_in_any_order(order):
    """After a call with a non-array leaf, later calls with a Python-int counter still work."""
    jitted = ps.compile.jit(step)
    x = jnp.array([0.5, -1.0])
    for name in order:
        states = TREES[name]()
        out, new = jitted(states, x)
        check_against_eager(out, new, states, x)


@pytest.mark.parametrize("name", list(TREES))
def test_lower_and_compile_accept_every_tree_a_call_accepts(name):
    """.lower(states, x) works on every tree and the compiled function equals eager."""
    jitted = ps.compile.jit(step)
    x = jnp.array([0.5, -1.0])
    states = TREES[name]()
    out, new = jitted.lower(states, x).compile()(states, x)
    check_against_eager(out, new, states, x)


def test_lower_after_a_call_with_a_non_array_leaf_still_works():
    """.lower on a plain-array tree after a call with an MLP tree works."""
    jitted = ps.compile.jit(step)
    x = jnp.array([0.5, -1.0])
    jitted(TREES["mlp"](), x)
    states = TREES["array_counter"]()
    out, new = jitted.lower(states, x).compile()(states, x)
    check_against_eager(out, new, states, x)


def test_jit_rejects_a_function_that_changes_a_non_array_leaf():
    """Changing an MLP's activation function inside jit raises StateError naming the state."""

    def swap_activation(states, x):
        net = eqx.tree_at(lambda m: m.activation, states["net"].value, jax.nn.tanh)
        return x, ps.set(states, "net", net)

    states = {"net": ps.ParamState(mlp()), "w": ps.ParamState(jnp.ones(2))}
    with pytest.raises(ps.StateError, match="'net'") as info:
        ps.compile.jit(swap_activation)(states, jnp.ones(2))
    assert "'w'" not in str(info.value)
