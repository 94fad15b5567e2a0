"""Bug signatures: what a wrong gradient leaf looks like next to the right one, in words.

``diagnose`` compares one leaf of the candidate's gradient with the reference on ONE input and
says what differs, naming only what that input shows by itself:

* a wrong shape (transposed, an axis of length 1 added or lost) and, when the sizes agree,
  whether the values are right in the other shape;
* NaN or inf where the reference is finite (an overflow only if the candidate warned of one);
* an error at float32's rounding level in a float64 result, or at float64's (an order of
  operations that loses accuracy);
* the candidate zero where the reference is not; the reference exactly zero where the candidate
  is not (said as such, no cause);
* transposed (a square leaf equal to the reference's transpose);
* nonzero only where the reference is exactly zero, right wherever it is not (at least one
  such element): a mask's pattern, named a missing mask by ``_evidence`` only if another
  input does not contradict it;
* every element the same multiple c of the reference, with at least two informative elements
  (reference well away from 0, error well above rounding) agreeing: ``Finding.factor``, c with its resolution.
  A factor is a fact about this input only; ``_evidence`` names its cause (sign flipped, a
  1/m missing) only after re-checking it at another input and at another size.
Otherwise it says how many elements differ, and where, without a cause.

"Equal" in these signatures means equal up to 1e-6 of the scale (signatures are about O(1)
changes) plus a ``Slack``: the rounding the verdict allows the candidate's dtype. It is (0, 0)
for float32 and float64 results; for a float16 or bfloat16 candidate it is the low-precision
verdict's own allowance (``_lowprec``: FACTOR E + u |reference|), so that a kernel that is
twice a correct low-precision one is "2 times the reference" although its rounding moves each
ratio by about 1e-3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "NO_SLACK",
    "Dimension",
    "Finding",
    "Fit",
    "Slack",
    "diagnose",
    "factor_fit",
    "find",
    "mask_pattern",
    "shape_words",
]

Dimension = tuple[int, str]
"""(size, description), e.g. (3, "m, the batch size (x.shape[0])")."""

_EPS32 = float(np.finfo(np.float32).eps)
_CLOSE = 1e-6
"""Relative closeness of two values for a signature (signatures are about O(1) changes)."""

Slack = tuple[float, float]
"""(rtol, atol): an error |a - e| <= atol + rtol |e| at an element that rounding alone explains
(module docstring)."""

NO_SLACK: Slack = (0.0, 0.0)


def _allowed(e: np.ndarray[Any, Any], slack: Slack) -> np.ndarray[Any, Any]:
    """The elementwise error ``slack`` allows next to reference values ``e``."""
    rtol, atol = slack
    return atol + rtol * np.abs(e)


@dataclass(frozen=True)
class Finding:
    """What ``find`` saw on one leaf: words, and a constant factor to confirm (or None)."""

    text: str
    factor: Fit | None = None
    zero_pattern: bool = False
    """The candidate differs only where the reference is exactly 0 (a mask to confirm)."""


def mask_pattern(
    a: np.ndarray[Any, Any], e: np.ndarray[Any, Any], slack: Slack = NO_SLACK
) -> bool | None:
    """True: ``a`` differs from ``e`` (by more than ``slack``) only where ``e`` is exactly 0, and
    agrees at one informative element at least (a mask's pattern); None: ``a`` agrees
    everywhere (no evidence either way); False: otherwise.

    >>> mask_pattern(np.array([1.0, 2.0]), np.array([0.0, 2.0]))
    True
    >>> mask_pattern(np.array([1.0, 1.0]), np.array([0.0, 2.0]))
    False
    """
    a = np.asarray(a, np.float64)
    e = np.asarray(e, np.float64)
    scale = float(np.max(np.abs(e), initial=0.0))
    differ = ~np.isclose(a, e, rtol=1e-9, atol=1e-9 * scale) & (np.abs(a - e) > _allowed(e, slack))
    if not differ.any():
        return None
    agreeing = ~differ & (np.abs(e) > 1e-3 * scale) & (scale > 0)
    return bool(np.all(e[differ] == 0) and agreeing.any())


def _close(
    a: np.ndarray[Any, Any],
    b: np.ndarray[Any, Any],
    scale: float,
    allowed: np.ndarray[Any, Any] | float = 0.0,
) -> bool:
    """a == b up to 1e-6 of ``scale`` (loose: signatures are about O(1) changes), plus
    ``allowed`` (the rounding of the candidate's dtype) at each element."""
    return bool(np.all(np.abs(a - b) <= _CLOSE * scale + _CLOSE * np.abs(b) + allowed))


@dataclass(frozen=True)
class Fit:
    """A constant factor seen on one input: ``c``, known to ``resolution`` (relative): every
    factor within ``resolution * |c|`` of ``c`` fits every element as well."""

    c: float
    resolution: float = _CLOSE

    def holds(self, value: float, other: float = 0.0) -> bool:
        """``value`` (known to ``other``, relative) may be this factor.

        >>> Fit(2.0, 0.01).holds(2.01), Fit(2.0, 0.01).holds(2.1)
        (True, False)
        """
        return abs(self.c - value) <= self.resolution * abs(self.c) + other * abs(value)

    def tells(self, value: float, gap: float) -> bool:
        """This factor is ``value`` and known well enough to tell it from any value ``gap``
        or more away from it (the nearest competing explanation: m + 1 for m, 2c for c).

        >>> Fit(4.001, 0.001).tells(4.0, 1.0), Fit(4.2, 0.2).tells(4.0, 1.0)
        (True, False)
        """
        return self.holds(value) and self.resolution * abs(self.c) < gap / 2

    def roughly(self, value: float, gap: float) -> bool:
        """``value`` may be this factor, but it is known too roughly to tell it from a value
        ``gap`` away (``tells`` says neither yes nor no)."""
        return self.holds(value) and not self.tells(value, gap)


def factor_fit(
    a: np.ndarray[Any, Any],
    e: np.ndarray[Any, Any],
    scale: float,
    *,
    at_least: int = 2,
    slack: Slack = NO_SLACK,
) -> Fit | None:
    """The factor c with ``a`` = c ``e`` at every element, if at least ``at_least``
    informative elements (|e| above 1e-3 of ``scale``, |a - e| above 1e-6 of it and above
    ``slack``) agree on it; else None. Equal means up to 1e-6 plus c times ``slack``: ``a`` is c
    times a result the verdict would accept. Without slack c is the informative elements'
    median ratio, known to 1e-6; with slack, each informative element allows an interval of
    factors, and c is the middle of their intersection, known to its half-width.

    >>> factor_fit(np.array([2.0, 4.0]), np.array([1.0, 2.0]), 2.0)
    Fit(c=2.0, resolution=1e-06)
    >>> factor_fit(np.array([2.0, 0.0]), np.array([1.0, 0.0]), 1.0, at_least=2) is None
    True
    >>> fit = factor_fit(np.array([2.01, 3.99]), np.array([1.0, 2.0]), 2.0, slack=(0.0, 0.01))
    >>> round(fit.c, 4), round(fit.resolution, 4)
    (1.9974, 0.0038)
    """
    a = np.asarray(a, np.float64).ravel()
    e = np.asarray(e, np.float64).ravel()
    if scale <= 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        return None
    allowed = _allowed(e, slack)
    useful = (np.abs(e) > 1e-3 * scale) & (np.abs(a - e) > _CLOSE * scale + allowed)
    if int(useful.sum()) < at_least:
        return None
    ratios = a[useful] / e[useful]
    if slack == NO_SLACK:
        c = float(np.median(ratios))
        if c == 0 or not np.all(np.abs(ratios - c) <= _CLOSE * abs(c)):
            return None
        return Fit(c) if _close(a, c * e, scale) else None
    half = np.abs(ratios) * (_CLOSE + allowed[useful] / np.abs(e[useful]))
    lo, hi = float(np.max(ratios - half)), float(np.min(ratios + half))
    c = (lo + hi) / 2
    if lo > hi or c == 0:
        return None
    width = (hi - lo) / 2
    if not _close(a, c * e, scale, abs(c) * allowed + width * np.abs(e)):
        return None
    return Fit(c, _CLOSE + width / abs(c))


def shape_words(actual: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> str:
    """How a leaf of the wrong shape relates to the reference, values compared where the
    sizes agree.

    >>> ref = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> shape_words(ref.T, ref)
    'transposed: values right in shape (2, 3) where (3, 2) is expected (return the transpose)'
    >>> shape_words(ref.reshape(1, 6), ref.reshape(6))
    'values right, shape (1, 6) where (6,) is expected'
    """
    a = np.asarray(actual)
    e = np.asarray(expected, np.float64)
    scale = float(np.max(np.abs(e), initial=0.0))
    numeric = np.issubdtype(a.dtype, np.number) and scale > 0  # all-zero values say nothing
    if a.ndim == 2 and a.shape == e.shape[::-1]:
        if numeric and _close(a.T.astype(np.float64), e, scale):
            return (
                f"transposed: values right in shape {a.shape} where {e.shape} is expected "
                "(return the transpose)"
            )
        values = "values differ too" if numeric else "the reference is 0 here: values not compared"
        return f"transposed shape {a.shape} where {e.shape} is expected ({values})"
    if a.size == e.size and numeric and _close(a.reshape(e.shape).astype(np.float64), e, scale):
        return f"values right, shape {a.shape} where {e.shape} is expected"
    if tuple(s for s in a.shape if s != 1) == tuple(s for s in e.shape if s != 1):
        values = "values differ too" if numeric else "the reference is 0 here: values not compared"
        return (
            f"wrong shape {a.shape}, expected {e.shape}: an axis of length 1 added or lost "
            f"({values})"
        )
    return f"wrong shape {a.shape}, expected {e.shape}"


def diagnose(
    actual: Any,
    expected: np.ndarray[Any, Any],
    *,
    dims: Sequence[Dimension] = (),
    float64_result: bool = True,
    scale: float | None = None,
    overflow_warned: bool = False,
) -> str:
    """A one-line description of how the leaf ``actual`` differs from ``expected``.

    Parameters
    ----------
    actual : the candidate's leaf (any array-like).
    expected : the reference leaf, float64.
    dims : sizes of the problem's dimensions with a description: a constant factor equal to
        one is mentioned as a coincidence to check, never as a cause (see ``_evidence``).
    float64_result : whether the candidate owes float64 accuracy (then an error at float32's
        rounding level is named).
    scale : the size of the gradient as a whole (e.g. the largest |reference| over all leaves);
        errors far below it are rounding, whatever their size relative to this leaf. Default:
        the largest |expected| of this leaf.
    overflow_warned : whether the candidate warned of an overflow (then NaN/inf is called one).

    Examples
    --------
    >>> ref = np.array([[1.0, -2.0], [0.5, 3.0]])
    >>> diagnose(-ref, ref)
    'every element is -1 times the reference (4 of 4 elements agree)'
    >>> diagnose(ref.T, ref)
    'transposed (the transpose of the reference)'
    """
    return find(
        actual,
        expected,
        dims=dims,
        float64_result=float64_result,
        scale=scale,
        overflow_warned=overflow_warned,
    ).text


def find(
    actual: Any,
    expected: np.ndarray[Any, Any],
    *,
    dims: Sequence[Dimension] = (),
    float64_result: bool = True,
    scale: float | None = None,
    overflow_warned: bool = False,
    slack: Slack = NO_SLACK,
) -> Finding:
    """``diagnose``'s words with the constant factor seen on this input (see ``diagnose``);
    ``slack``: the rounding the verdict allows the candidate's dtype (module docstring)."""
    with np.errstate(all="ignore"):  # overflow in the fits below just means "no fit"
        return _find(
            np.asarray(actual), expected, dims, float64_result, scale, overflow_warned, slack
        )


def _where(mask: np.ndarray[Any, Any], limit: int = 3) -> str:
    idx = [", ".join(str(int(i)) for i in ix) for ix in np.argwhere(mask)[:limit]]
    more = "" if int(mask.sum()) <= limit else ", ..."
    return "[" + "], [".join(idx) + "]" + more if idx else ""


def _find(
    a: np.ndarray[Any, Any],
    expected: np.ndarray[Any, Any],
    dims: Sequence[Dimension],
    float64_result: bool,
    scale: float | None,
    overflow_warned: bool,
    slack: Slack,
) -> Finding:
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return Finding(shape_words(a, e))
    if not np.issubdtype(a.dtype, np.number):
        return Finding(f"not a numeric array (dtype {a.dtype})")
    a = a.astype(np.float64)
    finite_e = np.isfinite(e)
    bad = ~np.isfinite(a) & finite_e
    if bad.any():
        cause = (
            " (the candidate warned of an overflow: e.g. exp without subtracting the max?)"
            if overflow_warned
            else ""
        )
        return Finding(
            f"NaN/inf at {int(bad.sum())} of {a.size} elements ({_where(bad)}) where the "
            f"reference is finite{cause}"
        )
    if not finite_e.all():
        return Finding("the reference is not finite here")
    leaf_scale = float(np.max(np.abs(e), initial=0.0))
    overall = max(leaf_scale, scale or 0.0)
    rel = float(np.max(np.abs(a - e), initial=0.0)) / overall if overall > 0 else np.inf
    if float64_result and 1e-3 * _EPS32 <= rel <= 1e3 * _EPS32:
        return Finding(
            f"error at float32's rounding level (largest error {rel:.2g} of the gradient's "
            f"scale, float32 eps = {_EPS32:.2g}): something inside computes in float32"
        )
    if rel < 1e-3 * _EPS32:
        return Finding(
            f"error at float64's rounding level (largest error {rel:.2g} of the gradient's "
            "scale), above what rounding explains at this input: an order of operations that "
            "loses accuracy (a cancellation?) rather than a wrong formula"
        )
    if leaf_scale == 0.0:
        nonzero = a != 0
        return Finding(
            f"the reference is exactly 0 at every element here; the candidate is not "
            f"({int(nonzero.sum())} of {a.size} nonzero, at {_where(nonzero)})",
            zero_pattern=True,
        )
    if not a.any():
        return Finding(f"zero where the reference is not (every one of {a.size} elements)")
    square = a.ndim == 2 and a.shape[0] == a.shape[1] > 1
    if (
        square
        and not _close(e, e.T, leaf_scale)
        and _close(a, e.T, leaf_scale, _allowed(e.T, slack))
    ):
        return Finding("transposed (the transpose of the reference)")
    allowed = _allowed(e, slack)
    differ = ~np.isclose(a, e, rtol=1e-9, atol=1e-9 * leaf_scale) & (np.abs(a - e) > allowed)
    zero_ref = e == 0
    agreeing_nonzero = ~differ & (np.abs(e) > 1e-3 * leaf_scale)
    if differ.any() and np.all(zero_ref[differ]) and agreeing_nonzero.any():
        return Finding(
            f"nonzero only where the reference is exactly 0 ({int(differ.sum())} of {a.size} "
            f"elements, at {_where(differ)}), right wherever it is not",
            zero_pattern=True,
        )
    fit = factor_fit(a, e, leaf_scale, at_least=1, slack=slack)
    if fit is not None:
        c = fit.c
        agree = int((np.abs(e) > 1e-3 * leaf_scale).sum())
        same_size = [what for size, what in dims if fit.tells(np.sign(c) * size, 1.0)]
        note = f"; {abs(c):g} is also {same_size[0]} here" if same_size else ""
        words = (
            f"every element is {c:.6g} times the reference ({agree} of {a.size} elements agree"
            if agree >= 2
            else f"the one informative element is {c:.6g} times the reference (one element "
            "is too little to call it a constant factor"
        )
        return Finding(f"{words}{note})", factor=fit)
    return Finding(
        f"{int(differ.sum())} of {a.size} elements differ (at {_where(differ)}; largest error "
        f"{rel:.2g} of the scale)"
    )
