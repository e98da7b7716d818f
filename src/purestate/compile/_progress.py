"""Progress bars for compiled loops: a `tqdm` bar that a host callback
advances while the loop runs.

The loop calls back to Python after each block of steps with the number of
steps done (`jax.debug.callback` with ``ordered=True``, so the calls arrive in
order, inside `jit` too). The bar only moves forward: under `vmap` every lane
reports the same count and the bar advances once, and a count that a
backward pass recomputes moves nothing.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import jax

__all__ = ["Progress", "Ticker", "ticker"]

_DEFAULT_UPDATES = 100


@dataclasses.dataclass(frozen=True)
class Progress:
    """A `progress=` value for `ps.compile.scan`, `for_loop` and the
    checkpointed loops: a `tqdm` bar updated every `every` steps (about 100
    updates in all when None), labelled `desc`.

    ``progress=True`` is ``Progress()``; ``progress=n`` is ``Progress(every=n)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def step(states, x):
        ...     return x, states
        >>> ys, _ = ps.compile.scan(
        ...     step, {}, jnp.arange(10.0), progress=ps.compile.Progress(every=5, desc="sim")
        ... )
        >>> ys.shape
        (10,)
    """

    every: int | None = None
    desc: str | None = None

    def __post_init__(self) -> None:
        if self.every is not None and (
            isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1
        ):
            raise ValueError(f"Progress(every=...) must be a positive int; got {self.every!r}.")


class Ticker:
    """One loop's bar: created at the first report of a run, advanced by later
    ones, closed at the last."""

    def __init__(self, total: int, every: int, desc: str | None):
        self.total = total
        self.every = every
        self.first = every  # the first count a run reports (its first block)
        self.desc = desc
        self._bar: Any = None
        self._lock = threading.Lock()

    def report(self, done: Any) -> None:
        """Host side: `done` steps have run."""
        from tqdm.auto import tqdm

        done = int(done)
        with self._lock:
            bar = self._bar
            if bar is None or bar.n >= self.total:
                if done > min(self.first, self.total):
                    return  # a late lane or a recomputation, not a new run
                bar = self._bar = tqdm(total=self.total, desc=self.desc, unit="step")
            if done > bar.n:
                bar.update(done - bar.n)
            if bar.n >= self.total:
                bar.close()

    def tick(self, done: Any) -> None:
        """Inside the loop: report `done` to the host."""
        jax.debug.callback(self.report, done, ordered=True)


def ticker(progress: Any, total: int) -> Ticker | None:
    """The bar that `progress` asks for over `total` steps (None for none)."""
    if progress is None or progress is False or total == 0:
        return None
    if progress is True:
        progress = Progress()
    elif isinstance(progress, int) and not isinstance(progress, bool):
        progress = Progress(every=progress)
    elif not isinstance(progress, Progress):
        raise TypeError(
            "progress= takes None, True (about 100 updates), an int (update every that "
            f"many steps) or ps.compile.Progress(every=..., desc=...); got {progress!r}."
        )
    every = progress.every or max(1, total // _DEFAULT_UPDATES)
    return Ticker(total, min(every, total), progress.desc)
