"""Elements of drawn arrays: values of each kind of the grammar, in each float dtype.

``named_arrays`` (``_shapes``) draws an array's shape; these strategies draw its elements:
intervals rounded inwards to values the dtype holds, ``positive``, ``|x|>=d``, small integers,
labels, and bfloat16 (drawn as float32 between bfloat16 ends, then rounded, so that open ends
and distinct values survive the rounding).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from verification.auditing._grammar import Value
from verification.auditing._lowprec import BFLOAT16

__all__ = ["drawn_dtype", "elements", "label_rows"]


def _bounded(low: float, high: float, dtype: np.dtype[Any]) -> tuple[float, float]:
    """[low, high] rounded inwards to values the dtype holds exactly (hypothesis needs that)."""
    t = dtype.type
    lo, hi = t(low), t(high)
    if float(lo) < low:
        lo = np.nextafter(lo, t(np.inf))
    if float(hi) > high:
        hi = np.nextafter(hi, t(-np.inf))
    return float(lo), float(hi)


def drawn_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype hypothesis draws for ``dtype``: bfloat16 is drawn as float32, then rounded."""
    return np.dtype(np.float32) if dtype == BFLOAT16 else dtype


def _bfloat16_floats(
    low: float, high: float, exclude_min: bool = False, exclude_max: bool = False
) -> st.SearchStrategy[float]:
    """Floats of [low, high] (an end left out where asked) that bfloat16 holds exactly: the
    ends are moved inwards to bfloat16 values first, so that rounding a float32 drawn between
    them to bfloat16 stays inside (an open end, or two distinct values, survive the rounding).
    """
    t = BFLOAT16.type
    lo, hi = t(low), t(high)
    if float(lo) < low or (exclude_min and float(lo) == low):
        lo = np.nextafter(lo, t(np.inf))
    if float(hi) > high or (exclude_max and float(hi) == high):
        hi = np.nextafter(hi, t(-np.inf))
    tiny = float(np.finfo(np.float32).tiny)  # bfloat16's subnormals are float32's: not drawn
    a, b = (
        tiny if 0 < float(x) < tiny else -tiny if -tiny < float(x) < 0 else float(x)
        for x in (lo, hi)
    )
    return st.floats(a, b, width=32, allow_subnormal=False).map(lambda v: float(t(v)))


def elements(value: Value, dtype: np.dtype[Any], bound: float) -> st.SearchStrategy[Any]:
    """The elements of an array of kind ``value`` in ``dtype`` (as Python floats, drawn in
    ``drawn_dtype(dtype)``); ``bound``: the largest |element| where the kind leaves it open
    (``real``, the open ends of an interval, ``positive``, ``|x|>=d``)."""
    bfloat16 = dtype == BFLOAT16
    dtype = drawn_dtype(dtype)
    width: Literal[16, 32, 64] = 16 if dtype == np.float16 else 32 if dtype == np.float32 else 64

    def floats(low: float, high: float, **kw: bool) -> st.SearchStrategy[float]:
        if bfloat16:
            return _bfloat16_floats(low, high, **kw)
        lo, hi = _bounded(low, high, dtype)
        return st.floats(lo, hi, width=width, allow_subnormal=False, **kw)

    kind = value.kind
    if kind == "interval":
        low = value.low if np.isfinite(value.low) else -bound
        high = value.high if np.isfinite(value.high) else bound
        return floats(low, high, exclude_min=value.open_low, exclude_max=value.open_high)
    if kind == "positive":
        return floats(0.0, bound, exclude_min=True)
    if kind == "away":
        top = max(bound, 2 * value.low)
        return st.one_of(floats(value.low, top), floats(-top, -value.low))
    if kind == "ints":
        return st.integers(int(value.low), int(value.high)).map(float)
    if kind == "binary":
        return st.sampled_from([0.0, 1.0])
    if kind == "pm1":
        return st.sampled_from([-1.0, 1.0])
    return floats(-bound, bound)


def label_rows(
    draw: st.DrawFn, dtype: np.dtype[Any], shape: tuple[int, ...], soft: bool
) -> NDArray[Any]:
    """Label rows over the last axis of ``shape`` in ``dtype``: one-hot rows (every class
    reachable) or, with ``soft``, rows of probabilities summing to 1."""
    k = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    if not soft:
        classes = draw(st.lists(st.integers(0, k - 1), min_size=rows, max_size=rows))
        return np.eye(k, dtype=dtype)[classes].reshape(shape)
    weights = draw(hnp.arrays(np.float64, (rows, k), elements=st.floats(0.0, 1.0)))
    totals = weights.sum(axis=1, keepdims=True)
    probs = np.where(totals > 0, weights / np.where(totals > 0, totals, 1.0), 1.0 / k)
    return probs.astype(dtype).reshape(shape)
