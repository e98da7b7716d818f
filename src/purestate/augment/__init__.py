"""Transforms that augment a stateful function: differentiation, batching, devices.

Every transform takes and returns stateful functions
``f(states, *args) -> (out, new_states)``.
"""

from ._batching import pmap, vmap
from ._grad import grad, hessian, jacfwd, jacobian, jacrev, vector_grad
from ._remat import remat
from ._shard_map import shard_map
from ._vjp import jvp, vjp

__all__ = [
    "grad",
    "hessian",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jvp",
    "pmap",
    "remat",
    "shard_map",
    "vector_grad",
    "vjp",
    "vmap",
]
