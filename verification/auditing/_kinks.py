"""Bugs at the kink: a declared convention, inputs aimed exactly at kinks, failures there.

At a kink (a ReLU pre-activation exactly 0, a tie between maxima) the derivative is a
convention: ``jax.nn.relu`` takes relu'(0) = 0, ``jnp.argmax`` gives a tie to the first index.
Finite differences cannot side with either answer there, so by default the audit counts a
disagreement at a kink as *oracle-uncertain*, never as a failure: a relu'(0) = 1 bug is
invisible. A user who declares that their convention is the reference's, with a ``Kinks``,
changes two things:

* the strategy aims inputs exactly at the kinks (``aimed``): some elements exactly 0 (``RELU``),
  whole hidden units of the network with pre-activation exactly 0 (``MLP_RELU``: a zero column
  of W1 and a zero entry of b1, so Z1 = 0 however the candidate sums), or rows with a tied
  maximum (``MAX_TIES``);
* a disagreement that finite differences do not confirm is a failure when they show a kink
  there (``at_kink``: the one-sided slopes are reliable, small truncation and rounding, yet they
  do not both match the reference: the loss is not differentiable within the step), and the
  report says it failed at a kink under the declared convention.

Without a declaration nothing changes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from jax import tree_util

from verification import reference
from verification.auditing._oracle import FiniteDifferences
from verification.auditing._simplify import declare_domain, domain_of

__all__ = [
    "BY_NAME",
    "MAX_TIES",
    "MLP_RELU",
    "RELU",
    "Kinks",
    "aimed",
    "at_kink",
    "kinks_at",
    "pool_ties",
    "source",
]

Aim = Callable[[st.DrawFn, tuple[Any, ...], tuple[int, ...]], tuple[Any, ...]]
"""``aim(draw, args, argnums) -> args`` with some elements moved exactly onto kinks."""


@dataclass(frozen=True)
class Kinks:
    """A declaration: at these kinks, my convention is the reference's.

    convention : in words, for the report (e.g. "relu'(0) = 0, as jax.nn.relu").
    aim : ``aim(draw, args, argnums) -> args``: the drawn example with some elements moved
        exactly onto kinks (``draw`` draws which, so that hypothesis can shrink it).
    """

    convention: str
    aim: Aim
    rebuild: tuple[str, str] | None = None
    """(Python lines, an expression) that rebuild this declaration in a reproducer (the
    expression "kinks" when the lines bind that name themselves); None: see ``source``."""


def _bool_mask(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    n = int(np.prod(shape, dtype=np.int64))
    flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return np.array(flags, dtype=bool).reshape(shape)


def _map_differentiated(
    args: tuple[Any, ...],
    argnums: tuple[int, ...],
    fn: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]],
) -> tuple[Any, ...]:
    out = list(args)
    for i in argnums:
        out[i] = tree_util.tree_map(lambda a: fn(np.array(a, copy=True)), args[i])
    return tuple(out)


def _zeros(draw: st.DrawFn, args: tuple[Any, ...], argnums: tuple[int, ...]) -> tuple[Any, ...]:
    def put(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        a[_bool_mask(draw, a.shape)] = 0
        return a

    return _map_differentiated(args, argnums, put)


def _ties(draw: st.DrawFn, args: tuple[Any, ...], argnums: tuple[int, ...]) -> tuple[Any, ...]:
    def tie(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if a.ndim == 0 or a.shape[-1] < 2:
            return a
        rows = a.reshape(-1, a.shape[-1])
        for row, flag in zip(rows, _bool_mask(draw, (rows.shape[0],)), strict=True):
            if flag:
                best = int(np.argmax(row))
                other = draw(st.integers(0, row.size - 2))
                row[other + (other >= best)] = row[best]
        return rows.reshape(a.shape)

    return _map_differentiated(args, argnums, tie)


def _mlp_units(draw: st.DrawFn, args: tuple[Any, ...], argnums: tuple[int, ...]) -> tuple[Any, ...]:
    params, *rest = args
    W1 = np.array(reference.param(params, "W1"), copy=True)
    b1 = np.array(reference.param(params, "b1"), copy=True)
    units = _bool_mask(draw, (W1.shape[1],))
    W1[:, units] = 0
    b1[units] = 0
    if isinstance(params, Mapping):  # the --shapes grammar's params.W1=n,h
        return ({**params, "W1": W1, "b1": b1}, *rest)
    return (params._replace(W1=W1, b1=b1), *rest)


RELU = Kinks("relu'(0) = 0, as jax.nn.relu", _zeros)
"""relu'(0) = 0; aims by setting drawn elements of the differentiated arguments exactly to 0
(for a layer whose input is the pre-activation)."""

MLP_RELU = Kinks("relu'(0) = 0, as jax.nn.relu", _mlp_units)
"""relu'(0) = 0 for the network's ``(params, x, y)``: drawn hidden units get a zero column of W1
and a zero entry of b1, so their pre-activation Z1 is exactly 0 for every sample."""

MAX_TIES = Kinks("a tie of maxima goes where the reference sends it", _ties)
"""Ties of maxima; aims by copying the maximum of drawn rows (last axis) of the differentiated
arguments to another drawn position in the row."""

BY_NAME = {"relu": RELU, "mlp-relu": MLP_RELU, "max-ties": MAX_TIES}
"""The built-in declarations by the names a user writes (``--kinks``, a pyproject table)."""


def kinks_at(points: Sequence[float], convention: str | None = None) -> Kinks:
    """Kinks at the values ``points`` (clip or hardtanh at -1 and 1, a threshold at 0.5).

    Aims by setting drawn elements of the differentiated arguments exactly to drawn values of
    ``points``. ``convention``: in words for the report (default: "the derivative at x = -1,
    1 is the reference's").

    >>> kinks_at([-1, 1]).convention
    "the derivative at x = -1, 1 is the reference's"

    Raises ValueError for no points or a point that is not finite.
    """
    values = tuple(float(p) for p in points)
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"kinks_at needs finite points, got {list(points)}")

    def put(draw: st.DrawFn, args: tuple[Any, ...], argnums: tuple[int, ...]) -> tuple[Any, ...]:
        def at(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            n = int(np.prod(a.shape, dtype=np.int64))
            chosen = draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
            where = _bool_mask(draw, a.shape)
            a[where] = np.array(chosen, dtype=np.float64).reshape(a.shape)[where]
            return a

        return _map_differentiated(args, argnums, at)

    words = ", ".join(f"{v:g}" for v in values)
    return Kinks(
        convention or f"the derivative at x = {words} is the reference's",
        put,
        (
            "from verification.auditing import kinks_at",
            f"kinks_at({list(values)!r}{'' if convention is None else f', {convention!r}'})",
        ),
    )


def pool_ties(window: tuple[int, int], stride: tuple[int, int] | None = None) -> Kinks:
    """Ties of maxima inside the 2-D pooling windows (``window`` = (kh, kw), ``stride``
    default ``window``) over the last two axes of the differentiated arguments.

    Aims by copying the maximum of drawn windows to another drawn position of the same window
    (not only along the last axis, as ``MAX_TIES``).

    Raises ValueError for a window or stride that is not two positive ints.
    """
    steps = window if stride is None else stride
    for name, pair in (("window", window), ("stride", steps)):
        if len(pair) != 2 or not all(isinstance(k, int) and k >= 1 for k in pair):
            raise ValueError(f"pool_ties: {name} must be two ints >= 1, got {pair!r}")
    kh, kw = window
    sh, sw = steps

    def tie(draw: st.DrawFn, args: tuple[Any, ...], argnums: tuple[int, ...]) -> tuple[Any, ...]:
        def put(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            if a.ndim < 2 or kh * kw < 2:
                return a
            height, width = a.shape[-2:]
            starts = [
                (i, j) for i in range(0, height - kh + 1, sh) for j in range(0, width - kw + 1, sw)
            ]
            planes = a.reshape(-1, height, width)
            flags = _bool_mask(draw, (planes.shape[0], len(starts)))
            for plane, plane_flags in zip(planes, flags, strict=True):
                for (i, j), flag in zip(starts, plane_flags, strict=True):
                    if flag:
                        block = plane[i : i + kh, j : j + kw]  # a view: writes go to ``a``
                        best = int(np.argmax(block))
                        other = draw(st.integers(0, block.size - 2))
                        block.flat[other + (other >= best)] = block.flat[best]
            return planes.reshape(a.shape)

        return _map_differentiated(args, argnums, put)

    return Kinks(
        "a tie of maxima inside a pooling window goes where the reference sends it",
        tie,
        ("from verification.auditing import pool_ties", f"pool_ties({window!r}, {stride!r})"),
    )


def aimed(
    strategy: st.SearchStrategy[tuple[Any, ...]], kinks: Kinks, argnums: Sequence[int]
) -> st.SearchStrategy[tuple[Any, ...]]:
    """``strategy`` with each example moved onto the kinks of ``kinks`` (shrinkable)."""
    positions = tuple(argnums)

    @st.composite
    def aim(draw: st.DrawFn) -> tuple[Any, ...]:
        return kinks.aim(draw, draw(strategy), positions)

    return declare_domain(aim(), domain_of(strategy))


def at_kink(fd: FiniteDifferences, reference: float, resolution: float) -> bool:
    """Whether the one-sided slopes show a kink within the step.

    Both quotients are reliable (truncation and rounding below ``resolution`` / 8), yet at least
    one of them differs from the reference's slope by more than ``resolution`` / 4: the loss
    has no derivative here, and the reference's value is its convention.
    """
    reliable = fd.truncation <= resolution / 8 and fd.rounding <= resolution / 8
    off = max(abs(fd.forward - reference), abs(fd.backward - reference))
    return reliable and off > resolution / 4


def _importable_name(kinks: Kinks) -> tuple[str, str] | None:
    """(module, name) of a module-level variable bound to ``kinks``: the module of its ``aim``
    first, then every imported module; None if there is none (or only in ``__main__``)."""
    first = getattr(kinks.aim, "__module__", None)
    modules = [first] if first else []
    modules += [m for m in list(sys.modules) if m != first]
    for module_name in modules:
        module = sys.modules.get(module_name)
        if module is None or module_name == "__main__":
            continue
        for name, value in list(vars(module).items()):
            if value is kinks and not name.startswith("_"):
                return module_name, name
    return None


def source(kinks: Kinks) -> tuple[str, str]:
    """(a line of Python that defines it, its name) for a reproducer: its ``rebuild``
    (``kinks_at``, ``pool_ties``), the import of a built-in declaration or of the user's own
    from the module that defines it, else its construction from an importable ``aim``; a
    placeholder only when neither can be imported."""
    if kinks.rebuild is not None:
        line, expression = kinks.rebuild
        return (
            (line, expression)
            if expression == "kinks"
            else (f"{line}\nkinks = {expression}", "kinks")
        )
    for name, builtin in (("RELU", RELU), ("MLP_RELU", MLP_RELU), ("MAX_TIES", MAX_TIES)):
        if kinks is builtin:
            return f"from verification.auditing import {name}", name
    found = _importable_name(kinks)
    if found is not None:
        return f"from {found[0]} import {found[1]} as kinks", "kinks"
    module = getattr(kinks.aim, "__module__", None) or "__main__"
    qualname = getattr(kinks.aim, "__qualname__", "<unknown>")
    if module != "__main__" and "<" not in qualname and "." not in qualname:
        return (
            f"from verification.auditing import Kinks; from {module} import {qualname} as aim; "
            f"kinks = Kinks({kinks.convention!r}, aim)",
            "kinks",
        )
    return "kinks = ...  # your Kinks declaration: paste it here", "kinks"
