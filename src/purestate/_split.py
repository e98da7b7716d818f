"""Splitting a state tree by selectors, and putting it back together.

`split` is on the path of every transform call, so each decision "which part
does the state at this path, of this kind, go to" is made once per selector
and remembered (for selectors that depend only on paths and kinds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from ._errors import StateError, StateKeyError
from ._layout import Layout, Values
from ._paths import Path, check_key, describe_paths, did_you_mean, path_str
from ._selectors import Selector, SelectorLike, as_selector
from ._state import State
from ._tree import StateTree, check_tree, iter_states, not_a_state

__all__ = ["assign", "compile_selectors", "merge", "require_match", "select", "split", "update"]

_MAX_MEMOS = 512
_memos: OrderedDict[Hashable, dict[tuple[Path, type], int]] = OrderedDict()


def _memo_for(key: Hashable) -> dict[tuple[Path, type], int]:
    memo = _memos.get(key)
    if memo is None:
        memo = _memos[key] = {}
        if len(_memos) > _MAX_MEMOS:
            _memos.popitem(last=False)
    return memo


def compile_selectors(selectors: tuple[SelectorLike, ...]) -> tuple[Selector, ...]:
    return tuple(as_selector(s) for s in selectors)


def _decider(compiled: tuple[Selector, ...]) -> Callable[[Path, State], int]:
    n = len(compiled)

    def first_match(path: Path, state: State) -> int:
        for i, sel in enumerate(compiled):
            if sel.matches(path, state):
                return i
        return n

    keys = tuple(s.cache_key for s in compiled)
    if any(k is None for k in keys):
        return first_match
    memo = _memo_for(keys)

    def remembered(path: Path, state: State) -> int:
        k = (path, type(state))
        i = memo.get(k)
        if i is None:
            i = memo[k] = first_match(path, state)
        return i

    return remembered


def _split_node(
    node: dict, prefix: Path, decide: Callable[[Path, State], int], n_parts: int, seen: set | None
) -> list[dict | None]:
    parts: list[dict | None] = [None] * n_parts
    for key, child in node.items():
        check_key(key, prefix)
        path = (*prefix, key)
        if isinstance(child, State):
            i = decide(path, child)
            part = parts[i]
            if part is None:
                part = parts[i] = {}
            part[key] = child
            if seen is not None:
                seen.add(path)
        elif isinstance(child, dict):
            for i, sub in enumerate(_split_node(child, path, decide, n_parts, seen)):
                if sub:
                    part = parts[i]
                    if part is None:
                        part = parts[i] = {}
                    part[key] = sub
        else:
            raise not_a_state(child, path)
    return parts


def split_compiled(tree: StateTree, compiled: tuple[Selector, ...]) -> tuple[StateTree, ...]:
    """`split` for already compiled selectors (used by the transforms)."""
    check_tree(tree)
    required = frozenset().union(*(s.required_paths for s in compiled))
    seen: set | None = set() if required else None
    parts = _split_node(tree, (), _decider(compiled), len(compiled) + 1, seen)
    if seen is not None and not required <= seen:
        missing = required - seen
        raise StateError(
            f"A state-tree selector names paths that are not in the tree: "
            f"{describe_paths(missing)}. Available paths: "
            f"{describe_paths(p for p, _ in iter_states(tree))}."
        )
    return tuple(p if p is not None else {} for p in parts)


def split(tree: StateTree, *selectors: SelectorLike) -> tuple[StateTree, ...]:
    """Partition `tree` into one part per selector plus the rest.

    Each state goes to the first selector that matches it; states matched by
    none form the last part. Empty subtrees are pruned. The `State` objects are
    shared, not copied: ``ps.merge(*ps.split(t, ...))`` rebuilds `t`.

    Examples:
        >>> import purestate as ps
        >>> tree = {"w": ps.ParamState(1.0), "V": ps.ShortTermState(0.0)}
        >>> params, rest = ps.split(tree, ps.ParamState)
        >>> list(params), list(rest)
        (['w'], ['V'])
    """
    return split_compiled(tree, compile_selectors(selectors))


def select(tree: StateTree, selector: SelectorLike) -> StateTree:
    """The subtree of the states that `selector` matches.

    Examples:
        >>> import purestate as ps
        >>> tree = {"enc": {"w": ps.ParamState(1.0)}, "dec": {"w": ps.ParamState(2.0)}}
        >>> list(ps.select(tree, "enc"))
        ['enc']
    """
    return split_compiled(tree, (as_selector(selector),))[0]


def select_like(tree: StateTree, like: StateTree) -> StateTree:
    """The states of `tree` at the paths of `like`, a part of a tree with the
    same layout as `tree` (after a stateful function checked that it kept its
    paths): a walk over `like`'s keys, with no selector to match."""
    return {
        key: select_like(tree[key], sub) if type(sub) is dict else tree[key]
        for key, sub in like.items()
    }


def _merge_into(out: dict, tree: Any, prefix: Path) -> None:
    for key, child in tree.items():
        check_key(key, prefix)
        path = (*prefix, key)
        if isinstance(child, State):
            if key in out:
                raise StateError(
                    f"ps.merge: the path {path_str(path)!r} is present in more than one "
                    "tree. Merge disjoint trees, or use ps.update(tree, new) to overwrite."
                )
            out[key] = child
        elif isinstance(child, dict):
            existing = out.get(key)
            if isinstance(existing, State):
                raise StateError(
                    f"ps.merge: {path_str(path)!r} is a state in one tree and a subtree in another."
                )
            if not child:
                continue
            sub = dict(existing) if existing is not None else {}
            _merge_into(sub, child, path)
            out[key] = sub
        else:
            raise not_a_state(child, path)


def merge(*trees: StateTree) -> StateTree:
    """The union of disjoint state trees.

    Raises `ps.StateError` (a `ValueError`) naming any path present twice.

    Examples:
        >>> import purestate as ps
        >>> t = ps.merge({"w": ps.ParamState(1.0)}, {"V": ps.ShortTermState(0.0)})
        >>> sorted(t)
        ['V', 'w']
    """
    out: dict = {}
    for tree in trees:
        check_tree(tree)
        _merge_into(out, tree, ())
    return out


def _overlay(base: dict, new: Any, prefix: Path, root: StateTree) -> dict:
    out = dict(base)
    for key, child in new.items():
        check_key(key, prefix)
        path = (*prefix, key)
        if key not in base:
            existing = [p for p, _ in iter_states(root)]
            raise StateKeyError(
                f"ps.update: no state at {path_str(path)!r} in the tree."
                f"{did_you_mean(path, existing)} Use ps.merge to add new states."
            )
        old = base[key]
        if isinstance(child, State):
            if not isinstance(old, State):
                raise StateError(
                    f"ps.update: {path_str(path)!r} is a subtree in the tree but a state "
                    "in the update."
                )
            if type(old) is not type(child):
                raise StateError(
                    f"ps.update: the state at {path_str(path)!r} is a "
                    f"{type(old).__name__} but the update holds a {type(child).__name__}; "
                    "updates keep each state's kind (use old.replace(value))."
                )
            out[key] = child
        elif isinstance(child, dict):
            if not isinstance(old, dict):
                raise StateError(
                    f"ps.update: {path_str(path)!r} is a state in the tree but a subtree "
                    "in the update."
                )
            out[key] = _overlay(old, child, path, root)
        else:
            raise not_a_state(child, path)
    return out


def update(tree: StateTree, *subtrees: StateTree) -> StateTree:
    """A new tree with the states at the paths of `subtrees` replaced.

    Every path in a subtree must exist in `tree` (else a `KeyError` naming it
    and the closest paths) and keep its kind; later subtrees win.

    Examples:
        >>> import purestate as ps
        >>> tree = {"w": ps.ParamState(1.0), "V": ps.ShortTermState(0.0)}
        >>> new = ps.update(tree, {"w": ps.ParamState(5.0)})
        >>> float(ps.get(new, "w")), float(ps.get(new, "V"))
        (5.0, 0.0)
    """
    check_tree(tree)
    out = tree
    for sub in subtrees:
        check_tree(sub)
        out = _overlay(out, sub, (), tree)
    return out


def no_match_error(where: str, option: str, selector: Selector, paths: Any) -> StateError:
    """The error for a selector option that picks no state of a tree."""
    return StateError(
        f"{where}: the selector {selector!r} given as {option} matches no state. Available "
        f"paths: {describe_paths(paths)}. Select by kind (ps.ParamState), by path glob "
        "('layer/*') or by a subtree."
    )


def require_match(
    part: StateTree, tree: StateTree, selector: Selector, where: str, option: str = "selector"
) -> None:
    """Raise `ps.StateError` listing the available paths when `selector` picked
    no state of `tree` (used by transforms, where an empty selection is a bug)."""
    if not part:
        raise no_match_error(where, option, selector, [p for p, _ in iter_states(tree)])


def assign(
    layout: Layout,
    values: Values,
    selectors: tuple[Selector, ...],
    options: tuple[str, ...],
    where: str,
    labels: tuple[Any, ...] | None = None,
) -> tuple[int, ...]:
    """For each state of `layout`, the index of the first selector matching
    it (``len(selectors)`` for none).

    Every selector but ``...`` and ``None`` must match some state, else a
    `ps.StateError` names its option and lists the paths. With `labels` (an
    axis per selector), a state matched by selectors with different labels is
    a `ps.StateError` too. Selectors that depend only on paths and kinds are
    decided once per layout.
    """
    keys = tuple(s.cache_key for s in selectors)
    cacheable = all(k is not None for k in keys)
    memo_key = ("assign", keys, labels)
    if cacheable and memo_key in layout.memo:
        return layout.memo[memo_key]
    if cacheable:  # the answer depends on paths and kinds only
        states = [object.__new__(kind) for _, kind, _ in layout.states]
    else:
        states = [layout.state_at(i, v) for i, v in enumerate(values)]
    n = len(selectors)
    matched = [False] * n
    decisions = []
    for (path, _, _), state in zip(layout.states, states, strict=True):
        hits = [i for i, sel in enumerate(selectors) if sel.matches(path, state)]
        for i in hits:
            matched[i] = True
        if labels is not None and len({labels[i] for i in hits}) > 1:
            raise StateError(
                f"{where}: the state {path_str(path)!r} is given two different axes: "
                + ", ".join(f"{labels[i]} by {options[i]}={selectors[i]!r}" for i in hits)
                + ". Give each state one axis (narrow one of the selectors, e.g. with "
                "ps.All(sel, ps.Not('path')))."
            )
        decisions.append(hits[0] if hits else n)
    paths = set(layout.paths)
    for i, sel in enumerate(selectors):
        missing = sel.required_paths - paths
        if missing:
            raise StateError(
                f"{where}: the state-tree selector given as {options[i]} names paths that are "
                f"not in the tree: {describe_paths(missing)}. Available paths: "
                f"{describe_paths(paths)}."
            )
        if not matched[i] and sel.cache_key not in (("...",), ("None",)):
            raise no_match_error(where, options[i], sel, paths)
    result = tuple(decisions)
    if cacheable:
        layout.memo[memo_key] = result
    return result
