"""A zoo of Hessian-vector products of the network, each a candidate ``hvp(params, x, y, v)``
for ``audit_hvp`` against ``verification.reference.mlp_loss``.

``_r_pass`` below is a correct R-operator derivation written for the zoo (independent of
``manual_bp.hvp``) with a switch for each classic mistake, so each wrong candidate differs
from a correct one by exactly the line that names it. ``BUGS`` lists them with words the
audit's report must contain; ``CORRECT`` lists correct and mathematically equivalent products
(another order of operations, the softmax Jacobian formed explicitly per row, float32 in and
out, PyTorch's double backward, the manual package's) that must pass.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray

import manual_bp
from manual_bp import MLPParams

Array = NDArray[Any]

_BUG_ZOO = runpy.run_path(str(Path(__file__).with_name("bug_zoo.py")))  # not a package

mlp_problems: Callable[..., st.SearchStrategy[tuple[Any, ...]]] = _BUG_ZOO["moderate_mlp_problems"]
"""(MLPParams, x, y) from named dimensions (``bug_zoo.MLP_SPEC``): values in [-3, 3], one-hot
labels; ``mlp_problems(dtype=np.float64)``."""


def _r_pass(
    params: MLPParams,
    x: Array,
    y: Array,
    v: MLPParams,
    *,
    softmax_diagonal: bool = False,
    no_loss_curvature: bool = False,
    relu_curvature: bool = False,
    reshaped_v2: bool = False,
    gauss_newton: bool = False,
) -> MLPParams:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    mask = (z1 > 0).astype(x.dtype)
    a1 = z1 * mask
    z2 = a1 @ params.W2 + params.b2
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    dz2 = (p - y) / m
    da1 = dz2 @ params.W2.T
    r_z1 = x @ v.W1 + v.b1
    r_a1 = r_z1 * mask
    r_z2 = r_a1 @ params.W2 + a1 @ v.W2 + v.b2
    r_p = p * r_z2  # BUG when softmax_diagonal: dP/dZ = diag(P), its -P P^T part missing
    if not softmax_diagonal:
        r_p = r_p - p * np.sum(p * r_z2, axis=1, keepdims=True)
    r_dz2 = np.zeros_like(r_p) if no_loss_curvature else r_p / m  # BUG: (P - Y)/m as constant
    v2t = v.W2.reshape(v.W2.shape[::-1]) if reshaped_v2 else v.W2.T  # BUG: reshape, not .T
    r_da1 = r_dz2 @ params.W2.T
    r_dW2 = a1.T @ r_dz2
    if not gauss_newton:  # BUG when set: the Gauss-Newton product returned for H v
        r_da1 = r_da1 + dz2 @ v2t
        r_dW2 = r_dW2 + r_a1.T @ dz2
    r_dz1 = r_da1 * mask
    if relu_curvature:  # BUG: relu''(z) taken as 1[z > 0], as if the mask moved with Z1
        r_dz1 = r_dz1 + da1 * mask * r_z1
    return MLPParams(x.T @ r_dz1, r_dz1.sum(axis=0), r_dW2, r_dz2.sum(axis=0))


def hvp(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    """The correct product (the zoo's own derivation)."""
    return _r_pass(params, x, y, v)


def hvp_softmax_diagonal_only(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    return _r_pass(params, x, y, v, softmax_diagonal=True)


def hvp_missing_softmax_second_derivative(
    params: MLPParams, x: Array, y: Array, v: MLPParams
) -> MLPParams:
    return _r_pass(params, x, y, v, no_loss_curvature=True)


def hvp_relu_with_curvature(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    return _r_pass(params, x, y, v, relu_curvature=True)


def hvp_transposed_term(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    return _r_pass(params, x, y, v, reshaped_v2=True)


def hvp_gauss_newton(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    return _r_pass(params, x, y, v, gauss_newton=True)


# Correct and equivalent products.


def hvp_explicit_softmax_jacobian(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    """H v with the softmax's Jacobian diag(p) - p p^T formed per row, and the curvature
    terms in another order (the W1 block as one product with the summed cotangent)."""
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    mask = z1 > 0
    a1 = np.where(mask, z1, 0.0).astype(x.dtype)
    z2 = a1 @ params.W2 + params.b2
    p = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    jac = np.einsum("mi,ij->mij", p, np.eye(p.shape[1], dtype=x.dtype)) - np.einsum(
        "mi,mj->mij", p, p
    )
    r_a1 = np.where(mask, x @ v.W1 + v.b1, 0.0).astype(x.dtype)
    r_z2 = r_a1 @ params.W2 + a1 @ v.W2 + v.b2
    r_dz2 = np.einsum("mij,mj->mi", jac, r_z2) / m
    dz2 = (p - y) / m
    r_dz1 = np.where(mask, r_dz2 @ params.W2.T + dz2 @ v.W2.T, 0.0).astype(x.dtype)
    return MLPParams(x.T @ r_dz1, r_dz1.sum(axis=0), a1.T @ r_dz2 + r_a1.T @ dz2, r_dz2.sum(axis=0))


def hvp_float32(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    """The correct product computed in float32 (the audit draws float32 inputs for it)."""
    return _r_pass(params, x, y, v)


def hvp_torch_double_backward(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    """PyTorch's own: the gradient with ``create_graph=True``, then the gradient of <g, v>."""
    import torch

    ps = [torch.tensor(np.asarray(a), requires_grad=True) for a in params]
    xt, yt = torch.tensor(x), torch.tensor(y)
    logits = torch.relu(xt @ ps[0] + ps[1]) @ ps[2] + ps[3]
    loss = -(yt * torch.log_softmax(logits, dim=1)).sum() / x.shape[0]
    grads = torch.autograd.grad(loss, ps, create_graph=True)
    inner = torch.stack(
        [(g * torch.tensor(np.asarray(d))).sum() for g, d in zip(grads, v, strict=True)]
    ).sum()
    out = torch.autograd.grad(inner, ps)
    return MLPParams(*(o.detach().numpy() for o in out))


def hvp_manual_bp(params: MLPParams, x: Array, y: Array, v: MLPParams) -> MLPParams:
    """The package's own ``manual_bp.mlp_hvp``."""
    return manual_bp.mlp_hvp(params, x, y, v)


@dataclass(frozen=True)
class Bug:
    """A wrong product and words its report must contain."""

    name: str
    hvp: Any
    words: tuple[str, ...]


BUGS: tuple[Bug, ...] = (
    Bug("softmax Jacobian's -p p^T term missing", hvp_softmax_diagonal_only, ("symmetric within",)),
    Bug(
        "softmax's second derivative missing",
        hvp_missing_softmax_second_derivative,
        ("the candidate is 0",),
    ),
    Bug("ReLU treated as having curvature", hvp_relu_with_curvature, ("symmetric within",)),
    Bug("a transposed term (V2 reshaped)", hvp_transposed_term, ("not symmetric", "transposed")),
    Bug("Gauss-Newton returned for H", hvp_gauss_newton, ("Gauss-Newton",)),
)

CORRECT: tuple[tuple[str, Any, Any], ...] = (
    ("zoo derivation", hvp, np.float64),
    ("explicit softmax Jacobian", hvp_explicit_softmax_jacobian, np.float64),
    ("float32", hvp_float32, np.float32),
    ("torch double backward", hvp_torch_double_backward, np.float64),
    ("manual_bp.mlp_hvp", hvp_manual_bp, np.float64),
)
"""(name, product, dtype of the drawn inputs)."""
