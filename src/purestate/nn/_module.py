"""`Module`: an immutable model description whose state lives in a state tree."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator
from typing import Any

import equinox as eqx
import jax

from .._state import State
from .._tree import StateTree, node_at, with_node
from ..environ import content_key

__all__ = ["Module", "as_key", "split_key"]


def as_key(key: Any) -> Any:
    """Accept a typed key, a raw ``uint32[2]`` key, an ``int`` seed or ``None``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return jax.random.key(key)
    return key


def split_key(key: Any, n: int) -> list[Any]:
    """`n` independent keys from `key` (``None`` stays ``None``)."""
    key = as_key(key)
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


def require_key(key: Any, who: str) -> Any:
    key = as_key(key)
    if key is None:
        raise TypeError(
            f"{who}.init needs a PRNG key to draw its parameters: pass "
            "jax.random.key(seed) (or an int seed) as the first argument."
        )
    return key


class Module(eqx.Module):
    """Base class of `ps.nn` models: immutable hyperparameters, explicit state.

    A module is a frozen dataclass (an `equinox.Module`) holding only
    hyperparameters. Its state is made by ``init(key, batch_size=None)`` and
    threaded through ``module(states, *inputs) -> (out, new_states)``.

    Child modules stored as fields are found automatically: the default
    `init` initialises each child with its own key (split deterministically in
    field order) and puts its tree under the field's name; a child without
    states contributes no key. `call_child` runs a child on its subtree.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> class MLP(ps.nn.Module):
        ...     hidden: ps.nn.Linear
        ...     out: ps.nn.Linear
        ...     def __init__(self, n_in, n_hidden, n_out):
        ...         self.hidden = ps.nn.Linear(n_in, n_hidden)
        ...         self.out = ps.nn.Linear(n_hidden, n_out)
        ...     def __call__(self, states, x):
        ...         h, states = self.call_child("hidden", states, x)
        ...         return self.call_child("out", states, jax.nn.relu(h))
        >>> model = MLP(3, 8, 2)
        >>> states = model.init(jax.random.key(0))
        >>> sorted(ps.flatten(states))
        [('hidden', 'bias'), ('hidden', 'weight'), ('out', 'bias'), ('out', 'weight')]
        >>> y, states = model(states, jnp.ones(3))
        >>> y.shape
        (2,)
    """

    def children(self) -> Iterator[tuple[str, Module]]:
        """The ``(name, module)`` pairs of the child modules, in field order.

        A field holding a module is named by the field; a field holding a
        tuple, list or dict of modules gives ``'field/0'``, ``'field/key'``, ...

        Examples:
            >>> import purestate as ps
            >>> tuple(name for name, _ in ps.nn.Sequential(ps.nn.Linear(2, 2)).children())
            ('0',)
        """
        for field in dataclasses.fields(self):
            value = getattr(self, field.name, None)
            if isinstance(value, Module):
                yield field.name, value
            elif isinstance(value, (tuple, list)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{field.name}/{i}", item
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, Module):
                        yield f"{field.name}/{key}", item

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        """The initial state tree: each child's tree under its name.

        `key` is a PRNG key (typed or raw) or an ``int`` seed; modules that draw
        nothing accept ``None``. `batch_size` prepends a batch axis to
        per-sample dynamics (membrane potentials), not to parameters.

        Examples:
            >>> import jax
            >>> import purestate as ps
            >>> model = ps.nn.Sequential(ps.nn.Linear(2, 3), ps.nn.Linear(3, 1))
            >>> list(model.init(jax.random.key(0)))
            ['0', '1']
        """
        children = list(self.children())
        states: StateTree = {}
        for (name, child), child_key in zip(children, split_key(key, len(children)), strict=True):
            sub = child.init(child_key, batch_size)
            if sub:
                states = with_node(states, tuple(name.split("/")), sub)
        return states

    def call_child(
        self, name: str, states: StateTree, *inputs: Any, **kwargs: Any
    ) -> tuple[Any, StateTree]:
        """Run the child module `name` (as listed by `children`, e.g. ``'encoder'``
        or ``'layers/0'``) on its subtree; return its output and `states` with
        that subtree replaced.

        Examples:
            >>> import jax
            >>> import jax.numpy as jnp
            >>> import purestate as ps
            >>> class Wrap(ps.nn.Module):
            ...     inner: ps.nn.Linear
            ...     def __call__(self, states, x):
            ...         return self.call_child("inner", states, x)
            >>> model = Wrap(ps.nn.Linear(2, 1))
            >>> y, _ = model(model.init(jax.random.key(0)), jnp.ones(2))
            >>> y.shape
            (1,)
        """
        path = tuple(name.split("/"))
        child = getattr(self, path[0])
        if len(path) == 2:
            child = child[int(path[1])] if isinstance(child, (tuple, list)) else child[path[1]]
        return run_child(child, path, states, *inputs, **kwargs)

    @abc.abstractmethod
    def __call__(self, states: StateTree, *inputs: Any) -> tuple[Any, StateTree]:
        """One step: ``(out, new_states)``."""

    def __check_init__(self) -> None:
        for field in dataclasses.fields(self):
            if isinstance(getattr(self, field.name, None), State):
                raise TypeError(
                    f"{type(self).__name__}.{field.name} holds a {type(getattr(self, field.name)).__name__}; "
                    "modules hold hyperparameters only. Create states in init(key, "
                    "batch_size) and return them in the state tree."
                )

    def __hash__(self) -> int:
        # Quantities (tau = 5 * u.ms) are unhashable; hash a stand-in that is
        # equal exactly when the values are.
        return hash(
            (
                type(self),
                *(content_key(getattr(self, f.name), f.name) for f in dataclasses.fields(self)),
            )
        )


def run_child(
    child: Any, path: tuple[str, ...], states: StateTree, *inputs: Any, **kwargs: Any
) -> tuple[Any, StateTree]:
    """Run `child` (a `Module`, or a plain function of the inputs) on its
    subtree at `path` (absent when the child has no states)."""
    if not isinstance(child, Module):
        return child(*inputs, **kwargs), states
    # A child without states has no subtree: it gets an empty one.
    out, new_sub = child(node_at(states, path, {}), *inputs, **kwargs)
    if new_sub:
        states = with_node(states, path, new_sub)
    return out, states
