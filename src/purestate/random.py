"""Functional random numbers: keys live in `ps.RandomState`s of the state tree.

Drawing never mutates anything: `split` hands out one fresh key and returns the
tree with that `RandomState` advanced, so the same input tree always gives the
same numbers, and a caller that keeps the returned tree never reuses a key.
"""

from __future__ import annotations

from typing import Any

import jax

from ._errors import StateError, StateTypeError
from ._paths import Path, describe_paths, parse_path, path_str
from ._state import RandomState
from ._tree import StateTree, iter_states, lookup, with_node

__all__ = ["split"]


def _the_only_random_state(states: StateTree) -> tuple[Path, RandomState]:
    found = [(p, s) for p, s in iter_states(states) if isinstance(s, RandomState)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise StateError(
            "ps.random.split: the state tree holds no RandomState (paths: "
            f"{describe_paths(p for p, _ in iter_states(states))}). Add one, e.g. "
            "{'rng': ps.RandomState(jax.random.key(0))}, or pass a key explicitly."
        )
    raise StateError(
        f"ps.random.split: the state tree holds {len(found)} RandomStates, at "
        f"{describe_paths(p for p, _ in found)}; say which one to draw from with "
        "path=..., e.g. ps.random.split(states, path="
        f"{path_str(found[0][0])!r})."
    )


def split(states: StateTree, path: str | Path | None = None) -> tuple[jax.Array, StateTree]:
    """One fresh key, and `states` with the `RandomState` it came from advanced.

    With ``path=None`` the tree must hold exactly one `RandomState`; otherwise
    a `ps.StateError` names the `RandomState` paths found; `path` (``'a/rng'``
    or a tuple) picks one. Typed keys (`jax.random.key`) give typed keys, raw
    ``uint32[2]`` keys give raw keys. Precisely: ``advanced, fresh =
    jax.random.split(old)``; the key returned is ``fresh`` and the state then
    holds ``advanced``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> states = {"rng": ps.RandomState(jax.random.key(0))}
        >>> key, states2 = ps.random.split(states)
        >>> noise = jax.random.normal(key, (3,))
        >>> key2, _ = ps.random.split(states2)
        >>> bool((key != key2))
        True
    """
    if path is None:
        where, state = _the_only_random_state(states)
    else:
        where, found = lookup(states, path)
        if not isinstance(found, RandomState):
            raise StateTypeError(
                f"ps.random.split: the state at {path_str(parse_path(path))!r} is a "
                f"{type(found).__name__}, not a RandomState."
            )
        state = found
    next_key, fresh = _split_key(state.value, where)
    return fresh, with_node(states, where, state.replace(next_key))


def _split_key(key: Any, where: Path) -> tuple[jax.Array, jax.Array]:
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jax.numpy.uint32 and shape == (2,)
    if not ((typed and shape == ()) or raw):
        raise StateError(
            f"ps.random.split: the RandomState at {path_str(where)!r} holds "
            f"{type(key).__name__} of dtype {dtype} and shape {shape}; expected one key: a typed key "
            "(jax.random.key(seed), shape ()) or a raw uint32[2] key "
            "(jax.random.PRNGKey(seed)). Batched keys are split per lane by "
            "ps.augment.vmap."
        )
    next_key, fresh = jax.random.split(key)
    return next_key, fresh
