"""Hand-checked values of every manual_bp function, plus the conventions no property test pins.

Each expected value is worked out by hand in a comment (the arithmetic, not a call to another
implementation), on inputs small enough to check on paper. The ground-truth comparisons
against JAX live in ``tests/test_*_vs_jax.py``; these tests fix the numbers, the stability at
extreme values, the ReLU kink, the dtype rule, purity and the import boundary.

Shorthand in the comments: s(z) is the sigmoid, L3 = log 3, so s(L3) = 1/(1 + 1/3) = 3/4 and
s(-L3) = 1/4; softmax([0, L3]) = [1, 3]/4.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import manual_bp as mb

L3 = np.log(3.0)


def _close(actual: Any, expected: Any, rtol: float = 1e-13) -> None:
    """Equal to the hand value up to a few float64 ulps; shapes must match exactly."""
    actual, expected = np.asarray(actual), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-15)


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


def test_relu_known_points() -> None:
    # max(z, 0) at -2, -0.5, 0, 0.5, 3
    _close(mb.relu(np.array([-2.0, -0.5, 0.0, 0.5, 3.0])), [0.0, 0.0, 0.0, 0.5, 3.0])


def test_relu_grad_is_indicator_of_positive_with_zero_at_kink() -> None:
    # 1[z > 0]: the kink z = 0 gives 0 (as jax.nn.relu), tiny positives give 1
    z = np.array([-2.0, -1e-300, 0.0, 1e-300, 3.0])
    _close(mb.relu_grad(z), [0.0, 0.0, 0.0, 1.0, 1.0])
    assert mb.relu_grad(np.array([-0.0]))[0] == 0.0


def test_sigmoid_known_points() -> None:
    # s(0) = 1/2; s(L3) = 3/4; s(-L3) = 1/4; s(+-1000) rounds to exactly 1 and 0
    _close(mb.sigmoid(np.array([0.0, L3, -L3])), [0.5, 0.75, 0.25])
    assert mb.sigmoid(np.array([1000.0]))[0] == 1.0
    assert mb.sigmoid(np.array([-1000.0]))[0] == 0.0


def test_sigmoid_keeps_tiny_values_for_very_negative_logits() -> None:
    # s(-700) = e^-700 / (1 + e^-700) = e^-700 to double precision (no 1 - s cancellation)
    _close(mb.sigmoid(np.array([-700.0])), [np.exp(-700.0)])


def test_sigmoid_grad_known_points() -> None:
    # s'(0) = 1/2 * 1/2 = 1/4; s'(+-L3) = 3/4 * 1/4 = 3/16 (symmetric in z)
    _close(mb.sigmoid_grad(np.array([0.0, L3, -L3])), [0.25, 3 / 16, 3 / 16])


def test_sigmoid_grad_tiny_not_zero_far_out() -> None:
    # s'(+-700) = e^-700/(1 + e^-700)^2 = e^-700 to double precision; 1 - s(700) would give 0
    _close(mb.sigmoid_grad(np.array([700.0, -700.0])), [np.exp(-700.0), np.exp(-700.0)])


def test_softmax_of_equal_logits_is_uniform() -> None:
    # every e^0 = 1, sum = k: each entry 1/k, for k = 1, 3, 4
    for k in (1, 3, 4):
        _close(mb.softmax(np.full((2, k), 7.0)), np.full((2, k), 1.0 / k))


def test_softmax_known_row_and_last_axis() -> None:
    # softmax([0, L3]) = [1, 3]/(1 + 3); the second row is the first reversed: the axis is the last
    z = np.array([[0.0, L3], [L3, 0.0]])
    _close(mb.softmax(z), [[0.25, 0.75], [0.75, 0.25]])


def test_softmax_batched_leading_axes() -> None:
    # (2, 1, 2) logits: each innermost row normalised on its own
    z = np.array([[[0.0, L3]], [[L3, L3]]])
    _close(mb.softmax(z), [[[0.25, 0.75]], [[0.5, 0.5]]])


def test_softmax_shift_invariance_at_huge_logits() -> None:
    # softmax(z + c) = softmax(z): [1e4, 1e4 + L3] gives [1, 3]/4 (naive e^1e4 overflows);
    # 1e4 + L3 is stored to 1e4 * 2^-53 ~ 1e-12, hence the looser tolerance
    _close(mb.softmax(np.array([[1e4, 1e4 + L3]])), [[0.25, 0.75]], rtol=1e-11)
    # [1e4, 0]: e^-1e4 underflows to exactly 0 after the shift: [1, 0]
    _close(mb.softmax(np.array([[1e4, 0.0], [-1e4, 0.0]])), [[1.0, 0.0], [0.0, 1.0]])


def test_softmax_jacobian_known_values() -> None:
    # p = [1/4, 3/4]: J = diag(p) - p p^T = [[1/4 - 1/16, -3/16], [-3/16, 3/4 - 9/16]]
    _close(mb.softmax_jacobian(np.array([[0.0, L3]])), [[[3 / 16, -3 / 16], [-3 / 16, 3 / 16]]])
    # k = 3, equal logits, p = 1/3: diagonal 1/3 - 1/9 = 2/9, off-diagonal -1/9
    expected = np.full((3, 3), -1 / 9) + np.eye(3) / 3
    _close(mb.softmax_jacobian(np.zeros(3)), expected)


def test_softmax_jacobian_shape_for_leading_axes() -> None:
    # (..., k) -> (..., k, k), one Jacobian per row; k = 1 gives [[p(1 - p)]] = [[0]]
    jac = mb.softmax_jacobian(np.zeros((2, 1, 3)))
    assert jac.shape == (2, 1, 3, 3)
    _close(mb.softmax_jacobian(np.array([[5.0]])), [[[0.0]]])


def test_softmax_vjp_known_values() -> None:
    # g = [1, 0] picks row 0 of J: [3/16, -3/16]
    z = np.array([[0.0, L3]])
    _close(mb.softmax_vjp(z, np.array([[1.0, 0.0]])), [[3 / 16, -3 / 16]])
    # g = [2, 5]: g.p = 2/4 + 15/4 = 17/4; p_j (g_j - 17/4) = [1/4 (-9/4), 3/4 (3/4)] = [-9/16, 9/16]
    _close(mb.softmax_vjp(z, np.array([[2.0, 5.0]])), [[-9 / 16, 9 / 16]])


def test_softmax_vjp_per_row() -> None:
    # two rows, each its own p: row 2 has p = [1/2, 1/2], g = [1, 3]: g.p = 2, p (g - 2) = [-1/2, 1/2]
    z = np.array([[0.0, L3], [1.0, 1.0]])
    g = np.array([[1.0, 0.0], [1.0, 3.0]])
    _close(mb.softmax_vjp(z, g), [[3 / 16, -3 / 16], [-0.5, 0.5]])
    # the same rows as a (2, 1, 2) batch: the reduction g.p is over the last axis only
    _close(mb.softmax_vjp(z[:, None, :], g[:, None, :]), [[[3 / 16, -3 / 16]], [[-0.5, 0.5]]])


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def test_cross_entropy_known_value() -> None:
    # -(1/2)[log(3/4) + log(1/2)] = (log(4/3) + log 2)/2
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    _close(mb.cross_entropy(p, y), (np.log(4 / 3) + np.log(2.0)) / 2)


def test_cross_entropy_soft_labels() -> None:
    # y = [1/2, 1/2], p = [1/4, 3/4]: -(1/2 log(1/4) + 1/2 log(3/4)) = (log 4 + log(4/3))/2
    _close(
        mb.cross_entropy(np.array([[0.25, 0.75]]), np.array([[0.5, 0.5]])),
        (np.log(4.0) + np.log(4 / 3)) / 2,
    )


def test_cross_entropy_zero_label_at_zero_probability_contributes_nothing() -> None:
    # 0 log 0 = 0 and 1 log 1 = 0: exactly 0, not NaN
    assert mb.cross_entropy(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])) == 0.0


def test_cross_entropy_is_inf_where_label_sits_on_zero_probability() -> None:
    # -1 * log 0 = +inf, the exact value; the finite row 2 (log 2) does not hide it
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert mb.cross_entropy(p, y) == np.inf


def test_cross_entropy_grad_known_value() -> None:
    # -y/(m p) with m = 3 rows, k = 2 classes: row 1 [0, -1/(3 * 3/4)] = [0, -4/9];
    # row 2 [-1/(3 * 1/2), 0] = [-2/3, 0]; row 3 [-1/(3 * 1), 0] = [-1/3, 0]
    p = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])
    y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    _close(mb.cross_entropy_grad(p, y), [[0.0, -4 / 9], [-2 / 3, 0.0], [-1 / 3, 0.0]])


def test_cross_entropy_grad_at_zero_probability() -> None:
    # y = 0 at p = 0: 0; y = 1 at p = 0: -1/0 = -inf
    g = mb.cross_entropy_grad(
        np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    )
    assert g[0, 0] == 0.0
    assert g[1, 0] == -np.inf
    _close(g[:, 1], [-0.5, 0.0])


def test_softmax_cross_entropy_known_value() -> None:
    # row 1: -log(3/4); row 2: z = [0, 0], y = [1, 0]: -log(1/2); mean of the two
    z = np.array([[0.0, L3], [0.0, 0.0]])
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    _close(mb.softmax_cross_entropy(z, y), (np.log(4 / 3) + np.log(2.0)) / 2)


def test_softmax_cross_entropy_finite_at_huge_logits() -> None:
    # z = [1e4, 0], y = [0, 1]: -log softmax_1 = -(0 - 1e4 - log(1 + e^-1e4)) = 1e4 exactly
    assert mb.softmax_cross_entropy(np.array([[1e4, 0.0]]), np.array([[0.0, 1.0]])) == 1e4
    # y on the winning class: -log(1) = 0 (no 0 * inf = NaN from the losing class)
    assert mb.softmax_cross_entropy(np.array([[1e4, -1e4]]), np.array([[1.0, 0.0]])) == 0.0


def test_softmax_cross_entropy_unnormalised_labels() -> None:
    # y = [2, 0] on p = [1/4, 3/4]: -2 log(1/4) = 2 log 4 (labels are weights, not renormalised)
    _close(mb.softmax_cross_entropy(np.array([[0.0, L3]]), np.array([[2.0, 0.0]])), 2 * np.log(4.0))


def test_softmax_cross_entropy_grad_known_value() -> None:
    # (P - Y)/m, m = 3 rows, k = 2: row 1 ([1/4, 3/4] - [0, 1])/3 = [1/12, -1/12];
    # row 2 ([1/2, 1/2] - [1, 0])/3 = [-1/6, 1/6]; row 3 ([3/4, 1/4] - [1, 0])/3 = [-1/12, 1/12]
    z = np.array([[0.0, L3], [0.0, 0.0], [L3, 0.0]])
    y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    expected = [[1 / 12, -1 / 12], [-1 / 6, 1 / 6], [-1 / 12, 1 / 12]]
    _close(mb.softmax_cross_entropy_grad(z, y), expected)


def test_log_softmax_shift_is_per_row() -> None:
    # rows at offsets 1e4 apart: each row is shifted by its own max (a shift by the global max
    # would underflow row 2 to log 0). Both rows are [0, L3] + c: -log(3/4) each, mean log(4/3).
    z = np.array([[1e4, 1e4 + L3], [0.0, L3]])
    y = np.array([[0.0, 1.0], [0.0, 1.0]])
    _close(mb.softmax_cross_entropy(z, y), np.log(4 / 3), rtol=1e-11)


def test_softmax_cross_entropy_grad_general_form_for_rows_not_summing_to_one() -> None:
    # (P * rowsum(Y) - Y)/m: y = [2, 0], rowsum 2: [2/4 - 2, 6/4 - 0] = [-3/2, 3/2]
    # (the shortcut P - Y would give [-7/4, 3/4]); y = [0, 0] gives exactly 0
    z = np.array([[0.0, L3], [0.0, L3]])
    y = np.array([[2.0, 0.0], [0.0, 0.0]])
    _close(mb.softmax_cross_entropy_grad(z, y), [[-0.75, 0.75], [0.0, 0.0]])


def test_softmax_cross_entropy_single_class_is_zero() -> None:
    # k = 1: softmax is [1], log 1 = 0, and dJ/dz = (1 * 1 - 1)/m = 0
    z, y = np.array([[3.0], [-2.0]]), np.ones((2, 1))
    assert mb.softmax_cross_entropy(z, y) == 0.0
    _close(mb.softmax_cross_entropy_grad(z, y), [[0.0], [0.0]])


def test_binary_cross_entropy_known_value() -> None:
    # -(1/2)[log(1 - 1/4) + log(3/4)] = log(4/3)
    _close(mb.binary_cross_entropy(np.array([0.25, 0.75]), np.array([0.0, 1.0])), np.log(4 / 3))


def test_binary_cross_entropy_sums_over_columns_and_means_over_rows() -> None:
    # (m, k) = (1, 2): -(log(3/4) + log(3/4))/1 = 2 log(4/3)
    p, y = np.array([[0.25, 0.75]]), np.array([[0.0, 1.0]])
    _close(mb.binary_cross_entropy(p, y), 2 * np.log(4 / 3))


def test_binary_cross_entropy_soft_target() -> None:
    # y = 1/2, p = 1/4: -(1/2 log(1/4) + 1/2 log(3/4)) = (log 4 + log(4/3))/2
    _close(
        mb.binary_cross_entropy(np.array([0.25]), np.array([0.5])),
        (np.log(4.0) + np.log(4 / 3)) / 2,
    )


def test_binary_cross_entropy_at_probabilities_zero_and_one() -> None:
    # matching labels: 1 log 1 + 0 log 0 = 0 exactly; a label on the wrong end: -log 0 = +inf
    p = np.array([0.0, 1.0])
    assert mb.binary_cross_entropy(p, np.array([0.0, 1.0])) == 0.0
    assert mb.binary_cross_entropy(np.array([0.0]), np.array([1.0])) == np.inf
    assert mb.binary_cross_entropy(np.array([1.0]), np.array([0.0])) == np.inf


def test_binary_cross_entropy_grad_known_value() -> None:
    # ((1 - y)/(1 - p) - y/p)/m, m = 3:
    # p = 1/4, y = 0: (4/3)/3; p = 1/4, y = 1: -4/3; p = 1/2, y = 1/2: (1 - 1)/3 = 0
    p, y = np.array([0.25, 0.25, 0.5]), np.array([0.0, 1.0, 0.5])
    _close(mb.binary_cross_entropy_grad(p, y), [4 / 9, -4 / 3, 0.0])


def test_binary_cross_entropy_grad_at_probabilities_zero_and_one() -> None:
    # m = 4. p = 0, y = 0: only (1 - y)/(1 - p) = 1 survives -> 1/4 (the 0/0 term is dropped);
    # p = 1, y = 1: -y/p = -1 -> -1/4; y = 1 at p = 0: -1/0 = -inf; y = 0 at p = 1: 1/0 = +inf
    p, y = np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0])
    g = mb.binary_cross_entropy_grad(p, y)
    assert g.tolist() == [0.25, -0.25, -np.inf, np.inf]


def test_sigmoid_binary_cross_entropy_known_value() -> None:
    # -log s(0) = log 2; -log s(L3) = log(4/3); -log(1 - s(L3)) = log 4; mean over m = 3
    z, y = np.array([0.0, L3, L3]), np.array([1.0, 1.0, 0.0])
    _close(mb.sigmoid_binary_cross_entropy(z, y), (np.log(2.0) + np.log(4 / 3) + np.log(4.0)) / 3)


def test_sigmoid_binary_cross_entropy_soft_target_and_columns() -> None:
    # (m, k) = (1, 2): y = 1/2 at z = L3: (log(4/3) + log 4)/2; y = 1 at z = 0: log 2; sum over k
    z, y = np.array([[L3, 0.0]]), np.array([[0.5, 1.0]])
    _close(mb.sigmoid_binary_cross_entropy(z, y), (np.log(4 / 3) + np.log(4.0)) / 2 + np.log(2.0))


def test_sigmoid_binary_cross_entropy_finite_at_huge_logits() -> None:
    # z = 1e4, y = 0: -log(1 - s(1e4)) = softplus(1e4) = 1e4; z = -1e4, y = 0: softplus(-1e4) = 0
    z, y = np.array([1e4, -1e4]), np.array([0.0, 0.0])
    assert mb.sigmoid_binary_cross_entropy(z, y) == 1e4 / 2
    assert mb.sigmoid_binary_cross_entropy(np.array([1e4]), np.array([1.0])) == 0.0


def test_sigmoid_binary_cross_entropy_grad_known_value() -> None:
    # (s(z) - y)/m, m = 2: (3/4 - 0)/2 = 3/8; (1/2 - 1)/2 = -1/4
    _close(
        mb.sigmoid_binary_cross_entropy_grad(np.array([L3, 0.0]), np.array([0.0, 1.0])),
        [0.375, -0.25],
    )


def test_sigmoid_binary_cross_entropy_grad_at_huge_logits() -> None:
    # s(1e4) = 1, s(-1e4) = 0: (1 - 0)/2, (0 - 1)/2
    g = mb.sigmoid_binary_cross_entropy_grad(np.array([[1e4], [-1e4]]), np.array([[0.0], [1.0]]))
    _close(g, [[0.5], [-0.5]])


# --------------------------------------------------------------------------------------------
# Linear layer
# --------------------------------------------------------------------------------------------

W_LIN = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])


def test_linear_known_value() -> None:
    # x W = [[1, 2, 3], [3, 4, 7]]; + b = [10, 20, 30] on every row
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    _close(
        mb.linear(x, W_LIN, np.array([10.0, 20.0, 30.0])), [[11.0, 22.0, 33.0], [13.0, 24.0, 37.0]]
    )


def test_linear_backward_known_value() -> None:
    # dz = [[1, 2, 3], [4, 5, 6]], x = [[1, 2], [3, 4]]
    # dx = dz W^T, W^T rows [1, 0], [0, 1], [1, 1]: [[1 + 3, 2 + 3], [4 + 6, 5 + 6]]
    # dW = x^T dz: [[1*1 + 3*4, 1*2 + 3*5, 1*3 + 3*6], [2*1 + 4*4, 2*2 + 4*5, 2*3 + 4*6]]
    # db = column sums of dz: [5, 7, 9]
    dz = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    dx, dw, db = mb.linear_backward(dz, x, W_LIN)
    _close(dx, [[4.0, 5.0], [10.0, 11.0]])
    _close(dw, [[13.0, 17.0, 21.0], [18.0, 24.0, 30.0]])
    _close(db, [5.0, 7.0, 9.0])


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _identity_net(b1: list[float] | None = None) -> mb.MLPParams:
    return mb.MLPParams(np.eye(2), np.array(b1 or [0.0, 0.0]), np.eye(2), np.zeros(2))


def test_mlp_identity_weights_two_samples() -> None:
    # W1 = W2 = I, zero biases. x1 = [1, -1]: z1 = [1, -1], a1 = [1, 0], z2 = [1, 0],
    # p1 = [s(1), s(-1)]; x2 = [-1, 2]: a1 = [0, 2], p2 = [s(-2), s(2)].
    # y1 = [1, 0], y2 = [0, 1]: loss = (-log s(1) - log s(2))/2 = (log(1 + e^-1) + log(1 + e^-2))/2
    # With u = s(-1), t = s(-2): dZ2 = [[-u, u], [t, -t]]/2, A1 = [[1, 0], [0, 2]],
    # dW2 = A1^T dZ2 = [[-u/2, u/2], [t, -t]], db2 = [(t - u)/2, (u - t)/2],
    # dZ1 = dZ2 W2^T * mask = [[-u/2, 0], [0, -t/2]],
    # dW1 = X^T dZ1 = [[-u/2, t/2], [u/2, -t]], db1 = [-u/2, -t/2]
    x = np.array([[1.0, -1.0], [-1.0, 2.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    u, t = 1 / (1 + np.e), 1 / (1 + np.exp(2.0))
    params = _identity_net()
    p, cache = mb.mlp_forward(params, x)
    _close(p, [[1 - u, u], [t, 1 - t]])
    _close(cache.a1, [[1.0, 0.0], [0.0, 2.0]])
    _close(cache.relu_mask, [[1.0, 0.0], [0.0, 1.0]])
    loss, grads = mb.mlp_loss_and_grads(params, x, y)
    _close(loss, (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(-2.0))) / 2)
    expected = mb.MLPParams(
        np.array([[-u / 2, t / 2], [u / 2, -t]]),
        np.array([-u / 2, -t / 2]),
        np.array([[-u / 2, u / 2], [t, -t]]),
        np.array([(t - u) / 2, (u - t) / 2]),
    )
    for got, want in zip(grads, expected, strict=True):
        _close(got, want)
    for got, want in zip(mb.mlp_backward(params, cache, y), expected, strict=True):
        _close(got, want)


def test_mlp_nonidentity_second_layer_and_biases() -> None:
    # W1 = I, b1 = [1, -1/2], W2 = [[1, 2], [3, 4]], b2 = [L3, 0]; x = [2, 1], y = [1, 0].
    # z1 = a1 = [3, 1/2]; z2 = a1 W2 + b2 = [3 + 3/2 + L3, 6 + 2] = [9/2 + L3, 8];
    # dZ2 = p - y; dW2 = a1^T dZ2; dZ1 = dZ2 W2^T (mask all ones); dW1 = x^T dZ1 = dZ1 as rows.
    W2 = np.array([[1.0, 2.0], [3.0, 4.0]])
    params = mb.MLPParams(np.eye(2), np.array([1.0, -0.5]), W2, np.array([L3, 0.0]))
    x, y = np.array([[2.0, 1.0]]), np.array([[1.0, 0.0]])
    # softmax([9/2 + L3, 8]) = [3 e^4.5, e^8]/(3 e^4.5 + e^8); r = 3/(3 + e^3.5): p = [r, 1 - r]
    r = 3 / (3 + np.exp(3.5))
    d = np.array([r - 1, 1 - r])  # dZ2
    p, cache = mb.mlp_forward(params, x)
    _close(cache.a1, [[3.0, 0.5]])
    _close(p, [[r, 1 - r]])
    loss, g = mb.mlp_loss_and_grads(params, x, y)
    _close(loss, -np.log(r))
    _close(g.b2, d)
    _close(g.W2, [3 * d, 0.5 * d])
    dz1 = np.array([d[0] * 1 + d[1] * 2, d[0] * 3 + d[1] * 4])  # dZ2 W2^T
    _close(g.b1, dz1)
    _close(g.W1, [2 * dz1, 1 * dz1])


def test_mlp_loss_and_gradient_are_linear_in_unnormalised_labels() -> None:
    # J and dZ2 = P * rowsum(Y) - Y are linear in Y: y = [2, 0] gives twice the loss and the
    # gradients of y = [1, 0] (identity net, x = [1, -1]: dZ2 = 2 [-u, u], u = s(-1)); the
    # shortcut P - Y would give [1 - u - 2, u] instead
    params, x = _identity_net(), np.array([[1.0, -1.0]])
    loss1, g1 = mb.mlp_loss_and_grads(params, x, np.array([[1.0, 0.0]]))
    loss2, g2 = mb.mlp_loss_and_grads(params, x, np.array([[2.0, 0.0]]))
    u = 1 / (1 + np.e)
    _close(g1.b2, [-u, u])
    _close(loss2, 2 * loss1)
    for a, b in zip(g2, g1, strict=True):
        _close(a, 2 * b)


def test_mlp_batch_gradient_is_the_mean_of_per_sample_gradients() -> None:
    # the batch reduction is the mean over m: m = 3 samples, k = 2 classes (m != k), soft and
    # unnormalised label rows; each per-sample result is a batch of one
    rng = np.random.default_rng(11)
    params = mb.MLPParams(
        rng.standard_normal((2, 4)),
        rng.standard_normal(4),
        rng.standard_normal((4, 2)),
        rng.standard_normal(2),
    )
    x = rng.standard_normal((3, 2))
    y = np.array([[1.0, 0.0], [0.3, 0.7], [2.0, 0.5]])
    loss, grads = mb.mlp_loss_and_grads(params, x, y)
    singles = [mb.mlp_loss_and_grads(params, x[i : i + 1], y[i : i + 1]) for i in range(3)]
    _close(loss, sum(s[0] for s in singles) / 3, rtol=1e-12)
    for field in range(4):
        _close(grads[field], sum(s[1][field] for s in singles) / 3, rtol=1e-12)
    _, cache = mb.mlp_forward(params, x)
    for a, b in zip(mb.mlp_backward(params, cache, y), grads, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mlp_relu_mask_is_zero_at_the_kink() -> None:
    # b1 = [0, 1], x = [1, -1]: z1 = [1, 0] exactly; relu'(0) = 0, so no gradient reaches
    # W1[:, 1] or b1[1] (jnp.maximum's 1/2 at the kink would give a nonzero db1[1])
    params = _identity_net([0.0, 1.0])
    x, y = np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]])
    _, cache = mb.mlp_forward(params, x)
    _close(cache.relu_mask, [[1.0, 0.0]])
    _close(cache.a1, [[1.0, 0.0]])
    _, grads = mb.mlp_loss_and_grads(params, x, y)
    u = 1 / (1 + np.e)  # dZ2 = [-u, u] as in the identity test; dZ1 = [-u, u * 0]
    _close(grads.b1, [-u, 0.0])
    _close(grads.W1, [[-u, 0.0], [u, 0.0]])


def test_mlp_single_class_has_zero_loss_and_gradient() -> None:
    # k = 1: p = softmax of one logit = 1, loss -log 1 = 0, dZ2 = 1 - 1 = 0, so every gradient is 0
    params = mb.MLPParams(np.ones((2, 3)), np.ones(3), np.ones((3, 1)), np.ones(1))
    loss, grads = mb.mlp_loss_and_grads(params, np.array([[1.0, 2.0]]), np.ones((1, 1)))
    assert loss == 0.0
    for g, p in zip(grads, params, strict=True):
        assert g.shape == p.shape
        assert not g.any()


def test_mlp_loss_finite_at_huge_logits() -> None:
    # z2 = [1e4, 0] (W1 = I, x = [1e4, 0]): y = [0, 1] costs exactly 1e4, dZ2 = [1, -1]
    params = _identity_net()
    x, y = np.array([[1e4, 0.0]]), np.array([[0.0, 1.0]])
    loss, grads = mb.mlp_loss_and_grads(params, x, y)
    assert loss == 1e4
    _close(grads.b2, [1.0, -1.0])
    _close(grads.W2, [[1e4, -1e4], [0.0, 0.0]])


def test_init_mlp_shapes_dtype_zero_biases_and_determinism() -> None:
    p = mb.init_mlp(np.random.default_rng(1), 4, 3, 2, dtype=np.float32)
    assert [a.shape for a in p] == [(4, 3), (3,), (3, 2), (2,)]
    assert all(a.dtype == np.float32 for a in p)
    assert not p.b1.any()
    assert not p.b2.any()
    q = mb.init_mlp(np.random.default_rng(1), 4, 3, 2, dtype=np.float32)
    for a, b in zip(p, q, strict=True):
        np.testing.assert_array_equal(a, b)
    assert mb.init_mlp(np.random.default_rng(1), 4, 3, 2).W1.dtype == np.float64


def test_init_mlp_uses_the_given_generator_and_advances_it() -> None:
    # the first draws of the generator fill W1 (row-major), scaled by sqrt(2/n)
    rng = np.random.default_rng(7)
    p = mb.init_mlp(rng, 2, 3, 1)
    expected = np.random.default_rng(7).standard_normal((2, 3)) * np.sqrt(2.0 / 2)
    _close(p.W1, expected)
    r = mb.init_mlp(rng, 2, 3, 1)  # the generator advanced: different weights
    assert not np.array_equal(p.W1, r.W1)


def test_init_mlp_variances_are_he_and_glorot() -> None:
    # W1 ~ N(0, 2/n) (He), W2 ~ N(0, 2/(h + k)) (Glorot): with 10^5 draws the sample standard
    # deviation is within 1% of sqrt(2/n) = 0.1 and sqrt(2/(h + k)) = 0.05 (its relative error
    # is about 1/sqrt(2N) = 0.2%)
    p = mb.init_mlp(np.random.default_rng(0), 200, 500, 300)
    np.testing.assert_allclose(p.W1.std(), 0.1, rtol=0.01)
    np.testing.assert_allclose(p.W2.std(), 0.05, rtol=0.01)
    assert abs(p.W1.mean()) < 0.003
    assert abs(p.W2.mean()) < 0.003


# --------------------------------------------------------------------------------------------
# Logistic regression, SGD, one-hot
# --------------------------------------------------------------------------------------------


def test_logreg_at_zero_weights() -> None:
    # w = 0, b = 0: every z = 0, y_hat = 1/2, loss = log 2 whatever x and y.
    # y = [1, 0]: y_hat - y = [-1/2, 1/2]; dw = X^T [-1/2, 1/2]/2 = [(-1 + 3)/4, (-2 + 4)/4]; db = 0
    params = mb.LogRegParams(np.zeros(2), np.array(0.0))
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    loss, g = mb.logreg_loss_and_grads(params, x, np.array([1.0, 0.0]))
    _close(loss, np.log(2.0))
    _close(g.w, [0.5, 0.5])
    _close(g.b, 0.0)
    # y = [1, 1]: y_hat - y = [-1/2, -1/2]; dw = [(-1 - 3)/4, (-2 - 4)/4]; db = -1/2
    loss, g = mb.logreg_loss_and_grads(params, x, np.array([1.0, 1.0]))
    _close(loss, np.log(2.0))
    _close(g.w, [-1.0, -1.5])
    _close(g.b, -0.5)
    _close(mb.logreg_predict_proba(params, x), [0.5, 0.5])
    # m = 3 rows, n = 2 features (the mean is over rows): y = [1, 0, 1], residual
    # [-1/2, 1/2, -1/2]; dw = [(-1 + 3 - 5)/2, (-2 + 4 - 6)/2]/3 = [-1/2, -2/3]; db = -1/6
    x3 = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    loss, g = mb.logreg_loss_and_grads(params, x3, np.array([1.0, 0.0, 1.0]))
    _close(loss, np.log(2.0))
    _close(g.w, [-0.5, -2 / 3])
    _close(g.b, -1 / 6)


def test_logreg_with_bias_and_weights() -> None:
    # w = [1, -1], b = L3 - 1: x = [1, 1] gives z = L3 - 1 + 0, x = [2, 1] gives z = L3.
    # Row 2: y_hat = 3/4, y = 0 -> loss term log 4, residual 3/4.
    # Row 1: z = L3 - 1, y = 1 -> loss softplus(1 - L3), residual s(L3 - 1) - 1 = -s(1 - L3)
    params = mb.LogRegParams(np.array([1.0, -1.0]), np.array(L3 - 1))
    x = np.array([[1.0, 1.0], [2.0, 1.0]])
    v = 1 / (1 + np.exp(L3 - 1))  # s(1 - L3)
    loss, g = mb.logreg_loss_and_grads(params, x, np.array([1.0, 0.0]))
    _close(loss, (np.log1p(np.exp(1 - L3)) + np.log(4.0)) / 2)
    _close(g.w, [(-v + 2 * 0.75) / 2, (-v + 0.75) / 2])
    _close(g.b, (-v + 0.75) / 2)
    _close(mb.logreg_predict_proba(params, x), [1 - v, 0.75])


def test_logreg_finite_at_huge_logits() -> None:
    # z = 1e4: y = 0 costs softplus(1e4) = 1e4, dw = x (1 - 0) = 1e4, db = 1; y = 1 costs 0
    params = mb.LogRegParams(np.array([1.0]), np.array(0.0))
    loss, g = mb.logreg_loss_and_grads(params, np.array([[1e4]]), np.array([0.0]))
    assert loss == 1e4
    _close(g.w, [1e4])
    _close(g.b, 1.0)
    loss, g = mb.logreg_loss_and_grads(params, np.array([[1e4]]), np.array([1.0]))
    assert loss == 0.0
    _close(g.w, [0.0])


def test_logreg_gradient_shapes() -> None:
    params = mb.LogRegParams(np.zeros(3), np.array(0.0))
    _, g = mb.logreg_loss_and_grads(params, np.ones((1, 3)), np.array([1.0]))
    assert g.w.shape == (3,)
    assert g.b.shape == ()
    assert isinstance(g.b, np.ndarray)


def test_sgd_step_known_value() -> None:
    # w - 0.1 dw = [1 - 0.05, 2 + 0.1]; b - 0.1 db = 3 - 0.2
    params = mb.LogRegParams(np.array([1.0, 2.0]), np.array(3.0))
    grads = mb.LogRegParams(np.array([0.5, -1.0]), np.array(2.0))
    new = mb.sgd_step(params, grads, 0.1)
    assert type(new) is mb.LogRegParams
    _close(new.w, [0.95, 2.1])
    _close(new.b, 2.8)
    assert isinstance(new.b, np.ndarray)


def test_sgd_step_on_mlp_params() -> None:
    # every field: p - 2 g with p = 1, g = 1/4 -> 1/2
    params = mb.MLPParams(np.ones((2, 3)), np.ones(3), np.ones((3, 1)), np.ones(1))
    grads = mb.MLPParams(*(np.full_like(a, 0.25) for a in params))
    new = mb.sgd_step(params, grads, 2)
    assert type(new) is mb.MLPParams
    for a in new:
        _close(a, np.full(a.shape, 0.5))


def test_one_hot_known_value() -> None:
    _close(mb.one_hot(np.array([2, 0, 1, 2]), 3), [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # k = 1: every label is 0
    _close(mb.one_hot(np.array([0, 0]), 1), [[1.0], [1.0]])
    # labels may leave classes unused: k larger than max label + 1
    _close(mb.one_hot(np.array([0]), 3), [[1.0, 0.0, 0.0]])
    assert mb.one_hot(np.array([1], dtype=np.uint8), 2, dtype=np.float32).dtype == np.float32


# --------------------------------------------------------------------------------------------
# dtype rule, purity and aliasing: one table, every public function
# --------------------------------------------------------------------------------------------


def _mlp(dt: Any) -> mb.MLPParams:
    rng = np.random.default_rng(3)
    return mb.MLPParams(*(rng.standard_normal(s).astype(dt) for s in [(3, 4), (4,), (4, 2), (2,)]))


def _logreg(dt: Any) -> mb.LogRegParams:
    return mb.LogRegParams(np.array([0.5, -1.0, 2.0], dtype=dt), np.array(0.25, dtype=dt))


def _inputs(dt: Any) -> dict[str, Any]:
    """Small inputs of dtype ``dt`` for every public function (interior points, no ties)."""
    rng = np.random.default_rng(5)
    z = rng.uniform(-3, 3, (3, 2)).astype(dt)
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], dtype=dt)
    y = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=dt)
    x = rng.uniform(-1, 1, (2, 3)).astype(dt)
    return {"z": z, "p": p, "y": y, "x": x, "w": rng.standard_normal((3, 2)).astype(dt)}


def _cases(dt: Any) -> list[tuple[str, Callable[..., Any], tuple[Any, ...]]]:
    a = _inputs(dt)
    z, p, y, x, w = a["z"], a["p"], a["y"], a["x"], a["w"]
    mlp = _mlp(dt)
    xm = np.random.default_rng(6).standard_normal((2, 3)).astype(dt)
    ym = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dt)
    _, cache = mb.mlp_forward(mlp, xm)
    lr = _logreg(dt)
    return [
        ("relu", mb.relu, (z,)),
        ("relu_grad", mb.relu_grad, (z,)),
        ("sigmoid", mb.sigmoid, (z,)),
        ("sigmoid_grad", mb.sigmoid_grad, (z,)),
        ("softmax", mb.softmax, (z,)),
        ("softmax_jacobian", mb.softmax_jacobian, (z,)),
        ("softmax_vjp", mb.softmax_vjp, (z, p)),
        ("cross_entropy", mb.cross_entropy, (p, y)),
        ("cross_entropy_grad", mb.cross_entropy_grad, (p, y)),
        ("softmax_cross_entropy", mb.softmax_cross_entropy, (z, y)),
        ("softmax_cross_entropy_grad", mb.softmax_cross_entropy_grad, (z, y)),
        ("binary_cross_entropy", mb.binary_cross_entropy, (p, y)),
        ("binary_cross_entropy_grad", mb.binary_cross_entropy_grad, (p, y)),
        ("sigmoid_binary_cross_entropy", mb.sigmoid_binary_cross_entropy, (z, y)),
        ("sigmoid_binary_cross_entropy_grad", mb.sigmoid_binary_cross_entropy_grad, (z, y)),
        ("linear", mb.linear, (x, w, z[0])),
        ("linear_backward", mb.linear_backward, (z[:2], x, w)),
        ("mlp_forward", mb.mlp_forward, (mlp, xm)),
        ("mlp_backward", mb.mlp_backward, (mlp, cache, ym)),
        ("mlp_backward_intermediates", mb.mlp_backward_intermediates, (mlp, cache, ym)),
        ("mlp_loss_and_grads", mb.mlp_loss_and_grads, (mlp, xm, ym)),
        ("logreg_loss_and_grads", mb.logreg_loss_and_grads, (lr, x, np.array([1.0, 0.0], dt))),
        ("logreg_predict_proba", mb.logreg_predict_proba, (lr, x)),
        ("sgd_step", mb.sgd_step, (lr, _logreg(dt), 0.5)),
        ("mlp_hvp", mb.mlp_hvp, (mlp, xm, ym, _mlp(dt))),
        ("mlp_gnvp", mb.mlp_gnvp, (mlp, xm, ym, _mlp(dt))),
        ("logreg_hvp", mb.logreg_hvp, (lr, x, np.array([1.0, 0.0], dt), _logreg(dt))),
        ("logreg_gnvp", mb.logreg_gnvp, (lr, x, np.array([1.0, 0.0], dt), _logreg(dt))),
    ]


CASE_NAMES = [name for name, _, _ in _cases(np.float64)]


def _leaves(value: Any) -> list[Any]:
    """Every array or numpy scalar in a (nested) result."""
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _arrays_in(args: tuple[Any, ...]) -> list[np.ndarray[Any, Any]]:
    return [a for a in _leaves(args) if isinstance(a, np.ndarray)]


def test_every_public_function_is_in_the_dtype_and_purity_table() -> None:
    # the table below must grow with the API: each public function (not the types) is listed
    public = {n for n in mb.__all__ if callable(getattr(mb, n)) and n[0].islower()}
    assert public - {"init_mlp", "one_hot"} == set(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtype_follows_input(name: str, dtype: Any) -> None:
    # float32 in, float32 out (arrays and scalar losses alike); float64 likewise
    _, fn, args = next(c for c in _cases(dtype) if c[0] == name)
    for leaf in _leaves(fn(*args)):
        assert isinstance(leaf, np.ndarray | np.floating), type(leaf)
        assert leaf.dtype == dtype, (name, leaf.dtype)
        if not isinstance(leaf, np.ndarray):
            assert type(leaf) is dtype  # a numpy scalar of the input dtype, not a Python float


@pytest.mark.parametrize("name", CASE_NAMES)
def test_float32_result_matches_float64_result(name: str) -> None:
    # the float32 computation is the same formula as the float64 one: they agree to float32
    # precision (a float32 path that dropped a term or a 1/m would not)
    results = []
    for dtype in (np.float32, np.float64):
        _, fn, args = next(c for c in _cases(dtype) if c[0] == name)
        results.append(_leaves(fn(*args)))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_inputs_are_not_mutated(name: str) -> None:
    _, fn, args = next(c for c in _cases(np.float64) if c[0] == name)
    before = [a.copy() for a in _arrays_in(args)]
    fn(*args)
    for a, b in zip(_arrays_in(args), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_outputs_do_not_alias_inputs(name: str) -> None:
    # writing into a result must not change an argument (mlp_forward's cache is excluded: it
    # holds the input x on purpose, as the backward pass's dZ1/dW1)
    _, fn, args = next(c for c in _cases(np.float64) if c[0] == name)
    result = fn(*args)
    if name == "mlp_forward":
        result = result[0]
    for out in _leaves(result):
        for arg in _arrays_in(args):
            assert not np.shares_memory(np.asarray(out), arg), name


def test_integer_input_becomes_float64() -> None:
    # the activations and losses accept integer arrays and compute in float64
    zi = np.array([[-1, 0, 2]])
    for fn in (mb.relu, mb.relu_grad, mb.sigmoid, mb.sigmoid_grad, mb.softmax):
        assert fn(zi).dtype == np.float64
    assert mb.relu(zi).tolist() == [[0.0, 0.0, 2.0]]
    yi = np.array([[0, 1, 0]])
    assert type(mb.softmax_cross_entropy(zi, yi)) is np.float64
    assert mb.softmax_cross_entropy_grad(zi, yi).dtype == np.float64
    assert type(mb.cross_entropy(np.array([[1, 0]]), np.array([[1, 0]]))) is np.float64
    assert mb.linear(np.array([[1, 2]]), np.array([[1], [1]]), np.array([1])).tolist() == [[4.0]]
    assert mb.one_hot(np.array([1]), 2).dtype == np.float64


def test_labels_follow_the_dtype_of_the_values() -> None:
    # float64 labels on float32 logits: the result is float32, not promoted
    z = np.array([[0.0, 1.0]], dtype=np.float32)
    y = np.array([[1.0, 0.0]], dtype=np.float64)
    assert type(mb.softmax_cross_entropy(z, y)) is np.float32
    assert mb.softmax_cross_entropy_grad(z, y).dtype == np.float32
    assert mb.softmax_vjp(z, y).dtype == np.float32


@pytest.mark.parametrize(
    "fn",
    [
        mb.cross_entropy_grad,
        mb.softmax_cross_entropy_grad,
        mb.binary_cross_entropy_grad,
        mb.sigmoid_binary_cross_entropy_grad,
    ],
    ids=lambda f: f.__name__,
)
def test_integer_labels_follow_the_dtype_of_the_values(fn: Callable[..., Any]) -> None:
    # integer labels on float32 values are converted to float32, not to float64
    values = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    labels = np.array([[0, 1], [1, 0]])
    assert fn(values, labels).dtype == np.float32
    np.testing.assert_array_equal(fn(values, labels), fn(values, labels.astype(np.float32)))


def test_network_labels_follow_the_params_dtype() -> None:
    # float32 params with float64 or integer labels: float32 loss and gradients, bit for bit
    # those of float32 labels (y = 1/3 is not a float32 number: it is rounded first)
    params = _mlp(np.float32)
    x = np.random.default_rng(6).standard_normal((2, 3)).astype(np.float32)
    y64 = np.array([[1 / 3, 2 / 3], [1.0, 0.0]])
    loss32, g32 = mb.mlp_loss_and_grads(params, x, y64.astype(np.float32))
    for y in (y64, np.array([[0, 1], [1, 0]])):
        loss, g = mb.mlp_loss_and_grads(params, x, y)
        assert type(loss) is np.float32
        assert all(a.dtype == np.float32 for a in g)
    loss, g = mb.mlp_loss_and_grads(params, x, y64)
    assert loss == loss32
    for a, b in zip(g, g32, strict=True):
        np.testing.assert_array_equal(a, b)
    _, cache = mb.mlp_forward(params, x)
    assert all(a.dtype == np.float32 for a in mb.mlp_backward(params, cache, y64))


def test_logreg_targets_follow_the_params_dtype() -> None:
    # float32 params with float64 targets: y is rounded to float32 first, so the result is bit
    # for bit that of float32 targets. One sample, so dw = x (s(0) - y) is not rounded again:
    # float32(1/2 - 1/3) = 0.16666667 but 1/2 - float32(1/3) = 0.16666666
    params = mb.LogRegParams(np.zeros(3, np.float32), np.array(0.0, np.float32))
    x = np.ones((1, 3), np.float32)
    y64 = np.array([1 / 3])
    loss32, g32 = mb.logreg_loss_and_grads(params, x, y64.astype(np.float32))
    loss, g = mb.logreg_loss_and_grads(params, x, y64)
    assert type(loss) is np.float32
    assert loss == loss32
    np.testing.assert_array_equal(g.w, g32.w)
    np.testing.assert_array_equal(g.b, g32.b)
    assert g.w.dtype == np.float32


# --------------------------------------------------------------------------------------------
# Forward activations on non-finite input (NaN passes, inf goes to the limit)
# --------------------------------------------------------------------------------------------


def test_relu_and_sigmoid_pass_nan_and_map_inf_to_limits() -> None:
    z = np.array([np.nan, np.inf, -np.inf])
    r, s = mb.relu(z), mb.sigmoid(z)
    assert np.isnan(r[0])
    assert r[1:].tolist() == [np.inf, 0.0]
    assert np.isnan(s[0])
    assert s[1:].tolist() == [1.0, 0.0]


def test_softmax_passes_nan_through_its_row_only() -> None:
    out = mb.softmax(np.array([[np.nan, 0.0], [0.0, 0.0]]))
    assert np.isnan(out[0]).all()
    _close(out[1], [0.5, 0.5])


def test_softmax_minus_inf_logit_gets_probability_zero() -> None:
    # e^-inf = 0: [-inf, 0, 0] -> [0, 1/2, 1/2]
    _close(mb.softmax(np.array([[-np.inf, 0.0, 0.0]])), [[0.0, 0.5, 0.5]])


# --------------------------------------------------------------------------------------------
# The import boundary
# --------------------------------------------------------------------------------------------


def test_import_manual_bp_needs_numpy_only() -> None:
    # a fresh interpreter: importing manual_bp loads neither jax nor verification nor the
    # training extras
    code = (
        "import sys, manual_bp, manual_bp.datasets\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'jax', 'jaxlib', 'verification', 'hypothesis', 'sklearn', 'matplotlib', 'torch'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
