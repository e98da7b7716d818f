"""Ambient settings (``dt``, ...) read by models at trace time.

Contexts nest (the innermost value wins), are restored on exceptions and are
per thread. Every transform that caches traces (`ps.compile.jit`,
`ps.augment.pmap`, `ps.augment.remat`) keys them on the content of the
settings its traces read (`Reads`), so a changed setting that the function
reads retraces, an equal one reuses the trace, and one it never reads changes
nothing; a setting that holds tracers is handed to the trace as an input.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import jax
import numpy as np

from . import _pytree as pytree

__all__ = ["all_settings", "cache_key", "context", "get"]


class _Entry(NamedTuple):
    """One setting as caches see it: its key, and for a traced setting its
    structure, its leaves with None for the tracers, and the tracers."""

    key: Hashable
    treedef: Any  # set only for a traced setting
    template: tuple  # its leaves, None where a tracer goes
    tracers: tuple


class Frame:
    """The settings in force. What a cache keys on is computed per setting,
    when a cached transform first needs it, and kept for the frame's life."""

    __slots__ = ("_all", "_entries", "_parent", "_traced", "settings")

    def __init__(self, settings: dict[str, Any], parent: Frame | None = None):
        self.settings = settings
        self._parent = parent
        self._entries: dict[str, _Entry] = {}
        self._all: Hashable = None
        self._traced: tuple[Settings, tuple] | None = None

    def all_key(self) -> Hashable:
        """The key of all the settings."""
        if self._all is None:
            self._all = tuple((n, self.key_of(n)) for n in sorted(self.settings))
        return self._all

    def entry(self, name: str) -> _Entry:
        """The cache key of the setting `name` (which is set)."""
        found = self._entries.get(name)
        if found is not None:
            return found
        value = self.settings[name]
        parent = self._parent
        if parent is not None and parent.settings.get(name, _MISSING) is value:
            found = parent.entry(name)  # inherited unchanged: computed once
        else:
            found = _entry(name, value)
        self._entries[name] = found
        return found

    def key_of(self, name: str) -> Hashable:
        """The key of `name` (a marker when it is not set)."""
        return self.entry(name).key if name in self.settings else _UNSET

    def traced(self) -> tuple[Settings, tuple]:
        """The settings that hold tracers: their static description (equal
        exactly when their structure and abstract values are) and their
        tracers, which a cached trace takes as an input."""
        if self._traced is None:
            keys: list[Hashable] = []
            traced: list[tuple[str, Any, tuple]] = []
            tracers: list[Any] = []
            for name in sorted(self.settings):
                entry = self.entry(name)
                if entry.treedef is not None:
                    keys.append((name, entry.key))
                    traced.append((name, entry.treedef, entry.template))
                    tracers.extend(entry.tracers)
            self._traced = (Settings(tuple(keys), tuple(traced)), tuple(tracers))
        return self._traced


def _entry(name: str, value: Any) -> _Entry:
    leaves, treedef = pytree.flatten(value)
    dynamic = [isinstance(leaf, jax.core.Tracer) for leaf in leaves]
    if not any(dynamic):
        return _Entry(content_key(value, name), None, (), ())
    key = tuple(
        ("traced", jax.typeof(leaf)) if d else content_key(leaf, name)
        for leaf, d in zip(leaves, dynamic, strict=True)
    )
    template = tuple(None if d else leaf for leaf, d in zip(leaves, dynamic, strict=True))
    tracers = tuple(leaf for leaf, d in zip(leaves, dynamic, strict=True) if d)
    return _Entry(("traced", treedef, key), treedef, template, tracers)


class Settings:
    """The settings that hold tracers, as a static argument: equal and hashed
    by `key` (their structure and abstract values). `traced` says how to
    rebuild them from the trace's inputs; it holds no tracers."""

    __slots__ = ("_hash", "key", "traced")

    def __init__(self, key: Hashable, traced: tuple[tuple[str, Any, tuple], ...]):
        self.key = key
        self.traced = traced
        self._hash = hash(key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self.key == other.key


T = TypeVar("T")
_MAX_INDEX = 1024
_UNSET = ("unset",)
_MISSING: Any = object()
_EMPTY = Frame({})


class _Stack(threading.local):
    def __init__(self) -> None:
        self.frames: list[Frame] = [_EMPTY]
        self.recorders: list[set[str]] = []  # the reads of the traces under way


_stack = _Stack()
_EVERYTHING = "*"  # recorded by all_settings(): the trace depends on every setting


class Variant(Generic[T]):
    """One cached object and the settings its traces have read, with the
    values they had."""

    __slots__ = ("obj", "read")

    def __init__(self) -> None:
        self.obj: T
        self.read: dict[str, Hashable] = {}

    def matches(self, frame: Frame) -> bool:
        if _EVERYTHING in self.read and self.read[_EVERYTHING] != frame.all_key():
            return False
        return all(frame.key_of(n) == k for n, k in self.read.items() if n != _EVERYTHING)


class Variants(Generic[T]):
    """One cached object (a `jax.jit`, `jax.pmap` or `jax.checkpoint` of a
    function that reads settings) per distinct values of the settings its
    traces read.

    A call uses the variant whose recorded settings equal the current ones,
    or makes a new one. So two settings that compare equal share a trace,
    two that differ never do, and a setting that the function never reads
    changes nothing. A setting that holds tracers goes to the trace as an
    input (see `tracing`).
    """

    def __init__(self, make: Callable[[Variant[T]], T]):
        self._make = make
        self._variants: list[Variant[T]] = []
        self._index: dict[Hashable, Variant[T]] = {}
        self._names: frozenset[str] = frozenset()  # read by any variant
        self._last: tuple[Frame | None, frozenset[str], Variant[T] | None] = (
            None,
            self._names,
            None,
        )

    def select(self) -> tuple[T, Settings, tuple]:
        """The object for the current settings, the static description of
        the traced settings, and their tracers."""
        frame = _stack.frames[-1]
        last_frame, last_names, variant = self._last
        if last_frame is not frame or last_names is not self._names or variant is None:
            names = self._names
            key = tuple(frame.key_of(n) for n in sorted(names - {_EVERYTHING}))
            if _EVERYTHING in names:
                key = (key, frame.all_key())
            variant = self._index.get(key)
            if variant is None:
                variant = next((v for v in self._variants if v.matches(frame)), None)
                if variant is None:
                    variant = Variant()
                    variant.obj = self._make(variant)
                    self._variants.append(variant)
                if len(self._index) > _MAX_INDEX:
                    self._index.clear()
                self._index[key] = variant
            self._last = (frame, names, variant)
        recorders = _stack.recorders
        if recorders:  # this call is part of a trace under way
            for recorder in recorders:
                recorder.update(variant.read)
        settings, tracers = frame.traced()
        return variant.obj, settings, tracers

    def clear(self) -> None:
        """Forget every variant (and so every trace)."""
        self._variants.clear()
        self._index.clear()
        self._last = (None, self._names, None)

    @contextlib.contextmanager
    def tracing(
        self, variant: Variant[T], settings: Settings, tracers: Sequence[Any]
    ) -> Iterator[None]:
        """Around a trace of `variant`: give the traced settings the trace's
        own inputs `tracers`, and record the settings the trace reads."""
        frames, recorders = _stack.frames, _stack.recorders
        outer = frames[-1]
        if settings.traced:
            values = dict(outer.settings)
            it = iter(tracers)
            for name, treedef, template in settings.traced:
                values[name] = treedef.unflatten([next(it) if x is None else x for x in template])
            frames.append(Frame(values))
        read: set[str] = set()
        recorders.append(read)
        try:
            yield
        finally:
            recorders.pop()
            if settings.traced:
                frames.pop()
            for recorder in recorders:  # a trace inside another is part of it
                recorder.update(read)
        new = read - variant.read.keys()
        if new:
            for name in new:
                variant.read[name] = outer.all_key() if name == _EVERYTHING else outer.key_of(name)
            self._names = self._names | new
            self._index.clear()


def content_key(value: Any, name: str = "value") -> Hashable:
    """A hashable stand-in for `value` that is equal exactly when the values
    are: arrays by dtype, shape and bytes, pytrees (dicts, lists, tuples,
    Quantities, Modules) by structure and leaves, other values by type and
    value.
    A value that is none of these cannot be compared: `TypeError` naming `name`.

    Examples:
        >>> import brainunit as u
        >>> from purestate.environ import content_key
        >>> content_key({"tau": 5 * u.ms}) == content_key({"tau": 5 * u.ms})
        True
        >>> content_key((1,)) == content_key((1.0,))
        False
    """
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            return ("key", str(jax.random.key_impl(value)), content_key(jax.random.key_data(value)))
        arr = np.asarray(value)
        return ("array", arr.dtype.str, arr.shape, arr.tobytes())
    leaves, treedef = pytree.flatten(value)
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:  # a leaf
        try:
            hash(value)
        except TypeError:
            raise TypeError(
                f"The setting {name!r} holds a {type(value).__name__}, which can neither be "
                "hashed nor taken apart into arrays and hashable values, so purestate "
                "cannot tell whether a trace made under it may be reused. Use a hashable "
                "value, an array, or a dict/list/tuple of those."
            ) from None
        # The type too: 1, 1.0 and True are equal but trace differently.
        return (type(value), value)
    try:
        hash(treedef)
    except TypeError as error:
        raise TypeError(
            f"The setting {name!r} is a pytree whose structure cannot be hashed ({error}); "
            "use a dict/list/tuple of arrays and hashable values."
        ) from None
    # Containers (tuples too) by structure and leaves, so that their leaves'
    # types count as well.
    return ("tree", treedef, tuple(content_key(leaf, name) for leaf in leaves))


@contextlib.contextmanager
def context(**settings: Any) -> Iterator[None]:
    """Set values for the duration of a ``with`` block (in this thread).

    Examples:
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
    frames.append(Frame(merged, frames[-1]))
    try:
        yield
    finally:
        frames.pop()


def _record(name: str) -> None:
    for recorder in _stack.recorders:
        recorder.add(name)


def get(key: str, default: Any = _MISSING) -> Any:
    """The innermost value of `key`; a `KeyError` saying how to set it if unset.

    Examples:
        >>> import purestate as ps
        >>> with ps.environ.context(dt=0.5):
        ...     ps.environ.get("dt")
        0.5
    """
    settings = _stack.frames[-1].settings
    if _stack.recorders:
        _record(key)
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

    Examples:
        >>> import purestate as ps
        >>> with ps.environ.context(a=1):
        ...     ps.environ.all_settings()
        {'a': 1}
    """
    if _stack.recorders:
        _record(_EVERYTHING)
    return dict(_stack.frames[-1].settings)


def cache_key() -> Hashable:
    """A hashable snapshot of all the current settings, equal exactly when
    they are equal by content.

    Examples:
        >>> import purestate as ps
        >>> with ps.environ.context(a=1):
        ...     k1 = ps.environ.cache_key()
        >>> with ps.environ.context(a=2):
        ...     k2 = ps.environ.cache_key()
        >>> k1 == k2
        False
    """
    return _stack.frames[-1].all_key()
