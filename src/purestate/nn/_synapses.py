"""Exponential synapses: a current or a conductance that jumps at each input
spike and decays with a time constant."""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax.numpy as jnp

from .._state import ShortTermState
from .._tree import StateTree
from ._lif import as_shape, default_float
from ._module import Module
from ._units import check_quantity, float_quantity, get_dt

__all__ = ["ExpConductanceSynapse", "ExpCurrentSynapse"]


def _zeros(size: tuple[int, ...], batch_size: int | None, unit: Any) -> ShortTermState:
    shape = size if batch_size is None else (int(batch_size), *size)
    return ShortTermState(u.Quantity(jnp.zeros(shape, default_float()), unit=unit))


def _decayed(
    state: ShortTermState, x: Any, tau: u.Quantity, dimension: str, what: str, who: str
) -> u.Quantity:
    """``s exp(-dt / tau) + x`` in the state's unit, after checking `x`."""
    check_quantity(
        x,
        dimension,
        f"the input ({what}: presynaptic spikes times a weight, e.g. from ps.nn.FixedProb)",
        who,
    )
    dt = get_dt(who)
    value = state.value
    unit = value.unit
    return (value * u.math.exp(-dt / tau) + x).in_unit(unit)


class ExpCurrentSynapse(Module):
    """Current-based exponential synapses: ``tau dI/dt = -I``, ``I += x`` per input.

    State: ``{'I': ShortTermState(zeros * u.pA)}`` of shape
    ``(batch_size,) + size`` (or `size`). Each call takes `x`, the current
    increments that arrived during the step (presynaptic spikes times weights
    in amperes, e.g. the output of `ps.nn.FixedProb`), and applies the exact
    exponential-Euler step ``I <- I exp(-dt / tau) + x``; it returns the new
    `I`, a current to pass to `ps.nn.LIF`. After a single increment `w` the
    current is ``w exp(-t / tau)``. `dt` comes from ``ps.environ``.

    An input that is not a current (a weight in nS or mV, say) raises
    `ps.nn.UnitError` at the first call.

    Examples:
        >>> import brainunit as u
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> syn = ps.nn.ExpCurrentSynapse(2, tau=5 * u.ms)
        >>> states = syn.init()
        >>> with ps.environ.context(dt=1 * u.ms):
        ...     I, states = syn(states, jnp.asarray([10.0, 0.0]) * u.pA)
        ...     I, states = syn(states, jnp.zeros(2) * u.pA)
        >>> print(I)  # 10 exp(-1 / 5) pA
        [8.18730... 0.        ] pA
    """

    size: tuple[int, ...]
    tau: u.Quantity

    def __init__(self, size: int | tuple[int, ...], tau: u.Quantity = 5.0 * u.ms):
        self.size = as_shape(size)
        self.tau = float_quantity(tau, "time", "tau", "ExpCurrentSynapse")

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        return {"I": _zeros(self.size, batch_size, u.pA)}

    def __call__(self, states: StateTree, x: u.Quantity) -> tuple[u.Quantity, StateTree]:
        who = "ExpCurrentSynapse"
        current = _decayed(states["I"], x, self.tau, "current", "current increments", who)
        return current, {**states, "I": states["I"].replace(current)}


class ExpConductanceSynapse(Module):
    """Conductance-based exponential synapses: ``tau dg/dt = -g``, ``g += x``
    per input; the current into the cell is ``g (E_rev - V)``.

    State: ``{'g': ShortTermState(zeros * u.nS)}`` of shape
    ``(batch_size,) + size`` (or `size`). Each call takes `x`, the conductance
    increments that arrived during the step (presynaptic spikes times weights
    in siemens, e.g. the output of `ps.nn.FixedProb`), and `V`, the
    postsynaptic membrane potential (e.g. the ``'V'`` state of `ps.nn.LIF`
    before its step). It applies the exact exponential-Euler step
    ``g <- g exp(-dt / tau) + x`` and returns the current ``g (E_rev - V)``
    with the new `g` (in pA), to pass to `ps.nn.LIF`; the neuron then holds
    it constant over the step. After a single increment `w` the conductance
    is ``w exp(-t / tau)``. `dt` comes from ``ps.environ``.

    An input that is not a conductance (a weight in mV or pA, say), or a `V`
    that is not a voltage, raises `ps.nn.UnitError` at the first call.

    Examples:
        >>> import brainunit as u
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> syn = ps.nn.ExpConductanceSynapse(2, tau=5 * u.ms, E_rev=0 * u.mV)
        >>> states = syn.init()
        >>> V = jnp.full(2, -60.0) * u.mV
        >>> with ps.environ.context(dt=0.1 * u.ms):
        ...     I, states = syn(states, jnp.asarray([6.0, 0.0]) * u.nS, V)
        >>> print(I)  # 6 nS * 60 mV
        [360.   0.] pA
        >>> print(ps.get(states, "g"))
        [6. 0.] nS
    """

    size: tuple[int, ...]
    tau: u.Quantity
    E_rev: u.Quantity

    def __init__(
        self,
        size: int | tuple[int, ...],
        tau: u.Quantity = 5.0 * u.ms,
        E_rev: u.Quantity = 0.0 * u.mV,
    ):
        who = "ExpConductanceSynapse"
        self.size = as_shape(size)
        self.tau = float_quantity(tau, "time", "tau", who)
        self.E_rev = float_quantity(E_rev, "voltage", "E_rev", who)

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        return {"g": _zeros(self.size, batch_size, u.nS)}

    def __call__(
        self, states: StateTree, x: u.Quantity, V: u.Quantity
    ) -> tuple[u.Quantity, StateTree]:
        who = "ExpConductanceSynapse"
        g = _decayed(states["g"], x, self.tau, "conductance", "conductance increments", who)
        check_quantity(V, "voltage", "the postsynaptic potential V", who)
        current = (g * (self.E_rev - V)).in_unit(u.pA)
        return current, {**states, "g": states["g"].replace(g)}
