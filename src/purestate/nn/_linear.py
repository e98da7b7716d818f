"""`Linear`: an affine map ``y = x @ W + b``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._state import ParamState
from .._tree import StateTree
from . import init as initializers
from ._module import Module, require_key

__all__ = ["Linear"]


class Linear(Module):
    """``y = x @ W + b`` over the last axis of `x`.

    States: ``{'weight': ParamState((in_size, out_size)), 'bias':
    ParamState((out_size,))}``; with ``b_init=None`` there is no bias.
    Initialisers are ``(key, shape, dtype) -> array`` (see `ps.nn.init`);
    `dtype` defaults to JAX's default float dtype.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> layer = ps.nn.Linear(3, 2)
        >>> states = layer.init(jax.random.key(0))
        >>> ps.get(states, "weight").shape, ps.get(states, "bias").shape
        ((3, 2), (2,))
        >>> y, _ = layer(states, jnp.ones((5, 3)))
        >>> y.shape
        (5, 2)
    """

    in_size: int
    out_size: int
    w_init: Any
    b_init: Any
    dtype: Any

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Any = initializers.kaiming_normal,
        b_init: Any = initializers.zeros,
        *,
        dtype: Any = None,
    ):
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.w_init = w_init
        self.b_init = b_init
        self.dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        w_key, b_key = jax.random.split(require_key(key, "Linear"))
        states = {
            "weight": ParamState(self.w_init(w_key, (self.in_size, self.out_size), self.dtype))
        }
        if self.b_init is not None:
            states["bias"] = ParamState(self.b_init(b_key, (self.out_size,), self.dtype))
        return states

    def __call__(self, states: StateTree, x: Any) -> tuple[jax.Array, StateTree]:
        y = jnp.matmul(x, states["weight"].value)
        if "bias" in states:
            y = y + states["bias"].value
        return y, states
