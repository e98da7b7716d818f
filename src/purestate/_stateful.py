"""The stateful-function convention: ``f(states, *args) -> (out, new_states)``.

One rule for every transform: `new_states` has the paths and kinds of
`states`, and comes back arranged as `states` was: the same keys in the same
order, with the input's empty subtrees (which hold no state) as they went in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import StateError
from ._paths import Path, path_differences, path_str
from ._tree import StateTree, conform, iter_states

__all__ = ["call_stateful", "check_new_states", "fun_name"]


def fun_name(fun: Callable) -> str:
    return getattr(fun, "__qualname__", None) or getattr(fun, "__name__", None) or repr(fun)


def _kinds(tree: StateTree) -> dict[Path, type]:
    return {path: type(state) for path, state in iter_states(tree)}


def check_new_states(states: StateTree, new_states: Any, where: str) -> StateTree:
    """`new_states` arranged as `states`; a `ps.StateError` naming every
    missing, extra and re-kinded path unless it has exactly their paths and
    kinds."""
    conformed = conform(new_states, states)
    if conformed is not None:
        return conformed
    if not isinstance(new_states, dict):
        raise StateError(
            f"{where} must return (out, new_states) with new_states a state tree (dict); "
            f"got new_states of type {type(new_states).__name__}."
        )
    old, new = _kinds(states), _kinds(new_states)
    problems = path_differences(old, new, "missing paths", "extra paths")
    rekinded = [
        f"{path_str(p)!r} ({old[p].__name__} -> {new[p].__name__})"
        for p in sorted(old.keys() & new.keys())
        if old[p] is not new[p]
    ]
    if rekinded:
        problems.append(f"re-kinded paths: {', '.join(rekinded)}")
    raise StateError(
        f"{where} returned new_states whose paths or kinds differ from its input "
        f"states ({'; '.join(problems)}). A stateful function returns every state it "
        "was given, with the same kind: return ps.update(states, changed) rather than "
        "only the changed states."
    )


def call_stateful(fun: Callable, states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Call ``fun(states, *args, **kwargs)``, check its ``(out, new_states)``
    and return them, `new_states` arranged as `states`."""
    result = fun(states, *args, **kwargs)
    where = f"The stateful function {fun_name(fun)!r}"
    if not (isinstance(result, tuple) and len(result) == 2):
        raise StateError(
            f"{where} must return a pair (out, new_states); got "
            f"{type(result).__name__}{'' if not isinstance(result, tuple) else f' of length {len(result)}'}."
        )
    out, new_states = result
    return out, check_new_states(states, new_states, where)
