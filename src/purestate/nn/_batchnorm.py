"""`BatchNorm`: batch normalisation with running statistics in the state tree."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import brainunit as u
import jax
import jax.numpy as jnp

from .. import environ
from .._state import LongTermState, ParamState
from .._tree import StateTree
from ._module import Module
from ._units import UnitError

__all__ = ["BatchNorm"]


class BatchNorm(Module):
    """Normalise each feature by the batch's mean and variance:
    ``y = (x - mean) / sqrt(var + eps) * weight + bias``.

    States: ``{'mean': LongTermState(zeros), 'var': LongTermState(ones),
    'weight': ParamState(ones), 'bias': ParamState(zeros)}``, each of shape
    ``(num_features,)`` (no `weight` and `bias` with ``affine=False``).

    The features lie along `feature_axis` of `x` (the last, by default); the
    statistics are taken over every other axis of `x` and, with `axis_name`,
    across the lanes (or devices) of the enclosing ``ps.augment.vmap`` /
    ``ps.augment.pmap`` of that name (``jax.lax.pmean``), so a per-sample
    function under ``ps.augment.vmap(..., axis_name='batch')`` sees the whole
    batch. The variance is the biased one (divided by the number of samples).

    In training (``ps.environ.get('fit', True)`` is True and not
    ``inference``) `x` is normalised by the batch statistics and the running
    ones move towards them:
    ``mean <- momentum * mean + (1 - momentum) * batch_mean``, likewise `var`.
    Otherwise (``fit=False``, or ``inference=True``) `x` is normalised by the
    running statistics, which stay as they are. The running statistics are
    the same on every lane, so they come back unbatched from
    ``ps.augment.vmap``.

    `x` is a plain array: a `brainunit.Quantity` raises `ps.nn.UnitError`
    (divide it by its unit first). A training step with nothing to average
    over (no axis besides the features and no `axis_name`) raises
    `ValueError`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import purestate as ps
        >>> bn = ps.nn.BatchNorm(2, momentum=0.9)
        >>> states = bn.init()
        >>> x = jnp.asarray([[1.0, 10.0], [3.0, 30.0]])
        >>> y, states = bn(states, x)
        >>> y.round(3)
        Array([[-1., -1.],
               [ 1.,  1.]], dtype=float32)
        >>> ps.get(states, "mean"), ps.get(states, "var")  # 0.1 * batch mean, 0.9 + 0.1 * var
        (Array([0.2, 2. ], dtype=float32), Array([ 1. , 10.9], dtype=float32))

        Per sample under ``ps.augment.vmap``, the statistics taken across lanes:

        >>> bn_lanes = ps.nn.BatchNorm(2, momentum=0.9, axis_name="batch")
        >>> y2, states2 = ps.augment.vmap(bn_lanes, axis_name="batch")(bn_lanes.init(), x)
        >>> bool(jnp.allclose(y, y2)), ps.get(states2, "mean").shape
        (True, (2,))
        >>> with ps.environ.context(fit=False):  # running statistics, unchanged
        ...     y3, same = bn(states, x)
        >>> same["mean"] is states["mean"]
        True
    """

    num_features: int
    axis_name: Any
    momentum: float
    eps: float
    affine: bool
    feature_axis: int
    inference: bool
    dtype: Any

    def __init__(
        self,
        num_features: int,
        *,
        axis_name: Hashable | tuple[Hashable, ...] | None = None,
        momentum: float = 0.99,
        eps: float = 1e-5,
        affine: bool = True,
        feature_axis: int = -1,
        inference: bool = False,
        dtype: Any = None,
    ):
        self.num_features = int(num_features)
        if self.num_features < 1:
            raise ValueError(f"BatchNorm: num_features must be >= 1; got {num_features!r}.")
        self.axis_name = axis_name
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1]; got {momentum!r}.")
        self.momentum = float(momentum)
        if not float(eps) >= 0.0:
            raise ValueError(f"BatchNorm: eps must be >= 0; got {eps!r}.")
        self.eps = float(eps)
        self.affine = bool(affine)
        self.feature_axis = int(feature_axis)
        self.inference = bool(inference)
        self.dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)

    def init(self, key: Any = None, batch_size: int | None = None) -> StateTree:
        shape = (self.num_features,)
        states: StateTree = {
            "mean": LongTermState(jnp.zeros(shape, self.dtype)),
            "var": LongTermState(jnp.ones(shape, self.dtype)),
        }
        if self.affine:
            states["weight"] = ParamState(jnp.ones(shape, self.dtype))
            states["bias"] = ParamState(jnp.zeros(shape, self.dtype))
        return states

    def __call__(self, states: StateTree, x: Any) -> tuple[jax.Array, StateTree]:
        if isinstance(x, u.Quantity):
            raise UnitError(
                f"BatchNorm: the input must be a plain array; got a Quantity in {x.unit}. "
                "Divide it by a unit first, e.g. x / u.mV."
            )
        x = jnp.asarray(x)
        if x.ndim == 0:
            raise ValueError("BatchNorm: the input must have a feature axis; got a scalar.")
        axis = self.feature_axis % x.ndim if -x.ndim <= self.feature_axis < x.ndim else None
        if axis is None or x.shape[axis] != self.num_features:
            raise ValueError(
                f"BatchNorm: expected {self.num_features} features along axis "
                f"{self.feature_axis} of the input; got shape {x.shape}."
            )
        reduce = tuple(a for a in range(x.ndim) if a != axis)
        shape = tuple(self.num_features if a == axis else 1 for a in range(x.ndim))

        def along(v: jax.Array) -> jax.Array:
            return jnp.reshape(v, shape)

        training = not self.inference and environ.get("fit", True)
        new_states = states
        if training:
            if not reduce and self.axis_name is None:
                raise ValueError(
                    f"BatchNorm: training needs a batch, but the input of shape {x.shape} has "
                    "only the feature axis and no axis_name is set. Give the input a batch "
                    "axis, or run under ps.augment.vmap(..., axis_name=name) with "
                    "BatchNorm(..., axis_name=name)."
                )
            mean = self._pmean(jnp.mean(x, axis=reduce))
            var = self._pmean(jnp.mean(jnp.square(x - along(mean)), axis=reduce))
            m = self.momentum
            running_mean = m * states["mean"].value + (1.0 - m) * mean
            running_var = m * states["var"].value + (1.0 - m) * var
            new_states = {
                **states,
                "mean": states["mean"].replace(running_mean.astype(self.dtype)),
                "var": states["var"].replace(running_var.astype(self.dtype)),
            }
        else:
            mean, var = states["mean"].value, states["var"].value
        y = (x - along(mean)) * along(jax.lax.rsqrt(var + self.eps))
        if self.affine:
            y = y * along(states["weight"].value) + along(states["bias"].value)
        return y, new_states

    def _pmean(self, v: jax.Array) -> jax.Array:
        if self.axis_name is None:
            return v
        try:
            return jax.lax.pmean(v, self.axis_name)
        except NameError as error:
            raise NameError(
                f"BatchNorm(axis_name={self.axis_name!r}) averages across the lanes of an "
                f"enclosing ps.augment.vmap or ps.augment.pmap with axis_name="
                f"{self.axis_name!r}, and there is none ({error}). Run it under one, or drop "
                "axis_name to average over the input's own axes only."
            ) from error
