"""Unit checks for models with physical quantities (brainunit).

The checks run in Python on the Quantity's unit, so under `jax.jit` they cost
nothing per call: they happen once, at trace time.
"""

from __future__ import annotations

from typing import Any

import brainunit as u
import jax.numpy as jnp
import numpy as np

from .. import environ

__all__ = [
    "MissingSettingError",
    "UnitError",
    "check_quantity",
    "float_quantity",
    "get_dt",
    "is_concrete",
]


class UnitError(u.DimensionMismatchError, TypeError):
    """A value has the wrong physical dimension (or none where one is needed).

    It is a `brainunit.DimensionMismatchError` and a `TypeError`, so either
    ``except`` clause catches it.

    Examples:
        >>> import brainunit as u
        >>> import purestate as ps
        >>> issubclass(ps.nn.UnitError, TypeError)
        True
    """

    def __init__(self, message: str):
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class MissingSettingError(KeyError):
    """A model needs a `ps.environ` setting (such as ``dt``) that is not set.

    Examples:
        >>> import purestate as ps
        >>> issubclass(ps.nn.MissingSettingError, KeyError)
        True
    """

    def __str__(self) -> str:
        # KeyError.__str__ shows repr(message); this message is prose.
        return str(self.args[0]) if self.args else ""


# dimension -> (a unit of it, how to write one)
_UNIT_OF = {
    "current": (u.amp, "amperes, e.g. 200 * u.pA"),
    "voltage": (u.volt, "volts, e.g. -80 * u.mV"),
    "time": (u.second, "seconds, e.g. 5 * u.ms"),
    "resistance": (u.ohm, "ohms, e.g. 1 * u.ohm"),
    "conductance": (u.siemens, "siemens, e.g. 6 * u.nS"),
    "frequency": (u.hertz, "hertz, e.g. 20 * u.Hz"),
}


def _describe(value: Any) -> str:
    if isinstance(value, u.Quantity):
        return f"a Quantity in {value.unit}"
    shape = getattr(value, "shape", None)
    kind = type(value).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")
    return f"{value!r} (a {kind}, no unit)" if shape in (None, ()) else f"a {kind} with no unit"


def check_quantity(value: Any, dimension: str, name: str, who: str) -> u.Quantity:
    """Return `value` if it is a Quantity of `dimension`, else raise `UnitError`
    naming the quantity (`name`) and the unit expected."""
    unit, example = _UNIT_OF[dimension]
    if not isinstance(value, u.Quantity) or u.get_dim(value) != unit.dim:
        raise UnitError(
            f"{who}: {name} must be a {dimension} in {example}; got {_describe(value)}."
        )
    return value


def float_quantity(value: Any, dimension: str, name: str, who: str) -> u.Quantity:
    """`check_quantity`, and an integer mantissa made floating (``0 * u.mV``
    has the Python int 0 as mantissa). Python numbers stay Python numbers, so
    a module holding them stays hashable."""
    check_quantity(value, dimension, name, who)
    mantissa = value.mantissa
    if isinstance(mantissa, (bool, int)):
        return u.Quantity(float(mantissa), unit=value.unit)
    if not isinstance(mantissa, float) and not jnp.issubdtype(
        jnp.result_type(mantissa), jnp.inexact
    ):
        return u.Quantity(jnp.asarray(mantissa, dtype=float), unit=value.unit)
    return value


def is_concrete(x: Any) -> bool:
    """Whether `x` (a number or array) has a value now, outside a trace, so
    that a check of its value can run in Python."""
    try:
        np.asarray(x)
    except Exception:  # a tracer
        return False
    return True


def get_dt(who: str) -> u.Quantity:
    """The time step from ``ps.environ.get('dt')``, checked to be a time."""
    try:
        dt = environ.get("dt")
    except KeyError:
        raise MissingSettingError(
            f"{who} needs the time step 'dt' from ps.environ, and none is set. Run the "
            "model inside `with ps.environ.context(dt=0.1 * u.ms):`."
        ) from None
    return check_quantity(dt, "time", "the time step 'dt' (from ps.environ)", who)
