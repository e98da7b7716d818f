"""`Sequential`: layers applied one after another."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .._tree import StateTree
from ._module import Module, run_child, split_key

__all__ = ["Sequential"]


class Sequential(Module):
    """Apply `layers` in order; layer ``i``'s states live under the key ``str(i)``.

    A layer is a `ps.nn.Module` or a plain function of its input (an
    activation such as `jax.nn.relu`, a unit conversion such as
    ``lambda x: x * u.mA``); layers without states contribute no key. Each
    layer gets its own key from `init`, split deterministically by position.

    Examples:
        >>> import brainunit as u
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> net = ps.nn.Sequential(
        ...     ps.nn.Linear(4, 8), lambda x: x * u.mA, ps.nn.LIF(8), ps.nn.Linear(8, 2)
        ... )
        >>> states = net.init(jax.random.key(0), batch_size=3)
        >>> sorted(states)
        ['0', '2', '3']
        >>> with ps.environ.context(dt=0.1 * u.ms):
        ...     y, states = net(states, jnp.ones((3, 4)))
        >>> y.shape
        (3, 2)
    """

    layers: tuple[Any, ...]

    def __init__(self, *layers: Module | Callable):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(
                    f"Sequential: layer {i} is a {type(layer).__name__}; layers are "
                    "ps.nn.Modules or functions of the input."
                )
        self.layers = tuple(layers)

    def children(self) -> Iterator[tuple[str, Module]]:
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Module):
                yield str(i), layer

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        states: StateTree = {}
        keys = split_key(key, len(self.layers))
        for i, (layer, layer_key) in enumerate(zip(self.layers, keys, strict=True)):
            if isinstance(layer, Module):
                sub = layer.init(layer_key, batch_size)
                if sub:
                    states[str(i)] = sub
        return states

    def __call__(self, states: StateTree, *inputs: Any) -> tuple[Any, StateTree]:
        if not self.layers:
            return (inputs[0] if len(inputs) == 1 else inputs), states
        out: Any = inputs
        for i, layer in enumerate(self.layers):
            out, states = run_child(layer, (str(i),), states, *out)
            out = (out,)
        return out[0], states

    def __getitem__(self, i: int) -> Any:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)
