"""Short descriptions of state values (shape, dtype, unit, structure) for
error messages."""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax

from . import _pytree as pytree

__all__ = ["describe_value"]


def describe_value(value: Any) -> str:
    """``'float32[3] mV'``-style description of a (possibly traced) value."""

    def one(leaf: Any) -> str:
        if isinstance(leaf, u.Quantity):
            return f"{one(leaf.mantissa)} {leaf.unit}"
        aval = jax.typeof(leaf) if hasattr(leaf, "shape") else None
        if aval is None:
            return type(leaf).__name__
        return f"{aval.dtype}[{','.join(map(str, aval.shape))}]"

    leaves, treedef = pytree.flatten(value, is_leaf=lambda x: isinstance(x, u.Quantity))
    if treedef.num_nodes == 1 and len(leaves) == 1:
        return one(leaves[0])
    return f"{treedef} of ({', '.join(one(leaf) for leaf in leaves)})"
