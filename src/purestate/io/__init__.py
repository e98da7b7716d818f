"""Saving and restoring state trees, on orbax-checkpoint.

`save` writes a state tree as an orbax checkpoint: the arrays through orbax
(each process writing the shards it holds), and beside them a record of the
tree (paths, kinds, dtypes, units, PRNG key implementations, value
structures). `restore` reads it back, optionally into the structure and
shardings of a `like` tree; `latest_step` finds the newest finished step of a
directory of step checkpoints.

orbax is imported on the first save or restore, not with purestate.

Examples:
    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> import purestate as ps
    >>> states = {"w": ps.ParamState(jnp.arange(3.0)), "count": ps.LongTermState(7)}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ps.io.save(tmp, states, step=1)
    ...     back = ps.io.restore(tmp, step=1)
    >>> back["w"].value, back["count"].value
    (Array([0., 1., 2.], dtype=float32), Array(7, dtype=int32))
"""

from ._errors import CheckpointError
from ._restore import latest_step, restore
from ._save import save

__all__ = ["CheckpointError", "latest_step", "restore", "save"]
