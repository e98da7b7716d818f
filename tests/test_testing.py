"""ps.testing: lazy import, what `state_trees` generates, and
`assert_trees_allclose` against `numpy.testing.assert_allclose`."""

import re
import subprocess
import sys
import textwrap

import brainunit as u
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import find, given, settings

import purestate as ps

# At most 25 examples (fewer if the loaded profile asks for fewer): this file stays fast.
fast = settings(max_examples=min(settings.default.max_examples, 25), deadline=None)


class CustomKey(ps.RandomState):
    """A user's own kind of random state."""


def states_of(tree):
    """The states of a tree, found by JAX rather than by ps.flatten."""
    return jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, ps.State))


def keys_of(tree):
    return {key for path in ps.flatten(tree) for key in path}


# -- lazy import --------------------------------------------------------------


def test_import_purestate_does_not_import_hypothesis_and_testing_loads_on_use():
    script = textwrap.dedent(
        """
        import sys
        import purestate
        assert "hypothesis" not in sys.modules, "import purestate imported hypothesis"
        assert "purestate.testing" not in sys.modules
        assert "testing" in purestate.__all__ and "testing" in dir(purestate)
        strategy = purestate.testing.state_trees()
        assert "hypothesis" in sys.modules
        from purestate import testing
        import purestate.testing as again
        assert testing is again is purestate.testing is sys.modules["purestate.testing"]
        assert strategy is not None
        try:
            purestate.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("no AttributeError")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- state_trees: RandomState holds a real key --------------------------------


def assert_real_key(state):
    value = state.value
    assert jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key), value
    assert value.shape == ()
    reference = jax.random.key(0)
    assert str(jax.random.key_impl(value)) == str(jax.random.key_impl(reference))
    assert jax.random.key_data(value).shape == jax.random.key_data(reference).shape
    assert jax.random.uniform(value).shape == ()


@fast
@given(ps.testing.state_trees(kinds=(ps.RandomState,)))
def test_random_states_hold_typed_keys(tree):
    states = states_of(tree)
    assert states and all(type(s) is ps.RandomState for s in states)
    for state in states:
        assert_real_key(state)


@fast
@given(ps.testing.state_trees(kinds=(ps.ParamState, ps.RandomState, CustomKey), quantities=True))
def test_random_states_mixed_with_other_kinds_hold_typed_keys(tree):
    for state in states_of(tree):
        if isinstance(state, ps.RandomState):
            assert_real_key(state)
        else:
            for leaf in jax.tree.leaves(state.value):
                assert not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    ps.testing.assert_trees_allclose(tree, jax.tree.map(lambda x: x, tree))


def test_random_state_seeds_are_drawn():
    strategy = ps.testing.state_trees(kinds=(ps.RandomState,), min_states=1, max_states=1)
    seed_zero = np.asarray(jax.random.key_data(jax.random.key(0)))

    def other_seed(tree):
        (state,) = states_of(tree)
        return not np.array_equal(jax.random.key_data(state.value), seed_zero)

    tree = find(strategy, other_seed, settings=settings(database=None, max_examples=50))
    (state,) = states_of(tree)
    # Seed 1 is the simplest other seed.
    np.testing.assert_array_equal(
        jax.random.key_data(state.value), jax.random.key_data(jax.random.key(1))
    )


# -- state_trees: min_states and max_states hold ------------------------------


@fast
@given(st.data())
def test_number_of_states_is_within_min_and_max(data):
    lo = data.draw(st.integers(0, 7), label="min_states")
    hi = data.draw(st.integers(lo, 9), label="max_states")
    depth = data.draw(st.integers(1, 3), label="max_depth")
    tree = data.draw(ps.testing.state_trees(min_states=lo, max_states=hi, max_depth=depth))
    flat = ps.flatten(tree)
    assert len(flat) == len(states_of(tree))
    assert lo <= len(flat) <= hi
    assert all(1 <= len(path) <= depth for path in flat)


@fast
@given(ps.testing.state_trees(min_states=5, max_states=5))
def test_exactly_five_states_when_min_equals_max(tree):
    assert len(ps.flatten(tree)) == 5
    assert len(states_of(tree)) == 5


def test_zero_states_gives_the_empty_tree():
    tree = find(ps.testing.state_trees(min_states=0, max_states=0), lambda t: True)
    assert tree == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_states": 3, "max_states": 2}, "min_states.*<= max_states.*3.*2"),
        ({"min_states": -1}, "min_states must be >= 0.*-1"),
        ({"max_depth": 0}, "max_depth"),
        ({"kinds": ()}, "kinds"),
    ],
)
def test_bad_arguments_raise_value_error_at_once(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ps.testing.state_trees(**kwargs)


# -- state_trees: keys --------------------------------------------------------

KEY = re.compile(r"[A-Za-z0-9_]{1,8}")


@fast
@given(ps.testing.state_trees(max_states=8))
def test_keys_are_non_empty_identifiers_without_slashes(tree):
    for key in keys_of(tree):
        assert isinstance(key, str) and key and "/" not in key
        assert KEY.fullmatch(key), key
    assert ps.unflatten(ps.flatten(tree)) == tree


def test_keys_cover_more_than_a_few_letters():
    seen = set()

    @settings(max_examples=30, database=None, derandomize=True)
    @given(ps.testing.state_trees(max_states=8))
    def collect(tree):
        seen.update(keys_of(tree))

    collect()
    assert all(KEY.fullmatch(k) for k in seen)
    assert any(len(k) >= 3 for k in seen)
    assert any(c.isupper() for k in seen for c in k)
    assert any(c.isdigit() for k in seen for c in k)
    assert any("_" in k for k in seen)
    assert len(seen - set("abcdef")) >= 20


def test_keys_shrink_to_short_ones():
    tree = find(
        ps.testing.state_trees(max_states=2, max_depth=2, shapes=st.just(())),
        lambda t: any(len(k) >= 3 for k in keys_of(t)),
        settings=settings(database=None),
    )
    assert max(len(k) for k in keys_of(tree)) == 3, tree


# -- assert_trees_allclose against numpy.testing.assert_allclose ---------------

RTOL, ATOL = 1e-5, 1e-6


@st.composite
def leaves(draw):
    """A number or an array, as Python, NumPy or JAX, of a few dtypes and shapes."""
    shape = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    values = draw(st.lists(st.floats(-3, 3, width=16), min_size=int(np.prod(shape)), max_size=6))[
        : int(np.prod(shape))
    ]
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64, np.int32]))
    array = np.asarray(values, dtype=np.float64).reshape(shape)
    form = draw(st.sampled_from(["python", "numpy", "jax"] if shape == () else ["numpy", "jax"]))
    if form == "python":
        number = float(array)
        return int(number) if dtype == np.int32 else number
    array = array.astype(dtype)
    return jnp.asarray(array) if form == "jax" else array


@st.composite
def leaf_pairs(draw):
    a = draw(leaves())
    kind = draw(st.sampled_from(["recast", "nudged", "other"]))
    if kind == "other":
        return a, draw(leaves())
    b = np.asarray(a, dtype=draw(st.sampled_from([np.float32, np.float64])))
    if kind == "nudged":
        b = b + draw(st.sampled_from([1e-9, 1e-7, 1e-4, 1.0]))
    if np.ndim(a) == 0 and draw(st.booleans()):
        return a, float(b)
    return a, draw(st.sampled_from([b, jnp.asarray(b)]))


def numpy_says_close(a, b):
    try:
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    except AssertionError:
        return False
    return True


@settings(max_examples=min(settings.default.max_examples * 2, 60), deadline=None)
@given(leaf_pairs(), st.booleans())
def test_leaves_compare_as_numpy_assert_allclose(pair, in_states):
    a, b = pair
    if in_states:  # the values numpy compares are what the states hold
        a, b = ps.ParamState(a), ps.ParamState(b)
        close = numpy_says_close(a.value, b.value)
    else:
        close = numpy_says_close(a, b)
    tree_a, tree_b = {"lif": {"V": a}}, {"lif": {"V": b}}
    if close:
        ps.testing.assert_trees_allclose(tree_a, tree_b, rtol=RTOL, atol=ATOL)
    else:
        with pytest.raises(AssertionError, match="'lif/V'"):
            ps.testing.assert_trees_allclose(tree_a, tree_b, rtol=RTOL, atol=ATOL)


def test_a_python_float_equals_a_float32_array_holding_it():
    np.testing.assert_allclose(0.1, np.float32(0.1), rtol=RTOL)  # the reference agrees
    ps.testing.assert_trees_allclose({"x": 0.1}, {"x": jnp.float32(0.1)})
    ps.testing.assert_trees_allclose({"x": jnp.asarray(0.1)}, {"x": 0.1})
    ps.testing.assert_trees_allclose({"n": 3}, {"n": jnp.asarray(3.0)})
    ps.testing.assert_trees_allclose(
        {"w": ps.ParamState(jnp.ones(2, jnp.float16))}, {"w": ps.ParamState(np.ones(2))}
    )


def test_shapes_must_match_except_that_scalars_broadcast_as_in_numpy():
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(np.ones(1), np.ones(3))
    with pytest.raises(AssertionError, match="(?s)'w'.*shapes"):
        ps.testing.assert_trees_allclose({"w": np.ones(1)}, {"w": np.ones(3)})
    np.testing.assert_allclose(1.0, np.ones(3))
    ps.testing.assert_trees_allclose({"w": 1.0}, {"w": np.ones(3)})


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (
            ps.ParamState(jnp.ones(2)),
            ps.ShortTermState(jnp.ones(2)),
            "ParamState vs ShortTermState",
        ),
        (
            ps.RandomState(jax.random.key(0)),
            CustomKey(jax.random.key(0)),
            "RandomState vs CustomKey",
        ),
        ({"V": ps.ParamState(1.0)}, {"W": ps.ParamState(1.0)}, r"only in a: \['V'\].*\['W'\]"),
        (ps.ParamState(jnp.ones(2) * u.mV), ps.ParamState(jnp.ones(2) * u.mA), "mV vs mA"),
        (ps.ParamState(jnp.ones(2) * u.mV), ps.ParamState(jnp.ones(2)), "Quantity"),
        (ps.ParamState(jnp.ones(2)), jnp.ones(2), "ParamState"),
    ],
    ids=["kinds", "subclass", "keys", "units", "unit-vs-none", "state-vs-array"],
)
def test_structure_is_still_compared_and_the_path_named(a, b, match):
    # Numerically equal values, so only the structure can differ.
    with pytest.raises(AssertionError, match=f"'lif/V'.*{match}"):
        ps.testing.assert_trees_allclose({"lif": {"V": a}}, {"lif": {"V": b}})


def test_typed_keys_compare_by_key_data():
    def key_tree(key):
        return {"rng": ps.RandomState(key)}

    ps.testing.assert_trees_allclose(key_tree(jax.random.key(3)), key_tree(jax.random.key(3)))
    # A typed key equals the raw uint32[2] key of the same seed, as their data agree.
    ps.testing.assert_trees_allclose(key_tree(jax.random.key(3)), key_tree(jax.random.PRNGKey(3)))
    with pytest.raises(AssertionError, match="'rng'"):
        ps.testing.assert_trees_allclose(key_tree(jax.random.key(3)), key_tree(jax.random.key(4)))
    with pytest.raises(AssertionError, match="implementations differ at 'rng'"):
        ps.testing.assert_trees_allclose(
            key_tree(jax.random.key(3)), key_tree(jax.random.key(3, impl="rbg"))
        )


def test_the_first_differing_value_is_named_by_its_path():
    a = {"layer_0": {"w": ps.ParamState(jnp.ones(3)), "b": ps.ParamState(jnp.zeros(3))}}
    b = {"layer_0": {"w": ps.ParamState(jnp.ones(3)), "b": ps.ParamState(jnp.full(3, 0.5))}}
    with pytest.raises(AssertionError, match="Values differ at 'layer_0/b'"):
        ps.testing.assert_trees_allclose(a, b)


def test_unsigned_dtypes_get_non_negative_values():
    """state_trees(dtypes=(uint8,)) draws values an unsigned array can hold."""
    seen = []

    @settings(max_examples=10)
    @given(ps.testing.state_trees(dtypes=(jnp.uint8,)))
    def draw(tree):
        for state in ps.flatten(tree).values():
            seen.append(np.asarray(state.value))

    draw()
    assert seen and all(a.dtype == np.uint8 and (a >= 0).all() for a in seen)
