"""Argument positions of stateful functions (`argnums`, `static_argnums`,
`donate_argnums`, `static_argnames`): they count the positional arguments after
`states` (0 is the first), with JAX's rules, and are checked when the
transform is made."""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

__all__ = [
    "check_in_signature",
    "index_tuple",
    "infer_static",
    "name_tuple",
    "positional_count",
    "resolve",
]


def _index(value: Any, option: str, where: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{where}: {option} holds {value!r}, a bool; give int positions.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{where}: {option} must be an int or a sequence of ints counting the positional "
            f"arguments after `states` (0 is the first); got {value!r} "
            f"({type(value).__name__})."
        ) from None


def index_tuple(value: Any, option: str, where: str) -> tuple[int, ...]:
    """`value` (an int or a sequence of distinct ints) as a tuple; a
    `TypeError` or `ValueError` naming `option` otherwise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, range)):
        return (_index(value, option, where),)
    items = tuple(_index(v, option, where) for v in value)
    repeated = sorted({i for i in items if items.count(i) > 1})
    if repeated:
        raise ValueError(
            f"{where}: {option}={tuple(value)!r} repeats {repeated}; give each position once "
            "(as JAX requires)."
        )
    return items


def name_tuple(value: Any, option: str, where: str) -> tuple[str, ...]:
    """`value` (a str or a sequence of str) as a tuple; a `TypeError` naming
    `option` otherwise."""
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise TypeError(f"{where}: {option} must be a str or a sequence of str; got {value!r}.")
    return tuple(items)


def resolve(positions: tuple[int, ...], n_args: int, option: str, where: str) -> tuple[int, ...]:
    """`positions` for a call with `n_args` arguments after `states`, negative
    ones counted from the end, as JAX does; a `ValueError` for any out of range."""
    for i in positions:
        if not -n_args <= i < n_args:
            raise ValueError(
                f"{where}: {option} holds {i}, but the function was called with {n_args} "
                "positional argument(s) after the states (positions count them from 0, "
                "the first argument after `states`; negative ones count from the end)."
            )
    resolved = tuple(i % n_args for i in positions)
    if len(set(resolved)) != len(resolved):
        raise ValueError(
            f"{where}: {option}={positions!r} names the same argument twice for a call with "
            f"{n_args} positional argument(s) after the states."
        )
    return resolved


def _parameters_after_states(fun: Callable) -> list[inspect.Parameter] | None:
    try:
        parameters = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        return None  # builtins and some callables have no signature
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        return None
    return parameters[1:]


def positional_count(fun: Callable) -> int | None:
    """How many positional parameters `fun` takes after `states`; None when
    it takes any number (``*args``) or has no signature."""
    parameters = _parameters_after_states(fun)
    if parameters is None or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return None
    return sum(
        p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for p in parameters
    )


def check_in_signature(fun: Callable, positions: tuple[int, ...], option: str, where: str) -> None:
    """A `ValueError` for a position beyond `fun`'s positional parameters
    after `states` (when it has no ``*args``), as `jax.jit` raises."""
    n = positional_count(fun)
    if n is None:
        return
    bad = [i for i in positions if not -n <= i < n]
    if bad:
        raise ValueError(
            f"{where}: {option} holds {bad}, but the function takes only {n} positional "
            "argument(s) after `states` (positions count them from 0)."
        )


def infer_static(
    fun: Callable, argnums: tuple[int, ...], argnames: tuple[str, ...]
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Complete static positions from names or names from positions, with
    `jax.jit`'s rule: when only one of the two is given, the other is inferred
    from `fun`'s signature (its parameters after `states`)."""
    if bool(argnums) == bool(argnames):
        return argnums, argnames
    parameters = _parameters_after_states(fun)
    if parameters is None:
        return argnums, argnames
    named = [
        (i, p.name)
        for i, p in enumerate(parameters)
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    if argnames:
        return tuple(i for i, name in named if name in argnames), argnames
    return argnums, tuple(name for i, name in named if i in argnums)
