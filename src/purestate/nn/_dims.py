"""Dimension checks for the quantities of synapses, inputs and projections.

Like the checks in `_units`, they look at a Quantity's unit in Python, so
under `jax.jit` they run once, at trace time, and cost nothing per step.
"""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax.numpy as jnp
import numpy as np

from ._units import UnitError, _describe

__all__ = ["DIMENSIONS", "is_concrete", "require", "require_float"]

# name -> (unit whose dimension is expected, how to write one)
DIMENSIONS: dict[str, tuple[Any, str]] = {
    "current": (u.amp, "amperes, e.g. 200 * u.pA"),
    "conductance": (u.siemens, "siemens, e.g. 6 * u.nS"),
    "voltage": (u.volt, "volts, e.g. -80 * u.mV"),
    "time": (u.second, "seconds, e.g. 5 * u.ms"),
    "frequency": (u.hertz, "hertz, e.g. 20 * u.Hz"),
}


def require(value: Any, dimension: str, name: str, who: str) -> u.Quantity:
    """Return `value` if it is a Quantity of `dimension`, else raise
    `ps.nn.UnitError` naming `name`, the unit expected and the one given."""
    unit, example = DIMENSIONS[dimension]
    if not isinstance(value, u.Quantity) or u.get_dim(value) != unit.dim:
        raise UnitError(
            f"{who}: {name} must be a {dimension} in {example}; got {_describe(value)}."
        )
    return value


def require_float(value: Any, dimension: str, name: str, who: str) -> u.Quantity:
    """`require`, with an integer mantissa made floating; Python numbers stay
    Python numbers so that a module holding them stays hashable."""
    require(value, dimension, name, who)
    mantissa = value.mantissa
    if isinstance(mantissa, (bool, int)):
        return u.Quantity(float(mantissa), unit=value.unit)
    if not isinstance(mantissa, float) and not jnp.issubdtype(
        jnp.result_type(mantissa), jnp.inexact
    ):
        return u.Quantity(jnp.asarray(mantissa, dtype=float), unit=value.unit)
    return value


def is_concrete(x: Any) -> bool:
    """Whether `x` (a number or array) has a value now, outside a trace."""
    try:
        np.asarray(x)
    except Exception:  # a tracer
        return False
    return True
