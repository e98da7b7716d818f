"""Loops over stateful functions: `scan`, `for_loop`, their checkpointed
forms, `while_loop` and `bounded_while_loop`.

Each is `jax.lax` with the states' values in the carry and the tree's layout
closed over (see `purestate._layout`). A loop with a progress bar or with
checkpointing runs in blocks: an outer `jax.lax.scan` over blocks of steps,
each an inner scan (under `jax.checkpoint` when checkpointed, so that reverse
mode stores only the carries at block boundaries), then one shorter block for
the steps left over. Progress is reported after each block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._layout import Values, take_apart
from .._stateful import fun_name
from .._tree import StateTree
from ._carry import Invariant, carried
from ._progress import Ticker, ticker

__all__ = [
    "bounded_while_loop",
    "checkpointed_for_loop",
    "checkpointed_scan",
    "for_loop",
    "scan",
    "while_loop",
]


class _Absent:
    """The default of `init`: scan without a plain carry."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


def _length(xs: Any, length: int | None, where: str) -> int:
    leaves = jax.tree.leaves(xs)
    if length is not None:
        return int(length)
    if not leaves:
        raise ValueError(f"{where}: there is nothing to scan over; pass length=... (or xs).")
    return int(jnp.shape(leaves[0])[0])


def _blocks(xs: Any, start: int, n: int, size: int) -> Any:
    """`xs[start : start + n * size]` as `n` blocks of `size` steps."""
    return jax.tree.map(lambda x: x[start : start + n * size].reshape((n, size, *x.shape[1:])), xs)


def _default_block(length: int) -> int:
    """About ``sqrt(length)``: a divisor of `length` near it if there is one
    (no shorter last block), else the rounded root."""
    root = math.sqrt(length)
    divisors = [d for d in range(max(1, math.ceil(root / 2)), int(2 * root) + 1) if length % d == 0]
    return min(divisors, key=lambda d: abs(d - root)) if divisors else max(1, round(root))


def _part(xs: Any, start: int, stop: int) -> Any:
    return jax.tree.map(lambda x: x[start:stop], xs)


def _unblock(ys: Any) -> Any:
    return jax.tree.map(lambda y: y.reshape((-1, *y.shape[2:])), ys)


def _blocked_scan(
    body: Callable,
    carry: Any,
    xs: Any,
    length: int,
    block: int,
    *,
    reverse: bool,
    unroll: int | bool,
    checkpoint: bool,
    progress: Ticker | None,
) -> tuple[Any, Any]:
    """`jax.lax.scan(body, carry, xs, length, reverse)` run in blocks of
    `block` steps, with `progress` reported after each block."""
    n_full, left = divmod(length, block)

    def run_block(c: Any, block_xs: Any, size: int) -> tuple[Any, Any]:
        return jax.lax.scan(body, c, block_xs, length=size, reverse=reverse, unroll=unroll)

    if checkpoint:
        run_block = jax.checkpoint(run_block, static_argnums=(2,))

    def outer(c: tuple[Any, Any], block_xs: Any) -> tuple[tuple[Any, Any], Any]:
        inner, done = c
        inner, ys = run_block(inner, block_xs, block)
        done = done + block
        if progress is not None:
            progress.tick(done)
        return (inner, done), ys

    # In iteration order: the full blocks, then the steps left over (for a
    # reverse scan the full blocks are the end of xs and the rest its start).
    # When the blocks cover xs exactly, xs is only reshaped, not copied.
    full_start, rest = (left, (0, left)) if reverse else (0, (n_full * block, length))
    full_xs = _blocks(xs, full_start, n_full, block) if xs is not None else None
    (carry, done), ys_full = jax.lax.scan(
        outer, (carry, jnp.int32(0)), full_xs, length=n_full, reverse=reverse
    )
    ys_full = _unblock(ys_full)
    if not left:
        return carry, ys_full
    rest_xs = _part(xs, *rest) if xs is not None else None
    carry, ys_rest = run_block(carry, rest_xs, left)
    if progress is not None:
        progress.tick(done + left)
    parts = (ys_rest, ys_full) if reverse else (ys_full, ys_rest)
    return carry, jax.tree.map(lambda *ys: jnp.concatenate(ys), *parts)


def _scan(
    fun: Callable,
    states: StateTree,
    xs: Any,
    init: Any,
    *,
    where: str,
    length: int | None,
    reverse: bool = False,
    unroll: int | bool = 1,
    block_size: int | None = None,
    progress: Any = None,
    checkpoint: bool = False,
) -> tuple[Any, StateTree]:
    """The core of every scan: `fun` over `xs` with the states (and `init`,
    a plain carry, unless absent) in the carry."""
    values, layout = take_apart(states, f"{where}: ")
    step = carried(fun, layout, f"The body {fun_name(fun)!r} of {where}")
    with_carry = init is not ABSENT

    def one_step(full: Values, plain: Any, x: Any) -> tuple[Any, Any, Values]:
        if with_carry:
            (plain, y), new_values = step(full, plain, x)
        else:
            y, new_values = step(full, x)
        return plain, y, new_values

    invariant = None
    if checkpoint:
        # States the body never changes stay out of the carry, which every
        # block boundary stores.
        example_x = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), xs)
        invariant = Invariant(
            lambda v, plain, x: (None, one_step(v, plain, x)[2]),
            values,
            init if with_carry else None,
            example_x,
        )

    def body(c: tuple[Values, Any], x: Any) -> tuple[tuple[Values, Any], Any]:
        carried_values, plain = c
        full = invariant.full(carried_values) if invariant else carried_values
        plain, y, new_values = one_step(full, plain, x)
        return (invariant.carried(new_values) if invariant else new_values, plain), y

    carry = (invariant.carried(values) if invariant else values, init if with_carry else None)
    total = _length(xs, length, where)
    bar = ticker(progress, total)
    if checkpoint:
        block = block_size or _default_block(total)
    else:
        block = bar.every if bar is not None else 0
    if bar is not None:
        bar.block = min(block, total)
    if block and total:
        carry, ys = _blocked_scan(
            body,
            carry,
            xs,
            total,
            min(block, total),
            reverse=reverse,
            unroll=unroll,
            checkpoint=checkpoint,
            progress=bar,
        )
    else:
        carry, ys = jax.lax.scan(body, carry, xs, length=length, reverse=reverse, unroll=unroll)
    new_values, plain = carry
    out = (plain, ys) if with_carry else ys
    return out, layout.build(invariant.full(new_values) if invariant else new_values)


def scan(
    fun: Callable,
    states: StateTree,
    xs: Any,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    *,
    init: Any = ABSENT,
    progress: Any = None,
) -> tuple[Any, StateTree]:
    """Run ``fun(states, x) -> (y, states)`` over the leading axis of `xs`,
    threading the states; return ``(ys, states)`` as `jax.lax.scan` does.

    With `init`, a plain carry beside the states: ``fun(states, carry, x) ->
    ((carry, y), states)``, and the result is ``((carry, ys), states)``, as
    `jax.lax.scan` with ``(states, carry)`` as its carry. `progress` shows a
    `tqdm` bar while the compiled loop runs: True (about 100 updates), an int
    (every that many steps) or `ps.compile.Progress`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def step(states, x):
        ...     total = states["sum"].value + x
        ...     return total, ps.set(states, "sum", total)
        >>> ys, states = ps.compile.scan(step, {"sum": ps.LongTermState(0.0)}, jnp.arange(4.0))
        >>> ys.tolist(), float(ps.get(states, "sum"))
        ([0.0, 1.0, 3.0, 6.0], 6.0)
        >>> def count(states, n, x):
        ...     return (n + 1, x * n), states
        >>> (n, ys), _ = ps.compile.scan(count, {}, jnp.ones(3), init=0)
        >>> int(n), ys.tolist()
        (3, [0.0, 1.0, 2.0])
    """
    return _scan(
        fun,
        states,
        xs,
        init,
        where="ps.compile.scan",
        length=length,
        reverse=reverse,
        unroll=unroll,
        progress=progress,
    )


def for_loop(
    fun: Callable,
    states: StateTree,
    *xs: Any,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    progress: Any = None,
) -> tuple[Any, StateTree]:
    """Like `scan`, with several sequences: ``fun(states, *x_t) -> (y, states)``.

    Examples:
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
    return _scan(
        _spread(fun),
        states,
        xs if xs else None,
        ABSENT,
        where=f"ps.compile.for_loop({fun_name(fun)})",
        length=length,
        reverse=reverse,
        unroll=unroll,
        progress=progress,
    )


def _spread(fun: Callable) -> Callable:
    """``fun(states, *x)`` as a scan body of one x (a tuple, or None for a
    loop without sequences)."""
    return lambda states, x: fun(states) if x is None else fun(states, *x)


def _check_block_size(block_size: Any, where: str) -> None:
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
    ):
        raise ValueError(f"{where}: block_size must be a positive int or None; got {block_size!r}.")


def checkpointed_scan(
    fun: Callable,
    states: StateTree,
    xs: Any,
    length: int | None = None,
    *,
    block_size: int | None = None,
    init: Any = ABSENT,
    progress: Any = None,
) -> tuple[Any, StateTree]:
    """`scan` that stores only the states at block boundaries for reverse
    mode, and recomputes each block in the backward pass: memory grows like
    ``length / block_size + block_size`` instead of ``length``.

    Results, final states and gradients equal `scan`'s. `block_size` defaults
    to about ``sqrt(length)``, a divisor of the length when one is near. It
    need not divide the length (the steps left over form one shorter block),
    but one that does saves a copy of `xs`. A progress bar advances once per
    block.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import purestate as ps
        >>> def step(states, x):
        ...     v = 0.9 * states["v"].value + x * states["w"].value
        ...     return v, ps.set(states, "v", v)
        >>> def loss(states, xs):
        ...     ys, states = ps.compile.checkpointed_scan(step, states, xs, block_size=4)
        ...     return ys.sum(), states
        >>> states = {"v": ps.ShortTermState(0.0), "w": ps.ParamState(2.0)}
        >>> grads, _ = ps.augment.grad(loss, "w")(states, jnp.ones(10))
        >>> ref, _ = ps.augment.grad(
        ...     lambda s, xs: (ps.compile.scan(step, s, xs)[0].sum(), s), "w"
        ... )(states, jnp.ones(10))
        >>> bool(jnp.allclose(grads["w"].value, ref["w"].value))
        True
    """
    where = "ps.compile.checkpointed_scan"
    _check_block_size(block_size, where)
    return _scan(
        fun,
        states,
        xs,
        init,
        where=where,
        length=length,
        block_size=block_size,
        progress=progress,
        checkpoint=True,
    )


def checkpointed_for_loop(
    fun: Callable,
    states: StateTree,
    *xs: Any,
    length: int | None = None,
    block_size: int | None = None,
    progress: Any = None,
) -> tuple[Any, StateTree]:
    """`for_loop` with the memory behaviour of `checkpointed_scan`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def step(states, a, b):
        ...     v = states["v"].value + a * b
        ...     return v, ps.set(states, "v", v)
        >>> ys, _ = ps.compile.checkpointed_for_loop(
        ...     step, {"v": ps.ShortTermState(0.0)}, jnp.ones(5), jnp.arange(5.0), block_size=2
        ... )
        >>> ys.tolist()
        [0.0, 1.0, 3.0, 6.0, 10.0]
    """
    where = f"ps.compile.checkpointed_for_loop({fun_name(fun)})"
    _check_block_size(block_size, where)
    return _scan(
        _spread(fun),
        states,
        xs if xs else None,
        ABSENT,
        where=where,
        length=length,
        block_size=block_size,
        progress=progress,
        checkpoint=True,
    )


def while_loop(
    cond_fun: Callable, body_fun: Callable, states: StateTree, init_val: Any
) -> tuple[Any, StateTree]:
    """Repeat ``body_fun(states, v) -> (v, states)`` while ``cond_fun(states, v)``;
    return ``(v, states)``.

    Examples:
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
    step = carried(body_fun, layout, f"The body {fun_name(body_fun)!r} of ps.compile.while_loop")

    def keep_going(carry: tuple[Values, Any]) -> Any:
        carried_values, v = carry
        return cond_fun(layout.build(carried_values), v)

    def body(carry: tuple[Values, Any]) -> tuple[Values, Any]:
        carried_values, v = carry
        v, new_values = step(carried_values, v)
        return new_values, v

    new_values, v = jax.lax.while_loop(keep_going, body, (values, init_val))
    return v, layout.build(new_values)


def bounded_while_loop(
    cond_fun: Callable,
    body_fun: Callable,
    states: StateTree,
    init_val: Any,
    *,
    max_steps: int,
    base: int = 16,
) -> tuple[Any, StateTree]:
    """`while_loop` that runs at most `max_steps` steps and can be
    differentiated in reverse mode.

    It gives `while_loop`'s result when `cond_fun` turns false within
    `max_steps`, and stops after `max_steps` otherwise. The steps run as
    nested scans of `base` iterations (about ``log_base(max_steps)`` levels,
    each checkpointed), a step that `cond_fun` rules out does nothing, and a
    block that starts after the loop has finished is skipped, so gradients
    equal those of the same steps written as a Python loop, and memory grows
    like ``base * log_base(max_steps)``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> def body(states, i):
        ...     return i + 1, ps.set(states, "x", states["x"].value * 1.5)
        >>> def final_x(states):
        ...     _, states = ps.compile.bounded_while_loop(
        ...         lambda s, i: i < 3, body, states, 0, max_steps=10
        ...     )
        ...     return ps.get(states, "x"), states
        >>> grads, _ = ps.augment.grad(final_x, "x")({"x": ps.ParamState(1.0)})
        >>> float(grads["x"].value)  # d(1.5**3 x)/dx
        3.375
    """
    where = "ps.compile.bounded_while_loop"
    for name, value, least in (("max_steps", max_steps, 0), ("base", base, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{where}: {name} must be an int >= {least}; got {value!r}.")
    values, layout = take_apart(states, f"{where}: ")
    step = carried(body_fun, layout, f"The body {fun_name(body_fun)!r} of {where}")
    # States the body never changes stay out of the carry, which every
    # checkpointed level stores.
    invariant = Invariant(step, values, init_val)

    def go_on(c: tuple[Values, Any, Any]) -> Any:
        carried_values, v, n = c
        full = invariant.full(carried_values)
        return jnp.logical_and(n < max_steps, cond_fun(layout.build(full), v))

    def one_step(c: tuple[Values, Any, Any]) -> tuple[Values, Any, Any]:
        carried_values, v, n = c
        v, new_values = step(invariant.full(carried_values), v)
        return invariant.carried(new_values), v, n + 1

    def run(level: int, c: tuple[Values, Any, Any]) -> tuple[Values, Any, Any]:
        """`base ** level` steps (each skipped once the loop has finished)."""
        if level == 0:
            return jax.lax.cond(go_on(c), one_step, lambda c: c, c)
        sub = jax.checkpoint(lambda c: run(level - 1, c))

        def block(c: tuple[Values, Any, Any], _: None) -> tuple[tuple[Values, Any, Any], None]:
            return jax.lax.cond(go_on(c), sub, lambda c: c, c), None

        return jax.lax.scan(block, c, None, length=base)[0]

    levels, capacity = 0, 1
    while capacity < max_steps:  # base ** levels >= max_steps, in integers
        levels, capacity = levels + 1, capacity * base
    new_values, v, _ = run(levels, (invariant.carried(values), init_val, jnp.int32(0)))
    return v, layout.build(invariant.full(new_values))
