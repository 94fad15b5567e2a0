"""A last pass after hypothesis's shrinking: make simple what the failure does not need.

Hypothesis's shrinker can stop in a local minimum (every element of a (3, 4) weight matrix
equal to 1.4988..., where one nonzero element would do). This pass sets the elements of the
differentiated arguments one at a time to the simplest value of their declared domain (0, or
for a kind without 0 the integer nearest 0 inside it: 1 for ``positive``, 1 for ``[0.5,2]``,
+-ceil(d) for ``|x|>=d``; a ``distinct`` array never gets a value it already holds), keeping
each change under which the example still fails the same way. Shapes and the other arguments
are left as they are (changing labels could turn the example into another bug).

The domain travels with the strategy: ``named_arrays`` declares it (``declare_domain``), and
wrappers of a strategy (aiming at kinks, adding a layer's cotangent) pass it on. An argument
without a declared domain (a strategy written by hand, a concrete input) is simplified towards
0, as before domains were declared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from hypothesis import strategies as st
from jax import tree_util

from verification.auditing._grammar import ArraySpec, Value
from verification.auditing._outcome import Outcome

__all__ = ["MAX_TRIALS", "declare_domain", "domain_of", "simplest", "simplify"]

MAX_TRIALS = 64
"""At most this many re-checks (each is a candidate call and a cached reference)."""

_ATTRIBUTE = "audit_domain"
S = TypeVar("S", bound=st.SearchStrategy[Any])


def declare_domain(strategy: S, domain: Sequence[Any] | None) -> S:
    """``strategy``, marked with the domain of each argument it draws (an ``ArraySpec`` or a
    pytree of them, a ``Fixed``, or None where unknown), for ``domain_of``."""
    if domain is not None:
        setattr(strategy, _ATTRIBUTE, tuple(domain))
    return strategy


def domain_of(args: Any) -> tuple[Any, ...] | None:
    """The domain ``declare_domain`` marked on the strategy ``args``, or None."""
    domain = getattr(args, _ATTRIBUTE, None)
    return domain if isinstance(domain, tuple) else None


def _integer_inside(value: Value) -> float | None:
    """The integer of least magnitude inside ``value``'s interval, or None."""

    def inside(c: float) -> bool:
        above = c > value.low or (c == value.low and not value.open_low)
        below = c < value.high or (c == value.high and not value.open_high)
        return above and below

    if value.low > 0:
        c = float(math.ceil(value.low)) if math.isfinite(value.low) else math.inf
    elif value.high < 0:
        c = float(math.floor(value.high)) if math.isfinite(value.high) else -math.inf
    else:
        c = 0.0
    for candidate in (c, c + 1.0, c - 1.0):
        if math.isfinite(candidate) and inside(candidate):
            return candidate
    return None


def simplest(value: Value, x: float) -> float | None:
    """The simplest value of ``value``'s domain to put in place of the element ``x``, or None
    where there is none to choose (``pm1``, labels).

    >>> from verification.auditing._grammar import parse_kinds
    >>> simplest(parse_kinds(["real"]), 2.5), simplest(parse_kinds(["positive"]), 2.5)
    (0.0, 1.0)
    >>> simplest(parse_kinds(["[0.5,2]"]), 1.7), simplest(parse_kinds(["|x|>=0.5"]), -2.0)
    (1.0, -1.0)
    """
    kind = value.kind
    if kind in ("real", "binary"):
        return 0.0
    if kind in ("interval", "ints"):
        return _integer_inside(value)
    if kind == "positive":
        return 1.0
    if kind == "away":
        return math.copysign(float(math.ceil(value.low)), x)
    return None


def _values(domain: Any, arg: Any) -> list[Value | None]:
    """One ``Value`` (or None: unknown) per leaf of ``arg``, from its declared ``domain``."""
    n = len(tree_util.tree_leaves(arg))
    leaves = [] if domain is None else tree_util.tree_leaves(domain)
    if len(leaves) != n:
        return [None] * n
    return [leaf.value if isinstance(leaf, ArraySpec) else None for leaf in leaves]


def simplify(
    check: Callable[[tuple[Any, ...]], Outcome],
    failure: Outcome,
    argnums: Sequence[int],
    domain: Sequence[Any] | None = None,
) -> Outcome:
    """``failure`` with as many elements of the differentiated arguments made simple (see the
    module docstring) as keep it failing with the same ``kind`` (the re-checked ``Outcome``).

    ``domain``: per argument, what ``named_arrays`` declared (``domain_of``), or None.
    """
    flat, treedef = tree_util.tree_flatten_with_path(failure.args)
    leaves: list[Any] = [
        leaf if isinstance(leaf, (int, float)) else np.array(leaf) for _, leaf in flat
    ]
    values: list[Value | None] = []
    for i, arg in enumerate(failure.args):
        values += _values(None if domain is None or i >= len(domain) else domain[i], arg)
    trials = 0
    for k, (path, _) in enumerate(flat):
        leaf, value = leaves[k], values[k]
        if path[0].idx not in argnums or not isinstance(leaf, np.ndarray):
            continue
        if not np.issubdtype(leaf.dtype, np.floating):
            continue
        for index in np.ndindex(leaf.shape):
            x = float(leaves[k][index])
            new = 0.0 if value is None else simplest(value, x)
            if new is None or x == new:
                continue
            if value is not None and value.distinct and np.any(leaves[k] == new):
                continue
            if trials >= MAX_TRIALS:
                return failure
            trials += 1
            trial: list[Any] = [a.copy() if isinstance(a, np.ndarray) else a for a in leaves]
            trial[k][index] = new
            try:
                outcome = check(tree_util.tree_unflatten(treedef, trial))
            except Exception:
                continue
            if outcome.kind == failure.kind:
                failure, leaves = outcome, trial
    return failure
