"""State trees: nested ``dict``s with ``str`` keys and `State` leaves."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._errors import StateError, StateKeyError, StateTypeError
from ._paths import Path, close_matches, describe_paths, parse_path, path_str
from ._state import State

__all__ = ["flatten", "unflatten", "get", "set", "iter_states", "check_key", "not_a_state"]

StateTree = dict[str, Any]


def check_key(key: Any, prefix: Path) -> None:
    if type(key) is not str:
        raise StateTypeError(
            f"State trees have str keys; found the key {key!r} ({type(key).__name__}) "
            f"under {path_str(prefix)!r}. Use str(key) as the key."
        )


def not_a_state(leaf: Any, path: Path) -> StateTypeError:
    """The error for a non-`State` leaf at `path`."""
    what = type(leaf).__name__
    shape = getattr(leaf, "shape", None)
    if shape is not None:
        what += f" of shape {tuple(shape)}"
    return StateTypeError(
        f"The leaf at {path_str(path)!r} is a {what}, not a State. Wrap it in a state "
        f"kind, e.g. ps.ParamState(value) for a trainable parameter or "
        f"ps.ShortTermState(value) for dynamics."
    )


def iter_states(tree: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, State]]:
    """Yield ``(path, state)`` in sorted path order, validating keys and leaves.

    Empty dicts hold no state and yield nothing.
    """
    if not isinstance(tree, dict):
        if isinstance(tree, State):
            raise StateTypeError(
                f"Expected a state tree (a dict of states) at {path_str(prefix)!r}, got a "
                f"single {type(tree).__name__}. Wrap it: {{'name': state}}."
            )
        raise (
            not_a_state(tree, prefix)
            if prefix
            else StateTypeError(
                f"A state tree is a dict with str keys and State leaves; got {type(tree).__name__}."
            )
        )
    for key in tree:
        check_key(key, prefix)
    for key in sorted(tree):
        child = tree[key]
        path = (*prefix, key)
        if isinstance(child, State):
            yield path, child
        elif isinstance(child, dict):
            yield from iter_states(child, path)
        else:
            raise not_a_state(child, path)


def flatten(tree: StateTree) -> dict[Path, State]:
    """The states of `tree` by path, in sorted path order.

    Example:
        >>> import purestate as ps
        >>> tree = {"lif": {"V": ps.ShortTermState(0.0)}, "w": ps.ParamState(1.0)}
        >>> list(ps.flatten(tree))
        [('lif', 'V'), ('w',)]
    """
    return dict(iter_states(tree))


def unflatten(flat: Mapping[Path | str, State]) -> StateTree:
    """Build a nested state tree from ``{path: state}``; inverse of `flatten`.

    Example:
        >>> import purestate as ps
        >>> tree = ps.unflatten({("lif", "V"): ps.ShortTermState(0.0)})
        >>> list(tree["lif"])
        ['V']
    """
    tree: StateTree = {}
    for raw_path, state in flat.items():
        path = parse_path(raw_path)
        if not path:
            raise StateError("The empty path cannot hold a state; give every state a name.")
        if not isinstance(state, State):
            raise not_a_state(state, path)
        node = tree
        for i, key in enumerate(path[:-1]):
            check_key(key, path[:i])
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise StateError(
                    f"The path {path_str(path)!r} runs through the state at "
                    f"{path_str(path[: i + 1])!r}; a path cannot be both a state and a "
                    "subtree."
                )
            node = child
        check_key(path[-1], path[:-1])
        if path[-1] in node:
            raise StateError(
                f"The path {path_str(path)!r} is given twice, or is both a state and a subtree."
            )
        node[path[-1]] = state
    return tree


def _lookup(tree: StateTree, path: str | Path) -> tuple[Path, State]:
    parsed = parse_path(path)
    node: Any = tree
    for key in parsed:
        if not isinstance(node, dict) or key not in node:
            node = None
            break
        node = node[key]
    if isinstance(node, State):
        return parsed, node
    existing = [p for p, _ in iter_states(tree)]
    if isinstance(node, dict) and parsed:
        inside = [p for p in existing if p[: len(parsed)] == parsed]
        raise StateKeyError(
            f"{path_str(parsed)!r} is a subtree of {len(inside)} states, not a single "
            f"state: {describe_paths(inside, 5)}. Use ps.select(tree, "
            f"{path_str(parsed)!r}) for the subtree."
        )
    close = close_matches(parsed, existing)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise StateKeyError(
        f"No state at {path_str(parsed)!r}.{hint} Available paths: {describe_paths(existing)}."
    )


def get(tree: StateTree, path: str | Path) -> Any:
    """The value of the state at `path` (``'lif/V'`` or ``('lif', 'V')``).

    Raises a `KeyError` naming the path and the closest existing paths.

    Example:
        >>> import purestate as ps
        >>> tree = {"lif": {"V": ps.ShortTermState(0.0)}}
        >>> float(ps.get(tree, "lif/V"))
        0.0
    """
    return _lookup(tree, path)[1].value


def set(tree: StateTree, path: str | Path, value: Any) -> StateTree:
    """A new tree whose state at `path` holds `value`, with the same kind.

    The input tree is not modified; unchanged subtrees are shared.

    Example:
        >>> import purestate as ps
        >>> tree = {"lif": {"V": ps.ShortTermState(0.0)}}
        >>> new = ps.set(tree, "lif/V", 1.0)
        >>> float(ps.get(new, "lif/V")), float(ps.get(tree, "lif/V"))
        (1.0, 0.0)
    """
    parsed, state = _lookup(tree, path)
    return _replace_at(tree, parsed, state.replace(value))


def _replace_at(tree: StateTree, path: Path, state: State) -> StateTree:
    new = dict(tree)
    if len(path) == 1:
        new[path[0]] = state
    else:
        new[path[0]] = _replace_at(tree[path[0]], path[1:], state)
    return new
