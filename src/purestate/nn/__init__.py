"""Immutable model descriptions whose state lives in explicit state trees.

A `Module` holds hyperparameters only. ``module.init(key, batch_size=None)``
makes its state tree and ``module(states, *inputs) -> (out, new_states)`` runs
one step; a parent keeps each child's tree under the child's attribute name.

Examples:
    >>> import brainunit as u
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import purestate as ps
    >>> net = ps.nn.Sequential(ps.nn.Linear(2, 3), lambda x: x * u.mA, ps.nn.LIF(3))
    >>> states = net.init(jax.random.key(0), batch_size=5)
    >>> tuple(ps.get(states, p).shape for p in ("0/weight", "2/V"))
    ((2, 3), (5, 3))
"""

from . import init
from ._batchnorm import BatchNorm
from ._connect import FixedProb
from ._dropout import Dropout
from ._lif import LIF
from ._linear import Linear
from ._module import Module
from ._poisson import PoissonSpikes
from ._readout import LI, LeakyReadout
from ._sequential import Sequential
from ._synapses import ExpConductanceSynapse, ExpCurrentSynapse
from ._units import MissingSettingError, UnitError

__all__ = [
    "LI",
    "LIF",
    "BatchNorm",
    "Dropout",
    "ExpConductanceSynapse",
    "ExpCurrentSynapse",
    "FixedProb",
    "LeakyReadout",
    "Linear",
    "MissingSettingError",
    "Module",
    "PoissonSpikes",
    "Sequential",
    "UnitError",
    "init",
]
