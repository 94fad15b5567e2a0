"""Candidate gradient kernels of the source document's network in float16 and bfloat16.

The network: z1 = x W1 + b1, a1 = relu(z1), z2 = a1 W2 + b2, p = softmax(z2),
J = -(1/m) sum y log p. Each kernel takes (MLPParams, x, y) with every array in one low
precision dtype (numpy float16 or ``ml_dtypes.bfloat16``) and returns the gradient in that dtype,
the way mixed-precision kernels are written: every intermediate is stored in the low dtype,
every matrix product and every sum accumulates in float32 and is rounded once (``acc``).

``mlp_grads_lowp`` is correct; its switches each introduce one classic mistake, and
``accumulate=dtype`` accumulates the batch sums (db1, db2 and the softmax's row sums) in the low
dtype itself, one rounding per added term, the way ``np.add.reduce`` does for bfloat16. The torch
kernels do the same in torch tensors (CPU bfloat16/float16 matrix products accumulate in float32).
``tf32_matmul`` emulates an Ampere TF32 matrix product on the CPU (torch's CPU has no TF32): its
inputs rounded to a 10-bit mantissa, the products accumulated in float32.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
from numpy.typing import NDArray

from manual_bp import MLPParams

Array = NDArray[Any]
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
FLOAT16 = np.dtype(np.float16)


def _mm(a: Array, b: Array, acc: Any) -> Array:
    """a @ b accumulated in ``acc``, rounded to a's dtype."""
    out: Array = (a.astype(acc) @ b.astype(acc)).astype(a.dtype)
    return out


def _sum(a: Array, axis: int, acc: Any) -> Array:
    """a.sum(axis) accumulated in ``acc``: float32, or the low dtype itself (term by term)."""
    if np.dtype(acc) == a.dtype:
        out = np.zeros(np.delete(a.shape, axis), a.dtype)
        for row in np.moveaxis(a, axis, 0):  # one rounding per added term
            out = (out + row).astype(a.dtype)
        return out if axis == 0 else np.asarray(out)
    summed: Array = a.sum(axis=axis, dtype=acc).astype(a.dtype)
    return summed


def mlp_grads_lowp(
    params: MLPParams,
    x: Array,
    y: Array,
    *,
    accumulate: Any = np.float32,
    mean: bool = True,
    sign: float = 1.0,
    relu_mask: bool = True,
    w2_transposed: bool = False,
    shift: bool = True,
    dw1_factor: float = 1.0,
    bias_mean: bool = False,
) -> MLPParams:
    """The network's gradient, intermediates in x's dtype, sums accumulated in ``accumulate``."""
    W1, b1, W2, b2 = params
    dt, m = x.dtype, x.shape[0]
    z1 = (_mm(x, W1, accumulate) + b1).astype(dt)
    a1 = np.maximum(z1, np.zeros((), dt))
    z2 = (_mm(a1, W2, accumulate) + b2).astype(dt)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(z2 - z2.max(axis=1, keepdims=True) if shift else z2).astype(dt)
        p = (e / _sum(e, 1, accumulate)[:, None]).astype(dt)
    dz2 = (sign * (p - y)).astype(dt)
    if mean:
        dz2 = (dz2 / np.asarray(m, dt)).astype(dt)
    dW2 = _mm(a1.T, dz2, accumulate)
    if w2_transposed:
        dW2 = dW2.T
    db2 = _sum(dz2, 0, accumulate)
    if bias_mean:
        db2 = (db2 / np.asarray(m, dt)).astype(dt)
    da1 = _mm(dz2, W2.T, accumulate)
    dz1 = (da1 * (z1 > 0)).astype(dt) if relu_mask else da1
    dW1 = _mm(x.T, dz1, accumulate)
    if dw1_factor != 1.0:
        dW1 = (dW1 * np.asarray(dw1_factor, dt)).astype(dt)
    return MLPParams(dW1, _sum(dz1, 0, accumulate), dW2, db2)


def mlp_grads_lowp_bf16_sums(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug (a precision one): the batch sums accumulate in the low dtype, one rounding per term."""
    return mlp_grads_lowp(params, x, y, accumulate=x.dtype)


def mlp_lowp_missing_one_over_m(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dZ2 = P - Y."""
    return mlp_grads_lowp(params, x, y, mean=False)


def mlp_lowp_sign_flipped(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dZ2 = (Y - P)/m."""
    return mlp_grads_lowp(params, x, y, sign=-1.0)


def mlp_lowp_mask_dropped(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dZ1 = dA1 (no ReLU mask)."""
    return mlp_grads_lowp(params, x, y, relu_mask=False)


def mlp_lowp_dw2_transposed(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dW2 = dZ2^T A1."""
    return mlp_grads_lowp(params, x, y, w2_transposed=True)


def mlp_lowp_no_max_shift(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: softmax as exp(z) / sum exp(z) (overflows float16 above z = 11)."""
    return mlp_grads_lowp(params, x, y, shift=False)


def mlp_lowp_doubled_dw1(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dW1 twice its value (a factor-2 error)."""
    return mlp_grads_lowp(params, x, y, dw1_factor=2.0)


def mlp_lowp_bias_averaged_twice(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: db2 = mean over the batch of dZ2, which already carries the 1/m."""
    return mlp_grads_lowp(params, x, y, bias_mean=True)


# ---------------------------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------------------------


def _to_torch(a: Array) -> Any:
    import torch

    if a.dtype == BFLOAT16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def _to_numpy(t: Any, dtype: np.dtype[Any]) -> Array:
    import torch

    if t.dtype == torch.bfloat16:
        out: Array = t.contiguous().view(torch.int16).numpy().view(BFLOAT16)
        return out
    return np.asarray(t.numpy(), dtype)


def mlp_grads_torch(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct: the same backward pass in torch tensors of x's dtype (CPU float32 accumulation
    inside matmul, sum and softmax)."""
    import torch

    W1, b1, W2, b2 = (_to_torch(p) for p in params)
    xt, yt = _to_torch(x), _to_torch(y)
    z1 = xt @ W1 + b1
    a1 = torch.relu(z1)
    p = torch.softmax(a1 @ W2 + b2, dim=1)
    dz2 = (p - yt) / x.shape[0]
    dz1 = (dz2 @ W2.T) * (z1 > 0)
    grads = (xt.T @ dz1, dz1.sum(dim=0), a1.T @ dz2, dz2.sum(dim=0))
    return MLPParams(*(_to_numpy(g, x.dtype) for g in grads))


def mlp_grads_torch_autograd(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct: torch.autograd on the loss written in torch, in x's dtype."""
    import torch

    leaves = [_to_torch(p).requires_grad_(True) for p in params]
    W1, b1, W2, b2 = leaves
    xt, yt = _to_torch(x), _to_torch(y)
    logits = torch.relu(xt @ W1 + b1) @ W2 + b2
    loss = -(yt * torch.log_softmax(logits, dim=1)).sum() / x.shape[0]
    grads = torch.autograd.grad(loss, leaves)
    return MLPParams(*(_to_numpy(g, x.dtype) for g in grads))


def tf32_round(a: Array) -> Array:
    """float32 ``a`` rounded to TF32's 10-bit mantissa (round to nearest even), as float32."""
    bits = np.asarray(a, np.float32).view(np.uint32)
    lsb = (bits >> 13) & 1
    rounded = ((bits + 0x0FFF + lsb) & np.uint32(0xFFFFE000)).astype(np.uint32)
    out: Array = rounded.view(np.float32)
    return out


def mlp_grads_tf32(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct for TF32: float32 in and out, matmul inputs rounded to TF32 (emulated)."""
    W1, b1, W2, b2 = params

    def mm(a: Array, b: Array) -> Array:
        out: Array = tf32_round(a) @ tf32_round(b)
        return out

    z1 = mm(x, W1) + b1
    a1 = np.maximum(z1, np.float32(0))
    z2 = mm(a1, W2) + b2
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    dz2 = (p - y) / np.float32(x.shape[0])
    dz1 = mm(dz2, W2.T) * (z1 > 0)
    return MLPParams(mm(x.T, dz1), dz1.sum(axis=0), mm(a1.T, dz2), dz2.sum(axis=0))


def mlp_grads_lowp_flat(
    W1: Array, b1: Array, W2: Array, b2: Array, x: Array, y: Array
) -> tuple[Array, ...]:
    """``mlp_grads_lowp`` with the parameters as four arguments (for the command line)."""
    return tuple(mlp_grads_lowp(MLPParams(W1, b1, W2, b2), x, y))


def mlp_loss_flat(W1: Any, b1: Any, W2: Any, b2: Any, x: Any, y: Any) -> Any:
    """The reference loss with the parameters as four arguments."""
    from verification import reference

    return reference.mlp_loss(MLPParams(W1, b1, W2, b2), x, y)
