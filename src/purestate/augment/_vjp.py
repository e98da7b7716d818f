"""`vjp` and `jvp` of a stateful function with respect to selected states and
chosen arguments.

Both differentiate ``h(selected, *chosen_args) = out``, where `selected` is
the subtree of the selected states and every other state and argument is held
fixed, with `jax.vjp` / `jax.jvp` themselves. Leaves of the selected states
that are not arrays (an `equinox.Module`'s functions) are held fixed as well
and get ``None``, as `equinox.filter_vjp` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax

from .._argnums import index_tuple, resolve
from .._errors import StateError
from .._layout import Layout, Returned, Values, check_statics_kept, take_apart
from .._selectors import as_selector
from .._split import assign
from .._stateful import call_stateful, fun_name
from .._tree import StateTree, nest, node_at
from ._grad import split_aux

__all__ = ["jvp", "vjp"]


class _Linearised:
    """The pieces `vjp` and `jvp` share: which states and arguments are the
    primals, and the function ``h`` of them."""

    def __init__(
        self,
        kind: str,
        fun: Callable,
        states: StateTree,
        args: tuple,
        grad_states: Any,
        argnums: int | Sequence[int],
        has_aux: bool,
    ):
        self.where = f"ps.augment.{kind}({fun_name(fun)})"
        self.fun, self.args, self.has_aux = fun, args, has_aux
        self.positions = resolve(
            index_tuple(argnums, "argnums", self.where), len(args), "argnums", self.where
        )
        self.values, self.layout = take_apart(states, f"{self.where}: ")
        self.selected: list[int] = []
        if grad_states is not None:
            choice = assign(
                self.layout, self.values, (as_selector(grad_states),), ("grad_states",), self.where
            )
            self.selected = [i for i, c in enumerate(choice) if c == 0]
        elif not self.positions:
            raise ValueError(
                f"{self.where}: nothing to differentiate: give grad_states (a selector of "
                "states) or argnums (positions of arguments after `states`)."
            )
        self.with_states = grad_states is not None
        layout = self.layout
        tree = nest({layout.paths[i]: layout.state_at(i, self.values[i]) for i in self.selected})
        # Non-array leaves of the selected states are held fixed, as in Equinox.
        self.primal_states, self.static_states = eqx.partition(tree, eqx.is_array)

    def primals(self) -> tuple:
        chosen = tuple(self.args[i] for i in self.positions)
        return ((self.primal_states,) if self.with_states else ()) + chosen

    def h(self, *primals: Any) -> tuple[Any, tuple[Any, Values, Returned]]:
        """``h(selected, *chosen) -> (out, (aux, new_values, marker))``."""
        layout = self.layout
        values = list(self.values)
        if self.with_states:
            selected = eqx.combine(primals[0], self.static_states)
            for i in self.selected:
                values[i] = _entry(layout, i, node_at(selected, layout.paths[i]).value)
            primals = primals[1:]
        args = list(self.args)
        for i, a in zip(self.positions, primals, strict=True):
            args[i] = a
        out, new_states = call_stateful(self.fun, layout.build(values), *args)
        out, aux = split_aux(out, self.has_aux, self.where, "out")
        new_values, new_layout = take_apart(new_states)
        check_statics_kept(layout, new_layout, self.where)
        return out, (aux, new_values, Returned(new_layout, None))


def _entry(layout: Layout, position: int, value: Any) -> Any:
    """The values entry of a state's value (its arrays, for a pytree value)."""
    if layout.states[position][2] is None:
        return value
    return tuple(leaf for leaf in jax.tree.leaves(value) if eqx.is_array(leaf))


def _new_states(extras: tuple[Any, Values, Returned]) -> tuple[Any, StateTree]:
    aux, new_values, returned = extras
    assert returned.layout is not None
    return aux, returned.layout.build(new_values)


def vjp(
    fun: Callable,
    states: StateTree,
    *args: Any,
    grad_states: Any = None,
    argnums: int | Sequence[int] = (),
    has_aux: bool = False,
) -> tuple[tuple[Any, ...], StateTree]:
    """The output of ``fun(states, *args)`` and its vector-Jacobian product
    function, with respect to the selected states and the chosen arguments.

    Returns ``((out, vjp_fn), new_states)`` (``((out, vjp_fn, aux),
    new_states)`` with `has_aux`). ``vjp_fn(cotangent)`` is exactly
    ``jax.vjp(h, selected, *chosen_args)[1](cotangent)`` for ``h(selected,
    *chosen_args) = out``: a tuple whose first item is the selected states'
    cotangent (the same paths and kinds), then one per chosen argument.
    Without `grad_states` only the arguments' cotangents are returned.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def f(states, x):
        ...     return states["w"].value * x, states
        >>> states = {"w": ps.ParamState(jnp.array([1.0, 2.0]))}
        >>> (out, vjp_fn), _ = ps.augment.vjp(f, states, jnp.array([3.0, 4.0]),
        ...                                   grad_states="w", argnums=0)
        >>> w_ct, x_ct = vjp_fn(jnp.ones(2))
        >>> w_ct["w"].value.tolist(), x_ct.tolist()
        ([3.0, 4.0], [1.0, 2.0])
    """
    lin = _Linearised("vjp", fun, states, args, grad_states, argnums, has_aux)
    out, vjp_fn, extras = jax.vjp(lin.h, *lin.primals(), has_aux=True)
    aux, new_states = _new_states(extras)
    return ((out, vjp_fn, aux) if has_aux else (out, vjp_fn)), new_states


def jvp(
    fun: Callable,
    states: StateTree,
    args: Sequence[Any],
    tangents: Sequence[Any],
    grad_states: Any = None,
    argnums: int | Sequence[int] = (),
    has_aux: bool = False,
) -> tuple[tuple[Any, ...], StateTree]:
    """The output of ``fun(states, *args)`` and its Jacobian-vector product
    with respect to the selected states and the chosen arguments.

    `args` is the tuple of all positional arguments and `tangents` is
    ``(selected_tangent, *chosen_arg_tangents)`` (without `grad_states`, only
    the arguments' tangents). Returns ``((out, out_tangent), new_states)``
    (``((out, out_tangent, aux), new_states)`` with `has_aux`), exactly
    ``jax.jvp(h, (selected, *chosen_args), tangents)`` for ``h(selected,
    *chosen_args) = out``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> def f(states, x):
        ...     return states["w"].value * x, states
        >>> states = {"w": ps.ParamState(jnp.array([1.0, 2.0]))}
        >>> (out, tangent), _ = ps.augment.jvp(
        ...     f, states, (jnp.array([3.0, 4.0]),),
        ...     ({"w": ps.ParamState(jnp.ones(2))},), grad_states="w",
        ... )
        >>> out.tolist(), tangent.tolist()
        ([3.0, 8.0], [3.0, 4.0])
    """
    where = f"ps.augment.jvp({fun_name(fun)})"
    if not isinstance(args, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(
            f"{where}: args and tangents are tuples: args holds every positional argument "
            "after `states`, tangents holds (selected_tangent, *chosen_arg_tangents)."
        )
    lin = _Linearised("jvp", fun, states, tuple(args), grad_states, argnums, has_aux)
    primals = lin.primals()
    tangents = tuple(tangents)
    if len(tangents) != len(primals):
        raise StateError(
            f"{where}: {len(tangents)} tangents for {len(primals)} primals; give "
            + ("one for the selected states, then " if lin.with_states else "")
            + "one per position in argnums."
        )
    if lin.with_states:
        tangents = (eqx.filter(tangents[0], eqx.is_array), *tangents[1:])
    out, out_tangent, extras = jax.jvp(lin.h, primals, tangents, has_aux=True)
    aux, new_states = _new_states(extras)
    return ((out, out_tangent, aux) if has_aux else (out, out_tangent)), new_states
