"""`jit`: `jax.jit` for stateful functions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from .. import environ
from .._argnums import (
    check_in_signature,
    index_tuple,
    infer_static,
    name_tuple,
    positional_count,
    resolve,
)
from .._errors import StateError, StateTypeError
from .._layout import Layout, Returned, Values, check_statics_kept, take_apart
from .._selectors import Selector, as_selector
from .._split import assign
from .._stateful import call_stateful, fun_name
from .._tree import StateTree, conform

__all__ = ["jit"]

# Leading arguments of the traced function: the settings' key and the layout
# (static), the traced settings and the states' values.
_N_INTERNAL = 4


class _Placements:
    """`state_shardings`: which values are pinned to which sharding."""

    def __init__(self, state_shardings: dict[Any, jax.sharding.Sharding] | None, where: str):
        items = list((state_shardings or {}).items())
        self.selectors: tuple[Selector, ...] = tuple(as_selector(sel) for sel, _ in items)
        self.shardings = tuple(sharding for _, sharding in items)
        self.where = where

    def constrain(self, layout: Layout, values: Values) -> Values:
        """Pin the selected values to their shardings (inside the trace)."""
        if not self.selectors:
            return values
        options = ("state_shardings",) * len(self.selectors)
        choice = assign(layout, values, self.selectors, options, self.where)
        return [
            v
            if c == len(self.shardings)
            else jax.lax.with_sharding_constraint(v, self.shardings[c])
            for v, c in zip(values, choice, strict=True)
        ]


def _constrain_prefix(
    tree: Any, shardings: Any, place: Callable[[Any, Any], Any] | None = None
) -> Any:
    """`tree` with each subtree constrained (or placed, with `place`) to the
    sharding at its place in `shardings`, a pytree prefix of `tree` (None
    leaves it alone)."""
    place = place or jax.lax.with_sharding_constraint

    def is_leaf(x: Any) -> bool:
        return x is None or isinstance(x, jax.sharding.Sharding)

    return jax.tree.map(
        lambda s, sub: sub if s is None else place(sub, s), shardings, tree, is_leaf=is_leaf
    )


def _explain_static_states(where: str, args: tuple, positions: tuple[int, ...]) -> None:
    """A state tree given as a static argument: the function's parameters are
    probably in the wrong order."""
    for i in positions:
        if isinstance(args[i], dict):
            raise StateTypeError(
                f"{where}: argument {i} after `states` is static but holds a dict (a state "
                "tree?). A stateful function takes the state tree first, f(states, *args), "
                "and static_argnums counts the arguments after it (0 is the first argument "
                "after `states`)."
            )


def jit(
    fun: Callable | None = None,
    *,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    donate_states: bool = False,
    donate_argnums: int | Sequence[int] = (),
    state_shardings: dict[Any, jax.sharding.Sharding] | None = None,
    in_shardings: Any = None,
    out_shardings: Any = None,
) -> Callable:
    """Compile a stateful function ``fun(states, *args) -> (out, new_states)``.

    A thin `jax.jit`. It hands JAX the states' values as a flat list and the
    tree's layout (keys, nesting, kinds, and the static parts of pytree
    values) as a static argument, so a call costs less than `jax.jit` on the
    state tree itself, whose `State` nodes JAX would flatten and rebuild
    through Python callbacks. The current `ps.environ` settings are part of the
    cache key, so a changed ``dt`` retraces instead of reusing a stale trace;
    a traced setting is passed in as an input. It retraces when a state's
    structure, kind, shape or dtype changes, or when the tree's keys come in
    another order. A state that `fun` returns unchanged comes back holding the
    very array that went in, where `jax.jit` would copy it (unless the states
    are donated). Non-array leaves of state values (an `equinox.Module`'s
    activation function) are static, as in `equinox.filter_jit`, and `fun` may
    not change them.

    Args:
        fun: the stateful function (or use ``@ps.compile.jit(...)``).
        static_argnums: positions in ``*args`` (0 is the first after `states`)
            that are static, with `jax.jit`'s rules: negative positions count
            from the end, and the names of those parameters become static too.
        static_argnames: keyword arguments that are static; a parameter named
            here is static also when passed positionally.
        donate_states: donate the input state buffers to the computation.
            A state that an earlier call returned unchanged holds the very
            array that went into that call, so donating it deletes that
            input's array too (copy a tree you want to keep:
            ``jax.tree.map(jnp.copy, states)``).
        donate_argnums: positions in ``*args`` whose buffers are donated, as
            `jax.jit`'s.
        state_shardings: ``{selector: jax.sharding.Sharding}``; the selected
            states are placed on those shardings, inside and on output.
        in_shardings: shardings of ``*args``: one for all, or a tuple with an
            entry (a sharding, a pytree prefix of them, or None) per argument.
        out_shardings: shardings of `out` (a pytree prefix of it).

    Shardings are applied inside the computation with
    `jax.lax.with_sharding_constraint`, so arguments placed elsewhere are
    moved rather than refused.

    The jitted function has ``.lower(states, *args)`` (as `jax.jit`'s) and
    ``.clear_cache()``.

    Examples:
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
    options: dict[str, Any] = dict(
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        donate_states=donate_states,
        donate_argnums=donate_argnums,
        state_shardings=state_shardings,
        in_shardings=in_shardings,
        out_shardings=out_shardings,
    )
    if fun is None:
        return functools.partial(jit, **options)
    return _Jitted(fun, **options).as_function()


class _Jitted:
    """The state behind one `jit`-compiled function."""

    def __init__(
        self,
        fun: Callable,
        *,
        static_argnums: int | Sequence[int],
        static_argnames: str | Sequence[str],
        donate_states: bool,
        donate_argnums: int | Sequence[int],
        state_shardings: dict[Any, jax.sharding.Sharding] | None,
        in_shardings: Any,
        out_shardings: Any,
    ):
        self.fun = fun
        self.where = f"ps.compile.jit({fun_name(fun)})"
        self.prefix = f"{self.where}: "
        nums, names = infer_static(
            fun,
            index_tuple(static_argnums, "static_argnums", self.where),
            name_tuple(static_argnames, "static_argnames", self.where),
        )
        check_in_signature(fun, nums, "static_argnums", self.where)
        self.static_argnums = nums
        self.negative_reach = max((-i for i in nums if i < 0), default=0)
        self.donate_states = donate_states
        donated = index_tuple(donate_argnums, "donate_argnums", self.where)
        check_in_signature(fun, donated, "donate_argnums", self.where)
        if any(i < 0 for i in donated):
            # jax.jit ignores negative donate_argnums; count them from the
            # end of the signature instead, which needs a fixed one.
            n = positional_count(fun)
            if n is None:
                raise ValueError(
                    f"{self.where}: negative donate_argnums need a function with a fixed "
                    "number of positional parameters (no *args); give non-negative positions."
                )
            donated = tuple(i % n for i in donated)
        if set(donated) & set(nums):
            raise ValueError(
                f"{self.where}: the positions {sorted(set(donated) & set(nums))} are both "
                "static and donated; a static argument has no buffer to donate."
            )
        self.placements = _Placements(state_shardings, self.where)
        self.in_shardings = in_shardings
        self.out_shardings = out_shardings
        self.jit_options: dict[str, Any] = dict(
            # JAX resolves negative positions from the end of the call's
            # arguments, which the internal ones (at the front) do not change.
            static_argnums=(0, 1, *(i + _N_INTERNAL if i >= 0 else i for i in nums)),
            static_argnames=names,
            donate_argnums=(
                *((3,) if donate_states else ()),
                *(i + _N_INTERNAL if i >= 0 else i for i in donated),
            ),
        )
        # One jax.jit per distinct values of the ps.environ settings it reads.
        self.variants: environ.Variants[Any] = environ.Variants(self._make)

    def _make(self, variant: environ.Variant[Any]) -> Any:
        return jax.jit(functools.partial(self._traced, variant), **self.jit_options)

    def _traced(
        self,
        _ps_variant: environ.Variant[Any],
        _ps_settings: environ.Settings,
        _ps_layout: Layout,
        _ps_tracers: tuple,
        _ps_values: Values,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[Any, Values, Returned | None]:
        # Names no keyword argument of `fun` will take: JAX matches keyword
        # arguments against this signature.
        variant, settings, layout, tracers = _ps_variant, _ps_settings, _ps_layout, _ps_tracers
        with self.variants.tracing(variant, settings, tracers):
            values = self.placements.constrain(layout, _ps_values)
            args = self._constrain_args(args)
            out, new_states = call_stateful(self.fun, layout.build(values), *args, **kwargs)
            if self.out_shardings is not None:
                out = _constrain_prefix(out, self.out_shardings)
        new_values, new_layout = take_apart(new_states)
        check_statics_kept(layout, new_layout, self.where)
        new_values = self.placements.constrain(new_layout, new_values)
        return (
            out,
            *Returned.describe(layout, values, new_layout, new_values, not self.donate_states),
        )

    def _constrain_args(self, args: tuple, place: Callable[[Any, Any], Any] | None = None) -> tuple:
        """Place the (non-static) arguments on `in_shardings`: with a
        constraint inside the trace, or with `place` (`jax.device_put`)."""
        shardings = self.in_shardings
        if shardings is None:
            return args
        if not isinstance(shardings, (tuple, list)):
            shardings = (shardings,) * len(args)
        if len(shardings) != len(args):
            raise ValueError(
                f"{self.where}: in_shardings has {len(shardings)} entries for {len(args)} "
                "positional argument(s) after the states; give one per argument (None for "
                "those left where they are)."
            )
        static = {i % len(args) for i in self.static_argnums if -len(args) <= i < len(args)}
        return tuple(
            a if i in static or s is None else _constrain_prefix(a, s, place)
            for i, (a, s) in enumerate(zip(args, shardings, strict=True))
        )

    def _check_static_args(self, args: tuple) -> None:
        if self.negative_reach > len(args):
            resolve(self.static_argnums, len(args), "static_argnums", self.where)
        n = len(args)
        positions = tuple(i % n for i in self.static_argnums if -n <= i < n)
        _explain_static_states(self.where, args, positions)

    def _arguments(self, states: StateTree, args: tuple) -> tuple[Any, tuple]:
        """The jax.jit for the current settings, and its arguments."""
        if self.static_argnums:
            self._check_static_args(args)
        if self.in_shardings is not None:
            # Moved first, so that arguments committed elsewhere are not refused.
            args = self._constrain_args(args, jax.device_put)
        jitted, settings, tracers = self.variants.select()
        values, layout = take_apart(states, self.prefix)
        return jitted, (settings, layout, tracers, values, *args)

    def lower(self, states: StateTree, *args: Any, **kwargs: Any) -> _Lowered:
        """`jax.jit(...).lower` for these states and arguments."""
        jitted, call_args = self._arguments(states, args)
        lowered = jitted.lower(*call_args, **kwargs)
        return _Lowered(lowered, self.variants, jitted, call_args[0], call_args[1], self.where)

    def clear_cache(self) -> None:
        """Drop the compiled traces (as `jax.jit`'s ``clear_cache``)."""
        self.variants.clear()

    def as_function(self) -> Callable:
        """The jitted function, named and documented like `fun`. Its body is
        the per-call path: kept to a few lookups beyond `jax.jit` itself."""
        arguments = self._arguments

        @functools.wraps(self.fun)
        def call(states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
            jitted, call_args = arguments(states, args)
            out, new_values, returned = jitted(*call_args, **kwargs)
            layout = call_args[1]
            if returned is None:
                return out, layout.build(new_values)
            new_layout = returned.layout or layout
            return out, new_layout.build(returned.fill_in(call_args[3], new_values))

        call.lower = self.lower  # type: ignore[attr-defined]
        call.clear_cache = self.clear_cache  # type: ignore[attr-defined]
        return call


class _Lowered:
    """`jax.stages.Lowered` for a stateful function: `compile` gives a
    function of ``(states, *args)``; everything else is JAX's."""

    def __init__(
        self,
        lowered: Any,
        variants: environ.Variants[Any],
        jitted: Any,
        settings: environ.Settings,
        layout: Layout,
        where: str,
    ):
        self._lowered = lowered
        self._lowering = (variants, jitted, settings, layout, where)

    def compile(self, *args: Any, **kwargs: Any) -> _Compiled:
        return _Compiled(self._lowered.compile(*args, **kwargs), *self._lowering)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lowered, name)


class _Compiled:
    """`jax.stages.Compiled` called as ``compiled(states, *args)``; static
    arguments are left out, as with JAX's compiled functions."""

    def __init__(
        self,
        compiled: Any,
        variants: environ.Variants[Any],
        jitted: Any,
        settings: environ.Settings,
        layout: Layout,
        where: str,
    ):
        self._compiled = compiled
        self._variants = variants
        self._jitted = jitted
        self._settings = settings
        self._layout = layout
        self._where = where

    def __call__(self, states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        # The settings the lowered trace read must be as they were then.
        jitted, settings, tracers = self._variants.select()
        values, layout = take_apart(states, f"{self._where}: ")
        if layout != self._layout:
            # The same states in another key order (e.g. from jax.eval_shape,
            # which sorts keys) are arranged as the lowered tree was.
            arranged = conform(states, self._layout.skeleton())
            if arranged is not None:
                values, layout = take_apart(arranged)
        if layout != self._layout:
            raise StateError(
                f"{self._where}: this compiled function was lowered for a state tree of "
                "another layout (keys, kinds or pytree structure of the values); lower it "
                "again for these states."
            )
        if jitted is not self._jitted or settings != self._settings:
            raise StateError(
                f"{self._where}: this compiled function was lowered under other ps.environ "
                "settings, which it has baked in; lower it again under the current ones."
            )
        out, new_values, returned = self._compiled(tracers, values, *args, **kwargs)
        if returned is None:
            return out, layout.build(new_values)
        return out, (returned.layout or layout).build(returned.fill_in(values, new_values))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)
