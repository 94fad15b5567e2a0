"""Float64 difference quotients of the loss along a direction: the step and the quotients.

``Oracle.one_sided_slopes`` evaluates the loss at x and x +- h d, x +- 2h d; this module chooses
h and turns those values into ``FiniteDifferences``. Forward (L(x + h d) - L(x)) / h and
backward (L(x) - L(x - h d)) / h differ by about h |L''| where the loss is smooth, and by the
jump in slope where a kink lies within h (a ReLU pre-activation at 0, a tie in a max-pool
window): see ``_kinks.at_kink`` and ``_subgradient.inside_kink``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FiniteDifferences", "quotients", "step_for"]

_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class FiniteDifferences:
    """Difference quotients of the loss along one direction (``Oracle.one_sided_slopes``)."""

    forward: float
    backward: float
    central: float
    truncation: float
    rounding: float
    step: float
    curvature: float = 0.0
    """The part of forward - backward a smooth loss explains: h |L''| (its second derivative
    along the direction), estimated as |gap(2h) - gap(h)| from the quotients at h and 2h,
    where gap is forward - backward (a kink's gap stays the same at both steps)."""


def step_for(value: float, resolution: float, scale: float) -> float:
    """The smallest step for which rounding stays well below ``resolution`` (the smallest slope
    difference that matters): h = 64 eps (|L| + 1) / resolution (the rounding error of a
    quotient is about 2 eps |L| / h), at least 1024 eps ``scale`` (a smaller step leaves
    x + h d equal to x in float64, no step at all, and both quotients would read 0) and at most
    0.1 ``scale`` (``scale`` = max(1, |x|)).

    >>> step_for(1.0, 1.0, 1.0) == 1024 * _EPS
    True
    """
    return min(max(64 * _EPS * (abs(value) + 1) / resolution, 1024 * _EPS * scale), 0.1 * scale)


def quotients(
    value: float, plus: np.ndarray, minus: np.ndarray, h: float, h2: float
) -> FiniteDifferences:
    """Forward, backward and central quotients from L(x) = ``value``, L(x + h d), L(x + h2 d)
    (``plus``) and L(x - h d), L(x - h2 d) (``minus``); ``truncation`` is the change of the
    central quotient from h to h2 (an estimate of its own error), ``rounding`` 4 eps (|L| + 1) / h,
    ``curvature`` the part of forward - backward that grows with the step (a smooth loss's).

    >>> fd = quotients(0.0, np.array([1e-3, 2e-3]), np.array([1e-3, 2e-3]), 1e-3, 2e-3)
    >>> fd.forward, fd.backward, fd.central  # |x| along d: a kink at 0
    (1.0, -1.0, 0.0)
    """
    forward, backward = (plus[0] - value) / h, (value - minus[0]) / h
    central = (plus[0] - minus[0]) / (2 * h)
    central2 = (plus[1] - minus[1]) / (2 * h2)
    gap, gap2 = forward - backward, (plus[1] - value) / h2 - (value - minus[1]) / h2
    return FiniteDifferences(
        float(forward),
        float(backward),
        float(central),
        float(abs(central2 - central)),
        4 * _EPS * (abs(value) + 1) / h,
        h,
        float(abs(gap2 - gap) * h / (h2 - h)),
    )
