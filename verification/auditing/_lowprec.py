"""Verdicts for float16 and bfloat16 candidates: their error against the error of a reference
computed in the same precision.

A low-precision kernel cannot match the float64 oracle to a few of its own ulp: every stored
intermediate is rounded, and how much that moves the gradient depends on the input. So at each
input the audit measures how far a *straightforward reference in the same precision* lands
from the float64 oracle, and allows the candidate ``FACTOR`` times that, plus the rounding of
the output dtype itself. Per gradient leaf:

    |candidate - g| <= FACTOR * E + u |g|            elementwise,
    E = max( max |r(x) - g(x)|, max |r(x') - g(x')|, u U )

* g: the float64 oracle at the candidate's own (low-precision) input values, read exactly;
* r: ``jax.grad`` of the same loss with every float input cast to the candidate's dtype. On
  XLA's CPU backend its matrix products and sums accumulate in float32 and each result is
  rounded to the dtype (the careful kernel's way: 4096 ones sum to 4096 in bfloat16 there, to
  256 when every addition rounds to bfloat16);
* x': x with a random half of the differentiated elements moved by about one ulp: a second
  draw of the reference's rounding, so that a leaf on which the reference happens to round
  luckily (an error far below its usual one) does not set the bar;
* u = eps / 2 of the dtype (2^-11 for float16, 2^-8 for bfloat16) and U the largest |g| over
  all leaves: the floor u U is the rounding of the gradient's largest element (as in the float
  rule, whose atol is also relative to U). It matters where a leaf cancels to exactly 0 and the
  reference happens to round to 0 too (a bias gradient that is a row sum of P - Y).

``FACTOR = 32`` comes from measurements (``python -m benchmarks --only lowprec_factor``): over
1400 random inputs per dtype of the seed network (shapes 1 to 64, values up to 8 in float16
and up to 1000 in bfloat16), correct numpy and torch kernels erred at most 4.8 times E in
float16 and 12.9 times in bfloat16 (99th percentiles 1.15 and 1.0): 32 leaves a margin of 2.5
over the worst. A doubled dW1 errs up to 2048 (float16) and 257 (bfloat16) times E, a bias
averaged twice up to 1360 and 191. A factor 2 on a leaf is told only where that leaf's
largest element exceeds FACTOR E, so never on a leaf below 32 u U (1.6% of the gradient's
largest element in float16, 12.5% in bfloat16). A kernel that accumulates its batch sums in
the low dtype stays within the factor at m = 256 (1.5 times E in float16, 7.7 in bfloat16)
and exceeds it at the benchmark's large batch, m = 2048 (36 and 82 times).

Where the low-precision reference is not finite (the problem overflows the dtype) the input is
outside what the dtype can represent, and the example is not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax import tree_util
from numpy.typing import DTypeLike

__all__ = [
    "BFLOAT16",
    "FACTOR",
    "LowPrecisionCheck",
    "LowPrecisionReference",
    "check_low_precision",
    "default_bounds",
    "errors_at",
    "is_float",
    "is_low_precision",
    "low_precision_dtype",
    "nudged",
    "reference_errors",
    "reference_for",
    "tolerances",
    "unit_roundoff",
]

FACTOR = 32.0
"""Multiple of the low-precision reference's error allowed to the candidate (module docstring)."""

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
_LOW = {np.dtype(np.float16), BFLOAT16}


def _finfo(dtype: DTypeLike) -> tuple[float, float]:
    """(eps, smallest normal) by ``ml_dtypes.finfo``, which knows bfloat16."""
    info = ml_dtypes.finfo(dtype)  # type: ignore[no-untyped-call]
    return float(info.eps), float(info.smallest_normal)


def is_low_precision(dtype: DTypeLike) -> bool:
    """True for float16 and bfloat16.

    >>> is_low_precision(np.float16), is_low_precision(BFLOAT16), is_low_precision("float32")
    (True, True, False)
    """
    return np.dtype(dtype) in _LOW


def is_float(dtype: DTypeLike) -> bool:
    """True for numpy's floating dtypes and ``ml_dtypes.bfloat16`` (which numpy does not count
    as ``np.floating``).

    >>> is_float(BFLOAT16), is_float(np.float64), is_float(np.int32)
    (True, True, False)
    """
    dt = np.dtype(dtype)
    return bool(np.issubdtype(dt, np.floating)) or dt in _LOW


def low_precision_dtype(dtypes: Sequence[DTypeLike]) -> np.dtype[Any] | None:
    """The lowest precision among ``dtypes`` if any is float16 or bfloat16, else None."""
    low = [np.dtype(d) for d in dtypes if is_low_precision(d)]
    return max(low, key=lambda d: _finfo(d)[0]) if low else None


def default_bounds(dtype: DTypeLike) -> tuple[float, ...] | None:
    """Bounds on |element| for drawn low-precision inputs (None: the usual ones).

    float16 overflows at 65504: values up to 8 keep the seed network's logits (sums of products
    of four factors) finite while still saturating the softmax (exp overflows float16 above
    11). bfloat16 has float32's range and takes the usual bounds.
    """
    return (3.0, 8.0) if np.dtype(dtype) == np.dtype(np.float16) else None


def unit_roundoff(dtype: np.dtype[Any]) -> float:
    """u = eps / 2 of ``dtype`` (bfloat16 included): 2^-11 for float16, 2^-8 for bfloat16."""
    return _finfo(dtype)[0] / 2


def nudged(args: tuple[Any, ...], argnums: Sequence[int], rng: np.random.Generator) -> Any:
    """``args`` with a random half of the elements of the differentiated low-precision leaves
    multiplied by (1 +- 2u) and rounded back to their dtype (about one ulp)."""

    def move(leaf: Any) -> Any:
        a = np.asarray(leaf)
        if not is_low_precision(a.dtype):
            return leaf
        u = unit_roundoff(a.dtype)
        factor = 1.0 + 2 * u * rng.choice([-1.0, 1.0], a.shape) * rng.integers(0, 2, a.shape)
        return (a.astype(np.float64) * factor).astype(a.dtype)

    out = list(args)
    for i in argnums:
        out[i] = tree_util.tree_map(move, args[i])
    return tuple(out)


class LowPrecisionReference:
    """``jax.grad`` of ``loss_fn`` with respect to ``args[argnums]``, every float input in
    the dtype it comes in (float16 or bfloat16), jitted once per shape and dtype.

    Its leaves come back as float64 arrays holding the low-precision values exactly.
    """

    def __init__(self, loss_fn: Callable[..., Any], argnums: tuple[int, ...]) -> None:
        self.loss_fn = loss_fn
        self.argnums = argnums

        def grad(args: tuple[Any, ...]) -> Any:
            def at(diff: tuple[Any, ...]) -> jax.Array:
                full = list(args)
                for i, value in zip(argnums, diff, strict=True):
                    full[i] = value
                return jnp.asarray(loss_fn(*full))

            return jax.grad(at)(tuple(args[i] for i in argnums))

        self._grad = jax.jit(grad)

    def how(self, dtype: np.dtype[Any]) -> str:
        """How the reference is computed, in words (for the report)."""
        return (
            f"jax.grad of the loss with every float input in {dtype.name} "
            f"(XLA {jax.default_backend()}: products and sums accumulate in float32, each "
            f"result rounded to {dtype.name}), at this input and at one ~1 ulp away"
        )

    def gradient(self, args: tuple[Any, ...]) -> list[np.ndarray[Any, np.dtype[np.float64]]]:
        """The gradient leaves at ``args`` (low-precision values, as float64)."""
        tree = tree_util.tree_map(jnp.asarray, tuple(args))
        out = self._grad(tree)
        return [np.asarray(g).astype(np.float64) for g in tree_util.tree_leaves(out)]


_REFERENCES: dict[tuple[Any, tuple[int, ...]], LowPrecisionReference] = {}
"""One low-precision reference (with its compiled shapes) per (loss_fn, argnums)."""


def reference_for(loss_fn: Callable[..., Any], argnums: tuple[int, ...]) -> LowPrecisionReference:
    """The process's low-precision reference for ``loss_fn`` and ``argnums`` (compiled shapes
    are reused across audits, like the oracle's)."""
    key = (loss_fn, argnums)
    if key not in _REFERENCES:
        _REFERENCES[key] = LowPrecisionReference(loss_fn, argnums)
    return _REFERENCES[key]


def reference_errors(
    dtype: np.dtype[Any],
    grad: Sequence[np.ndarray[Any, Any]],
    low: Sequence[np.ndarray[Any, Any]],
    grad_nudged: Sequence[np.ndarray[Any, Any]],
    low_nudged: Sequence[np.ndarray[Any, Any]],
) -> list[float]:
    """E per leaf (module docstring): the low-precision reference's largest error against the
    float64 oracle at x and at x', at least u U (U the largest |g| over all leaves); inf where
    the reference is not finite.

    >>> g = [np.array([1.0, -2.0])]
    >>> reference_errors(np.dtype(np.float16), g, [g[0] + 0.25], g, g)
    [0.25]
    """
    floor = unit_roundoff(dtype) * max(float(np.max(np.abs(g), initial=0.0)) for g in grad)
    out = []
    for g, r, g2, r2 in zip(grad, low, grad_nudged, low_nudged, strict=True):
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(r2))):
            out.append(math.inf)
            continue
        out.append(
            max(
                float(np.max(np.abs(r - g), initial=0.0)),
                float(np.max(np.abs(r2 - g2), initial=0.0)),
                floor,
            )
        )
    return out


def tolerances(dtype: np.dtype[Any], errors: Sequence[float]) -> list[tuple[float, float]]:
    """(rtol, atol) per leaf: rtol = u (the output's rounding), atol = FACTOR * E (plus the
    dtype's smallest normal number, below which its relative precision is lost).

    >>> tolerances(np.dtype(np.float16), [0.01])[0][0] == 2.0**-11
    True
    """
    u = unit_roundoff(dtype)
    tiny = _finfo(dtype)[1]
    return [(u, FACTOR * e + tiny) for e in errors]


@dataclass(frozen=True)
class LowPrecisionCheck:
    """What a low-precision verdict rests on, for one example.

    dtype : the candidate's dtype.
    names : the gradient leaves' names.
    candidate_errors : max |candidate - g| per leaf.
    reference_errors : E per leaf (``reference_errors``).
    how : how the low-precision reference was computed.
    """

    dtype: np.dtype[Any]
    names: tuple[str, ...]
    candidate_errors: tuple[float, ...]
    reference_errors: tuple[float, ...]
    how: str

    @property
    def ratios(self) -> tuple[float, ...]:
        """Candidate error / reference error per leaf."""
        return tuple(
            c / e if e > 0 else (math.inf if c > 0 else 0.0)
            for c, e in zip(self.candidate_errors, self.reference_errors, strict=True)
        )

    @property
    def worst_ratio(self) -> float:
        """The largest ratio over the leaves."""
        return max(self.ratios, default=0.0)

    @property
    def rank(self) -> tuple[float, float]:
        """(worst ratio, largest E): which passing example the report shows (among equal
        ratios, e.g. 1 where candidate and reference both round to 0, the largest errors)."""
        return self.worst_ratio, max(self.reference_errors, default=0.0)

    def lines(self) -> list[str]:
        """The report's lines: the rule, then each leaf's errors and their ratio."""
        u = unit_roundoff(self.dtype)
        head = (
            f"low precision ({self.dtype.name}): allowed error per leaf = {FACTOR:g} x the "
            f"{self.dtype.name} reference's error E + {u:.3g} |reference|; the reference: "
            f"{self.how}"
        )
        rows = [
            f"  {name}: error {c:.3g} = {r:.3g} x the {self.dtype.name} reference's {e:.3g}"
            for name, c, e, r in zip(
                self.names, self.candidate_errors, self.reference_errors, self.ratios, strict=True
            )
        ]
        return [head, *rows]


def errors_at(
    reference: LowPrecisionReference,
    gradient64: Callable[[tuple[Any, ...]], Sequence[np.ndarray[Any, Any]]],
    args: tuple[Any, ...],
    grad: Sequence[np.ndarray[Any, Any]],
    dtype: np.dtype[Any],
    rng: np.random.Generator,
) -> list[float]:
    """E per leaf (``reference_errors``) at ``args``, whose float64 gradient is ``grad``: the
    low-precision reference there and at a nudged copy (its float64 gradient by
    ``gradient64``)."""
    low = reference.gradient(args)
    other = nudged(args, reference.argnums, rng)
    return reference_errors(dtype, grad, low, gradient64(other), reference.gradient(other))


def check_low_precision(
    reference: LowPrecisionReference,
    gradient64: Callable[[tuple[Any, ...]], Sequence[np.ndarray[Any, Any]]],
    args: tuple[Any, ...],
    grad: Sequence[np.ndarray[Any, Any]],
    got: Sequence[Any],
    dtype: np.dtype[Any],
    names: Sequence[str],
    rng: np.random.Generator,
) -> LowPrecisionCheck:
    """The low-precision reference's errors at ``args`` (whose float64 gradient is ``grad``)
    and at a nudged copy (float64 gradient by ``gradient64``), with the candidate's (``got``)."""
    errors = errors_at(reference, gradient64, args, grad, dtype, rng)
    with np.errstate(invalid="ignore", over="ignore"):
        cand = [
            float(np.max(np.abs(np.asarray(c, np.float64) - g), initial=0.0))
            for c, g in zip(got, grad, strict=True)
        ]
    return LowPrecisionCheck(dtype, tuple(names), tuple(cand), tuple(errors), reference.how(dtype))
