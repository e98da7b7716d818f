"""Checkpoint directories: where a step lives, which steps are finished, and
what a directory holds when it holds no usable checkpoint.

A checkpoint without a step is the directory itself; step ``n`` is the
subdirectory named ``n``. orbax writes each checkpoint into a temporary
directory (``<name>.orbax-checkpoint-tmp-<time>``) and renames it into place
when every process has finished, so a directory with the final name is a
finished save, and an interrupted one leaves only the temporary directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from . import _orbax
from ._errors import CheckpointError

__all__ = [
    "STEP_METADATA_FILE",
    "as_path",
    "contents",
    "describe_missing",
    "finished_steps",
    "looks_like_checkpoint",
    "remove",
    "remove_leftovers",
    "retired_path",
    "staging_path",
    "step_path",
]

# orbax's step metadata file, which also carries purestate's record.
STEP_METADATA_FILE = "_CHECKPOINT_METADATA"
# Where an overwrite writes the new checkpoint before swapping it in, and
# where the old one waits to be deleted.
STAGING_SUFFIX = ".purestate-new"
RETIRED_SUFFIX = ".purestate-old"


def as_path(directory: Any) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"A checkpoint directory is a str or os.PathLike; got {type(directory).__name__}."
        )
    return Path(os.fspath(directory)).absolute()


def step_path(directory: Path, step: Any) -> Path:
    """``directory/<step>``; a step is an int >= 0."""
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"A step is an int >= 0; got {step!r} ({type(step).__name__}).")
    if step < 0:
        raise ValueError(f"A step is an int >= 0; got {step}.")
    return directory / str(step)


def finished_steps(directory: Path) -> list[int]:
    """The steps of `directory` whose save finished, in increasing order."""
    if not directory.is_dir():
        return []
    is_finalized = _orbax.ocp().step.is_path_finalized
    steps = [
        int(child.name)
        for child in directory.iterdir()
        if child.name.isdigit() and child.is_dir() and is_finalized(child)
    ]
    return sorted(steps)


def _unfinished(directory: Path) -> list[str]:
    marker = _orbax.ocp().step.TMP_DIR_SUFFIX
    return sorted(
        child.name
        for child in directory.iterdir()
        if marker in child.name or child.name.endswith((STAGING_SUFFIX, RETIRED_SUFFIX))
    )


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def contents(directory: Path) -> str:
    """What `directory` holds, for a message about a checkpoint missing there:
    ``'does not exist'``, ``'is empty'``, ``'holds ...'``."""
    if not directory.exists():
        return "does not exist"
    if not directory.is_dir():
        return "is a file, not a directory"
    names = sorted(child.name for child in directory.iterdir())
    if not names:
        return "is empty"
    parts = []
    steps = finished_steps(directory)
    if steps:
        parts.append(f"finished steps {_listing([str(s) for s in steps])}")
    unfinished = _unfinished(directory)
    if unfinished:
        parts.append(f"unfinished or interrupted saves {_listing(unfinished)}")
    known = {str(s) for s in steps} | set(unfinished)
    others = [n for n in names if n not in known]
    if others:
        parts.append(f"other entries {_listing(others)}")
    return "holds " + "; ".join(parts)


# Files that orbax writes into every checkpoint of arrays.
_ORBAX_FILES = ("_METADATA", "manifest.ocdbt", "_sharding", "array_metadatas")


def looks_like_checkpoint(directory: Path) -> bool:
    """Whether `directory` holds the files of an orbax checkpoint (whatever
    else is wrong with it)."""
    return directory.is_dir() and any((directory / name).exists() for name in _ORBAX_FILES)


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_leftovers(target: Path) -> None:
    """Delete what an interrupted save of `target` left beside it: orbax's
    temporary directories and an overwrite's staged or retired copies."""
    if not target.parent.is_dir():
        return
    marker = _orbax.ocp().step.TMP_DIR_SUFFIX
    prefixes = [f"{target.name}{marker}", f"{target.name}{STAGING_SUFFIX}{marker}"]
    for child in target.parent.iterdir():
        if child.name.startswith(tuple(prefixes)):
            remove(child)
    remove(staging_path(target))
    remove(retired_path(target))


def staging_path(target: Path) -> Path:
    return target.with_name(target.name + STAGING_SUFFIX)


def retired_path(target: Path) -> Path:
    return target.with_name(target.name + RETIRED_SUFFIX)


def describe_missing(directory: Path, step: int | None) -> CheckpointError:
    """The error for a directory with no finished checkpoint (at `step`)."""
    where = f"step {step} of {directory}" if step is not None else str(directory)
    return CheckpointError(
        f"No checkpoint to restore at {where}: {directory} {contents(directory)}."
    )
