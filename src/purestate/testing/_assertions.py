"""Comparing state trees (and any pytrees) leaf by leaf."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["assert_trees_allclose"]


def _is_key_array(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def assert_trees_allclose(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Assert that two pytrees have the same structure (state kinds, dict keys,
    brainunit units) and leaves equal to tolerance, naming the first path that
    differs.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> a = {"w": ps.ParamState(jnp.ones(2))}
        >>> ps.testing.assert_trees_allclose(a, {"w": ps.ParamState(jnp.ones(2) + 1e-7)})
        >>> try:
        ...     ps.testing.assert_trees_allclose(a, {"w": ps.ShortTermState(jnp.ones(2))})
        ... except AssertionError:
        ...     print("kinds differ")
        kinds differ
    """
    leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    if tree_a != tree_b:
        raise AssertionError(f"Tree structures differ:\n  {tree_a}\n  {tree_b}")
    for (path, x), (_, y) in zip(leaves_a, leaves_b, strict=True):
        where = jax.tree_util.keystr(path)
        if _is_key_array(x) or _is_key_array(y):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            raise AssertionError(f"Shapes differ at {where}: {x.shape} vs {y.shape}")
        if x.dtype != y.dtype:
            raise AssertionError(f"dtypes differ at {where}: {x.dtype} vs {y.dtype}")
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"Values differ at {where}")
