"""Activations and their local derivatives: ReLU, sigmoid, softmax.

Each forward function sits next to its derivative. All are elementwise or act over the last
axis, accept any leading shape, and return the input's floating dtype (integer input becomes
float64). Forward activations pass NaN through and map ±inf to their limits; the derivative
functions reject non-finite input (see :mod:`manual_bp._validation`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from manual_bp._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_same_shape,
    shape_str,
)

__all__ = [
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
]


def relu(z: ArrayLike) -> FloatArray:
    r"""Rectified linear unit, elementwise.

    .. math:: \mathrm{relu}(z) = \max(z, 0)

    Args:
        z: array of any shape.

    Returns:
        Array of ``z``'s shape and floating dtype. Derivative: :func:`relu_grad`.

    >>> relu(np.array([-2.0, 0.0, 3.0]))
    array([0., 0., 3.])
    """
    z = as_float_array("z", z)
    return np.maximum(z, 0)


def relu_grad(z: ArrayLike) -> FloatArray:
    r"""Derivative of :func:`relu`, elementwise, with the convention relu'(0) = 0.

    .. math:: \mathrm{relu}'(z) = \mathbb{1}[z > 0]

    At the kink z = 0 this returns 0, as ``jax.nn.relu``'s gradient does (``jax.grad`` of
    ``jnp.maximum(z, 0)`` gives 0.5 there instead).

    Args:
        z: pre-activation, any shape, finite.

    Returns:
        0/1 array of ``z``'s shape and floating dtype.

    Raises:
        ValueError: if ``z`` holds NaN or ±inf.

    >>> relu_grad(np.array([-2.0, 0.0, 3.0]))
    array([0., 0., 1.])
    """
    z = as_float_array("z", z)
    check_finite("z", z)
    return (z > 0).astype(z.dtype)


def _sigmoid(z: FloatArray) -> FloatArray:
    # s(z) = 1/(1 + e^-z) for z >= 0 and e^z/(1 + e^z) for z < 0: both use e = exp(-|z|) <= 1,
    # so nothing overflows for any z.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


def sigmoid(z: ArrayLike) -> FloatArray:
    r"""Logistic sigmoid, elementwise, without overflow for any finite z.

    .. math:: \sigma(z) = \frac{1}{1 + e^{-z}}

    Args:
        z: array of any shape.

    Returns:
        Values in [0, 1], of ``z``'s shape and floating dtype. Derivative: :func:`sigmoid_grad`.

    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    z = as_float_array("z", z)
    return _sigmoid(z).astype(z.dtype, copy=False)


def sigmoid_grad(z: ArrayLike) -> FloatArray:
    r"""Derivative of :func:`sigmoid`, elementwise.

    .. math:: \sigma'(z) = \sigma(z)\,(1 - \sigma(z)) = \sigma(z)\,\sigma(-z)
              = \frac{e^{-|z|}}{(1 + e^{-|z|})^2}

    The last form (symmetric in z) avoids the cancellation in ``1 - s`` when s is close to 1.

    Args:
        z: pre-activation, any shape, finite.

    Returns:
        Values in [0, 1/4], of ``z``'s shape and floating dtype.

    Raises:
        ValueError: if ``z`` holds NaN or ±inf.

    >>> sigmoid_grad(np.array([0.0]))
    array([0.25])
    """
    z = as_float_array("z", z)
    check_finite("z", z)
    e = np.exp(-np.abs(z))
    return (e / ((1.0 + e) * (1.0 + e))).astype(z.dtype, copy=False)


def _log_softmax(z: FloatArray) -> FloatArray:
    # log softmax(z)_i = (z_i - max z) - log sum_j exp(z_j - max z): the shift by the row max
    # leaves the value unchanged and keeps every exp in (0, 1], so nothing overflows.
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _softmax(z: FloatArray) -> FloatArray:
    # Same max shift as _log_softmax: softmax(z) = softmax(z - c) for any constant c per row.
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _check_last_axis(name: str, z: FloatArray) -> None:
    if z.ndim == 0:
        raise ValueError(
            f"{name} must have shape (..., k) with k >= 1, got a 0-d array of shape ()"
        )
    if z.shape[-1] == 0:
        raise ValueError(f"{name} has shape {shape_str(z.shape)}: the class axis k must be >= 1")


def softmax(z: ArrayLike) -> FloatArray:
    r"""Softmax over the last axis, stable for large logits.

    .. math:: \mathrm{softmax}(z)_i = \frac{e^{z_i - \max_j z_j}}{\sum_l e^{z_l - \max_j z_j}}

    Args:
        z: logits of shape (..., k), k >= 1.

    Returns:
        Probabilities of shape (..., k), each row summing to 1, in ``z``'s floating dtype.
        Derivatives: :func:`softmax_jacobian`, :func:`softmax_vjp`.

    Non-finite logits: a row with one +inf logit gives the one-hot limit, -inf logits get 0;
    a row with NaN, two +inf logits or only -inf logits has no limit and gives NaN.

    Raises:
        ValueError: if ``z`` is 0-d or has k = 0.

    >>> softmax(np.array([[1000.0, 1000.0]]))
    array([[0.5, 0.5]])
    """
    z = as_float_array("z", z)
    _check_last_axis("z", z)
    if np.isfinite(z).all():
        return _softmax(z)
    return _softmax_extended(z)


def _softmax_extended(z: FloatArray) -> FloatArray:
    """Softmax on the extended reals: the exact limit where one exists, NaN where none does.

    A row with exactly one +inf logit tends to the one-hot vector at that logit; -inf logits
    get probability 0 beside any larger logit. A row with NaN, with two or more +inf logits
    (the limit depends on how they grow) or with every logit -inf has no limit: NaN.
    Such rows are replaced by zeros before the stable formula, so nothing warns.
    """
    plus_inf = z == np.inf
    n_plus_inf = np.sum(plus_inf, axis=-1, keepdims=True)
    undefined = (
        (n_plus_inf > 1)
        | np.isnan(z).any(axis=-1, keepdims=True)
        | (z == -np.inf).all(axis=-1, keepdims=True)
    )
    one_hot_rows = n_plus_inf == 1
    p = _softmax(np.where(undefined | one_hot_rows, 0, z))
    # np.where keeps z's floating dtype: bool and Python-float operands do not promote it.
    p = np.where(one_hot_rows, plus_inf, p)
    return np.where(undefined, np.nan, p)


def softmax_jacobian(z: ArrayLike) -> FloatArray:
    r"""Jacobian of :func:`softmax` for each row of logits.

    .. math:: \frac{\partial p_i}{\partial z_j} = p_i(\delta_{ij} - p_j),
              \qquad J = \mathrm{diag}(p) - p p^\top

    Args:
        z: logits of shape (..., k), finite.

    Returns:
        Array of shape (..., k, k) with ``J[..., i, j] = dp_i/dz_j``, in ``z``'s dtype.
        Symmetric; each row and column sums to 0.

    Raises:
        ValueError: if ``z`` is 0-d, has k = 0, or holds NaN or ±inf.

    >>> softmax_jacobian(np.zeros((1, 2)))
    array([[[ 0.25, -0.25],
            [-0.25,  0.25]]])
    """
    z = as_float_array("z", z)
    _check_last_axis("z", z)
    check_finite("z", z)
    p = _softmax(z)
    return np.eye(z.shape[-1], dtype=z.dtype) * p[..., :, None] - p[..., :, None] * p[..., None, :]


def softmax_vjp(z: ArrayLike, g: ArrayLike) -> FloatArray:
    r"""Vector-Jacobian product of :func:`softmax`, per row, without forming the Jacobian.

    .. math:: (g^\top J)_j = \sum_i g_i\, p_i(\delta_{ij} - p_j) = p_j\,(g_j - g \cdot p)

    Costs O(k) per row instead of the O(k^2) of ``g @ softmax_jacobian(z)``.

    Args:
        z: logits of shape (..., k), finite.
        g: cotangent (upstream gradient dJ/dp) of the same shape, finite.

    Returns:
        dJ/dz of shape (..., k), in ``z``'s dtype (``g`` is cast to it).

    Raises:
        ValueError: if shapes differ, k = 0, or an input holds NaN or ±inf.

    >>> softmax_vjp(np.zeros((1, 2)), np.array([[1.0, 0.0]]))
    array([[ 0.25, -0.25]])
    """
    z = as_float_array("z", z)
    g = as_float_array("g", g, dtype=z.dtype)
    _check_last_axis("z", z)
    check_same_shape("g", g, "z", z)
    check_finite("z", z)
    check_finite("g", g)
    p = _softmax(z)
    return p * (g - np.sum(g * p, axis=-1, keepdims=True))
