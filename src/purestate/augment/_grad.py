"""Differentiation with respect to selected states: `grad`, `vector_grad`,
`jacrev`, `jacfwd`, `jacobian` and `hessian`.

All of them share one core: split the selected states off the tree, flatten
their values into a list of differentiable leaves (units stripped), and hand
JAX a function of that list and of the chosen ``*args`` whose auxiliary output
carries the value, the user's aux and the new states. Only the JAX transform
and the way its result is put back into state trees differ.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import StateError
from .._paths import path_str
from .._selectors import as_selector
from .._split import merge, require_match, split_compiled
from .._stateful import call_stateful, fun_name
from .._tree import StateTree, iter_states

__all__ = ["grad", "hessian", "jacfwd", "jacobian", "jacrev", "vector_grad"]


def _is_quantity(x: Any) -> bool:
    return isinstance(x, u.Quantity)


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray)


def _is_inexact(x: Any) -> bool:
    return _is_array(x) and jnp.issubdtype(x.dtype, jnp.inexact)


def _is_integer(x: Any) -> bool:
    return _is_array(x) and (
        jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.bool_)
    )


class _Leaves:
    """The selected states as a flat list of values (units stripped), and which
    of them are differentiated; the others are held fixed."""

    def __init__(self, selected: StateTree, allow_int: bool):
        leaves, self.treedef = jax.tree.flatten(selected, is_leaf=_is_quantity)
        self.units = [leaf.unit if _is_quantity(leaf) else None for leaf in leaves]
        self.values = [leaf.mantissa if _is_quantity(leaf) else leaf for leaf in leaves]
        self.diff = [
            i for i, v in enumerate(self.values) if _is_inexact(v) or (allow_int and _is_integer(v))
        ]

    def primal(self) -> list[Any]:
        return [self.values[i] for i in self.diff]

    def rebuild(self, diff_values: Sequence[Any]) -> StateTree:
        values = list(self.values)
        for i, v in zip(self.diff, diff_values, strict=True):
            values[i] = v
        return self.treedef.unflatten(
            [
                v if unit is None else u.Quantity(v, unit=unit)
                for v, unit in zip(values, self.units, strict=True)
            ]
        )

    def tree_of(self, per_leaf: Sequence[Any], unit_of: Callable[[Any], Any]) -> StateTree:
        """One result per differentiated leaf, put back in the selected tree's
        shape; held-fixed leaves get None. ``unit_of(state_unit)`` is the
        result's unit (None for a plain array)."""
        leaves: list[Any] = [None] * len(self.values)
        for i, r in zip(self.diff, per_leaf, strict=True):
            unit = unit_of(self.units[i])
            leaves[i] = r if unit is None else u.Quantity(r, unit=unit)
        return self.treedef.unflatten(leaves)


def _unit_ratio(numerator: Any, *denominators: Any) -> Any:
    """numerator / prod(denominators) as a unit, None when all are absent."""
    if numerator is None and all(d is None for d in denominators):
        return None
    unit = numerator if numerator is not None else u.UNITLESS
    for d in denominators:
        if d is not None:
            unit = unit / d
    return unit


def _map_outer(treedef: Any, tree: Any, f: Callable[[Any], Any]) -> Any:
    """Apply `f` to each subtree of `tree` hanging off a leaf of `treedef`."""
    return treedef.unflatten([f(sub) for sub in treedef.flatten_up_to(tree)])


class _Request:
    """What the user asked for; built once per transform."""

    def __init__(self, kind, fun, grad_states, argnums, has_aux, return_value, unit_aware, options):
        self.kind = kind
        self.where = f"ps.augment.{kind}({fun_name(fun)})"
        self.fun = fun
        self.selector = None if grad_states is None else as_selector(grad_states)
        if argnums is None:
            argnums = None if grad_states is not None else 0
        self.single_arg = isinstance(argnums, int)
        self.argnums = () if argnums is None else (argnums,) if self.single_arg else tuple(argnums)
        self.has_aux = has_aux
        self.return_value = return_value
        self.unit_aware = unit_aware
        self.options = options  # holomorphic / allow_int, passed to jax


def _select(req: _Request, states: StateTree) -> tuple[StateTree, StateTree]:
    if req.selector is None:
        return {}, states
    selected, rest = split_compiled(states, (req.selector,))
    require_match(selected, states, req.selector, req.where)
    if not req.options.get("allow_int", False):
        ints = [path_str(p) for p, s in iter_states(selected) if _is_integer(s.value)]
        if ints:
            raise StateError(
                f"{req.where}: the selected states {', '.join(map(repr, ints))} hold integer "
                "or bool arrays, which have no gradient. Pass allow_int=True (as jax.grad "
                "does) or leave them out of the selector, e.g. ps.All(sel, ps.Not('path'))."
            )
    return selected, rest


def _arg_positions(req: _Request, n_args: int) -> tuple[int, ...]:
    for i in req.argnums:
        if not -n_args <= i < n_args:
            raise StateError(
                f"{req.where}: argnums={req.argnums if not req.single_arg else req.argnums[0]} "
                f"but the function was called with {n_args} positional argument(s) after the "
                "states (argnums counts them from 0, the first argument after `states`)."
            )
    return tuple(i % n_args for i in req.argnums)


def _objective(req, leaves, rest, args, kwargs, positions) -> Callable:
    """``h(diff_values, *diff_args) -> (value_mantissa, (value, aux, new_states))``."""

    def h(diff_values: list, *diff_args: Any) -> tuple[Any, tuple]:
        call_args = list(args)
        for i, a in zip(positions, diff_args, strict=True):
            call_args[i] = a
        states = merge(leaves.rebuild(diff_values), rest)
        out, new_states = call_stateful(req.fun, states, *call_args, **kwargs)
        value, aux = out, None
        if req.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                got = (
                    f"a tuple of length {len(out)}"
                    if isinstance(out, tuple)
                    else type(out).__name__
                )
                raise StateError(
                    f"{req.where}: has_aux=True needs the function to return "
                    f"((value, aux), new_states), but its output is {got}."
                )
            value, aux = out
        mantissa = value.mantissa if _is_quantity(value) else value
        if req.kind == "grad" and jnp.shape(mantissa) != ():
            raise TypeError(
                f"{req.where} needs a scalar value but the function returned shape "
                f"{jnp.shape(mantissa)}. Reduce it (e.g. .sum() or .mean()), or use "
                "ps.augment.vector_grad / jacrev for non-scalar outputs."
            )
        return mantissa, (value, aux, new_states)

    return h


def _differentiate(req: _Request, h: Callable, primals: tuple) -> tuple[tuple, tuple]:
    """Run the JAX transform; return (one result per primal, extras)."""
    argnums = tuple(range(len(primals)))
    if req.kind == "vector_grad":
        value, vjp_fn, extras = jax.vjp(h, *primals, has_aux=True)
        return vjp_fn(jax.tree.map(jnp.ones_like, value)), extras
    transform = {
        "grad": jax.grad,
        "jacrev": jax.jacrev,
        "jacfwd": jax.jacfwd,
        "hessian": jax.hessian,
    }[req.kind]
    return transform(h, argnums=argnums, has_aux=True, **req.options)(*primals)


def _state_results(
    req: _Request, leaves: _Leaves, primals: tuple, results: Any, extras: tuple
) -> tuple:
    """Put the results for the state leaves back into state trees.

    `jax.grad` gives one result per primal; `jacrev`/`jacfwd` put the output's
    structure outside the tuple of primals, and `hessian` nests primal inside
    primal under it.
    """
    value = extras[0]
    value_unit = value.unit if _is_quantity(value) else None
    out_def = jax.tree.structure(value.mantissa if _is_quantity(value) else value)
    primal_defs = [jax.tree.structure(p) for p in primals]
    n = len(primals)

    def states_tree(per_leaf: list, unit_of: Callable[[Any], Any] = lambda su: None) -> StateTree:
        return leaves.tree_of(per_leaf, unit_of)

    def first_order(per_leaf: list) -> StateTree:
        if not req.unit_aware:
            return states_tree(per_leaf)
        return states_tree(per_leaf, lambda su: _unit_ratio(value_unit, su))

    if req.kind in ("grad", "vector_grad"):
        return (first_order(results[0]), *results[1:])
    if req.kind in ("jacrev", "jacfwd"):
        per_primal = [_map_outer(out_def, results, lambda t, k=k: t[k]) for k in range(n)]
        return (_map_outer(out_def, per_primal[0], first_order), *per_primal[1:])

    def block(i: int, j: int) -> Any:
        """d2 value / d primal_i d primal_j, with the output structure outside."""

        def pick(t: Any) -> Any:
            return primal_defs[i].unflatten([tup[j] for tup in primal_defs[i].flatten_up_to(t[i])])

        return _map_outer(out_def, results, pick)

    def second_order(rows: list) -> StateTree:
        def row(a: int, per_leaf: list) -> StateTree:
            if not req.unit_aware:
                return states_tree(per_leaf)
            ua = leaves.units[leaves.diff[a]]
            return states_tree(per_leaf, lambda su: _unit_ratio(value_unit, ua, su))

        return states_tree([row(a, r) for a, r in enumerate(rows)])

    def args_outside(k: int) -> Callable[[Any], Any]:
        def convert(t: Any) -> Any:
            return primal_defs[k].unflatten(
                [states_tree(x) for x in primal_defs[k].flatten_up_to(t)]
            )

        return convert

    h_ss = _map_outer(out_def, block(0, 0), second_order)
    h_sa = tuple(_map_outer(out_def, block(0, k), states_tree) for k in range(1, n))
    h_as = tuple(_map_outer(out_def, block(k, 0), args_outside(k)) for k in range(1, n))
    h_aa = tuple(tuple(block(k, m) for m in range(1, n)) for k in range(1, n))
    return h_ss, h_sa, h_as, h_aa


def _pick(req: _Request, items: tuple) -> Any:
    return items[0] if req.single_arg else tuple(items)


def _result(req: _Request, grads: Any, extras: tuple) -> Any:
    value, aux, _ = extras
    out = (grads,)
    if req.return_value:
        out += (value,)
    if req.has_aux:
        out += (aux,)
    return out[0] if len(out) == 1 else out


def _grads(req: _Request, parts: tuple) -> Any:
    """Arrange the per-primal results as the contract says."""
    if req.kind == "hessian":
        h_ss, h_sa, h_as, h_aa = parts
        if req.selector is None:
            return _pick(req, tuple(_pick(req, row) for row in h_aa))
        if not req.argnums:
            return h_ss
        return (
            (h_ss, _pick(req, h_sa)),
            (_pick(req, h_as), _pick(req, tuple(_pick(req, r) for r in h_aa))),
        )
    state_part, arg_parts = parts[0], parts[1:]
    if req.selector is None:
        return _pick(req, arg_parts)
    if not req.argnums:
        return state_part
    return state_part, _pick(req, arg_parts)


def _build(
    kind: str, fun: Callable, grad_states, argnums, has_aux, return_value, unit_aware, **options
) -> Callable:
    req = _Request(kind, fun, grad_states, argnums, has_aux, return_value, unit_aware, options)

    @functools.wraps(fun)
    def transformed(states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        positions = _arg_positions(req, len(args))
        selected, rest = _select(req, states)
        leaves = _Leaves(selected, options.get("allow_int", False))
        h = _objective(req, leaves, rest, args, kwargs, positions)
        primals = (leaves.primal(), *(args[i] for i in positions))
        results, extras = _differentiate(req, h, primals)
        grads = _grads(req, _state_results(req, leaves, primals, results, extras))
        return _result(req, grads, extras), extras[2]

    return transformed


def grad(
    fun: Callable,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Gradient of a scalar stateful function with respect to selected states.

    ``fun(states, *args) -> (value, new_states)`` (or ``((value, aux),
    new_states)`` with `has_aux`). The result is a stateful function
    ``g(states, *args) -> (result, new_states)`` where `result` is `grads`,
    ``(grads, value)`` with `return_value`, ``(grads, aux)`` with `has_aux`, or
    ``(grads, value, aux)`` with both; `new_states` are the states after the
    forward pass.

    `grads` is what `jax.grad` gives for the selected subtree with every other
    state held fixed: the same nested dict and state kinds. Leaves that are not
    inexact arrays (inside pytree values) are held fixed and get ``None``, as
    `equinox.filter_grad` does; a selected state whose value is an integer array
    is an error unless ``allow_int=True``.

    Args:
        fun: the stateful function.
        grad_states: a selector (see `ps.select`) of the states to differentiate.
        argnums: positions in ``*args`` (0 is the first after `states`) to
            differentiate too; then ``grads = (state_grads, arg_grads)``. With
            ``grad_states=None`` it defaults to 0 and ``grads = arg_grads``.
        has_aux: `fun` returns ``((value, aux), new_states)``; see above.
        return_value: also return the value; see above.
        holomorphic: as in `jax.grad`.
        allow_int: as in `jax.grad`: differentiate integer states too.
        unit_aware: with brainunit quantities in states, give each gradient the
            unit value_unit / state_unit. Otherwise gradients are plain arrays of
            the mantissas' gradients.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def loss(states, x):
        ...     return jnp.sum((x @ states["w"].value) ** 2), states
        >>> states = {"w": ps.ParamState(jnp.ones((2, 1))), "v": ps.ShortTermState(0.0)}
        >>> grads, _ = ps.augment.grad(loss, ps.ParamState)(states, jnp.ones((1, 2)))
        >>> grads["w"].value.ravel().tolist()
        [4.0, 4.0]
    """
    return _build(
        "grad",
        fun,
        grad_states,
        argnums,
        has_aux,
        return_value,
        unit_aware,
        holomorphic=holomorphic,
        allow_int=allow_int,
    )


def vector_grad(
    fun: Callable,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Like `grad` for a non-scalar value: the sum of the vector-Jacobian
    products of every output element (a cotangent of ones).

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (states["x"].value ** 2, states)
        >>> grads, _ = ps.augment.vector_grad(f, "x")({"x": ps.ParamState(jnp.arange(3.0))})
        >>> grads["x"].value.tolist()
        [0.0, 2.0, 4.0]
    """
    return _build("vector_grad", fun, grad_states, argnums, has_aux, return_value, unit_aware)


def jacrev(
    fun: Callable,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Jacobian by reverse mode (`jax.jacrev`): the output's structure outside,
    the selected state tree inside. Options as in `grad`.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (states["x"].value ** 2, states)
        >>> jac, _ = ps.augment.jacrev(f, "x")({"x": ps.ParamState(jnp.arange(2.0))})
        >>> jac["x"].value.tolist()
        [[0.0, 0.0], [0.0, 2.0]]
    """
    return _build(
        "jacrev",
        fun,
        grad_states,
        argnums,
        has_aux,
        return_value,
        unit_aware,
        holomorphic=holomorphic,
        allow_int=allow_int,
    )


jacobian = jacrev


def jacfwd(
    fun: Callable,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    holomorphic: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Jacobian by forward mode (`jax.jacfwd`); same result layout as `jacrev`.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (jnp.sin(states["x"].value), states)
        >>> jac, _ = ps.augment.jacfwd(f, "x")({"x": ps.ParamState(jnp.zeros(2))})
        >>> jac["x"].value.tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    return _build(
        "jacfwd",
        fun,
        grad_states,
        argnums,
        has_aux,
        return_value,
        unit_aware,
        holomorphic=holomorphic,
    )


def hessian(
    fun: Callable,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    holomorphic: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Hessian (`jax.hessian`): the selected state tree nested in itself. With
    `argnums` too: ``((H_ss, H_sa), (H_as, H_aa))`` as
    ``jax.hessian(argnums=(0, 1))`` gives.

    Example:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (jnp.sum(states["x"].value ** 3), states)
        >>> hess, _ = ps.augment.hessian(f, "x")({"x": ps.ParamState(jnp.array([1.0, 2.0]))})
        >>> hess["x"].value["x"].value.tolist()
        [[6.0, 0.0], [0.0, 12.0]]
    """
    return _build(
        "hessian",
        fun,
        grad_states,
        argnums,
        has_aux,
        return_value,
        unit_aware,
        holomorphic=holomorphic,
    )
