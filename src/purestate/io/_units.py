"""brainunit units as JSON and back.

A unit is stored by what makes two units equal in brainunit (its dimension's
exponents, scale, base and factor) and by what it is displayed as (names and
compound parts), so that the unit rebuilt on restore compares equal to the
saved one and prints the same.
"""

from __future__ import annotations

from typing import Any

import brainunit as u

__all__ = ["unit_from_json", "unit_to_json"]


def unit_to_json(unit: Any) -> dict[str, Any]:
    """A JSON-ready description of `unit`, e.g. ``mV / ms``."""
    parts = getattr(unit, "_display_parts", None)
    return {
        "repr": str(unit),
        "dim": [_number(e) for e in unit.dim._dims.tolist()],
        "scale": _number(unit.scale),
        "base": _number(unit.base),
        "factor": _number(unit.factor),
        "name": unit.name,
        "dispname": unit.dispname,
        "is_fullname": bool(unit.is_fullname),
        "display_parts": None if parts is None else [list(p) for p in parts],
    }


def unit_from_json(record: Any) -> Any:
    """The unit `unit_to_json` described; `ValueError` if the record is not one."""
    try:
        parts = record["display_parts"]
        return u.Unit(
            u.get_or_create_dimension(list(record["dim"])),
            scale=record["scale"],
            base=record["base"],
            factor=record["factor"],
            name=record["name"],
            dispname=record["dispname"],
            is_fullname=record["is_fullname"],
            display_parts=None if parts is None else [tuple(p) for p in parts],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a unit record ({type(err).__name__}: {err}): {record!r}") from None


def _number(x: Any) -> int | float:
    # numpy scalars are not JSON; integral exponents stay ints.
    return int(x) if float(x).is_integer() and not isinstance(x, float) else float(x)
