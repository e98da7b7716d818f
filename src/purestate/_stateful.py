"""The stateful-function contract: ``f(states, *args) -> (out, new_states)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import StateError
from ._paths import Path, describe_paths, path_str
from ._state import State
from ._tree import StateTree, iter_states

__all__ = ["check_new_states", "call_stateful", "fun_name"]


def fun_name(fun: Callable) -> str:
    return getattr(fun, "__qualname__", None) or getattr(fun, "__name__", None) or repr(fun)


def _kinds(tree: StateTree) -> dict[Path, type]:
    return {path: type(state) for path, state in iter_states(tree)}


def _same_layout(old: dict, new: dict) -> bool:
    """True if both trees have the same str keys, dicts and state kinds
    everywhere. A lockstep walk without building paths: the common case of
    `check_new_states` (on every eager transform call) stays cheap."""
    if old.keys() != new.keys():
        return False
    for key, a in old.items():
        b = new[key]
        kind = type(a)
        if type(key) is not str or type(b) is not kind:
            return False
        if kind is dict:
            if not a or not _same_layout(a, b):
                return False
        elif not isinstance(a, State):
            return False
    return True


def check_new_states(states: StateTree, new_states: Any, where: str) -> None:
    """Raise `ps.StateError` unless `new_states` has exactly the paths and kinds
    of `states`, naming every missing, extra and re-kinded path."""
    if type(states) is dict and type(new_states) is dict and _same_layout(states, new_states):
        return
    if not isinstance(new_states, dict):
        raise StateError(
            f"{where} must return (out, new_states) with new_states a state tree (dict); "
            f"got new_states of type {type(new_states).__name__}."
        )
    old, new = _kinds(states), _kinds(new_states)
    if old == new:
        return
    missing = old.keys() - new.keys()
    extra = new.keys() - old.keys()
    rekinded = [
        f"{path_str(p)!r} ({old[p].__name__} -> {new[p].__name__})"
        for p in sorted(old.keys() & new.keys())
        if old[p] is not new[p]
    ]
    problems = []
    if missing:
        problems.append(f"missing paths: {describe_paths(missing)}")
    if extra:
        problems.append(f"extra paths: {describe_paths(extra)}")
    if rekinded:
        problems.append(f"re-kinded paths: {', '.join(rekinded)}")
    raise StateError(
        f"{where} returned new_states whose paths or kinds differ from its input "
        f"states ({'; '.join(problems)}). A stateful function returns every state it "
        "was given, with the same kind: return ps.update(states, changed) rather than "
        "only the changed states."
    )


def call_stateful(fun: Callable, states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Call ``fun(states, *args, **kwargs)`` and check its ``(out, new_states)``."""
    result = fun(states, *args, **kwargs)
    where = f"The stateful function {fun_name(fun)!r}"
    if not (isinstance(result, tuple) and len(result) == 2):
        raise StateError(
            f"{where} must return a pair (out, new_states); got "
            f"{type(result).__name__}{'' if not isinstance(result, tuple) else f' of length {len(result)}'}."
        )
    out, new_states = result
    check_new_states(states, new_states, where)
    return out, new_states
