"""A state tree taken apart into a flat list of values and a layout, and put
back together: the per-call fast path of `ps.compile.jit`.

Handed a state tree, `jax.jit` calls back into Python twice per `State` node
on every call (flatten the argument, rebuild the result). Handed the flat list
of the states' values instead, it flattens a list in C++, and the layout (keys,
nesting, state kinds) travels as one static argument that is hashed by
identity. Taking the tree apart and putting it back in plain Python loops costs
less than those callbacks. `PassedThrough` lets states returned unchanged
skip the compiled function's outputs, which `jax.jit` would copy.
"""

from __future__ import annotations

from typing import Any

import jax

from .._state import State, set_value_unchecked
from .._tree import StateTree

__all__ = ["Layout", "PassedThrough", "take_apart"]

_new = object.__new__


def _take_apart(tree: dict, values: list, signature: list) -> None:
    signature.append(tuple(tree))
    for child in tree.values():
        if type(child) is dict:
            _take_apart(child, values, signature)
        else:
            values.append(child.value)  # AttributeError: not a state (checked by the caller)
            signature.append(type(child))


def take_apart(tree: StateTree) -> tuple[list, tuple]:
    """The values of `tree`'s states and its signature: each dict's keys in
    insertion order, followed by each child's signature (a nested dict's) or
    kind (a state's). Raises AttributeError (or TypeError) when `tree` is not a
    plain state tree; the caller then takes the general path, which explains."""
    values: list = []
    signature: list = []
    _take_apart(tree, values, signature)
    return values, tuple(signature)


def _plan(signature: tuple, start: int) -> tuple[tuple | None, int]:
    """The nested ``((key, kind, sub_plan), ...)`` plan of the dict whose
    signature starts at `start`, and where it ends; None if the signature is
    not a state tree's (non-str keys, non-`State` kinds)."""
    keys = signature[start]
    position = start + 1
    entries = []
    for key in keys:
        if type(key) is not str:
            return None, position
        item = signature[position]
        if type(item) is tuple:
            sub, position = _plan(signature, position)
            if sub is None:
                return None, position
            entries.append((key, None, sub))
        else:
            if not (isinstance(item, type) and issubclass(item, State)):
                return None, position
            entries.append((key, item, None))
            position += 1
    return tuple(entries), position


def _build(plan: tuple, values: Any) -> dict:
    tree = {}
    for key, kind, sub in plan:
        if sub is None:
            state = _new(kind)
            set_value_unchecked(state, next(values))
            tree[key] = state
        else:
            tree[key] = _build(sub, values)
    return tree


def _values_in_plan_order(plan: tuple, tree: dict, values: list) -> None:
    for key, _kind, sub in plan:
        if sub is None:
            values.append(tree[key].value)
        else:
            _values_in_plan_order(sub, tree[key], values)


class Layout:
    """The keys, nesting and state kinds of a state tree, without its values.

    One object per distinct signature (see `Layout.of`), hashed by identity, so
    that `jax.jit` can take it as a static argument at no per-call cost.
    """

    __slots__ = ("_plan",)

    def __init__(self, plan: tuple):
        self._plan = plan

    @staticmethod
    def of(signature: tuple, known: dict[tuple, Layout | None]) -> Layout | None:
        """The interned layout for `signature` (None if it is not a state tree's)."""
        try:
            return known[signature]
        except KeyError:
            plan, _ = _plan(signature, 0)
            layout = known[signature] = None if plan is None else Layout(plan)
            return layout

    def build(self, values: list) -> StateTree:
        """The state tree with this layout holding `values` (as they are: they
        may be tracers)."""
        return _build(self._plan, iter(values))

    def values_of(self, tree: StateTree) -> list:
        """The values of `tree`, which has this layout's paths and kinds (in
        any key order), in this layout's order."""
        values: list = []
        _values_in_plan_order(self._plan, tree, values)
        return values


class PassedThrough:
    """Where a traced call returned one of its input values unchanged.

    `jax.jit` copies every output, even an input returned as it is, so a step
    that updates a few states and hands back large unchanged weights would copy
    the weights on every call. The traced function leaves such values out and
    returns this marker instead: a pytree node without leaves whose positions
    are static structure, so each trace carries its own and the caller learns
    per call which values to take from its inputs.
    """

    __slots__ = ("changed",)

    def __init__(self, changed: tuple[int, ...]):
        self.changed = changed  # positions of the values the call did change

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PassedThrough) and self.changed == other.changed

    def __hash__(self) -> int:
        return hash(self.changed)

    @staticmethod
    def leave_out(inputs: list, outputs: list) -> tuple[list, PassedThrough | None]:
        """At trace time: the outputs that are not inputs passed through, and
        the marker saying where they go (None if every output is new)."""
        changed = tuple(
            i for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)) if a is not b
        )
        if len(changed) == len(outputs):
            return outputs, None
        return [outputs[i] for i in changed], PassedThrough(changed)

    def fill_in(self, inputs: list, changed_values: list) -> list:
        """At call time: every new value, the passed-through ones from `inputs`."""
        values = list(inputs)
        for position, value in zip(self.changed, changed_values, strict=True):
            values[position] = value
        return values


# The marker's positions are its structure: the node itself (stored in the
# output's treedef) comes back on every call, so there is nothing to rebuild.
jax.tree_util.register_pytree_node(PassedThrough, lambda m: ((), m), lambda m, _: m)
