"""verification.reference: the ground truth itself: 64-bit, conventions (relu'(0) = 0,
0 log 0 = 0 with derivative 0), hand-checked values, shapes, one compilation per shape."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import pytest

import manual_bp
from verification import reference as ref


def test_x64_and_highest_matmul_precision_are_on() -> None:
    assert jax.config.values["jax_enable_x64"]
    assert jax.config.values["jax_default_matmul_precision"] == "highest"
    assert ref.softmax(np.zeros((1, 3))).dtype == np.float64


def test_relu_grad_is_zero_at_kink_like_jax_nn_relu() -> None:
    np.testing.assert_array_equal(ref.relu_grad(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])


def test_sigmoid_grad_hand_checked() -> None:
    assert float(ref.sigmoid_grad(np.array(0.0))) == 0.25


def test_cross_entropy_hand_checked() -> None:
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert float(ref.cross_entropy(p, y)) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    np.testing.assert_allclose(ref.cross_entropy_grad(p, y), [[-1.0, 0.0], [0.0, -2 / 3]])


def test_cross_entropy_derivative_is_zero_not_nan_where_label_and_probability_are_zero() -> None:
    p = np.array([[0.0, 1.0]])
    y = np.array([[0.0, 1.0]])
    assert float(ref.cross_entropy(p, y)) == 0.0
    np.testing.assert_array_equal(ref.cross_entropy_grad(p, y), [[0.0, -1.0]])


def test_binary_cross_entropy_at_saturated_probabilities_is_zero_with_finite_gradient() -> None:
    p = np.array([0.0, 1.0])
    y = np.array([0.0, 1.0])
    assert float(ref.binary_cross_entropy(p, y)) == 0.0
    np.testing.assert_array_equal(ref.binary_cross_entropy_grad(p, y), [0.5, -0.5])


def test_sigmoid_binary_cross_entropy_is_finite_at_extreme_logits() -> None:
    z = np.array([1000.0, -1000.0])
    y = np.array([0.0, 1.0])
    assert float(ref.sigmoid_binary_cross_entropy(z, y)) == pytest.approx(1000.0)
    np.testing.assert_array_equal(ref.sigmoid_binary_cross_entropy_grad(z, y), [0.5, -0.5])


def test_softmax_cross_entropy_gradient_is_general_form_for_unnormalized_labels() -> None:
    z = np.zeros((1, 2))
    y = np.array([[2.0, 0.0]])  # row sum 2: gradient (P * 2 - Y) / m = [-1, 1]
    np.testing.assert_allclose(ref.softmax_cross_entropy_grad(z, y), [[-1.0, 1.0]])


def test_softmax_jacobian_batches_rows_and_is_symmetric_with_zero_column_sums() -> None:
    z = np.arange(24.0).reshape(2, 3, 4) / 7
    jac = np.asarray(ref.softmax_jacobian(z))
    assert jac.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(jac, np.swapaxes(jac, -1, -2), atol=1e-15)
    np.testing.assert_allclose(jac.sum(axis=-2), 0.0, atol=1e-15)


def test_softmax_vjp_equals_cotangent_times_jacobian() -> None:
    rng = np.random.default_rng(0)
    z, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    expected = np.einsum("mi,mij->mj", g, ref.softmax_jacobian(z))
    np.testing.assert_allclose(ref.softmax_vjp(z, g), expected, rtol=1e-13, atol=1e-15)


def test_linear_backward_shapes_and_bias_gradient_is_column_sum() -> None:
    rng = np.random.default_rng(1)
    dz, x, w = rng.normal(size=(5, 2)), rng.normal(size=(5, 3)), rng.normal(size=(3, 2))
    dx, dw, db = ref.linear_backward(dz, x, w)
    assert (dx.shape, dw.shape, db.shape) == ((5, 3), (3, 2), (2,))
    np.testing.assert_allclose(db, dz.sum(axis=0), rtol=1e-14)


def test_mlp_loss_and_grads_keep_the_params_type_and_value() -> None:
    params = manual_bp.MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    x, y = np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]])
    loss, grads = ref.mlp_loss_and_grads(params, x, y)
    assert isinstance(grads, manual_bp.MLPParams)
    assert float(loss) == pytest.approx(float(ref.mlp_loss(params, x, y)))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)))
    np.testing.assert_allclose(ref.mlp_forward(params, x), np.exp([[-loss, -1 - loss]]))


def test_logreg_loss_and_grads_keep_the_params_type() -> None:
    params = manual_bp.LogRegParams(np.array([0.0]), np.array(0.0))
    loss, grads = ref.logreg_loss_and_grads(params, np.array([[2.0]]), np.array([1.0]))
    assert isinstance(grads, manual_bp.LogRegParams)
    assert float(loss) == pytest.approx(math.log(2))
    np.testing.assert_allclose(grads.w, [-1.0])
    np.testing.assert_allclose(grads.b, -0.5)


def test_a_shape_compiles_once() -> None:
    f: Any = ref.softmax_cross_entropy_grad.fast  # a small problem: the fast-compiled jit
    ref.softmax_cross_entropy_grad(np.zeros((7, 9)), np.zeros((7, 9)))
    before = f._cache_size()
    ref.softmax_cross_entropy_grad(np.ones((7, 9)), np.ones((7, 9)))
    assert f._cache_size() == before
