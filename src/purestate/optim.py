"""Optimizers: any `optax.GradientTransformation` over selected states.

The optax state lives in the state tree itself, under ``'optimizer'`` (a
`ps.LongTermState`), so a whole training step is one pure function
``states -> states`` that `ps.compile.jit` or `jax.jit` can compile.

Optax sees the selected states' values with two adjustments, the same ones
`equinox` users make by hand: leaves that are not inexact arrays (functions,
ints, ``None`` inside an `equinox.Module`) become ``None`` and are left alone,
and a `brainunit.Quantity` is reduced to its mantissa (its unit is put back
after the update). NumPy arrays and NumPy scalars are arrays like
`jax.Array`s (the test is `equinox.is_inexact_array`); once updated they come
back as `jax.Array`s.

The ``'optimizer'`` entry itself is never optimized, whatever `wrt` says:
`Optimizer.wrt` is the requested selector without that root entry, so
``ps.augment.grad(loss, opt.wrt)`` gives exactly the gradients that
`Optimizer.update` takes.

Example: an `equinox.Module` held in a `ps.ParamState`, trained with
`ps.augment.grad` (its non-array leaves get ``None`` gradients and stay put):

    >>> import equinox as eqx
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import purestate as ps
    >>> x = jnp.linspace(-1.0, 1.0, 16)[:, None]
    >>> y = x**2
    >>> states = {"mlp": ps.ParamState(eqx.nn.MLP(1, 1, 16, 2, key=jax.random.key(0)))}
    >>> def loss(states, x, y):
    ...     pred = jax.vmap(states["mlp"].value)(x)
    ...     return jnp.mean((pred - y) ** 2), states
    >>> opt = ps.optim.Optimizer(optax.adam(1e-2))
    >>> states = opt.init(states)
    >>> grad_fn = ps.augment.grad(loss, ps.ParamState, return_value=True)
    >>> @eqx.filter_jit  # the MLP's activation function is a non-array leaf
    ... def train_step(states, x, y):
    ...     (grads, value), states = grad_fn(states, x, y)
    ...     return opt.update(states, grads), value
    >>> states, first = train_step(states, x, y)
    >>> for _ in range(200):
    ...     states, value = train_step(states, x, y)
    >>> bool(value < first / 10)
    True
"""

from __future__ import annotations

from typing import Any

import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ._errors import StateError
from ._paths import Path, path_differences, path_str
from ._selectors import All, Not, Selector, SelectorLike, as_selector
from ._split import require_match, split_compiled, update
from ._state import LongTermState, ParamState, State
from ._tree import StateTree, check_tree, iter_states, nest, node_at

__all__ = ["Optimizer", "OPTIMIZER_KEY"]

OPTIMIZER_KEY = "optimizer"
"""The root key under which `Optimizer.init` adds the optimizer's own state."""
_OPTIMIZER_PATH: Path = (OPTIMIZER_KEY,)


class _OptimizerEntry(Selector):
    """Exactly the root path ``('optimizer',)`` (not ``'x/optimizer'``, and not
    states below a subtree named ``'optimizer'``: only the root entry is the
    optimizer's own)."""

    cache_key = ("optimizer entry", _OPTIMIZER_PATH)

    def matches(self, path: Path, state: State) -> bool:
        return path == _OPTIMIZER_PATH

    def __repr__(self) -> str:
        return f"<the root {OPTIMIZER_KEY!r} entry>"


def _is_quantity(x: Any) -> bool:
    return isinstance(x, u.Quantity)


def _trainable(x: Any) -> Any:
    if isinstance(x, u.Quantity):
        x = x.mantissa
    # jax.Array, np.ndarray and NumPy scalars alike.
    return x if eqx.is_inexact_array(x) else None


def _view(value: Any) -> Any:
    """What optax sees of one state's value: inexact arrays (mantissas of
    Quantities), ``None`` elsewhere."""
    return jax.tree.map(_trainable, value, is_leaf=_is_quantity)


def _grad_view(param_view: Any, grad: Any, path: Path) -> tuple[Any, Any]:
    """The gradient aligned with `param_view`, and a mask (True where the
    gradient is ``None``, so the parameter must stay unchanged)."""
    if grad is None:
        grad = jax.tree.map(lambda _: None, param_view)
    grad = jax.tree.map(
        lambda g: g.mantissa if isinstance(g, u.Quantity) else g, grad, is_leaf=_is_quantity
    )
    is_none = lambda x: x is None  # noqa: E731

    def align(p: Any, g: Any) -> Any:
        if p is None:
            return None
        if g is None:
            return jnp.zeros_like(p)
        if jnp.shape(g) != p.shape:
            raise StateError(
                f"Optimizer.update: the gradient at {path_str(path)!r} has shape "
                f"{jnp.shape(g)} but the state's value has shape {p.shape}."
            )
        return g

    try:
        grads = jax.tree.map(align, param_view, grad, is_leaf=is_none)
    except ValueError as e:
        if isinstance(e, StateError):
            raise
        raise StateError(
            f"Optimizer.update: the gradient at {path_str(path)!r} does not have the "
            f"structure of the state's value ({e}). Pass the grads that "
            "ps.augment.grad returns for these states."
        ) from None
    mask = jax.tree.map(lambda p, g: p is not None and g is None, param_view, grad, is_leaf=is_none)
    return grads, mask


def _rebuild(old: Any, new_view: Any, old_view: Any, mask: Any) -> Any:
    """Put updated mantissas back into the original value (units, non-arrays)."""
    is_none = lambda x: x is None  # noqa: E731
    kept = jax.tree.map(
        lambda n, o, m: o if (n is None or m) else n, new_view, old_view, mask, is_leaf=is_none
    )

    def put(orig: Any, new: Any) -> Any:
        if new is None:
            return orig
        if isinstance(orig, u.Quantity):
            return u.Quantity(new, unit=orig.unit)
        return new

    return jax.tree.map(put, old, kept, is_leaf=_is_quantity)


class Optimizer:
    """Apply an `optax.GradientTransformation` to the states selected by `wrt`.

    ``opt.init(states)`` returns `states` plus an ``'optimizer'`` entry, a
    `ps.LongTermState` holding ``tx.init`` of the selected values.
    ``opt.update(states, grads)`` returns the states with the selected ones
    moved by ``tx`` (via `optax.apply_updates`) and the optax state advanced.
    `grads` is a state tree with exactly the selected paths, as returned by
    ``ps.augment.grad(loss, opt.wrt)``; value leaves whose gradient is ``None``
    stay unchanged, and a selected state with no entry in `grads` at all is a
    `ps.StateError` naming it.

    ``opt.wrt`` is the selector actually used: `wrt` without the root
    ``'optimizer'`` entry, which is never optimized (so ``wrt=...`` or
    ``wrt=ps.LongTermState`` leave the optax state alone). A `wrt` that
    matches no other state is a `ps.StateError` listing the available paths
    (raised by `init` and `update`). ``repr(opt)`` shows `wrt` as given.

    Examples:
        >>> import jax.numpy as jnp
        >>> import optax
        >>> import purestate as ps
        >>> states = {"w": ps.ParamState(jnp.array([1.0, 2.0])), "n": ps.LongTermState(0)}
        >>> opt = ps.optim.Optimizer(optax.sgd(0.1))
        >>> states = opt.init(states)
        >>> sorted(states)
        ['n', 'optimizer', 'w']
        >>> grads = {"w": ps.ParamState(jnp.array([1.0, -1.0]))}
        >>> states = opt.update(states, grads)
        >>> ps.get(states, "w")
        Array([0.9, 2.1], dtype=float32)

        Everything except the optimizer's own entry, in the usual recipe:

        >>> import numpy as np
        >>> states = {"w": ps.ParamState(np.array([1.0, 2.0], np.float32))}
        >>> opt = ps.optim.Optimizer(optax.sgd(0.1), wrt=...)
        >>> opt.wrt
        All(..., Not(<the root 'optimizer' entry>))
        >>> states = opt.init(states)
        >>> def loss(states):
        ...     return jnp.sum(states["w"].value ** 2), states
        >>> grads, states = ps.augment.grad(loss, opt.wrt)(states)
        >>> sorted(grads)
        ['w']
        >>> states = opt.update(states, grads)
        >>> ps.get(states, "w")  # w - 0.1 * 2w
        Array([0.8, 1.6], dtype=float32)
    """

    __slots__ = ("_requested", "tx", "wrt")
    tx: optax.GradientTransformation
    wrt: Selector
    _requested: Selector

    def __init__(self, tx: optax.GradientTransformation, wrt: SelectorLike = ParamState):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(
                "ps.optim.Optimizer takes an optax.GradientTransformation (an object with "
                f"init and update), e.g. optax.adam(1e-3); got {type(tx).__name__}."
            )
        requested = as_selector(wrt)
        object.__setattr__(self, "tx", tx)
        object.__setattr__(self, "_requested", requested)
        object.__setattr__(self, "wrt", All(requested, Not(_OptimizerEntry())))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ps.optim.Optimizer is immutable; make a new one.")

    def __repr__(self) -> str:
        return f"Optimizer(tx={self.tx!r}, wrt={self._requested!r})"

    def _selected(self, states: StateTree, where: str) -> StateTree:
        part = split_compiled(states, (self.wrt,))[0]
        if not part:  # list the paths that could have been selected
            model = {k: v for k, v in states.items() if k != OPTIMIZER_KEY}
            require_match(part, model, self.wrt, where)
        return part

    def init(self, states: StateTree) -> StateTree:
        """`states` plus ``'optimizer'``: the optax state of the selected values.

        Examples:
            >>> import jax.numpy as jnp
            >>> import optax
            >>> import purestate as ps
            >>> opt = ps.optim.Optimizer(optax.adam(1e-3))
            >>> states = opt.init({"w": ps.ParamState(jnp.zeros(2))})
            >>> type(states["optimizer"]).__name__
            'LongTermState'
        """
        check_tree(states)
        if OPTIMIZER_KEY in states:
            raise StateError(
                f"Optimizer.init: the state tree already has an {OPTIMIZER_KEY!r} entry. "
                "Initialise the optimizer once, on the model's states."
            )
        params = self._selected(states, "Optimizer.init")
        view = {path: _view(s.value) for path, s in iter_states(params)}
        return {**states, OPTIMIZER_KEY: LongTermState(self.tx.init(nest(view)))}

    def update(self, states: StateTree, grads: StateTree) -> StateTree:
        """The states after one step of ``tx`` with `grads`.

        Examples:
            >>> import jax.numpy as jnp
            >>> import optax
            >>> import purestate as ps
            >>> opt = ps.optim.Optimizer(optax.sgd(1.0))
            >>> states = opt.init({"w": ps.ParamState(jnp.ones(2))})
            >>> states = opt.update(states, {"w": ps.ParamState(jnp.ones(2))})
            >>> ps.get(states, "w")
            Array([0., 0.], dtype=float32)
        """
        opt_state = states.get(OPTIMIZER_KEY) if isinstance(states, dict) else None
        if not isinstance(opt_state, LongTermState):
            raise StateError(
                f"Optimizer.update: the state tree has no {OPTIMIZER_KEY!r} LongTermState. "
                "Call states = opt.init(states) once before training."
            )
        params = dict(iter_states(self._selected(states, "Optimizer.update")))
        grad_states = dict(iter_states(grads))
        _check_same_paths(params, grad_states, self.wrt)

        param_views, grad_views, masks = {}, {}, {}
        for path, state in params.items():
            param_views[path] = _view(state.value)
            grad_views[path], masks[path] = _grad_view(
                param_views[path], grad_states[path].value, path
            )
        p_tree, g_tree = nest(param_views), nest(grad_views)
        updates, new_opt_state = self.tx.update(g_tree, opt_state.value, p_tree)
        new_tree = optax.apply_updates(p_tree, updates)

        new_params = {
            path: state.replace(
                _rebuild(state.value, node_at(new_tree, path), param_views[path], masks[path])
            )
            for path, state in params.items()
        }
        return update(states, nest(new_params), {OPTIMIZER_KEY: opt_state.replace(new_opt_state)})


def _check_same_paths(params: dict[Path, State], grads: dict[Path, State], selector: Any) -> None:
    if params.keys() == grads.keys():
        return
    problems = path_differences(
        params,
        grads,
        "no gradient for the selected states",
        "gradients for states that wrt does not select",
    )
    if _OPTIMIZER_PATH in grads.keys() - params.keys():
        problems.append(
            f"the optimizer's own {OPTIMIZER_KEY!r} entry is never optimized, so it takes "
            "no gradient"
        )
    raise StateError(
        f"Optimizer.update: grads do not match the states selected by {selector!r} "
        f"({'; '.join(problems)}). Compute grads with ps.augment.grad(loss, opt.wrt), "
        "or build the Optimizer with a wrt that selects exactly the states you "
        "differentiate."
    )
