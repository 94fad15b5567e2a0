"""verification.strategies: shapes consistent and from the fixed sets, values bounded, labels of
the promised kinds, extremes really extreme, dtypes as asked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import manual_bp
from verification import reference, strategies as vs
from verification.mainjob.checks import check_settings, to_float64

# These checks only generate (no JAX): a strategy's contract shows within a few dozen draws,
# so the ci profile's example count is capped here to keep the suite fast.
FEW = settings(max_examples=min(50, settings().max_examples))


@pytest.mark.parametrize(
    "shapes",
    [vs.ELEMENTWISE_SHAPES, vs.BATCH_SHAPES, vs.BINARY_SHAPES, vs.LINEAR_DIMS, vs.LOGREG_DIMS],
)
def test_shape_sets_hold_the_edge_cases(shapes: tuple[tuple[int, ...], ...]) -> None:
    two_d = [s for s in shapes if len(s) >= 2]
    assert any(s[0] == 1 for s in shapes)  # one sample
    assert any(1 in s[1:] for s in shapes) or any(s == (1,) for s in shapes)  # one column
    if two_d:
        assert any(s[0] == s[1] for s in two_d)  # a square matrix


def test_mlp_dims_hold_one_sample_one_class_and_a_square_network() -> None:
    assert any(m == 1 for m, *_ in vs.MLP_DIMS)
    assert any(k == 1 for *_, k in vs.MLP_DIMS)
    assert any(len(set(dims)) == 1 and dims[0] > 1 for dims in vs.MLP_DIMS)


@FEW
@given(dtype=vs.float_dtypes(), data=st.data())
def test_bounded_arrays_are_bounded_of_dtype_and_shape(dtype: Any, data: st.DataObject) -> None:
    z = data.draw(vs.bounded_arrays(dtype, bound=3.0, nonzero=True))
    assert z.dtype == dtype
    assert z.shape in vs.ELEMENTWISE_SHAPES
    assert np.all(np.abs(z) <= 3.0)
    assert np.all(z != 0)


@FEW
@given(dtype=vs.float_dtypes(), data=st.data())
def test_extreme_logits_reach_the_overflow_bound(dtype: Any, data: st.DataObject) -> None:
    z = data.draw(vs.extreme_logits(dtype))
    bound = vs.extreme_bound(dtype)
    assert z.dtype == dtype
    assert np.max(np.abs(z)) == bound
    assert bound > np.log(np.finfo(dtype).max)  # exp(bound) overflows in this dtype


@FEW
@given(dtype=vs.float_dtypes(), kind=st.sampled_from(vs.LABEL_KINDS), data=st.data())
def test_labels_of_each_kind(dtype: Any, kind: vs.LabelKind, data: st.DataObject) -> None:
    y = data.draw(vs.labels(dtype, (4, 3), (kind,)))
    assert y.shape == (4, 3)
    assert y.dtype == dtype
    assert np.all(y >= 0)
    sums = y.sum(axis=1)
    if kind == "one_hot":
        assert np.all(np.sort(y, axis=1) == [0, 0, 1])
    elif kind == "soft":
        np.testing.assert_allclose(sums, 1, rtol=4 * np.finfo(dtype).eps)
    else:
        assert np.any(np.abs(sums - 1) > 0.1)


@FEW
@given(dtype=vs.float_dtypes(), data=st.data())
def test_probability_problems_keep_log_bounded_where_label_is_positive(
    dtype: Any, data: st.DataObject
) -> None:
    p, y = data.draw(vs.probability_problems(dtype))
    assert p.shape == y.shape
    assert p.shape in vs.BATCH_SHAPES
    assert p.dtype == y.dtype == dtype
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(p[y > 0] >= 1 / 64)


@FEW
@given(dtype=vs.float_dtypes(), data=st.data())
def test_binary_probability_problems_keep_both_logs_bounded_where_weighted(
    dtype: Any, data: st.DataObject
) -> None:
    p, y = data.draw(vs.binary_probability_problems(dtype))
    assert p.shape == y.shape
    assert p.shape in vs.BINARY_SHAPES
    assert p.dtype == y.dtype == dtype
    assert np.all((y >= 0) & (y <= 1))
    assert np.all(p[y > 0] >= 1 / 64)
    assert np.all(p[y < 1] <= 1 - 1 / 64)


@FEW
@given(dtype=vs.float_dtypes(), data=st.data())
def test_linear_problems_have_consistent_shapes(dtype: Any, data: st.DataObject) -> None:
    x, w, b, dz = data.draw(vs.linear_problems(dtype))
    m, n = x.shape
    k = w.shape[1]
    assert (m, n, k) in vs.LINEAR_DIMS
    assert w.shape == (n, k)
    assert b.shape == (k,)
    assert dz.shape == (m, k)
    assert {a.dtype for a in (x, w, b, dz)} == {np.dtype(dtype)}


@FEW
@given(dtype=vs.float_dtypes(), data=st.data())
def test_mlp_problems_are_valid_network_inputs(dtype: Any, data: st.DataObject) -> None:
    params, x, y = data.draw(vs.mlp_problems(dtype))
    assert isinstance(params, manual_bp.MLPParams)
    (n, h), (k,) = params.W1.shape, params.b2.shape
    assert (x.shape[0], n, h, k) in vs.MLP_DIMS
    assert params.b1.shape == (h,)
    assert params.W2.shape == (h, k)
    assert y.shape == (x.shape[0], k)
    assert {a.dtype for a in (*params, x, y)} == {np.dtype(dtype)}
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=4 * np.finfo(dtype).eps)
    assert np.all(np.abs(x) <= 3)
    assert np.all(np.abs(params.W1) <= 2)
    assert np.all(np.abs(params.b1) <= 2)
    _assert_output_layer(params.W2, params.b2, dtype)


@FEW
@given(dtype=vs.float_dtypes(), data=st.data())
def test_logreg_problems_are_valid_inputs(dtype: Any, data: st.DataObject) -> None:
    params, x, y = data.draw(vs.logreg_problems(dtype))
    assert isinstance(params, manual_bp.LogRegParams)
    assert x.shape in vs.LOGREG_DIMS
    assert params.w.shape == (x.shape[1],)
    assert params.b.shape == ()
    assert y.shape == (x.shape[0],)
    assert np.all((y >= 0) & (y <= 1))
    assert np.all(np.abs(x) <= 3)
    assert {a.dtype for a in (*params, x, y)} == {np.dtype(dtype)}
    _assert_output_layer(params.w, params.b, dtype)


def _assert_output_layer(w: Any, b: Any, dtype: Any) -> None:
    """Ordinary entries in [-2, 2], or saturating ones: in [-2 s, 2 s] with a bias entry at
    +-2 s (s = saturating_scale), all multiples of s (the scaling is exact)."""
    scale = vs.saturating_scale(dtype)
    if np.all(np.abs(w) <= 2) and np.all(np.abs(b) <= 2):
        return
    assert np.any(np.abs(b) == 2 * scale)
    assert np.all(np.abs(w) <= 2 * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_saturating_scale_takes_ordinary_logits_beyond_overflow(dtype: Any) -> None:
    scale = vs.saturating_scale(dtype)
    info = np.finfo(dtype)
    assert np.log2(scale) == int(np.log2(scale))  # a power of two: scaling is exact
    assert 1.39 * scale > np.log(info.max)  # exp of a scaled logit >= 1.39 overflows
    assert 1.63 * scale > -np.log(info.smallest_subnormal)  # a gap of 1.63 underflows p


def test_other_dtypes_are_rejected() -> None:
    with pytest.raises(ValueError, match="float32 or float64"):
        vs.extreme_bound(np.float16)


@given(vs.float_dtypes())
def test_float_dtypes_gives_both_precisions(dtype: np.dtype[Any]) -> None:
    assert dtype in (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------------------------
# The share of examples at overflow magnitudes
# ---------------------------------------------------------------------------------------------

OVERFLOW_FLOOR = 0.3
"""Least share of ``mlp_problems`` / ``logreg_problems`` examples at overflow magnitudes.

Two thirds of the output layers drawn saturate, but hypothesis's examples lean to the first
(simplest) choice and are correlated (it mutates earlier ones): drawing 200 examples with
generation pinned and ``hypothesis.seed`` 0 to 7, the share measured 0.38-0.58 (network) and
0.52-0.76 (logistic regression) over both dtypes, and 0.48-0.70 with the derandomized settings
used here. 0.3 is below every one of those. The strategies before saturating layers drew none
at all (|Z2| <= 384 < 709.8 in float64)."""

ORDINARY_FLOOR = 0.15
"""Least share of examples with ordinary logits (|z| <= 20), where the float32 checks are
tightest: 0.22-0.60 in the same draws (least for logistic regression)."""

EXAMPLES_MEASURED = 200


def _examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """The first ``count`` examples hypothesis generates from ``strategy`` with the settings
    of ``python -m verification`` (derandomized, generation only): the same on every run."""
    found: list[Any] = []

    @check_settings(count)
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


def _naive_exp_breaks(z: Any, dtype: Any) -> bool:
    """A textbook softmax or sigmoid of the logits ``z`` (rows of the last axis) fails in
    ``dtype``: exp(|z|) overflows (|z| > log(max)), or a probability underflows to 0 (a logit
    more than -log(smallest subnormal) below its row's largest)."""
    info = np.finfo(dtype)
    z = np.atleast_2d(np.asarray(z, np.float64))
    gap = z.max(axis=-1, keepdims=True) - z
    return bool(np.abs(z).max() > np.log(info.max) or gap.max() > -np.log(info.smallest_subnormal))


def _logits(params: manual_bp.MLPParams, x: Any) -> Any:
    """Z2 = relu(x W1 + b1) W2 + b2, in float64."""
    return np.maximum(x @ params.W1 + params.b1, 0) @ params.W2 + params.b2


def _finite(tree: Any) -> bool:
    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in tree)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_problems_reach_overflow_in_a_fair_share_with_finite_reference(dtype: Any) -> None:
    examples = _examples(vs.mlp_problems(dtype), EXAMPLES_MEASURED)
    z2 = [_logits(*to_float64((p, x))) for p, x, _ in examples]
    share = np.mean([_naive_exp_breaks(z, dtype) for z in z2])
    print(f"mlp_problems({np.dtype(dtype)}): {share:.0%} of {len(examples)} at overflow")
    assert share >= OVERFLOW_FLOOR
    ordinary = np.mean([np.abs(z).max() <= 20 for z in z2])
    print(f"  and {ordinary:.0%} with ordinary logits (|Z2| <= 20)")
    assert ordinary >= ORDINARY_FLOOR
    for problem in examples:  # valid problems: the reference loss and gradients are finite
        loss, grads = reference.mlp_loss_and_grads(*to_float64(problem))
        assert _finite((loss, *grads))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logreg_problems_reach_overflow_in_a_fair_share_with_finite_reference(dtype: Any) -> None:
    examples = _examples(vs.logreg_problems(dtype), EXAMPLES_MEASURED)
    z = [to_float64(x) @ to_float64(p.w) + to_float64(p.b) for p, x, _ in examples]
    share = np.mean([_naive_exp_breaks(zi[:, None], dtype) for zi in z])
    print(f"logreg_problems({np.dtype(dtype)}): {share:.0%} of {len(examples)} at overflow")
    assert share >= OVERFLOW_FLOOR
    ordinary = np.mean([np.abs(zi).max() <= 20 for zi in z])
    print(f"  and {ordinary:.0%} with ordinary logits (|z| <= 20)")
    assert ordinary >= ORDINARY_FLOOR
    for problem in examples:
        loss, grads = reference.logreg_loss_and_grads(*to_float64(problem))
        assert _finite((loss, *grads))
