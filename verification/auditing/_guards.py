"""The guards every example passes before its values are compared with the reference.

In order: the candidate raises; it changes its input in place; called again on a fresh copy of
the same input it differs from its first result by more than reordering its sums explains
(``_repeat``); its result has the wrong structure (number of leaves), a leaf the wrong shape or
the wrong dtype (said with the values compared: leaves in another order than ``argnums``, a
transposed leaf, a right value in another shape or an integer dtype). After the comparison, a
failing result that equals the first example's result exactly, for a different input, is
flagged as memoised. Each guard fills an ``Outcome`` (``kind`` and ``diagnosis``).
"""

from __future__ import annotations

import itertools
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._diagnose import shape_words
from verification.auditing._errors import AuditSpecError
from verification.auditing._outcome import Outcome, Tally
from verification.auditing._repeat import Spread, spread
from verification.auditing._trees import copy_leaves, none_leaf, pristine, same

__all__ = [
    "call_recording_warnings",
    "check_structure",
    "nondeterministic_words",
    "note_memoised",
    "run_candidate",
]


_CALL_SITE = "_the_audit_calls_the_candidate_here"
"""A local variable of the one frame that calls the candidate: ``candidate_traceback`` starts
after the frame that holds it, whatever wraps the audit's functions."""


def call_recording_warnings(
    grad_fn: Callable[..., Any], args: tuple[Any, ...], outcome: Outcome
) -> Any:
    """``grad_fn(*args)``, its warnings recorded on ``outcome`` rather than raised."""
    _the_audit_calls_the_candidate_here = True  # read by candidate_traceback (_CALL_SITE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = grad_fn(*args)
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in outcome.warnings:
            outcome.warnings.append(text)
    return result


def candidate_traceback(error: BaseException) -> str:
    """The traceback of an exception raised in the candidate, from the candidate's own frame
    on: the frame after the one that called it (``call_recording_warnings``, marked by its
    local ``_CALL_SITE``). The frames before it (the audit's, and any wrapper around them,
    such as a coverage or mutation tool's trampolines) are not the user's code."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_locals.get(_CALL_SITE) is True and tb.tb_next is not None:
            tb = tb.tb_next
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb or error.__traceback__))


def nondeterministic_words(s: Spread, how: str = "two calls with the same input") -> str:
    """The one report of a nondeterministic candidate: the spread, against the bound."""
    return (
        f"{how} differ by {s.largest:.3g} ({s.ulp:.3g} ulp of the leaf's largest element) at "
        f"{s.location}: {s.first!r} then {s.second!r}; reordering the candidate's sums explains "
        f"at most {s.bound_ulp:.3g} ulp there"
    )


def run_candidate(
    grad_fn: Callable[..., Any],
    args: tuple[Any, ...],
    names: Sequence[str],
    outcome: Outcome,
    tally: Tally,
) -> Any | None:
    """The candidate's result on ``args`` after the raise, mutation and repeat guards; None
    (with ``outcome.kind`` set) when one of them fails."""
    inputs = copy_leaves(args)
    start = time.perf_counter()
    try:
        first = call_recording_warnings(grad_fn, args, outcome)
    except AuditSpecError:
        raise  # the audit's own adapter (``_vjp``) cannot call the candidate: not its fault
    except Exception as error:
        outcome.kind, outcome.traceback = "raised", candidate_traceback(error)
        outcome.diagnosis = "the candidate raised an exception (traceback below)"
        return None
    first_leaves = copy_leaves(first)
    after = copy_leaves(args)
    if not same(inputs, after):
        arg_leaves = tree_util.tree_flatten_with_path(args)[0]
        changed = [
            f"{names[p[0].idx]}{tree_util.keystr(p[1:])}"
            for (p, _), x, y in zip(arg_leaves, inputs, after, strict=True)
            if not same([x], [y])
        ]
        outcome.kind = "mutated its input"
        outcome.location = ", ".join(changed)
        outcome.diagnosis = f"the candidate changed its input {outcome.location} in place"
        return None
    fresh = pristine(args)
    try:
        second = copy_leaves(call_recording_warnings(grad_fn, fresh, outcome))
    except Exception as error:
        outcome.kind, outcome.traceback = "nondeterministic", candidate_traceback(error)
        outcome.diagnosis = "the candidate raised on a second call with the same input"
        return None
    tally.timings["candidate"] += time.perf_counter() - start
    terms = max([int(np.size(x)) for x in inputs], default=1)
    s = spread(first_leaves, second, terms=terms)
    if s is not None and not s.within:
        outcome.kind = "nondeterministic"
        outcome.diagnosis = nondeterministic_words(s)
        return None
    outcome.spread_ulp = 0.0 if s is None else s.ulp
    if tally.first_output is None:
        tally.first_output, tally.first_input = first_leaves, inputs
    return first


def _permutation(
    got: Sequence[Any], grad: Sequence[np.ndarray[Any, Any]], close: Callable[[Any, Any], bool]
) -> tuple[int, ...] | None:
    """The order p != identity with got[p[i]] matching grad[i] everywhere, or None."""
    n = len(got)
    if n < 2 or n > 6:
        return None
    for p in itertools.permutations(range(n)):
        if p != tuple(range(n)) and all(close(got[p[i]], grad[i]) for i in range(n)):
            return p
    return None


def _matches(g: Any, e: np.ndarray[Any, Any]) -> bool:
    a = np.asarray(g)
    if a.shape != e.shape or not np.issubdtype(a.dtype, np.number):
        return False
    scale = float(np.max(np.abs(e), initial=0.0))
    if scale == 0:  # a reference of zeros says nothing about the values
        return False
    return bool(np.all(np.abs(a.astype(np.float64) - e) <= 1e-6 * (scale + np.abs(e))))


def wrong_order(
    got: Sequence[Any], grad: Sequence[np.ndarray[Any, Any]], names: Sequence[str]
) -> str | None:
    """Words for leaves returned in another order than ``argnums`` asks, or None."""
    p = _permutation(got, grad, _matches)
    if p is None or all(_matches(got[i], grad[i]) for i in range(len(got))):
        return None
    returned = ", ".join(names[p.index(i)] for i in range(len(names)))
    return (
        f"the gradients are right but in another order: returned ({returned}) where argnums "
        f"asks for ({', '.join(names)})"
    )


def check_structure(
    result: Any,
    inputs: Sequence[Any],
    grad: Sequence[np.ndarray[Any, Any]],
    names: Sequence[str],
    outcome: Outcome,
) -> list[Any] | None:
    """The leaves of ``result``, one per differentiated input leaf with its shape and dtype;
    None (with ``outcome.kind`` set) when the structure, a shape or a dtype is wrong."""
    got = tree_util.tree_leaves(result, is_leaf=none_leaf)
    if isinstance(result, np.ndarray) or not isinstance(result, (tuple, list, dict)):
        got = [result]
    if len(got) != len(inputs):
        outcome.kind = "wrong structure"
        outcome.diagnosis = (
            f"returned {len(got)} leaves, expected {len(inputs)} ({', '.join(names)})"
        )
        return None
    if any(g is None or np.shape(g) != np.shape(x) for g, x in zip(got, inputs, strict=True)):
        outcome.kind = "wrong shape"
        order = None if any(g is None for g in got) else wrong_order(got, grad, names)
        if order is not None:
            outcome.diagnosis = order
            return None
        for k, (name, g, x, e) in enumerate(zip(names, got, inputs, grad, strict=True)):
            if g is None or np.shape(g) != np.shape(x):
                outcome.location, outcome.worst = name, k
                words = "returned None" if g is None else shape_words(np.asarray(g), e)
                outcome.diagnosis = f"{name}: {words}"
                return None
    for k, (name, g, x, e) in enumerate(zip(names, got, inputs, grad, strict=True)):
        if np.asarray(g).dtype != np.asarray(x).dtype:
            outcome.kind, outcome.location, outcome.worst = "wrong dtype", name, k
            right = " (its values are right)" if _matches(g, e) else ""
            outcome.diagnosis = (
                f"{name} came back as {np.asarray(g).dtype}{right}, its input is "
                f"{np.asarray(x).dtype}"
            )
            return None
    return got


def note_memoised(
    outcome: Outcome,
    result_leaves: list[Any],
    inputs: list[Any],
    tally: Tally,
    elsewhere: Callable[[], list[Any] | None] | None = None,
) -> None:
    """Add a note to a failing ``outcome`` whose result is exactly the first example's result
    for a different input. A memo is named only with evidence of state: the repeated result
    was right, and not all 0, for the input it was first returned for (then it is stale here).
    Wrong there too (or 0), and the same at every input so far, it is a result that does not
    depend on the input (an unfinished ``dx = zeros``, a straight-through estimator's ones),
    said as such; where other outputs differed, two equal results are a coincidence: no note.
    ``elsewhere`` is the candidate's result at a new input near this one (every float moved):
    a memo returns its stale result there again; a pure function that merely coincided on two
    simple inputs (a sum over one row and over two rows that repeat it) returns another, and
    then no memo is named."""
    if tally.first_passed is None and same(inputs, tally.first_input or []):
        # Right and not all 0: a result of zeros is right wherever the reference is 0 too.
        informative = any(np.any(np.asarray(x) != 0) for x in tally.first_output or [])
        tally.first_passed = outcome.kind is None and not outcome.uncertain and informative
    first = tally.first_output or []
    repeated = same(result_leaves, first)
    comparable = [np.shape(x) for x in result_leaves] == [np.shape(x) for x in first]
    tally.outputs_varied = tally.outputs_varied or (comparable and not repeated)
    memoised = repeated and not same(inputs, tally.first_input or [])
    if outcome.kind is None or not memoised:
        return
    if not tally.first_passed and tally.outputs_varied:
        return  # two equal results (zeros, often) among others that differ: a coincidence
    if tally.first_passed and elsewhere is not None:
        again = elsewhere()
        if again is None or not same(again, first):
            return  # not stale at a new input: a coincidence of two simple inputs
    if tally.first_passed:
        words = (
            "; the candidate returned exactly what it returned for an earlier, different "
            "input, where that result was right: a memoised or cached first result (state "
            "kept between calls)"
        )
    else:
        words = (
            "; the candidate returned exactly what it returned for an earlier, different "
            "input, where it was wrong too: the same output at every input of these shapes (a "
            "result that does not depend on the input)"
        )
    outcome.memo_note = words
    outcome.diagnosis = (outcome.diagnosis or "") + words
