"""Losses against JAX in float64 and float32: cross-entropy on probabilities and from logits,
binary cross-entropy on probabilities and from logits, their gradients against ``jax.grad``,
the document's own derivation (dJ/dP through the softmax Jacobian), and extreme logits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

import manual_bp
from verification import reference as ref, strategies as vs
from verification.compare import assert_trees_close, tolerance
from verification.mainjob.checks import assert_check

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_cross_entropy_and_grad_match_jax_and_jax_grad(dtype: Any, data: st.DataObject) -> None:
    problem = data.draw(vs.probability_problems(dtype))
    assert_check("cross_entropy", problem)
    assert_check("cross_entropy_grad", problem)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_cross_entropy_grad_is_zero_where_label_and_probability_are_zero(
    dtype: Any, data: st.DataObject
) -> None:
    """0 log 0 = 0 as a function of p: its derivative is 0, not NaN, even at p == 0."""
    p, y = data.draw(vs.probability_problems(dtype, kinds=("one_hot",)))
    p = np.where(y == 0, 0, p).astype(p.dtype)
    grad = manual_bp.cross_entropy_grad(p, y)
    assert np.all(grad[y == 0] == 0)
    assert np.all(np.isfinite(manual_bp.cross_entropy(p, y)))
    assert_check("cross_entropy_grad", (p, y))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_cross_entropy_and_grad_match_jax_for_every_label_kind(
    dtype: Any, data: st.DataObject
) -> None:
    """One-hot, soft, and rows that do not sum to 1: the general (P rowsum(Y) - Y)/m."""
    problem = data.draw(vs.logit_problems(dtype))
    assert_check("softmax_cross_entropy", problem)
    assert_check("softmax_cross_entropy_grad", problem)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_document_derivation_dj_dp_through_softmax_jacobian_is_p_minus_y_over_m(
    dtype: Any, data: st.DataObject
) -> None:
    """The source document's derivation: dJ/dP (cross_entropy_grad) chained through the
    softmax Jacobian equals JAX's dJ/dZ, and the manual softmax_cross_entropy_grad equals
    (P - Y)/m with P from jax.nn.softmax, for labels whose rows sum to 1."""
    z, y = data.draw(vs.logit_problems(dtype, kinds=("one_hot", "soft")))
    assert_check("chain_rule", (z, y))
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    p_minus_y = (np.asarray(ref.softmax(z64)) - y64) / z.shape[0]
    rtol, atol = tolerance(dtype, scale=1 / z.shape[0], terms=z.shape[1])
    assert_trees_close(manual_bp.softmax_cross_entropy_grad(z, y), p_minus_y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_binary_cross_entropy_and_grad_match_jax_and_jax_grad(
    dtype: Any, data: st.DataObject
) -> None:
    problem = data.draw(vs.binary_probability_problems(dtype))
    assert_check("binary_cross_entropy", problem)
    assert_check("binary_cross_entropy_grad", problem)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_at_probabilities_zero_and_one_matches_jax(dtype: Any) -> None:
    """p exactly 0 where y == 0 and exactly 1 where y == 1: loss 0, finite gradient."""
    p = np.array([[0.0, 1.0], [1.0, 0.0], [0.25, 0.5]], dtype=dtype)
    y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=dtype)
    assert manual_bp.binary_cross_entropy(p[:2], y[:2]) == 0
    assert_check("binary_cross_entropy", (p, y))
    assert_check("binary_cross_entropy_grad", (p, y))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_sigmoid_binary_cross_entropy_and_grad_match_jax_and_jax_grad(
    dtype: Any, data: st.DataObject
) -> None:
    problem = data.draw(vs.binary_logit_problems(dtype))
    assert_check("sigmoid_binary_cross_entropy", problem)
    assert_check("sigmoid_binary_cross_entropy_grad", problem)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_losses_from_extreme_logits_are_finite_and_match_jax(
    dtype: Any, data: st.DataObject
) -> None:
    """Logits up to 1e3 (float64) or 100 (float32), where exp overflows: log-sum-exp and
    log-sigmoid keep the losses and gradients finite and equal to JAX's."""
    z, y = data.draw(vs.logit_problems(dtype, extreme=True))
    zb, yb = data.draw(vs.binary_logit_problems(dtype, extreme=True))
    for name, inputs in (
        ("softmax_cross_entropy", (z, y)),
        ("softmax_cross_entropy_grad", (z, y)),
        ("sigmoid_binary_cross_entropy", (zb, yb)),
        ("sigmoid_binary_cross_entropy_grad", (zb, yb)),
    ):
        assert np.all(np.isfinite(getattr(manual_bp, name)(*inputs))), name
        assert_check(name, inputs)
