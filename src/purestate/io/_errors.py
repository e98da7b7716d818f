"""The error for a checkpoint that cannot be written or read back as asked."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint directory that `ps.io` cannot use as asked: missing,
    unfinished, damaged, written by something else, or already holding the
    step that a save would replace without ``overwrite=True``. The message
    names the directory and says what is wrong with it.

    A `like` tree that does not fit a readable checkpoint is a
    `ps.StateError` instead, naming the paths that differ.

    Examples:
        >>> import tempfile
        >>> import purestate as ps
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     try:
        ...         ps.io.restore(tmp)
        ...     except ps.io.CheckpointError as e:
        ...         print("is empty" in str(e))
        True
    """
