import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purestate as ps


def test_state_is_a_pytree_node_with_one_child():
    s = ps.ParamState(jnp.arange(3.0))
    leaves, treedef = jax.tree.flatten(s)
    assert len(leaves) == 1
    np.testing.assert_array_equal(leaves[0], np.arange(3.0))
    assert type(jax.tree.unflatten(treedef, leaves)) is ps.ParamState


def test_states_are_frozen():
    s = ps.ShortTermState(jnp.zeros(2))
    with pytest.raises(AttributeError, match="immutable"):
        s.value = jnp.ones(2)


def test_replace_keeps_the_kind_and_leaves_the_original():
    s = ps.LongTermState(jnp.zeros(2))
    t = s.replace(jnp.ones(2))
    assert type(t) is ps.LongTermState
    np.testing.assert_array_equal(s.value, np.zeros(2))
    np.testing.assert_array_equal(t.value, np.ones(2))


def test_python_floats_become_arrays_also_in_quantities():
    s = ps.ParamState(0.5)
    assert isinstance(s.value, jax.Array) and s.value.dtype == jnp.float32
    q = ps.ParamState(0.5 * u.mV)
    assert isinstance(q.value.mantissa, jax.Array)
    assert q.value.unit == u.mV
    assert jax.grad(lambda st: st.value**2)(ps.ParamState(3.0)).value == 6.0


def test_treedef_distinguishes_kinds_and_structures():
    structure = jax.tree.structure
    assert structure(ps.ParamState(1.0)) == structure(ps.ParamState(2.0))
    assert structure(ps.ParamState(1.0)) != structure(ps.ShortTermState(1.0))
    assert structure(ps.ParamState({"a": 1.0})) != structure(ps.ParamState(1.0))


def test_user_subclasses_are_registered_automatically():
    class Synapse(ps.ShortTermState):
        pass

    s = Synapse(jnp.ones(2))
    leaves, treedef = jax.tree.flatten({"g": s})
    assert len(leaves) == 1  # a leaf would be the state object itself
    assert type(jax.tree.unflatten(treedef, leaves)["g"]) is Synapse
    doubled = jax.tree.map(lambda x: 2 * x, s)
    assert type(doubled) is Synapse
    np.testing.assert_array_equal(doubled.value, 2 * np.ones(2))


def test_random_state_holds_typed_and_raw_keys():
    typed = ps.RandomState(jax.random.key(0))
    raw = ps.RandomState(jax.random.PRNGKey(0))
    assert jax.dtypes.issubdtype(typed.value.dtype, jax.dtypes.prng_key)
    assert raw.value.dtype == jnp.uint32


def test_state_works_inside_jit():
    @jax.jit
    def f(tree):
        return jax.tree.map(lambda x: x + 1, tree)

    out = f({"w": ps.ParamState(jnp.zeros(2))})
    assert type(out["w"]) is ps.ParamState
    np.testing.assert_array_equal(out["w"].value, np.ones(2))
