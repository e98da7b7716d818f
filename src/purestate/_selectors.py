"""Selectors: the ways to name a set of states in a tree.

Every accepted form is compiled into a `Selector`. Selectors whose answer
depends only on a state's path and kind carry a hashable `cache_key`, which
lets `split` decide each ``(path, kind)`` once and reuse the decision.
"""

from __future__ import annotations

import fnmatch
import re
import typing
from collections.abc import Callable, Hashable

from ._errors import StateTypeError
from ._paths import Path, check_key
from ._state import State

__all__ = ["Selector", "SelectorLike", "as_selector", "Not", "All", "Any"]

SelectorLike = typing.Any  # documented in `as_selector`

SUPPORTED_FORMS = (
    "a State subclass (e.g. ps.ParamState), a str glob on '/'-joined paths "
    "(e.g. 'lif/V', '*/weight', 'encoder'), a callable (path, state) -> bool, a state "
    "tree (dict) selecting exactly its paths, a tuple or list of selectors (union), "
    "... (everything), None (nothing), or ps.Not / ps.All / ps.Any of selectors"
)


class Selector:
    """Base class of compiled selectors (and of `Not`, `All`, `Any`).

    `cache_key` is a hashable description when `matches` depends only on the
    path and the kind, else ``None``. `required_paths` are paths that must exist
    in the tree (from state-tree selectors).
    """

    cache_key: Hashable | None = None
    required_paths: frozenset[Path] = frozenset()

    def matches(self, path: Path, state: State) -> bool:
        raise NotImplementedError


class _Everything(Selector):
    cache_key = ("...",)

    def matches(self, path: Path, state: State) -> bool:
        return True

    def __repr__(self) -> str:
        return "..."


class _Nothing(Selector):
    cache_key = ("None",)

    def matches(self, path: Path, state: State) -> bool:
        return False

    def __repr__(self) -> str:
        return "None"


class _Kind(Selector):
    def __init__(self, kind: type[State]):
        self.kind = kind
        self.cache_key = ("kind", kind)

    def matches(self, path: Path, state: State) -> bool:
        return isinstance(state, self.kind)

    def __repr__(self) -> str:
        return self.kind.__name__


class _Glob(Selector):
    def __init__(self, pattern: str):
        self.pattern = pattern.strip("/")
        self._match = re.compile(fnmatch.translate(self.pattern)).match
        self.cache_key = ("glob", self.pattern)

    def matches(self, path: Path, state: State) -> bool:
        # A path matches when it, or any prefix of it, matches the pattern.
        return any(self._match("/".join(path[:i])) for i in range(len(path), 0, -1))

    def __repr__(self) -> str:
        return repr(self.pattern)


class _Paths(Selector):
    def __init__(self, tree: dict):
        self.paths = frozenset(_paths_of_tree(tree, ()))
        self.required_paths = self.paths
        self.cache_key = ("paths", self.paths)

    def matches(self, path: Path, state: State) -> bool:
        return path in self.paths

    def __repr__(self) -> str:
        return f"<tree of {len(self.paths)} paths>"


class _Predicate(Selector):
    # May look at values, so decisions are never cached.
    def __init__(self, fn: Callable[[Path, State], bool]):
        self.fn = fn

    def matches(self, path: Path, state: State) -> bool:
        return bool(self.fn(path, state))

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def _paths_of_tree(tree: dict, prefix: Path) -> list[Path]:
    out = []
    for key, child in tree.items():
        check_key(key, prefix)
        if isinstance(child, dict):
            out.extend(_paths_of_tree(child, (*prefix, key)))
        else:
            out.append((*prefix, key))
    return out


def _combined_key(tag: str, parts: tuple[Selector, ...]) -> Hashable | None:
    keys = tuple(p.cache_key for p in parts)
    return None if any(k is None for k in keys) else (tag, keys)


class Not(Selector):
    """The complement of a selector.

    Examples:
        >>> import purestate as ps
        >>> tree = {"w": ps.ParamState(1.0), "V": ps.ShortTermState(0.0)}
        >>> list(ps.select(tree, ps.Not(ps.ParamState)))
        ['V']
    """

    def __init__(self, selector: SelectorLike):
        self.inner = as_selector(selector)
        self.required_paths = self.inner.required_paths
        key = self.inner.cache_key
        self.cache_key = None if key is None else ("not", key)

    def matches(self, path: Path, state: State) -> bool:
        return not self.inner.matches(path, state)

    def __repr__(self) -> str:
        return f"Not({self.inner!r})"


class All(Selector):
    """The intersection of selectors; ``All()`` selects everything.

    Examples:
        >>> import purestate as ps
        >>> tree = {"a": {"w": ps.ParamState(1.0)}, "b": {"w": ps.ParamState(2.0)}}
        >>> ps.flatten(ps.select(tree, ps.All(ps.ParamState, "a"))).keys()
        dict_keys([('a', 'w')])
    """

    def __init__(self, *selectors: SelectorLike):
        self.parts = tuple(as_selector(s) for s in selectors)
        self.required_paths = frozenset().union(*(p.required_paths for p in self.parts))
        self.cache_key = _combined_key("all", self.parts)

    def matches(self, path: Path, state: State) -> bool:
        return all(p.matches(path, state) for p in self.parts)

    def __repr__(self) -> str:
        return f"All({', '.join(map(repr, self.parts))})"


class Any(Selector):
    """The union of selectors; ``Any()`` selects nothing.

    Examples:
        >>> import purestate as ps
        >>> tree = {"w": ps.ParamState(1.0), "V": ps.ShortTermState(0.0)}
        >>> sorted(ps.select(tree, ps.Any("w", "V")))
        ['V', 'w']
    """

    def __init__(self, *selectors: SelectorLike):
        self.parts = tuple(as_selector(s) for s in selectors)
        self.required_paths = frozenset().union(*(p.required_paths for p in self.parts))
        self.cache_key = _combined_key("any", self.parts)

    def matches(self, path: Path, state: State) -> bool:
        return any(p.matches(path, state) for p in self.parts)

    def __repr__(self) -> str:
        return f"Any({', '.join(map(repr, self.parts))})"


_EVERYTHING = _Everything()
_NOTHING = _Nothing()


def as_selector(selector: SelectorLike) -> Selector:
    """Compile any accepted selector form into a `Selector`.

    Raises a `TypeError` listing the supported forms for anything else.

    Examples:
        >>> import purestate as ps
        >>> from purestate._selectors import as_selector
        >>> as_selector(ps.ParamState).matches(("w",), ps.ParamState(1.0))
        True
    """
    if isinstance(selector, Selector):
        return selector
    if selector is Ellipsis:
        return _EVERYTHING
    if selector is None:
        return _NOTHING
    if isinstance(selector, type):
        if issubclass(selector, State):
            return _Kind(selector)
        raise StateTypeError(
            f"The class {selector.__name__} is not a State kind, so it cannot select "
            f"states. Supported selectors: {SUPPORTED_FORMS}."
        )
    if isinstance(selector, str):
        return _Glob(selector)
    if isinstance(selector, dict):
        return _Paths(selector)
    if isinstance(selector, (tuple, list)):
        return Any(*selector)
    if isinstance(selector, State):
        raise StateTypeError(
            f"A single {type(selector).__name__} object cannot select itself: states are "
            "immutable values, not identities. Select it by its path (e.g. 'lif/V') or "
            f"by its kind. Supported selectors: {SUPPORTED_FORMS}."
        )
    if callable(selector):
        return _Predicate(selector)
    raise StateTypeError(
        f"Unsupported selector {selector!r} of type {type(selector).__name__}. "
        f"Supported selectors: {SUPPORTED_FORMS}."
    )
