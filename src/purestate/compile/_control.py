"""Control flow over stateful functions: `scan`, `for_loop`, `while_loop`, `cond`.

Each is `jax.lax` with the states' values in the carry and the tree's layout
(keys, kinds, the static parts of pytree values) closed over. The stateful
convention and the layout of every carried state are checked once, when JAX
traces the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from .. import _pytree as pytree
from .._errors import StateError
from .._layout import Layout, Values, check_avals_kept, take_apart, values_in_layout
from .._stateful import call_stateful, fun_name
from .._tree import StateTree

__all__ = ["cond", "for_loop", "scan", "while_loop"]


def _carried(fun: Callable, layout: Layout, where: str) -> Callable[..., tuple[Any, Values]]:
    """`fun` on the values of a carried state tree: ``(values, *args) -> (out,
    new_values)``, checking that every state keeps its layout (`where` names
    the function in the message)."""

    def step(values: Values, *args: Any) -> tuple[Any, Values]:
        out, new_states = call_stateful(fun, layout.build(values), *args)
        new_values = values_in_layout(layout, new_states, lambda: where)
        check_avals_kept(layout, values, new_values, where)
        return out, new_values

    return step


def scan(
    fun: Callable,
    states: StateTree,
    xs: Any,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
) -> tuple[Any, StateTree]:
    """Run ``fun(states, x) -> (y, states)`` over the leading axis of `xs`,
    threading the states; return ``(ys, states)`` as `jax.lax.scan` does.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def step(states, x):
        ...     total = states["sum"].value + x
        ...     return total, ps.set(states, "sum", total)
        >>> ys, states = ps.compile.scan(step, {"sum": ps.LongTermState(0.0)}, jnp.arange(4.0))
        >>> ys.tolist(), float(ps.get(states, "sum"))
        ([0.0, 1.0, 3.0, 6.0], 6.0)
    """

    values, layout = take_apart(states, "ps.compile.scan: ")
    step = _carried(fun, layout, f"The body {fun_name(fun)!r} of ps.compile.scan")

    def body(carry: Values, x: Any) -> tuple[Values, Any]:
        y, new_values = step(carry, x)
        return new_values, y

    new_values, ys = jax.lax.scan(body, values, xs, length=length, reverse=reverse, unroll=unroll)
    return ys, layout.build(new_values)


def for_loop(
    fun: Callable,
    states: StateTree,
    *xs: Any,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
) -> tuple[Any, StateTree]:
    """Like `scan`, with several sequences: ``fun(states, *x_t) -> (y, states)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def step(states, a, b):
        ...     v = states["v"].value + a * b
        ...     return v, ps.set(states, "v", v)
        >>> ys, states = ps.compile.for_loop(
        ...     step, {"v": ps.ShortTermState(0.0)}, jnp.ones(3), jnp.arange(3.0)
        ... )
        >>> ys.tolist()
        [0.0, 1.0, 3.0]
    """
    return scan(lambda s, x: fun(s, *x), states, xs, length=length, reverse=reverse, unroll=unroll)


def while_loop(
    cond_fun: Callable, body_fun: Callable, states: StateTree, init_val: Any
) -> tuple[Any, StateTree]:
    """Repeat ``body_fun(states, v) -> (v, states)`` while ``cond_fun(states, v)``;
    return ``(v, states)``.

    Example:
        >>> import purestate as ps
        >>> def body(states, i):
        ...     n = states["n"].value * 2
        ...     return i + 1, ps.set(states, "n", n)
        >>> i, states = ps.compile.while_loop(
        ...     lambda states, i: i < 3, body, {"n": ps.LongTermState(1.0)}, 0
        ... )
        >>> int(i), float(ps.get(states, "n"))
        (3, 8.0)
    """

    values, layout = take_apart(states, "ps.compile.while_loop: ")
    step = _carried(body_fun, layout, f"The body {fun_name(body_fun)!r} of ps.compile.while_loop")

    def keep_going(carry: tuple[Values, Any]) -> Any:
        carried, v = carry
        return cond_fun(layout.build(carried), v)

    def body(carry: tuple[Values, Any]) -> tuple[Values, Any]:
        carried, v = carry
        v, new_values = step(carried, v)
        return new_values, v

    new_values, v = jax.lax.while_loop(keep_going, body, (values, init_val))
    return v, layout.build(new_values)


def cond(
    pred: Any, true_fun: Callable, false_fun: Callable, states: StateTree, *operands: Any
) -> tuple[Any, StateTree]:
    """``true_fun(states, *operands)`` if `pred` else ``false_fun(...)``; both are
    stateful and must return states of the same layout. Returns ``(out, states)``.

    Example:
        >>> import purestate as ps
        >>> def inc(states, x):
        ...     return x, ps.set(states, "n", states["n"].value + 1)
        >>> def keep(states, x):
        ...     return -x, states
        >>> out, states = ps.compile.cond(True, inc, keep, {"n": ps.LongTermState(0.0)}, 2.0)
        >>> float(out), float(ps.get(states, "n"))
        (2.0, 1.0)
    """

    values, layout = take_apart(states, "ps.compile.cond: ")

    def branch(fun: Callable, which: str) -> Callable:
        step = _carried(fun, layout, f"The {which} branch {fun_name(fun)!r} of ps.compile.cond")

        def run(args: tuple) -> tuple[Any, Values]:
            carried, ops = args
            return step(carried, *ops)

        return run

    branches = [branch(true_fun, "true"), branch(false_fun, "false")]
    # Trace both branches abstractly first, so a mismatch names the states.
    shapes = [jax.eval_shape(run, (values, operands)) for run in branches]
    (out_t, _), (out_f, _) = shapes
    if pytree.structure(out_t) != pytree.structure(out_f) or any(
        (a.shape, a.dtype) != (b.shape, b.dtype)
        for a, b in zip(jax.tree.leaves(out_t), jax.tree.leaves(out_f), strict=True)
    ):
        raise StateError(
            f"ps.compile.cond: the branches {fun_name(true_fun)!r} and "
            f"{fun_name(false_fun)!r} return outputs of different structure, shape or "
            f"dtype: {out_t} vs {out_f}."
        )
    out, new_values = jax.lax.cond(pred, *branches, (values, operands))
    return out, layout.build(new_values)
