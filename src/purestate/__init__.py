"""purestate: functional, immutable state trees and the JAX transforms over them.

Model state is a nested ``dict`` of typed `State` wrappers. Pure functions take
it and return a new one, ``f(states, *args) -> (out, new_states)``, and every
transform splits the tree by a selector, calls the JAX transform and merges the
tree back.

Examples:
    >>> import jax.numpy as jnp
    >>> import purestate as ps
    >>> states = {"w": ps.ParamState(jnp.ones(3)), "V": ps.ShortTermState(jnp.zeros(3))}
    >>> params, rest = ps.split(states, ps.ParamState)
    >>> sorted(ps.merge(params, rest)) == sorted(states)
    True
"""

from typing import TYPE_CHECKING

from . import augment, compile, environ, nn, optim, random, surrogate
from ._errors import BatchAxisError, StateError
from ._selectors import All, Any, Not, Selector
from ._split import merge, select, split, update
from ._state import LongTermState, ParamState, RandomState, ShortTermState, State
from ._summary import summary
from ._tree import flatten, get, set, unflatten

if TYPE_CHECKING:
    from types import ModuleType

    from . import io, testing

__version__ = "0.1.0"

__all__ = [
    "All",
    "Any",
    "BatchAxisError",
    "LongTermState",
    "Not",
    "ParamState",
    "RandomState",
    "Selector",
    "ShortTermState",
    "State",
    "StateError",
    "augment",
    "compile",
    "environ",
    "flatten",
    "get",
    "io",
    "merge",
    "nn",
    "optim",
    "random",
    "select",
    "set",
    "split",
    "summary",
    "surrogate",
    "testing",
    "unflatten",
    "update",
]


_LAZY = ("io", "testing")


def __getattr__(name: str) -> "ModuleType":
    # `ps.testing` needs Hypothesis and `ps.io` needs orbax-checkpoint (seconds
    # to import), which a model run does not: import them on first use so that
    # `import purestate` stays free of them.
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
