"""What a failure's diagnosis learns from inputs other than the counterexample, through the
checker: the probe (candidate, reference and the verdict's slack at a new input), a constant
factor's cause (``_factor``), a mask seen twice and values right in a wrong shape or dtype
(``_evidence``), the finite difference along the worst element, and a failure that did not
reproduce. ``_engine.run_audit`` calls them once the search has its failure.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings, strategies as st
from jax import tree_util

from verification.auditing._check import Checker
from verification.auditing._diagnose import NO_SLACK, Fit, Slack, mask_pattern
from verification.auditing._evidence import (
    LARGE,
    Pair,
    Probe,
    mask_words,
    values_right_elsewhere,
)
from verification.auditing._factor import name_factor
from verification.auditing._guards import nondeterministic_words
from verification.auditing._outcome import Outcome
from verification.auditing._repeat import spread
from verification.auditing._report import count_elements
from verification.auditing._trees import copy_leaves, leaf_names, none_leaf
from verification.pinned import pinned_generation

__all__ = [
    "factor_words",
    "fd_at",
    "flaky",
    "informative_example",
    "mask_words_of",
    "values_words",
]


def _probe(checker: Checker, leaf: int) -> Probe:
    """Candidate and reference leaf ``leaf`` at new arguments, with the rounding the verdict
    allows the candidate there (see ``_evidence.Probe``)."""

    def probe(args: tuple[Any, ...]) -> Pair | None:
        try:
            value, grad = checker.oracle.gradient(args)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = tree_util.tree_leaves(checker.grad_fn(*args), is_leaf=none_leaf)
            slack = checker.slack(args, grad)
        except Exception:
            return None
        if len(got) != len(grad) or not (math.isfinite(value) and np.all(np.isfinite(grad[leaf]))):
            return None
        return (np.asarray(got[leaf]), grad[leaf], slack[leaf]) if slack is not None else None

    return probe


def _slack_of(failure: Outcome) -> Slack:
    """The rounding the verdict allowed the failing leaf on the counterexample: the
    low-precision tolerances there (``Outcome.rtol``, ``atol``), none for other dtypes."""
    if failure.low_precision and failure.rtol is not None and failure.atol is not None:
        return failure.rtol, failure.atol
    return NO_SLACK


def _rng_of(args: tuple[Any, ...]) -> np.random.Generator:
    """Randomness drawn from the counterexample itself, not the search's seed: its reproducer
    (the audit of that input alone) re-checks it at the same inputs and says the same words."""
    crc = 0
    for leaf in tree_util.tree_leaves(args):
        crc = zlib.crc32(np.ascontiguousarray(leaf).tobytes(), crc)
    return np.random.default_rng(crc)


def factor_words(failure: Outcome, checker: Checker) -> str:
    """The failure's diagnosis with its constant factor re-checked (``_evidence``) at inputs
    made from the counterexample alone."""
    fit, worst = failure.factor or Fit(1.0), failure.worst or 0
    args = failure.args
    leaf = leaf_names(args, checker.argnums, checker.names(args))[worst]
    rng = _rng_of(failure.args)
    with np.errstate(all="ignore"):
        words = name_factor(
            fit.c,
            _probe(checker, worst),
            args,
            checker.argnums,
            checker.names(args),
            rng,
            large=count_elements(args)[0] > LARGE,
            resolution=fit.resolution,
        )
    return f"{leaf}: {words}"


def informative_example(
    checker: Checker, leaf: int, drawn: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """One input drawn from the audit's own strategy (so in the user's domain) where no float
    array is all 0 and the reference's leaf ``leaf`` is not all 0, or none: shrunk
    counterexamples are zeros, where a wrong shape or dtype leaves the values unjudged and a
    term that vanishes can make a wrong gradient look like a constant multiple."""
    if not isinstance(drawn, st.SearchStrategy):
        return []

    def informative(args: tuple[Any, ...]) -> bool:
        arrays = [a for a in tree_util.tree_leaves(args) if isinstance(a, np.ndarray)]
        floats = [a for a in arrays if np.issubdtype(a.dtype, np.floating)]
        if not all(np.max(np.abs(a), initial=0.0) >= 1e-3 for a in floats if a.size):
            return False  # an array of (near) zeros hides terms (x = 0 leaves only a penalty)
        try:
            value, grad = checker.oracle.gradient(args)
        except Exception:
            return False
        return math.isfinite(value) and bool(np.any(grad[leaf] != 0))

    quiet = settings(
        database=None,
        max_examples=30,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    try:
        with pinned_generation():
            return [find(drawn, informative, settings=quiet)]
    except Exception:
        return []


def values_words(failure: Outcome, checker: Checker, others: list[tuple[Any, ...]]) -> str | None:
    """A wrong shape or dtype whose values could not be judged on the counterexample (its
    reference is 0): re-checked at inputs near it."""
    text = failure.diagnosis or ""
    if "values right" in text or "values are right" in text or "returned None" in text:
        return text
    worst = failure.worst or 0
    rng = _rng_of(failure.args)
    with np.errstate(all="ignore"):
        right = values_right_elsewhere(
            _probe(checker, worst),
            failure.args,
            checker.argnums,
            rng,
            others,
            large=count_elements(failure.args)[0] > LARGE,
        )
    if not right:
        return text
    return (
        f"{text}; its values are right at {right} other input{'s' if right > 1 else ''} "
        "(near this one, or the first "
        "failing example) where the reference is not 0 (values right, only the "
        + ("shape" if failure.kind == "wrong shape" else "dtype")
        + " is wrong)"
    )


def mask_words_of(failure: Outcome, checker: Checker) -> str | None:
    """ ", a missing mask ..." where the evidence carries it (``_evidence.mask_words``)."""
    worst = failure.worst or 0
    here = failure.got is not None and failure.grad is not None
    if failure.got is not None and failure.grad is not None:
        here = bool(mask_pattern(failure.got[worst], failure.grad[worst], _slack_of(failure)))
    rng = _rng_of(failure.args)
    with np.errstate(all="ignore"):
        return mask_words(
            here,
            _probe(checker, worst),
            failure.args,
            checker.argnums,
            rng,
            large=count_elements(failure.args)[0] > LARGE,
        )


def flaky(failure: Outcome, checker: Checker) -> Outcome:
    """A failure that did not reproduce on the same input: the candidate's result depends on
    something besides its arguments. Measured: the failing result against a new call."""
    before = failure.diagnosis or failure.kind
    words = (
        f"the candidate failed on this input ({failure.kind}: {before}) and passed on the same "
        "input when it was checked again: its result depends on something besides its "
        "arguments (state kept between calls, randomness)"
    )
    if failure.got is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                again = copy_leaves(checker.grad_fn(*failure.args))
            terms = max([int(np.size(x)) for x in tree_util.tree_leaves(failure.args)], default=1)
            s = spread(copy_leaves(failure.got), again, terms=terms)
        except Exception:
            s = None
        if s is not None:
            words = nondeterministic_words(s, "the failing call and a later call") + "; " + words
    return replace(failure, kind="nondeterministic", diagnosis=words, location=None)


def fd_at(checker: Checker, failure: Outcome) -> tuple[float, str] | None:
    """Central finite difference of the loss with respect to the element ``location``, and
    its label: step, two-sided, and whether the one-sided quotients disagree (a kink or clip
    within the step)."""
    args = failure.args
    names = leaf_names(args, checker.argnums, checker.names(args))
    inputs = checker.differentiated(args)
    location = failure.location or ""
    for k, name in enumerate(names):
        if location == name or location.startswith(name + "["):
            index_text = location[len(name) :].strip("[]")
            index = tuple(int(i) for i in index_text.split(",") if i.strip())
            d = [np.zeros(np.shape(y)) for y in inputs]
            d[k][index] = 1.0
            scale = max(1.0, *(float(np.max(np.abs(y), initial=0.0)) for y in inputs))
            step = float(np.finfo(np.float64).eps) ** (1 / 3) * scale
            fd = checker.oracle.one_sided_slopes(args, d, 1.0, step=step)
            label = f"central (two-sided), step {fd.step:.2g}"
            gap = abs(fd.forward - fd.backward)
            smooth = 4 * fd.truncation + 2 * fd.rounding + 2 * fd.curvature  # no kink needed
            if gap > 1e-3 * max(abs(fd.forward), abs(fd.backward), 1e-300) + smooth:
                label += (
                    f"; it straddles a kink or clip: one-sided quotients forward "
                    f"{fd.forward:.6g}, backward {fd.backward:.6g}"
                )
            return fd.central, label
    return None
