"""purestate: functional, immutable state trees and the JAX transforms over them.

Model state is a nested ``dict`` of typed `State` wrappers. Pure functions take
it and return a new one, ``f(states, *args) -> (out, new_states)``, and every
transform splits the tree by a selector, calls the JAX transform and merges the
tree back.

Example:
    >>> import jax.numpy as jnp
    >>> import purestate as ps
    >>> states = {"w": ps.ParamState(jnp.ones(3)), "V": ps.ShortTermState(jnp.zeros(3))}
    >>> params, rest = ps.split(states, ps.ParamState)
    >>> sorted(ps.merge(params, rest)) == sorted(states)
    True
"""

from . import augment, compile, environ, nn, optim, random, surrogate, testing
from ._errors import BatchAxisError, StateError
from ._selectors import All, Any, Not, Selector
from ._split import merge, select, split, update
from ._state import LongTermState, ParamState, RandomState, ShortTermState, State
from ._summary import summary
from ._tree import flatten, get, set, unflatten

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
