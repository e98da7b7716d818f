"""Compilation and control flow over stateful functions."""

from ._branches import cond, ifelse, switch
from ._jit import jit
from ._loops import (
    bounded_while_loop,
    checkpointed_for_loop,
    checkpointed_scan,
    for_loop,
    scan,
    while_loop,
)
from ._map import map
from ._progress import Progress

__all__ = [
    "Progress",
    "bounded_while_loop",
    "checkpointed_for_loop",
    "checkpointed_scan",
    "cond",
    "for_loop",
    "ifelse",
    "jit",
    "map",
    "scan",
    "switch",
    "while_loop",
]
