"""Valid subgradients at kinks: a candidate between the one-sided slopes is not wrong.

Where the loss has a kink (a tie inside a max-pool window, a ReLU pre-activation at 0) it has
no derivative, only one-sided ones: along a direction d, the forward quotient
(L(x + h d) - L(x)) / h and the backward one (L(x) - L(x - h d)) / h tend to different limits.
Every value between them is the slope of some valid choice (a max-pool that gives a tied
window's gradient to its first maximum, jnp.max that shares it): without a declared
convention, a candidate whose slope along d lies inside that bracket cannot be blamed, and
the example is oracle-uncertain. With a declared ``Kinks`` it is judged by the convention.

Two directions are tried: the direction of the disagreement (the candidate minus the
reference) and the coordinate of the worst element alone. Along the first, the kinks of many
windows can cancel (forward and backward quotients agree, while each window has a kink of its
own, of either sign); the coordinate of one element sees the kink of its own window.
"""

from __future__ import annotations

from verification.auditing._finite_differences import FiniteDifferences

__all__ = ["inside_kink"]


def inside_kink(fd: FiniteDifferences, value: float, resolution: float) -> bool:
    """Whether the one-sided quotients show a kink (they differ by more than 1/8 of
    ``resolution`` and by more than their own truncation and rounding) and ``value`` (the
    candidate's slope along the same direction) lies between them, within that error.

    >>> fd = FiniteDifferences(0.0244, 0.0358, 0.0301, 1e-9, 1e-9, 1e-6)
    >>> inside_kink(fd, 0.03, 0.01), inside_kink(fd, 0.09, 0.06)
    (True, False)
    >>> smooth = FiniteDifferences(0.5, 0.5, 0.5, 1e-9, 1e-9, 1e-6)
    >>> inside_kink(smooth, 0.5, 0.1)
    False
    """
    error = 4 * (fd.truncation + fd.rounding)
    gap = abs(fd.forward - fd.backward)
    if not gap > max(resolution / 8, error):
        return False
    low, high = min(fd.forward, fd.backward), max(fd.forward, fd.backward)
    return low - error <= value <= high + error
