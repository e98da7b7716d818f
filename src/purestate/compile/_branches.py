"""Branching over stateful functions: `cond`, `switch` and `ifelse`.

Each branch is stateful and runs on the states' values (see
`purestate._layout`); every branch must return the same layout of states and
an output of the same structure, shape and dtype, which is checked with an
abstract trace of every branch first so that a mismatch names the branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .. import _pytree as pytree
from .._errors import StateError
from .._layout import Layout, Values, take_apart
from .._stateful import fun_name
from .._tree import StateTree
from ._carry import carried

__all__ = ["cond", "ifelse", "switch"]


def _runners(
    branches: Sequence[Callable], names: Sequence[str], layout: Layout, where: str
) -> list[Callable[[tuple[Values, tuple]], tuple[Any, Values]]]:
    """Each branch as a function of ``(values, operands)``."""

    def runner(fun: Callable, name: str) -> Callable[[tuple[Values, tuple]], tuple[Any, Values]]:
        step = carried(fun, layout, f"The {name} {fun_name(fun)!r} of {where}")

        def run(args: tuple[Values, tuple]) -> tuple[Any, Values]:
            carried_values, operands = args
            return step(carried_values, *operands)

        return run

    return [runner(f, n) for f, n in zip(branches, names, strict=True)]


def _same_output(a: Any, b: Any) -> bool:
    return pytree.structure(a) == pytree.structure(b) and all(
        (x.shape, x.dtype) == (y.shape, y.dtype)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _check_outputs(
    runs: list[Callable],
    names: Sequence[str],
    branches: Sequence[Callable],
    args: tuple,
    where: str,
) -> None:
    """Trace every branch abstractly (which also checks its states) and
    compare the outputs, so that a mismatch names the branches."""
    outputs = [jax.eval_shape(run, args)[0] for run in runs]
    for name, fun, out in zip(names[1:], branches[1:], outputs[1:], strict=True):
        if not _same_output(outputs[0], out):
            raise StateError(
                f"{where}: the branches return outputs of different structure, shape or dtype: "
                f"the {names[0]} {fun_name(branches[0])!r} returns {outputs[0]}, the {name} "
                f"{fun_name(fun)!r} returns {out}. Every branch returns the same output layout."
            )


def cond(
    pred: Any, true_fun: Callable, false_fun: Callable, states: StateTree, *operands: Any
) -> tuple[Any, StateTree]:
    """``true_fun(states, *operands)`` if `pred` else ``false_fun(...)``, as
    `jax.lax.cond`; both are stateful and return states of the same layout.
    Returns ``(out, states)``.

    Examples:
        >>> import purestate as ps
        >>> def inc(states, x):
        ...     return x, ps.set(states, "n", states["n"].value + 1)
        >>> def keep(states, x):
        ...     return -x, states
        >>> out, states = ps.compile.cond(True, inc, keep, {"n": ps.LongTermState(0.0)}, 2.0)
        >>> float(out), float(ps.get(states, "n"))
        (2.0, 1.0)
    """
    where = "ps.compile.cond"
    values, layout = take_apart(states, f"{where}: ")
    branches, names = (true_fun, false_fun), ("true branch", "false branch")
    runs = _runners(branches, names, layout, where)
    _check_outputs(runs, names, branches, (values, operands), where)
    out, new_values = jax.lax.cond(pred, *runs, (values, operands))
    return out, layout.build(new_values)


def switch(
    index: Any, branches: Sequence[Callable], states: StateTree, *operands: Any
) -> tuple[Any, StateTree]:
    """Run ``branches[index](states, *operands)``, as `jax.lax.switch`: an
    index out of range is clamped to the first or last branch. Every branch is
    stateful and returns the same layout. Returns ``(out, states)``.

    Examples:
        >>> import purestate as ps
        >>> def scale(k):
        ...     return lambda states, x: (k * x, ps.set(states, "k", k * 1.0))
        >>> branches = [scale(1), scale(2), scale(3)]
        >>> out, states = ps.compile.switch(5, branches, {"k": ps.LongTermState(0.0)}, 10.0)
        >>> float(out), float(ps.get(states, "k"))
        (30.0, 3.0)
    """
    where = "ps.compile.switch"
    branches = list(branches)
    if not branches:
        raise ValueError(f"{where}: give at least one branch.")
    values, layout = take_apart(states, f"{where}: ")
    names = [f"branch {i}" for i in range(len(branches))]
    runs = _runners(branches, names, layout, where)
    _check_outputs(runs, names, branches, (values, operands), where)
    out, new_values = jax.lax.switch(index, runs, (values, operands))
    return out, layout.build(new_values)


def ifelse(
    conditions: Sequence[Any], branches: Sequence[Callable], states: StateTree, *operands: Any
) -> tuple[Any, StateTree]:
    """Run the branch of the first true condition, or the last branch when
    none is true (``len(branches) == len(conditions) + 1``): an if / elif /
    else chain. Returns ``(out, states)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def label(k):
        ...     return lambda states, x: (x + k, states)
        >>> x = 5.0
        >>> out, _ = ps.compile.ifelse(
        ...     [x < 0, x < 10], [label(0), label(100), label(200)], {}, jnp.float32(x)
        ... )
        >>> float(out)
        105.0
    """
    conditions, branches = list(conditions), list(branches)
    if len(branches) != len(conditions) + 1:
        raise ValueError(
            f"ps.compile.ifelse: {len(conditions)} conditions need {len(conditions) + 1} "
            f"branches (one per condition, then the 'else' branch); got {len(branches)}."
        )
    # The index of the first true condition; the last branch when none is.
    index = jnp.argmax(jnp.stack([*(jnp.asarray(c, bool) for c in conditions), jnp.array(True)]))
    return switch(index, branches, states, *operands)
