"""verification.strategies: shapes consistent and from the fixed sets, values bounded, labels of
the promised kinds, extremes really extreme, dtypes as asked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import manual_bp
from verification import strategies as vs

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
    assert {a.dtype for a in (*params, x, y)} == {np.dtype(dtype)}


def test_other_dtypes_are_rejected() -> None:
    with pytest.raises(ValueError, match="float32 or float64"):
        vs.extreme_bound(np.float16)


@given(vs.float_dtypes())
def test_float_dtypes_gives_both_precisions(dtype: np.dtype[Any]) -> None:
    assert dtype in (np.dtype(np.float32), np.dtype(np.float64))
