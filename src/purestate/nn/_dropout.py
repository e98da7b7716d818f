"""`Dropout`, drawing its mask from a key held in the state tree."""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp

from .. import environ
from .. import random as ps_random
from .._state import RandomState
from .._tree import StateTree
from ._module import Module, require_key

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each element with probability `rate`, scale the rest by ``1 / (1 - rate)``.

    State: ``{'rng': RandomState(key)}``. Each call draws its mask with
    ``key, states = ps.random.split(states)`` (key in, advanced key out), so
    the same states give the same mask, and the returned states the next one:
    ``keep = jax.random.bernoulli(key, 1 - rate, x.shape)``. Under
    ``ps.augment.vmap`` each lane draws from its own key.

    It is the identity (and leaves the key alone) when ``inference=True`` or
    when ``ps.environ.get('fit', True)`` is False.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> drop = ps.nn.Dropout(0.5)
        >>> states = drop.init(jax.random.key(0))
        >>> y, states = drop(states, jnp.ones(6))
        >>> sorted(set(y.tolist()) - {0.0, 2.0})
        []
        >>> with ps.environ.context(fit=False):
        ...     y, _ = drop(states, jnp.ones(3))
        >>> y
        Array([1., 1., 1.], dtype=float32)
    """

    rate: float
    inference: bool

    def __init__(self, rate: float = 0.5, inference: bool = False):
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1]; got {rate!r}.")
        self.rate = float(rate)
        self.inference = bool(inference)

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        return {"rng": RandomState(require_key(key, "Dropout"))}

    def __call__(self, states: StateTree, x: Any) -> tuple[Any, StateTree]:
        if self.inference or self.rate == 0.0 or not environ.get("fit", True):
            return x, states
        key, states = ps_random.split(states, ("rng",))
        mantissa = x.mantissa if isinstance(x, u.Quantity) else jnp.asarray(x)
        if self.rate == 1.0:
            out = jnp.zeros_like(mantissa)
        else:
            keep = jax.random.bernoulli(key, 1.0 - self.rate, mantissa.shape)
            out = jnp.where(keep, mantissa / (1.0 - self.rate), jnp.zeros_like(mantissa))
        return (u.Quantity(out, unit=x.unit) if isinstance(x, u.Quantity) else out), states
