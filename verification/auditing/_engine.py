"""The one audit engine: ``run_audit`` checks a candidate under a ``Policy`` and reports.

``audit`` is a thin wrapper over ``run_audit``; other kinds of audit call it with their own
candidate and loss (e.g. a layer's vector-Jacobian product turned into a gradient of a
scalar), their own ``Policy`` (tolerance rule, comparison) and their own argument names.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from verification.auditing._check import DEFAULT_POLICY, Checker, Policy
from verification.auditing._errors import AuditSpecError
from verification.auditing._explain import (
    factor_words,
    fd_at,
    flaky,
    informative_example,
    mask_words_of,
    values_words,
)
from verification.auditing._kinks import Kinks, aimed, source as kinks_source
from verification.auditing._locate import leaf_index, locate_failure
from verification.auditing._oracle import Oracle
from verification.auditing._outcome import Outcome, Tally
from verification.auditing._profile import DIAGNOSIS, Profile, phase, profiling
from verification.auditing._report import AuditReport, count_elements, function_name
from verification.auditing._reproducer import LITERAL_LIMIT
from verification.auditing._search import search
from verification.auditing._simplify import domain_of, simplify
from verification.auditing._stages import Stage, locate_stage, resolve_stages
from verification.auditing._trees import leaf_names

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
        failure = flaky(failure, checker)
    elif failure.kind == "mismatch" and failure.factor is not None and failure.worst is not None:
        # From the counterexample alone (no input only the search has): the reproducer, an
        # audit of that input, names the same factor or none.
        failure.diagnosis = factor_words(failure, checker)
    elif failure.kind in ("wrong shape", "wrong dtype") and failure.worst is not None:
        informative = informative_example(checker, failure.worst, drawn)
        failure.diagnosis = values_words(failure, checker, [*others, *informative])
    elif failure.kind == "mismatch" and failure.zero_pattern:  # from the counterexample alone
        failure.diagnosis = (failure.diagnosis or "") + (mask_words_of(failure, checker) or "")
    # The words above replace the diagnosis; the kink and memo notes stay with it.
    if failure.kink_note and not (failure.diagnosis or "").startswith(failure.kink_note):
        failure.diagnosis = f"{failure.kink_note}; {failure.diagnosis}"
    if failure.memo_note and not (failure.diagnosis or "").endswith(failure.memo_note):
        failure.diagnosis = f"{failure.diagnosis}{failure.memo_note}"
    _fill_verdict(report, failure, tally)
    if failure.kind == "mismatch" and failure.location is not None:
        fd = fd_at(checker, failure)
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
