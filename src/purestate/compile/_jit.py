"""`jit`: `jax.jit` for stateful functions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from .. import environ
from .._selectors import as_selector
from .._split import merge, split_compiled
from .._stateful import call_stateful
from .._tree import StateTree

__all__ = ["jit"]


def _as_tuple(x: int | str | Sequence[Any]) -> tuple:
    return (x,) if isinstance(x, (int, str)) else tuple(x)


def _constrain(states: StateTree, placements: tuple) -> StateTree:
    """Pin the selected states to their shardings (inside the trace)."""
    if not placements:
        return states
    selectors = tuple(sel for sel, _ in placements)
    *parts, rest = split_compiled(states, selectors)
    placed = [
        jax.lax.with_sharding_constraint(part, sharding)
        for part, (_, sharding) in zip(parts, placements, strict=True)
    ]
    return merge(*placed, rest)


def jit(
    fun: Callable | None = None,
    *,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    donate_states: bool = False,
    state_shardings: dict[Any, jax.sharding.Sharding] | None = None,
) -> Callable:
    """Compile a stateful function ``fun(states, *args) -> (out, new_states)``.

    A thin `jax.jit`: per call it adds only an O(1) lookup of the current
    `ps.environ` settings, which are part of the cache key, so a changed ``dt``
    retraces instead of reusing a stale trace. It retraces when a state's
    structure, shape or dtype changes, as `jax.jit` does.

    Args:
        fun: the stateful function (or use ``@ps.compile.jit(...)``).
        static_argnums: positions in ``*args`` (0 is the first after `states`)
            that are static, as in `jax.jit`.
        static_argnames: keyword arguments that are static.
        donate_states: donate the input state buffers to the computation.
        state_shardings: ``{selector: jax.sharding.Sharding}``; the selected
            states are placed on those shardings, inside and on output.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> @ps.compile.jit
        ... def step(states, x):
        ...     v = states["v"].value + x
        ...     return v.sum(), ps.set(states, "v", v)
        >>> out, states = step({"v": ps.ShortTermState(jnp.zeros(3))}, 1.0)
        >>> float(out), ps.get(states, "v").tolist()
        (3.0, [1.0, 1.0, 1.0])
    """
    options = dict(
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        donate_states=donate_states,
        state_shardings=state_shardings,
    )
    if fun is None:
        return functools.partial(jit, **options)
    placements = tuple(
        (as_selector(sel), sharding) for sel, sharding in (state_shardings or {}).items()
    )

    def traced(env_key: Any, states: StateTree, *args: Any, **kwargs: Any) -> Any:
        del env_key  # only part of the cache key; the settings are read from environ
        states = _constrain(states, placements)
        out, new_states = call_stateful(fun, states, *args, **kwargs)
        return out, _constrain(new_states, placements)

    jitted = jax.jit(
        traced,
        static_argnums=(0, *(i + 2 for i in _as_tuple(static_argnums))),
        static_argnames=_as_tuple(static_argnames),
        donate_argnums=(1,) if donate_states else (),
    )

    @functools.wraps(fun)
    def wrapper(states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        return jitted(environ.cache_key(), states, *args, **kwargs)

    def lower(states: StateTree, *args: Any, **kwargs: Any) -> Any:
        return jitted.lower(environ.cache_key(), states, *args, **kwargs)

    wrapper.lower = lower  # type: ignore[attr-defined]
    wrapper.jitted = jitted  # type: ignore[attr-defined]
    return wrapper
