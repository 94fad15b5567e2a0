"""Layers of the source document written as layer code is: ``forward(*inputs) -> (out, cache)``
and ``backward(dout, cache) -> grads``, each correct and with the classic mistakes.

The layers: linear z = x W + b, ReLU, softmax (row-wise), and softmax cross-entropy (logits and
labels to the mean loss, a scalar: its ``dout`` is a scalar too). ``LAYERS`` gives each layer's
JAX reference (``verification.reference``), its input spec for ``named_arrays`` and the
differentiated inputs; ``BUGS`` each mistake with the failure ``audit_vjp`` must report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from verification import reference

Array = NDArray[Any]


# ---------------------------------------------------------------------------------------------
# Linear: z = x W + b
# ---------------------------------------------------------------------------------------------


def linear_forward(x: Array, w: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
    return x @ w + b, (x, w)


def linear_backward(dz: Array, cache: tuple[Array, Array]) -> tuple[Array, Array, Array]:
    """Correct: dx = dz W^T, dW = x^T dz, db = column sums of dz."""
    x, w = cache
    return dz @ w.T, x.T @ dz, dz.sum(axis=0)


def linear_backward_dw_transposed(dz: Array, cache: tuple[Array, Array]) -> Any:
    """Bug: dW = dz^T x, (h, n) instead of (n, h)."""
    x, w = cache
    return dz @ w.T, dz.T @ x, dz.sum(axis=0)


def linear_backward_db_mean(dz: Array, cache: tuple[Array, Array]) -> Any:
    """Bug: db = the mean of dz over the batch (the 1/m belongs to the loss, not the layer)."""
    x, w = cache
    return dz @ w.T, x.T @ dz, dz.mean(axis=0)


def linear_backward_dx_without_transpose(dz: Array, cache: tuple[Array, Array]) -> Any:
    """Bug: dx = dz W instead of dz W^T (right shape only when W is square)."""
    x, w = cache
    return dz @ w, x.T @ dz, dz.sum(axis=0)


# ---------------------------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------------------------


def relu_forward(z: Array) -> tuple[Array, Array]:
    return np.maximum(z, 0.0), z


def relu_backward(da: Array, z: Array) -> Array:
    """Correct, relu'(0) = 0 like jax.nn.relu: da * 1[z > 0]."""
    out: Array = da * (z > 0)
    return out


def relu_backward_one_at_zero(da: Array, z: Array) -> Array:
    """Bug at the kink only: relu'(0) = 1 (da * 1[z >= 0])."""
    out: Array = da * (z >= 0)
    return out


def relu_backward_mask_only(da: Array, z: Array) -> Array:
    """Bug: the local derivative 1[z > 0] returned without the upstream gradient."""
    return (z > 0).astype(da.dtype)


def relu_backward_in_place(da: Array, z: Array) -> Array:
    """Bug: ``dx = dout; dx[z <= 0] = 0`` zeroes the caller's upstream gradient in place."""
    dx = da
    dx[z <= 0] = 0
    return dx


# ---------------------------------------------------------------------------------------------
# Softmax (row-wise)
# ---------------------------------------------------------------------------------------------


def _softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def softmax_forward(z: Array) -> tuple[Array, Array]:
    p = _softmax(z)
    return p, p


def softmax_backward(dp: Array, p: Array) -> Array:
    """Correct: dz = p * (dp - <dp, p>) row by row (the Jacobian diag(p) - p p^T applied)."""
    out: Array = p * (dp - (dp * p).sum(axis=1, keepdims=True))
    return out


def softmax_backward_diagonal_only(dp: Array, p: Array) -> Array:
    """Bug: dz = dp * p (1 - p), the Jacobian's diagonal only (the classic elementwise slip)."""
    out: Array = dp * p * (1 - p)
    return out


def softmax_backward_wrong_axis(dp: Array, p: Array) -> Array:
    """Bug: the inner product <dp, p> summed over the batch (axis 0) instead of the classes."""
    out: Array = p * (dp - (dp * p).sum(axis=0, keepdims=True))
    return out


# ---------------------------------------------------------------------------------------------
# Softmax cross-entropy: (logits z, labels y) -> mean loss
# ---------------------------------------------------------------------------------------------


def softmax_ce_forward(z: Array, y: Array) -> tuple[Array, tuple[Array, Array]]:
    p = _softmax(z)
    loss = -np.sum(y * np.log(np.maximum(p, np.finfo(p.dtype).tiny))) / z.shape[0]
    return np.asarray(loss), (p, y)


def softmax_ce_backward(dloss: Array, cache: tuple[Array, Array]) -> Array:
    """Correct: dz = dloss * (p - y) / m (one-hot rows)."""
    p, y = cache
    out: Array = dloss * (p - y) / p.shape[0]
    return out


def softmax_ce_backward_ignores_dout(dloss: Array, cache: tuple[Array, Array]) -> Array:
    """Bug: (p - y) / m, as if the upstream gradient were always 1 (a loss layer used inside a
    larger graph, or scaled, gets it wrong)."""
    p, y = cache
    out: Array = (p - y) / p.shape[0]
    return out


def softmax_ce_backward_missing_one_over_m(dloss: Array, cache: tuple[Array, Array]) -> Array:
    """Bug: dloss * (p - y), the mean's 1/m forgotten."""
    p, y = cache
    out: Array = dloss * (p - y)
    return out


@dataclass(frozen=True)
class Layer:
    """A layer: its candidate forward, its JAX reference, inputs and differentiated inputs."""

    forward: Any
    reference: Any
    spec: dict[str, tuple[str, ...]]
    argnums: tuple[int, ...]
    kinds: dict[str, Any]


LAYERS: dict[str, Layer] = {
    "linear": Layer(
        linear_forward,
        reference.linear,
        {"x": ("m", "n"), "w": ("n", "h"), "b": ("h",)},
        (0, 1, 2),
        {},
    ),
    "relu": Layer(relu_forward, reference.relu, {"z": ("m", "h")}, (0,), {}),
    "softmax": Layer(softmax_forward, reference.softmax, {"z": ("m", "k")}, (0,), {}),
    "softmax cross-entropy": Layer(
        softmax_ce_forward,
        reference.softmax_cross_entropy,
        {"z": ("m", "k"), "y": ("m", "k")},
        (0,),
        {"y": "onehot"},
    ),
}


@dataclass(frozen=True)
class Bug:
    """A layer's backward with one mistake, and what the audit must say about it."""

    layer: str
    backward: Any
    kind: str  # the report's kind
    signature: str  # a phrase the diagnosis (or location) must contain


CORRECT: dict[str, Any] = {
    "linear": linear_backward,
    "relu": relu_backward,
    "softmax": softmax_backward,
    "softmax cross-entropy": softmax_ce_backward,
}

BUGS: dict[str, Bug] = {
    "linear: dW transposed": Bug(
        "linear", linear_backward_dw_transposed, "wrong shape|mismatch", "transposed"
    ),
    "linear: db averaged": Bug("linear", linear_backward_db_mean, "mismatch", "1/m"),
    "linear: dx without transpose": Bug(
        "linear", linear_backward_dx_without_transpose, "raised|wrong shape|mismatch", "x"
    ),
    "relu: mask only": Bug("relu", relu_backward_mask_only, "mismatch", "z"),
    "relu: in place": Bug("relu", relu_backward_in_place, "mutated its input", "cotangent"),
    "softmax: diagonal only": Bug("softmax", softmax_backward_diagonal_only, "mismatch", "z"),
    "softmax: wrong axis": Bug("softmax", softmax_backward_wrong_axis, "mismatch", "z"),
    "softmax CE: ignores dout": Bug(
        "softmax cross-entropy", softmax_ce_backward_ignores_dout, "mismatch", "z"
    ),
    "softmax CE: missing 1/m": Bug(
        "softmax cross-entropy", softmax_ce_backward_missing_one_over_m, "mismatch", "1/m"
    ),
}
