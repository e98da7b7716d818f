"""What every control-flow primitive shares: a stateful function run on the
values of a state tree whose layout it must keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._layout import Layout, Values, check_avals_kept, values_in_layout
from .._stateful import call_stateful

__all__ = ["carried"]


def carried(fun: Callable, layout: Layout, where: str) -> Callable[..., tuple[Any, Values]]:
    """`fun` on the values of a carried state tree: ``(values, *args) -> (out,
    new_values)``. Every state keeps its layout (structure, unit, non-array
    leaves, shape and dtype), else a `ps.StateError` names the states and
    `where` names the function."""

    def step(values: Values, *args: Any) -> tuple[Any, Values]:
        out, new_states = call_stateful(fun, layout.build(values), *args)
        new_values = values_in_layout(layout, new_states, lambda: where)
        check_avals_kept(layout, values, new_values, where)
        return out, new_values

    return step
