"""Short descriptions of state values (shape, dtype, unit, structure), used to
check that loop carries and branch outputs keep their layout."""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax

from ._errors import StateError
from ._paths import path_str
from ._tree import StateTree, iter_states

__all__ = ["describe_value", "check_same_layout"]


def describe_value(value: Any) -> str:
    """``'float32[3] mV'``-style description of a (possibly traced) value."""

    def one(leaf: Any) -> str:
        if isinstance(leaf, u.Quantity):
            return f"{one(leaf.mantissa)} {leaf.unit}"
        aval = jax.typeof(leaf) if hasattr(leaf, "shape") else None
        if aval is None:
            return type(leaf).__name__
        return f"{aval.dtype}[{','.join(map(str, aval.shape))}]"

    leaves, treedef = jax.tree.flatten(value, is_leaf=lambda x: isinstance(x, u.Quantity))
    if treedef.num_nodes == 1 and len(leaves) == 1:
        return one(leaves[0])
    return f"{treedef} of ({', '.join(one(leaf) for leaf in leaves)})"


def _layout(value: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(value)
    return treedef, tuple(
        (tuple(leaf.shape), leaf.dtype) if hasattr(leaf, "shape") else type(leaf) for leaf in leaves
    )


def check_same_layout(before: StateTree, after: StateTree, where: str) -> None:
    """Raise `ps.StateError` naming every state whose shape, dtype, unit or
    pytree structure differs between `before` and `after` (same paths assumed)."""
    old = dict(iter_states(before))
    changed = [
        f"{path_str(path)!r}: {describe_value(old[path].value)} -> {describe_value(state.value)}"
        for path, state in iter_states(after)
        if path in old and _layout(old[path].value) != _layout(state.value)
    ]
    if changed:
        raise StateError(
            f"{where} changes the layout of states it carries (shape, dtype, unit or "
            f"structure): {'; '.join(changed)}. A carried state must keep its layout: "
            "cast or reshape inside the body, or keep the value outside the carry."
        )
