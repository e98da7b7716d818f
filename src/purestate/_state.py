"""Typed, immutable wrappers for the leaves of a state tree."""

from __future__ import annotations

import copy
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "PYTHON_NUMBERS",
    "LongTermState",
    "ParamState",
    "RandomState",
    "ShortTermState",
    "State",
    "new_state",
    "normalise_value",
]

_VALUE_KEY = (jax.tree_util.GetAttrKey("value"),)


PYTHON_NUMBERS = (bool, int, float, complex)


def _as_array_if_python_number(x: Any) -> Any:
    # An explicit dtype makes the array strongly typed, so a later update with
    # a computed array of the same dtype does not change the jit cache key.
    if isinstance(x, PYTHON_NUMBERS):
        return jnp.asarray(x, dtype=jax.dtypes.canonicalize_dtype(type(x)))
    return x


def normalise_value(value: Any) -> Any:
    """Turn Python numbers into arrays, as `jax.jit` does with its arguments:
    the value itself, a Quantity's mantissa, and the leaves of dicts, lists and
    tuples. Other pytree nodes (an `equinox.Module`) keep their fields as they
    are: there a Python number is a static hyperparameter, as in Equinox."""
    if isinstance(value, (jax.Array, np.ndarray)) or value is None:
        return value  # the common case, kept cheap
    if isinstance(value, PYTHON_NUMBERS):
        return _as_array_if_python_number(value)
    if isinstance(value, u.Quantity):
        mantissa = value.mantissa
        if isinstance(mantissa, PYTHON_NUMBERS):
            return u.Quantity(_as_array_if_python_number(mantissa), unit=value.unit)
        return value
    if type(value) in (dict, list, tuple):
        items = value.items() if type(value) is dict else enumerate(value)
        normalised = {k: normalise_value(v) for k, v in items}
        return normalised if type(value) is dict else type(value)(normalised.values())
    return value


def _flatten(state: State) -> tuple[tuple[Any], None]:
    return (state.value,), None


def _flatten_with_keys(state: State) -> tuple[tuple[tuple[Any, Any]], None]:
    return ((_VALUE_KEY[0], state.value),), None


def _register(cls: type[State]) -> None:
    new = object.__new__
    set_value = set_value_unchecked

    def unflatten(_: None, children: Any) -> State:
        # Bypass __init__: children may be tracers, None or sentinels. This runs
        # for every state on every jitted call, so it uses the slot directly.
        obj = new(cls)
        set_value(obj, children[0])
        return obj

    jax.tree_util.register_pytree_with_keys(
        cls, _flatten_with_keys, unflatten, flatten_func=_flatten
    )


class State:
    """A frozen wrapper around one value of a model's state.

    A `State` is a pytree node whose only child is `value`, so JAX transforms
    see straight through it while the kind (the class) stays in the tree
    structure. Subclass it (or one of the kinds) for your own kinds; selecting
    by kind respects subclassing. Python floats are turned into arrays here so
    that they can be differentiated.

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> w = ps.ParamState(jnp.ones(3))
        >>> w.value.shape
        (3,)
        >>> w2 = w.replace(jnp.zeros(3))
        >>> type(w2).__name__, float(w2.value.sum())
        ('ParamState', 0.0)
    """

    __slots__ = ("value",)
    value: Any

    def __init__(self, value: Any):
        object.__setattr__(self, "value", normalise_value(value))

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # Unregistered subclasses would silently become pytree leaves.
        _register(cls)

    def replace(self, value: Any) -> State:
        """A new state of the same kind holding `value`.

        Examples:
            >>> import purestate as ps
            >>> ps.ShortTermState(0.0).replace(1.0).value
            Array(1., dtype=float32)
        """
        return type(self)(value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"{type(self).__name__} is immutable: use `state.replace(new_value)` "
            "or `ps.set(tree, path, new_value)` to get a new one."
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable.")

    def __reduce__(self) -> tuple[Any, tuple[type[State], Any]]:
        # The default protocol restores __slots__ with setattr, which a frozen
        # class refuses; rebuild through the constructor's slot instead.
        return new_state, (type(self), self.value)

    def __copy__(self) -> State:
        return self  # immutable: a copy is the same value

    def __deepcopy__(self, memo: dict[int, Any]) -> State:
        return new_state(type(self), copy.deepcopy(self.value, memo))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


def new_state(kind: type[State], value: Any) -> State:
    """A state of `kind` holding `value` as it is (no conversion of Python
    numbers): for values that may be tracers, None or gradients."""
    state = object.__new__(kind)
    set_value_unchecked(state, value)
    return state


# Sets a new state's `value` slot without `__init__`'s normalisation: for
# values that may be tracers, None or sentinels, on paths that run every call.
set_value_unchecked = State.__dict__["value"].__set__
_register(State)


class ParamState(State):
    """A trainable parameter (weights, biases).

    Examples:
        >>> import purestate as ps
        >>> isinstance(ps.ParamState(1.0), ps.State)
        True
    """

    __slots__ = ()


class ShortTermState(State):
    """Fast dynamics: membrane potentials, spikes, recurrent hidden states.

    Examples:
        >>> import purestate as ps
        >>> ps.ShortTermState(0.0).value.shape
        ()
    """

    __slots__ = ()


class LongTermState(State):
    """Slow statistics: running means, counters, optimizer state.

    Examples:
        >>> import purestate as ps
        >>> ps.LongTermState(0).value
        Array(0, dtype=int32)
    """

    __slots__ = ()


class RandomState(State):
    """A JAX PRNG key: a typed key (`jax.random.key`) or a raw ``uint32[2]``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> ps.RandomState(jax.random.key(0)).value.shape
        ()
    """

    __slots__ = ()
