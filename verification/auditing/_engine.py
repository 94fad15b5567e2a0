"""The one audit engine: ``run_audit`` checks a candidate under a ``Policy`` and reports.

``audit`` is a thin wrapper over ``run_audit``; other kinds of audit call it with their own
candidate and loss (e.g. a layer's vector-Jacobian product turned into a gradient of a
scalar), their own ``Policy`` (tolerance rule, comparison) and their own argument names.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from verification.auditing._check import DEFAULT_POLICY, Checker, Policy
from verification.auditing._kinks import Kinks, aimed, source as kinks_source
from verification.auditing._oracle import Oracle
from verification.auditing._outcome import Outcome, Tally
from verification.auditing._report import AuditReport, function_name
from verification.auditing._search import search
from verification.auditing._stages import Stage, locate_stage, resolve_stages
from verification.auditing._trees import dimensions, leaf_names

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
) -> AuditReport:
    """Search for an input where ``grad_fn`` is not the gradient of ``loss_fn`` (validated
    arguments; see ``audit``) and return the report. ``policy`` holds the tolerance rule and
    the comparison; ``argnums_shown`` is how the report spells ``argnums``; ``kinks`` aims the
    strategy at declared kinks (``_kinks``); ``stages`` and ``intermediates`` locate the stage
    of a failure (``_stages``)."""
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    chain = None if stages is None else resolve_stages(stages)
    if (chain is None) != (intermediates is None):
        raise ValueError("stages and intermediates go together: give both or neither")
    if kinks is not None:
        policy = dataclasses.replace(policy, kinks=kinks.convention)
        if isinstance(args, st.SearchStrategy):
            args = aimed(args, kinks, argnums)
    oracle = oracle_for(loss_fn, argnums)
    checker = Checker(grad_fn, oracle, argnums, arg_names, seed, policy)
    tally = checker.tally
    compile_before, compilations_before = oracle.compile_seconds, oracle.compilations
    run_before = oracle.run_seconds
    start = time.perf_counter()
    failure = search(checker.check, tally, args, max_examples=max_examples, seed=seed)
    total = time.perf_counter() - start
    timings = dict(tally.timings)
    timings["compile"] = oracle.compile_seconds - compile_before
    timings["oracle"] = oracle.run_seconds - run_before
    timings["total"] = total
    timings["generation and hypothesis"] = total - sum(
        timings[k] for k in ("candidate", "oracle", "compare", "compile")
    )
    report = AuditReport(
        passed=failure is None,
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
        timings=timings,
        compilations=oracle.compilations - compilations_before,
    )
    if failure is not None:
        _fill_failure(report, failure, checker, tally)
        if kinks is not None:  # the reproducer declares the same convention
            line, name = kinks_source(kinks)
            report.reproducer_calls = [
                "from verification import audit",
                line,
                "print(grad_fn(*args))",
                f"print(audit(grad_fn, loss_fn, args, argnums={report.argnums!r}, kinks={name}))",
            ]
        # Values that are wrong, not a guard's failure; and not a stale result (the memo note
        # of ``_guards.note_memoised``), which is no stage's fault.
        located = bool(report.counterexample) and failure.kind in ("mismatch", "wrong shape")
        located = located and "memoised" not in (failure.diagnosis or "")
        if chain is not None and intermediates is not None and located:
            report.stage = str(
                locate_stage(
                    intermediates,
                    chain,
                    failure.args,
                    oracle_for=oracle_for,
                    failing_location=failure.location,
                    dims=dimensions(failure.args, argnums, checker.names(failure.args)),
                    seed=seed,
                )
            )
    return report


def _fill_failure(report: AuditReport, failure: Outcome, checker: Checker, tally: Tally) -> None:
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
    report.max_abs_error, report.max_rel_error = (
        (failure.max_abs, failure.max_rel) if failure.kind == "mismatch" else (math.inf, math.inf)
    )
    if failure.kind == "mismatch" and failure.location is not None:
        report.finite_difference = _fd_at(checker, failure)


def _fd_at(checker: Checker, failure: Outcome) -> float | None:
    """Finite differences of the loss with respect to the single element ``location``."""
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
            return checker.oracle.one_sided_slopes(args, d, 1.0, step=step).central
    return None
