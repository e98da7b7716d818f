"""`remat`: rematerialisation (`jax.checkpoint`) of a stateful function."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from .. import environ
from .._layout import Layout, Returned, Values, check_statics_kept, take_apart
from .._stateful import call_stateful, fun_name
from .._tree import StateTree

__all__ = ["remat"]


def remat(
    fun: Callable | None = None, *, prevent_cse: bool = True, policy: Callable | None = None
) -> Callable:
    """Recompute `fun`'s intermediates in the backward pass instead of storing
    them (`jax.checkpoint`); values and gradients are unchanged.

    `jax.checkpoint` keeps its own trace cache, so the states' layout and the
    `ps.environ` settings are static arguments of the checkpointed function: a
    changed setting retraces, and a traced setting is passed in as an input.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import purestate as ps
        >>> @ps.augment.remat
        ... def layer(states, x):
        ...     return jnp.sin(jnp.sin(x * states["w"].value)), states
        >>> loss = lambda s, x: (layer(s, x)[0].sum(), s)
        >>> grads, _ = ps.augment.grad(loss, "w")({"w": ps.ParamState(jnp.ones(3))}, jnp.ones(3))
        >>> grads["w"].value.shape
        (3,)
    """
    if fun is None:
        return functools.partial(remat, prevent_cse=prevent_cse, policy=policy)
    prefix = f"ps.augment.remat({fun_name(fun)}): "

    def run(
        variant: environ.Variant[Any],
        settings: environ.Settings,
        layout: Layout,
        tracers: tuple,
        values: Values,
        args: tuple,
        kwargs: dict[str, Any],
    ) -> tuple[Any, Values, Returned | None]:
        with variants.tracing(variant, settings, tracers):
            out, new_states = call_stateful(fun, layout.build(values), *args, **kwargs)
        new_values, new_layout = take_apart(new_states)
        check_statics_kept(layout, new_layout, prefix.rstrip(": "))
        return (out, *Returned.describe(layout, values, new_layout, new_values, False))

    # jax.checkpoint caches traces on the function: one per distinct values
    # of the ps.environ settings it reads.
    variants: environ.Variants[Any] = environ.Variants(
        lambda variant: jax.checkpoint(
            functools.partial(run, variant),
            prevent_cse=prevent_cse,
            policy=policy,
            static_argnums=(0, 1),
        )
    )

    @functools.wraps(fun)
    def rematerialised(states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        checkpointed, settings, tracers = variants.select()
        values, layout = take_apart(states, prefix)
        out, new_values, returned = checkpointed(settings, layout, tracers, values, args, kwargs)
        if returned is not None and returned.layout is not None:
            layout = returned.layout
        return out, layout.build(new_values)

    return rematerialised
