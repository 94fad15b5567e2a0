"""The one audit engine: ``run_audit`` checks a candidate under a ``Policy`` and reports.

``audit`` is a thin wrapper over ``run_audit``; other kinds of audit call it with their own
candidate and loss (e.g. a layer's vector-Jacobian product turned into a gradient of a
scalar), their own ``Policy`` (tolerance rule, comparison) and their own argument names.
"""

from __future__ import annotations

import math
import random
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings, strategies as st
from jax import tree_util

from verification.auditing._check import DEFAULT_POLICY, Checker, Policy
from verification.auditing._diagnose import (
    NO_SLACK,
    Slack,
    factor_fit,
    mask_pattern,
)
from verification.auditing._errors import AuditSpecError
from verification.auditing._evidence import (
    LARGE,
    Pair,
    Probe,
    mask_words,
    values_right_elsewhere,
)
from verification.auditing._factor import name_factor
from verification.auditing._guards import nondeterministic_words
from verification.auditing._kinks import Kinks, aimed, source as kinks_source
from verification.auditing._locate import leaf_index, locate_failure
from verification.auditing._oracle import Oracle
from verification.auditing._outcome import Outcome, Tally
from verification.auditing._profile import DIAGNOSIS, Profile, phase, profiling
from verification.auditing._repeat import spread
from verification.auditing._report import AuditReport, count_elements, function_name
from verification.auditing._reproducer import LITERAL_LIMIT
from verification.auditing._search import search
from verification.auditing._simplify import domain_of, simplify
from verification.auditing._stages import Stage, locate_stage, resolve_stages
from verification.auditing._trees import copy_leaves, leaf_names, none_leaf
from verification.pinned import pinned_generation

__all__ = ["oracle_for", "run_audit"]

_ORACLES: dict[tuple[Any, tuple[int, ...]], Oracle] = {}
"""One oracle (with its compiled shapes) per (loss_fn, argnums), kept for the process."""


def oracle_for(loss_fn: Callable[..., Any], argnums: tuple[int, ...]) -> Oracle:
    """The process's oracle for ``loss_fn`` and ``argnums`` (compiled shapes are reused)."""
    key = (loss_fn, argnums)
    oracle = _ORACLES.get(key)
    if oracle is None:
        oracle = _ORACLES[key] = Oracle(loss_fn, argnums)
    return oracle


def run_audit(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    *,
    argnums: tuple[int, ...],
    max_examples: int,
    seed: int | None,
    arg_names: Sequence[str] | None = None,
    policy: Policy = DEFAULT_POLICY,
    argnums_shown: int | tuple[int, ...] | None = None,
    kinks: Kinks | None = None,
    stages: Mapping[str, Stage | str] | None = None,
    intermediates: Callable[..., Any] | None = None,
    replay: Sequence[tuple[Any, ...]] = (),
    profile: bool = False,
    quick: bool = False,
    locate: bool = True,
) -> AuditReport:
    """Search for an input where ``grad_fn`` is not the gradient of ``loss_fn`` (validated
    arguments; see ``audit``) and return the report. ``replay``: argument tuples checked before
    the search (stored counterexamples, ``_store``). ``policy`` holds the tolerance rule and
    the comparison; ``argnums_shown`` is how the report spells ``argnums``; ``kinks`` aims the
    strategy at declared kinks (``_kinks``); ``stages`` and ``intermediates`` locate the stage
    of a failure (``_stages``); ``profile`` records where the time went (``_profile``) in
    ``report.profile``; ``quick`` stops at the verdict and the offending elements (no
    shrinking, no re-checks, no stage, no finite difference at the worst element, no line
    located); ``locate`` names the line where a mismatch enters (``_locate``)."""
    if profile:  # the same audit, recorded
        recorded = Profile()
        with profiling(recorded):
            report = run_audit(
                grad_fn, loss_fn, args, argnums=argnums, max_examples=max_examples, seed=seed,
                arg_names=arg_names, policy=policy, argnums_shown=argnums_shown, kinks=kinks,
                stages=stages, intermediates=intermediates, replay=replay, quick=quick, locate=locate,
            )  # fmt: skip
        report.profile = recorded
        return report
    concrete = not isinstance(args, st.SearchStrategy)
    if seed is None:  # one given input: the same verdict and words at every run
        seed = 0 if concrete else random.SystemRandom().randrange(2**32)
    chain = None if stages is None else resolve_stages(stages)
    if (chain is None) != (intermediates is None):
        raise AuditSpecError("stages and intermediates go together: give both or neither")
    if kinks is not None:
        policy = replace(policy, kinks=kinks.convention)
        if isinstance(args, st.SearchStrategy):
            args = aimed(args, kinks, argnums)
    oracle = oracle_for(loss_fn, argnums)
    checker = Checker(grad_fn, oracle, argnums, arg_names, seed, policy)
    tally = checker.tally
    compile_before, compilations_before = oracle.compile_seconds, oracle.compilations
    run_before = oracle.run_seconds
    start = time.perf_counter()
    failure = search(
        checker.check,
        tally,
        args,
        max_examples=max_examples,
        seed=seed,
        replay=replay,
        shrink=not quick,
    )
    total = time.perf_counter() - start
    timings = dict(tally.timings)
    timings["compile"] = oracle.compile_seconds - compile_before
    timings["oracle"] = oracle.run_seconds - run_before
    timings["total"] = total
    timings["generation and hypothesis"] = total - sum(
        timings[k] for k in ("candidate", "oracle", "compare", "compile")
    )
    checked = tally.examples - tally.uncertain - tally.out_of_domain
    report = AuditReport(
        passed=failure is None and checked > 0,
        inconclusive=failure is None and checked == 0,
        examples=tally.examples,
        counterexample=None,
        max_abs_error=tally.max_abs,
        max_rel_error=tally.max_rel,
        max_scaled_error=tally.max_scaled,
        location=None,
        seed=seed,
        environment=oracle.env,
        grad_fn=function_name(grad_fn),
        loss_fn=function_name(loss_fn),
        argnums=argnums if argnums_shown is None else argnums_shown,
        uncertain=tally.uncertain,
        uncertain_notes=tally.uncertain_notes,
        out_of_domain=tally.out_of_domain,
        spread_ulp=tally.spread_ulp,
        timings=timings,
        compilations=oracle.compilations - compilations_before,
        low_precision=tally.low_precision,
        arg_names=list(arg_names) if arg_names else [],
        replayed=len(replay),
        concrete=concrete,
    )
    first = tally.first_failure
    if failure is not None and first is not None and first <= len(replay):
        report.replay_failed = first - 1
    if failure is not None:
        with phase(DIAGNOSIS):
            _fill_failure(report, failure, checker, tally, args, quick=quick)
        if kinks is not None:  # the reproducer declares the same convention
            line, name = kinks_source(kinks)
            report.reproducer_calls = [
                "from verification import audit",
                line,
                "print(grad_fn(*copy.deepcopy(args)))",
                f"print(audit(grad_fn, loss_fn, args{report.call_options()}, kinks={name}))",
            ]
        # Values that are wrong, not a guard's failure; and not a result repeated from an
        # earlier input (the notes of ``_guards.note_memoised``), which is no stage's fault.
        args_found = report.counterexample
        located = report.kind in ("mismatch", "wrong shape") and bool(args_found)
        located = located and "returned exactly what it returned" not in (report.diagnosis or "")
        located = located and not quick
        if chain is not None and intermediates is not None and args_found and located:
            with phase(DIAGNOSIS):
                report.stage = str(
                    locate_stage(
                        intermediates,
                        chain,
                        args_found,
                        oracle_for=oracle_for,
                        failing_location=report.location,
                        seed=seed,
                    )
                )
        if locate and located and report.kind == "mismatch" and args_found:
            names = checker.names(args_found)
            leaf = leaf_index(report.location, leaf_names(args_found, argnums, names))
            if leaf is not None:
                started = time.perf_counter()
                with phase(DIAGNOSIS):
                    report.where = locate_failure(
                        grad_fn,
                        loss_fn,
                        checker.check,
                        args,
                        args_found,
                        argnums=argnums,
                        arg_names=names,
                        leaf=leaf,
                        seed=seed,
                    )
                report.timings["locate"] = time.perf_counter() - started
    return report


def _fill_failure(
    report: AuditReport,
    failure: Outcome,
    checker: Checker,
    tally: Tally,
    drawn: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    *,
    quick: bool = False,
) -> None:
    small = count_elements(failure.args)[0] <= LITERAL_LIMIT  # zeroing 64 of 10^5: no use
    if quick:  # the verdict, the failing input and its offending elements; no explanation
        _fill_verdict(report, failure, tally)
        report.shrink_steps = 0  # not shrunk: hypothesis only replayed the failing example
        return
    if small and failure.kind in ("mismatch", "wrong shape", "wrong dtype", "wrong structure"):
        failure = simplify(checker.check, failure, checker.argnums, domain_of(drawn))
    first = tally.first_failing
    others = [first.args] if first is not None and first.args is not failure.args else []
    if failure.kind == "flaky":
        failure = _flaky(failure, checker)
    elif failure.kind == "mismatch" and failure.factor is not None and failure.worst is not None:
        # From the counterexample alone (no input only the search has): the reproducer, an
        # audit of that input, names the same factor or none.
        failure.diagnosis = _factor_words(failure, checker)
    elif failure.kind in ("wrong shape", "wrong dtype") and failure.worst is not None:
        informative = _informative_example(checker, failure.worst, drawn)
        failure.diagnosis = _values_words(failure, checker, [*others, *informative])
    elif failure.kind == "mismatch" and failure.zero_pattern:  # from the counterexample alone
        failure.diagnosis = (failure.diagnosis or "") + (_mask_words(failure, checker) or "")
    # The words above replace the diagnosis; the kink and memo notes stay with it.
    if failure.kink_note and not (failure.diagnosis or "").startswith(failure.kink_note):
        failure.diagnosis = f"{failure.kink_note}; {failure.diagnosis}"
    if failure.memo_note and not (failure.diagnosis or "").endswith(failure.memo_note):
        failure.diagnosis = f"{failure.diagnosis}{failure.memo_note}"
    _fill_verdict(report, failure, tally)
    if failure.kind == "mismatch" and failure.location is not None:
        fd = _fd_at(checker, failure)
        if fd is not None:
            report.finite_difference, report.finite_difference_note = fd


def _fill_verdict(report: AuditReport, failure: Outcome, tally: Tally) -> None:
    """The failure's facts on the report: kind, input, location, values, offending elements."""
    report.kind = failure.kind
    report.counterexample = failure.args or None
    report.shrink_steps = tally.examples - (tally.first_failure or tally.examples)
    report.location = failure.location
    report.diagnosis = failure.diagnosis
    report.candidate, report.reference = failure.candidate, failure.reference
    report.rtol, report.atol = failure.rtol, failure.atol
    report.traceback = failure.traceback
    report.leaves = failure.leaves
    report.warnings = failure.warnings
    report.low_precision = failure.low_precision
    report.offending = failure.offending
    report.max_abs_error, report.max_rel_error = (
        (failure.max_abs, failure.max_rel) if failure.kind == "mismatch" else (math.inf, math.inf)
    )
    report.max_scaled_error = failure.max_scaled if failure.kind == "mismatch" else math.inf


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


def _factor_words(failure: Outcome, checker: Checker) -> str:
    """The failure's diagnosis with its constant factor re-checked (``_evidence``) at inputs
    made from the counterexample alone."""
    factor, worst = failure.factor or 1.0, failure.worst or 0
    args = failure.args
    leaf = leaf_names(args, checker.argnums, checker.names(args))[worst]
    rng = _rng_of(failure.args)
    resolution = 1e-6
    if failure.got is not None and failure.grad is not None:
        ref = failure.grad[worst]
        scale = float(np.max(np.abs(ref), initial=0.0))
        with np.errstate(all="ignore"):
            fit = factor_fit(failure.got[worst], ref, scale, at_least=1, slack=_slack_of(failure))
        resolution = resolution if fit is None else fit.resolution
    with np.errstate(all="ignore"):
        words = name_factor(
            factor,
            _probe(checker, worst),
            args,
            checker.argnums,
            checker.names(args),
            rng,
            large=count_elements(args)[0] > LARGE,
            resolution=resolution,
        )
    return f"{leaf}: {words}"


def _informative_example(
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


def _values_words(failure: Outcome, checker: Checker, others: list[tuple[Any, ...]]) -> str | None:
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


def _mask_words(failure: Outcome, checker: Checker) -> str | None:
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


def _flaky(failure: Outcome, checker: Checker) -> Outcome:
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


def _fd_at(checker: Checker, failure: Outcome) -> tuple[float, str] | None:
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
