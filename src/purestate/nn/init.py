"""Initialisers ``(key, shape, dtype) -> array`` for the parameters of `ps.nn` layers.

Weights are laid out ``(in, ..., out)``: the fan-in is the product of every
axis but the last. Parameterised initialisers (`normal`, `constant`) return
small hashable objects, so modules holding them stay hashable and equal when
their settings are.

Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import purestate as ps
    >>> w = ps.nn.init.kaiming_normal(jax.random.key(0), (512, 256), jnp.float32)
    >>> round(float(w.std()) / (2 / 512) ** 0.5, 1)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = [
    "Initializer",
    "zeros",
    "ones",
    "constant",
    "normal",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "lecun_normal",
]

Shape = Sequence[int]
Initializer = Any
"""The type of an initializer: a callable ``(key, shape, dtype) -> array``."""


def _fan_in(shape: Shape) -> int:
    if len(shape) == 0:
        return 1
    if len(shape) == 1:
        return int(shape[0])
    return math.prod(shape[:-1])


def _fan_out(shape: Shape) -> int:
    return int(shape[-1]) if shape else 1


def zeros(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """All zeros (the key is unused).

    Examples:
        >>> import purestate as ps
        >>> ps.nn.init.zeros(None, (2,), float)
        Array([0., 0.], dtype=float32)
    """
    return jnp.zeros(shape, dtype)


def ones(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """All ones (the key is unused).

    Examples:
        >>> import purestate as ps
        >>> ps.nn.init.ones(None, (2,), float)
        Array([1., 1.], dtype=float32)
    """
    return jnp.ones(shape, dtype)


class constant(eqx.Module):  # lower case: used like a function, constant(0.1)
    """An initialiser filling the array with `value`.

    Examples:
        >>> import purestate as ps
        >>> ps.nn.init.constant(0.5)(None, (2,), float)
        Array([0.5, 0.5], dtype=float32)
    """

    value: float

    def __call__(self, key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
        return jnp.full(shape, self.value, dtype)


class normal(eqx.Module):  # lower case: used like a function, normal(0.01)
    """An initialiser drawing from ``N(0, std^2)``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> w = ps.nn.init.normal(0.01)(jax.random.key(0), (1000,), float)
        >>> round(float(w.std()), 2)
        0.01
    """

    std: float = 1.0

    def __call__(self, key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
        return self.std * jax.random.normal(key, shape, dtype)


def kaiming_normal(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """He initialisation for ReLU-like layers: ``N(0, 2 / fan_in)``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> ps.nn.init.kaiming_normal(jax.random.key(0), (3, 4), float).shape
        (3, 4)
    """
    return math.sqrt(2.0 / _fan_in(shape)) * jax.random.normal(key, shape, dtype)


def kaiming_uniform(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """He initialisation, uniform: ``U(-b, b)`` with ``b = sqrt(6 / fan_in)``
    (standard deviation ``sqrt(2 / fan_in)``).

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> w = ps.nn.init.kaiming_uniform(jax.random.key(0), (6, 4), float)
        >>> bool(abs(w).max() <= 1.0)
        True
    """
    bound = math.sqrt(6.0 / _fan_in(shape))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def xavier_normal(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Glorot initialisation: ``N(0, 2 / (fan_in + fan_out))``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> ps.nn.init.xavier_normal(jax.random.key(0), (3, 4), float).dtype
        dtype('float32')
    """
    std = math.sqrt(2.0 / (_fan_in(shape) + _fan_out(shape)))
    return std * jax.random.normal(key, shape, dtype)


def lecun_normal(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """LeCun initialisation: ``N(0, 1 / fan_in)``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> ps.nn.init.lecun_normal(jax.random.key(0), (3, 4), float).shape
        (3, 4)
    """
    return math.sqrt(1.0 / _fan_in(shape)) * jax.random.normal(key, shape, dtype)
