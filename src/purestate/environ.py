"""Ambient settings (``dt``, ...) read by models at trace time.

Contexts nest (the innermost value wins), are restored on exceptions and are
per thread. Every transform that caches traces (`ps.compile.jit`,
`ps.augment.pmap`, `ps.augment.remat`) keys them on the settings' content, so
a changed setting retraces and an equal one reuses the trace; a setting that
holds tracers is handed to the trace as an input instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from . import _pytree as pytree

__all__ = ["all_settings", "cache_key", "context", "get"]


class Frame:
    """The settings in force, with what transforms key their caches on.

    `key` is hashable and equal for two frames exactly when their settings are
    equal (by content). A setting whose value holds tracers (a ``dt`` that
    `jax.vmap` or `jax.grad` maps over) enters `key` by its abstract value
    only, and its tracers are `traced_leaves`: a transform that caches traces
    passes them in as an input and calls `rebound` inside, so no trace keeps a
    tracer of another.
    """

    __slots__ = ("key", "settings", "traced", "traced_leaves")

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        keys: list[Hashable] = []
        traced: list[tuple[str, Any, list[Any], list[bool]]] = []
        traced_leaves: list[Any] = []
        for name in sorted(settings):
            value = settings[name]
            leaves, treedef = pytree.flatten(value)
            if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
                dynamic = [isinstance(leaf, jax.core.Tracer) for leaf in leaves]
                static = tuple(
                    ("traced", jax.typeof(leaf)) if d else content_key(leaf, name)
                    for leaf, d in zip(leaves, dynamic, strict=True)
                )
                keys.append((name, "traced", treedef, static))
                traced.append((name, treedef, leaves, dynamic))
                traced_leaves.extend(leaf for leaf, d in zip(leaves, dynamic, strict=True) if d)
            else:
                keys.append((name, content_key(value, name)))
        self.key: Hashable = tuple(keys)
        self.traced = tuple(traced)
        self.traced_leaves = tuple(traced_leaves)

    def with_leaves(self, leaves: Sequence[Any]) -> Frame:
        """This frame with its traced settings holding `leaves` instead."""
        settings = dict(self.settings)
        it = iter(leaves)
        for name, treedef, old, dynamic in self.traced:
            new = [next(it) if d else leaf for leaf, d in zip(old, dynamic, strict=True)]
            settings[name] = treedef.unflatten(new)
        return Frame(settings)


_EMPTY = Frame({})


class _Stack(threading.local):
    def __init__(self) -> None:
        self.frames: list[Frame] = [_EMPTY]


_stack = _Stack()


def content_key(value: Any, name: str = "value") -> Hashable:
    """A hashable stand-in for `value` that is equal exactly when the values
    are: arrays by dtype, shape and bytes, hashable values by type and value,
    other pytrees (dicts, lists, Quantities, Modules) by structure and leaves.
    A value that is none of these cannot be compared: `TypeError` naming `name`.

    Example:
        >>> import brainunit as u
        >>> from purestate.environ import content_key
        >>> content_key({"tau": 5 * u.ms}) == content_key({"tau": 5 * u.ms})
        True
        >>> content_key([1.0]) == content_key([2.0])
        False
    """
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            return ("key", str(jax.random.key_impl(value)), content_key(jax.random.key_data(value)))
        arr = np.asarray(value)
        return ("array", arr.dtype.str, arr.shape, arr.tobytes())
    try:
        hash(value)
    except TypeError:
        pass
    else:
        return (type(value), value)
    leaves, treedef = pytree.flatten(value)
    if treedef.num_leaves == 1 and treedef.num_nodes == 1:
        raise TypeError(
            f"The setting {name!r} holds a {type(value).__name__}, which can neither be "
            "hashed nor taken apart into arrays and hashable values, so purestate cannot "
            "tell whether a trace made under it may be reused. Use a hashable value, an "
            "array, or a dict/list/tuple of those."
        )
    try:
        hash(treedef)
    except TypeError as error:
        raise TypeError(
            f"The setting {name!r} is a pytree whose structure cannot be hashed ({error}); "
            "use a dict/list/tuple of arrays and hashable values."
        ) from None
    return ("tree", treedef, tuple(content_key(leaf, name) for leaf in leaves))


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
    frames.append(Frame(merged))
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


def current() -> Frame:
    """The settings in force in this thread (O(1): computed on entry)."""
    return _stack.frames[-1]


@contextlib.contextmanager
def rebound(frame: Frame, leaves: Sequence[Any]) -> Iterator[None]:
    """Inside a cached trace: `frame`'s settings with its traced settings
    holding `leaves`, the trace's own inputs (a no-op when nothing is traced)."""
    if not frame.traced:
        yield
        return
    frames = _stack.frames
    frames.append(frame.with_leaves(leaves))
    try:
        yield
    finally:
        frames.pop()


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
