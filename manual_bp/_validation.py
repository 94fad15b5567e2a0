"""Input checks shared by the public entry points.

Every public function of :mod:`manual_bp` validates its arguments once, here, and then runs
on plain arrays. The rules, stated once for the whole package:

* Real floating input keeps its dtype; integer and boolean input is converted to float64;
  anything else (complex, strings, objects) raises :class:`TypeError`.
* Shapes must match exactly: nothing is broadcast silently. A mismatch raises
  :class:`ValueError` naming both arguments and their shapes.
* An empty batch (m = 0) raises :class:`ValueError`.
* Non-finite values (NaN, ±inf) raise :class:`ValueError` in every function that computes a
  loss or a gradient; only the forward activations (``relu``, ``sigmoid``, ``softmax``) pass
  them through (NaN gives NaN; ±inf gives the exact limit where one exists, else NaN).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.floating[Any]]

__all__ = [
    "FloatArray",
    "as_float_array",
    "check_finite",
    "check_in_range",
    "check_lr",
    "check_ndim",
    "check_nonempty",
    "check_same_shape",
    "shape_str",
]


def shape_str(shape: tuple[int, ...]) -> str:
    """Format a shape as numpy prints it: ``(4, 3)``, ``(4,)``, ``()``."""
    return str(tuple(int(d) for d in shape))


def as_float_array(name: str, value: ArrayLike, dtype: np.dtype[Any] | None = None) -> FloatArray:
    """Return ``value`` as a floating array without copying when it already is one.

    Integer and boolean arrays become float64 (or ``dtype`` when given). Complex, string and
    object arrays raise ``TypeError`` naming the argument. With ``dtype``, a floating array is
    cast to it (used for labels, which follow the dtype of the values they label).
    """
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind == "f":
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        return arr
    if kind in "iub":
        return arr.astype(dtype if dtype is not None else np.float64)
    raise TypeError(
        f"{name} must be a real numeric array, got dtype {arr.dtype} (shape {shape_str(arr.shape)})"
    )


def check_ndim(name: str, arr: FloatArray, ndims: tuple[int, ...], what: str) -> None:
    """Raise ``ValueError`` unless ``arr.ndim`` is one of ``ndims``; ``what`` names the layout."""
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must have shape {what}, got {arr.ndim}-d array of shape {shape_str(arr.shape)}"
        )


def check_nonempty(name: str, arr: FloatArray) -> None:
    """Raise ``ValueError`` for an empty batch (first axis of length 0) or an empty array."""
    if arr.size == 0:
        raise ValueError(
            f"{name} is empty (shape {shape_str(arr.shape)}): need at least one sample and one column"
        )


def check_same_shape(name: str, arr: FloatArray, ref_name: str, ref: FloatArray) -> None:
    """Raise ``ValueError`` unless ``arr`` and ``ref`` have exactly the same shape."""
    if arr.shape != ref.shape:
        raise ValueError(
            f"{name} has shape {shape_str(arr.shape)} but {ref_name} has shape "
            f"{shape_str(ref.shape)}; they must be equal (nothing is broadcast)"
        )


def check_finite(name: str, arr: FloatArray) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or ±inf, naming the first offending index."""
    finite = np.isfinite(arr)
    if not finite.all():
        idx = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{name} must be finite, but {name}{list(idx)} = {arr[idx]!r} "
            f"(shape {shape_str(arr.shape)})"
        )


def check_in_range(name: str, arr: FloatArray, low: float, high: float | None) -> None:
    """Raise ``ValueError`` if some element lies outside ``[low, high]`` (``high=None``: no bound)."""
    bad = arr < low if high is None else (arr < low) | (arr > high)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        upper = "inf)" if high is None else f"{high}]"
        raise ValueError(
            f"{name} must lie in [{low}, {upper}, but {name}{list(idx)} = {arr[idx]!r}"
        )


def check_lr(lr: object) -> float:
    """Return the learning rate as a float: a real, finite number > 0 (``TypeError``/``ValueError``)."""
    if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating | np.integer):
        raise TypeError(f"lr must be a real number, got {type(lr).__name__}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    return float(lr)
