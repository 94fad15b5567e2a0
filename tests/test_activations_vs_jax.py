"""Activations against JAX: relu, sigmoid, softmax, their derivatives, in float64 and float32.

Each property draws problems from ``verification.strategies`` and judges the manual result
against the float64 JAX reference (``jax.grad`` / ``jax.jacobian`` / ``jax.vjp`` of ``jax.nn``)
with the tolerance of ``verification.compare.tolerance`` (see ``verification.mainjob.checks.CHECKS``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

import manual_bp
from verification import reference as ref, strategies as vs
from verification.mainjob.checks import assert_check

DTYPES = [np.float64, np.float32]
ANY_SHAPE = st.sampled_from(vs.ELEMENTWISE_SHAPES)
ROW_SHAPE = st.sampled_from(vs.BATCH_SHAPES)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_relu_matches_jax_nn_relu(dtype: Any, data: st.DataObject) -> None:
    z = data.draw(vs.bounded_arrays(dtype, ANY_SHAPE))
    assert_check("relu", (z,))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_relu_grad_matches_jax_grad_away_from_kink(dtype: Any, data: st.DataObject) -> None:
    z = data.draw(vs.bounded_arrays(dtype, ANY_SHAPE, nonzero=True))
    assert_check("relu_grad", (z,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_grad_at_kink_is_zero_like_jax_nn_relu(dtype: Any) -> None:
    z = np.array([-1.0, 0.0, -0.0, 2.0], dtype=dtype)
    expected = np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(ref.relu_grad(z.astype(np.float64))), expected)
    np.testing.assert_array_equal(manual_bp.relu_grad(z), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_sigmoid_and_sigmoid_grad_match_jax_nn_sigmoid_and_its_grad(
    dtype: Any, data: st.DataObject
) -> None:
    z = data.draw(vs.bounded_arrays(dtype, ANY_SHAPE))
    assert_check("sigmoid", (z,))
    assert_check("sigmoid_grad", (z,))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_and_softmax_jacobian_match_jax_nn_softmax_and_jax_jacobian(
    dtype: Any, data: st.DataObject
) -> None:
    z = data.draw(vs.bounded_arrays(dtype, ROW_SHAPE))
    assert_check("softmax", (z,))
    assert_check("softmax_jacobian", (z,))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_vjp_matches_jax_vjp_with_random_cotangent(dtype: Any, data: st.DataObject) -> None:
    z, g = data.draw(vs.softmax_vjp_problems(dtype))
    assert_check("softmax_vjp", (z, g))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_activations_at_extreme_logits_are_finite_and_match_jax(
    dtype: Any, data: st.DataObject
) -> None:
    """|z| up to 1e3 (float64) or 100 (float32): a naive exp overflows, the manual code must
    not, and still agree with JAX."""
    z, g = data.draw(vs.softmax_vjp_problems(dtype, extreme=True))
    for name in ("sigmoid", "sigmoid_grad", "softmax", "softmax_jacobian"):
        assert np.all(np.isfinite(getattr(manual_bp, name)(z))), name
        assert_check(name, (z,))
    assert np.all(np.isfinite(manual_bp.softmax_vjp(z, g)))
    assert_check("softmax_vjp", (z, g))
