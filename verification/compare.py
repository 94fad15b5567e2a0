"""Comparing a manual result with its JAX reference: tolerances and tree comparison.

The tolerance rule
------------------
Two correct computations of the same value in floating point differ only by rounding. Each
operation rounds with relative error at most eps (the machine epsilon of the dtype: 2.2e-16 in
float64, 1.2e-7 in float32), and a sum of ``terms`` rounded terms accumulates an error that grows
like sqrt(terms) for errors of random sign. So ``tolerance`` allows

    rtol = SAFETY * eps * sqrt(terms),   atol = rtol * scale + tiny,   SAFETY = 32,

and an element passes when |actual - expected| <= atol + rtol * |expected|. ``scale`` is the
magnitude of the values involved (say the largest |expected|): it lets an element that is small
only because of cancellation (P - Y where P is close to Y, a softmax probability of 1e-40) carry
the absolute rounding error of the large values it was computed from. ``tiny`` is the smallest
normal number of the dtype (1.2e-38 in float32, 2.2e-308 in float64): below it numbers are
subnormal and lose relative precision, so values there are compared by absolute error alone
(a float32 loss of 3.7e-44 = log(1 + e^-100) is stored with 2 significant digits).

Why this separates rounding from bugs: with the small shapes of the tests (terms up to a few
hundred) the tolerance is about 1e-14 to 1e-13 in float64 and 4e-6 to 7e-5 in float32, while a
plausible bug (a missing 1/m, a wrong sign, a transposed product, a dropped term, relu'(0) = 1,
Y where P - Y belongs) changes some element by a sizeable fraction of the scale, 1e-2 or more.
The float32 checks compare the float32 manual result against the float64 reference on the same
(exactly representable) inputs, so their error is the float32 rounding alone.

Comparisons are plain ``abs(a - b) <= atol + rtol * abs(b)`` on float64 copies, about ten times
faster than ``np.testing.assert_allclose`` on small arrays (BASELINES.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from numpy.typing import DTypeLike

__all__ = [
    "SAFETY",
    "Comparison",
    "assert_trees_close",
    "compare_trees",
    "magnitude",
    "tolerance",
]

SAFETY = 32.0
"""Multiple of eps * sqrt(terms) allowed for rounding (see the module docstring)."""


def tolerance(dtype: DTypeLike, *, scale: float = 1.0, terms: int = 1) -> tuple[float, float]:
    """(rtol, atol) for comparing two computations of the same value in ``dtype``.

    rtol = SAFETY * eps(dtype) * sqrt(terms) and atol = rtol * scale + tiny(dtype), tiny being
    the smallest normal number (values below it are subnormal and lose relative precision).

    Parameters
    ----------
    dtype : a floating dtype (float32, float64, ...); the precision of the computation checked.
    scale : the magnitude of the values involved (e.g. the largest |expected|), >= 0.
    terms : the number of terms summed into one result (e.g. m * n for a matmul), >= 1.

    Returns
    -------
    (rtol, atol) : two floats.

    Raises
    ------
    ValueError : if ``dtype`` is not a floating dtype, ``scale`` < 0 or is not finite, or
        ``terms`` < 1.

    Examples
    --------
    >>> rtol, atol = tolerance("float64", scale=2.0, terms=4)
    >>> info = np.finfo(np.float64)
    >>> rtol == 2 * SAFETY * float(info.eps) and atol == 2 * rtol + float(info.smallest_normal)
    True
    """
    dt = np.dtype(dtype)
    if not (np.issubdtype(dt, np.floating) or dt.name == "bfloat16"):
        raise ValueError(f"dtype must be a floating dtype, got {dt}")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be finite and >= 0, got {scale}")
    if terms < 1:
        raise ValueError(f"terms must be >= 1, got {terms}")
    info = ml_dtypes.finfo(dt)  # type: ignore[no-untyped-call]  # numpy's finfo lacks bfloat16
    rtol = SAFETY * float(info.eps) * math.sqrt(terms)
    return rtol, rtol * scale + float(info.smallest_normal)


def magnitude(tree: Any) -> float:
    """The largest finite |element| over all leaves of ``tree`` (0.0 if there is none).

    A convenient ``scale`` for ``tolerance``.

    >>> magnitude((np.array([1.0, -3.0]), np.array(np.inf)))
    3.0
    """
    largest = 0.0
    for _, leaf in _leaves(tree, ""):
        values = np.abs(np.asarray(leaf, dtype=np.float64))
        finite = values[np.isfinite(values)]
        if finite.size:
            largest = max(largest, float(finite.max()))
    return largest


@dataclass(frozen=True)
class Comparison:
    """The outcome of ``compare_trees``.

    passed : every element within tolerance and the structures and shapes equal.
    max_abs_error : max |actual - expected| over finite pairs (inf if a NaN/inf is misplaced).
    max_rel_error : max |actual - expected| / |expected| over finite pairs with |expected| > atol
        (smaller values are judged by their absolute error alone; 0.0 if there is none).
    location : the worst element, e.g. "W2[3, 1]" ("[2]" for a plain array leaf), the one
        furthest outside (or closest to the edge of) its tolerance; None if nothing compared.
    actual, expected : the values at ``location``.
    rtol, atol : the tolerance used.
    n_failed, n_total : elements out of tolerance, elements compared.
    detail : why the structures could not be compared (structure or shape mismatch), else None.
    """

    passed: bool
    max_abs_error: float
    max_rel_error: float
    location: str | None
    actual: float | None
    expected: float | None
    rtol: float
    atol: float
    n_failed: int = 0
    n_total: int = 0
    detail: str | None = None

    def __str__(self) -> str:
        """Which leaf and element, by how much, against which tolerance."""
        tol = f"rtol={self.rtol:.3g}, atol={self.atol:.3g}"
        if self.detail is not None:
            return f"mismatch: {self.detail}"
        errors = f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}"
        if self.passed:
            return f"all {self.n_total} elements within tolerance ({errors}; {tol})"
        if self.actual is None or self.expected is None:  # pragma: no cover  (failed => located)
            return f"{self.n_failed} of {self.n_total} elements out of tolerance ({tol})"
        error = abs(self.actual - self.expected)
        allowed = self.atol + self.rtol * abs(self.expected)
        return (
            f"{self.n_failed} of {self.n_total} elements out of tolerance; worst at "
            f"{self.location}: actual {self.actual!r}, expected {self.expected!r}, "
            f"|error| {error:.3g} > atol + rtol*|expected| = {allowed:.3g} ({tol}); {errors}"
        )


def _is_namedtuple(obj: object) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _is_leaf(obj: object) -> bool:
    return not isinstance(obj, (tuple, list, Mapping))


def _leaves(tree: Any, path: str) -> list[tuple[str, Any]]:
    """(path, leaf) pairs in order: NamedTuple fields by name, sequences by [i], dicts by [key]."""
    if _is_namedtuple(tree):
        out: list[tuple[str, Any]] = []
        for field, child in zip(tree._fields, tree, strict=True):
            out += _leaves(child, f"{path}.{field}" if path else field)
        return out
    if isinstance(tree, (tuple, list)):
        return [pair for i, child in enumerate(tree) for pair in _leaves(child, f"{path}[{i}]")]
    if isinstance(tree, Mapping):
        return [pair for key, child in tree.items() for pair in _leaves(child, f"{path}[{key!r}]")]
    return [(path, tree)]


def _structure_mismatch(actual: Any, expected: Any, path: str) -> str | None:
    """A description of the first structural difference, or None if the structures agree.

    A NamedTuple and a plain tuple of the same length agree (JAX may return either); two
    NamedTuples must have the same fields; dicts the same keys.
    """
    where = path or "the root"
    if _is_leaf(actual) and _is_leaf(expected):
        return None
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        if set(actual) != set(expected):
            return f"at {where}: keys {sorted(map(str, actual))} vs {sorted(map(str, expected))}"
        for key in expected:
            found = _structure_mismatch(actual[key], expected[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(actual, (tuple, list)) and isinstance(expected, (tuple, list)):
        if len(actual) != len(expected):
            return f"at {where}: {len(actual)} children in actual vs {len(expected)} in expected"
        if (
            _is_namedtuple(actual)
            and _is_namedtuple(expected)
            and actual._fields != expected._fields  # type: ignore[union-attr]
        ):
            return f"at {where}: fields {actual._fields} vs {expected._fields}"  # type: ignore[union-attr]
        fields = getattr(expected, "_fields", None) or getattr(actual, "_fields", None)
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            label = (f"{path}.{fields[i]}" if path else fields[i]) if fields else f"{path}[{i}]"
            found = _structure_mismatch(a, e, label)
            if found:
                return found
        return None
    kind = {True: "a leaf", False: "a container"}
    return f"at {where}: actual is {kind[_is_leaf(actual)]}, expected is {kind[_is_leaf(expected)]}"


def _as_float64(leaf: Any, role: str, where: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    try:
        return np.asarray(leaf, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{role} leaf {where or 'root'} is not numeric: {error}") from error


def compare_trees(
    actual: Any,
    expected: Any,
    *,
    rtol: float,
    atol: float,
    names: str | Sequence[str] | None = None,
) -> Comparison:
    """Compare two pytrees of arrays elementwise: |actual - expected| <= atol + rtol * |expected|.

    Parameters
    ----------
    actual, expected : an array (or scalar), or NamedTuples / tuples / lists / dicts of them.
        Leaves are compared as float64; their dtypes may differ (a float32 result against a
        float64 reference). Shapes must be equal exactly (no broadcasting).
    rtol, atol : the tolerance, usually from ``tolerance``.
    names : leaf names for the message: one string for a single-leaf tree, or one per leaf
        (e.g. ``("dx", "dw", "db")`` for a plain tuple). By default NamedTuple field names,
        ``[i]`` for sequence positions, ``[key]`` for dict keys, nothing for a single array.

    Returns
    -------
    Comparison : ``passed`` is False (never an exception) when the structures or shapes
        differ, when an element is out of tolerance, or when a NaN or inf in one tree faces a
        different value in the other. The same NaN or the same inf in both at the same place
        passes.

    Raises
    ------
    ValueError : if ``names`` does not have one name per leaf.
    TypeError : if a leaf is not numeric.

    Examples
    --------
    >>> from typing import NamedTuple
    >>> class P(NamedTuple):
    ...     W: np.ndarray
    ...     b: np.ndarray
    >>> c = compare_trees(P(np.eye(2), np.zeros(2)), P(np.eye(2), np.array([0.0, 1.0])),
    ...                   rtol=1e-12, atol=1e-12)
    >>> c.passed, c.location, c.max_abs_error
    (False, 'b[1]', 1.0)
    """
    mismatch = _structure_mismatch(actual, expected, "")
    if mismatch is not None:
        return _failed_structure(mismatch, rtol, atol)
    pairs = list(zip(_leaves(actual, ""), _leaves(expected, ""), strict=True))
    labels = [e_path or a_path for (a_path, _), (e_path, _) in pairs]
    if names is not None:
        name_list = [names] if isinstance(names, str) else list(names)
        if len(name_list) != len(pairs):
            raise ValueError(
                f"names has {len(name_list)} entries but the trees have {len(pairs)} leaves"
            )
        labels = name_list

    max_abs = 0.0
    max_rel = 0.0
    n_failed = 0
    n_total = 0
    worst: tuple[float, str, float, float] | None = None  # (badness, location, actual, expected)
    for label, ((_, a_leaf), (_, e_leaf)) in zip(labels, pairs, strict=True):
        a = _as_float64(a_leaf, "actual", label)
        e = _as_float64(e_leaf, "expected", label)
        if a.shape != e.shape:
            return _failed_structure(
                f"{label or 'the array'} has shape {a.shape} in actual but {e.shape} in expected",
                rtol,
                atol,
            )
        if a.size == 0:
            continue
        n_total += a.size
        both_finite = np.isfinite(a) & np.isfinite(e)
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.where(both_finite, np.abs(a - e), 0.0)
            allowed = atol + rtol * np.abs(np.where(both_finite, e, 0.0))
        # Non-finite: pass only where both are NaN or both the same infinity.
        same_special = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
        misplaced = ~both_finite & ~same_special
        with np.errstate(divide="ignore", invalid="ignore"):
            badness = np.where(allowed > 0, error / allowed, np.where(error > 0, np.inf, 0.0))
        badness = np.where(misplaced, np.inf, badness)
        failed = (error > allowed) | misplaced
        n_failed += int(failed.sum())
        max_abs = math.inf if misplaced.any() else max(max_abs, float(error.max()))
        above_atol = both_finite & (np.abs(e) > atol)
        if above_atol.any():
            max_rel = max(max_rel, float((error[above_atol] / np.abs(e[above_atol])).max()))
        flat = int(np.argmax(badness))
        if worst is None or badness.flat[flat] > worst[0]:
            index = np.unravel_index(flat, a.shape)
            where = f"{label}[{', '.join(map(str, index))}]" if a.ndim else (label or "value")
            worst = (float(badness.flat[flat]), where, float(a.flat[flat]), float(e.flat[flat]))

    return Comparison(
        passed=n_failed == 0,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        location=worst[1] if worst else None,
        actual=worst[2] if worst else None,
        expected=worst[3] if worst else None,
        rtol=rtol,
        atol=atol,
        n_failed=n_failed,
        n_total=n_total,
    )


def _failed_structure(detail: str, rtol: float, atol: float) -> Comparison:
    return Comparison(
        passed=False,
        max_abs_error=math.inf,
        max_rel_error=math.inf,
        location=None,
        actual=None,
        expected=None,
        rtol=rtol,
        atol=atol,
        detail=detail,
    )


def assert_trees_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float,
    atol: float,
    names: str | Sequence[str] | None = None,
) -> None:
    """``compare_trees`` that raises ``AssertionError(str(comparison))`` when it fails.

    >>> assert_trees_close(np.ones(3), np.ones(3), rtol=0.0, atol=0.0)
    """
    comparison = compare_trees(actual, expected, rtol=rtol, atol=atol, names=names)
    if not comparison.passed:
        raise AssertionError(str(comparison))
