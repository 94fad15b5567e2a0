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

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from verification.auditing._finite_differences import FiniteDifferences
from verification.auditing._kinks import at_kink
from verification.auditing._oracle import Oracle
from verification.auditing._outcome import Outcome

__all__ = ["confirm", "inside_kink"]


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


def confirm(
    oracle: Oracle,
    kinks: str | None,
    args: tuple[Any, ...],
    got: Sequence[Any],
    grad: Sequence[np.ndarray[Any, Any]],
    outcome: Outcome,
) -> Outcome:
    """``outcome`` (a mismatch of ``got`` against the reference ``grad`` at ``args``) with
    the blame kept only where finite differences along the disagreement side with the
    reference; otherwise the example is oracle-uncertain, or, with a declared convention at
    kinks (``kinks``, ``_kinks.Kinks.convention``), judged by it."""
    cand = [np.asarray(g, np.float64) for g in got]
    if not all(np.all(np.isfinite(g)) for g in cand):
        return outcome  # NaN/inf where the reference is finite: no kink excuses that
    delta = [g - e for g, e in zip(cand, grad, strict=True)]
    norm = math.sqrt(sum(float(np.vdot(d, d)) for d in delta))
    d = [x / norm for x in delta]
    fd = oracle.one_sided_slopes(args, d, norm)
    ref_d = float(sum(np.vdot(e, x) for e, x in zip(grad, d, strict=True)))
    confirmed = (
        abs(fd.forward - ref_d) <= norm / 4
        and abs(fd.backward - ref_d) <= norm / 4
        and fd.truncation <= norm / 8
        and fd.rounding <= norm / 8
    )
    # A candidate between one-sided slopes that disagree is a valid subgradient.
    kink = inside_kink(fd, ref_d + norm, norm) or (
        confirmed and _worst_inside_kink(oracle, args, cand, grad, outcome.worst or 0)
    )
    confirmed = confirmed and not kink
    if not confirmed and kinks is not None and (kink or at_kink(fd, ref_d, norm)):
        outcome.kink_note = (
            f"at a kink, under the declared convention {kinks} (one-sided finite "
            f"differences {fd.forward:.6g} and {fd.backward:.6g}: no derivative here, so the "
            f"reference's {ref_d:.6g} is the convention; the candidate gives {ref_d + norm:.6g}"
            ")"
        )
        outcome.diagnosis = f"{outcome.kink_note}; {outcome.diagnosis}"
        return outcome
    if not confirmed:
        outcome.kind, outcome.uncertain = None, True
        outcome.diagnosis = (
            f"candidate and reference differ by {norm:.3g} along their difference, but "
            f"finite differences (forward {fd.forward:.6g}, backward {fd.backward:.6g}, "
            f"step {fd.step:.2g}) do not confirm the reference ({ref_d:.6g}); the candidate "
            f"gives {ref_d + norm:.6g}"
        )
        if kink:
            outcome.diagnosis += (
                "; a kink: the candidate's slope lies between one-sided slopes that "
                "disagree (a valid subgradient; declare a Kinks convention to judge it)"
            )
    return outcome


def _worst_inside_kink(
    oracle: Oracle,
    args: tuple[Any, ...],
    cand: Sequence[np.ndarray[Any, Any]],
    grad: Sequence[np.ndarray[Any, Any]],
    leaf: int,
) -> bool:
    """``inside_kink`` along the coordinate of the worst element of leaf ``leaf`` alone
    (``_subgradient``: kinks of many elements can cancel along the difference)."""
    error = np.abs(cand[leaf] - grad[leaf])
    flat = int(np.argmax(error))
    resolution = float(error.ravel()[flat])
    if not (math.isfinite(resolution) and resolution > 0):
        return False
    e = [np.zeros(np.shape(g)) for g in grad]
    e[leaf].ravel()[flat] = 1.0
    fd = oracle.one_sided_slopes(args, e, resolution)
    return inside_kink(fd, float(cand[leaf].ravel()[flat]), resolution)
