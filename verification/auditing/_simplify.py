"""A last pass after hypothesis's shrinking: zero what the failure does not need.

Hypothesis's shrinker can stop in a local minimum (every element of a (3, 4) weight matrix
equal to 1.4988..., where one nonzero element would do). This pass sets the nonzero elements
of the differentiated arguments to 0 one at a time, keeping each change under which the
example still fails the same way. Shapes and the other arguments are left as they are (zeroing
labels could turn the example into another bug).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._outcome import Outcome

__all__ = ["simplify"]

MAX_TRIALS = 64
"""At most this many re-checks (each is a candidate call and a cached reference)."""


def simplify(
    check: Callable[[tuple[Any, ...]], Outcome], failure: Outcome, argnums: Sequence[int]
) -> Outcome:
    """``failure`` with as many elements of the differentiated arguments zeroed as keep it
    failing with the same ``kind`` (the re-checked ``Outcome``)."""
    flat, treedef = tree_util.tree_flatten_with_path(failure.args)
    leaves = [leaf if isinstance(leaf, (int, float)) else np.array(leaf) for _, leaf in flat]
    trials = 0
    for k, (path, _) in enumerate(flat):
        leaf = leaves[k]
        if path[0].idx not in argnums or not isinstance(leaf, np.ndarray):
            continue
        if not np.issubdtype(leaf.dtype, np.floating):
            continue
        for index in map(tuple, np.argwhere(leaf != 0)):
            if trials >= MAX_TRIALS:
                return failure
            trials += 1
            trial: list[Any] = [x.copy() if isinstance(x, np.ndarray) else x for x in leaves]
            trial[k][index] = 0
            try:
                outcome = check(tree_util.tree_unflatten(treedef, trial))
            except Exception:
                continue
            if outcome.kind == failure.kind:
                failure, leaves = outcome, trial
    return failure
