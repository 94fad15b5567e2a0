"""Gradient descent: one plain SGD step on any parameter NamedTuple."""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np

from manual_bp._params import check_shape
from manual_bp._validation import FloatArray, check_lr, shape_str

P = TypeVar("P", bound=NamedTuple)

__all__ = ["sgd_step"]


def sgd_step(params: P, grads: P, lr: float) -> P:
    r"""One step of gradient descent, returning new params of the same type.

    .. math:: \theta \leftarrow \theta - \eta\, \frac{\partial J}{\partial \theta}

    Args:
        params: a parameter NamedTuple (:class:`~manual_bp.MLPParams`,
            :class:`~manual_bp.LogRegParams`) of floating arrays.
        grads: gradients of the same type, each field of its parameter's shape.
        lr: learning rate, a finite positive number; applied in each parameter's dtype so
            float32 stays float32.

    Returns:
        New params of ``type(params)``; ``params`` and ``grads`` are not modified.

    Raises:
        TypeError: params and grads of different types or dtypes. ValueError: shape mismatch or a bad lr.

    >>> from manual_bp.logreg import LogRegParams
    >>> sgd_step(LogRegParams(np.array([1.0]), np.array(0.0)),
    ...          LogRegParams(np.array([2.0]), np.array(1.0)), lr=0.5)
    LogRegParams(w=array([0.]), b=array(-0.5))
    """
    if type(grads) is not type(params) or not hasattr(params, "_fields"):
        raise TypeError(
            f"params and grads must be the same NamedTuple type, got {type(params).__name__} "
            f"and {type(grads).__name__}"
        )
    lr = check_lr(lr)
    new: dict[str, FloatArray] = {}
    for field, p, g in zip(params._fields, params, grads, strict=True):
        pa, ga = np.asarray(p), np.asarray(g)
        if pa.dtype.kind != "f" or ga.dtype != pa.dtype:
            raise TypeError(
                f"params.{field} and grads.{field} must be floating arrays of one dtype, "
                f"got {pa.dtype} and {ga.dtype}"
            )
        check_shape(
            f"grads.{field}", ga, pa.shape, f"params.{field} of shape {shape_str(pa.shape)}"
        )
        # np.asarray keeps 0-d parameters (a bias b) arrays rather than numpy scalars.
        new[field] = np.asarray(pa - pa.dtype.type(lr) * ga)
    return params._replace(**new)
