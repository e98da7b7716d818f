"""Differentiation with respect to selected states: `grad`, `vector_grad`,
`jacrev`, `jacfwd`, `jacobian` and `hessian`.

All of them share one core. The selected states' values and the chosen
``*args`` become the *primals*; JAX differentiates a function of those
primals whose auxiliary output carries the value, the user's aux and the new
states. Each transform is one `_Transform` entry: the JAX function, its
order, and whether the output's structure sits outside its result (Jacobians)
or not (gradients). The result is then put back into state trees, with units.

Result layout, for a value of output structure ``O``, selected states ``S``
and chosen arguments ``A``:

* `grad`, `vector_grad`: ``S`` (and ``A``);
* `jacrev`, `jacfwd`: ``O`` outside, ``S`` (or ``A``) inside, as
  ``jax.jacrev`` nests them;
* `hessian`: ``O`` outside, then ``S`` nested in ``S``. For example, a scalar
  loss of ``{'w': ParamState(f32[2, 3])}`` gives ``H['w'].value['w'].value``
  of shape ``(2, 3, 2, 3)``: the second derivative with respect to ``w[i, j]``
  and ``w[k, l]`` at ``[i, j, k, l]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _pytree as pytree
from .._argnums import index_tuple, resolve
from .._errors import StateError
from .._layout import Layout, Returned, Values, check_statics_kept, take_apart
from .._paths import describe_paths
from .._selectors import Selector, as_selector
from .._split import assign
from .._state import new_state
from .._stateful import call_stateful, fun_name
from .._tree import StateTree, nest

__all__ = ["grad", "hessian", "jacfwd", "jacobian", "jacrev", "vector_grad"]


def _is_quantity(x: Any) -> bool:
    return isinstance(x, u.Quantity)


def _mantissa(x: Any) -> Any:
    return x.mantissa if _is_quantity(x) else x


def _is_integer(x: Any) -> bool:
    return eqx.is_array(x) and not eqx.is_inexact_array(x)


def _with_unit(x: Any, unit: Any) -> Any:
    return x if unit is None or x is None else u.Quantity(x, unit=unit)


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


def _describe_output(out: Any) -> str:
    if isinstance(out, tuple):
        return f"a tuple of length {len(out)}"
    if hasattr(out, "shape"):
        return f"an array of shape {tuple(np.shape(out))}"
    return f"a {type(out).__name__}"


def split_aux(out: Any, has_aux: bool, where: str, what: str) -> tuple[Any, Any]:
    """``(out, None)``, or with `has_aux` the pair ``(what, aux)`` that `out`
    must be (a `TypeError` saying what to change otherwise)."""
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            f"{where}: has_aux=True needs the function to return (({what}, aux), new_states), "
            f"but its output is {_describe_output(out)}. Return a pair ({what}, aux) as the "
            "output, or pass has_aux=False."
        )
    return out


class _Primal:
    """One input JAX differentiates: its value for JAX (units stripped), how
    the function sees it again, and how a result shaped like it goes back
    into the user's structure. `units` are per leaf of the primal."""

    primal: Any
    units: list[Any]

    def leafwise(self, result: Any, f: Callable[[Any, Any], Any]) -> Any:
        """`result` (shaped like `primal`) with ``f(sub, unit)`` at each leaf,
        in the user's structure."""
        raise NotImplementedError


class _StatePrimal(_Primal):
    """The selected states: a list of their differentiable leaves (mantissas
    of Quantities); the other leaves are held fixed."""

    def __init__(self, layout: Layout, values: Values, positions: list[int], allow_int: bool):
        self.layout = layout
        self.positions = positions
        selected = [layout.value_at(i, values[i]) for i in positions]
        leaves, self.treedef = pytree.flatten(selected, is_leaf=_is_quantity)
        self.leaf_units = [leaf.unit if _is_quantity(leaf) else None for leaf in leaves]
        self.values = [_mantissa(leaf) for leaf in leaves]
        self.diff = [
            i
            for i, v in enumerate(self.values)
            if eqx.is_inexact_array(v) or (allow_int and _is_integer(v))
        ]
        self.primal = [self.values[i] for i in self.diff]
        self.units = [self.leaf_units[i] for i in self.diff]

    def rebuild(self, primal: list[Any]) -> list[Any]:
        """The selected states' values holding `primal`, units put back."""
        values = list(self.values)
        for i, v in zip(self.diff, primal, strict=True):
            values[i] = v
        return self.treedef.unflatten(
            [_with_unit(v, unit) for v, unit in zip(values, self.leaf_units, strict=True)]
        )

    def leafwise(self, result: Any, f: Callable[[Any, Any], Any]) -> StateTree:
        leaves: list[Any] = [None] * len(self.values)
        for i, r, unit in zip(self.diff, result, self.units, strict=True):
            leaves[i] = f(r, unit)
        per_state = self.treedef.unflatten(leaves)
        states = self.layout.states
        return nest(
            {
                states[i][0]: new_state(states[i][1], g)
                for i, g in zip(self.positions, per_state, strict=True)
            }
        )


class _ArgPrimal(_Primal):
    """A chosen argument. JAX sees it with Quantities reduced to their
    mantissas, as for states: the gradient then carries value_unit /
    input_unit with ``unit_aware``, and no unit without (plain JAX would give
    it the input's own unit, which is dimensionally wrong)."""

    def __init__(self, arg: Any):
        leaves, self.treedef = pytree.flatten(arg, is_leaf=_is_quantity)
        self.units = [leaf.unit if _is_quantity(leaf) else None for leaf in leaves]
        self.primal = self.treedef.unflatten([_mantissa(leaf) for leaf in leaves])

    def rebuild(self, primal: Any) -> Any:
        leaves = self.treedef.flatten_up_to(primal)
        return self.treedef.unflatten(
            [_with_unit(v, unit) for v, unit in zip(leaves, self.units, strict=True)]
        )

    def leafwise(self, result: Any, f: Callable[[Any, Any], Any]) -> Any:
        subs = self.treedef.flatten_up_to(result)
        return self.treedef.unflatten(
            [f(s, unit) for s, unit in zip(subs, self.units, strict=True)]
        )


def _vector_grad(h: Callable, argnums: tuple[int, ...], has_aux: bool) -> Callable:
    """`jax.grad`'s calling convention for the VJP with a cotangent of ones
    (of every primal: `argnums` is always all of them here, and `h` always
    returns an aux output)."""
    del argnums, has_aux

    def run(*primals: Any) -> tuple[Any, Any]:
        value, vjp_fn, extras = jax.vjp(h, *primals, has_aux=True)
        return vjp_fn(jax.tree.map(jnp.ones_like, value)), extras

    return run


@dataclass(frozen=True)
class _Transform:
    """One differentiation transform: the JAX function, the options it takes,
    its order, and whether the value's structure sits outside its result."""

    name: str
    jax_transform: Callable[..., Callable]
    options: tuple[str, ...]
    order: int = 1
    output_outside: bool = False
    scalar_value: bool = False


_GRAD = _Transform("grad", jax.grad, ("holomorphic", "allow_int"), scalar_value=True)
_VECTOR_GRAD = _Transform("vector_grad", _vector_grad, ())
_JACREV = _Transform("jacrev", jax.jacrev, ("holomorphic", "allow_int"), output_outside=True)
_JACFWD = _Transform("jacfwd", jax.jacfwd, ("holomorphic",), output_outside=True)
_HESSIAN = _Transform("hessian", jax.hessian, ("holomorphic",), order=2, output_outside=True)


class _Request:
    """What the user asked for; built and checked once per transform."""

    def __init__(
        self,
        transform: _Transform,
        fun: Callable,
        grad_states: Any,
        argnums: int | Sequence[int] | None,
        has_aux: bool,
        return_value: bool,
        unit_aware: bool,
        options: dict[str, Any],
    ):
        self.transform = transform
        self.where = f"ps.augment.{transform.name}({fun_name(fun)})"
        self.fun = fun
        self.selector: Selector | None = None if grad_states is None else as_selector(grad_states)
        if argnums is None:
            argnums = None if grad_states is not None else 0
        self.single_arg = argnums is not None and not isinstance(argnums, (list, tuple, range))
        self.argnums = () if argnums is None else index_tuple(argnums, "argnums", self.where)
        self.has_aux = bool(has_aux)
        self.return_value = return_value
        self.unit_aware = unit_aware
        self.options = {k: v for k, v in options.items() if k in transform.options}
        self.allow_int = bool(options.get("allow_int", False))

    def pick(self, items: tuple) -> Any:
        """One argument's result, or the tuple of them, as JAX arranges them."""
        return items[0] if self.single_arg else tuple(items)


def _selected_positions(req: _Request, layout: Layout, values: Values) -> list[int]:
    if req.selector is None:
        return []
    choice = assign(layout, values, (req.selector,), ("grad_states",), req.where)
    positions = [i for i, c in enumerate(choice) if c == 0]
    if not req.allow_int:
        ints = [
            layout.paths[i]
            for i in positions
            if _is_integer(_mantissa(layout.value_at(i, values[i])))
        ]
        if ints:
            raise StateError(
                f"{req.where}: the selected states {describe_paths(ints)} hold integer or "
                "bool arrays, which have no gradient. Pass allow_int=True (as jax.grad "
                "does) or leave them out of the selector, e.g. ps.All(sel, ps.Not('path'))."
            )
    return positions


def _objective(
    req: _Request,
    layout: Layout,
    values: Values,
    states: _StatePrimal | None,
    arg_primals: list[_ArgPrimal],
    args: tuple,
    kwargs: dict,
    positions: tuple[int, ...],
) -> Callable:
    """``h(*primals) -> (value_mantissa, (value, aux, new_values, marker))``."""

    def h(*primals: Any) -> tuple[Any, tuple]:
        call_values = list(values)
        if states is not None:
            for i, v in zip(states.positions, states.rebuild(primals[0]), strict=True):
                call_values[i] = v if layout.states[i][2] is None else _entry(v)
            primals = primals[1:]
        call_args = list(args)
        for i, p, a in zip(positions, arg_primals, primals, strict=True):
            call_args[i] = p.rebuild(a)
        out, new_states = call_stateful(req.fun, layout.build(call_values), *call_args, **kwargs)
        value, aux = split_aux(out, req.has_aux, req.where, "value")
        mantissa = _mantissa(value)
        scalar = isinstance(mantissa, (int, float, complex)) or (
            hasattr(mantissa, "shape") and np.shape(mantissa) == ()
        )
        if req.transform.scalar_value and not scalar:
            hint = (
                " If it returns ((value, aux), new_states), pass has_aux=True."
                if isinstance(mantissa, (tuple, list, dict))
                else " Reduce it (e.g. .sum() or .mean()), or use ps.augment.vector_grad / "
                "jacrev for non-scalar outputs."
            )
            raise TypeError(
                f"{req.where} needs a scalar value but the function returned "
                f"{_describe_output(mantissa)} as its value.{hint}"
            )
        # The new states leave through JAX's aux output, which would sort
        # their keys: they travel as values and a leafless layout marker.
        new_values, new_layout = take_apart(new_states)
        check_statics_kept(layout, new_layout, req.where)
        return mantissa, (value, aux, new_values, Returned(new_layout, None))

    return h


def _entry(value: Any) -> tuple:
    """The values entry of a pytree-valued state (its array leaves)."""
    return tuple(leaf for leaf in jax.tree.leaves(value) if eqx.is_array(leaf))


def _arrange(req: _Request, primals: list[_Primal], results: Any, value: Any) -> Any:
    """Put JAX's results back into state trees and argument structures."""
    transform = req.transform
    value_unit = value.unit if req.unit_aware and _is_quantity(value) else None
    out_def = pytree.structure(
        _mantissa(value) if transform.output_outside else 0
    )  # a single leaf unless the output's structure sits outside
    has_states = req.selector is not None

    def unit_of(*input_units: Any) -> Any:
        return _unit_ratio(value_unit, *input_units) if req.unit_aware else None

    def first(p: _Primal, t: Any) -> Any:
        return p.leafwise(t, lambda r, unit: _with_unit(r, unit_of(unit)))

    def outer(f: Callable[[Any], Any]) -> Any:
        return _map_outer(out_def, results, f)

    if transform.order == 1:
        offset = 1 if has_states else 0
        arg_part = outer(
            lambda t: req.pick(tuple(first(p, t[k]) for k, p in enumerate(primals) if k >= offset))
        )
        if not has_states:
            return arg_part
        state_part = outer(lambda t: first(primals[0], t[0]))
        return (state_part, arg_part) if req.argnums else state_part

    def block(t: Any, i: int, j: int) -> Any:
        """d2 value / d primal_i d primal_j at one output leaf `t`:
        primal_i's structure outside."""
        p, q = primals[i], primals[j]

        def inner(sub: Any, unit_i: Any) -> Any:
            return q.leafwise(sub, lambda r, unit_j: _with_unit(r, unit_of(unit_i, unit_j)))

        # jax.hessian nests: primal_i's structure, then the tuple over j.
        return p.leafwise(t[i], lambda sub, unit_i: inner(sub[j], unit_i))

    n = len(primals)

    def blocks(t: Any) -> Any:
        """The blocks at one output leaf, arranged as jax.hessian(argnums=...)."""
        if not has_states:
            return req.pick(
                tuple(req.pick(tuple(block(t, k, m) for m in range(n))) for k in range(n))
            )
        if not req.argnums:
            return block(t, 0, 0)
        args = range(1, n)
        return (
            (block(t, 0, 0), req.pick(tuple(block(t, 0, m) for m in args))),
            (
                req.pick(tuple(block(t, k, 0) for k in args)),
                req.pick(tuple(req.pick(tuple(block(t, k, m) for m in args)) for k in args)),
            ),
        )

    # The output's structure outside everything, as jax.hessian puts it.
    return outer(blocks)


def _result(req: _Request, grads: Any, value: Any, aux: Any) -> Any:
    out: tuple[Any, ...] = (grads,)
    if req.return_value:
        out += (value,)
    if req.has_aux:
        out += (aux,)
    return out[0] if len(out) == 1 else out


def _differentiable(req: _Request) -> Callable:
    """The transformed stateful function for a checked request."""

    @functools.wraps(req.fun)
    def transformed(states: StateTree, *args: Any, **kwargs: Any) -> tuple[Any, StateTree]:
        positions = resolve(req.argnums, len(args), "argnums", req.where)
        values, layout = take_apart(states, f"{req.where}: ")
        selected = _selected_positions(req, layout, values)
        state_primal = (
            _StatePrimal(layout, values, selected, req.allow_int) if req.selector else None
        )
        arg_primals = [_ArgPrimal(args[i]) for i in positions]
        primals: list[_Primal] = [state_primal] if state_primal else []
        primals.extend(arg_primals)
        h = _objective(req, layout, values, state_primal, arg_primals, args, kwargs, positions)
        run = req.transform.jax_transform(
            h, argnums=tuple(range(len(primals))), has_aux=True, **req.options
        )
        results, (value, aux, new_values, returned) = run(*(p.primal for p in primals))
        grads = _arrange(req, primals, results, value)
        return _result(req, grads, value, aux), returned.layout.build(new_values)

    return transformed


def _make(
    transform: _Transform,
    fun: Callable | None,
    grad_states: Any,
    argnums: int | Sequence[int] | None,
    has_aux: bool,
    return_value: bool,
    unit_aware: bool,
    **options: Any,
) -> Callable:
    def make(f: Callable) -> Callable:
        req = _Request(
            transform, f, grad_states, argnums, has_aux, return_value, unit_aware, options
        )
        return _differentiable(req)

    # Without `fun`, a decorator: @ps.augment.grad(grad_states=ps.ParamState).
    return make if fun is None else make(fun)


def grad(
    fun: Callable | None = None,
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
    forward pass. Without `fun`, a decorator.

    `grads` is what `jax.grad` gives for the selected subtree with every other
    state held fixed: the same nested dict and state kinds. Leaves that are not
    inexact arrays (inside pytree values) are held fixed and get ``None``, as
    `equinox.filter_grad` does; a selected state whose value is an integer array
    is an error unless ``allow_int=True``.

    Args:
        fun: the stateful function.
        grad_states: a selector (see `ps.select`) of the states to differentiate;
            it must match some state.
        argnums: positions in ``*args`` (0 is the first after `states`; distinct;
            negative from the end) to differentiate too; then ``grads =
            (state_grads, arg_grads)``. With ``grad_states=None`` it defaults to
            0 and ``grads = arg_grads``.
        has_aux: `fun` returns ``((value, aux), new_states)``; see above.
        return_value: also return the value; see above.
        holomorphic: as in `jax.grad`.
        allow_int: as in `jax.grad`: differentiate integer states too.
        unit_aware: with brainunit quantities in states and arguments, give each
            gradient the unit value_unit / input_unit. Otherwise state
            gradients are plain arrays of the mantissas' gradients.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> @ps.augment.grad(grad_states=ps.ParamState)
        ... def grad_fn(states, x):
        ...     return jnp.sum((x @ states["w"].value) ** 2), states
        >>> states = {"w": ps.ParamState(jnp.ones((2, 1))), "v": ps.ShortTermState(0.0)}
        >>> grads, _ = grad_fn(states, jnp.ones((1, 2)))
        >>> grads["w"].value.ravel().tolist()
        [4.0, 4.0]
    """
    return _make(
        _GRAD,
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
    fun: Callable | None = None,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Like `grad` for a non-scalar value: the sum of the vector-Jacobian
    products of every output element (a cotangent of ones).

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (states["x"].value ** 2, states)
        >>> grads, _ = ps.augment.vector_grad(f, "x")({"x": ps.ParamState(jnp.arange(3.0))})
        >>> grads["x"].value.tolist()
        [0.0, 2.0, 4.0]
    """
    return _make(_VECTOR_GRAD, fun, grad_states, argnums, has_aux, return_value, unit_aware)


def jacrev(
    fun: Callable | None = None,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Jacobian by reverse mode (`jax.jacrev`): the output's structure outside,
    the selected state tree (or the arguments, as `jax.jacrev` arranges them)
    inside. Options as in `grad`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (states["x"].value ** 2, states)
        >>> jac, _ = ps.augment.jacrev(f, "x")({"x": ps.ParamState(jnp.arange(2.0))})
        >>> jac["x"].value.tolist()
        [[0.0, 0.0], [0.0, 2.0]]
    """
    return _make(
        _JACREV,
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
    fun: Callable | None = None,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    holomorphic: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Jacobian by forward mode (`jax.jacfwd`); same result layout as `jacrev`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (jnp.sin(states["x"].value), states)
        >>> jac, _ = ps.augment.jacfwd(f, "x")({"x": ps.ParamState(jnp.zeros(2))})
        >>> jac["x"].value.tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    return _make(
        _JACFWD,
        fun,
        grad_states,
        argnums,
        has_aux,
        return_value,
        unit_aware,
        holomorphic=holomorphic,
    )


def hessian(
    fun: Callable | None = None,
    grad_states: Any = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    return_value: bool = False,
    holomorphic: bool = False,
    unit_aware: bool = False,
) -> Callable:
    """Hessian (`jax.hessian`): the selected state tree nested in itself (see
    the module docstring for a worked shape example). With `argnums` too:
    ``((H_ss, H_sa), (H_as, H_aa))`` as ``jax.hessian(argnums=(0, 1))`` gives.
    With `unit_aware`, each block has the unit value / (unit_i * unit_j).

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> f = lambda states: (jnp.sum(states["x"].value ** 3), states)
        >>> hess, _ = ps.augment.hessian(f, "x")({"x": ps.ParamState(jnp.array([1.0, 2.0]))})
        >>> hess["x"].value["x"].value.tolist()
        [[6.0, 0.0], [0.0, 12.0]]
    """
    return _make(
        _HESSIAN,
        fun,
        grad_states,
        argnums,
        has_aux,
        return_value,
        unit_aware,
        holomorphic=holomorphic,
    )
