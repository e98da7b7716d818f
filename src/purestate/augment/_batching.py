"""`vmap` and `pmap` for stateful functions, with `in_states` / `out_states`.

The state tree goes to JAX as a list of values, one per state (see
`purestate._layout`), with one batch axis per state: its `in_states` axis, or
None for states broadcast in. Which state gets which axis is decided once per
tree layout (for selectors that look only at paths and kinds) and kept in a
`_Plan`; one `jax.vmap` / `jax.pmap` object is built per plan, so JAX's own
caches apply. Random keys outside `in_states` are split per lane inside the
map, and come back advanced once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _pytree as pytree
from .. import environ
from .._argnums import check_in_signature, index_tuple, infer_static, name_tuple, resolve
from .._errors import BatchAxisError, StateError
from .._layout import Layout, Returned, Values, check_statics_kept, take_apart
from .._paths import Path, describe_paths, path_str
from .._selectors import Selector, as_selector
from .._split import assign
from .._state import RandomState
from .._stateful import call_stateful, fun_name
from .._tree import StateTree
from ..compile._progress import per_device

__all__ = ["pmap", "vmap"]

_LANE_AXIS = "_purestate_lane"
_MAX_MAPPED = 256


def _axis_map(spec: Any, option: str, where: str) -> tuple[tuple[int, Selector, str], ...]:
    """``in_states``/``out_states`` as ``((axis, selector, option), ...)``;
    None and an empty dict declare no states."""
    if spec is None or (isinstance(spec, dict) and not spec):
        return ()
    if isinstance(spec, dict) and spec and all(type(k) is int for k in spec):
        return tuple((axis, as_selector(sel), f"{option}[{axis}]") for axis, sel in spec.items())
    if isinstance(spec, dict) and any(type(k) is int for k in spec):
        raise StateError(
            f"{where}: {option} is a dict mixing int and str keys, which is neither an axis "
            "map {axis: selector} nor a state tree."
        )
    return ((0, as_selector(spec), option),)


def _lane_signature(
    tracers: tuple, values: Values, args: tuple, kwargs: dict, sizer: Any
) -> None: ...


_LANE_SIGNATURE = inspect.signature(_lane_signature)


def _check_axis_size(axis_size: Any, where: str) -> None:
    if axis_size is None:
        return
    if isinstance(axis_size, bool) or not isinstance(axis_size, (int, np.integer)) or axis_size < 0:
        raise BatchAxisError(
            f"{where}: axis_size must be a non-negative int (the number of lanes); got "
            f"{axis_size!r}."
        )


def _is_single_key(key: Any) -> bool:
    dtype, shape = getattr(key, "dtype", None), np.shape(key)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return shape == ()
    return shape == (2,) and dtype == jnp.uint32


class _Plan(NamedTuple):
    """Per state (in layout order): how it goes in and comes out."""

    in_axes: tuple[int | None, ...]  # its batch axis going in (None: broadcast)
    keyed: tuple[int, ...]  # random keys split per lane inside (not in in_states)
    returned: tuple[int, ...]  # the states whose new values come back from the map
    out_axes: tuple[int | None, ...]  # their batch axes coming out (None: unbatched)


def _gathered(values: Values, plan: _Plan) -> Values:
    """`jax.pmap` refuses a broadcast input that is sharded over devices (a
    state that an earlier pmap returned batched): gather such values first."""

    def gather(x: Any) -> Any:
        sharding = getattr(x, "sharding", None)
        if sharding is None or sharding.is_fully_replicated:
            return x
        return jax.device_put(x, jax.devices()[0])

    return [
        v if axis is not None else jax.tree.map(gather, v)
        for v, axis in zip(values, plan.in_axes, strict=True)
    ]


def _axes_key(axes: Any) -> Hashable:
    """A hashable form of in_axes, which may hold dicts."""
    leaves, treedef = pytree.flatten(axes, is_leaf=lambda x: x is None)
    return tuple(leaves), treedef


class _Statics:
    """The static arguments of one call, passed to the function as they are."""

    __slots__ = ("named", "positional")

    def __init__(self, positional: tuple[tuple[int, Any], ...], named: tuple[tuple[str, Any], ...]):
        self.positional = positional
        self.named = named

    def key(self, required: bool, where: str) -> Hashable | None:
        """A hashable key for caching (None if the values cannot be hashed,
        which is a `TypeError` when `required`)."""
        key = (self.positional, self.named)
        try:
            hash(key)
        except TypeError:
            if required:
                raise TypeError(
                    f"{where}: jax.pmap keys its compiled code on the static arguments, "
                    "so they must be hashable; got "
                    + ", ".join(f"{type(v).__name__} at {k!r}" for k, v in key[0] + key[1])
                    + "."
                ) from None
            return None
        return key

    def fill(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The call's arguments with the static ones put back."""
        full = list(args)
        for position, value in self.positional:
            full.insert(position, value)
        return tuple(full), {**kwargs, **dict(self.named)}


class _Mapping(NamedTuple):
    """What selects one mapped callable: layout, plan, static arguments and
    the in_axes of the other arguments."""

    layout: Layout
    plan: _Plan
    statics: _Statics | None
    arg_axes: Any
    variant: environ.Variant[Any] | None  # pmap: its traces' ps.environ settings
    settings: environ.Settings | None  # pmap: the settings that hold tracers


class _Mapped:
    """The shared machinery of `vmap` and `pmap`."""

    def __init__(
        self,
        fun: Callable,
        kind: str,
        *,
        in_axes: Any,
        out_axes: Any,
        in_states: Any,
        out_states: Any,
        axis_name: Hashable | None,
        axis_size: int | None,
        static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (),
        devices: Any = None,
        backend: str | None = None,
    ):
        self.fun = fun
        self.kind = kind
        self.where = f"ps.augment.{kind}({fun_name(fun)})"
        _check_axis_size(axis_size, self.where)
        self.static_argnums, self.static_argnames = infer_static(
            fun,
            index_tuple(static_argnums, "static_argnums", self.where),
            name_tuple(static_argnames, "static_argnames", self.where),
        )
        check_in_signature(fun, self.static_argnums, "static_argnums", self.where)
        self.in_axes = tuple(in_axes) if isinstance(in_axes, list) else in_axes
        self.out_axes = out_axes
        self.in_map = _axis_map(in_states, "in_states", self.where)
        self.out_map = _axis_map(out_states, "out_states", self.where)
        declared = self.in_map + self.out_map
        self.selectors = tuple(sel for _, sel, _ in declared)
        self.options = tuple(option for _, _, option in declared)
        self.axes = tuple(axis for axis, _, _ in declared)
        self.axis_name = axis_name
        self.lane_axis = axis_name if axis_name is not None else _LANE_AXIS
        self.axis_size = axis_size
        self.pmap_options = {"devices": devices, "backend": backend}
        if kind == "pmap":
            self._reject_negative_axes()
        self._mapped: OrderedDict[Hashable, Callable] = OrderedDict()
        # jax.pmap caches traces on the function: one set of pmap objects per
        # distinct values of the ps.environ settings its traces read.
        self.variants: environ.Variants[Any] = environ.Variants(lambda variant: variant)
        self._checked: set[Hashable] = set()

    def as_function(self) -> Callable:
        """The transformed function, named and documented like `fun`."""
        return functools.wraps(self.fun)(
            lambda states, *args, **kwargs: self(states, *args, **kwargs)
        )

    def _reject_negative_axes(self) -> None:
        # jax.pmap (JAX 0.10) shards the wrong dimension for negative axes.
        axes = [*self.axes, *jax.tree.leaves((self.in_axes, self.out_axes))]
        if any(isinstance(a, int) and a < 0 for a in axes):
            raise BatchAxisError(
                f"{self.where}: negative axes are not supported by jax.pmap in this JAX "
                "version (it shards the wrong dimension); give non-negative axes."
            )

    # -- deciding each state's axes ------------------------------------------

    def _plan(self, layout: Layout, values: Values) -> _Plan:
        choice = assign(layout, values, self.selectors, self.options, self.where, self.axes)
        n_in, n = len(self.in_map), len(self.selectors)
        in_axes, keyed, returned, out_axes = [], [], [], []
        for i, ((_, kind, _), c) in enumerate(zip(layout.states, choice, strict=True)):
            is_key = issubclass(kind, RandomState) and c >= n_in
            in_axes.append(self.axes[c] if c < n_in else None)
            if is_key:
                keyed.append(i)
            if c < n or not is_key:  # keys of the rest come back advanced, unbatched
                returned.append(i)
                out_axes.append(self.axes[c] if c < n else None)
        return _Plan(tuple(in_axes), tuple(keyed), tuple(returned), tuple(out_axes))

    # -- the function JAX maps -------------------------------------------------

    def _lane(
        self,
        mapping: _Mapping,
        tracers: tuple,
        values: Values,
        args: tuple,
        kwargs: dict,
        sizer: Any,
    ) -> tuple[Any, tuple[Any, ...], Returned | None]:
        del sizer  # only gives jax.pmap a mapped argument when nothing else is
        layout, plan, statics, _, variant, settings = mapping
        if statics is not None:
            args, kwargs = statics.fill(args, kwargs)
        # jax.pmap caches this trace: it records the settings it reads.
        tracing = (
            contextlib.nullcontext()
            if variant is None or settings is None
            else self.variants.tracing(variant, settings, tracers)
        )
        # Every device runs the function's loops: their progress bars report per device.
        devices = per_device((self.lane_axis,)) if self.kind == "pmap" else contextlib.nullcontext()
        with tracing, devices:
            if plan.keyed:
                # Each lane draws from its own key. Only when there are keys:
                # in eager mode an unused axis_index would cost an op per call.
                lane = jax.lax.axis_index(self.lane_axis)
                values = list(values)
                for i in plan.keyed:
                    values[i] = jax.random.fold_in(values[i][0], lane)
            else:
                values = list(values)
            out, new_states = call_stateful(self.fun, layout.build(values), *args, **kwargs)
        new_values, new_layout = take_apart(new_states)
        check_statics_kept(layout, new_layout, self.where)
        marker = None if new_layout == layout else Returned(new_layout, None)
        return out, tuple(new_values[i] for i in plan.returned), marker

    def _build(
        self,
        mapping: _Mapping,
        state_out_axes: tuple | None = None,
        out_axes: Any = None,
        transform: Callable | None = None,
    ) -> Callable:
        """The mapped callable for one mapping. The optional arguments change
        the output axes (for probing which outputs are batched)."""
        # Tuples, not lists: multi-process jax.pmap hashes its axes.
        in_axes = (None, mapping.plan.in_axes, mapping.arg_axes, 0, 0)
        out_axes = (
            self.out_axes if out_axes is None else out_axes,
            mapping.plan.out_axes if state_out_axes is None else state_out_axes,
            None,
        )
        transform = transform or (jax.vmap if self.kind == "vmap" else jax.pmap)
        options: dict[str, Any] = dict(
            in_axes=in_axes, out_axes=out_axes, axis_name=self.lane_axis, axis_size=self.axis_size
        )
        if transform is jax.pmap:
            options.update(self.pmap_options)
        lane = functools.partial(self._lane, mapping)
        # An eager jax.vmap reads its function's signature on every call (for
        # debug info); a precomputed one answers at once.
        lane.__signature__ = _LANE_SIGNATURE  # type: ignore[attr-defined]
        return transform(lane, **options)

    def _mapped_for(self, mapping: _Mapping) -> Callable:
        # jax.pmap caches traces on the function, which reads ps.environ and
        # the static arguments: one pmap object per settings and static
        # values, so a changed one never hits an old trace. jax.vmap caches
        # nothing, so unhashable static arguments are fine there.
        statics = mapping.statics
        static_key = None if statics is None else statics.key(self.kind == "pmap", self.where)
        if statics is not None and static_key is None:
            return self._build(mapping)
        key = (
            mapping.layout,
            mapping.plan,
            mapping.variant,
            mapping.settings,
            static_key,
            _axes_key(mapping.arg_axes),
        )
        mapped = self._mapped.get(key)
        if mapped is None:
            mapped = self._mapped[key] = self._build(mapping)
            if len(self._mapped) > _MAX_MAPPED:
                self._mapped.popitem(last=False)
        return mapped

    # -- checks -------------------------------------------------------------------

    def _split_static(self, args: tuple, kwargs: dict) -> tuple[_Statics | None, tuple, dict, Any]:
        """The static arguments of a call, the others, and their in_axes."""
        if not (self.static_argnums or self.static_argnames):
            if isinstance(self.in_axes, tuple) and len(self.in_axes) != len(args):
                raise self._in_axes_error(len(args))
            return None, args, kwargs, self.in_axes
        positions = set(resolve(self.static_argnums, len(args), "static_argnums", self.where))
        statics = _Statics(
            tuple((i, a) for i, a in enumerate(args) if i in positions),
            tuple((k, v) for k, v in kwargs.items() if k in self.static_argnames),
        )
        dynamic = tuple(a for i, a in enumerate(args) if i not in positions)
        dynamic_kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        arg_axes = self.in_axes
        if isinstance(arg_axes, tuple):
            # One entry per argument (static ones ignored), or per mapped one.
            if len(arg_axes) == len(args):
                arg_axes = tuple(a for i, a in enumerate(arg_axes) if i not in positions)
            elif len(arg_axes) != len(dynamic):
                raise self._in_axes_error(len(args))
        return statics, dynamic, dynamic_kwargs, arg_axes

    def _in_axes_error(self, n_args: int) -> BatchAxisError:
        return BatchAxisError(
            f"{self.where}: in_axes has {len(self.in_axes)} entries but the function was "
            f"called with {n_args} positional argument(s) after the states. Give one entry "
            "per argument (None for unmapped ones; static arguments may be left out)."
        )

    def _check_arguments(
        self, layout: Layout, plan: _Plan, values: Values, args: tuple, kwargs: dict, arg_axes: Any
    ) -> Any:
        """Check what JAX would explain badly; return the `sizer` argument."""
        mapped_states = [i for i, axis in enumerate(plan.in_axes) if axis is not None]
        self._check_states_axes(layout, plan, values, mapped_states)
        bad_keys = [layout.paths[i] for i in plan.keyed if not _is_single_key(values[i])]
        if bad_keys:
            raise BatchAxisError(
                f"{self.where}: the RandomStates {describe_paths(bad_keys)} hold several keys "
                "but are not in in_states, so each lane would get all of them. Declare them "
                "in in_states to give each lane its own key, or hold one key (split per lane "
                "automatically)."
            )
        args_mapped = bool(args) and any(a is not None for a in jax.tree.leaves(arg_axes))
        if mapped_states or args_mapped or kwargs:
            return None
        if self.axis_size is None:
            raise BatchAxisError(
                f"{self.where}: nothing is batched (no in_states matched and every "
                "argument has in_axes None), so the batch size is unknown. Pass "
                "axis_size=..., map an argument, or declare batched states in in_states."
            )
        return np.zeros((self.axis_size,), np.int8) if self.kind == "pmap" else None

    def _check_states_axes(
        self, layout: Layout, plan: _Plan, values: Values, mapped: list[int]
    ) -> None:
        bad, sizes = [], []
        for i in mapped:
            axis = plan.in_axes[i]
            assert axis is not None  # `mapped` holds the states with an axis
            for leaf in jax.tree.leaves(values[i]):
                ndim = np.ndim(leaf)
                if not -ndim <= axis < ndim:
                    bad.append(f"{path_str(layout.paths[i])!r} (rank {ndim}, axis {axis})")
                elif self.axis_size is not None and np.shape(leaf)[axis] != self.axis_size:
                    sizes.append(f"{path_str(layout.paths[i])!r}: {np.shape(leaf)[axis]}")
        if bad:
            raise BatchAxisError(
                f"{self.where}: in_states maps states along an axis beyond their rank: "
                f"{', '.join(bad)}. Choose an axis the state has, or leave the state out of "
                "in_states."
            )
        if sizes:
            raise BatchAxisError(
                f"{self.where}: axis_size={self.axis_size} but the mapped states have other "
                f"sizes along their axes: {', '.join(sizes)}."
            )

    def _mapped_sizes(self, mapping: _Mapping, call_args: tuple) -> list[tuple[str, int]]:
        """``(what, size)`` for every mapped input: states, arguments, keywords."""
        layout, plan = mapping.layout, mapping.plan
        _, values, args, kwargs, _ = call_args
        sizes = [
            (repr(path_str(layout.paths[i])), np.shape(leaf)[axis])
            for i, axis in enumerate(plan.in_axes)
            if axis is not None
            for leaf in jax.tree.leaves(values[i])
        ]

        def arg_sizes(axis: Any, sub: Any) -> None:
            if axis is not None:
                sizes.extend(("an argument", np.shape(x)[axis]) for x in jax.tree.leaves(sub))

        if args:
            jax.tree.map(arg_sizes, mapping.arg_axes, args, is_leaf=lambda x: x is None)
        sizes.extend(("a keyword argument", np.shape(x)[0]) for x in jax.tree.leaves(kwargs))
        if self.axis_size is not None:
            sizes.append(("axis_size", self.axis_size))
        return sizes

    def _size_mismatch(self, mapping: _Mapping, call_args: tuple) -> BatchAxisError | None:
        """A `ps.BatchAxisError` listing the sizes, when the mapped inputs
        disagree on the batch size (None when they agree)."""
        try:
            sizes = self._mapped_sizes(mapping, call_args)
        except (IndexError, ValueError):
            return None  # axes beyond a rank: JAX's own error says more
        if len({size for _, size in sizes}) <= 1:
            return None
        return BatchAxisError(
            f"{self.where}: the mapped inputs disagree on the batch size: "
            + ", ".join(f"{what}: {size}" for what, size in sizes)
            + ". Map inputs of one batch size (in_states, in_axes, axis_size)."
        )

    def _batched_error(self, mapping: _Mapping, call_args: tuple) -> BatchAxisError | None:
        """Which undeclared states (or outputs) come back batched: one abstract
        trace per candidate, only on this error path. None when the failure
        is not about batched outputs at all."""
        layout, plan = mapping.layout, mapping.plan

        def fails_with(state_axes: tuple, out_axes: Any) -> bool:
            probe = self._build(mapping, state_axes, out_axes, transform=jax.vmap)
            try:
                jax.eval_shape(probe, *call_args)
            except ValueError:
                return True
            return False

        if not fails_with(plan.out_axes, None):
            return None  # the same mapping traces under vmap: not about batched outputs
        all_batched = tuple(0 if a is None else a for a in plan.out_axes)
        if fails_with(all_batched, 0):
            return None  # fails with every output batched: not an out_axes problem
        undeclared = [k for k, a in enumerate(plan.out_axes) if a is None]
        paths: list[Path] = []
        for k in undeclared:
            axes = (*all_batched[:k], None, *all_batched[k + 1 :])
            if fails_with(axes, 0):
                paths.append(layout.paths[plan.returned[k]])
        if paths:
            return BatchAxisError(
                f"{self.where}: the function writes batched values into states that are "
                f"neither in in_states nor in out_states: {describe_paths(paths)}. Declare "
                f"them batched with out_states (e.g. out_states={path_str(paths[0])!r}), or "
                "keep them unbatched (reduce over the batch, e.g. with jax.lax.pmean and an "
                "axis_name)."
            )
        if fails_with(plan.out_axes, 0):
            return None
        return BatchAxisError(
            f"{self.where}: the function's output is batched where out_axes={self.out_axes!r} "
            "says it is not (None); no state is at fault. Give the batched outputs an axis "
            "in out_axes, or reduce them over the batch (e.g. jax.lax.pmean with an "
            "axis_name)."
        )

    def _check_pmap_outputs(self, mapping: _Mapping, call_args: tuple) -> None:
        # jax.pmap returns device 0's value for a batched output declared
        # unbatched, so check once per input layout with an abstract vmap.
        statics = mapping.statics
        key = (
            mapping.layout,
            mapping.plan,
            mapping.variant,
            mapping.settings,
            _axes_key(mapping.arg_axes),
            None if statics is None else statics.key(True, self.where),
            jax.tree.structure(call_args[1:]),
            tuple((np.shape(x), getattr(x, "dtype", None)) for x in jax.tree.leaves(call_args)),
        )
        if key in self._checked:
            return
        with self._explaining(mapping, call_args):
            jax.eval_shape(self._build(mapping, transform=jax.vmap), *call_args)
        self._checked.add(key)

    @contextlib.contextmanager
    def _explaining(self, mapping: _Mapping, call_args: tuple) -> Iterator[None]:
        """Turn a `ValueError` from JAX into a `ps.BatchAxisError` naming the
        states at fault when the mapped inputs disagree on the batch size or
        an output declared unbatched comes back batched (each checked
        directly, not read from JAX's message); other errors pass unchanged."""
        try:
            yield
        except (StateError, BatchAxisError):
            raise
        except ValueError as error:
            explained = self._size_mismatch(mapping, call_args) or self._batched_error(
                mapping, call_args
            )
            if explained is None:
                raise
            raise explained from error

    # -- the call -----------------------------------------------------------------

    def __call__(self, states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        values, layout = take_apart(states, f"{self.where}: ")
        plan = self._plan(layout, values)
        statics, args, kwargs, arg_axes = self._split_static(args, kwargs)
        sizer = self._check_arguments(layout, plan, values, args, kwargs, arg_axes)
        variant, settings, tracers = (
            self.variants.select() if self.kind == "pmap" else (None, None, ())
        )
        lane_values = values
        next_keys = {}
        if plan.keyed:
            lane_values = list(values)
            for i in plan.keyed:
                pair = jax.random.split(values[i])
                lane_values[i] = pair  # each lane folds its index into pair[0]
                next_keys[i] = pair[1]
        if self.kind == "pmap":
            lane_values = _gathered(lane_values, plan)
        call_args = (tracers, tuple(lane_values), args, kwargs, sizer)
        mapping = _Mapping(layout, plan, statics, arg_axes, variant, settings)
        if self.kind == "pmap":
            self._check_pmap_outputs(mapping, call_args)
        with self._explaining(mapping, call_args):
            out, returned, marker = self._mapped_for(mapping)(*call_args)
        new_values = list(values)
        for i, value in zip(plan.returned, returned, strict=True):
            new_values[i] = value
        for i, key in next_keys.items():
            if i not in plan.returned:
                new_values[i] = key
        return out, (marker.layout if marker else layout).build(new_values)


def vmap(
    fun: Callable | None = None,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    in_states: Any = None,
    out_states: Any = None,
    axis_name: Hashable | None = None,
    axis_size: int | None = None,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
) -> Callable:
    """Vectorise a stateful function over a batch axis, saying which states are
    batched.

    `in_axes`/`out_axes` apply to ``*args`` and `out` exactly as in `jax.vmap`;
    keyword arguments are mapped on axis 0. `in_states`/`out_states` are a
    selector (axis 0) or ``{axis: selector}``: states in `in_states` are mapped
    along their axis and come back batched on it; states in `out_states` become
    batched inside and come back batched on their axis; every other state is
    broadcast and must come back unbatched, else `ps.BatchAxisError` names it.
    Every selector must match a state and no state may get two axes (else
    `ps.StateError`). `RandomState`s not in `in_states` give each lane its own
    key and come back advanced once, unbatched (batched, when in `out_states`):
    the map owns them, so a key written inside (a reseed) is replaced by the
    advanced key; reseed outside the map, or declare the state in `in_states`.
    `axis_size` (a non-negative int) sets the number of lanes when nothing
    else is mapped, e.g. to create per-lane states. `static_argnums` /
    `static_argnames` (counting ``*args``, as in `ps.compile.jit`) are passed to
    every lane as they are and may be any Python object; a tuple `in_axes`
    then has an entry per argument (the static ones ignored) or per mapped one.

    Examples:
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
        static_argnums=static_argnums,
        static_argnames=static_argnames,
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
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    devices: Any = None,
    backend: str | None = None,
) -> Callable:
    """`vmap` over devices (`jax.pmap`): the same `in_states`/`out_states`
    semantics, with `axis_name` for collectives (`jax.lax.psum`, `pmean`).
    Undeclared states written with per-device values raise
    `ps.BatchAxisError` (checked once per input layout, since `jax.pmap` itself
    would silently return one device's value).

    Examples:
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
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        devices=devices,
        backend=backend,
    )
    if fun is None:
        return functools.partial(pmap, **options)
    return _Mapped(fun, "pmap", **options).as_function()
