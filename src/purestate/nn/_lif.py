"""`LIF`: the leaky integrate-and-fire neuron, with physical units."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

from .._state import ShortTermState
from .._tree import StateTree
from ..surrogate import ReluGrad
from ._module import Module
from ._units import check_quantity, float_quantity, get_dt, is_concrete

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

    With a refractory period ``tau_ref > 0`` the state also holds
    ``'refractory'``: an ``int32`` ``ShortTermState`` of `V`'s shape counting
    the steps of the refractory period left, the step just taken included
    (0: the last step integrated). A neuron that spiked at a step does not
    integrate for the next ``n_ref = round(tau_ref / dt)`` steps: it is reset
    at the first of them, its `V` then stays at the reset value and it emits no
    spike; it integrates again at step ``n_ref + 1``, so it fires at most once
    every ``n_ref + 1`` steps. (A neuron that has its last spike time ``t_spike``
    is refractory while ``t - t_spike <= tau_ref``.) ``tau_ref = 0`` (the
    default) gives exactly the dynamics above, and no ``'refractory'`` state.

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

        A refractory period of 0.3 ms at dt = 0.1 ms: after each spike, three
        steps without integration.

        >>> lif = ps.nn.LIF(1, tau_ref=0.3 * u.ms, spk_reset="hard")
        >>> states = lif.init()
        >>> spikes = []
        >>> with ps.environ.context(dt=0.1 * u.ms):
        ...     for _ in range(12):
        ...         spk, states = lif(states, jnp.full(1, 1000.0) * u.mA)
        ...         spikes.append(int(spk[0]))
        >>> spikes
        [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    """

    in_size: tuple[int, ...]
    R: u.Quantity
    tau: u.Quantity
    V_th: u.Quantity
    V_reset: u.Quantity
    V_rest: u.Quantity
    spk_fun: Callable
    spk_reset: str
    tau_ref: u.Quantity

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
        tau_ref: u.Quantity = 0.0 * u.ms,
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
        self.tau_ref = float_quantity(tau_ref, "time", "tau_ref", who)
        ref = self.tau_ref.mantissa
        if is_concrete(ref) and bool(np.any(np.asarray(ref) < 0)):
            raise ValueError(f"LIF: tau_ref must be >= 0; got {self.tau_ref}.")

    @property
    def refractory(self) -> bool:
        """Whether the neurons have a refractory period (``tau_ref > 0``), and
        so a ``'refractory'`` state."""
        ref = self.tau_ref.mantissa
        return not is_concrete(ref) or bool(np.any(np.asarray(ref) != 0))

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        shape = self.in_size if batch_size is None else (int(batch_size), *self.in_size)
        V = jnp.full(shape, self.V_rest.mantissa, dtype=default_float())
        states: StateTree = {"V": ShortTermState(u.Quantity(V, unit=self.V_rest.unit))}
        if self.refractory:
            states["refractory"] = ShortTermState(jnp.zeros(shape, jnp.int32))
        return states

    def __call__(self, states: StateTree, current: u.Quantity) -> tuple[jax.Array, StateTree]:
        check_quantity(current, "current", "the input current", "LIF")
        dt = get_dt("LIF")
        V = check_quantity(states["V"].value, "voltage", "the state 'V'", "LIF")
        unit = V.unit
        span = self.V_th - self.V_reset

        spk = self.spk_fun((V - self.V_th) / span)
        if self.refractory:
            # Counting the step just taken: > 0 when that step was refractory,
            # whose `V` (the reset value) may not spike.
            left = states["refractory"].value
            spk = spk * (left == 0).astype(spk.dtype)
        if self.spk_reset == "soft":
            V = V - span * spk
        else:
            V = V - (jax.lax.stop_gradient(V) - self.V_reset) * spk

        V_inf = self.V_rest + self.R * current
        V_new = V_inf + (V - V_inf) * u.math.exp(-dt / self.tau)
        new_states = dict(states)
        if self.refractory:
            n_ref = jnp.round(jnp.asarray(u.maybe_decimal(self.tau_ref / dt))).astype(jnp.int32)
            left = jnp.where(spk > 0, n_ref, jnp.maximum(left - 1, 0))
            held = left > 0
            V_new = u.math.where(held, V, V_new)
            new_states["refractory"] = states["refractory"].replace(left)
        V = V_new.in_unit(unit)  # same unit in, same unit out: a unit is tree structure
        out = self.spk_fun((V - self.V_th) / span)
        if self.refractory:
            out = out * (~held).astype(out.dtype)
        new_states["V"] = states["V"].replace(V)
        return out, new_states
