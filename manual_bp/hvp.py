r"""Second order by hand: Hessian-vector and Gauss-Newton-vector products, forward over backward.

The backward pass is itself a computation on the cached forward values, so it can be
differentiated once more. Pearlmutter's R-operator does it in forward mode: for a direction
V of the parameters, :math:`\mathcal{R}\{f\} = \tfrac{d}{dt} f(\theta + tV)|_{t=0}`, and applying
:math:`\mathcal{R}` to every line of the forward and the backward pass gives
:math:`\mathcal{R}\{\nabla J\} = H V` without ever forming the Hessian H. For the network
(directions :math:`V_1, c_1, V_2, c_2` of :math:`W_1, b_1, W_2, b_2`, :math:`M = \mathbb{1}[Z_1 > 0]`,
:math:`s = Y\mathbf{1}` the label mass of each row):

.. math::
    \mathcal{R}Z_1 = X V_1 + \mathbf{1}c_1^\top,\quad \mathcal{R}A_1 = \mathcal{R}Z_1 \odot M,\quad
    \mathcal{R}Z_2 = \mathcal{R}A_1 W_2 + A_1 V_2 + \mathbf{1}c_2^\top,\\
    \mathcal{R}P = P \odot (\mathcal{R}Z_2 - (P \odot \mathcal{R}Z_2)\mathbf{1}),\quad
    \mathcal{R}dZ_2 = s \odot \mathcal{R}P / m,\\
    \mathcal{R}dW_2 = \mathcal{R}A_1^\top dZ_2 + A_1^\top \mathcal{R}dZ_2,\quad
    \mathcal{R}dA_1 = \mathcal{R}dZ_2 W_2^\top + dZ_2 V_2^\top,\quad
    \mathcal{R}dZ_1 = \mathcal{R}dA_1 \odot M,\quad \mathcal{R}dW_1 = X^\top \mathcal{R}dZ_1

(bias rows are the column sums; the ReLU's second derivative is 0 wherever it exists, so the
mask M has no R-term). The Gauss-Newton product :math:`G V = J^\top H_Z J V` (J the Jacobian of
the logits, :math:`H_Z` the loss's Hessian in the logits) keeps only the path through
:math:`\mathcal{R}dZ_2` and drops the two terms that carry :math:`dZ_2` itself
(:math:`\mathcal{R}A_1^\top dZ_2` and :math:`dZ_2 V_2^\top`). For logistic regression,
:math:`\mathcal{R}z = X v_w + v_b` and :math:`\mathcal{R}dz = \sigma(z)\sigma(-z)\,\mathcal{R}z / m`;
its Gauss-Newton matrix is its Hessian (the model is linear in the parameters).

Cost: one forward pass, one forward R-pass and one backward R-pass; the ordinary parameter
gradients are not needed (only dZ2). See ``docs/derivations.md``, section 11.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from manual_bp._params import check_params, check_shape, params_dtype
from manual_bp._validation import FloatArray, as_float_array, check_finite, check_in_range
from manual_bp.activations import _sigmoid
from manual_bp.linear import _param_grads
from manual_bp.logreg import LogRegParams, _check as _check_logreg
from manual_bp.network import MLPCache, MLPParams, _check_mlp, _check_x, _check_y, _forward

__all__ = ["logreg_gnvp", "logreg_hvp", "mlp_gnvp", "mlp_hvp"]

P = TypeVar("P", bound=NamedTuple)


def _check_direction(v: object, params: P, kind: type[P]) -> P:
    """``v`` must be a ``kind`` shaped and typed like ``params`` (finite, one dtype)."""
    checked = check_params("v", v, kind)
    for field, a, b in zip(kind._fields, checked, params, strict=True):
        check_shape(f"v.{field}", a, np.shape(b), f"params.{field} of shape {np.shape(b)}")
    dtype, own = params_dtype(params), params_dtype(checked)
    if own != dtype:
        raise TypeError(f"v has dtype {own} but params have dtype {dtype}; they must match")
    return checked


def _mlp_r_pass(
    params: MLPParams, cache: MLPCache, y: FloatArray, v: MLPParams, *, curvature: bool
) -> MLPParams:
    """R{grad} (``curvature``: the full Hessian product) or the Gauss-Newton product."""
    m = cache.x.shape[0]
    p = np.exp(cache.log_p)
    mass = np.sum(y, axis=1, keepdims=True)  # s = Y 1: each row's label mass
    r_a1 = (cache.x @ v.W1 + v.b1) * cache.relu_mask  # R{Z1} = X V1 + c1, times relu'(Z1)
    r_z2 = r_a1 @ params.W2 + cache.a1 @ v.W2 + v.b2  # R{Z2}: both factors of A1 W2 move
    # R{P} = P * (R{Z2} - <P, R{Z2}>): the softmax's Jacobian applied row by row, never formed.
    r_p = p * (r_z2 - np.sum(p * r_z2, axis=1, keepdims=True))
    r_dz2 = r_p * (mass / m)  # R{dZ2} = H_Z R{Z2}: dZ2 = (P s - Y)/m moves only through P
    r_da1 = r_dz2 @ params.W2.T
    r_dW2, r_db2 = _param_grads(r_dz2, cache.a1)
    if curvature:  # the terms of the product rule that carry dZ2 itself (absent from G V)
        dz2 = (p * mass - y) / m
        r_da1 = r_da1 + dz2 @ v.W2.T  # R{dA1} = R{dZ2} W2^T + dZ2 V2^T
        r_dW2 = r_dW2 + r_a1.T @ dz2  # R{dW2} = A1^T R{dZ2} + R{A1}^T dZ2
    r_dW1, r_db1 = _param_grads(r_da1 * cache.relu_mask, cache.x)  # relu'' = 0: no R{M} term
    return MLPParams(r_dW1, r_db1, r_dW2, r_db2)


def _mlp_product(
    params: MLPParams, x: ArrayLike, y: ArrayLike, v: MLPParams, *, curvature: bool
) -> MLPParams:
    checked = _check_mlp(params)
    xa = _check_x(x, checked)
    ya = _check_y(y, xa.shape[0], checked)
    va = _check_direction(v, checked, MLPParams)
    return _mlp_r_pass(checked, _forward(checked, xa), ya, va, curvature=curvature)


def mlp_hvp(params: MLPParams, x: ArrayLike, y: ArrayLike, v: MLPParams) -> MLPParams:
    r"""The Hessian of the network's mean cross-entropy times a direction: :math:`H V`.

    .. math:: H V = \mathcal{R}_V\{\nabla_\theta J\}
              = \tfrac{d}{dt}\nabla_\theta J(\theta + tV)\big|_{t=0}

    One forward pass (the cache of :func:`manual_bp.mlp_forward`), then the R-operator run
    forward and backward over it (formulas in the module docstring), about the cost of 1.5
    gradient steps. The ReLU's second derivative is taken as 0 (it is, except at Z1 = 0, where
    the gradient jumps and H does not exist); relu'(0) = 0 as everywhere in the package.

    Args:
        params: :class:`MLPParams` W1 (n, h), b1 (h,), W2 (h, k), b2 (k,), finite, one dtype.
        x: inputs (m, n) of the params' dtype. y: labels (m, k), entries >= 0.
        v: the direction, an :class:`MLPParams` shaped and typed like ``params``.

    Returns:
        :class:`MLPParams`: H V, each field the shape and dtype of its parameter.

    Raises:
        TypeError: wrong params or v type, mixed dtypes. ValueError: inconsistent shapes,
        empty batch, non-finite values, negative labels.

    >>> params = MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> v = MLPParams(np.zeros((2, 2)), np.zeros(2), np.zeros((2, 2)), np.array([1.0, 0.0]))
    >>> mlp_hvp(params, np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]]), v).b2.round(4)
    array([ 0.1966, -0.1966])
    """
    return _mlp_product(params, x, y, v, curvature=True)


def mlp_gnvp(params: MLPParams, x: ArrayLike, y: ArrayLike, v: MLPParams) -> MLPParams:
    r"""The Gauss-Newton matrix of the network's loss times a direction: :math:`G V`.

    .. math:: G V = J_{Z_2}^\top H_{Z_2} J_{Z_2} V, \qquad
              H_{Z_2} = \tfrac{1}{m}\,\mathrm{blockdiag}_i\, s_i(\mathrm{diag}(P_i) - P_i^\top P_i)

    with :math:`J_{Z_2} = \partial Z_2 / \partial\theta`: the Hessian with the model's own
    curvature (the terms carrying dZ2) left out, positive semidefinite, as used by second-order
    optimisers. A forward R-pass for :math:`J V = \mathcal{R}Z_2`, the loss's curvature, and
    one backward pass through the linearised network.

    Args:
        params, x, y, v: as for :func:`mlp_hvp`.

    Returns:
        :class:`MLPParams`: G V, each field the shape and dtype of its parameter.

    Raises:
        TypeError, ValueError: as :func:`mlp_hvp`.

    >>> params = MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> v = MLPParams(np.zeros((2, 2)), np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2))
    >>> x, y = np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]])
    >>> mlp_gnvp(params, x, y, v).b1.round(4), mlp_hvp(params, x, y, v).b1.round(4)
    (array([0.1966, 0.    ]), array([-0.0723,  0.    ]))
    """
    return _mlp_product(params, x, y, v, curvature=False)


def _logreg_product(
    params: LogRegParams, x: ArrayLike, y: ArrayLike, v: LogRegParams
) -> LogRegParams:
    checked, xa = _check_logreg(params, x)
    ya = as_float_array("y", y, dtype=xa.dtype)
    check_shape("y", ya, (xa.shape[0],), f"x of shape {xa.shape}")
    check_finite("y", ya)
    check_in_range("y", ya, 0.0, 1.0)
    va = _check_direction(v, checked, LogRegParams)
    z = xa @ checked.w + checked.b
    # sigma'(z) = sigma(z) sigma(-z): both factors in (0, 1], no 1 - sigma(z) rounding to 0.
    r_dz = (_sigmoid(z) * _sigmoid(-z) * (xa @ va.w + va.b) / xa.shape[0]).astype(xa.dtype)
    return LogRegParams(xa.T @ r_dz, np.asarray(np.sum(r_dz)))


def logreg_hvp(params: LogRegParams, x: ArrayLike, y: ArrayLike, v: LogRegParams) -> LogRegParams:
    r"""The Hessian of logistic regression's binary cross-entropy times a direction.

    .. math:: H v = \big(X^\top r,\ \mathbf{1}^\top r\big), \qquad
              r = \tfrac{1}{m}\,\sigma(z) \odot \sigma(-z) \odot (X v_w + v_b),\quad z = X w + b

    The targets y do not enter (the gradient is linear in y). Its Gauss-Newton matrix is the
    same matrix (:func:`logreg_gnvp`).

    Args:
        params: :class:`LogRegParams` w (n,), b (). x: (m, n) of the params' dtype.
        y: targets (m,) in [0, 1] (validated, unused). v: a :class:`LogRegParams` like params.

    Returns:
        :class:`LogRegParams`: H v, shapes and dtype of the params.

    Raises:
        TypeError: wrong params or v type, mixed dtypes. ValueError: inconsistent shapes,
        empty batch, non-finite values, y outside [0, 1].

    >>> params = LogRegParams(np.array([0.0]), np.array(0.0))
    >>> v = LogRegParams(np.array([1.0]), np.array(0.0))
    >>> logreg_hvp(params, np.array([[2.0]]), np.array([1.0]), v)
    LogRegParams(w=array([1.]), b=array(0.5))
    """
    return _logreg_product(params, x, y, v)


def logreg_gnvp(params: LogRegParams, x: ArrayLike, y: ArrayLike, v: LogRegParams) -> LogRegParams:
    r"""The Gauss-Newton matrix of logistic regression times a direction: equal to :func:`logreg_hvp`.

    .. math:: G v = J^\top H_z J v = X_1^\top \mathrm{diag}(\sigma(z)\sigma(-z)/m) X_1 v = H v

    (:math:`X_1 = [X, \mathbf{1}]`): z is linear in (w, b), so the model adds no curvature and
    the Gauss-Newton matrix is the whole Hessian. One code path with :func:`logreg_hvp`.

    Args:
        params: :class:`LogRegParams` w (n,), b (). x: (m, n) of the params' dtype.
        y: targets (m,) in [0, 1] (validated, unused). v: a :class:`LogRegParams` like params.

    Returns:
        :class:`LogRegParams`: G v, shapes and dtype of the params.

    Raises:
        TypeError, ValueError: as :func:`logreg_hvp`.

    >>> params = LogRegParams(np.array([0.0]), np.array(0.0))
    >>> v = LogRegParams(np.array([0.0]), np.array(2.0))
    >>> logreg_gnvp(params, np.array([[2.0]]), np.array([1.0]), v)
    LogRegParams(w=array([1.]), b=array(0.5))
    """
    return _logreg_product(params, x, y, v)
