"""The guards every example passes before its values are compared with the reference.

In order: the candidate raises; it changes its input in place; called again on a fresh copy of
the same input it gives a different result; its result has the wrong structure (number of
leaves), a leaf the wrong shape or the wrong dtype. After the comparison, a failing result that
equals the first example's result exactly, for a different input, is flagged as memoised.
Each guard fills an ``Outcome`` (``kind`` and ``diagnosis``) and says whether to go on.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._diagnose import diagnose
from verification.auditing._outcome import Outcome, Tally
from verification.auditing._trees import copy_leaves, none_leaf, same

__all__ = ["call_recording_warnings", "check_structure", "note_memoised", "run_candidate"]


def call_recording_warnings(
    grad_fn: Callable[..., Any], args: tuple[Any, ...], outcome: Outcome
) -> Any:
    """``grad_fn(*args)``, its warnings recorded on ``outcome`` rather than raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = grad_fn(*args)
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in outcome.warnings:
            outcome.warnings.append(text)
    return result


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
    structure = tree_util.tree_structure(args)
    start = time.perf_counter()
    try:
        first = call_recording_warnings(grad_fn, args, outcome)
    except Exception:
        outcome.kind, outcome.traceback = "raised", traceback.format_exc()
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
    fresh = tree_util.tree_unflatten(structure, [x.copy() for x in inputs])
    try:
        second = copy_leaves(call_recording_warnings(grad_fn, fresh, outcome))
    except Exception:
        outcome.kind, outcome.traceback = "nondeterministic", traceback.format_exc()
        outcome.diagnosis = "the candidate raised on a second call with the same input"
        return None
    tally.timings["candidate"] += time.perf_counter() - start
    if not same(first_leaves, second):
        outcome.kind = "nondeterministic"
        outcome.diagnosis = "two calls with the same input gave different results"
        return None
    if tally.first_output is None:
        tally.first_output, tally.first_input = first_leaves, inputs
    return first


def check_structure(
    result: Any, inputs: Sequence[Any], names: Sequence[str], outcome: Outcome
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
    for name, g, x in zip(names, got, inputs, strict=True):
        if g is None or np.shape(g) != np.shape(x):
            outcome.kind, outcome.location = "wrong shape", name
            outcome.diagnosis = (
                f"{name}: returned None"
                if g is None
                else f"{name}: {diagnose(g, np.zeros(np.shape(x)))}"
            )
            return None
    for name, g, x in zip(names, got, inputs, strict=True):
        if np.asarray(g).dtype != np.asarray(x).dtype:
            outcome.kind, outcome.location = "wrong dtype", name
            outcome.diagnosis = (
                f"{name} came back as {np.asarray(g).dtype}, its input is {np.asarray(x).dtype}"
            )
            return None
    return got


def note_memoised(
    outcome: Outcome, result_leaves: list[Any], inputs: list[Any], tally: Tally
) -> None:
    """Add a note to a failing ``outcome`` whose result is exactly the first example's result
    for a different input."""
    memoised = same(result_leaves, tally.first_output or []) and not same(
        inputs, tally.first_input or []
    )
    if outcome.kind is not None and memoised:
        outcome.diagnosis = (outcome.diagnosis or "") + (
            "; the candidate returned exactly what it returned for an earlier, different "
            "input (a memoised or cached first result?)"
        )
