"""Leaky-integrator readouts: the usual output layer of a spiking network."""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp

from .._state import ParamState, ShortTermState
from .._tree import StateTree
from . import init as initializers
from ._lif import as_shape, default_float
from ._module import Module, require_key
from ._units import float_quantity, get_dt

__all__ = ["LI", "LeakyReadout"]


def _decay(tau: u.Quantity, who: str) -> jax.Array:
    return u.math.exp(-get_dt(who) / tau)


class LI(Module):
    """A leaky integrator: ``V <- exp(-dt / tau) * V + x``.

    State ``{'V': ShortTermState(zeros)}`` of shape ``(batch_size,) + in_size``
    (or `in_size`); the input is dimensionless (spikes, rates) and `dt` comes
    from ``ps.environ``. The output is the new `V`. For a constant input `x`
    it approaches ``x / (1 - exp(-dt / tau))``.

    Examples:
        >>> import brainunit as u
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> li = ps.nn.LI(2, tau=10 * u.ms)
        >>> states = li.init()
        >>> with ps.environ.context(dt=1 * u.ms):
        ...     v, states = li(states, jnp.ones(2))
        ...     v, states = li(states, jnp.ones(2))
        >>> v  # 1 + exp(-0.1)
        Array([1.9048374, 1.9048374], dtype=float32)
    """

    in_size: tuple[int, ...]
    tau: u.Quantity

    def __init__(self, in_size: int | tuple[int, ...], tau: u.Quantity = 5.0 * u.ms):
        self.in_size = as_shape(in_size)
        self.tau = float_quantity(tau, "time", "tau", "LI")

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        shape = self.in_size if batch_size is None else (int(batch_size), *self.in_size)
        return {"V": ShortTermState(jnp.zeros(shape, default_float()))}

    def __call__(self, states: StateTree, x: Any) -> tuple[jax.Array, StateTree]:
        V = _decay(self.tau, "LI") * states["V"].value + x
        return V, {**states, "V": states["V"].replace(V)}


class LeakyReadout(Module):
    """Weighted leaky readout: ``r <- exp(-dt / tau) * r + x @ W``.

    States ``{'weight': ParamState((in_size, out_size)), 'r':
    ShortTermState(zeros((batch_size, out_size)))}``; output: the new `r`.
    Read it out at the last step (or average over steps) as the logits of a
    classifier.

    Examples:
        >>> import brainunit as u
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> readout = ps.nn.LeakyReadout(3, 2, tau=5 * u.ms)
        >>> states = readout.init(jax.random.key(0), batch_size=4)
        >>> with ps.environ.context(dt=1 * u.ms):
        ...     r, states = readout(states, jnp.ones((4, 3)))
        >>> r.shape
        (4, 2)
    """

    in_size: int
    out_size: int
    tau: u.Quantity
    w_init: Any

    def __init__(
        self,
        in_size: int,
        out_size: int,
        tau: u.Quantity = 5.0 * u.ms,
        w_init: Any = initializers.kaiming_normal,
    ):
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.tau = float_quantity(tau, "time", "tau", "LeakyReadout")
        self.w_init = w_init

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        dtype = default_float()
        weight = self.w_init(require_key(key, "LeakyReadout"), (self.in_size, self.out_size), dtype)
        shape = (self.out_size,) if batch_size is None else (int(batch_size), self.out_size)
        return {"weight": ParamState(weight), "r": ShortTermState(jnp.zeros(shape, dtype))}

    def __call__(self, states: StateTree, x: Any) -> tuple[jax.Array, StateTree]:
        r = _decay(self.tau, "LeakyReadout") * states["r"].value + x @ states["weight"].value
        return r, {**states, "r": states["r"].replace(r)}
