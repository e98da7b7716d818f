"""`LIF`: the leaky integrate-and-fire neuron, with physical units."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp

from .._state import ShortTermState
from .._tree import StateTree
from ..surrogate import ReluGrad
from ._module import Module
from ._units import check_quantity, float_quantity, get_dt

__all__ = ["LIF", "as_shape", "default_float"]

_RELU_GRAD = ReluGrad()


def as_shape(size: int | tuple[int, ...]) -> tuple[int, ...]:
    return (int(size),) if isinstance(size, int) else tuple(int(n) for n in size)


def default_float() -> Any:
    return jax.dtypes.canonicalize_dtype(float)


class LIF(Module):
    """Leaky integrate-and-fire neurons: ``tau dV/dt = -(V - V_rest) + R I``.

    State: ``{'V': ShortTermState(V)}``, the membrane potential, starting at
    `V_rest`, of shape ``(batch_size,) + in_size`` (or `in_size`). The input
    is a current `I` in amperes (a `brainunit.Quantity`); the time step is
    ``ps.environ.get('dt')``. Each call:

    1. ``spk = spk_fun((V - V_th) / (V_th - V_reset))`` on the current `V`;
    2. reset: soft ``V -= (V_th - V_reset) * spk``; hard ``V = V_reset``
       where ``spk = 1`` (the jump is not differentiated through `V`);
    3. the exponential-Euler step, exact for constant `I` over `dt`:
       ``V = V_inf + (V - V_inf) exp(-dt / tau)``, ``V_inf = V_rest + R I``;
    4. returns ``spk_fun`` of the new `V` (spikes, dimensionless, `V`'s dtype).

    `V` keeps the unit of `V_rest`. Unit checks run at trace time, so under
    `jax.jit` they cost nothing per step. A current in the wrong unit, or a
    missing or unitless `dt`, raises `ps.nn.UnitError` /
    `ps.nn.MissingSettingError` naming the quantity.

    Examples:
        >>> import brainunit as u
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> lif = ps.nn.LIF(3)
        >>> states = lif.init(batch_size=4)
        >>> with ps.environ.context(dt=0.1 * u.ms):
        ...     spikes, states = lif(states, jnp.ones((4, 3)) * u.mA)
        >>> spikes.shape, float(spikes.sum())
        ((4, 3), 0.0)
        >>> print(ps.get(states, "V")[0, 0])  # 1 - exp(-0.02) mV
        0.019801... mV
    """

    in_size: tuple[int, ...]
    R: u.Quantity
    tau: u.Quantity
    V_th: u.Quantity
    V_reset: u.Quantity
    V_rest: u.Quantity
    spk_fun: Callable
    spk_reset: str

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        R: u.Quantity = 1.0 * u.ohm,
        tau: u.Quantity = 5.0 * u.ms,
        V_th: u.Quantity = 1.0 * u.mV,
        V_reset: u.Quantity = 0.0 * u.mV,
        V_rest: u.Quantity = 0.0 * u.mV,
        spk_fun: Callable = _RELU_GRAD,
        spk_reset: str = "soft",
    ):
        who = "LIF"
        self.in_size = as_shape(in_size)
        self.R = float_quantity(R, "resistance", "R", who)
        self.tau = float_quantity(tau, "time", "tau", who)
        self.V_th = float_quantity(V_th, "voltage", "V_th", who)
        self.V_reset = float_quantity(V_reset, "voltage", "V_reset", who)
        self.V_rest = float_quantity(V_rest, "voltage", "V_rest", who)
        if not callable(spk_fun):
            raise TypeError(
                f"LIF: spk_fun must be callable, e.g. ps.surrogate.ReluGrad(); got {spk_fun!r}."
            )
        self.spk_fun = spk_fun
        if spk_reset not in ("soft", "hard"):
            raise ValueError(f"LIF: spk_reset must be 'soft' or 'hard'; got {spk_reset!r}.")
        self.spk_reset = spk_reset

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        shape = self.in_size if batch_size is None else (int(batch_size), *self.in_size)
        V = jnp.full(shape, self.V_rest.mantissa, dtype=default_float())
        return {"V": ShortTermState(u.Quantity(V, unit=self.V_rest.unit))}

    def __call__(self, states: StateTree, current: u.Quantity) -> tuple[jax.Array, StateTree]:
        check_quantity(current, "current", "the input current", "LIF")
        dt = get_dt("LIF")
        V = check_quantity(states["V"].value, "voltage", "the state 'V'", "LIF")
        unit = V.unit
        span = self.V_th - self.V_reset

        spk = self.spk_fun((V - self.V_th) / span)
        if self.spk_reset == "soft":
            V = V - span * spk
        else:
            V = V - (jax.lax.stop_gradient(V) - self.V_reset) * spk

        V_inf = self.V_rest + self.R * current
        V = V_inf + (V - V_inf) * u.math.exp(-dt / self.tau)
        V = V.in_unit(unit)  # same unit in, same unit out: a unit is tree structure
        return self.spk_fun((V - self.V_th) / span), {**states, "V": states["V"].replace(V)}
