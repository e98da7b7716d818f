"""A readable table of a state tree."""

from __future__ import annotations

import math
from typing import Any

import brainunit as u
import jax

from ._paths import path_str
from ._tree import StateTree, iter_states

__all__ = ["summary"]


def _describe_value(value: Any) -> tuple[str, str, str, int]:
    """(shape, dtype, unit, size) of a state's value."""
    unit = ""
    if isinstance(value, u.Quantity):
        unit = str(value.unit)
        value = value.mantissa
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        shape = tuple(value.shape)
        return str(shape), str(value.dtype), unit, math.prod(shape)
    # A pytree value (dict, eqx.Module): describe its array leaves together.
    leaves = [leaf for leaf in jax.tree.leaves(value) if hasattr(leaf, "shape")]
    size = sum(math.prod(leaf.shape) for leaf in leaves)
    dtypes = ",".join(sorted({str(leaf.dtype) for leaf in leaves}))
    return f"<{type(value).__name__}: {len(leaves)} arrays>", dtypes, unit, size


def summary(tree: StateTree) -> str:
    """A table of every state: path, kind, shape, dtype, unit and size, with totals.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> print(ps.summary({"w": ps.ParamState(jnp.ones((2, 3)))}))
        path  kind        shape   dtype    unit  size
        ----  ----------  ------  -------  ----  ----
        w     ParamState  (2, 3)  float32           6
        <BLANKLINE>
        1 state, 6 values (ParamState: 1 state, 6 values)
    """
    rows = []
    totals: dict[str, list[int]] = {}
    for path, state in iter_states(tree):
        shape, dtype, unit, size = _describe_value(state.value)
        kind = type(state).__name__
        rows.append((path_str(path), kind, shape, dtype, unit, str(size)))
        count = totals.setdefault(kind, [0, 0])
        count[0] += 1
        count[1] += size
    header = ("path", "kind", "shape", "dtype", "unit", "size")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        text = "  ".join(
            c.rjust(w) if i == len(cells) - 1 else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return text.rstrip()

    n = sum(c[0] for c in totals.values())
    size = sum(c[1] for c in totals.values())

    def plural(k: int) -> str:
        return f"{k} state" + ("" if k == 1 else "s")

    per_kind = "; ".join(f"{k}: {plural(c[0])}, {c[1]} values" for k, c in totals.items())
    lines = [line(header), line(tuple("-" * w for w in widths))]
    lines += [line(r) for r in rows]
    lines += ["", f"{plural(n)}, {size} values" + (f" ({per_kind})" if per_kind else "")]
    return "\n".join(lines)
