"""Bug signatures: what a wrong gradient leaf looks like next to the right one, in words.

``diagnose`` compares one leaf of the candidate's gradient with the reference and names the
first signature that fits, most specific first:

* wrong shape (transposed shape, an axis of length 1 added or squeezed away, other);
* NaN or inf where the reference is finite (an overflow: exp without the max shift);
* zero where the reference is not (a dropped term);
* sign flipped;
* transposed (square leaves: same shape, but the reference's transpose);
* off by a constant factor, named when it matches a dimension of the problem (x m: the 1/m
  is missing; x 1/m: 1/m applied twice) or 2 or 1/2;
* nonzero only where the reference is exactly zero (a missing mask, e.g. ReLU's);
and, before those, an error far below the gradient's overall scale: at float32's rounding level
in a float64 result (float32 inside) or at float64's (an order of operations that loses
accuracy); otherwise it says how many elements differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Dimension", "diagnose"]

Dimension = tuple[int, str]
"""(size, description), e.g. (3, "m, the batch size (x.shape[0])")."""

_EPS32 = float(np.finfo(np.float32).eps)


def _close(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], scale: float) -> bool:
    """a == b up to 1e-6 of ``scale`` (loose: signatures are about O(1) changes)."""
    return bool(np.all(np.abs(a - b) <= 1e-6 * scale + 1e-6 * np.abs(b)))


def _factor_name(c: float, dims: Sequence[Dimension]) -> str:
    for size, what in dims:
        if size > 1 and abs(c - size) <= 1e-6 * size:
            return f"x {size} = {what}: the 1/{what.split(',')[0]} is missing"
        if size > 1 and abs(c * size - 1) <= 1e-6:
            return f"x 1/{size} (1/{what}): divided by {what.split(',')[0]} twice"
    if abs(c - 2) <= 2e-6:
        return "x 2 (a factor of 2 too many: d(x^2) = 2x twice, or a sum counted twice?)"
    if abs(c - 0.5) <= 1e-6:
        return "x 1/2 (a factor of 2 missing)"
    return f"off by a constant factor {c:.6g}"


def _shape_words(actual: tuple[int, ...], expected: tuple[int, ...]) -> str:
    if len(actual) == 2 and actual == expected[::-1]:
        return f"transposed: shape {actual} where {expected} is expected"
    if tuple(s for s in actual if s != 1) == tuple(s for s in expected if s != 1):
        return (
            f"wrong shape {actual}, expected {expected}: an axis of length 1 added or lost "
            "(a squeeze or reshape that breaks when a dimension is 1?)"
        )
    if int(np.prod(actual)) == int(np.prod(expected)):
        return f"wrong shape {actual}, expected {expected} (same number of elements)"
    return f"wrong shape {actual}, expected {expected}"


def diagnose(
    actual: Any,
    expected: np.ndarray[Any, Any],
    *,
    dims: Sequence[Dimension] = (),
    float64_result: bool = True,
    scale: float | None = None,
) -> str:
    """A one-line description of how the leaf ``actual`` differs from ``expected``.

    Parameters
    ----------
    actual : the candidate's leaf (any array-like).
    expected : the reference leaf, float64.
    dims : sizes of the problem's dimensions with a description, used to name a factor.
    float64_result : whether the candidate owes float64 accuracy (then an error at float32's
        rounding level is named).
    scale : the size of the gradient as a whole (e.g. the largest |reference| over all leaves);
        errors far below it are rounding, whatever their size relative to this leaf. Default:
        the largest |expected| of this leaf.

    Examples
    --------
    >>> ref = np.array([[1.0, -2.0], [0.5, 3.0]])
    >>> diagnose(-ref, ref)
    'sign flipped'
    >>> diagnose(3 * ref, ref, dims=[(3, "m, the batch size")])
    'x 3 = m, the batch size: the 1/m is missing'
    >>> diagnose(ref.T, ref)
    'transposed (the transpose of the reference)'
    """
    with np.errstate(all="ignore"):  # overflow in the fits below just means "no fit"
        return _diagnose(np.asarray(actual), expected, dims, float64_result, scale)


def _diagnose(
    a: np.ndarray[Any, Any],
    expected: np.ndarray[Any, Any],
    dims: Sequence[Dimension],
    float64_result: bool,
    scale: float | None,
) -> str:
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return _shape_words(a.shape, e.shape)
    if not np.issubdtype(a.dtype, np.number):
        return f"not a numeric array (dtype {a.dtype})"
    a = a.astype(np.float64)
    finite_e = np.isfinite(e)
    bad = ~np.isfinite(a) & finite_e
    if bad.any():
        return (
            f"NaN/inf at {int(bad.sum())} of {a.size} elements where the reference is finite "
            "(an overflow? e.g. exp without subtracting the max)"
        )
    if not finite_e.all():
        return "the reference is not finite here"
    leaf_scale = float(np.max(np.abs(e), initial=0.0))
    overall = max(leaf_scale, scale or 0.0)
    rel = float(np.max(np.abs(a - e))) / overall if overall > 0 else np.inf
    if float64_result and 1e-3 * _EPS32 <= rel <= 1e3 * _EPS32:
        return (
            f"error at float32's rounding level (largest error {rel:.2g} of the gradient's "
            f"scale, float32 eps = {_EPS32:.2g}): something inside computes in float32"
        )
    if rel < 1e-3 * _EPS32:
        return (
            f"error at float64's rounding level (largest error {rel:.2g} of the gradient's "
            "scale), above what rounding explains at this input: an order of operations that "
            "loses accuracy (a cancellation?) rather than a wrong formula"
        )
    scale = leaf_scale
    if scale == 0.0:
        return (
            "nonzero where the reference is exactly zero (a missing mask, e.g. ReLU's, or a "
            "pre-activation used where the activation belongs?)"
        )
    if not a.any():
        return "zero where the reference is not (a dropped term)"
    if _close(a, -e, scale):
        return "sign flipped"
    square = a.ndim == 2 and a.shape[0] == a.shape[1] > 1
    if square and not _close(e, e.T, scale) and _close(a, e.T, scale):
        return "transposed (the transpose of the reference)"
    c = float(np.vdot(a, e) / np.vdot(e, e))
    if math.isfinite(c) and abs(c - 1) > 1e-6 and c != 0 and _close(a, c * e, scale):
        return _factor_name(c, dims)
    differ = ~np.isclose(a, e, rtol=1e-9, atol=1e-9 * scale)
    zero_ref = e == 0
    if differ.any() and np.all(zero_ref[differ]):
        return (
            f"nonzero where the reference is exactly zero ({int(differ.sum())} of {a.size} "
            "elements): a missing mask, e.g. ReLU's, or a pre-activation used where the "
            "activation belongs?"
        )
    return f"{int(differ.sum())} of {a.size} elements differ (largest error {rel:.2g} of the scale)"
