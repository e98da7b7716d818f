"""`vmap` and `pmap` for stateful functions, with `in_states` / `out_states`.

The states are split into the parts that are mapped in (`in_states`, by
axis), the parts declared batched on output (`out_states`), the random keys
that are split per lane, and the rest, which is broadcast in and must come back
unbatched. One `jax.vmap` / `jax.pmap` object is built per transform, over a
function that takes the parts as arguments, so JAX's own caches apply.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable
from typing import Any

import jax

from .._errors import BatchAxisError, StateError
from .._paths import Path, describe_paths, path_str
from .._selectors import Selector, as_selector
from .._split import merge, select_like, split_compiled
from .._state import RandomState
from .._stateful import call_stateful, fun_name
from .._tree import StateTree, iter_states

__all__ = ["pmap", "vmap"]

_LANE_AXIS = "_purestate_lane"


def _axis_map(spec: Any, name: str) -> tuple[tuple[int, Selector], ...]:
    """``in_states``/``out_states`` as ``((axis, selector), ...)``."""
    if spec is None:
        return ()
    if isinstance(spec, dict) and spec and all(type(k) is int for k in spec):
        return tuple((axis, as_selector(sel)) for axis, sel in spec.items())
    if isinstance(spec, dict) and any(type(k) is int for k in spec):
        raise StateError(
            f"{name}: a dict mixing int and str keys is neither an axis map "
            "{axis: selector} nor a state tree."
        )
    return ((0, as_selector(spec)),)


def _check_axes_within_rank(parts: tuple, axes: tuple[int, ...], where: str) -> None:
    bad = []
    for part, axis in zip(parts, axes, strict=True):
        for path, state in iter_states(part):
            for leaf in jax.tree.leaves(state.value):
                ndim = getattr(leaf, "ndim", 0)
                if not -ndim <= axis < ndim:
                    bad.append(f"{path_str(path)!r} (rank {ndim}, axis {axis})")
    if bad:
        raise BatchAxisError(
            f"{where}: in_states maps states along an axis beyond their rank: "
            f"{', '.join(bad)}. Choose an axis the state has, or leave the state out of "
            "in_states."
        )


def _batched_paths(probe: Callable[[frozenset], None], candidates: list[Path]) -> list[Path]:
    """The candidate paths whose values come back batched: `probe(paths)`
    raises ValueError when any of `paths` is returned batched as unbatched."""
    found = []
    for path in candidates:
        try:
            probe(frozenset([path]))
        except ValueError:
            found.append(path)
    return found


class _Mapped:
    """The shared machinery of `vmap` and `pmap`."""

    def __init__(
        self,
        fun,
        kind,
        *,
        in_axes,
        out_axes,
        in_states,
        out_states,
        axis_name,
        axis_size,
        devices=None,
        backend=None,
    ):
        self.fun = fun
        self.kind = kind
        self.where = f"ps.augment.{kind}({fun_name(fun)})"
        self.in_axes = tuple(in_axes) if isinstance(in_axes, list) else in_axes
        self.out_axes = out_axes
        self.in_map = _axis_map(in_states, self.where)
        self.out_map = _axis_map(out_states, self.where)
        self.axis_name = axis_name
        self.lane_axis = axis_name if axis_name is not None else _LANE_AXIS
        self.axis_size = axis_size
        self.extra = {"devices": devices, "backend": backend}  # for pmap only
        self.selectors = tuple(sel for _, sel in self.in_map + self.out_map)
        self.random_states = (as_selector(RandomState),)
        # An eager jax.vmap reads its function's signature on every call (for
        # debug info); a plain function with a precomputed one answers at once.
        self._lane_function = functools.partial(_call_lane, self)
        self._lane_function.__signature__ = inspect.signature(self._lane)
        self.in_axes_of_parts = tuple(axis for axis, _ in self.in_map)
        self.out_axes_of_parts = tuple(axis for axis, _ in self.out_map)
        if kind == "pmap":
            self._reject_negative_axes()
        self._mapped = self._build()
        self._checked: set[Hashable] = set()

    def as_function(self) -> Callable:
        """The transformed function, named and documented like `fun`."""
        return functools.wraps(self.fun)(
            lambda states, *args, **kwargs: self(states, *args, **kwargs)
        )

    def _reject_negative_axes(self) -> None:
        # jax.pmap (JAX 0.10) shards the wrong dimension for negative axes.
        axes = [*self.in_axes_of_parts, *self.out_axes_of_parts]
        axes += jax.tree.leaves((self.in_axes, self.out_axes))
        if any(isinstance(a, int) and a < 0 for a in axes):
            raise BatchAxisError(
                f"{self.where}: negative axes are not supported by jax.pmap in this JAX "
                "version (it shards the wrong dimension); give non-negative axes."
            )

    # The function JAX maps: everything it needs comes in as arguments.
    def _lane(self, in_parts, out_parts, rest, rng_base, args, kwargs):
        rng = rng_base
        if rng_base:
            # Only when there are keys: in eager mode each op is dispatched on
            # its own, so an unused axis_index would cost a whole op per call.
            lane = jax.lax.axis_index(self.lane_axis)
            rng = jax.tree.map(lambda key: jax.random.fold_in(key, lane), rng_base)
        states = merge(*in_parts, *out_parts, rest, rng)
        out, new_states = call_stateful(self.fun, states, *args, **kwargs)
        # call_stateful checked that new_states kept every path and kind.
        new_in = tuple(select_like(new_states, part) for part in in_parts)
        new_out = tuple(select_like(new_states, part) for part in out_parts)
        return out, (new_in, new_out, select_like(new_states, rest))

    def _build(self, rest_axes: Any = None, transform: Callable | None = None) -> Callable:
        """The mapped callable; `rest_axes` are the out_axes of the states that
        must come back unbatched (None; a tree when probing for batched ones)."""
        in_axes = (self.in_axes_of_parts, None, None, None, self.in_axes, 0)
        out_axes = (self.out_axes, (self.in_axes_of_parts, self.out_axes_of_parts, rest_axes))
        transform = transform or (jax.vmap if self.kind == "vmap" else jax.pmap)
        options = dict(
            in_axes=in_axes, out_axes=out_axes, axis_name=self.lane_axis, axis_size=self.axis_size
        )
        if transform is jax.pmap:
            options.update(self.extra)
        return transform(self._lane_function, **options)

    def _split(self, states: StateTree):
        *parts, rest = split_compiled(states, self.selectors)
        n_in = len(self.in_map)
        in_parts, out_parts = tuple(parts[:n_in]), tuple(parts[n_in:])
        rng_base, rest = split_compiled(rest, self.random_states)
        return in_parts, out_parts, rest, rng_base

    def _check_arguments(self, in_parts: tuple, args: tuple, kwargs: dict) -> None:
        if isinstance(self.in_axes, tuple) and len(self.in_axes) != len(args):
            raise BatchAxisError(
                f"{self.where}: in_axes has {len(self.in_axes)} entries but the function "
                f"was called with {len(args)} positional argument(s) after the states. "
                "Give one entry per argument (None for unmapped ones)."
            )
        arg_axes = jax.tree.leaves(self.in_axes) if args else []
        if self.axis_size is None and not any(in_parts) and not kwargs and not arg_axes:
            raise BatchAxisError(
                f"{self.where}: nothing is batched (no in_states matched and every "
                "argument has in_axes None), so the batch size is unknown. Pass "
                "axis_size=..., map an argument, or declare batched states in in_states."
            )
        _check_axes_within_rank(in_parts, self.in_axes_of_parts, self.where)

    def _explain_size_mismatch(self, in_parts: tuple, error: ValueError) -> BatchAxisError:
        sizes = []
        for part, axis in zip(in_parts, self.in_axes_of_parts, strict=True):
            for path, state in iter_states(part):
                for leaf in jax.tree.leaves(state.value):
                    sizes.append(f"{path_str(path)!r}: {leaf.shape[axis]}")
        return BatchAxisError(
            f"{self.where}: the batch sizes disagree between arguments and states. Sizes of "
            f"the mapped states: {', '.join(sizes) or '(none)'}. JAX reports: {error}"
        )

    def _batch_axis_error(self, paths: list[Path]) -> BatchAxisError:
        return BatchAxisError(
            f"{self.where}: the function writes batched values into states that are "
            f"neither in in_states nor in out_states: {describe_paths(paths)}. Declare "
            f"them batched with out_states (e.g. out_states={path_str(paths[0])!r}), or "
            "keep them unbatched (reduce over the batch, e.g. with jax.lax.pmean and an "
            "axis_name)."
        )

    def _find_batched(self, call_args: tuple, kwargs: dict) -> list[Path]:
        rest = call_args[2]

        def probe(paths: frozenset) -> None:
            axes = _axes_tree(rest, lambda path: None if path in paths else 0)
            jax.eval_shape(self._build(axes, transform=jax.vmap), *call_args, kwargs)

        return _batched_paths(probe, [p for p, _ in iter_states(rest)])

    def __call__(self, states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        in_parts, out_parts, rest, rng_base = self._split(states)
        self._check_arguments(in_parts, args, kwargs)
        if rng_base:
            lane_base, next_keys = _split_keys(rng_base)
        else:
            lane_base, next_keys = rng_base, rng_base
        call_args = (in_parts, out_parts, rest, lane_base, args)
        if self.kind == "pmap":
            self._check_pmap_outputs(call_args, kwargs)
        try:
            out, (new_in, new_out, new_rest) = self._mapped(*call_args, kwargs)
        except ValueError as error:
            if "inconsistent sizes" in str(error):
                raise self._explain_size_mismatch(in_parts, error) from error
            self._reraise_with_paths(error, call_args, kwargs)
        return out, merge(*new_in, *new_out, new_rest, next_keys)

    def _check_pmap_outputs(self, call_args: tuple, kwargs: dict) -> None:
        # jax.pmap returns device 0's value for a batched output declared
        # unbatched, so check once per input layout with an abstract vmap.
        key = (
            jax.tree.structure((call_args, kwargs)),
            tuple(
                (getattr(x, "shape", None), getattr(x, "dtype", None))
                for x in jax.tree.leaves((call_args, kwargs))
            ),
        )
        if key in self._checked:
            return
        try:
            jax.eval_shape(self._build(transform=jax.vmap), *call_args, kwargs)
        except ValueError as error:
            self._reraise_with_paths(error, call_args, kwargs)
        self._checked.add(key)

    def _reraise_with_paths(self, error: ValueError, call_args: tuple, kwargs: dict) -> None:
        """Turn JAX's "batched output with out_axes None" error into a
        `ps.BatchAxisError` naming every offending state; re-raise anything else."""
        message = str(error)
        if "out_axes" in message or "mapped output" in message:
            paths = self._find_batched(call_args, kwargs)
            if paths:
                raise self._batch_axis_error(paths) from error
        raise error


def _call_lane(mapped: _Mapped, *parts: Any) -> Any:
    return mapped._lane(*parts)


def _axes_tree(tree: StateTree, axis_of: Callable[[Path], int | None], prefix: Path = ()) -> dict:
    """An out_axes prefix tree for `tree`: ``axis_of(path)`` at each state."""
    return {
        key: _axes_tree(child, axis_of, (*prefix, key))
        if isinstance(child, dict)
        else axis_of((*prefix, key))
        for key, child in tree.items()
    }


def _split_keys(rng_base: StateTree) -> tuple[StateTree, StateTree]:
    """Per-call keys: one to derive the lanes' keys from, one to return."""
    pairs = jax.tree.map(jax.random.split, rng_base)
    lane = jax.tree.map(lambda k: k[0], pairs)
    nxt = jax.tree.map(lambda k: k[1], pairs)
    return lane, nxt


def vmap(
    fun: Callable | None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    in_states: Any = None,
    out_states: Any = None,
    axis_name: Hashable | None = None,
    axis_size: int | None = None,
) -> Callable:
    """Vectorise a stateful function over a batch axis, saying which states are
    batched.

    `in_axes`/`out_axes` apply to ``*args`` and `out` exactly as in `jax.vmap`;
    keyword arguments are mapped on axis 0. `in_states`/`out_states` are a
    selector (axis 0) or ``{axis: selector}``: states in `in_states` are mapped
    along their axis and come back batched on it; states in `out_states` become
    batched inside and come back batched on their axis; every other state is
    broadcast and must come back unbatched, else `ps.BatchAxisError` names it.
    `RandomState`s not in `in_states` give each lane its own key and come back
    advanced once, unbatched.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def step(states, x):
        ...     v = states["v"].value + x * states["w"].value
        ...     return v.sum(), ps.set(states, "v", v)
        >>> states = {"v": ps.ShortTermState(jnp.zeros((4, 2))), "w": ps.ParamState(jnp.ones(2))}
        >>> out, states = ps.augment.vmap(step, in_states="v")(states, jnp.arange(4.0))
        >>> out.tolist(), ps.get(states, "v").shape
        ([0.0, 2.0, 4.0, 6.0], (4, 2))
    """
    options = dict(
        in_axes=in_axes,
        out_axes=out_axes,
        in_states=in_states,
        out_states=out_states,
        axis_name=axis_name,
        axis_size=axis_size,
    )
    if fun is None:
        return functools.partial(vmap, **options)
    return _Mapped(fun, "vmap", **options).as_function()


def pmap(
    fun: Callable | None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    in_states: Any = None,
    out_states: Any = None,
    axis_name: Hashable | None = None,
    axis_size: int | None = None,
    devices: Any = None,
    backend: str | None = None,
) -> Callable:
    """`vmap` over devices (`jax.pmap`): the same `in_states`/`out_states`
    semantics, with `axis_name` for collectives (`jax.lax.psum`, `pmean`).
    Undeclared states written with per-device values raise
    `ps.BatchAxisError` (checked once per input layout, since `jax.pmap` itself
    would silently return one device's value).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import purestate as ps
        >>> n = jax.local_device_count()
        >>> def step(states, x):
        ...     total = jax.lax.psum(x, "d")
        ...     return total, ps.set(states, "seen", total)
        >>> states = {"seen": ps.LongTermState(jnp.zeros(()))}
        >>> out, states = ps.augment.pmap(step, axis_name="d")(states, jnp.ones(n))
        >>> float(ps.get(states, "seen")) == n
        True
    """
    options = dict(
        in_axes=in_axes,
        out_axes=out_axes,
        in_states=in_states,
        out_states=out_states,
        axis_name=axis_name,
        axis_size=axis_size,
        devices=devices,
        backend=backend,
    )
    if fun is None:
        return functools.partial(pmap, **options)
    return _Mapped(fun, "pmap", **options).as_function()
