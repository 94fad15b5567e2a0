"""Integer class labels to one-hot rows."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from manual_bp._validation import FloatArray, shape_str

__all__ = ["one_hot"]


def one_hot(labels: ArrayLike, k: int, dtype: DTypeLike = np.float64) -> FloatArray:
    r"""One-hot encode integer labels: :math:`Y_{ic} = \mathbb{1}[\text{labels}_i = c]`.

    Args:
        labels: integer class indices of shape (m,), each in [0, k).
        k: number of classes, a positive integer.
        dtype: floating dtype of the result.

    Returns:
        Y of shape (m, k), each row one 1 and zeros elsewhere.

    Raises:
        TypeError: non-integer labels. ValueError: wrong rank, no labels, k < 1, a label out of range.

    >>> one_hot(np.array([2, 0]), 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape (m,), got shape {shape_str(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError("labels is empty (shape (0,)): need at least one sample")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    bad = (arr < 0) | (arr >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"labels must lie in [0, {k}), but labels[{i}] = {int(arr[i])}")
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    out = np.zeros((arr.shape[0], k), dtype=dt)
    out[np.arange(arr.shape[0]), arr] = 1
    return out
