"""Spike functions: a Heaviside step forward, a smooth surrogate derivative backward.

A spiking neuron emits ``H(x)`` (``x`` is the normalised distance of the
membrane potential above threshold), whose true derivative is zero almost
everywhere. Each surrogate here keeps the exact step in the forward pass and
replaces the derivative by a smooth bump ``g(x)`` through `jax.custom_jvp`, so
`jax.grad`, `jax.jvp` and `jax.vjp` all see ``g``.

Surrogates are `equinox.Module`s holding only Python-number hyperparameters:
they are hashable and can be fields of other modules (``LIF(spk_fun=...)``).

Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import purestate as ps
    >>> spike = ps.surrogate.ReluGrad(alpha=0.3, width=1.0)
    >>> spike(jnp.array([-0.5, 0.0, 0.5]))
    Array([0., 1., 1.], dtype=float32)
    >>> jax.grad(lambda x: spike(x).sum())(jnp.array([-0.5, 0.0, 2.0]))
    Array([0.15, 0.3 , 0.  ], dtype=float32)
"""

from __future__ import annotations

import functools
import math
from typing import Any

import brainunit as u
import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["Surrogate", "heaviside", "ReluGrad", "Sigmoid", "InvSquare", "Arctan", "Gaussian"]


def heaviside(x: Any) -> jax.Array:
    """The step function with ``H(0) = 1``, in the dtype of `x` (no surrogate:
    its gradient is zero).

    Examples:
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> ps.surrogate.heaviside(jnp.array([-1.0, 0.0, 2.0]))
        Array([0., 1., 1.], dtype=float32)
    """
    x = jnp.asarray(x)
    return (x >= 0).astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _spike(surrogate: Surrogate, x: jax.Array) -> jax.Array:
    return heaviside(x)


@_spike.defjvp
def _spike_jvp(surrogate: Surrogate, primals: tuple, tangents: tuple) -> tuple:
    (x,), (dx,) = primals, tangents
    slope = surrogate.surrogate_grad(x).astype(x.dtype)
    return heaviside(x), slope * dx


def _dimensionless(x: Any, who: str) -> jax.Array:
    if isinstance(x, u.Quantity):
        if not x.is_unitless:
            raise u.DimensionMismatchError(
                f"{who} takes a dimensionless input (a normalised distance above "
                f"threshold, e.g. (V - V_th) / (V_th - V_reset)); got a Quantity in "
                f"{x.unit}. Divide by a reference of the same unit first."
            )
        x = x.mantissa
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(float)
    return x


class Surrogate(eqx.Module):
    """Base class: Heaviside forward, ``surrogate_grad(x)`` backward.

    Subclasses set hyperparameters as fields and implement `surrogate_grad`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> class Box(ps.surrogate.Surrogate):
        ...     def surrogate_grad(self, x):
        ...         return (jnp.abs(x) < 0.5).astype(x.dtype)
        >>> jax.grad(lambda x: Box()(x))(0.2)
        Array(1., dtype=float32, weak_type=True)
    """

    def surrogate_grad(self, x: jax.Array) -> jax.Array:
        """The derivative used in place of the step's (zero) derivative."""
        raise NotImplementedError

    def __call__(self, x: Any) -> jax.Array:
        return _spike(self, _dimensionless(x, type(self).__name__))


class ReluGrad(Surrogate):
    """Triangular surrogate: ``g(x) = alpha * max(width - |x|, 0)``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> round(float(jax.grad(ps.surrogate.ReluGrad(alpha=0.3, width=1.0))(0.25)), 6)
        0.225
    """

    alpha: float = 0.3
    width: float = 1.0

    def surrogate_grad(self, x: jax.Array) -> jax.Array:
        return self.alpha * jnp.maximum(self.width - jnp.abs(x), 0.0)


class Sigmoid(Surrogate):
    """Derivative of a steep logistic: ``g(x) = alpha * s(alpha x) * (1 - s(alpha x))``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> float(jax.grad(ps.surrogate.Sigmoid(alpha=4.0))(0.0))
        1.0
    """

    alpha: float = 4.0

    def surrogate_grad(self, x: jax.Array) -> jax.Array:
        s = jax.nn.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)


class InvSquare(Surrogate):
    """Fast-sigmoid (SuperSpike) surrogate: ``g(x) = 1 / (alpha |x| + 1)^2``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> float(jax.grad(ps.surrogate.InvSquare(alpha=100.0))(0.01))
        0.25
    """

    alpha: float = 100.0

    def surrogate_grad(self, x: jax.Array) -> jax.Array:
        return 1.0 / (self.alpha * jnp.abs(x) + 1.0) ** 2


class Arctan(Surrogate):
    """Derivative of ``arctan(pi/2 alpha x) / pi``: ``g(x) = alpha / 2 / (1 + (pi/2 alpha x)^2)``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> float(jax.grad(ps.surrogate.Arctan(alpha=2.0))(0.0))
        1.0
    """

    alpha: float = 2.0

    def surrogate_grad(self, x: jax.Array) -> jax.Array:
        return self.alpha / 2.0 / (1.0 + (math.pi / 2.0 * self.alpha * x) ** 2)


class Gaussian(Surrogate):
    """Gaussian bump: ``g(x) = exp(-x^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)``.

    Examples:
        >>> import jax
        >>> import purestate as ps
        >>> round(float(jax.grad(ps.surrogate.Gaussian(sigma=0.5))(0.0)), 4)
        0.7979
    """

    sigma: float = 0.5

    def surrogate_grad(self, x: jax.Array) -> jax.Array:
        return jnp.exp(-(x**2) / (2.0 * self.sigma**2)) / (math.sqrt(2.0 * math.pi) * self.sigma)
