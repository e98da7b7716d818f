"""Progress bars for compiled loops: a `tqdm` bar that host callbacks
advance while the loop runs.

After each block of steps the loop calls back to Python
(`jax.debug.callback` with ``ordered=True``, so the calls arrive in order,
inside `jit` too). A callback that carries an operand costs about five times
one that carries none (JAX turns each operand into an array on the host), so
the loop does not send its count: it picks, with `jax.lax.switch` on the
count, one of three operand-free callbacks, "first block", "another block"
and "last block", and the host keeps the count. Under `vmap` such a callback
runs once, not once per lane. A backward pass that recomputes a checkpointed
loop replays its blocks last to first; the host recognises a "last block"
that arrives with no bar open and ignores the replay up to its "first
block".

Inside a device map (`ps.augment.pmap`, `ps.augment.shard_map`) every device
runs the loop, and JAX allows no ordered callbacks there: the first device
alone sends its count, with an unordered callback; the bar only moves
forward and closes when every block has reported. There a backward pass that
recomputes a checkpointed loop shows as a second bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Hashable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["Progress", "Ticker", "per_device", "ticker"]

_DEFAULT_UPDATES = 100
_FIRST, _MIDDLE, _LAST = 0, 1, 2
_per_device = threading.local()


@contextlib.contextmanager
def per_device(axis_names: tuple[Hashable, ...]) -> Iterator[None]:
    """While tracing the body of a device map over `axis_names`: loops report
    from the first device only."""
    before = getattr(_per_device, "axes", None)
    _per_device.axes = tuple(axis_names)
    try:
        yield
    finally:
        _per_device.axes = before


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
    """One loop's bar: opened at the first block of a run, advanced by the
    blocks after it, closed at the last. The loop sets `block` (the steps
    between two reports; the last block may be shorter) before it ticks."""

    def __init__(self, total: int, every: int, desc: str | None):
        self.total = total
        self.every = every
        self.block = every
        self.desc = desc
        self._bar: Any = None
        self._replaying = False
        self._reports = 0
        self._lock = threading.Lock()

    # -- host side -----------------------------------------------------------------

    def _open(self) -> Any:
        from tqdm.auto import tqdm

        if self._bar is not None:
            self._bar.close()  # a run that stopped early (an exception on the host)
        self._bar = tqdm(total=self.total, desc=self.desc, unit="step")
        return self._bar

    def _advance_to(self, done: int) -> None:
        bar = self._bar
        if done > bar.n:
            bar.update(min(done, self.total) - bar.n)
        if bar.n >= self.total:
            bar.close()
            self._bar = None

    def first(self) -> None:
        with self._lock:
            if self._replaying:
                self._replaying = False  # the replay of a backward pass is over
                return
            self._open()
            self._advance_to(self.block)

    def middle(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._advance_to(self._bar.n + self.block)

    def last(self) -> None:
        with self._lock:
            if self._bar is None:
                self._replaying = True  # a backward pass replays the blocks, last first
                return
            self._advance_to(self.total)

    def report(self, done: Any) -> None:
        """Host side, in a device map: `done` steps have run on the first
        device. These calls are unordered (the last may come first), so the
        bar closes when all of a run's reports are in."""
        done = int(done)
        with self._lock:
            if self._bar is None:
                self._open()
                self._reports = 0
            self._reports += 1
            bar = self._bar
            if done > bar.n:
                bar.update(done - bar.n)
            if self._reports == -(-self.total // self.block):
                bar.close()
                self._bar = None

    # -- inside the loop -----------------------------------------------------------

    def tick(self, done: Any) -> None:
        """Report that `done` (a traced count) steps have run."""
        axes = getattr(_per_device, "axes", None)
        if axes is not None:
            first_device = functools.reduce(
                jnp.logical_and, [jax.lax.axis_index(a) == 0 for a in axes], jnp.bool_(True)
            )
            jax.lax.cond(first_device, lambda: jax.debug.callback(self.report, done), lambda: None)
            return
        if self.block >= self.total:
            jax.debug.callback(self.first, ordered=True)  # one block: first and last
            return
        which = jnp.where(done <= self.block, _FIRST, jnp.where(done >= self.total, _LAST, _MIDDLE))
        jax.lax.switch(
            which,
            [
                lambda: jax.debug.callback(self.first, ordered=True),
                lambda: jax.debug.callback(self.middle, ordered=True),
                lambda: jax.debug.callback(self.last, ordered=True),
            ],
        )


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
