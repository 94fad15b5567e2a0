r"""Logistic regression: a linear layer, a sigmoid and binary cross-entropy, by hand.

.. math:: z = X w + b,\quad \hat y = \sigma(z),\quad
          J = -\tfrac{1}{m}\textstyle\sum_i [y_i \log \hat y_i + (1 - y_i)\log(1 - \hat y_i)]

and the document's last formula, with the bias it leaves out:

.. math:: \frac{\partial J}{\partial w} = \frac{1}{m} X^\top (\hat y - y),\qquad
          \frac{\partial J}{\partial b} = \frac{1}{m} \textstyle\sum_i (\hat y_i - y_i)

Shapes: X (m, n), w (n,), b (), y (m,).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from manual_bp._params import check_params, check_shape, params_dtype
from manual_bp._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_in_range,
    check_ndim,
    check_nonempty,
)
from manual_bp.activations import _sigmoid

__all__ = ["LogRegParams", "logreg_loss_and_grads", "logreg_predict_proba"]


class LogRegParams(NamedTuple):
    """Parameters of logistic regression: w (n,) and b, a 0-d array; one floating dtype."""

    w: FloatArray
    b: FloatArray


def _check(params: object, x: ArrayLike) -> tuple[LogRegParams, FloatArray]:
    checked = check_params("params", params, LogRegParams)
    check_ndim("params.w", checked.w, (1,), "(n,)")
    check_shape("params.b", checked.b, (), "a scalar bias")
    xa = as_float_array("x", x)
    check_ndim("x", xa, (2,), "(m, n)")
    check_nonempty("x", xa)
    check_shape("x", xa, (xa.shape[0], checked.w.shape[0]), f"params.w of shape {checked.w.shape}")
    dtype = params_dtype(checked)
    if xa.dtype != dtype:
        raise TypeError(f"x has dtype {xa.dtype} but params have dtype {dtype}; they must match")
    check_finite("x", xa)
    return checked, xa


def logreg_predict_proba(params: LogRegParams, x: ArrayLike) -> FloatArray:
    r"""Predicted probabilities of logistic regression.

    .. math:: \hat y = \sigma(X w + b)

    Args:
        params: :class:`LogRegParams` with w (n,) and b (), finite.
        x: inputs of shape (m, n), of the params' dtype, finite.

    Returns:
        Probabilities of shape (m,) in the params' dtype.

    Raises:
        TypeError: wrong params type or mixed dtypes. ValueError: inconsistent shapes, empty
        batch, non-finite input.

    >>> logreg_predict_proba(LogRegParams(np.array([1.0]), np.array(0.0)), np.array([[0.0]]))
    array([0.5])
    """
    checked, xa = _check(params, x)
    return _sigmoid(xa @ checked.w + checked.b).astype(xa.dtype, copy=False)


def logreg_loss_and_grads(
    params: LogRegParams, x: ArrayLike, y: ArrayLike
) -> tuple[np.floating[Any], LogRegParams]:
    r"""Binary cross-entropy of logistic regression and its gradient.

    .. math:: J = \tfrac{1}{m}\textstyle\sum_i [\max(z_i, 0) - y_i z_i + \log(1 + e^{-|z_i|})],
              \quad dw = X^\top(\sigma(z) - y)/m, \quad db = \textstyle\sum_i (\sigma(z_i) - y_i)/m

    The loss is computed from the logits z (the stable form of
    :func:`manual_bp.sigmoid_binary_cross_entropy`), so it is finite for any finite z.

    Args:
        params: :class:`LogRegParams` with w (n,) and b (), finite.
        x: inputs (m, n) of the params' dtype. y: targets (m,) in [0, 1], cast to that dtype.

    Returns:
        ``(loss, grads)``: a scalar of the params' dtype and :class:`LogRegParams` of gradients.

    Raises:
        TypeError: wrong params type or mixed dtypes. ValueError: inconsistent shapes, empty
        batch, y outside [0, 1], non-finite input.

    >>> params = LogRegParams(np.array([0.0]), np.array(0.0))
    >>> loss, g = logreg_loss_and_grads(params, np.array([[2.0]]), np.array([1.0]))
    >>> round(float(loss), 4), g.w, g.b
    (0.6931, array([-1.]), array(-0.5))
    """
    checked, xa = _check(params, x)
    ya = as_float_array("y", y, dtype=xa.dtype)
    check_shape("y", ya, (xa.shape[0],), f"x of shape {xa.shape}")
    check_finite("y", ya)
    check_in_range("y", ya, 0.0, 1.0)
    m = xa.shape[0]
    z = xa @ checked.w + checked.b
    # -log s(z) = softplus(-z), softplus(z) = max(z, 0) + log1p(exp(-|z|)): never overflows.
    loss = np.sum(np.maximum(z, 0) - ya * z + np.log1p(np.exp(-np.abs(z)))) / m
    dz = ((_sigmoid(z) - ya) / m).astype(xa.dtype, copy=False)
    return xa.dtype.type(loss), LogRegParams(xa.T @ dz, np.asarray(np.sum(dz)))
