"""`jit`: `jax.jit` for stateful functions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax

from .. import environ
from .._errors import StateError
from .._paths import path_str
from .._selectors import as_selector
from .._split import merge, split_compiled
from .._stateful import call_stateful, fun_name
from .._tree import StateTree, iter_states
from ._layout import Layout, PassedThrough, take_apart

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

    A thin `jax.jit`. It hands JAX the states' values as a flat list and the
    tree's layout (keys, nesting, kinds) as a static argument, so a call costs
    less than `jax.jit` on the state tree itself, whose `State` nodes JAX would
    flatten and rebuild through Python callbacks. The current `ps.environ`
    settings are part of the cache key, so a changed ``dt`` retraces instead of
    reusing a stale trace. It retraces when a state's structure, kind, shape or
    dtype changes, or when the tree's keys come in another order. A state that
    `fun` returns unchanged comes back holding the very array that went in,
    where `jax.jit` would copy it (unless the states are donated).

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

    def traced_filtered(env_key: Any, arrays: StateTree, static: _Static, *args, **kwargs) -> Any:
        out, new_states = traced(env_key, eqx.combine(arrays, static.tree), *args, **kwargs)
        new_arrays, new_static = eqx.partition(new_states, eqx.is_array)
        static.check_unchanged(new_static, fun)
        return out, new_arrays

    def compile_with(f: Callable, shift: int) -> Callable:
        return jax.jit(
            f,
            static_argnums=(0, *range(2, shift), *(i + shift for i in _as_tuple(static_argnums))),
            static_argnames=_as_tuple(static_argnames),
            donate_argnums=(1,) if donate_states else (),
        )

    def traced_flat(env_key: Any, values: list, layout: Layout, *args: Any, **kwargs: Any) -> Any:
        out, new_states = traced(env_key, layout.build(values), *args, **kwargs)
        new_values = layout.values_of(new_states)  # same paths and kinds: checked in traced
        if donate_states:  # a donated input cannot be handed back
            return out, new_values, None
        return out, *PassedThrough.leave_out(values, new_values)

    jitted = compile_with(traced, 2)
    jitted_flat = compile_with(traced_flat, 3)
    jitted_filtered = compile_with(traced_filtered, 3)
    layouts: dict[tuple, Layout | None] = {}
    needs_filter = [False]

    def taken_apart(states: StateTree) -> tuple[list | None, Layout | None]:
        """The fast path's values and layout; no layout for anything but a
        plain state tree (the general path then handles it, or explains what
        is wrong with it)."""
        try:
            values, signature = take_apart(states)
        except (AttributeError, TypeError):
            return None, None
        return values, Layout.of(signature, layouts)

    def call_filtered(env_key: Any, states: StateTree, *args: Any, **kwargs: Any) -> Any:
        # States holding non-array leaves (an eqx.Module's activation function):
        # those leaves travel as a static argument, as equinox.filter_jit does.
        arrays, static = eqx.partition(states, eqx.is_array)
        out, new_arrays = jitted_filtered(env_key, arrays, _Static(static), *args, **kwargs)
        return out, eqx.combine(new_arrays, static)

    @functools.wraps(fun)
    def wrapper(states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        env_key = environ.cache_key()
        if needs_filter[0]:
            return call_filtered(env_key, states, *args, **kwargs)
        values, layout = taken_apart(states)
        try:
            if layout is None:
                return jitted(env_key, states, *args, **kwargs)
            out, new_values, passed = jitted_flat(env_key, values, layout, *args, **kwargs)
        except TypeError as error:
            message = str(error)
            if "as an abstract array" not in message and "not a valid JAX type" not in message:
                raise
            needs_filter[0] = True
            return call_filtered(env_key, states, *args, **kwargs)
        if passed is not None:
            new_values = passed.fill_in(values, new_values)
        return out, layout.build(new_values)

    def lower(states: StateTree, *args: Any, **kwargs: Any) -> Any:
        env_key = environ.cache_key()
        values, layout = taken_apart(states)
        if layout is None:
            return jitted.lower(env_key, states, *args, **kwargs)
        return jitted_flat.lower(env_key, values, layout, *args, **kwargs)

    wrapper.lower = lower  # type: ignore[attr-defined]
    return wrapper


class _Static:
    """The non-array leaves of a state tree, hashable, as a static argument."""

    def __init__(self, tree: StateTree):
        self.tree = tree
        leaves, self.treedef = jax.tree.flatten(tree)
        self.leaves = tuple(leaves)

    def __hash__(self) -> int:
        return hash((self.treedef, self.leaves))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Static)
            and self.treedef == other.treedef
            and self.leaves == other.leaves
        )

    def check_unchanged(self, new_tree: StateTree, fun: Callable) -> None:
        new_leaves, new_def = jax.tree.flatten(new_tree)
        if new_def == self.treedef and tuple(new_leaves) == self.leaves:
            return
        old = dict(iter_states(self.tree))
        changed = [
            path_str(path)
            for path, state in iter_states(new_tree)
            if jax.tree.flatten(state) != jax.tree.flatten(old[path])
        ]
        raise StateError(
            f"ps.compile.jit({fun_name(fun)}): the function changes non-array leaves "
            f"(functions, ints, None inside pytree values) of the states "
            f"{', '.join(map(repr, changed)) or '(structure changed)'}. Under jit only "
            "array values can change; keep the rest of each value as it was."
        )
