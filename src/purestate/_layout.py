"""A state tree taken apart into its array values and a static layout, and put
back together: how every transform hands a state tree to JAX.

The *values* are one entry per state, in the tree's key order: the state's
array, or a tuple of the arrays of a pytree value (an `equinox.Module`, a
dict, a `brainunit.Quantity`). The *layout* is everything else: keys and their
order, nesting (empty subtrees included), state kinds, and for pytree values
their structure (units included) and their non-array leaves (functions,
strings), which are static, as in `equinox.filter_jit`.

Layouts are interned: equal layouts are usually the same object, whose hash
is computed once and whose comparison with itself is decided by identity, so
a layout costs nothing as a static argument of `jax.jit`, `jax.pmap` or
`jax.checkpoint`. Handed the flat values, JAX flattens a list in C++ instead of
calling back into Python for every `State` node.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _pytree as pytree
from ._describe import describe_value
from ._errors import StateError
from ._paths import Path, check_key, describe_paths, path_str
from ._state import PYTHON_NUMBERS as _PYTHON_NUMBERS
from ._state import State, new_state, normalise_value, set_value_unchecked
from ._tree import StateTree, check_tree

__all__ = [
    "Layout",
    "Returned",
    "check_avals_kept",
    "check_statics_kept",
    "same_value",
    "take_apart",
    "values_in_layout",
]

# The concrete array type, for an exact-type check on the per-call path
# (`isinstance(x, jax.Array)` costs several times more). Creating an array to
# learn it would start the backend at import, before jax.distributed could.
_ArrayImpl: type = jax._src.array.ArrayImpl
_new = object.__new__
Values = list[Any]


class _Spec:
    """The static part of a state whose value is not a single array: its kind,
    the value's pytree structure, and its non-array leaves by position."""

    __slots__ = ("_hash", "kind", "statics", "template", "treedef")

    def __init__(self, kind: type, treedef: Any, template: tuple):
        self.kind = kind
        self.treedef = treedef
        self.template = template  # the leaves, with None where an array goes
        # Types are part of the key, so that 1, 1.0 and True are told apart.
        self.statics = tuple((i, type(x), x) for i, x in enumerate(template) if x is not None)
        self._hash = hash((kind, treedef, self.statics))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Spec)
            and self.kind is other.kind
            and self.treedef == other.treedef
            and self.statics == other.statics
        )

    def build(self, arrays: tuple) -> Any:
        it = iter(arrays)
        return self.treedef.unflatten([next(it) if x is None else x for x in self.template])


def _is_array(value: Any) -> bool:
    # A ShapeDtypeStruct stands for an array (`jax.eval_shape` output handed
    # to `.lower`), so it is a value, not a static leaf.
    return (
        type(value) is _ArrayImpl or eqx.is_array(value) or isinstance(value, jax.ShapeDtypeStruct)
    )


def _as_jax(value: Any) -> Any:
    # A NumPy array becomes a device array here, as `jax.jit` would make it,
    # so that a state handed back unchanged is never the caller's mutable
    # buffer.
    return jnp.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else value


def _value_entry(kind: type, value: Any) -> tuple[Any, type | _Spec]:
    """The value entry and the signature entry of one state."""
    if _is_array(value):
        return _as_jax(value), kind
    leaves, treedef = pytree.flatten(value)
    if any(isinstance(leaf, _PYTHON_NUMBERS) for leaf in leaves):
        # Python numbers put in without the constructor (e.g. by
        # jax.tree.map): arrays, as the constructor would have made them.
        normalised = normalise_value(value)
        if normalised is not value:
            return _value_entry(kind, normalised)
    arrays = tuple(_as_jax(leaf) for leaf in leaves if _is_array(leaf))
    template = tuple(None if _is_array(leaf) else leaf for leaf in leaves)
    return arrays, _Spec(kind, treedef, template)


def _take_apart(tree: dict, values: list, signature: list) -> None:
    signature.append(tuple(tree))
    for child in tree.values():
        if type(child) is dict:
            _take_apart(child, values, signature)
            continue
        try:
            value = child.value
        except AttributeError:
            if isinstance(child, dict):  # an OrderedDict or other dict subclass
                _take_apart(child, values, signature)
                continue
            raise  # not a state (the caller explains)
        if type(value) is _ArrayImpl:
            values.append(value)
            signature.append(type(child))
        else:
            entry, spec = _value_entry(type(child), value)
            values.append(entry)
            signature.append(spec)


# plan entries: (key, kind, spec, sub_plan); sub_plan is None for a state.
_Plan = tuple[tuple[str, Any, Any, Any], ...]
_Entry = tuple[str, Any, Any, Any]


def _plan(signature: tuple, start: int, prefix: Path) -> tuple[_Plan, int]:
    """The plan of the dict whose signature starts at `start`, and where it ends."""
    keys = signature[start]
    position = start + 1
    entries: list[_Entry] = []
    for key in keys:
        check_key(key, prefix)
        item = signature[position]
        if type(item) is tuple:
            sub, position = _plan(signature, position, (*prefix, key))
            entries.append((key, None, None, sub))
            continue
        kind = item.kind if isinstance(item, _Spec) else item
        if not (isinstance(kind, type) and issubclass(kind, State)):
            raise TypeError("not a state")
        entries.append((key, kind, item if isinstance(item, _Spec) else None, None))
        position += 1
    return tuple(entries), position


def _build(plan: _Plan, values: Iterator[Any], raw: bool = False) -> dict:
    tree = {}
    for key, kind, spec, sub in plan:
        if sub is not None:
            tree[key] = _build(sub, values, raw)
            continue
        state = _new(kind)
        value = next(values)
        set_value_unchecked(state, value if spec is None or raw else spec.build(value))
        tree[key] = state
    return tree


def _walk(plan: _Plan, prefix: Path) -> Iterator[tuple[Path, type, _Spec | None]]:
    for key, kind, spec, sub in plan:
        if sub is not None:
            yield from _walk(sub, (*prefix, key))
        else:
            yield (*prefix, key), kind, spec


_MAX_LAYOUTS = 4096
_known: dict[tuple, Layout] = {}


class Layout:
    """The keys, nesting, state kinds and static value parts of a state tree.

    One object per distinct layout (`take_apart` interns them), hashed once.
    `memo` caches what transforms derive from a layout
    (which states a selector picks, per-state batch axes, ...).
    """

    __slots__ = ("__weakref__", "_hash", "_plan", "_states", "memo")

    def __init__(self, plan: _Plan):
        self._plan = plan
        self._hash = hash(plan)
        self._states: tuple[tuple[Path, type, _Spec | None], ...] | None = None
        self.memo: dict[Hashable, Any] = {}

    # Equal layouts are interchangeable, even two objects for one layout (the
    # intern table may have been cleared in between); the usual case, the
    # same object, is decided by identity before __eq__ runs.
    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, Layout) and self._hash == other._hash and self._plan == other._plan
        )

    @property
    def states(self) -> tuple[tuple[Path, type, _Spec | None], ...]:
        """``(path, kind, spec)`` for each value position, in order."""
        if self._states is None:
            self._states = tuple(_walk(self._plan, ()))
        return self._states

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(path for path, _, _ in self.states)

    def __len__(self) -> int:
        return len(self.states)

    def build(self, values: Values) -> StateTree:
        """The state tree with this layout holding `values` (as they are: they
        may be tracers)."""
        return _build(self._plan, iter(values))

    def skeleton(self) -> StateTree:
        """A tree of this layout whose states hold None (for `conform`)."""
        return _build(self._plan, iter([None] * len(self.states)), raw=True)

    def value_at(self, position: int, value: Any) -> Any:
        """The state's value from its entry in the values."""
        spec = self.states[position][2]
        return value if spec is None else spec.build(value)

    def state_at(self, position: int, value: Any) -> State:
        """The state at `position` holding the value from its entry."""
        return new_state(self.states[position][1], self.value_at(position, value))

    def changes_to(self, other: Layout) -> list[str]:
        """The states whose value structure, unit or non-array leaves differ
        between this layout and `other` (same paths and kinds)."""
        return [
            f"{path_str(path)!r}: {_describe_spec(a)} -> {_describe_spec(b)}"
            for (path, _, a), (_, _, b) in zip(self.states, other.states, strict=True)
            if a != b
        ]

    def statics_changed(self, other: Layout) -> list[Path]:
        """The states whose non-array leaves differ in `other`."""
        return [
            path
            for (path, _, a), (_, _, b) in zip(self.states, other.states, strict=True)
            if (a.statics if a else ()) != (b.statics if b else ())
        ]


def _describe_spec(spec: _Spec | None) -> str:
    if spec is None:
        return "an array"
    statics = ", ".join(f"{type(x).__name__} {x!r}"[:60] for _, _, x in spec.statics)
    return f"{spec.treedef}" + (f" with non-array leaves {statics}" if statics else "")


def _intern(signature: tuple) -> Layout:
    plan, _ = _plan(signature, 0, ())
    if len(_known) >= _MAX_LAYOUTS:
        _known.clear()
    layout = _known[signature] = Layout(plan)
    return layout


def take_apart(tree: StateTree, where: str = "") -> tuple[Values, Layout]:
    """The values of `tree`'s states and its (interned) layout.

    Anything that is not a state tree raises the `TypeError` that says what is
    wrong with it; `where` starts the message of a tree that is not a dict.
    """
    values: list = []
    signature: list = []
    try:
        _take_apart(tree, values, signature)
        key = tuple(signature)
        layout = _known.get(key)
        return values, layout if layout is not None else _intern(key)
    except (AttributeError, TypeError) as error:
        check_tree(tree, where)  # raises what is wrong with the tree
        _check_hashable(tree, error)
        raise


def _check_hashable(tree: StateTree, error: Exception) -> None:
    """Explain an unhashable non-array leaf (a static part of a state)."""
    for path, kind, value in _iter_values(tree, ()):
        if _is_array(value):
            continue
        try:
            hash(_value_entry(kind, value)[1])
        except TypeError as inner:
            raise StateError(
                f"The state at {path_str(path)!r} holds a non-array leaf that cannot be "
                f"hashed ({inner}). Transforms treat non-array leaves as static and key "
                "their caches on them: make it hashable, or hold it as an array."
            ) from error


def _iter_values(tree: dict, prefix: Path) -> Iterator[tuple[Path, type, Any]]:
    for key, child in tree.items():
        if isinstance(child, dict):
            yield from _iter_values(child, (*prefix, key))
        else:
            yield (*prefix, key), type(child), child.value


def check_statics_kept(layout: Layout, new_layout: Layout, where: str) -> None:
    """Raise `ps.StateError` naming the states whose non-array leaves (static
    parts of pytree values) differ in `new_layout`."""
    if new_layout == layout:
        return
    changed = layout.statics_changed(new_layout)
    if changed:
        raise StateError(
            f"{where}: the function changes non-array leaves (functions, strings, ... inside "
            f"pytree values) of the states {describe_paths(changed)}. Transforms treat them as "
            "static: keep them as they were, and change only array values."
        )


def values_in_layout(layout: Layout, tree: StateTree, where: Callable[[], str]) -> Values:
    """The values of `tree`, which must have exactly `layout` (a loop body's or
    a branch's new states): otherwise a `ps.StateError` names the states whose
    structure, unit or non-array leaves changed."""
    values, new_layout = take_apart(tree)
    if new_layout != layout:
        raise StateError(
            f"{where()} changes the structure of states it carries (pytree structure, "
            f"unit or non-array leaves): {'; '.join(layout.changes_to(new_layout))}. A "
            "carried state keeps its structure: convert inside the function, or keep the "
            "value outside the carry."
        )
    return values


def check_avals_kept(layout: Layout, before: Values, after: Values, where: str) -> None:
    """Raise `ps.StateError` naming every state whose shapes or dtypes differ
    between `before` and `after` (values of the same layout)."""
    changed = [
        f"{path_str(path)!r}: {describe_value(layout.value_at(i, a))} -> "
        f"{describe_value(layout.value_at(i, b))}"
        for i, ((path, _, _), a, b) in enumerate(zip(layout.states, before, after, strict=True))
        if _avals(a) != _avals(b)
    ]
    if changed:
        raise StateError(
            f"{where} changes the shape or dtype of states it carries: {'; '.join(changed)}. "
            "A carried state keeps its shape and dtype: cast or reshape inside the body, "
            "or keep the value outside the carry."
        )


def _avals(value: Any) -> Any:
    if type(value) is tuple:
        return tuple(_avals(v) for v in value)
    return (np.shape(value), jax.typeof(value).dtype)


class Returned:
    """What a traced call tells its caller about the states it returned: the
    layout, when it differs from the input's (a unit or pytree structure
    changed), and which values it changed, when it returned some inputs as
    they were (those are left out of the outputs: `jax.jit` would copy them).

    A pytree node without leaves, so it travels in the output's static
    structure: each trace carries its own, at no per-call cost.
    """

    __slots__ = ("changed", "layout")

    def __init__(self, layout: Layout | None, changed: tuple[int, ...] | None):
        self.layout = layout
        self.changed = changed

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Returned)
            and self.layout == other.layout
            and self.changed == other.changed
        )

    def __hash__(self) -> int:
        return hash((self.layout, self.changed))

    @staticmethod
    def describe(
        layout: Layout, inputs: Values, new_layout: Layout, outputs: Values, pass_through: bool
    ) -> tuple[Values, Returned | None]:
        """At trace time: the outputs to return, and the marker (None when the
        layout is kept and every value is new)."""
        changed = None
        if pass_through and new_layout == layout:
            kept = [same_value(a, b) for a, b in zip(inputs, outputs, strict=True)]
            if any(kept):
                changed = tuple(i for i, k in enumerate(kept) if not k)
                outputs = [outputs[i] for i in changed]
        if changed is None and new_layout == layout:
            return outputs, None
        return outputs, Returned(None if new_layout == layout else new_layout, changed)

    def fill_in(self, inputs: Values, outputs: Values) -> Values:
        """At call time: every new value, the passed-through ones from `inputs`."""
        if self.changed is None:
            return outputs
        values = list(inputs)
        for position, value in zip(self.changed, outputs, strict=True):
            values[position] = value
        return values


def same_value(a: Any, b: Any) -> bool:
    """Whether two value entries are the very same arrays (not copies)."""
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
    return a is b


# The marker's content is its structure: the node itself (stored in the
# output's treedef) comes back on every call, so there is nothing to rebuild.
jax.tree_util.register_pytree_node(Returned, lambda m: ((), m), lambda m, _: m)
