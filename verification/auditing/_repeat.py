"""Repeatability within rounding: how far two calls of the candidate on one input may differ.

A candidate whose sums run in an order that changes from call to call (a set, threads, GPU
atomics) differs from itself by a few ulp. Reordering a sum of T terms moves it by at most
about T eps sum|terms|; the audit bounds it as the tolerance rule bounds rounding:

    |first - second| <= atol + rtol * |first|,   (rtol, atol) = compare.tolerance(dtype,
                                                   scale=max |first|, terms=T)

per leaf, T the number of elements of the largest argument (a bound on the length of the sums
inside). Within the bound the calls agree (the spread is reported in ulp of the leaf's largest
element); beyond it, or NaN/inf in one call only, the candidate is nondeterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verification.auditing._lowprec import is_float
from verification.compare import tolerance

__all__ = ["Spread", "spread"]


@dataclass(frozen=True)
class Spread:
    """How two calls differ.

    within : every difference within the bound (and NaN/inf in the same places).
    largest : the largest |first - second| (inf where NaN/inf appear in one call only).
    ulp : ``largest`` in units in the last place of the leaf's largest |element|.
    bound_ulp : the bound at that element, in the same unit.
    location : the leaf index and element of the largest difference, e.g. "[1][0, 2]".
    first, second : the values there.
    """

    within: bool
    largest: float
    ulp: float
    bound_ulp: float
    location: str
    first: float
    second: float


def _ulp(a: np.ndarray[Any, Any]) -> float:
    finite = a[np.isfinite(a)]
    top = float(np.max(np.abs(finite), initial=0.0))
    return float(np.spacing(a.dtype.type(top))) if top > 0 else float(np.finfo(a.dtype).tiny)


def spread(first: Sequence[Any], second: Sequence[Any], *, terms: int) -> Spread | None:
    """None if the leaves are bitwise equal, else how they differ (module docstring).

    >>> a = [np.array([1.0, 2.0])]
    >>> s = spread(a, [np.array([1.0, np.nextafter(2.0, 3.0)])], terms=2)
    >>> s.within, s.ulp
    (True, 1.0)
    >>> spread(a, [np.array([1.0, 2.5])], terms=2).within
    False
    """
    worst: Spread | None = None
    within = True
    for k, (x, y) in enumerate(zip(first, second, strict=True)):
        a, b = np.asarray(x), np.asarray(y)
        if a.shape != b.shape or a.dtype != b.dtype:
            return Spread(False, math.inf, math.inf, 0.0, f"[{k}]", math.nan, math.nan)
        if np.array_equal(a, b, equal_nan=is_float(a.dtype)):
            continue
        if not is_float(a.dtype):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            rtol, atol, ulp = 0.0, 0.0, 1.0
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            diff[np.isnan(a) & np.isnan(b)] = 0.0
            diff[np.isnan(diff)] = math.inf
            scale = float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))
            rtol, atol = tolerance(a.dtype, scale=scale, terms=max(terms, 1))
            ulp = _ulp(a)
        allowed = atol + rtol * np.abs(a.astype(np.float64))
        leaf_within = bool(np.all(diff <= allowed))
        within = within and leaf_within
        i = np.unravel_index(int(np.argmax(diff)), diff.shape)
        index = ", ".join(str(int(j)) for j in i)
        here = Spread(
            leaf_within,
            float(diff[i]),
            float(diff[i]) / ulp,
            float(allowed[i]) / ulp,
            f"[{k}][{index}]" if len(first) > 1 else f"[{index}]",
            float(a[i]),
            float(b[i]),
        )
        if worst is None or here.largest > worst.largest:
            worst = here
    if worst is None:
        return None
    return Spread(
        within, worst.largest, worst.ulp, worst.bound_ulp, worst.location, worst.first, worst.second
    )
