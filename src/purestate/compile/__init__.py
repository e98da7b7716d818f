"""Compilation and control flow over stateful functions."""

from ._control import cond, for_loop, scan, while_loop
from ._jit import jit

__all__ = ["cond", "for_loop", "jit", "scan", "while_loop"]
