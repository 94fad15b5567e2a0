r"""One SGD step of the network with forward, backward and update fused, fewer temporaries.

The reference is the plain composition ``sgd_step(params, mlp_loss_and_grads(params, x, y)[1],
lr)``: forward into a cache, backward into gradients, update into new parameters, each a pure
function. :func:`mlp_sgd_step_fused` computes the same formulas in the same order,

.. math::
    Z_1 = X W_1 + b_1,\quad A_1 = \mathrm{relu}(Z_1),\quad Z_2 = A_1 W_2 + b_2,\quad
    \log P = \mathrm{log\,softmax}(Z_2),\quad J = -\tfrac{1}{m}\textstyle\sum Y \odot \log P,\\
    dZ_2 = (P \odot (Y\mathbf{1}) - Y)/m,\quad dZ_1 = (dZ_2 W_2^\top) \odot \mathbb{1}[A_1 > 0],\\
    W_1' = W_1 - \eta X^\top dZ_1,\quad b_1' = b_1 - \eta \mathbf{1}^\top dZ_1,\quad
    W_2' = W_2 - \eta A_1^\top dZ_2,\quad b_2' = b_2 - \eta \mathbf{1}^\top dZ_2,

but works in place on the arrays it creates itself (never on its arguments), which saves the
(m, h) temporaries of the plain step, and folds the step size into the backward pass:

* Z1 becomes A1 in place, and A1 doubles as the ReLU mask: A1 > 0 exactly where Z1 > 0, so the
  mask 1[Z1 > 0] (relu'(0) = 0) needs no array of its own;
* the backward pass carries G = -eta dJ/dZ instead of dJ/dZ (the scalar -eta/m is applied once,
  to the small (m, k) array G2), so W' = W + (layer input)^T G and b' = b + 1^T G;
* G2 W2^T is masked in place, and W is added in place into the buffer of (layer input)^T G.

Both steps are verified against each other and against ``jax.grad`` (``tests/test_fused.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from manual_bp._validation import check_lr
from manual_bp.activations import _log_softmax
from manual_bp.network import MLPParams, _check_mlp, _check_x, _check_y

__all__ = ["mlp_sgd_step_fused"]


def mlp_sgd_step_fused(
    params: MLPParams, x: ArrayLike, y: ArrayLike, lr: float
) -> tuple[np.floating[Any], MLPParams]:
    r"""One step of gradient descent on the network's mean cross-entropy, fused.

    .. math:: \theta' = \theta - \eta\, \frac{\partial J}{\partial \theta}(\theta; X, Y)
              \quad\text{for } \theta \in \{W_1, b_1, W_2, b_2\}

    Equal, up to rounding, to ``sgd_step(params, mlp_loss_and_grads(params, x, y)[1], lr)``
    (the reference), with the loss at ``params`` returned as well; the formulas are in the
    module docstring. Faster at large sizes because it allocates fewer (m, h) temporaries.

    Args:
        params: :class:`~manual_bp.MLPParams` W1 (n, h), b1 (h,), W2 (h, k), b2 (k,); finite,
            one floating dtype. Not modified.
        x: inputs (m, n) of the params' dtype, finite. Not modified.
        y: labels (m, k), entries >= 0 (one-hot, soft, or rows with other sums), cast to the
            params' dtype.
        lr: learning rate eta, finite and > 0, applied in the params' dtype.

    Returns:
        ``(loss, new_params)``: the loss J at ``params`` (a scalar of the params' dtype) and new
        :class:`~manual_bp.MLPParams` of the same shapes and dtype.

    Raises:
        TypeError: wrong params type, mixed dtypes, non-real lr. ValueError: inconsistent shapes,
        empty batch, non-finite values, negative labels, lr <= 0.

    >>> params = MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    >>> loss, new = mlp_sgd_step_fused(params, np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]]), 0.5)
    >>> round(float(loss), 4), new.b2.round(4)
    (0.3133, array([ 0.1345, -0.1345]))
    """
    checked = _check_mlp(params)
    xa = _check_x(x, checked)
    ya = _check_y(y, xa.shape[0], checked)
    eta = xa.dtype.type(check_lr(lr))
    W1, b1, W2, b2 = checked
    m = xa.shape[0]

    # Forward. a1 is a fresh array: Z1 = X W1 + b1, then relu in place.
    a1 = xa @ W1
    a1 += b1
    np.maximum(a1, 0, out=a1)
    log_p = _log_softmax(a1 @ W2 + b2)
    loss: np.floating[Any] = xa.dtype.type(-(ya * log_p).sum() / m)

    # Backward with the step folded in: G = -eta dJ/dZ, so each update below is an addition.
    # G2 = -eta (P * rowsum(Y) - Y)/m, then back through W2 and relu'(Z1) = 1[A1 > 0].
    g2 = (np.exp(log_p) * ya.sum(axis=1, keepdims=True) - ya) * (-eta / m)
    g1 = g2 @ W2.T
    g1 *= a1 > 0

    # Update: W' = W - eta dJ/dW = W + (layer input)^T G;  b' = b + column sums of G.
    new_W2 = a1.T @ g2
    new_W2 += W2
    new_W1 = xa.T @ g1
    new_W1 += W1
    return loss, MLPParams(new_W1, b1 + g1.sum(axis=0), new_W2, b2 + g2.sum(axis=0))
