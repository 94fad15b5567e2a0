"""Hypothesis strategies: consistent shapes, bounded and extreme values, labels, ready problems.

Shapes are drawn from small fixed sets, never from a range: JAX compiles its reference once per
input shape (about 160 ms each on this machine), so a fixed set bounds the compilation a test can
trigger, while each set still holds the edge cases: one sample (m = 1), one class or feature
(k = 1, n = 1, h = 1), square matrices (m == k, n == k, n == h) and a general rectangular case.
Hypothesis shrinks towards the first shape of a set, so the network's set starts with the
smallest shapes at which classic bugs show. The same sets serve both dtypes, and the float32
checks evaluate the reference on the float64 copy of the float32 input, so a float32 test
compiles nothing that the float64 test did not.

Values are bounded (|x| <= 10 for logits and activations, smaller for parameters) and drawn
without subnormals (XLA on CPU may flush them to zero, which a numpy computation does not), NaN
or inf. Extreme values get their own strategies; the network's and logistic regression's
problems have saturating output layers (logits beyond exp's overflow) in about half of their
examples. Every strategy takes the dtype of the arrays it makes (float64 by default, or
float32) and is cheap: arrays here have at most a few dozen elements.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from numpy.typing import DTypeLike, NDArray

from manual_bp import LogRegParams, MLPParams

__all__ = [
    "BATCH_SHAPES",
    "BINARY_SHAPES",
    "ELEMENTWISE_SHAPES",
    "LABEL_KINDS",
    "LINEAR_DIMS",
    "LOGREG_DIMS",
    "MLP_DIMS",
    "VALUE_BOUND",
    "binary_labels",
    "binary_logit_problems",
    "binary_probability_problems",
    "bounded_arrays",
    "extreme_bound",
    "extreme_logits",
    "float_dtypes",
    "labels",
    "linear_problems",
    "logit_problems",
    "logreg_hvp_problems",
    "logreg_problems",
    "mlp_hvp_problems",
    "mlp_problems",
    "probabilities",
    "probability_problems",
    "saturating_scale",
    "softmax_vjp_problems",
]

Shape = tuple[int, ...]
LabelKind = Literal["one_hot", "soft", "unnormalized"]

ELEMENTWISE_SHAPES: tuple[Shape, ...] = ((1,), (5,), (1, 1), (3, 4), (4, 4), (2, 3, 2))
"""Shapes for elementwise functions: a vector, a single element, square and rectangular
batches, and one 3-d array (the functions are elementwise, so any rank works)."""

BATCH_SHAPES: tuple[Shape, ...] = ((1, 1), (1, 4), (3, 1), (2, 2), (3, 3), (4, 3), (6, 5))
"""(m, k) for row-wise functions and multi-class losses: m = 1, k = 1, square, rectangular."""

BINARY_SHAPES: tuple[Shape, ...] = ((1,), (4,), (7,), (1, 1), (3, 2), (4, 4))
"""(m,) or (m, k) for the binary cross-entropies."""

LINEAR_DIMS: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (1, 3, 2),
    (4, 1, 3),
    (3, 3, 3),
    (2, 4, 1),
    (5, 3, 4),
    (4, 4, 2),
)
"""(m, n, k) for the linear layer x (m, n) @ w (n, k) + b (k,): all ones, m = 1, n = 1,
k = 1, all square, square w (n == k, m == n), rectangular."""

MLP_DIMS: tuple[tuple[int, int, int, int], ...] = (
    (1, 1, 1, 1),
    (1, 2, 1, 2),
    (2, 1, 1, 2),
    (3, 2, 3, 1),
    (4, 4, 4, 4),
    (2, 5, 2, 3),
    (5, 3, 6, 3),
    (6, 4, 5, 2),
)
"""(m, n, h, k) for the one-hidden-layer network, smallest first (hypothesis shrinks towards
the first): the degenerate network; the smallest shapes at which each classic bug shows, so a
shrunk counterexample has at most 4 elements per array: one sample with two classes (1, 2, 1, 2)
for a sign, a dropped mask or term, a softmax over the wrong axis, and a transposed dW1 or dW2
(n != h, h != k give wrong shapes); two samples (2, 1, 1, 2) for a missing or doubled 1/m and a
bias summed over the wrong axis (m != h); then one class (k = 1: softmax is 1 and every gradient
0), square everywhere, and rectangular cases with the hidden layer narrower and wider than the
input."""

LOGREG_DIMS: tuple[tuple[int, int], ...] = ((1, 1), (1, 3), (4, 1), (3, 3), (5, 2), (8, 4))
"""(m, n) for logistic regression: one sample, one feature, square x, rectangular."""

VALUE_BOUND = 10.0
"""Bound on ordinary logits and activations: |z| <= 10 (exp(10) ~ 2.2e4, no overflow)."""

LABEL_KINDS: tuple[LabelKind, ...] = ("one_hot", "soft", "unnormalized")

_PROBABILITY_FLOOR = 1.0 / 64
"""Lower bound on p where the label weight of log p is non-zero (keeps y/p bounded by 64 y)."""


def _dtype(dtype: DTypeLike) -> np.dtype[Any]:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _floats(dtype: DTypeLike, low: float, high: float) -> st.SearchStrategy[float]:
    """Finite floats in [low, high] representable in ``dtype``, no subnormals."""
    if _dtype(dtype) == np.float32:
        return st.floats(low, high, width=32, allow_subnormal=False)
    return st.floats(low, high, width=64, allow_subnormal=False)


def _shapes(
    shape: Shape | st.SearchStrategy[Shape] | None, default: tuple[Shape, ...]
) -> Shape | st.SearchStrategy[Shape]:
    """``shape`` itself, or a strategy over the fixed set ``default`` when it is None."""
    return st.sampled_from(default) if shape is None else shape


def _arrays(
    dtype: DTypeLike, shape: Shape | st.SearchStrategy[Shape], elements: st.SearchStrategy[float]
) -> st.SearchStrategy[NDArray[Any]]:
    """Arrays of ``dtype`` and ``shape`` from a list of ``elements``: about 40% cheaper to
    generate than ``hypothesis.extra.numpy.arrays`` for these small arrays, and it shrinks
    element by element just as well."""
    dt = _dtype(dtype)
    if isinstance(shape, st.SearchStrategy):
        return shape.flatmap(lambda s: _arrays(dt, s, elements))
    size = int(np.prod(shape))
    values = st.lists(elements, min_size=size, max_size=size)
    return values.map(lambda v: np.array(v, dtype=dt).reshape(shape))


def float_dtypes() -> st.SearchStrategy[np.dtype[Any]]:
    """float64 or float32."""
    return st.sampled_from([np.dtype(np.float64), np.dtype(np.float32)])


def bounded_arrays(
    dtype: DTypeLike = np.float64,
    shape: Shape | st.SearchStrategy[Shape] | None = None,
    *,
    bound: float = VALUE_BOUND,
    nonzero: bool = False,
) -> st.SearchStrategy[NDArray[Any]]:
    """Arrays of ``dtype`` and ``shape`` (default: one of ELEMENTWISE_SHAPES), elements in
    [-bound, bound]; exact zeros are likely unless ``nonzero`` (then none is zero, e.g. to
    keep away from the ReLU kink)."""
    elements = _floats(dtype, -bound, bound)
    if nonzero:
        elements = elements.filter(lambda v: v != 0)
    return _arrays(dtype, _shapes(shape, ELEMENTWISE_SHAPES), elements=elements)


def extreme_bound(dtype: DTypeLike) -> float:
    """|z| bound for extreme logits: beyond the exp overflow (709.8 in float64, 88.7 in float32).

    1e3 for float64 and 100 for float32: exp(z) overflows there, so only a computation by
    identity (max subtraction, log-sum-exp, log-sigmoid) stays finite.
    """
    return 1e3 if _dtype(dtype) == np.float64 else 100.0


def saturating_scale(dtype: DTypeLike) -> float:
    """Factor on a model's output layer in its saturating examples: 2**9 in float64, 2**6 in
    float32 (``mlp_problems``, ``logreg_problems``).

    A logit of ordinary size |z| > 1.39 becomes larger than log(max) (709.8 in float64, 88.7 in
    float32), where a naive exp overflows, and a gap of 1.46 (float64) or 1.63 (float32) between
    two logits of a row becomes one where the smaller class's probability underflows to 0. A
    power of two, so the scaled values are exact in either dtype.

    >>> saturating_scale(np.float64), saturating_scale(np.float32)
    (512.0, 64.0)
    >>> bool(512.0 * 1.39 > np.log(np.finfo(np.float64).max))  # naive exp overflows
    True
    """
    return 2.0**9 if _dtype(dtype) == np.float64 else 2.0**6


@st.composite
def _output_layers(
    draw: st.DrawFn, dtype: DTypeLike, weight_shape: Shape, bias_shape: Shape
) -> tuple[NDArray[Any], NDArray[Any]]:
    """(w, b) of a model's output layer: entries in [-2, 2]; or, in two thirds of the draws
    (hypothesis's examples lean to the first kind, and shrink to it), saturating ones: one bias
    entry set to +-2, then w and b multiplied by ``saturating_scale(dtype)``, so that the logits
    reach beyond exp's overflow wherever the rest of the layer does not cancel that entry."""
    saturating = draw(st.sampled_from((False, True, True)))
    w = draw(bounded_arrays(dtype, weight_shape, bound=2.0))
    b = draw(bounded_arrays(dtype, bias_shape, bound=2.0))
    if not saturating:
        return w, b
    b.flat[draw(st.integers(0, b.size - 1))] = draw(st.sampled_from([2.0, -2.0]))
    scale = b.dtype.type(saturating_scale(dtype))
    return (w * scale).astype(w.dtype), (b * scale).astype(b.dtype)


@st.composite
def extreme_logits(
    draw: st.DrawFn,
    dtype: DTypeLike = np.float64,
    shape: Shape | st.SearchStrategy[Shape] | None = None,
) -> NDArray[Any]:
    """Logits in [-B, B], B = ``extreme_bound(dtype)``, with at least one element at +-B, so
    that a naive exp overflows (B) or every exp underflows (-B)."""
    bound = extreme_bound(dtype)
    z = draw(bounded_arrays(dtype, _shapes(shape, BATCH_SHAPES), bound=bound))
    where = draw(st.integers(0, z.size - 1))
    z.flat[where] = draw(st.sampled_from([bound, -bound]))
    return z


def probabilities(
    dtype: DTypeLike = np.float64,
    shape: Shape | st.SearchStrategy[Shape] | None = None,
) -> st.SearchStrategy[NDArray[Any]]:
    """Arrays with elements in [0, 1], exact 0 and 1 included (not normalised)."""
    return _arrays(dtype, _shapes(shape, BATCH_SHAPES), elements=_floats(dtype, 0.0, 1.0))


@st.composite
def labels(
    draw: st.DrawFn,
    dtype: DTypeLike = np.float64,
    shape: tuple[int, int] = (3, 4),
    kinds: tuple[LabelKind, ...] = LABEL_KINDS,
) -> NDArray[Any]:
    """Label matrices (m, k) of one of ``kinds``.

    "one_hot": one 1 per row. "soft": non-negative rows summing to 1 (up to rounding in
    float32). "unnormalized": non-negative rows in [0, 2] of which at least one does not sum
    to 1 (within 0.1), for the general softmax cross-entropy gradient (P rowsum(Y) - Y)/m.
    """
    dt = _dtype(dtype)
    m, k = shape
    kind = draw(st.sampled_from(kinds))
    if kind == "one_hot":
        classes = draw(st.lists(st.integers(0, k - 1), min_size=m, max_size=m))
        return np.eye(k, dtype=dt)[classes]
    if kind == "soft":
        weights = draw(_arrays(dt, (m, k), elements=_floats(dt, 0.0, 1.0)))
        weights[weights.sum(axis=1) == 0, 0] = 1
        soft: NDArray[Any] = (weights / weights.sum(axis=1, keepdims=True)).astype(dt)
        return soft
    y = draw(_arrays(dt, (m, k), elements=_floats(dt, 0.0, 2.0)))
    if np.all(np.abs(y.sum(axis=1) - 1) <= 0.1):
        y[0] *= 2  # row sum in [0.9, 1.1] becomes [1.8, 2.2]
    return y


def binary_labels(
    dtype: DTypeLike = np.float64,
    shape: Shape | st.SearchStrategy[Shape] | None = None,
) -> st.SearchStrategy[NDArray[Any]]:
    """Binary-cross-entropy targets: hard {0, 1} or soft in [0, 1]."""
    shapes = _shapes(shape, BINARY_SHAPES)
    hard = _arrays(dtype, shapes, elements=st.sampled_from([0.0, 1.0]))
    soft = _arrays(dtype, shapes, elements=_floats(dtype, 0.0, 1.0))
    return st.one_of(hard, soft)


@st.composite
def logit_problems(
    draw: st.DrawFn,
    dtype: DTypeLike = np.float64,
    *,
    kinds: tuple[LabelKind, ...] = LABEL_KINDS,
    extreme: bool = False,
) -> tuple[NDArray[Any], NDArray[Any]]:
    """(z, y) for the softmax cross-entropy: logits (m, k) and labels (m, k) of ``kinds``.

    ``extreme``: logits from ``extreme_logits`` instead of |z| <= 10.
    """
    m, k = draw(st.sampled_from(BATCH_SHAPES))
    z = draw(extreme_logits(dtype, (m, k)) if extreme else bounded_arrays(dtype, (m, k)))
    return z, draw(labels(dtype, (m, k), kinds))


@st.composite
def probability_problems(
    draw: st.DrawFn,
    dtype: DTypeLike = np.float64,
    *,
    kinds: tuple[LabelKind, ...] = LABEL_KINDS,
) -> tuple[NDArray[Any], NDArray[Any]]:
    """(p, y) for the cross-entropy on probabilities, both (m, k).

    p is in [1/64, 1] where y > 0 (so the loss and y/p stay bounded) and in [0, 1] where
    y == 0, exact zeros included: the convention 0 log 0 = 0 is exercised.
    """
    m, k = draw(st.sampled_from(BATCH_SHAPES))
    y = draw(labels(dtype, (m, k), kinds))
    p = draw(probabilities(dtype, (m, k)))
    p = np.where(y > 0, np.maximum(p, _PROBABILITY_FLOOR), p).astype(p.dtype)
    return p, y


@st.composite
def binary_probability_problems(
    draw: st.DrawFn, dtype: DTypeLike = np.float64
) -> tuple[NDArray[Any], NDArray[Any]]:
    """(p, y) for the binary cross-entropy on probabilities: (m,) or (m, k) each.

    p is kept in [1/64, 1 - 1/64] where both log p and log(1 - p) carry weight; it may be
    exactly 0 where y == 0 and exactly 1 where y == 1.
    """
    shape = draw(st.sampled_from(BINARY_SHAPES))
    y = draw(binary_labels(dtype, shape))
    p = draw(probabilities(dtype, shape))
    p = np.where(y > 0, np.maximum(p, _PROBABILITY_FLOOR), p)
    p = np.where(y < 1, np.minimum(p, 1 - _PROBABILITY_FLOOR), p)
    return p.astype(y.dtype), y


@st.composite
def binary_logit_problems(
    draw: st.DrawFn, dtype: DTypeLike = np.float64, *, extreme: bool = False
) -> tuple[NDArray[Any], NDArray[Any]]:
    """(z, y) for the sigmoid binary cross-entropy: logits and targets, (m,) or (m, k) each.

    ``extreme``: logits from ``extreme_logits`` (at least one at +-B).
    """
    shape = draw(st.sampled_from(BINARY_SHAPES))
    z = draw(extreme_logits(dtype, shape) if extreme else bounded_arrays(dtype, shape))
    return z, draw(binary_labels(dtype, shape))


@st.composite
def softmax_vjp_problems(
    draw: st.DrawFn, dtype: DTypeLike = np.float64, *, extreme: bool = False
) -> tuple[NDArray[Any], NDArray[Any]]:
    """(z, g): logits (m, k) and a random cotangent g (m, k) in [-10, 10] (not all ones)."""
    shape = draw(st.sampled_from(BATCH_SHAPES))
    z = draw(extreme_logits(dtype, shape) if extreme else bounded_arrays(dtype, shape))
    return z, draw(bounded_arrays(dtype, shape))


@st.composite
def linear_problems(
    draw: st.DrawFn, dtype: DTypeLike = np.float64
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """(x, w, b, dz): x (m, n), w (n, k), b (k,) in [-3, 3]; a random cotangent dz (m, k)."""
    m, n, k = draw(st.sampled_from(LINEAR_DIMS))
    x = draw(bounded_arrays(dtype, (m, n), bound=3.0))
    w = draw(bounded_arrays(dtype, (n, k), bound=3.0))
    b = draw(bounded_arrays(dtype, (k,), bound=3.0))
    dz = draw(bounded_arrays(dtype, (m, k), bound=3.0))
    return x, w, b, dz


@st.composite
def mlp_problems(
    draw: st.DrawFn, dtype: DTypeLike = np.float64
) -> tuple[MLPParams, NDArray[Any], NDArray[Any]]:
    """(params, x, y) for the network: ``MLPParams`` W1 (n, h), b1 (h,), W2 (h, k), b2 (k,),
    inputs x (m, n) in [-3, 3] and one-hot or soft labels y (m, k); (m, n, h, k) from MLP_DIMS.

    W1 and b1 are in [-2, 2]. W2 and b2 are in [-2, 2], or saturating (see ``_output_layers``):
    there the logits Z2 = relu(x W1 + b1) W2 + b2 reach beyond exp's overflow (a naive softmax
    gives inf / inf) or a probability underflows to 0, in about half of the examples
    (tests/test_strategies.py measures the share), while the hidden layer keeps its ordinary size
    (|Z1| <= 32). The reference loss and gradients stay finite.

    Pre-activations x W1 + b1 may be exactly 0 (zeros are likely); tests that compare across
    the ReLU kink decide how to treat them.
    """
    m, n, h, k = draw(st.sampled_from(MLP_DIMS))
    W1 = draw(bounded_arrays(dtype, (n, h), bound=2.0))
    b1 = draw(bounded_arrays(dtype, (h,), bound=2.0))
    params = MLPParams(W1, b1, *draw(_output_layers(dtype, (h, k), (k,))))
    x = draw(bounded_arrays(dtype, (m, n), bound=3.0))
    y = draw(labels(dtype, (m, k), ("one_hot", "soft")))
    return params, x, y


@st.composite
def logreg_problems(
    draw: st.DrawFn, dtype: DTypeLike = np.float64
) -> tuple[LogRegParams, NDArray[Any], NDArray[Any]]:
    """(params, x, y) for logistic regression: ``LogRegParams`` w (n,), b () in [-2, 2] or
    saturating (see ``_output_layers``), inputs x (m, n) in [-3, 3], targets y (m,) hard
    {0, 1} or soft in [0, 1].

    Saturating layers take the logits x w + b beyond exp's overflow, of either sign (a naive
    sigmoid's exp(-z) overflows, p underflows to 0 or 1 - p rounds to 0), in about two thirds of
    the examples (tests/test_strategies.py measures the share). The reference loss and
    gradients stay finite.
    """
    m, n = draw(st.sampled_from(LOGREG_DIMS))
    w, b = draw(_output_layers(dtype, (n,), ()))
    params = LogRegParams(w=w, b=b)
    x = draw(bounded_arrays(dtype, (m, n), bound=3.0))
    y = draw(binary_labels(dtype, (m,)))
    return params, x, y


def _directions(dtype: DTypeLike, params: Any) -> st.SearchStrategy[Any]:
    """A direction in parameter space: a params tuple of the same type, shapes and dtype, each
    entry in [-2, 2]."""
    fields = [bounded_arrays(dtype, np.shape(leaf), bound=2.0) for leaf in params]
    return st.tuples(*fields).map(lambda leaves: type(params)(*leaves))


def mlp_hvp_problems(
    dtype: DTypeLike = np.float64,
) -> st.SearchStrategy[tuple[MLPParams, NDArray[Any], NDArray[Any], MLPParams]]:
    """(params, x, y, v) for the network's Hessian-vector products: ``mlp_problems`` (ordinary
    and saturating output layers) and a direction v, an ``MLPParams`` with entries in [-2, 2]."""
    return mlp_problems(dtype).flatmap(lambda p: _directions(dtype, p[0]).map(lambda v: (*p, v)))


def logreg_hvp_problems(
    dtype: DTypeLike = np.float64,
) -> st.SearchStrategy[tuple[LogRegParams, NDArray[Any], NDArray[Any], LogRegParams]]:
    """(params, x, y, v) for logistic regression's Hessian-vector products: ``logreg_problems``
    and a direction v, a ``LogRegParams`` with entries in [-2, 2]."""
    return logreg_problems(dtype).flatmap(lambda p: _directions(dtype, p[0]).map(lambda v: (*p, v)))
