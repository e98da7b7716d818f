"""What every control-flow primitive shares: a stateful function run on the
values of a state tree whose layout it must keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from .._layout import Layout, Values, check_avals_kept, same_value, values_in_layout
from .._stateful import call_stateful

__all__ = ["Invariant", "carried"]


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


class Invariant:
    """The states a loop body returns as they came: they need not be in the
    loop's carry. Carrying them costs memory when the loop is checkpointed
    (every block boundary stores the whole carry), so checkpointed loops
    close over them instead.

    Found with one abstract trace of the body (`jax.eval_shape`).
    """

    def __init__(self, step: Callable[..., tuple[Any, Values]], values: Values, *example: Any):
        found: list[list[int]] = []

        def probe(values: Values, *args: Any) -> None:
            _, new_values = step(values, *args)
            found.append(
                [
                    i
                    for i, (a, b) in enumerate(zip(values, new_values, strict=True))
                    if same_value(a, b)
                ]
            )

        jax.eval_shape(probe, values, *example)
        self.fixed = {i: values[i] for i in found[0]}
        self.size = len(values)

    def carried(self, values: Values) -> Values:
        """The values the loop carries."""
        return [v for i, v in enumerate(values) if i not in self.fixed]

    def full(self, carried: Values) -> Values:
        """All values, from the carried ones."""
        it = iter(carried)
        return [self.fixed[i] if i in self.fixed else next(it) for i in range(self.size)]
