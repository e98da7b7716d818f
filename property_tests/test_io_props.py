"""restore(save(tree)) is tree, exactly, over random state trees."""

import itertools

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import purestate as ps


class Tagged(ps.LongTermState):
    """A user's kind, imported back by name (test_io_props:Tagged)."""

    __slots__ = ()


trees = ps.testing.state_trees(
    max_states=6,
    dtypes=(jnp.float32, jnp.int32, jnp.bool_, jnp.float16, jnp.int8, jnp.complex64),
    quantities=True,
    dict_values=True,
    kinds=(ps.ParamState, ps.ShortTermState, ps.LongTermState, ps.RandomState, Tagged),
)
_numbers = itertools.count()


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return tmp_path_factory.mktemp("io_props")


def assert_identical(a, b, where="<root>"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, ps.State):
        assert_identical(a.value, b.value, where)
    elif isinstance(a, u.Quantity):
        assert a.unit == b.unit and str(a.unit) == str(b.unit), where
        assert_identical(a.mantissa, b.mantissa, where)
    elif jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        assert jax.random.key_impl(a) == jax.random.key_impl(b), where
        assert_identical(jax.random.key_data(a), jax.random.key_data(b), where)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), where


# Each example writes a checkpoint (tens of ms): a third of the profile's count.
@settings(max_examples=max(5, settings().max_examples // 3))
@given(trees)
def test_restore_of_save_is_the_same_tree(directory, tree):
    path = directory / str(next(_numbers))
    ps.io.save(path, tree)
    back = ps.io.restore(path)
    assert_identical(tree, back)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    assert_identical(tree, ps.io.restore(path, like=tree))
