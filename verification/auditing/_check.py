"""The per-example check: guards, then the candidate against the float64 reference.

``Checker.check(args)`` runs the guards of ``_guards`` and compares the candidate's leaves with
``jax.grad``'s under a ``Policy``: its ``tolerance`` rule (default ``_tolerance.leaf_tolerances``)
and its ``compare`` function (default ``compare.compare_trees`` per leaf) are replaceable, so
other kinds of audit (another precision, a layer's vector-Jacobian product) reuse this check.
Where the strict comparison fails, the oracle's second opinion widens the tolerance by what
rounding can do at this input; where it still fails, float64 finite differences along the
direction of the disagreement decide between blaming the candidate (they side with the
reference) and "oracle uncertain" (they do not: a kink within rounding).
"""

from __future__ import annotations

import math
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from jax import tree_util

from verification.auditing._diagnose import NO_SLACK, Slack, find
from verification.auditing._errors import AuditSpecError, loss_error, shapes_text
from verification.auditing._guards import (
    check_structure,
    note_memoised,
    run_candidate,
    wrong_order,
)
from verification.auditing._lowprec import (
    check_low_precision,
    errors_at,
    low_precision_dtype,
    reference_for,
    tolerances as low_tolerances,
)
from verification.auditing._oracle import Oracle, SecondOpinion
from verification.auditing._outcome import Outcome, Tally
from verification.auditing._profile import phase
from verification.auditing._program import OracleRefusedError
from verification.auditing._report import leaf_lines
from verification.auditing._reproducer import offending_elements
from verification.auditing._subgradient import confirm
from verification.auditing._tolerance import leaf_tolerances
from verification.auditing._trees import (
    copy_leaves,
    dimensions,
    leaf_names,
    pristine,
    unit_direction,
)
from verification.compare import Comparison, compare_trees, magnitude

__all__ = [
    "DEFAULT_POLICY",
    "Checker",
    "LeafComparison",
    "Policy",
    "ToleranceRule",
    "compare_leaves",
]


class ToleranceRule(Protocol):
    """(rtol, atol) per leaf; the signature of ``_tolerance.leaf_tolerances``."""

    def __call__(
        self,
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
    ) -> list[tuple[float, float]]: ...


LeafComparison = Callable[
    [Sequence[Any], Sequence[np.ndarray[Any, Any]], Sequence[tuple[float, float]], Sequence[str]],
    list[Comparison],
]
"""(candidate leaves, reference leaves, (rtol, atol) per leaf, leaf names) -> one Comparison each."""


def compare_leaves(
    got: Sequence[Any],
    grad: Sequence[np.ndarray[Any, Any]],
    tols: Sequence[tuple[float, float]],
    names: Sequence[str],
) -> list[Comparison]:
    """The default comparison: ``compare_trees`` leaf by leaf."""
    return [
        compare_trees(g, e, rtol=r, atol=a, names=name)
        for g, e, (r, a), name in zip(got, grad, tols, names, strict=True)
    ]


@dataclass(frozen=True)
class Policy:
    """How an example is judged: the replaceable pieces of the check.

    tolerance : the tolerance rule (``leaf_tolerances``'s signature).
    compare : the comparison of candidate and reference leaves under those tolerances.
    rtol, atol : fixed tolerances passed to the rule (None: the rule decides).
    kinks : the user's declared convention at kinks (``_kinks.Kinks.convention``), or None: a
        disagreement that finite differences show to be at a kink is then a failure, not
        oracle-uncertain.
    """

    tolerance: ToleranceRule = leaf_tolerances
    compare: LeafComparison = compare_leaves
    rtol: float | None = None
    atol: float | None = None
    kinks: str | None = None


DEFAULT_POLICY = Policy()
"""The ``audit``'s policy: ``leaf_tolerances`` and ``compare_leaves``, no fixed tolerances."""


def _forward_mode_agrees(
    opinion: SecondOpinion, tols: Sequence[tuple[float, float]], v: Sequence[Any]
) -> bool:
    """<grad, v> (reverse mode) against jax.jvp along v (forward mode; NaN if unavailable)."""
    if math.isnan(opinion.jvp):
        return True
    rtol = max(r for r, _ in tols)
    atol = max(a for _, a in tols)
    n = sum(int(np.size(x)) for x in v)
    allowed = 4 * (atol * math.sqrt(n) + rtol * abs(opinion.grad_dot_v))
    return abs(opinion.grad_dot_v - opinion.jvp) <= allowed


def _badness(c: Comparison) -> float:
    if c.passed:
        return -1.0
    if c.actual is None or c.expected is None:
        return math.inf
    error = abs(c.actual - c.expected)
    allowed = c.atol + c.rtol * abs(c.expected)
    return math.inf if not math.isfinite(error) else error / allowed if allowed > 0 else math.inf


class Checker:
    """Checks one example at a time; holds the tally the search needs between examples."""

    def __init__(
        self,
        grad_fn: Callable[..., Any],
        oracle: Oracle,
        argnums: tuple[int, ...],
        arg_names: Sequence[str] | None,
        seed: int,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.grad_fn = grad_fn
        self.oracle = oracle
        self.argnums = argnums
        self.arg_names = arg_names
        self.seed = seed
        self.policy = policy
        self.tally = Tally()

    def names(self, args: tuple[Any, ...]) -> list[str]:
        """The arguments' names for the report: ``arg_names``, then ``args[i]`` for those it
        does not name, counted from 0 (a derived audit names the arguments it puts first, the
        cotangent of a double backward, and the user's keep their own numbers)."""
        given = list(self.arg_names or [])
        return given + [f"args[{i}]" for i in range(len(args) - len(given))]

    def differentiated(self, args: tuple[Any, ...]) -> list[Any]:
        """The leaves of the differentiated arguments, in the order of the gradient's leaves."""
        diff = [args[i] for i in self.argnums]
        return tree_util.tree_leaves(diff[0] if len(diff) == 1 else tuple(diff))

    def check(self, args: tuple[Any, ...]) -> Outcome:
        """Judge one example: the loss's domain first (before the candidate is called), then
        every guard and the comparison.

        Raises
        ------
        AuditSpecError : the loss cannot be evaluated on ``args`` (or ``args`` does not fit
            ``argnums``, or its differentiated leaves are not floats).
        """
        if not isinstance(args, tuple):
            raise AuditSpecError(
                f"the args strategy must produce tuples, got {type(args).__name__}"
            )
        names = self.names(args)
        if len(names) != len(args):
            raise AuditSpecError(f"arg_names has {len(names)} names for {len(args)} arguments")
        if max(self.argnums) >= len(args):
            raise AuditSpecError(
                f"argnums {self.argnums} is out of range for {len(args)} arguments "
                f"({shapes_text(args, names)}): count from 0"
            )
        inputs = copy_leaves(args)
        # The report keeps a pristine copy: a candidate may modify the arrays it was given.
        outcome = Outcome(args=pristine(args))
        value, grad = self.reference(args, names)
        if not (math.isfinite(value) and all(np.all(np.isfinite(e)) for e in grad)):
            outcome.out_of_domain = True
            outcome.diagnosis = "the reference loss or gradient is not finite here"
            return outcome
        with phase("candidate", run=True):
            result = run_candidate(self.grad_fn, args, names, outcome, self.tally)
        if outcome.kind is not None:
            return outcome
        with np.errstate(all="ignore"):  # the candidate's overflows are its own business
            outcome = self._compare(args, names, result, grad, outcome)
        note_memoised(
            outcome,
            copy_leaves(result),
            inputs,
            self.tally,
            elsewhere=lambda: self._result_near(args),
        )
        return outcome

    def _result_near(self, args: tuple[Any, ...]) -> list[Any] | None:
        """The candidate's result at a new input near ``args``: every float element moved by a
        few percent and away from 0 (integers, labels as indices, kept); None if it raised."""
        rng = np.random.default_rng(zlib.crc32(repr(self.tally.examples).encode()))

        def moved(leaf: Any) -> Any:
            a = np.asarray(leaf)
            if a.dtype.kind != "f" or isinstance(leaf, (int, float)):
                return leaf
            shift = rng.uniform(0.05, 0.2, a.shape) * rng.choice([-1.0, 1.0], a.shape)
            return (a * (1 + shift) + shift).astype(a.dtype)

        near = tree_util.tree_map(moved, tuple(args))
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                with phase("candidate", run=True):
                    return copy_leaves(self.grad_fn(*near))
        except Exception:
            return None

    def reference(
        self, args: tuple[Any, ...], names: list[str]
    ) -> tuple[float, list[np.ndarray[Any, Any]]]:
        """The reference (loss, gradient leaves); a failing loss is an ``AuditSpecError``."""
        try:
            return self.oracle.gradient(args)
        except (OracleRefusedError, AuditSpecError):
            raise
        except Exception as error:
            if isinstance(error, TypeError) and "must hold float arrays" in str(error):
                raise AuditSpecError(
                    f"{error} ({shapes_text(args, names)}): differentiate float arguments only"
                ) from None
            raise loss_error(self.oracle.loss_fn, args, names, error) from None

    def _compare(
        self,
        args: tuple[Any, ...],
        names: list[str],
        result: Any,
        grad: list[np.ndarray[Any, Any]],
        outcome: Outcome,
    ) -> Outcome:
        inputs = self.differentiated(args)
        names_of_leaves = leaf_names(args, self.argnums, names)
        got = check_structure(result, inputs, grad, names_of_leaves, outcome)
        if got is None:
            return outcome
        dtypes = [np.asarray(x).dtype for x in inputs]
        terms = max(int(np.size(leaf)) for leaf in tree_util.tree_leaves(args))
        policy = self.policy
        low = self._low_dtype(args)
        start = time.perf_counter()
        if low is not None:  # float16/bfloat16: against a reference in that precision
            got = [np.asarray(g, np.float64) for g in got]  # dtypes checked; values exact
            tols = self._low_precision(args, got, grad, low, names_of_leaves, outcome)
            if tols is None:
                return outcome
        else:
            tols = policy.tolerance(dtypes, grad, terms=terms, rtol=policy.rtol, atol=policy.atol)
        with phase("comparison"):
            comparisons = policy.compare(got, grad, tols, names_of_leaves)
        self.tally.timings["compare"] += time.perf_counter() - start
        if low is None and not all(c.passed for c in comparisons):
            # Randomness from the example itself: the same example always gets the same
            # verdict, which hypothesis needs when it replays and shrinks.
            rng = np.random.default_rng(
                [self.seed, *(zlib.crc32(np.asarray(x).tobytes()) for x in inputs)]
            )
            v = unit_direction([np.shape(x) for x in inputs], rng)
            opinion = self.oracle.second_opinion(args, grad, v, rng)
            tols = policy.tolerance(
                dtypes,
                grad,
                opinion.grad32,
                opinion.grad_perturbed,
                secant=opinion.secant,
                summed=opinion.summed,
                terms=terms,
                rtol=policy.rtol,
                atol=policy.atol,
            )
            if not _forward_mode_agrees(opinion, tols, v):
                outcome.uncertain = True
                outcome.diagnosis = (
                    f"forward and reverse mode of the reference disagree here: <grad, v> = "
                    f"{opinion.grad_dot_v:.17g}, jvp = {opinion.jvp:.17g}"
                )
                return outcome
            with phase("comparison"):
                comparisons = policy.compare(got, grad, tols, names_of_leaves)
        outcome.max_abs = max(c.max_abs_error for c in comparisons)
        outcome.max_rel = max(c.max_rel_error for c in comparisons)
        # The gradient's scale has a floor: the size the tolerance rule gives it here (at least
        # the largest |reference|; more where the loss is steep nearby: the secant).
        size = max([magnitude(grad)] + [a / r for r, a in tols if r > 0])
        outcome.max_scaled = outcome.max_abs / size if size > 0 else 0.0
        if all(c.passed for c in comparisons):
            return outcome
        worst = max(range(len(comparisons)), key=lambda i: _badness(comparisons[i]))
        c = comparisons[worst]
        outcome.location, outcome.candidate, outcome.reference = c.location, c.actual, c.expected
        outcome.rtol, outcome.atol = c.rtol, c.atol
        outcome.leaves = leaf_lines(names_of_leaves, comparisons)
        with phase("comparison"):
            outcome.offending = offending_elements(got, grad, tols, names_of_leaves)
        outcome.kind = "mismatch"
        outcome.got, outcome.grad, outcome.worst = got, grad, worst
        order = wrong_order(got, grad, names_of_leaves)
        if order is not None:
            outcome.diagnosis = order
        else:
            finding = find(
                got[worst],
                grad[worst],
                dims=dimensions(args, self.argnums, names),
                float64_result=dtypes[worst] == np.float64,
                scale=magnitude(grad),
                overflow_warned=any("overflow" in w for w in outcome.warnings),
                slack=tols[worst] if low is not None else NO_SLACK,
            )
            outcome.diagnosis = f"{names_of_leaves[worst]}: {finding.text}"
            outcome.factor, outcome.zero_pattern = finding.factor, finding.zero_pattern
        return confirm(self.oracle, self.policy.kinks, args, got, grad, outcome)

    def _low_dtype(self, args: tuple[Any, ...]) -> np.dtype[Any] | None:
        """float16 or bfloat16 where a differentiated input is (and no tolerance is given):
        the low-precision verdict's dtype; else None."""
        if self.policy.rtol is not None or self.policy.atol is not None:
            return None
        return low_precision_dtype([np.asarray(x).dtype for x in self.differentiated(args)])

    def _low_rng(self, args: tuple[Any, ...]) -> np.random.Generator:
        """The nudge's randomness, from the example itself (the same verdict on a replay)."""
        inputs = self.differentiated(args)
        return np.random.default_rng(
            [self.seed, *(zlib.crc32(np.asarray(x).tobytes()) for x in inputs)]
        )

    def slack(self, args: tuple[Any, ...], grad: Sequence[Any]) -> list[Slack] | None:
        """The rounding the verdict allows the candidate at ``args`` (float64 gradient
        ``grad``), per leaf, for its signatures (``_diagnose.Slack``): the low-precision
        tolerances for float16/bfloat16 inputs, none otherwise; None where the low-precision
        reference is not finite (outside the dtype's range)."""
        low = self._low_dtype(args)
        if low is None:
            return [NO_SLACK] * len(grad)
        errors = errors_at(
            reference_for(self.oracle.loss_fn, self.argnums),
            lambda a: self.oracle.gradient(a)[1],
            args,
            grad,
            low,
            self._low_rng(args),
        )
        if not all(math.isfinite(e) for e in errors):
            return None
        return low_tolerances(low, errors)

    def _low_precision(
        self,
        args: tuple[Any, ...],
        got: Sequence[Any],
        grad: Sequence[np.ndarray[Any, Any]],
        dtype: np.dtype[Any],
        names: Sequence[str],
        outcome: Outcome,
    ) -> list[tuple[float, float]] | None:
        """The tolerances of ``_lowprec`` at this example, its lines on ``outcome``; None
        (the example outside the dtype's range) where the low-precision reference overflows."""
        check = check_low_precision(
            reference_for(self.oracle.loss_fn, self.argnums),
            lambda a: self.oracle.gradient(a)[1],
            args,
            grad,
            got,
            dtype,
            names,
            self._low_rng(args),
        )
        outcome.low_precision, outcome.low_rank = check.lines(), check.rank
        if not all(math.isfinite(e) for e in check.reference_errors):
            outcome.out_of_domain = True
            outcome.diagnosis = (
                f"the {dtype.name} reference is not finite here: the problem overflows {dtype.name}"
            )
            return None
        return low_tolerances(dtype, check.reference_errors)
