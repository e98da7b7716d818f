"""State trees: nested ``dict``s with ``str`` keys and `State` leaves.

This module owns the one validator of state trees (`check_tree`, and
`iter_states` which validates as it walks) and the one path walker
(`node_at`, `with_node`, `nest`) that the rest of purestate uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._errors import StateError, StateKeyError, StateTypeError
from ._paths import Path, check_key, describe_paths, did_you_mean, parse_path, path_str
from ._state import State

__all__ = [
    "StateTree",
    "check_tree",
    "conform",
    "flatten",
    "get",
    "iter_states",
    "lookup",
    "nest",
    "node_at",
    "not_a_state",
    "set",
    "unflatten",
    "with_node",
]

StateTree = dict[str, Any]


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


def _not_a_tree(tree: Any, where: str) -> StateTypeError:
    if isinstance(tree, State):
        return StateTypeError(
            f"{where}Expected a state tree (a dict of states), got a single "
            f"{type(tree).__name__}. Wrap it: {{'name': state}}."
        )
    return StateTypeError(
        f"{where}A state tree is a dict with str keys and State leaves; got "
        f"{type(tree).__name__}. A stateful function is called as f(states, *args): the "
        "state tree comes first."
    )


def iter_states(tree: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, State]]:
    """Yield ``(path, state)`` in sorted path order, validating keys and leaves.

    Empty dicts hold no state and yield nothing.
    """
    if not isinstance(tree, dict):
        raise not_a_state(tree, prefix) if prefix else _not_a_tree(tree, "")
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


def _check_node(node: dict, prefix: Path) -> None:
    for key, child in node.items():
        check_key(key, prefix)
        if isinstance(child, dict):
            _check_node(child, (*prefix, key))
        elif not isinstance(child, State):
            raise not_a_state(child, (*prefix, key))


def check_tree(tree: Any, where: str = "") -> None:
    """Raise the `TypeError` that explains what is wrong unless `tree` is a
    state tree; `where` (e.g. ``'ps.compile.jit(f): '``) starts the message of
    a tree that is not a dict at all."""
    if not isinstance(tree, dict):
        raise _not_a_tree(tree, where)
    _check_node(tree, ())


def flatten(tree: StateTree) -> dict[Path, State]:
    """The states of `tree` by path, in sorted path order.

    Examples:
        >>> import purestate as ps
        >>> tree = {"lif": {"V": ps.ShortTermState(0.0)}, "w": ps.ParamState(1.0)}
        >>> list(ps.flatten(tree))
        [('lif', 'V'), ('w',)]
    """
    return dict(iter_states(tree))


def nest(flat: Mapping[Path, Any]) -> dict:
    """``{path: node}`` -> the nested dict holding each node at its path (no
    validation: for trees of states, gradients or raw values alike)."""
    tree: dict = {}
    for path, node in flat.items():
        tree = with_node(tree, path, node, copy=False)
    return tree


def unflatten(flat: Mapping[Path, State] | Mapping[str, State]) -> StateTree:
    """Build a nested state tree from ``{path: state}``; inverse of `flatten`.

    Examples:
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
        for i, key in enumerate(path):
            check_key(key, path[:i])
        if not isinstance(state, State):
            raise not_a_state(state, path)
        for i in range(1, len(path) + 1):
            above = node_at(tree, path[:i], None)
            if isinstance(above, State) or (i == len(path) and above is not None):
                raise StateError(
                    f"The path {path_str(path)!r} is given twice, or runs through the state "
                    f"at {path_str(path[:i])!r}; a path cannot be both a state and a subtree."
                )
        tree = with_node(tree, path, state, copy=False)
    return tree


_MISSING: Any = object()


def node_at(tree: Any, path: Path, default: Any = _MISSING) -> Any:
    """The state or subtree at `path`; `default` (or KeyError) if there is none."""
    node = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            if default is _MISSING:
                raise KeyError(path)
            return default
        node = node[key]
    return node


def with_node(tree: dict, path: Path, node: Any, *, copy: bool = True) -> dict:
    """`tree` with `node` at `path`, making the dicts on the way. With
    ``copy=True`` (the default) `tree` is left as it was: the dicts along the
    path are new and everything else is shared."""
    top = dict(tree) if copy else tree
    parent = top
    for key in path[:-1]:
        child = parent.get(key)
        child = {} if not isinstance(child, dict) else dict(child) if copy else child
        parent[key] = child
        parent = child
    parent[path[-1]] = node
    return top


def lookup(tree: StateTree, path: str | Path) -> tuple[Path, State]:
    """``(parsed path, state)`` at `path`; a `KeyError` naming it and the
    closest existing paths if there is no state there. Validates the tree."""
    check_tree(tree)
    parsed = parse_path(path)
    node = node_at(tree, parsed, None) if parsed else None
    if isinstance(node, State):
        return parsed, node
    existing = [p for p, _ in iter_states(tree)]
    if isinstance(node, dict):
        inside = [p for p in existing if p[: len(parsed)] == parsed]
        raise StateKeyError(
            f"{path_str(parsed)!r} is a subtree of {len(inside)} states, not a single "
            f"state: {describe_paths(inside, 5)}. Use ps.select(tree, "
            f"{path_str(parsed)!r}) for the subtree."
        )
    raise StateKeyError(
        f"No state at {path_str(parsed)!r}.{did_you_mean(parsed, existing)} Available "
        f"paths: {describe_paths(existing)}."
    )


def get(tree: StateTree, path: str | Path) -> Any:
    """The value of the state at `path` (``'lif/V'`` or ``('lif', 'V')``).

    Raises a `KeyError` naming the path and the closest existing paths.

    Examples:
        >>> import purestate as ps
        >>> tree = {"lif": {"V": ps.ShortTermState(0.0)}}
        >>> float(ps.get(tree, "lif/V"))
        0.0
    """
    return lookup(tree, path)[1].value


def set(tree: StateTree, path: str | Path, value: Any) -> StateTree:
    """A new tree whose state at `path` holds `value`, with the same kind.

    The input tree is not modified; unchanged subtrees are shared.

    Examples:
        >>> import purestate as ps
        >>> tree = {"lif": {"V": ps.ShortTermState(0.0)}}
        >>> new = ps.set(tree, "lif/V", 1.0)
        >>> float(ps.get(new, "lif/V")), float(ps.get(tree, "lif/V"))
        (1.0, 0.0)
    """
    parsed, state = lookup(tree, path)
    return with_node(tree, parsed, state.replace(value))


class _Mismatch(Exception):
    """`conform` met a tree whose paths or kinds differ from its template."""


def _conform(new: Any, like: dict) -> dict:
    if not isinstance(new, dict):
        raise _Mismatch
    out: dict[str, Any] = {}
    for key, old in like.items():
        if isinstance(old, dict):
            # An empty subtree holds no state: it comes back as it went in,
            # whether the function kept it or left it out, but it may not
            # gain states.
            out[key] = _conform(new.get(key, {}), old)
        else:
            state = new.get(key)
            if type(state) is not type(old):
                raise _Mismatch
            out[key] = state
    if len(new) != len(out) and any(
        key not in out and not _holds_no_state(node) for key, node in new.items()
    ):
        raise _Mismatch
    return out


def _holds_no_state(node: Any) -> bool:
    return isinstance(node, dict) and all(_holds_no_state(child) for child in node.values())


def conform(new: Any, like: StateTree) -> StateTree | None:
    """`new` arranged as `like`: the same keys in `like`'s order, with
    `like`'s empty subtrees; None if the paths or kinds differ."""
    try:
        return _conform(new, like)
    except _Mismatch:
        return None
