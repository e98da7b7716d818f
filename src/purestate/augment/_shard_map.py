"""`shard_map` for stateful functions: selected states are split over a
device mesh inside the function, the others are replicated.

The states go to `jax.shard_map` as a list of values (see
`purestate._layout`) with one `PartitionSpec` per state: the spec of the
`state_specs` selector that picks it, else ``P()`` (replicated). Inside, a
state declared replicated whose new value varies over a mesh axis (written
per shard) is a `ps.BatchAxisError` naming it, found from the values'
varying-axes types that `check_vma` tracks.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import jax
from jax.sharding import Mesh, PartitionSpec

from .. import environ
from .._errors import BatchAxisError, StateError
from .._layout import Layout, Returned, Values, check_statics_kept, take_apart
from .._paths import Path, describe_paths
from .._selectors import as_selector
from .._split import assign
from .._stateful import call_stateful, fun_name
from .._tree import StateTree
from ..compile._progress import per_device

__all__ = ["shard_map"]

_MAX_MAPPED = 256


def _axes_of(spec: PartitionSpec) -> frozenset[str]:
    """The mesh axes a PartitionSpec splits over."""
    names: set[str] = set()
    for entry in spec:
        if entry is None:
            continue
        names.update(entry if isinstance(entry, tuple) else (entry,))
    return frozenset(names)


def _varying(value: Any) -> frozenset[str]:
    """The mesh axes over which a traced value may differ between shards
    (empty when JAX does not track it: ``check_vma=False``)."""
    mat = getattr(jax.typeof(value), "manual_axis_type", None)
    return frozenset(mat.varying) if mat is not None else frozenset()


class _ShardMapped:
    """The state behind one `shard_map`-ed function."""

    def __init__(
        self,
        fun: Callable,
        *,
        mesh: Mesh,
        in_specs: Any,
        out_specs: Any,
        state_specs: dict[Any, PartitionSpec] | None,
        check_vma: bool,
    ):
        self.fun = fun
        self.where = f"ps.augment.shard_map({fun_name(fun)})"
        if not isinstance(mesh, Mesh):
            raise TypeError(f"{self.where}: mesh must be a jax.sharding.Mesh; got {mesh!r}.")
        self.mesh = mesh
        self.in_specs = in_specs
        self.out_specs = out_specs
        self.check_vma = check_vma
        items = list((state_specs or {}).items())
        for _, spec in items:
            if not isinstance(spec, PartitionSpec):
                raise TypeError(
                    f"{self.where}: state_specs maps selectors to PartitionSpecs; got {spec!r}."
                )
            unknown = _axes_of(spec) - set(mesh.axis_names)
            if unknown:
                raise StateError(
                    f"{self.where}: state_specs names mesh axes {sorted(unknown)} that the mesh "
                    f"does not have (its axes: {list(mesh.axis_names)})."
                )
        self.selectors = tuple(as_selector(sel) for sel, _ in items)
        self.specs = tuple(spec for _, spec in items)
        self._mapped: OrderedDict[Hashable, Callable] = OrderedDict()
        # jax.shard_map caches traces on the function: one set of mapped
        # functions per distinct values of the ps.environ settings it reads.
        self.variants: environ.Variants[Any] = environ.Variants(lambda variant: variant)

    def _state_specs(self, layout: Layout, values: Values) -> tuple[PartitionSpec, ...]:
        options = ("state_specs",) * len(self.selectors)
        choice = assign(layout, values, self.selectors, options, self.where)
        return tuple(self.specs[c] if c < len(self.specs) else PartitionSpec() for c in choice)

    def _inner(
        self,
        layout: Layout,
        specs: tuple[PartitionSpec, ...],
        variant: environ.Variant[Any],
        settings: environ.Settings,
        tracers: tuple,
        values: Values,
        args: tuple,
        kwargs: dict,
    ) -> tuple[Any, tuple, Returned | None]:
        # Every device runs the function's loops: their progress bars report per device.
        with self.variants.tracing(variant, settings, tracers), per_device(self.mesh.axis_names):
            out, new_states = call_stateful(self.fun, layout.build(list(values)), *args, **kwargs)
        new_values, new_layout = take_apart(new_states)
        check_statics_kept(layout, new_layout, self.where)
        if self.check_vma:
            self._check_written_per_shard(layout, specs, new_values)
        marker = None if new_layout == layout else Returned(new_layout, None)
        return out, tuple(new_values), marker

    def _check_written_per_shard(
        self, layout: Layout, specs: tuple[PartitionSpec, ...], new_values: Values
    ) -> None:
        wrong: list[Path] = []
        for path, spec, value in zip(layout.paths, specs, new_values, strict=True):
            allowed = _axes_of(spec)
            if any(_varying(leaf) - allowed for leaf in jax.tree.leaves(value)):
                wrong.append(path)
        if wrong:
            raise BatchAxisError(
                f"{self.where}: the function writes values that differ between shards into "
                f"states declared replicated (or split over fewer mesh axes): "
                f"{describe_paths(wrong)}. Declare them in state_specs with the spec they "
                "have, or make them equal on every shard (e.g. jax.lax.psum / pmean over the "
                "mesh axes)."
            )

    def _mapped_for(
        self,
        layout: Layout,
        specs: tuple[PartitionSpec, ...],
        variant: environ.Variant[Any],
        settings: environ.Settings,
    ) -> Callable:
        key = (layout, specs, variant, settings)
        mapped = self._mapped.get(key)
        if mapped is None:
            # Everything static is bound here; JAX maps the arrays.
            inner = functools.partial(self._inner, layout, specs, variant, settings)
            mapped = jax.shard_map(
                inner,
                mesh=self.mesh,
                in_specs=(PartitionSpec(), specs, self.in_specs, PartitionSpec()),
                out_specs=(self.out_specs, specs, PartitionSpec()),
                check_vma=self.check_vma,
            )
            self._mapped[key] = mapped
            if len(self._mapped) > _MAX_MAPPED:
                self._mapped.popitem(last=False)
        return mapped

    def __call__(self, states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        values, layout = take_apart(states, f"{self.where}: ")
        specs = self._state_specs(layout, values)
        variant, settings, tracers = self.variants.select()
        mapped = self._mapped_for(layout, specs, variant, settings)
        out, new_values, marker = mapped(tracers, tuple(values), args, kwargs)
        return out, (marker.layout if marker else layout).build(list(new_values))


def shard_map(
    fun: Callable | None = None,
    *,
    mesh: Mesh,
    in_specs: Any,
    out_specs: Any,
    state_specs: dict[Any, PartitionSpec] | None = None,
    check_vma: bool = True,
) -> Callable:
    """`jax.shard_map` for a stateful function ``fun(states, *args)``.

    `in_specs` / `out_specs` apply to ``*args`` and `out` exactly as in
    `jax.shard_map` (keyword arguments are replicated). `state_specs`
    (``{selector: PartitionSpec}``) splits the selected states over the mesh
    inside `fun`; they come back with the same spec. Every other state is
    replicated and must come back replicated: a state written with values
    that differ between shards raises `ps.BatchAxisError` naming it (found
    with ``check_vma=True``, the default). With the right collectives in
    `fun` (`jax.lax.psum`, ...), the result equals the unsharded function on
    the global arrays.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jax.sharding import Mesh, PartitionSpec as P
        >>> import purestate as ps
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("neurons",))
        >>> def step(states, current):
        ...     v = 0.9 * states["v"].value + current
        ...     total = jax.lax.psum(v.sum(), "neurons")
        ...     return total, ps.set(states, "v", v)
        >>> sharded = ps.augment.shard_map(
        ...     step, mesh=mesh, in_specs=P("neurons"), out_specs=P(),
        ...     state_specs={"v": P("neurons")},
        ... )
        >>> total, states = sharded({"v": ps.ShortTermState(jnp.zeros(8))}, jnp.ones(8))
        >>> float(total), ps.get(states, "v").shape
        (8.0, (8,))
    """
    options: dict[str, Any] = dict(
        mesh=mesh,
        in_specs=in_specs,
        out_specs=out_specs,
        state_specs=state_specs,
        check_vma=check_vma,
    )
    if fun is None:
        return functools.partial(shard_map, **options)
    mapped = _ShardMapped(fun, **options)
    return functools.wraps(fun)(lambda states, *args, **kwargs: mapped(states, *args, **kwargs))
