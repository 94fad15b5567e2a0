"""Losses and their gradients: cross-entropy and binary cross-entropy, from probabilities
and from logits.

Conventions: samples are rows, the loss is the mean over the m samples (the sum over every
other axis), labels are cast to the dtype of the values they label, and the result keeps that
dtype. Terms with a zero label contribute 0 (``0 log 0 = 0``), even where the probability is 0.
Shapes must match exactly; every input must be finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from manual_bp._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_in_range,
    check_ndim,
    check_nonempty,
    check_same_shape,
)
from manual_bp.activations import _log_softmax, _sigmoid, _softmax

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "sigmoid_binary_cross_entropy",
    "sigmoid_binary_cross_entropy_grad",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
]


def _pair(
    name: str,
    value: ArrayLike,
    labels: ArrayLike,
    ndims: tuple[int, ...],
    what: str,
) -> tuple[FloatArray, FloatArray]:
    """Validate (values, labels): floating, same shape, rank in ``ndims``, non-empty, finite."""
    a = as_float_array(name, value)
    y = as_float_array("y", labels, dtype=a.dtype)
    check_ndim(name, a, ndims, what)
    check_same_shape("y", y, name, a)
    check_nonempty(name, a)
    check_finite(name, a)
    check_finite("y", y)
    return a, y


def _masked_log(x: FloatArray, where: NDArray[np.bool_], *, log1p: bool = False) -> FloatArray:
    """log(x) (or log1p(x)) where ``where`` is true, 0 elsewhere: the convention 0 * log 0 = 0.

    log(0) = -inf is the exact value where the mask is true, so only that division-by-zero
    warning is silenced; masked-out elements are never evaluated.
    """
    out = np.zeros_like(x)
    with np.errstate(divide="ignore"):
        (np.log1p if log1p else np.log)(x, out=out, where=where)
    return out


def _scalar(value: Any, dtype: np.dtype[Any]) -> np.floating[Any]:
    result: np.floating[Any] = dtype.type(value)
    return result


def cross_entropy(p: ArrayLike, y: ArrayLike) -> np.floating[Any]:
    r"""Cross-entropy of predicted probabilities against labels, averaged over the batch.

    .. math:: J = -\frac{1}{m} \sum_{i=1}^{m} \sum_{c=1}^{k} y_{ic} \log p_{ic}

    (The source document writes J = sum y log p: the minus sign and the 1/m are missing there.)

    Args:
        p: probabilities of shape (m, k), entries in [0, 1].
        y: labels of shape (m, k), entries >= 0 (one-hot or soft).

    Returns:
        Scalar of ``p``'s dtype; +inf if some p = 0 where y > 0. Gradient: :func:`cross_entropy_grad`.

    Raises:
        ValueError: on shape mismatch, empty batch, p outside [0, 1], y < 0, non-finite input.

    >>> cross_entropy(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.float64(0.34657359027997264)
    """
    p, y = _pair("p", p, y, (2,), "(m, k)")
    check_in_range("p", p, 0.0, 1.0)
    check_in_range("y", y, 0.0, None)
    m = p.shape[0]
    return _scalar(-np.sum(y * _masked_log(p, y != 0)) / m, p.dtype)


def cross_entropy_grad(p: ArrayLike, y: ArrayLike) -> FloatArray:
    r"""Gradient of :func:`cross_entropy` with respect to the probabilities.

    .. math:: \frac{\partial J}{\partial p_{ic}} = -\frac{y_{ic}}{m\, p_{ic}}

    Entries with y = 0 are 0 (even at p = 0); entries with y > 0 and p = 0 are -inf.

    Args:
        p: probabilities of shape (m, k), entries in [0, 1].
        y: labels of shape (m, k), entries >= 0.

    Returns:
        dJ/dp of shape (m, k), in ``p``'s dtype.

    Raises:
        ValueError: on shape mismatch, empty batch, p outside [0, 1], y < 0, non-finite input.

    >>> cross_entropy_grad(np.array([[0.5, 0.0]]), np.array([[1.0, 0.0]]))
    array([[-2., -0.]])
    """
    p, y = _pair("p", p, y, (2,), "(m, k)")
    check_in_range("p", p, 0.0, 1.0)
    check_in_range("y", y, 0.0, None)
    m = p.shape[0]
    ratio = np.zeros_like(p)
    # y > 0 at p = 0 (or at a subnormal p, where y/p exceeds the largest float): the exact
    # value is -inf, or rounds to it.
    with np.errstate(divide="ignore", over="ignore"):
        np.divide(y, p, out=ratio, where=y != 0)
    return -ratio / m


def softmax_cross_entropy(z: ArrayLike, y: ArrayLike) -> np.floating[Any]:
    r"""Cross-entropy of softmax(z) against labels, computed from the logits (stable).

    .. math:: J = -\frac{1}{m} \sum_{i,c} y_{ic} \log \mathrm{softmax}(z_i)_c,
              \qquad \log \mathrm{softmax}(z)_c = z_c - \max z - \log \sum_l e^{z_l - \max z}

    Finite for any finite logits: the log-sum-exp identity never exponentiates a positive number.

    Args:
        z: logits of shape (m, k).
        y: labels of shape (m, k), entries >= 0 (rows need not sum to 1).

    Returns:
        Scalar of ``z``'s dtype. Gradient: :func:`softmax_cross_entropy_grad`.

    Raises:
        ValueError: on shape mismatch, empty batch, y < 0, non-finite input.

    >>> softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]))
    np.float64(0.6931471805599453)
    """
    z, y = _pair("z", z, y, (2,), "(m, k)")
    check_in_range("y", y, 0.0, None)
    return _scalar(-np.sum(y * _log_softmax(z)) / z.shape[0], z.dtype)


def softmax_cross_entropy_grad(z: ArrayLike, y: ArrayLike) -> FloatArray:
    r"""Gradient of :func:`softmax_cross_entropy` with respect to the logits.

    .. math:: \frac{\partial J}{\partial z_{ic}} = \frac{1}{m}\Big(p_{ic} \sum_{l} y_{il} - y_{ic}\Big),
              \qquad p = \mathrm{softmax}(z)

    which is the familiar (P - Y)/m exactly when every label row sums to 1 (one-hot or soft
    labels). Rows that do not sum to 1 get the general form, never the shortcut.

    Args:
        z: logits of shape (m, k).
        y: labels of shape (m, k), entries >= 0.

    Returns:
        dJ/dz of shape (m, k), in ``z``'s dtype.

    Raises:
        ValueError: on shape mismatch, empty batch, y < 0, non-finite input.

    >>> softmax_cross_entropy_grad(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]))
    array([[-0.5,  0.5]])
    """
    z, y = _pair("z", z, y, (2,), "(m, k)")
    check_in_range("y", y, 0.0, None)
    return (_softmax(z) * np.sum(y, axis=-1, keepdims=True) - y) / z.shape[0]


def binary_cross_entropy(p: ArrayLike, y: ArrayLike) -> np.floating[Any]:
    r"""Binary cross-entropy of probabilities against targets in [0, 1].

    .. math:: J = -\frac{1}{m} \sum_{i} \big[ y_i \log p_i + (1 - y_i) \log(1 - p_i) \big]

    summed over every axis after the first (m, or (m, k) for k independent outputs).

    Args:
        p: probabilities of shape (m,) or (m, k), entries in [0, 1].
        y: targets of the same shape, entries in [0, 1].

    Returns:
        Scalar of ``p``'s dtype; +inf where p = 0 with y > 0 or p = 1 with y < 1.
        Gradient: :func:`binary_cross_entropy_grad`.

    Raises:
        ValueError: on shape mismatch, empty batch, values outside [0, 1], non-finite input.

    >>> binary_cross_entropy(np.array([0.5, 1.0]), np.array([1.0, 1.0]))
    np.float64(0.34657359027997264)
    """
    p, y = _pair("p", p, y, (1, 2), "(m,) or (m, k)")
    check_in_range("p", p, 0.0, 1.0)
    check_in_range("y", y, 0.0, 1.0)
    ny = 1.0 - y
    # log(1 - p) as log1p(-p): exact for tiny p, where 1 - p would round to 1 and lose the term.
    total = np.sum(y * _masked_log(p, y != 0)) + np.sum(ny * _masked_log(-p, ny != 0, log1p=True))
    return _scalar(-total / p.shape[0], p.dtype)


def binary_cross_entropy_grad(p: ArrayLike, y: ArrayLike) -> FloatArray:
    r"""Gradient of :func:`binary_cross_entropy` with respect to the probabilities.

    .. math:: \frac{\partial J}{\partial p_i} = \frac{1}{m}\Big(\frac{1 - y_i}{1 - p_i} - \frac{y_i}{p_i}\Big)

    Each term is dropped where its label factor is 0 (so p = 0 with y = 0 is finite).

    Args:
        p: probabilities of shape (m,) or (m, k), entries in [0, 1].
        y: targets of the same shape, entries in [0, 1].

    Returns:
        dJ/dp, shape and dtype of ``p``; ±inf where the loss is infinite.

    Raises:
        ValueError: on shape mismatch, empty batch, values outside [0, 1], non-finite input.

    >>> binary_cross_entropy_grad(np.array([0.5, 0.0]), np.array([1.0, 0.0]))
    array([-1. ,  0.5])
    """
    p, y = _pair("p", p, y, (1, 2), "(m,) or (m, k)")
    check_in_range("p", p, 0.0, 1.0)
    check_in_range("y", y, 0.0, 1.0)
    q, ny = 1.0 - p, 1.0 - y
    pos, neg = np.zeros_like(p), np.zeros_like(p)
    # A label mass on a probability of 0 (or a subnormal one): the exact value is inf, or
    # rounds to it.
    with np.errstate(divide="ignore", over="ignore"):
        np.divide(y, p, out=pos, where=y != 0)
        np.divide(ny, q, out=neg, where=ny != 0)
    return (neg - pos) / p.shape[0]


def sigmoid_binary_cross_entropy(z: ArrayLike, y: ArrayLike) -> np.floating[Any]:
    r"""Binary cross-entropy of sigmoid(z) against targets, computed from the logits (stable).

    .. math:: J = \frac{1}{m} \sum_i \big[\max(z_i, 0) - y_i z_i + \log(1 + e^{-|z_i|})\big]

    This is -(1/m) sum [y log s(z) + (1 - y) log(1 - s(z))] rewritten with
    -log s(z) = softplus(-z) and softplus(z) = max(z, 0) + log1p(e^{-|z|}), which never
    overflows and keeps full precision where s(z) rounds to 0 or 1.

    Args:
        z: logits of shape (m,) or (m, k).
        y: targets of the same shape, entries in [0, 1].

    Returns:
        Scalar of ``z``'s dtype. Gradient: :func:`sigmoid_binary_cross_entropy_grad`.

    Raises:
        ValueError: on shape mismatch, empty batch, y outside [0, 1], non-finite input.

    >>> sigmoid_binary_cross_entropy(np.array([0.0, 1000.0]), np.array([1.0, 1.0]))
    np.float64(0.34657359027997264)
    """
    z, y = _pair("z", z, y, (1, 2), "(m,) or (m, k)")
    check_in_range("y", y, 0.0, 1.0)
    per_element = np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))
    return _scalar(np.sum(per_element) / z.shape[0], z.dtype)


def sigmoid_binary_cross_entropy_grad(z: ArrayLike, y: ArrayLike) -> FloatArray:
    r"""Gradient of :func:`sigmoid_binary_cross_entropy` with respect to the logits.

    .. math:: \frac{\partial J}{\partial z_i} = \frac{\sigma(z_i) - y_i}{m}

    Args:
        z: logits of shape (m,) or (m, k).
        y: targets of the same shape, entries in [0, 1].

    Returns:
        dJ/dz, shape and dtype of ``z``.

    Raises:
        ValueError: on shape mismatch, empty batch, y outside [0, 1], non-finite input.

    >>> sigmoid_binary_cross_entropy_grad(np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    array([-0.25,  0.25])
    """
    z, y = _pair("z", z, y, (1, 2), "(m,) or (m, k)")
    check_in_range("y", y, 0.0, 1.0)
    return ((_sigmoid(z) - y) / z.shape[0]).astype(z.dtype, copy=False)
