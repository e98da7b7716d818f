"""`PoissonSpikes`: independent Poisson spike trains at given rates."""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

from .. import random as ps_random
from .._state import RandomState, ShortTermState
from .._tree import StateTree
from ._lif import as_shape, default_float
from ._module import Module, require_key
from ._units import float_quantity, get_dt, is_concrete

__all__ = ["PoissonSpikes"]


class PoissonSpikes(Module):
    """Independent Poisson spike trains: each neuron spikes in a step of
    length `dt` with probability ``rate * dt`` (clipped to 1).

    States: ``{'rng': RandomState(key), 'spike': ShortTermState}``, the key
    the spikes are drawn from and the spikes of the last step, of shape
    ``(batch_size,) + size`` (or `size`). Each call draws
    ``key, states = ps.random.split(states)`` (key in, advanced key out) and
    ``spikes = jax.random.uniform(key, shape) < rate * dt``, so the same states
    give the same spikes; under ``ps.augment.vmap`` each lane draws from its
    own key. `dt` comes from ``ps.environ``.

    `rate` is a frequency (``20 * u.Hz``; a scalar or an array broadcasting
    to `size`); ``__call__(states, rate=...)`` replaces it for one step, e.g.
    to encode inputs as rates. Spikes are `dtype`: JAX's default float
    (0.0 / 1.0, to multiply with weights) or ``bool``. A rate that is not a
    frequency raises `ps.nn.UnitError`; a negative one, `ValueError`.

    Examples:
        >>> import brainunit as u
        >>> import jax
        >>> import purestate as ps
        >>> source = ps.nn.PoissonSpikes(1000, rate=50 * u.Hz)
        >>> states = source.init(jax.random.key(0))
        >>> with ps.environ.context(dt=1 * u.ms):
        ...     spikes, states = source(states)
        >>> spikes.shape, spikes.dtype, 30 < int(spikes.sum()) < 70  # ~1000 * 0.05
        ((1000,), dtype('float32'), True)
        >>> with ps.environ.context(dt=1 * u.ms):
        ...     spikes, states = source(states, rate=0 * u.Hz)
        >>> int(spikes.sum())
        0
    """

    size: tuple[int, ...]
    rate: u.Quantity
    dtype: Any

    def __init__(
        self,
        size: int | tuple[int, ...],
        rate: u.Quantity,
        *,
        dtype: Any = None,
    ):
        self.size = as_shape(size)
        self.rate = _checked_rate(rate)
        if jnp.shape(self.rate.mantissa) and not _broadcasts(self.rate.mantissa, self.size):
            raise ValueError(
                f"PoissonSpikes: rate of shape {jnp.shape(self.rate.mantissa)} does not "
                f"broadcast to size {self.size}."
            )
        self.dtype = default_float() if dtype is None else jnp.dtype(dtype)
        if self.dtype != jnp.bool_ and not jnp.issubdtype(self.dtype, jnp.floating):
            raise TypeError(f"PoissonSpikes: dtype must be bool or a float dtype; got {dtype!r}.")

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        shape = self.size if batch_size is None else (int(batch_size), *self.size)
        return {
            "rng": RandomState(require_key(key, "PoissonSpikes")),
            "spike": ShortTermState(jnp.zeros(shape, self.dtype)),
        }

    def __call__(self, states: StateTree, rate: u.Quantity | None = None) -> tuple[Any, StateTree]:
        rate = self.rate if rate is None else _checked_rate(rate)
        shape = states["spike"].value.shape
        if not _broadcasts(rate.mantissa, shape):
            raise ValueError(
                f"PoissonSpikes: rate of shape {jnp.shape(rate.mantissa)} does not "
                f"broadcast to the spikes' shape {shape}."
            )
        prob = jnp.asarray(u.maybe_decimal(rate * get_dt("PoissonSpikes")), default_float())
        key, states = ps_random.split(states, ("rng",))
        spikes = jax.random.uniform(key, shape, prob.dtype) < prob
        spikes = spikes.astype(self.dtype)
        return spikes, {**states, "spike": states["spike"].replace(spikes)}


def _checked_rate(rate: Any) -> u.Quantity:
    rate = float_quantity(rate, "frequency", "rate", "PoissonSpikes")
    mantissa = rate.mantissa
    if is_concrete(mantissa) and bool(np.any(np.asarray(mantissa) < 0)):
        raise ValueError(f"PoissonSpikes: rate must be >= 0; got {rate}.")
    return rate


def _broadcasts(value: Any, shape: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(np.shape(value), shape) == tuple(shape)
    except ValueError:
        return False
