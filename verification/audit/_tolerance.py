"""How the audit tells rounding from bugs.

An element of the candidate's gradient passes when

    |candidate - reference| <= atol + rtol * |reference|

with, for a leaf of dtype ``dtype`` (eps its machine epsilon, eps32 that of float32):

    rtol, atol0 = compare.tolerance(dtype, scale=U, terms=T)     # 32 eps sqrt(T), 32 eps sqrt(T) U
    atol        = atol0 + KAPPA_SAFETY * (eps / eps32) * max |g32 - g64|  over the leaf

* U, the scale of the gradient near this input, is the larger of the largest |reference|
  element over all leaves and a secant slope |L(x +- s v) - L(x)| / s of the loss along a
  random unit direction v with s = max(1, |x|). The secant keeps U at the size the gradient
  has "around here" when it is tiny only because the loss saturates at this very point (a
  logistic regression with every sample classified by a margin of 40: the reference gradient is
  4e-18 while the textbook (sigmoid(z) - y) / m rounds to 0, a correct formula whose absolute
  rounding error is eps times the O(1) terms it subtracts). T is the number of elements of the
  largest argument, a bound on the length of the sums inside.
* g32 - g64 is the reference computed in float32 minus the reference in float64, at the same
  input. It measures how much this particular input amplifies rounding errors: it grows at
  extreme magnitudes and under cancellation (logits of 1e3, x W summing huge terms to a small
  one) exactly as the rounding error of any implementation does. A correct float64
  implementation makes that error with eps64 in place of eps32, so its error is about
  (eps64 / eps32) = 2^-29 times g32 - g64; KAPPA_SAFETY = 64 allows for a different order of
  operations.

Why this separates rounding from bugs: a float64 gradient that computes anything in float32
inside errs by about eps32 times the same amplification, i.e. about |g32 - g64| itself, which is
2^29 / 64 ~ 8e6 times the allowance (and 2^29 / (32 sqrt(T)) ~ 1e6 times atol0 relative to U),
while a structural bug (a sign, a factor, a transpose, a dropped term) changes elements by a
sizeable fraction of U. For float32 candidates eps / eps32 = 1: the allowance is 64 times the
float32 reference's own rounding. The float32 reference is unavailable (ignored) where it is
not finite (values beyond float32's range); atol0 alone applies there.

Explicit ``rtol``/``atol`` given to ``audit`` replace this rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from verification.compare import magnitude, tolerance

__all__ = ["KAPPA_SAFETY", "leaf_tolerances"]

KAPPA_SAFETY = 64.0
"""Multiple of (eps / eps32) * |g32 - g64| allowed on top of ``compare.tolerance``."""

_EPS32 = float(np.finfo(np.float32).eps)


def leaf_tolerances(
    dtypes: Sequence[np.dtype[Any]],
    grad: Sequence[np.ndarray[Any, Any]],
    grad32: Sequence[np.ndarray[Any, Any]] | None = None,
    *,
    secant: float = 0.0,
    terms: int,
    rtol: float | None = None,
    atol: float | None = None,
) -> list[tuple[float, float]]:
    """(rtol, atol) per gradient leaf by the rule of the module docstring.

    Parameters
    ----------
    dtypes : the dtype of each differentiated input leaf (the precision the candidate owes).
    grad, grad32 : the float64 reference and the float32 reference, one array per leaf. The
        audit first compares without ``grad32`` and ``secant`` (the strict tolerance
        ``compare.tolerance`` with U = max |grad|), and computes them only for an example
        that fails that: they can only widen the tolerance.
    secant : the secant slope of the loss near the input (>= 0).
    terms : a bound on the number of terms in the sums inside (>= 1).
    rtol, atol : explicit values that replace the rule's (each independently).

    Returns
    -------
    One (rtol, atol) per leaf.

    Examples
    --------
    >>> g = [np.array([1.0, -2.0])]
    >>> [(r, a)] = leaf_tolerances([np.dtype("float64")], g, terms=4)
    >>> r == a / 2 and 1e-14 < r < 1e-13
    True
    """
    scale = max(magnitude(list(grad)), secant if math.isfinite(secant) else 0.0)
    out = []
    for i, (dtype, g) in enumerate(zip(dtypes, grad, strict=True)):
        rule_rtol, rule_atol = tolerance(dtype, scale=scale, terms=max(terms, 1))
        g32 = g if grad32 is None else grad32[i]
        with np.errstate(invalid="ignore", over="ignore"):
            spread = np.abs(np.asarray(g32, np.float64) - np.asarray(g, np.float64))
        spread = spread[np.isfinite(spread)]
        if spread.size:
            eps = float(np.finfo(dtype).eps)
            rule_atol += KAPPA_SAFETY * (eps / _EPS32) * float(spread.max())
        out.append(
            (rule_rtol if rtol is None else rtol, rule_atol if atol is None else atol),
        )
    return out
