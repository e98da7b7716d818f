"""Paths: tuples of `str` keys, written ``'a/b/c'`` to users, and the pieces of
error messages that name them."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from typing import Any

from ._errors import StateTypeError

Path = tuple[str, ...]

__all__ = [
    "Path",
    "check_key",
    "close_matches",
    "describe_paths",
    "did_you_mean",
    "parse_path",
    "path_str",
    "path_differences",
]

SEPARATOR = "/"


def path_str(path: Path) -> str:
    """``('lif', 'V')`` -> ``'lif/V'``; the empty path is written ``'<root>'``."""
    return SEPARATOR.join(path) if path else "<root>"


def check_key(key: Any, prefix: Path) -> None:
    """Raise a `TypeError` naming the path unless `key` can be a state tree key:
    a non-empty `str` without ``'/'``, which would be confused with nesting."""
    if type(key) is str and key and SEPARATOR not in key:
        return
    where = f"under {path_str(prefix)!r}" if prefix else "at the root"
    if type(key) is not str:
        problem = f"the key {key!r} ({type(key).__name__}) {where}, but state trees have str keys"
        fix = f"use str(key), e.g. {str(key)!r}"
    elif not key:
        problem = f"an empty key {where}"
        fix = "give every state a non-empty name"
    else:
        problem = (
            f"the key {key!r} {where}, which contains '/': '/' separates the keys of a path, "
            f"so {path_str((*prefix, key))!r} would name a nested state"
        )
        fix = f"use another separator, e.g. {key.replace(SEPARATOR, '_')!r}, or nest the dicts"
    raise StateTypeError(f"A state tree has {problem}. To fix it, {fix}.")


def parse_path(path: str | Path) -> Path:
    """Accept ``'lif/V'`` or ``('lif', 'V')``; return the tuple form."""
    if isinstance(path, str):
        return tuple(p for p in path.split(SEPARATOR) if p)
    if isinstance(path, tuple) and all(isinstance(p, str) for p in path):
        return path
    raise TypeError(f"A path is a '/'-separated str like 'lif/V' or a tuple of str; got {path!r}.")


def close_matches(path: Path, candidates: Iterable[Path], n: int = 3) -> list[str]:
    """The existing paths most similar to `path`, as strings."""
    names = [path_str(p) for p in candidates]
    return difflib.get_close_matches(path_str(path), names, n=n, cutoff=0.4)


def did_you_mean(path: Path, candidates: Iterable[Path]) -> str:
    """`` Did you mean 'a/b'?`` for the closest existing paths, or ``''``."""
    close = close_matches(path, candidates)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def describe_paths(paths: Iterable[Path], limit: int = 20) -> str:
    """A short, readable list of paths for error messages."""
    names = sorted(path_str(p) for p in paths)
    if not names:
        return "(none)"
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def path_differences(
    expected: Collection[Path], got: Collection[Path], missing: str, extra: str
) -> list[str]:
    """``['<missing>: 'a', 'b'', '<extra>: 'c'']`` for the paths in only one of
    the two collections (an empty list when they hold the same paths)."""
    expected, got = set(expected), set(got)
    problems = []
    if expected - got:
        problems.append(f"{missing}: {describe_paths(expected - got)}")
    if got - expected:
        problems.append(f"{extra}: {describe_paths(got - expected)}")
    return problems
