"""Comparing state trees (and any pytrees) leaf by leaf."""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax
import numpy as np

from .._state import State

__all__ = ["assert_trees_allclose"]

_KeyEntry = Any


def _is_key_array(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _one_level(x: Any) -> tuple[Any, list[tuple[_KeyEntry, Any]]]:
    """The structure of `x` down to its children, and its (key, child) pairs."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda node: node is not x)
    return treedef, [(path[0], child) for path, child in pairs if path]


def _key_str(entry: _KeyEntry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _where(path: tuple[str, ...]) -> str:
    return repr("/".join(path)) if path else "the root"


def _describe(x: Any) -> str:
    if isinstance(x, State):
        return type(x).__name__
    if isinstance(x, u.Quantity):
        return f"Quantity[{x.unit}]"
    if isinstance(x, dict):
        return "dict"
    if x is None:
        return "None"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{type(x).__name__} {x.dtype}{list(x.shape)}"
    return type(x).__name__


def _structure_difference(x: Any, y: Any, treedef_x: Any, treedef_y: Any) -> str:
    if type(x) is not type(y):
        return f"{_describe(x)} vs {_describe(y)}"
    if isinstance(x, dict):
        only_x = sorted(map(str, set(x) - set(y)))
        only_y = sorted(map(str, set(y) - set(x)))
        return f"dict keys differ: only in a: {only_x}, only in b: {only_y}"
    if isinstance(x, u.Quantity):
        return f"units differ: {x.unit} vs {y.unit}"
    return f"structures differ: {treedef_x} vs {treedef_y}"


def _as_numbers(x: Any, y: Any, where: str) -> tuple[Any, Any]:
    """Typed PRNG keys as their key data (after checking that both sides use
    the same implementation); everything else as a NumPy array."""
    key_x, key_y = _is_key_array(x), _is_key_array(y)
    if key_x and key_y and str(jax.random.key_impl(x)) != str(jax.random.key_impl(y)):
        raise AssertionError(
            f"PRNG key implementations differ at {where}: "
            f"{jax.random.key_impl(x)} vs {jax.random.key_impl(y)}"
        )
    if key_x:
        x = jax.random.key_data(x)
    if key_y:
        y = jax.random.key_data(y)
    return np.asarray(x), np.asarray(y)


def _compare_leaves(x: Any, y: Any, where: str, rtol: float, atol: float) -> None:
    x, y = _as_numbers(x, y, where)
    try:
        try:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
        except TypeError:  # not numbers (str, object): equal or not
            np.testing.assert_array_equal(x, y)
    except AssertionError as error:
        raise AssertionError(f"Values differ at {where}:{error}") from None


def _compare(x: Any, y: Any, path: tuple[str, ...], rtol: float, atol: float) -> None:
    treedef_x, children_x = _one_level(x)
    treedef_y, children_y = _one_level(y)
    is_leaf_x = jax.tree_util.treedef_is_leaf(treedef_x) and treedef_x.num_leaves == 1
    is_leaf_y = jax.tree_util.treedef_is_leaf(treedef_y) and treedef_y.num_leaves == 1
    if is_leaf_x and is_leaf_y:
        _compare_leaves(x, y, _where(path), rtol, atol)
        return
    if treedef_x != treedef_y:
        difference = _structure_difference(x, y, treedef_x, treedef_y)
        raise AssertionError(f"Trees differ at {_where(path)}: {difference}")
    # A state's value and a quantity's mantissa add no key of their own, so a
    # state tree's paths read as in `ps.flatten`: 'lif/V'.
    wrapper = isinstance(x, (State, u.Quantity))
    for (entry, child_x), (_, child_y) in zip(children_x, children_y, strict=True):
        child_path = path if wrapper else (*path, _key_str(entry))
        _compare(child_x, child_y, child_path, rtol, atol)


def assert_trees_allclose(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Assert that two pytrees have the same structure (state kinds, dict keys,
    brainunit units, PRNG key implementations) and leaves equal to tolerance,
    naming the first path that differs (``'lif/V'``).

    Leaves compare as `numpy.testing.assert_allclose(a_leaf, b_leaf, rtol,
    atol)` compares them, `b` being the reference: by value, whatever their
    dtypes, so a Python float equals a float32 array holding it; shapes must
    match, except that a scalar (0-d) leaf is broadcast against the other.
    Typed PRNG keys compare by their key data. Leaves that are not numbers
    (strings) must be equal.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> a = {"w": ps.ParamState(jnp.ones(2))}
        >>> ps.testing.assert_trees_allclose(a, {"w": ps.ParamState(jnp.ones(2) + 1e-7)})
        >>> ps.testing.assert_trees_allclose({"x": 0.1}, {"x": jnp.float32(0.1)})
        >>> try:
        ...     ps.testing.assert_trees_allclose(a, {"w": ps.ShortTermState(jnp.ones(2))})
        ... except AssertionError as error:
        ...     print(error)
        Trees differ at 'w': ParamState vs ShortTermState
    """
    _compare(a, b, (), rtol, atol)
