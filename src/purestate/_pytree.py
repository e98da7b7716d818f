"""JAX's pytree flattening with a type a checker can read: jaxlib's
`PyTreeDef` carries no type information, so its methods would be unknown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["PyTreeDef", "flatten", "structure"]

PyTreeDef = Any


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[Any], PyTreeDef]:
    """`jax.tree.flatten`."""
    return jax.tree.flatten(tree, is_leaf=is_leaf)


def structure(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> PyTreeDef:
    """`jax.tree.structure`."""
    return jax.tree.structure(tree, is_leaf=is_leaf)
