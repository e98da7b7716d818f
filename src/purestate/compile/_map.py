"""`map`: a stateful function over the leading axis of its inputs, reading the
states without changing them (`jax.lax.map`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._errors import StateError
from .._layout import Values, same_value, take_apart
from .._paths import describe_paths
from .._state import RandomState
from .._stateful import call_stateful, fun_name
from .._tree import StateTree

__all__ = ["map"]


def map(
    fun: Callable, states: StateTree, xs: Any, *, batch_size: int | None = None
) -> tuple[Any, StateTree]:
    """``ys = [fun(states, x)[0] for x in xs]``, as `jax.lax.map` (with
    `batch_size`, that many elements at a time, vectorised). Returns ``(ys,
    states)``.

    The states are read-only inside: a function that writes one raises
    `ps.StateError` naming it. `RandomState`s are the exception: each element
    draws from its own key, as in `ps.augment.vmap`, and they come back
    advanced once.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def predict(states, x):
        ...     return x @ states["w"].value, states
        >>> ys, _ = ps.compile.map(predict, {"w": ps.ParamState(jnp.ones(2))}, jnp.eye(2) * 3)
        >>> ys.tolist()
        [3.0, 3.0]
    """
    where = f"ps.compile.map({fun_name(fun)})"
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"{where}: batch_size must be a positive int or None; got {batch_size!r}.")
    values, layout = take_apart(states, f"{where}: ")
    keyed = [i for i, (_, kind, _) in enumerate(layout.states) if issubclass(kind, RandomState)]
    pairs = {i: jax.random.split(values[i]) for i in keyed}
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError(f"{where}: xs holds no arrays to map over.")
    n = jnp.shape(leaves[0])[0]

    def one(x_and_index: tuple[Any, Any]) -> Any:
        x, index = x_and_index
        inside: Values = list(values)
        for i in keyed:
            inside[i] = jax.random.fold_in(pairs[i][0], index)
        out, new_states = call_stateful(fun, layout.build(inside), x)
        new_values, new_layout = take_apart(new_states)
        written = [
            layout.paths[i]
            for i, (old, new) in enumerate(zip(inside, new_values, strict=True))
            if i not in keyed and not same_value(old, new)
        ]
        if written or new_layout != layout:
            raise StateError(
                f"{where}: the function writes the states "
                f"{describe_paths(written or layout.paths)}, which are read-only inside "
                "ps.compile.map. Return the states as they came, or use ps.compile.scan "
                "(a loop that carries states) or ps.augment.vmap (batched states)."
            )
        return out

    ys = jax.lax.map(one, (xs, jnp.arange(n)), batch_size=batch_size)
    new_values = list(values)
    for i in keyed:
        new_values[i] = pairs[i][1]
    return ys, layout.build(new_values)
