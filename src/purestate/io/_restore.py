"""`ps.io.restore` and `ps.io.latest_step`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import StateError
from .._paths import Path as StatePath
from .._paths import describe_paths, path_differences, path_str
from .._state import State, new_state
from .._tree import StateTree, check_tree, flatten, nest
from . import _directory, _orbax
from ._errors import CheckpointError
from ._kinds import import_kind, kind_name
from ._record import EMPTY_KEY, METADATA_KEY, Entry, array_entry, escape, parse
from ._values import NO_LIKE, decode, encode, mismatch, needs_like, stored_arrays

__all__ = ["latest_step", "restore"]


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The highest step of `directory` whose save finished, or None if there
    is none (or no such directory). Steps whose save was interrupted are not
    counted.

    Examples:
        >>> import tempfile
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     print(ps.io.latest_step(tmp))
        ...     ps.io.save(tmp, {"w": ps.ParamState(jnp.ones(2))}, step=3)
        ...     print(ps.io.latest_step(tmp))
        None
        3
    """
    steps = _directory.finished_steps(_directory.as_path(directory))
    return steps[-1] if steps else None


def restore(
    directory: str | os.PathLike[str],
    *,
    step: int | None = None,
    like: StateTree | None = None,
) -> StateTree:
    """Load a state tree that `save` wrote.

    Without `step`, restores the checkpoint that `directory` is, or if it
    holds steps, the latest finished one. The tree comes back with the same
    paths (in the saved order), kinds, shapes, dtypes, units, typed PRNG keys
    and dict, list and tuple values. Kinds are imported by name, so a user's
    own `State` subclass must be importable (defined at the top level of a
    module) unless `like` gives it.

    `like` is a state tree shaped as the saved one, for example a freshly
    initialised model's states (its arrays may be `jax.ShapeDtypeStruct`s,
    as from `jax.eval_shape`). It is required for values whose structure is
    not stored (an `equinox.Module`: its structure and non-array leaves come
    from `like`), and it places the arrays: each is restored with the
    sharding of the array at the same place in `like`, which with several
    processes reads only the shards each process holds. Without `like`,
    arrays are restored whole on this process's first device (NumPy arrays
    as NumPy arrays).

    Args:
        directory: a directory passed to `save`.
        step: the step to restore (default: the checkpoint `directory` is,
            or its latest finished step).
        like: a state tree with the checkpoint's paths, kinds and shapes.

    Returns:
        The state tree.

    Raises:
        CheckpointError: no finished checkpoint there, a damaged or foreign
            one, a kind that cannot be imported (naming it and its paths), or
            a value that needs `like` when none is given.
        StateError: `like`'s paths, kinds, shapes, dtypes, units or value
            structures differ from the checkpoint's (naming the paths).

    Examples:
        >>> import tempfile
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> states = {"layer": {"w": ps.ParamState(jnp.ones((2, 3)))}}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ps.io.save(tmp, states)
        ...     back = ps.io.restore(tmp)
        >>> type(back["layer"]["w"]).__name__, back["layer"]["w"].value.shape
        ('ParamState', (2, 3))
    """
    if like is not None:
        check_tree(like, "ps.io.restore(like=...): ")
    root = _directory.as_path(directory)
    path = _locate(root, step)
    entries, empty = _read_record(path)
    if like is None:
        kinds = _import_kinds(entries, path)
        like_values: list[Any] = [NO_LIKE] * len(entries)
        _check_needs_like(entries, path)
    else:
        kinds, like_values = _match_like(entries, like, path)
    arrays = _read_arrays(path, entries, like_values)
    # States and empty subtrees in the order they were saved in.
    flat: dict[StatePath, State | dict] = {}
    empty_before = {n: [p for p, m in empty if m == n] for _, n in empty}
    for n, (entry, kind, like_value, stored) in enumerate(
        zip(entries, kinds, like_values, arrays, strict=True)
    ):
        flat.update((p, {}) for p in empty_before.get(n, []))
        try:
            value = decode(entry.record, iter(stored), like_value)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError, StopIteration) as err:
            raise CheckpointError(
                f"The checkpoint at {path} is damaged: the record of {path_str(entry.path)!r} "
                f"does not describe its arrays ({type(err).__name__}: {err})."
            ) from None
        flat[entry.path] = new_state(kind, value)
    flat.update((p, {}) for p in empty_before.get(len(entries), []))
    return nest(flat)


def _locate(root: Path, step: int | None) -> Path:
    if step is not None:
        path = _directory.step_path(root, step)
        if step not in _directory.finished_steps(root):
            raise _directory.describe_missing(root, step)
        return path
    if not (root / _directory.STEP_METADATA_FILE).exists():
        steps = _directory.finished_steps(root)
        if steps:
            return _directory.step_path(root, steps[-1])
        if _directory.looks_like_checkpoint(root):
            return root  # a checkpoint without its metadata: _read_record says so
        raise _directory.describe_missing(root, None)
    return root


def _read_record(path: Path) -> tuple[list[Entry], list[tuple[StatePath, int]]]:
    metadata_file = path / _directory.STEP_METADATA_FILE
    if not metadata_file.is_file():
        raise CheckpointError(
            f"The checkpoint at {path} is damaged: its metadata file "
            f"{_directory.STEP_METADATA_FILE} is missing."
        )
    try:
        metadata = _orbax.read_custom_metadata(path)
    except Exception:  # orbax reports a missing and an unparsable file alike
        raise CheckpointError(
            f"The checkpoint at {path} is damaged: its metadata file "
            f"{_directory.STEP_METADATA_FILE} is not valid JSON (truncated or overwritten?)."
        ) from None
    record = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if record is None:
        raise CheckpointError(
            f"{path} is not a checkpoint written by ps.io.save: it has no purestate record "
            "(an orbax checkpoint of something else? restore it with orbax directly)."
        )
    try:
        return parse(record)
    except ValueError as err:
        raise CheckpointError(f"The checkpoint at {path} is damaged: {err}.") from None


def _import_kinds(entries: list[Entry], path: Path) -> list[type[State]]:
    found: dict[str, type[State]] = {}
    for name in dict.fromkeys(e.kind for e in entries):
        try:
            found[name] = import_kind(name)
        except ImportError as err:
            holders = [e.path for e in entries if e.kind == name]
            raise CheckpointError(
                f"The checkpoint at {path} holds states of kind {name!r} at "
                f"{describe_paths(holders, 5)}, which cannot be imported: {err}. Import or "
                "define it before restoring, or pass like= a tree holding states of that kind."
            ) from None
    return [found[e.kind] for e in entries]


def _check_needs_like(entries: list[Entry], path: Path) -> None:
    needing = [(e.path, needs_like(e.record)) for e in entries]
    needing = [(p, cls) for p, cls in needing if cls is not None]
    if needing:
        classes = sorted({cls.rpartition(":")[2] for _, cls in needing if cls})
        raise CheckpointError(
            f"The checkpoint at {path} holds values whose structure is not stored "
            f"({', '.join(classes)}) at {describe_paths([p for p, _ in needing], 5)}: "
            "a like is needed for them. Pass like= a state tree of the same shape, e.g. "
            "the freshly initialised model's states."
        )


def _match_like(
    entries: list[Entry], like: StateTree, path: Path
) -> tuple[list[type[State]], list[Any]]:
    """The kinds and values of `like` in the checkpoint's order; a
    `StateError` naming every path where `like` differs."""
    like_flat = flatten(like)
    saved_paths = [e.path for e in entries]
    problems = path_differences(
        saved_paths,
        like_flat,
        "in the checkpoint but not in like",
        "in like but not in the checkpoint",
    )
    for entry in entries:
        state = like_flat.get(entry.path)
        if state is None:
            continue
        where = repr(path_str(entry.path))
        if kind_name(type(state)) != entry.kind:
            problems.append(
                f"{where}: kind {entry.kind} in the checkpoint, {kind_name(type(state))} in like"
            )
            continue
        try:
            difference = mismatch(entry.record, encode(state.value, None))
        except TypeError as err:
            difference = f"like's value cannot be compared: {err}"
        if difference is not None:
            problems.append(f"{where}: {difference}")
    if problems:
        raise StateError(
            f"ps.io.restore: like= does not match the checkpoint at {path}:\n  "
            + "\n  ".join(problems)
        )
    states = [like_flat[p] for p in saved_paths]
    return [type(s) for s in states], [s.value for s in states]


def _default_sharding() -> Any:
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def _target(record: dict[str, Any], like: Any) -> Any:
    """What orbax restores one stored array as: a NumPy array, or a jax.Array
    with `like`'s sharding (or on this process's first device)."""
    shape, dtype = tuple(record["shape"]), jnp.dtype(record["dtype"])
    if "numpy" in record:
        return np.empty(shape, dtype)
    sharding = getattr(like, "sharding", None)
    if sharding is None:
        sharding = _default_sharding()
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def _read_arrays(path: Path, entries: list[Entry], like_values: list[Any]) -> list[list[Any]]:
    """Each entry's stored arrays, read with orbax onto their targets."""
    targets: dict[str, Any] = {}
    for entry, like_value in zip(entries, like_values, strict=True):
        if not entry.stored:
            continue
        if like_value is NO_LIKE:
            found = [_target(r, None) for r, _ in stored_arrays(entry.record)]
        else:
            found = [_target(r, leaf) for r, leaf in stored_arrays(entry.record, like_value)]
        key = escape(entry.path[-1])
        array_entry(targets, entry.path, create=True)[key] = (
            found[0] if len(found) == 1 else {str(i): t for i, t in enumerate(found)}
        )
    if not targets:
        targets[EMPTY_KEY] = np.empty((), np.uint8)
    ocp = _orbax.ocp()
    try:
        restored = _orbax.checkpointer().restore(path, args=ocp.args.StandardRestore(targets))
    except Exception as err:  # orbax and tensorstore raise many types for damaged files
        raise CheckpointError(
            f"The checkpoint at {path} is damaged: reading its arrays failed (a file missing, "
            f"truncated or not written by this save?): {_first_line(err)}"
        ) from None
    out: list[list[Any]] = []
    for entry in entries:
        if not entry.stored:
            out.append([])
            continue
        try:
            held = array_entry(restored, entry.path)[escape(entry.path[-1])]
        except (KeyError, TypeError):
            raise CheckpointError(
                f"The checkpoint at {path} is damaged: it has no arrays for "
                f"{path_str(entry.path)!r}."
            ) from None
        out.append([held] if entry.stored == 1 else [held[str(i)] for i in range(entry.stored)])
    return out


def _first_line(err: Exception, limit: int = 400) -> str:
    # tensorstore's messages go on with the whole store specification.
    text = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
