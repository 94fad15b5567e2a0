"""``audit``: search for the input where a gradient function is wrong, shrink it, explain it.

The search is a hypothesis test run internally (no example database, a printed seed): every
example goes through the guards (the candidate raises; mutates its inputs; gives a different
result when called again on the same input; returns the wrong structure, shape or dtype), then
against the float64 ``jax.grad`` reference under the tolerance rule of ``_tolerance``. Where it
disagrees, float64 central finite differences along the direction of the disagreement decide
whether to blame the candidate (they side with the reference) or to call the example "oracle
uncertain" (they do not: the input sits at, or within rounding of, a kink such as a ReLU
pre-activation at 0, where numpy and XLA may round to different sides). Hypothesis then shrinks
the failing example (smaller shapes, simpler values) and the report names the worst element,
the values of candidate, reference and finite differences there, and a bug signature.
"""

from __future__ import annotations

import math
import random
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings, strategies as st
from jax import tree_util

from verification.auditing._diagnose import Dimension, diagnose
from verification.auditing._oracle import Oracle, SecondOpinion
from verification.auditing._report import AuditReport, function_name, leaf_lines
from verification.auditing._tolerance import leaf_tolerances
from verification.compare import Comparison, compare_trees, magnitude

__all__ = ["assert_gradient_correct", "audit"]

_ORACLES: dict[tuple[Any, tuple[int, ...]], Oracle] = {}
"""One oracle (with its compiled shapes) per (loss_fn, argnums), kept for the process."""

_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
    HealthCheck.filter_too_much,
]


def _oracle_for(loss_fn: Callable[..., Any], argnums: tuple[int, ...]) -> Oracle:
    key = (loss_fn, argnums)
    oracle = _ORACLES.get(key)
    if oracle is None:
        oracle = _ORACLES[key] = Oracle(loss_fn, argnums)
    return oracle


class _CandidateFailedError(Exception):
    """Raised inside the hypothesis test so that it shrinks the example."""

    def __init__(self, outcome: _Outcome) -> None:
        super().__init__(outcome.kind)
        self.outcome = outcome


@dataclass
class _Outcome:
    """What one example gave."""

    args: tuple[Any, ...]
    kind: str | None = None  # None: passed
    uncertain: bool = False
    location: str | None = None
    diagnosis: str | None = None
    candidate: float | None = None
    reference: float | None = None
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_scaled: float = 0.0
    rtol: float | None = None
    atol: float | None = None
    traceback: str | None = None
    leaves: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _State:
    examples: int = 0
    first_failure: int | None = None
    uncertain: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_scaled: float = 0.0
    first_output: list[np.ndarray[Any, Any]] | None = None
    first_input: list[np.ndarray[Any, Any]] | None = None
    uncertain_notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("candidate", "compare"), 0.0)
    )


def _copy_leaves(tree: Any) -> list[np.ndarray[Any, Any]]:
    return [np.array(x, copy=True) for x in tree_util.tree_leaves(tree, is_leaf=_none_leaf)]


def _none_leaf(x: Any) -> bool:
    return x is None


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(
        np.shape(x) == np.shape(y) and np.array_equal(x, y, equal_nan=_is_float(x))
        for x, y in zip(a, b, strict=True)
    )


def _is_float(x: Any) -> bool:
    return bool(np.issubdtype(np.asarray(x).dtype, np.inexact))


def _leaf_names(
    args: tuple[Any, ...], argnums: tuple[int, ...], arg_names: Sequence[str]
) -> list[str]:
    names = []
    for i in argnums:
        for path, _ in tree_util.tree_flatten_with_path(args[i])[0]:
            key = tree_util.keystr(path)
            if len(argnums) == 1 and key:
                names.append(key.lstrip("."))
            else:
                names.append(f"{arg_names[i]}{key}")
    return names


def _dimensions(
    args: tuple[Any, ...], argnums: tuple[int, ...], arg_names: Sequence[str]
) -> list[Dimension]:
    """Sizes to name a constant factor by: the batch size m first, then every axis."""
    dims: list[Dimension] = []
    order = [i for i in range(len(args)) if i not in argnums] + list(argnums)
    for i in order:
        for path, leaf in tree_util.tree_flatten_with_path(args[i])[0]:
            shape = np.shape(leaf)
            name = f"{arg_names[i]}{tree_util.keystr(path)}"
            for axis, size in enumerate(shape):
                what = f"{name}.shape[{axis}]"
                if not dims and axis == 0 and len(shape) >= 1:
                    what = f"m, the batch size ({what})"
                if size > 1 and all(size != s for s, _ in dims):
                    dims.append((size, what))
    return dims


def _unit_direction(
    shapes: Sequence[tuple[int, ...]], rng: np.random.Generator
) -> list[np.ndarray[Any, Any]]:
    v = [rng.standard_normal(s) for s in shapes]
    norm = math.sqrt(sum(float(np.vdot(x, x)) for x in v)) or 1.0
    return [x / norm for x in v]


class _Auditor:
    """Checks one example at a time; holds what the search needs between examples."""

    def __init__(
        self,
        grad_fn: Callable[..., Any],
        oracle: Oracle,
        argnums: tuple[int, ...],
        arg_names: Sequence[str] | None,
        rtol: float | None,
        atol: float | None,
        seed: int,
    ) -> None:
        self.grad_fn = grad_fn
        self.oracle = oracle
        self.argnums = argnums
        self.arg_names = arg_names
        self.rtol = rtol
        self.atol = atol
        self.seed = seed
        self.state = _State()

    def names(self, args: tuple[Any, ...]) -> list[str]:
        return list(self.arg_names) if self.arg_names else [f"args[{i}]" for i in range(len(args))]

    def check(self, args: tuple[Any, ...]) -> _Outcome:
        """Run every guard and the comparison on one example."""
        if not isinstance(args, tuple):
            raise TypeError(f"the args strategy must produce tuples, got {type(args).__name__}")
        names = self.names(args)
        if len(names) != len(args):
            raise ValueError(f"arg_names has {len(names)} names for {len(args)} arguments")
        inputs = _copy_leaves(args)
        structure = tree_util.tree_structure(args)
        # The report keeps a pristine copy: a candidate may modify the arrays it was given.
        outcome = _Outcome(args=tree_util.tree_unflatten(structure, [x.copy() for x in inputs]))
        start = time.perf_counter()
        try:
            first = self._call(args, outcome)
        except Exception:
            outcome.kind, outcome.traceback = "raised", traceback.format_exc()
            outcome.diagnosis = "the candidate raised an exception (traceback below)"
            return outcome
        first_leaves = _copy_leaves(first)
        after = _copy_leaves(args)
        if not _same(inputs, after):
            arg_leaves = tree_util.tree_flatten_with_path(args)[0]
            changed = [
                f"{names[p[0].idx]}{tree_util.keystr(p[1:])}"
                for (p, _), x, y in zip(arg_leaves, inputs, after, strict=True)
                if not _same([x], [y])
            ]
            outcome.kind = "mutated its input"
            outcome.location = ", ".join(changed)
            outcome.diagnosis = f"the candidate changed its input {outcome.location} in place"
            return outcome
        fresh = tree_util.tree_unflatten(structure, [x.copy() for x in inputs])
        try:
            second = _copy_leaves(self._call(fresh, outcome))
        except Exception:
            outcome.kind, outcome.traceback = "nondeterministic", traceback.format_exc()
            outcome.diagnosis = "the candidate raised on a second call with the same input"
            return outcome
        self.state.timings["candidate"] += time.perf_counter() - start
        if not _same(first_leaves, second):
            outcome.kind = "nondeterministic"
            outcome.diagnosis = "two calls with the same input gave different results"
            return outcome
        if self.state.first_output is None:
            self.state.first_output, self.state.first_input = first_leaves, inputs
        with np.errstate(all="ignore"):  # the candidate's overflows are its own business
            outcome = self._compare(args, names, first, outcome)
        memoised = _same(first_leaves, self.state.first_output) and not _same(
            inputs, self.state.first_input or []
        )
        if outcome.kind is not None and memoised:
            outcome.diagnosis = (outcome.diagnosis or "") + (
                "; the candidate returned exactly what it returned for an earlier, different "
                "input (a memoised or cached first result?)"
            )
        return outcome

    def _call(self, args: tuple[Any, ...], outcome: _Outcome) -> Any:
        """The candidate on ``args``, its warnings recorded on ``outcome`` rather than raised."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = self.grad_fn(*args)
        for w in caught:
            text = f"{w.category.__name__}: {w.message}"
            if text not in outcome.warnings:
                outcome.warnings.append(text)
        return result

    def _compare(
        self,
        args: tuple[Any, ...],
        names: list[str],
        result: Any,
        outcome: _Outcome,
    ) -> _Outcome:
        diff = [args[i] for i in self.argnums]
        expected_tree = diff[0] if len(diff) == 1 else tuple(diff)
        inputs = tree_util.tree_leaves(expected_tree)
        leaf_names = _leaf_names(args, self.argnums, names)
        got = tree_util.tree_leaves(result, is_leaf=_none_leaf)
        if isinstance(result, np.ndarray) or not isinstance(result, (tuple, list, dict)):
            got = [result]
        if len(got) != len(inputs):
            outcome.kind = "wrong structure"
            outcome.diagnosis = (
                f"returned {len(got)} leaves, expected {len(inputs)} ({', '.join(leaf_names)})"
            )
            return outcome
        for name, g, x in zip(leaf_names, got, inputs, strict=True):
            if g is None or np.shape(g) != np.shape(x):
                outcome.kind, outcome.location = "wrong shape", name
                outcome.diagnosis = (
                    f"{name}: returned None"
                    if g is None
                    else f"{name}: {diagnose(g, np.zeros(np.shape(x)))}"
                )
                return outcome
        for name, g, x in zip(leaf_names, got, inputs, strict=True):
            if np.asarray(g).dtype != np.asarray(x).dtype:
                outcome.kind, outcome.location = "wrong dtype", name
                outcome.diagnosis = (
                    f"{name} came back as {np.asarray(g).dtype}, its input is {np.asarray(x).dtype}"
                )
                return outcome
        dtypes = [np.asarray(x).dtype for x in inputs]
        terms = max(int(np.size(leaf)) for leaf in tree_util.tree_leaves(args))
        _, grad = self.oracle.gradient(args)
        if not all(np.all(np.isfinite(e)) for e in grad):
            outcome.uncertain = True
            outcome.diagnosis = "the reference gradient is not finite here"
            return outcome
        start = time.perf_counter()
        tols = leaf_tolerances(dtypes, grad, terms=terms, rtol=self.rtol, atol=self.atol)
        comparisons = _compare_leaves(got, grad, tols, leaf_names)
        self.state.timings["compare"] += time.perf_counter() - start
        if not all(c.passed for c in comparisons):
            # Randomness from the example itself: the same example always gets the same
            # verdict, which hypothesis needs when it replays and shrinks.
            rng = np.random.default_rng(
                [self.seed, *(zlib.crc32(np.asarray(x).tobytes()) for x in inputs)]
            )
            v = _unit_direction([np.shape(x) for x in inputs], rng)
            opinion = self.oracle.second_opinion(args, grad, v, rng)
            tols = leaf_tolerances(
                dtypes,
                grad,
                opinion.grad32,
                opinion.grad_perturbed,
                secant=opinion.secant,
                terms=terms,
                rtol=self.rtol,
                atol=self.atol,
            )
            if not _forward_mode_agrees(opinion, tols, v):
                outcome.uncertain = True
                outcome.diagnosis = (
                    f"forward and reverse mode of the reference disagree here: <grad, v> = "
                    f"{opinion.grad_dot_v:.17g}, jvp = {opinion.jvp:.17g}"
                )
                return outcome
            comparisons = _compare_leaves(got, grad, tols, leaf_names)
        outcome.max_abs = max(c.max_abs_error for c in comparisons)
        outcome.max_rel = max(c.max_rel_error for c in comparisons)
        size = magnitude(grad)
        outcome.max_scaled = outcome.max_abs / size if size > 0 else 0.0
        if all(c.passed for c in comparisons):
            return outcome
        worst = max(range(len(comparisons)), key=lambda i: _badness(comparisons[i]))
        c = comparisons[worst]
        outcome.location, outcome.candidate, outcome.reference = c.location, c.actual, c.expected
        outcome.rtol, outcome.atol = c.rtol, c.atol
        outcome.leaves = leaf_lines(leaf_names, comparisons)
        outcome.diagnosis = f"{leaf_names[worst]}: " + diagnose(
            got[worst],
            grad[worst],
            dims=_dimensions(args, self.argnums, names),
            float64_result=dtypes[worst] == np.float64,
            scale=magnitude(grad),
        )
        outcome.kind = "mismatch"
        cand = [np.asarray(g, np.float64) for g in got]
        if not all(np.all(np.isfinite(g)) for g in cand):
            return outcome  # NaN/inf where the reference is finite: no kink excuses that
        delta = [g - e for g, e in zip(cand, grad, strict=True)]
        norm = math.sqrt(sum(float(np.vdot(d, d)) for d in delta))
        d = [x / norm for x in delta]
        fd = self.oracle.one_sided_slopes(args, d, norm)
        ref_d = float(sum(np.vdot(e, x) for e, x in zip(grad, d, strict=True)))
        confirmed = (
            abs(fd.forward - ref_d) <= norm / 4
            and abs(fd.backward - ref_d) <= norm / 4
            and fd.truncation <= norm / 8
            and fd.rounding <= norm / 8
        )
        if not confirmed:
            outcome.kind, outcome.uncertain = None, True
            outcome.diagnosis = (
                f"candidate and reference differ by {norm:.3g} along their difference, but "
                f"finite differences (forward {fd.forward:.6g}, backward {fd.backward:.6g}, "
                f"step {fd.step:.2g}) do not confirm the reference ({ref_d:.6g}); the candidate "
                f"gives {ref_d + norm:.6g}"
            )
        return outcome


def _compare_leaves(
    got: Sequence[Any],
    grad: Sequence[np.ndarray[Any, Any]],
    tols: Sequence[tuple[float, float]],
    names: Sequence[str],
) -> list[Comparison]:
    return [
        compare_trees(g, e, rtol=r, atol=a, names=name)
        for g, e, (r, a), name in zip(got, grad, tols, names, strict=True)
    ]


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


def audit(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    *,
    argnums: int | Sequence[int] = 0,
    max_examples: int = 200,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = None,
    arg_names: Sequence[str] | None = None,
) -> AuditReport:
    """Search for an input where ``grad_fn`` is not the gradient of ``loss_fn``.

    Parameters
    ----------
    grad_fn : the candidate, ``grad_fn(*args)`` -> the gradient of ``loss_fn`` with respect to
        ``args[argnums]``: an array, or a pytree (e.g. an ``MLPParams``) like that argument; a
        tuple of them when ``argnums`` is a tuple. Any Python code (numpy, torch via .numpy()).
    loss_fn : the ground truth, a JAX-traceable scalar function ``loss_fn(*args)``.
    args : a hypothesis strategy of argument tuples (``named_arrays`` builds one from named
        dimensions), or one concrete tuple to check that input alone (without hypothesis, so
        it works inside any ``@given`` test; a strategy there needs
        ``HealthCheck.nested_given`` suppressed on that outer test).
    argnums : the position(s) of the differentiated arguments.
    max_examples : examples to generate (shrinking a failure adds more).
    rtol, atol : fixed tolerances; None (default) applies the rule in
        ``verification.auditing._tolerance`` (derived from the dtype and the problem's scale).
    seed : the search's random seed (None: a fresh one, printed in the report).
    arg_names : names of the arguments for the report (default ``args[i]``).

    Returns
    -------
    AuditReport : ``passed``, ``examples``, ``counterexample`` (minimal, after shrinking),
        ``max_abs_error``, ``max_rel_error``, ``location``, and ``str(report)`` with a
        diagnosis and a reproducer.

    Raises
    ------
    OracleRefusedError : the reference is not a float64, highest-precision computation.
    TypeError, ValueError : malformed arguments (before any example is run).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from verification.auditing import named_arrays
    >>> loss = lambda x, w: jnp.sum(jnp.tanh(x @ w)) / x.shape[0]
    >>> good = lambda x, w: x.T @ (1 - np.tanh(x @ w) ** 2) / x.shape[0]
    >>> shapes = named_arrays({"x": ("m", "n"), "w": ("n", "h")}, bounds=(2.0,))
    >>> audit(good, loss, shapes, argnums=1, max_examples=20, seed=0).passed
    True
    >>> bad = lambda x, w: x.T @ (1 - np.tanh(x @ w) ** 2)
    >>> report = audit(bad, loss, shapes, argnums=1, max_examples=50, seed=0)
    >>> report.passed, report.counterexample[0].shape[0], "1/m is missing" in report.diagnosis
    (False, 2, True)
    """
    argnums_t = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not argnums_t or any(not isinstance(i, int) or i < 0 for i in argnums_t):
        raise ValueError(f"argnums must be a non-negative int or a tuple of them, got {argnums!r}")
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, got {max_examples}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None and not (tol >= 0 and math.isfinite(tol)):
            raise ValueError(f"{name} must be finite and >= 0, got {tol}")
    strategy = args if isinstance(args, st.SearchStrategy) else st.just(tuple(args))
    if not isinstance(args, st.SearchStrategy) and not isinstance(args, tuple):
        raise TypeError(f"args must be a hypothesis strategy or a tuple, got {type(args).__name__}")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    oracle = _oracle_for(loss_fn, argnums_t)
    auditor = _Auditor(grad_fn, oracle, argnums_t, arg_names, rtol, atol, seed)
    state = auditor.state
    compile_before, compilations_before = oracle.compile_seconds, oracle.compilations
    run_before = oracle.run_seconds

    def check_one(example: tuple[Any, ...]) -> None:
        state.examples += 1
        outcome = auditor.check(example)
        if outcome.uncertain:
            state.uncertain += 1
            if len(state.uncertain_notes) < 3 and outcome.diagnosis:
                state.uncertain_notes.append(outcome.diagnosis)
        if outcome.kind is None:
            state.max_abs = max(state.max_abs, outcome.max_abs)
            state.max_rel = max(state.max_rel, outcome.max_rel)
            state.max_scaled = max(state.max_scaled, outcome.max_scaled)
            return
        if state.first_failure is None:
            state.first_failure = state.examples
        raise _CandidateFailedError(outcome)

    def search() -> None:
        hypothesis.seed(seed)(
            settings(
                max_examples=max_examples,
                database=None,
                deadline=None,
                derandomize=False,
                phases=(Phase.explicit, Phase.generate, Phase.shrink),
                suppress_health_check=_HEALTH,
                report_multiple_bugs=False,
                verbosity=Verbosity.quiet,
                print_blob=False,
            )(given(strategy)(check_one))
        )()

    start = time.perf_counter()
    failure: _Outcome | None = None
    try:
        if isinstance(args, st.SearchStrategy):
            search()
        else:  # one concrete input: no search, no hypothesis (so it works inside any @given)
            check_one(tuple(args))
    except _CandidateFailedError as error:
        failure = error.outcome
    except hypothesis.errors.Flaky as error:  # the failure did not reproduce on replay
        failure = _Outcome(
            args=(),
            kind="nondeterministic",
            diagnosis=f"a failure did not reproduce when hypothesis replayed it ({error})",
        )
    total = time.perf_counter() - start
    timings = dict(state.timings)
    timings["compile"] = oracle.compile_seconds - compile_before
    timings["oracle"] = oracle.run_seconds - run_before
    timings["total"] = total
    timings["generation and hypothesis"] = total - sum(
        timings[k] for k in ("candidate", "oracle", "compare", "compile")
    )
    report = AuditReport(
        passed=failure is None,
        examples=state.examples,
        counterexample=None,
        max_abs_error=state.max_abs,
        max_rel_error=state.max_rel,
        max_scaled_error=state.max_scaled,
        location=None,
        seed=seed,
        environment=oracle.env,
        grad_fn=function_name(grad_fn),
        loss_fn=function_name(loss_fn),
        argnums=argnums if isinstance(argnums, int) else argnums_t,
        uncertain=state.uncertain,
        uncertain_notes=state.uncertain_notes,
        timings=timings,
        compilations=oracle.compilations - compilations_before,
    )
    if failure is not None:
        _fill_failure(report, failure, auditor, state)
    return report


def _fill_failure(report: AuditReport, failure: _Outcome, auditor: _Auditor, state: _State) -> None:
    report.kind = failure.kind
    report.counterexample = failure.args or None
    report.shrink_steps = state.examples - (state.first_failure or state.examples)
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
        report.finite_difference = _fd_at(auditor, failure)


def _fd_at(auditor: _Auditor, failure: _Outcome) -> float | None:
    """Finite differences of the loss with respect to the single element ``location``."""
    args = failure.args
    names = auditor.names(args)
    leaf_names = _leaf_names(args, auditor.argnums, names)
    diff = [args[i] for i in auditor.argnums]
    inputs = tree_util.tree_leaves(diff[0] if len(diff) == 1 else tuple(diff))
    location = failure.location or ""
    for k, name in enumerate(leaf_names):
        if location == name or location.startswith(name + "["):
            index_text = location[len(name) :].strip("[]")
            index = tuple(int(i) for i in index_text.split(",") if i.strip())
            d = [np.zeros(np.shape(y)) for y in inputs]
            d[k][index] = 1.0
            scale = max(1.0, *(float(np.max(np.abs(y), initial=0.0)) for y in inputs))
            step = float(np.finfo(np.float64).eps) ** (1 / 3) * scale
            return auditor.oracle.one_sided_slopes(args, d, 1.0, step=step).central
    return None


def assert_gradient_correct(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    **kwargs: Any,
) -> AuditReport:
    """``audit`` that raises ``AssertionError(str(report))`` when the audit fails.

    Same arguments as ``audit``; returns the (passing) report. For use in any pytest suite.
    """
    report = audit(grad_fn, loss_fn, args, **kwargs)
    if not report.passed:
        error = AssertionError(str(report))
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report
