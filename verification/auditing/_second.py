"""The second input of a localisation: failing, with sizes > 1 (distinct where the strategy
allows, and other than the counterexample's), its values spread out.

A value is matched to a reference quantity only where it agrees at two inputs; the shrunk
counterexample alone, made of 0s and 1s and size-1 axes, lets different quantities coincide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._evidence import LARGE
from verification.auditing._factor import SUB_BATCH, batch_group, sliced
from verification.auditing._report import count_elements
from verification.auditing._rerun import agrees

__all__ = ["leaf_index", "second_input", "sub_batches"]


def _distinctness(
    args: tuple[Any, ...], first: tuple[Any, ...]
) -> tuple[int, int, int, int] | None:
    """How well the sizes of ``args`` keep shapes apart: None if an axis has size 1 (or there
    is no array), else (arrays whose axes all differ, axes whose size differs from the same
    axis of ``first``, distinct sizes, -total size); higher is better. Every array's axes
    distinct is what a transpose needs to be told apart; sizes other than the first input's
    tell a size (m) from a constant factor."""
    shapes = [np.shape(leaf) for leaf in tree_util.tree_leaves(args)]
    arrays = [s for s in shapes if len(s)]
    if not arrays or any(n < 2 for s in arrays for n in s):
        return None
    own = sum(len(set(s)) == len(s) for s in arrays)
    before = [np.shape(leaf) for leaf in tree_util.tree_leaves(first)]
    moved = sum(
        a != b
        for s, t in zip(shapes, before, strict=False)
        if len(s) == len(t)
        for a, b in zip(s, t, strict=True)
    )
    sizes = len({n for s in arrays for n in s})
    return own, moved, sizes, -sum(math.prod(s) for s in arrays)


def _spread(args: tuple[Any, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    """``args`` with every float array that is not made of 0s and 1s, both present (labels,
    one-hot rows),
    redrawn uniformly within the range of its own values (symmetric when it has a negative
    value; [-1, 1] where they are all alike): distinct values, in the same domain as far as
    the range shows it. A drawn example
    repeats values (0s, 1s) that make different reference quantities coincide."""

    def spread(leaf: Any) -> Any:
        a = np.asarray(leaf)
        labels = np.all((a == 0) | (a == 1)) and np.any(a == 0) and np.any(a == 1)
        if a.dtype.kind != "f" or a.ndim == 0 or labels:
            return leaf
        lo, hi = float(np.min(a)), float(np.max(a))
        if lo < 0:  # a signed array: both signs, up to its largest magnitude
            top = max(-lo, hi)
            lo, hi = -top, top
        if hi - lo < 1e-3 * max(1.0, abs(hi)):
            lo, hi = (0.5 * lo, 1.5 * lo) if lo > 0 else (-1.0, 1.0)
        return rng.uniform(lo, hi, a.shape).astype(a.dtype)

    out: tuple[Any, ...] = tree_util.tree_map(spread, args)
    return out


def _fails_at(check: Callable[[tuple[Any, ...]], Any], args: tuple[Any, ...], leaf: int) -> bool:
    """Whether the audit's check fails on ``args`` with leaf ``leaf`` wrong."""
    try:
        outcome = check(args)
    except Exception:
        return False
    if outcome.kind != "mismatch" or outcome.got is None or outcome.grad is None:
        return False
    got, want = np.asarray(outcome.got[leaf]), np.asarray(outcome.grad[leaf])
    terms = max([int(np.size(x)) for x in tree_util.tree_leaves(args)], default=1)
    return not agrees(got, want, terms)


def second_input(
    check: Callable[[tuple[Any, ...]], Any],
    drawn: Any,
    first: tuple[Any, ...],
    leaf: int,
    seed: int,
) -> tuple[Any, ...] | None:
    """A failing input (leaf ``leaf`` wrong) whose sizes are all distinct and > 1: drawn from
    the audit's strategy (generation only, no shrinking: a shrunk input is made of 0s and 1s),
    or, for a concrete input, random values at its shapes when they qualify. None if none."""
    from hypothesis import HealthCheck, Phase, find, settings, strategies as st

    from verification.pinned import pinned_generation

    best: list[tuple[tuple[int, int, int, int], tuple[Any, ...]]] = []
    checks = [0]

    rng = np.random.default_rng(seed)

    def wanted(drawn_args: tuple[Any, ...]) -> bool:
        score = _distinctness(drawn_args, first)
        if score is None or (best and score <= best[0][0]):
            return False
        args = _spread(drawn_args, rng)
        if checks[0] >= 5:
            return False
        checks[0] += 1
        if not _fails_at(check, args, leaf):
            return False
        best[:] = [(score, args)]
        axes = [n for x in tree_util.tree_leaves(args) for n in np.shape(x)]
        arrays = [x for x in tree_util.tree_leaves(args) if np.ndim(x)]
        return score[0] == len(arrays) and score[1] == len(axes)  # the best there is

    if isinstance(drawn, st.SearchStrategy):
        quiet = settings(
            database=None,
            max_examples=60,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        try:
            with pinned_generation():
                find(drawn, wanted, settings=quiet)
        except Exception:
            pass
        return best[0][1] if best else None
    for _ in range(3):
        wanted(first)
    return best[0][1] if best else None


def sub_batches(
    first: tuple[Any, ...], argnums: Sequence[int], names: Sequence[str]
) -> tuple[list[tuple[Any, ...]], str] | None:
    """For a counterexample of more than ``LARGE`` elements with a batch axis (axis 0 of the
    arguments not differentiated, of length >= 2 * ``SUB_BATCH``): two sub-batches of it,
    the first ``SUB_BATCH`` rows and the next ``SUB_BATCH - 2`` (other rows, another size),
    with the words that say so. Locating there costs programs of a few rows, not of the
    user's whole batch (whether the candidate fails there too is the locator's first
    finding). None where the input is small or has no batch axis."""
    if count_elements(first)[0] <= LARGE:
        return None
    batch = batch_group(first, argnums, names)
    if batch is None:
        return None
    size, group = batch
    inputs = [sliced(first, group, SUB_BATCH), sliced(first, group, SUB_BATCH - 2, SUB_BATCH)]
    words = (
        f"on sub-batches of the input: rows 0-{SUB_BATCH - 1} and "
        f"{SUB_BATCH}-{2 * SUB_BATCH - 3} of its {size}"
    )
    return inputs, words


def leaf_index(location: str | None, names: Sequence[str]) -> int | None:
    """The index of the leaf that ``location`` ("W2[0, 1]", "params.W2") names."""
    if location is None:
        return None
    for i, name in enumerate(names):
        if location == name or location.startswith(name + "["):
            return i
    return None
