"""orbax-checkpoint, imported on first use (it takes seconds to import), and
the few pieces of it that `ps.io` uses: one synchronous checkpointer for
arrays, the step metadata file that carries purestate's record, and barriers
between processes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax

__all__ = ["checkpointer", "is_primary", "ocp", "read_custom_metadata", "sync"]


@functools.cache
def ocp() -> Any:
    """The `orbax.checkpoint` module."""
    import orbax.checkpoint as orbax_checkpoint  # type: ignore[import-untyped]

    return orbax_checkpoint


@functools.cache
def checkpointer() -> Any:
    """A synchronous orbax checkpointer of pytrees of arrays: every process
    writes the shards it holds, into a temporary directory that the primary
    process renames into place once all have finished."""
    module = ocp()
    return module.Checkpointer(module.StandardCheckpointHandler())


def read_custom_metadata(path: Path) -> Any:
    """The ``custom_metadata`` that a save stored in the checkpoint's step
    metadata; raises whatever orbax raises for a missing or damaged file."""
    return ocp().metadata.get_step_metadata(path).custom_metadata


def is_primary() -> bool:
    """Whether this process does the directory work that only one may do."""
    return bool(jax.process_index() == 0)


def sync(name: str) -> None:
    """Wait until every process has reached this point (a no-op with one)."""
    if jax.process_count() > 1:
        module = ocp()
        module.multihost.sync_global_processes(module.multihost.unique_barrier_key(name))
