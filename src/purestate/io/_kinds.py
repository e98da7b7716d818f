"""State kinds by name: ``'module:QualName'`` when saving, the class again
when restoring."""

from __future__ import annotations

import importlib
import sys

from .._state import State

__all__ = ["import_kind", "kind_name"]


def kind_name(kind: type) -> str:
    """``'purestate._state:ParamState'`` for `ps.ParamState`."""
    return f"{kind.__module__}:{kind.__qualname__}"


def import_kind(name: str) -> type[State]:
    """The `State` subclass called `name`; `ImportError` saying why if it
    cannot be found (a module that does not import, a class defined inside a
    function, a name that is not a state kind)."""
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname:
        raise ImportError(f"{name!r} is not of the form 'module:QualName'")
    if "<locals>" in qualname.split("."):
        raise ImportError(
            "it is defined inside a function, so it cannot be imported by name; define "
            "it at the top level of a module"
        )
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # any failure to import makes the kind unavailable
            raise ImportError(f"importing {module_name!r} failed: {err}") from err
    found: object = module
    for part in qualname.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no {qualname!r}") from None
    if not (isinstance(found, type) and issubclass(found, State)):
        raise ImportError(f"{name!r} is a {type(found).__name__}, not a subclass of ps.State")
    return found
