"""`remat`: rematerialisation (`jax.checkpoint`) of a stateful function."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from .._stateful import call_stateful
from .._tree import StateTree

__all__ = ["remat"]


def remat(
    fun: Callable | None = None, *, prevent_cse: bool = True, policy: Callable | None = None
) -> Callable:
    """Recompute `fun`'s intermediates in the backward pass instead of storing
    them (`jax.checkpoint`); values and gradients are unchanged.

    Example:
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

    def checked(states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        return call_stateful(fun, states, *args, **kwargs)

    return functools.wraps(fun)(jax.checkpoint(checked, prevent_cse=prevent_cse, policy=policy))
