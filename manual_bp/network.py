r"""The one-hidden-layer network of the source document, forward and backward by hand.

.. math::
    Z_1 = X W_1 + b_1,\quad A_1 = \mathrm{relu}(Z_1),\quad Z_2 = A_1 W_2 + b_2,\quad
    P = \mathrm{softmax}(Z_2),\quad J = -\tfrac{1}{m}\textstyle\sum Y \odot \log P

Shapes: X (m, n), W1 (n, h), b1 (h,), W2 (h, k), b2 (k,), Y (m, k).

Backprop is dynamic programming: :func:`mlp_forward` stores each layer's local derivative
(the layer inputs X and A1, the ReLU mask 1[Z1 > 0], and P) in a cache, and
:func:`mlp_backward` multiplies them together going backwards, recomputing nothing:

.. math::
    dZ_2 = (P \odot (Y\mathbf{1}) - Y)/m,\quad dW_2 = A_1^\top dZ_2,\quad db_2 = \mathbf{1}^\top dZ_2,\\
    dZ_1 = (dZ_2 W_2^\top) \odot \mathbb{1}[Z_1 > 0],\quad dW_1 = X^\top dZ_1,\quad
    db_1 = \mathbf{1}^\top dZ_1

(dZ2 is (P - Y)/m when label rows sum to 1.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from manual_bp._params import check_params, check_shape, params_dtype
from manual_bp._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_in_range,
    check_ndim,
    check_nonempty,
)
from manual_bp.activations import _log_softmax
from manual_bp.linear import _param_grads

__all__ = [
    "MLPCache",
    "MLPIntermediates",
    "MLPParams",
    "init_mlp",
    "mlp_backward",
    "mlp_backward_intermediates",
    "mlp_forward",
    "mlp_loss_and_grads",
]


class MLPParams(NamedTuple):
    """Parameters of the network (a NamedTuple, hence also a JAX pytree).

    W1: (n, h); b1: (h,); W2: (h, k); b2: (k,); one floating dtype for all four.
    """

    W1: FloatArray
    b1: FloatArray
    W2: FloatArray
    b2: FloatArray


class MLPCache(NamedTuple):
    """What the forward pass stores for the backward pass: the local derivatives.

    x: (m, n), the input, which is dZ1/dW1; a1: (m, h), relu(Z1), which is dZ2/dW2;
    relu_mask: (m, h), relu'(Z1) = 1[Z1 > 0]; log_p: (m, k), log softmax(Z2), from which
    P = exp(log_p) and the loss both follow without another pass over Z2.
    """

    x: FloatArray
    a1: FloatArray
    relu_mask: FloatArray
    log_p: FloatArray


class MLPIntermediates(NamedTuple):
    """The gradients the backward pass forms on its way, one per stage of the chain.

    dZ2: (m, k), dJ/dZ2 (the softmax cross-entropy's gradient); dA1: (m, h), dJ/dA1 =
    dZ2 W2^T (back through the second layer); dZ1: (m, h), dJ/dZ1 = dA1 * 1[Z1 > 0] (through the
    ReLU). The parameter gradients follow from them: dW2 = A1^T dZ2, dW1 = X^T dZ1, the bias
    gradients are their column sums.
    """

    dZ2: FloatArray  # noqa: N815  (the names of the document: dZ2, dA1, dZ1)
    dA1: FloatArray  # noqa: N815
    dZ1: FloatArray  # noqa: N815


def init_mlp(
    rng: np.random.Generator, n: int, h: int, k: int, dtype: DTypeLike = np.float64
) -> MLPParams:
    r"""Random initial parameters: He-normal W1, Glorot-normal W2, zero biases.

    .. math:: W_1 \sim \mathcal{N}(0, 2/n), \quad W_2 \sim \mathcal{N}(0, 2/(h + k)),
              \quad b_1 = 0, \quad b_2 = 0

    Args:
        rng: an explicit ``np.random.Generator`` (no global state is used or changed, but the
            generator advances).
        n, h, k: input features, hidden units, classes; positive integers.
        dtype: floating dtype of every parameter.

    Returns:
        :class:`MLPParams` with W1 (n, h), b1 (h,), W2 (h, k), b2 (k,).

    >>> p = init_mlp(np.random.default_rng(0), 4, 3, 2, dtype=np.float32)
    >>> [a.shape for a in p], p.W1.dtype
    ([(4, 3), (3,), (3, 2), (2,)], dtype('float32'))
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    for name, value in (("n", n), ("h", h), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    W1 = rng.standard_normal((n, h)) * np.sqrt(2.0 / n)
    W2 = rng.standard_normal((h, k)) * np.sqrt(2.0 / (h + k))
    return MLPParams(W1.astype(dt), np.zeros(h, dt), W2.astype(dt), np.zeros(k, dt))


def _check_mlp(params: object) -> MLPParams:
    checked = check_params("params", params, MLPParams)
    W1, b1, W2, b2 = checked
    check_ndim("params.W1", W1, (2,), "(n, h)")
    h = W1.shape[1]
    check_shape("params.b1", b1, (h,), f"params.W1 of shape {W1.shape}")
    check_ndim("params.W2", W2, (2,), "(h, k)")
    check_shape("params.W2", W2, (h, W2.shape[1]), f"params.W1 of shape {W1.shape}")
    check_shape("params.b2", b2, (W2.shape[1],), f"params.W2 of shape {W2.shape}")
    return checked


def _check_x(x: ArrayLike, params: MLPParams) -> FloatArray:
    xa = as_float_array("x", x)
    check_ndim("x", xa, (2,), "(m, n)")
    check_nonempty("x", xa)
    n = params.W1.shape[0]
    check_shape("x", xa, (xa.shape[0], n), f"params.W1 of shape {params.W1.shape}")
    dtype = params_dtype(params)
    if xa.dtype != dtype:
        raise TypeError(f"x has dtype {xa.dtype} but params have dtype {dtype}; they must match")
    check_finite("x", xa)
    return xa


def _check_y(y: ArrayLike, m: int, params: MLPParams) -> FloatArray:
    ya = as_float_array("y", y, dtype=params_dtype(params))
    k = params.W2.shape[1]
    check_shape("y", ya, (m, k), f"x with m = {m} rows and params.W2 with k = {k} columns")
    check_finite("y", ya)
    check_in_range("y", ya, 0.0, None)
    return ya


def _forward(params: MLPParams, x: FloatArray) -> MLPCache:
    z1 = x @ params.W1 + params.b1
    relu_mask = (z1 > 0).astype(z1.dtype)  # relu'(Z1), convention relu'(0) = 0
    a1 = z1 * relu_mask  # relu(Z1) = Z1 * 1[Z1 > 0], reusing the stored derivative
    z2 = a1 @ params.W2 + params.b2
    return MLPCache(x, a1, relu_mask, _log_softmax(z2))


def _chain(params: MLPParams, cache: MLPCache, y: FloatArray) -> MLPIntermediates:
    m = cache.x.shape[0]
    p = np.exp(cache.log_p)
    # dJ/dZ2 = (P * rowsum(Y) - Y)/m: the softmax Jacobian chained with dJ/dP = -Y/(mP).
    dz2 = (p * np.sum(y, axis=1, keepdims=True) - y) / m
    da1 = dz2 @ params.W2.T  # back through W2
    return MLPIntermediates(dz2, da1, da1 * cache.relu_mask)  # then relu'(Z1)


def _backward(params: MLPParams, cache: MLPCache, y: FloatArray) -> MLPParams:
    chain = _chain(params, cache, y)
    dW2, db2 = _param_grads(chain.dZ2, cache.a1)
    dW1, db1 = _param_grads(chain.dZ1, cache.x)
    return MLPParams(dW1, db1, dW2, db2)


def _loss(cache: MLPCache, y: FloatArray) -> np.floating[Any]:
    loss: np.floating[Any] = cache.log_p.dtype.type(-np.sum(y * cache.log_p) / y.shape[0])
    return loss


def mlp_forward(params: MLPParams, x: ArrayLike) -> tuple[FloatArray, MLPCache]:
    r"""Forward pass: class probabilities and the cache of local derivatives.

    .. math:: P = \mathrm{softmax}(\mathrm{relu}(X W_1 + b_1) W_2 + b_2)

    Args:
        params: :class:`MLPParams`, finite, one floating dtype.
        x: inputs of shape (m, n), same dtype as ``params``, finite.

    Returns:
        ``(p, cache)``: probabilities (m, k) and the :class:`MLPCache` that
        :func:`mlp_backward` consumes.

    Raises:
        TypeError: params of the wrong type or mixed dtypes. ValueError: inconsistent shapes,
        empty batch, non-finite values.

    >>> params = MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> p, cache = mlp_forward(params, np.array([[1.0, -1.0]]))
    >>> p.round(4), cache.relu_mask
    (array([[0.7311, 0.2689]]), array([[1., 0.]]))
    """
    checked = _check_mlp(params)
    cache = _forward(checked, _check_x(x, checked))
    return np.exp(cache.log_p), cache


def mlp_backward(params: MLPParams, cache: MLPCache, y: ArrayLike) -> MLPParams:
    r"""Backward pass: the gradient of the mean cross-entropy from the cached local derivatives.

    .. math::
        dZ_2 = \tfrac{1}{m}(P \odot (Y\mathbf{1}) - Y),\; dW_2 = A_1^\top dZ_2,\; db_2 = \mathbf{1}^\top dZ_2,\;
        dZ_1 = dZ_2 W_2^\top \odot \mathbb{1}[Z_1 > 0],\; dW_1 = X^\top dZ_1,\; db_1 = \mathbf{1}^\top dZ_1

    Nothing of the forward pass is recomputed: X, A1, the ReLU mask and P come from ``cache``.

    Args:
        params: the :class:`MLPParams` that produced ``cache``.
        cache: the :class:`MLPCache` from :func:`mlp_forward`.
        y: labels (m, k), entries >= 0 (one-hot, soft, or rows with other sums), cast to the
            params' dtype.

    Returns:
        :class:`MLPParams` of gradients, each the shape and dtype of its parameter.

    Raises:
        TypeError: wrong params or cache type. ValueError: ``y`` or ``cache`` inconsistent with
        ``params``.

    >>> params = MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> _, cache = mlp_forward(params, np.array([[1.0, -1.0]]))
    >>> mlp_backward(params, cache, np.array([[1.0, 0.0]])).b2.round(4)
    array([-0.2689,  0.2689])
    """
    checked, ya = _check_backward(params, cache, y)
    return _backward(checked, cache, ya)


def mlp_backward_intermediates(
    params: MLPParams, cache: MLPCache, y: ArrayLike
) -> MLPIntermediates:
    r"""The gradients :func:`mlp_backward` forms on its way: dZ2, dA1 and dZ1.

    .. math::
        dZ_2 = \tfrac{1}{m}(P \odot (Y\mathbf{1}) - Y),\quad dA_1 = dZ_2 W_2^\top,\quad
        dZ_1 = dA_1 \odot \mathbb{1}[Z_1 > 0]

    The same computation as :func:`mlp_backward` (one code path), stopped before the parameter
    gradients; each is the gradient of the loss with respect to one stage of the forward pass,
    so a check of the chain can say which stage went wrong.

    Args:
        params, cache, y: as for :func:`mlp_backward`.

    Returns:
        :class:`MLPIntermediates`: dZ2 (m, k), dA1 (m, h), dZ1 (m, h), in the params' dtype.

    Raises:
        TypeError, ValueError: as :func:`mlp_backward`.

    >>> params = MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> _, cache = mlp_forward(params, np.array([[1.0, -1.0]]))
    >>> chain = mlp_backward_intermediates(params, cache, np.array([[1.0, 0.0]]))
    >>> chain.dA1.round(4), chain.dZ1.round(4)
    (array([[-0.2689,  0.2689]]), array([[-0.2689,  0.    ]]))
    """
    checked, ya = _check_backward(params, cache, y)
    return _chain(checked, cache, ya)


def _check_backward(
    params: MLPParams, cache: MLPCache, y: ArrayLike
) -> tuple[MLPParams, FloatArray]:
    checked = _check_mlp(params)
    if not isinstance(cache, MLPCache):
        raise TypeError(f"cache must be the MLPCache from mlp_forward, got {type(cache).__name__}")
    m, h, k = cache.x.shape[0], checked.W1.shape[1], checked.W2.shape[1]
    check_shape("cache.x", cache.x, (m, checked.W1.shape[0]), "params.W1")
    for name, arr, width in (("a1", cache.a1, h), ("relu_mask", cache.relu_mask, h)):
        check_shape(f"cache.{name}", arr, (m, width), f"params (h = {h}) and cache.x")
    check_shape("cache.log_p", cache.log_p, (m, k), f"params (k = {k}) and cache.x")
    return checked, _check_y(y, m, checked)


def mlp_loss_and_grads(
    params: MLPParams, x: ArrayLike, y: ArrayLike
) -> tuple[np.floating[Any], MLPParams]:
    r"""Mean cross-entropy of the network and its gradient with respect to every parameter.

    .. math:: J = -\tfrac{1}{m} \textstyle\sum_{i,c} Y_{ic} \log P_{ic}

    One :func:`mlp_forward` and one :func:`mlp_backward`; the loss comes from the cached
    log-probabilities (stable for any finite logits).

    Args:
        params: :class:`MLPParams`. x: (m, n). y: (m, k), entries >= 0.

    Returns:
        ``(loss, grads)``: a scalar of the params' dtype and an :class:`MLPParams` of gradients.

    >>> params = MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> loss, grads = mlp_loss_and_grads(params, np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]]))
    >>> round(float(loss), 4), grads.W1.shape
    (0.3133, (2, 2))
    """
    checked = _check_mlp(params)
    xa = _check_x(x, checked)
    ya = _check_y(y, xa.shape[0], checked)
    cache = _forward(checked, xa)
    return _loss(cache, ya), _backward(checked, cache, ya)
