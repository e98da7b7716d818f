"""Paths: tuples of `str` keys, written ``'a/b/c'`` to users."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

Path = tuple[str, ...]

__all__ = ["Path", "path_str", "parse_path", "close_matches", "describe_paths"]


def path_str(path: Path) -> str:
    """``('lif', 'V')`` -> ``'lif/V'``; the empty path is written ``'<root>'``."""
    return "/".join(path) if path else "<root>"


def parse_path(path: str | Path) -> Path:
    """Accept ``'lif/V'`` or ``('lif', 'V')``; return the tuple form."""
    if isinstance(path, str):
        return tuple(p for p in path.split("/") if p)
    if isinstance(path, tuple) and all(isinstance(p, str) for p in path):
        return path
    raise TypeError(f"A path is a '/'-separated str like 'lif/V' or a tuple of str; got {path!r}.")


def close_matches(path: Path, candidates: Iterable[Path], n: int = 3) -> list[str]:
    """The existing paths most similar to `path`, as strings."""
    names = [path_str(p) for p in candidates]
    return difflib.get_close_matches(path_str(path), names, n=n, cutoff=0.4)


def describe_paths(paths: Iterable[Path], limit: int = 20) -> str:
    """A short, readable list of paths for error messages."""
    names = sorted(path_str(p) for p in paths)
    if not names:
        return "(none)"
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown
