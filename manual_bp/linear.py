"""The linear (affine) layer z = x W + b and its local gradients.

The source document writes the neuron's local gradients as dz/dw = X grad f and
dz/dx = W grad f. With samples as rows and an upstream gradient dz = dJ/dz of shape (m, h),
the transposes become explicit: dJ/dW = x^T dz, dJ/dx = dz W^T, dJ/db = column sums of dz.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from manual_bp._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_ndim,
    check_nonempty,
    shape_str,
)

__all__ = ["linear", "linear_backward"]


def _check_dtypes(**arrays: FloatArray) -> None:
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} is {a.dtype}" for name, a in arrays.items())
        raise TypeError(f"arguments must share one floating dtype, but {listing}")


def _check_xw(x: FloatArray, w: FloatArray) -> None:
    check_ndim("x", x, (2,), "(m, n)")
    check_ndim("w", w, (2,), "(n, h)")
    check_nonempty("x", x)
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"x has shape {shape_str(x.shape)} but w has shape {shape_str(w.shape)}: "
            f"x's columns ({x.shape[1]}) must equal w's rows ({w.shape[0]})"
        )


def linear(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> FloatArray:
    r"""Affine map of a batch of rows.

    .. math:: Z = X W + \mathbf{1} b^\top

    Args:
        x: inputs of shape (m, n).
        w: weights of shape (n, h).
        b: bias of shape (h,).

    Returns:
        Z of shape (m, h), in the common dtype of the arguments. Gradients: :func:`linear_backward`.

    Raises:
        ValueError: on inconsistent shapes, an empty batch or non-finite input.
        TypeError: on mixed dtypes.

    >>> linear(np.ones((2, 3)), np.ones((3, 1)), np.array([0.5]))
    array([[3.5],
           [3.5]])
    """
    x, w, b = as_float_array("x", x), as_float_array("w", w), as_float_array("b", b)
    _check_xw(x, w)
    check_ndim("b", b, (1,), "(h,)")
    if b.shape[0] != w.shape[1]:
        raise ValueError(
            f"b has shape {shape_str(b.shape)} but w has shape {shape_str(w.shape)}: "
            f"b needs one entry per column of w ({w.shape[1]})"
        )
    _check_dtypes(x=x, w=w, b=b)
    for name, arr in (("x", x), ("w", w), ("b", b)):
        check_finite(name, arr)
    return x @ w + b


def _param_grads(dz: FloatArray, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(dW, db) = (x^T dz, column sums of dz): the parameter half of :func:`linear_backward`."""
    return x.T @ dz, np.sum(dz, axis=0)


def linear_backward(
    dz: ArrayLike, x: ArrayLike, w: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    r"""Local gradients of :func:`linear`, chained with the upstream gradient dz = dJ/dZ.

    .. math:: \frac{\partial J}{\partial X} = dZ\, W^\top, \qquad
              \frac{\partial J}{\partial W} = X^\top dZ, \qquad
              \frac{\partial J}{\partial b} = \mathbf{1}^\top dZ

    Args:
        dz: upstream gradient of shape (m, h), finite.
        x: the layer's input of shape (m, n), finite.
        w: the layer's weights of shape (n, h), finite.

    Returns:
        ``(dx, dw, db)`` of shapes (m, n), (n, h), (h,), in the common dtype.

    Raises:
        ValueError: on inconsistent shapes, empty batch or non-finite input.
        TypeError: on mixed dtypes.

    >>> dx, dw, db = linear_backward(np.ones((2, 1)), np.ones((2, 3)), np.ones((3, 1)))
    >>> dx.shape, dw.shape, db
    ((2, 3), (3, 1), array([2.]))
    """
    dz, x, w = as_float_array("dz", dz), as_float_array("x", x), as_float_array("w", w)
    _check_xw(x, w)
    check_ndim("dz", dz, (2,), "(m, h)")
    if dz.shape != (x.shape[0], w.shape[1]):
        raise ValueError(
            f"dz has shape {shape_str(dz.shape)} but x has shape {shape_str(x.shape)} and w has "
            f"shape {shape_str(w.shape)}: dz must be (m, h) = {(x.shape[0], w.shape[1])}"
        )
    _check_dtypes(dz=dz, x=x, w=w)
    for name, arr in (("dz", dz), ("x", x), ("w", w)):
        check_finite(name, arr)
    dw, db = _param_grads(dz, x)
    return dz @ w.T, dw, db
