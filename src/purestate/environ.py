"""Ambient settings (``dt``, ...) read by models at trace time.

Contexts nest (the innermost value wins), are restored on exceptions and are
per thread. `cache_key` gives a hashable snapshot of the current settings so
that `ps.compile.jit` retraces when a setting changes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator
from typing import Any

import brainunit as u
import numpy as np

__all__ = ["context", "get", "all_settings", "cache_key"]


class _Frame:
    __slots__ = ("settings", "key")

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.key = tuple(sorted((k, _hashable(v)) for k, v in settings.items()))


_EMPTY = _Frame({})


class _Stack(threading.local):
    def __init__(self) -> None:
        self.frames: list[_Frame] = [_EMPTY]


_stack = _Stack()


def _hashable(value: Any) -> Hashable:
    """A hashable stand-in that is equal exactly when the values are equal."""
    if isinstance(value, u.Quantity):
        return ("Quantity", str(value.unit), _hashable(value.mantissa))
    if (
        isinstance(value, (np.ndarray, np.generic))
        or hasattr(value, "__jax_array__")
        or (type(value).__module__.startswith("jax"))
    ):
        arr = np.asarray(value)
        return ("array", arr.dtype.str, arr.shape, arr.tobytes())
    try:
        hash(value)
    except TypeError:
        # Unhashable and unknown: identity is the only safe equality.
        return ("id", id(value))
    return (type(value).__name__, value)


@contextlib.contextmanager
def context(**settings: Any) -> Iterator[None]:
    """Set values for the duration of a ``with`` block (in this thread).

    Example:
        >>> import brainunit as u
        >>> import purestate as ps
        >>> with ps.environ.context(dt=0.1 * u.ms):
        ...     with ps.environ.context(dt=0.2 * u.ms):
        ...         print(ps.environ.get("dt"))
        ...     print(ps.environ.get("dt"))
        0.2 ms
        0.1 ms
    """
    frames = _stack.frames
    merged = {**frames[-1].settings, **settings}
    frames.append(_Frame(merged))
    try:
        yield
    finally:
        frames.pop()


_MISSING = object()


def get(key: str, default: Any = _MISSING) -> Any:
    """The innermost value of `key`; a `KeyError` saying how to set it if unset.

    Example:
        >>> import purestate as ps
        >>> with ps.environ.context(dt=0.5):
        ...     ps.environ.get("dt")
        0.5
    """
    settings = _stack.frames[-1].settings
    if key in settings:
        return settings[key]
    if default is not _MISSING:
        return default
    raise KeyError(
        f"ps.environ has no value for {key!r} in this thread. Set it around the call, "
        f"e.g. `with ps.environ.context({key}=...):`. Currently set: "
        f"{sorted(settings) or 'nothing'}."
    )


def all_settings() -> dict[str, Any]:
    """A copy of every value set in this thread.

    Example:
        >>> import purestate as ps
        >>> with ps.environ.context(a=1):
        ...     ps.environ.all_settings()
        {'a': 1}
    """
    return dict(_stack.frames[-1].settings)


def cache_key() -> Hashable:
    """A hashable snapshot of the current settings (O(1): computed on entry).

    Example:
        >>> import purestate as ps
        >>> with ps.environ.context(a=1):
        ...     k1 = ps.environ.cache_key()
        >>> with ps.environ.context(a=2):
        ...     k2 = ps.environ.cache_key()
        >>> k1 == k2
        False
    """
    return _stack.frames[-1].key
