"""How the audit tells rounding from bugs.

An element of the candidate's gradient passes when

    |candidate - reference| <= atol + rtol * |reference|

First, strictly, with ``compare.tolerance`` (rtol = 32 eps sqrt(T), atol = rtol U; eps the
machine epsilon of the candidate's dtype, T the number of elements of the largest argument, a
bound on the length of the sums inside, U the largest |reference| element over all leaves).
Correct code passes that almost always, and then nothing more is computed. An example that
fails it gets a second look, with a tolerance widened by what rounding can do *at this input*:

    atol = 32 eps sqrt(T) U' + KAPPA_SAFETY * max( (eps / eps32) * max |g32 - g|,
                                                   (eps / eta)   * max |g~ - g| )   per leaf

* U' is U or, if larger, the largest term the reference's own backward pass sums
  (``_cancellation``: a gradient that is a small difference of large terms, such as a batch
  norm's dx at batch size 1, exactly 0 as the difference of terms near 835, errs by a few eps
  of those terms in any correct implementation that forms them in another order), or a
  secant slope of the loss: |L(x +- s v) - L(x)| / s along a random
  unit direction v (s = max(1, |x|)), or |L(x) - L(t x)| / ((1 - t) |x|) towards the origin
  (t = 0, 1/2), over the differentiated arguments: the size the gradient has "around here". It
  matters where the loss saturates at this very point (a logistic regression with every sample classified by a
  margin of 40: the reference gradient is 4e-18, while the textbook (sigmoid(z) - y) / m rounds
  to 0, a correct formula whose absolute rounding error is eps times the O(1) terms it
  subtracts).
* g32 - g is the reference computed in float32 minus the float64 reference at the same input:
  how much this input amplifies rounding along the reference's own path (cancellation inside).
* g~ - g is the float64 reference at the input with every element multiplied by (1 + r),
  |r| <= eta = 2^-26, minus the reference: how much the gradient moves when the input moves
  (the conditioning of the problem). Any backward-stable implementation errs like an exact one
  fed inputs perturbed by a few eps, i.e. by about (eps / eta) |g~ - g|. This is what lets a
  correct float64 implementation through at extreme magnitudes: softmax logits of 512 computed as
  z - (max + log sum exp(z - max)) lose eps * 512 in every logit, and the gradient moves by that
  much times |W2|, well beyond 32 eps U, while the reference itself (which subtracts the max
  first) is accurate to a few eps.

KAPPA_SAFETY = 64 allows for a different order of operations and for a random perturbation
seeing less than the worst case.

Why this still catches a float64 gradient that computes anything in float32 inside: such code
errs like the float32 reference, or like an exact computation on inputs perturbed by eps32, so
by about |g32 - g| or (eps32 / eta) |g~ - g|: 2^29 / 64 ~ 8e6 times the float64 allowance (and
an error of eps32 relative to U is ~1e6 times the strict tolerance). A structural bug (a sign, a
factor, a transpose, a dropped term) changes elements by a sizeable fraction of U. For float32
candidates eps = eps32: the allowance is 64 times the float32 reference's own rounding. Values
that are not finite (a float32 reference beyond float32's range) are ignored.

Explicit ``rtol``/``atol`` given to ``audit`` replace this rule (each independently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from verification.auditing._oracle import PERTURBATION, spread
from verification.compare import magnitude, tolerance

__all__ = ["KAPPA_SAFETY", "leaf_tolerances"]

KAPPA_SAFETY = 64.0
"""Multiple of the rounding estimate allowed on top of ``compare.tolerance`` (module docstring)."""

_EPS32 = float(np.finfo(np.float32).eps)


def leaf_tolerances(
    dtypes: Sequence[np.dtype[Any]],
    grad: Sequence[np.ndarray[Any, Any]],
    grad32: Sequence[np.ndarray[Any, Any]] | None = None,
    grad_perturbed: Sequence[np.ndarray[Any, Any]] | None = None,
    *,
    secant: float = 0.0,
    summed: float = 0.0,
    terms: int,
    rtol: float | None = None,
    atol: float | None = None,
) -> list[tuple[float, float]]:
    """(rtol, atol) per gradient leaf by the rule of the module docstring.

    Parameters
    ----------
    dtypes : the dtype of each differentiated input leaf (the precision the candidate owes).
    grad, grad32, grad_perturbed : the float64 reference, the float32 reference and the
        float64 reference at the perturbed input, one array per leaf. The audit first compares
        without ``grad32``, ``grad_perturbed`` and ``secant`` (the strict tolerance), and
        computes them only for an example that fails that: they can only widen the tolerance.
    secant : the secant slope of the loss near the input (>= 0).
    summed : the largest term the reference's backward pass sums (``_cancellation``, >= 0).
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
    scale = max(
        magnitude(list(grad)),
        secant if math.isfinite(secant) else 0.0,
        summed if math.isfinite(summed) else 0.0,
    )
    out = []
    for i, (dtype, g) in enumerate(zip(dtypes, grad, strict=True)):
        rule_rtol, rule_atol = tolerance(dtype, scale=scale, terms=max(terms, 1))
        eps = float(np.finfo(dtype).eps)
        rounding = max(
            (eps / _EPS32) * spread(g, None if grad32 is None else grad32[i]),
            (eps / PERTURBATION) * spread(g, None if grad_perturbed is None else grad_perturbed[i]),
        )
        rule_atol += KAPPA_SAFETY * rounding
        out.append(
            (rule_rtol if rtol is None else rtol, rule_atol if atol is None else atol),
        )
    return out
