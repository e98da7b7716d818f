"""A state tree as purestate's record (JSON: paths, kinds, value records)
plus a nested dict of the arrays to store, and back.

The arrays are stored under their state's path, each key escaped so that
only letters, digits, ``_`` and ``-`` remain (orbax joins keys with ``.``,
so ``{'a.b': x}`` and ``{'a': {'b': y}}`` would otherwise collide). A state
with one stored array holds it directly; one with several holds
``{'0': ..., '1': ...}``. Plain orbax therefore restores a purestate
checkpoint as a nested dict of arrays by path.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._paths import Path, path_str
from .._state import State
from .._tree import check_tree
from ._kinds import kind_name
from ._values import Record, encode, stored_arrays

__all__ = [
    "EMPTY_KEY",
    "FORMAT",
    "METADATA_KEY",
    "Entry",
    "array_entry",
    "parse",
    "take_apart",
]

FORMAT = "purestate.io"
VERSION = 1
METADATA_KEY = "purestate"
# Stored when a tree has no array at all (orbax refuses an empty tree). An
# escaped key never holds '%' followed by a non-hex letter, so this name
# cannot be a state's.
EMPTY_KEY = "%none"

_SAFE = frozenset(string.ascii_letters + string.digits + "_-")


def escape(key: str) -> str:
    """`key` with every character but letters, digits, ``_`` and ``-``
    written as ``%XX`` (its UTF-8 bytes)."""
    if all(c in _SAFE for c in key):
        return key
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in key)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One state of a checkpoint: where it is, its kind's name, its value's
    record, and how many arrays are stored for it."""

    path: Path
    kind: str
    record: Record
    stored: int


def _walk(tree: dict, prefix: Path, states: list, empty: list) -> None:
    # Insertion order, so that the restored dicts list their keys as saved.
    for key, child in tree.items():
        path = (*prefix, key)
        if isinstance(child, dict):
            if child:
                _walk(child, path, states, empty)
            else:  # kept, with the number of states before it
                empty.append([list(path), len(states)])
        else:
            states.append((path, child))


def take_apart(tree: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(record, arrays)`` for a state tree; `TypeError` naming the path of
    a value that cannot be saved."""
    check_tree(tree, "ps.io.save: ")
    found: list[tuple[Path, State]] = []
    empty: list[list[Any]] = []
    _walk(tree, (), found, empty)
    kinds: dict[type, int] = {}
    states = []
    arrays: dict[str, Any] = {}
    for path, state in found:
        stored: list[Any] = []
        try:
            record = encode(state.value, stored)
        except TypeError as err:
            raise TypeError(
                f"ps.io.save cannot save the state at {path_str(path)!r}: {err}."
            ) from None
        kind = kinds.setdefault(type(state), len(kinds))
        states.append([list(path), kind, record])
        if stored:
            array_entry(arrays, path, create=True)[escape(path[-1])] = (
                stored[0] if len(stored) == 1 else {str(i): a for i, a in enumerate(stored)}
            )
    if not arrays:
        arrays[EMPTY_KEY] = np.zeros((), np.uint8)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "kinds": [kind_name(k) for k in kinds],
        "states": states,
        "empty_subtrees": empty,
    }
    return record, arrays


def array_entry(arrays: dict[str, Any], path: Path, create: bool = False) -> dict[str, Any]:
    """The dict of `arrays` that holds (or will hold) the entry of the state
    at `path`, under the escaped last key."""
    node = arrays
    for key in path[:-1]:
        escaped = escape(key)
        node = node.setdefault(escaped, {}) if create else node[escaped]
    return node


def parse(record: Any) -> tuple[list[Entry], list[tuple[Path, int]]]:
    """The entries and empty subtrees (each with the number of states before
    it) of a record; `ValueError` saying what is wrong if it is not a record
    of this format."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError("it has no purestate record")
    version = record.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"its record has version {version!r}; this purestate reads versions up to {VERSION}"
        )
    try:
        kinds = [str(k) for k in record["kinds"]]
        entries = []
        for path, kind, value in record["states"]:
            if not (isinstance(path, list) and path and all(isinstance(k, str) for k in path)):
                raise ValueError(f"bad path {path!r}")
            entries.append(Entry(tuple(path), kinds[kind], value, sum(1 for _ in _stored(value))))
        empty = [(tuple(p), int(n)) for p, n in record.get("empty_subtrees", [])]
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"its record is malformed ({type(err).__name__}: {err})") from None
    return entries, empty


def _stored(record: Record) -> Iterator[Record]:
    for array_record, _ in stored_arrays(record):
        yield array_record
