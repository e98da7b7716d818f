"""`ps.io.save`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._tree import StateTree
from . import _directory, _orbax
from ._errors import CheckpointError
from ._record import METADATA_KEY, parse, take_apart

__all__ = ["is_purestate_checkpoint", "save"]


def save(
    directory: str | os.PathLike[str],
    states: StateTree,
    *,
    step: int | None = None,
    overwrite: bool = False,
    keep: int | None = None,
) -> None:
    """Save a state tree as an orbax checkpoint.

    Without `step`, `directory` itself becomes the checkpoint; with it, the
    checkpoint is ``directory/<step>``, so that one directory holds a run's
    checkpoints (`latest_step` finds the newest). What is stored: every
    state's path and kind (its class, by module and qualified name), its
    arrays with their shapes and dtypes (a brainunit Quantity's mantissa with
    its unit, a typed PRNG key's key data with its implementation's name),
    and the structure of dict, list and tuple values. The structure of other
    pytree values (an `equinox.Module`) and their non-array leaves are not
    stored: `restore` takes them from its `like` argument.

    The save is atomic: orbax writes into a temporary directory and renames
    it into place when everything is written, so a save that is interrupted
    leaves no checkpoint under the final name and the checkpoints already
    there untouched. With several processes (``jax.distributed``), every
    process calls `save` with the same arguments and writes the shards of
    the arrays it holds.

    Args:
        directory: where to save (a local path).
        states: the state tree.
        step: a training step (an int >= 0): save into ``directory/<step>``.
        overwrite: replace a checkpoint already there. The new one is written
            beside the old one and swapped in when complete, so an
            interrupted overwrite leaves the old checkpoint in place. Without
            it, an existing checkpoint is a `CheckpointError`. A directory
            that is not a purestate checkpoint is never replaced.
        keep: with `step`: after saving, delete the lowest steps of
            `directory` so that `keep` finished steps remain, the step just
            saved among them.

    Raises:
        TypeError: `states` is not a state tree, or a state holds a traced
            or abstract value (the message names its path).
        CheckpointError: the target holds a checkpoint and `overwrite` is
            False, or exists and is not a purestate checkpoint.

    Examples:
        >>> import tempfile
        >>> import brainunit as u
        >>> import jax, jax.numpy as jnp
        >>> import purestate as ps
        >>> states = {
        ...     "w": ps.ParamState(jnp.arange(3.0)),
        ...     "V": ps.ShortTermState(jnp.zeros(2) * u.mV),
        ...     "rng": ps.RandomState(jax.random.key(0)),
        ... }
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ps.io.save(tmp, states, step=10)
        ...     ps.io.save(tmp, states, step=20)
        ...     print(ps.io.latest_step(tmp), ps.io.restore(tmp)["V"].value)
        20 [0. 0.] mV
    """
    if keep is not None:
        if step is None:
            raise ValueError("keep= applies to step checkpoints: pass step= as well.")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep is an int >= 1 (how many steps remain); got {keep!r}.")
    root = _directory.as_path(directory)
    target = root if step is None else _directory.step_path(root, step)
    record, arrays = take_apart(states)
    if step is not None and is_purestate_checkpoint(root):
        raise CheckpointError(
            f"{root} is itself a checkpoint (saved without step=): steps cannot go inside it. "
            "Save the steps into another directory."
        )
    existing = _existing(target, overwrite)
    _orbax.sync("purestate.io.save:checked")
    _write(target, arrays, {METADATA_KEY: record}, replace=existing == "checkpoint")
    if keep is not None and step is not None:
        if _orbax.is_primary():
            others = [s for s in _directory.finished_steps(root) if s != step]
            for old in others[: max(0, len(others) - (keep - 1))]:
                _directory.remove(_directory.step_path(root, old))
        _orbax.sync("purestate.io.save:pruned")


def is_purestate_checkpoint(path: Path) -> bool:
    """Whether `path` is a finished checkpoint written by `save`."""
    if not (path / _directory.STEP_METADATA_FILE).is_file():
        return False
    try:
        parse(_orbax.read_custom_metadata(path).get(METADATA_KEY))
    except Exception:  # unreadable or foreign: not one
        return False
    return True


def _existing(target: Path, overwrite: bool) -> str:
    """What is at `target`: ``'nothing'``, ``'empty'`` (an empty directory,
    which the save replaces) or ``'checkpoint'`` (one it may replace)."""
    if not target.exists():
        return "nothing"
    if target.is_dir() and not any(target.iterdir()):
        return "empty"
    if is_purestate_checkpoint(target):
        if not overwrite:
            raise CheckpointError(
                f"{target} already holds a checkpoint; pass overwrite=True to replace it."
            )
        return "checkpoint"
    raise CheckpointError(
        f"{target} exists and is not a checkpoint written by ps.io.save: it "
        f"{_directory.contents(target)}. It is not replaced, even with overwrite=True; save "
        "somewhere else or remove it."
    )


def _write(target: Path, arrays: dict[str, Any], metadata: dict[str, Any], replace: bool) -> None:
    args = _orbax.ocp().args.StandardSave(arrays)
    checkpointer = _orbax.checkpointer()
    if _orbax.is_primary():
        _directory.remove_leftovers(target)
        if not replace and target.is_dir():
            target.rmdir()  # empty: orbax refuses to write into an existing directory
        target.parent.mkdir(parents=True, exist_ok=True)
    _orbax.sync("purestate.io.save:prepared")
    if not replace:
        checkpointer.save(target, args=args, custom_metadata=metadata)
        return
    # Write the new checkpoint completely before the old one goes.
    staging, retired = _directory.staging_path(target), _directory.retired_path(target)
    checkpointer.save(staging, args=args, custom_metadata=metadata)
    if _orbax.is_primary():
        target.rename(retired)
        staging.rename(target)
        _directory.remove(retired)
    _orbax.sync("purestate.io.save:replaced")
