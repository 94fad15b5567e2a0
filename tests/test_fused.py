"""The fused SGD step: equal to the plain step (its reference) and to a step along jax.grad.

``mlp_sgd_step_fused`` must give what ``sgd_step(params, mlp_loss_and_grads(...)[1], lr)``
gives, in float32 and float64, and the parameters minus lr times the float64 ``jax.grad`` of
``verification.reference.mlp_loss``; it must keep relu'(0) = 0, the dtype, and its inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st
from numpy.typing import NDArray

import manual_bp as mb
from manual_bp.fused import mlp_sgd_step_fused
from verification import reference as ref, strategies as vs
from verification.compare import assert_trees_close, magnitude, tolerance

DTYPES = [np.float32, np.float64]
LEARNING_RATES = st.floats(1e-3, 1.0)


def _f64(params: mb.MLPParams) -> mb.MLPParams:
    return mb.MLPParams(*(np.asarray(a, dtype=np.float64) for a in params))


def _kink_margin(dtype: np.dtype[Any]) -> float:
    # float32 and float64 roundings of Z1 (|Z1| <= 20) may put it on different sides of the
    # ReLU kink only within a few ulps of 0; stay well outside that band.
    return 1e-4 if dtype == np.float32 else 1e-10


def _away_from_kink(problem: tuple[mb.MLPParams, NDArray[Any], NDArray[Any]]) -> bool:
    params, x, _ = problem
    p64 = _f64(params)
    z1 = np.asarray(x, np.float64) @ p64.W1 + p64.b1
    return bool(np.all(np.abs(z1) >= _kink_margin(np.asarray(x).dtype)))


def _gradient_scale(params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any]) -> float:
    """Bounds on the magnitudes the gradient is computed from: |Z2| (log-sum-exp) and the
    products |A1|^T (1 + |Y|)/m and |X|^T ((1 + |Y|)/m |W2|^T)."""
    p = _f64(params)
    ax = np.abs(np.asarray(x, np.float64))
    z1 = ax @ np.abs(p.W1) + np.abs(p.b1)
    g = (1 + np.abs(np.asarray(y, np.float64))) / ax.shape[0]
    return max(
        magnitude(z1 @ np.abs(p.W2) + np.abs(p.b2)),
        magnitude(z1.T @ g),
        magnitude(ax.T @ (g @ np.abs(p.W2).T)),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), lr=LEARNING_RATES)
def test_fused_step_equals_plain_step(dtype: type, data: st.DataObject, lr: float) -> None:
    params, x, y = data.draw(vs.mlp_problems(dtype))
    # Any label kind, rows not summing to 1 included (dZ2 = (P rowsum(Y) - Y)/m in general).
    y = data.draw(vs.labels(dtype, y.shape, vs.LABEL_KINDS))
    loss, new = mlp_sgd_step_fused(params, x, y, lr)
    plain_loss, grads = mb.mlp_loss_and_grads(params, x, y)
    plain = mb.sgd_step(params, grads, lr)
    # Same formulas in the same precision, the step size applied at another point: equal up to
    # a few roundings of the values involved (parameters, lr * gradients, loss).
    scale = magnitude(params) + lr * magnitude(grads) + magnitude(plain_loss)
    rtol, atol = tolerance(dtype, scale=scale, terms=x.shape[0])
    assert_trees_close(new, plain, rtol=rtol, atol=atol)
    assert_trees_close(loss, plain_loss, rtol=rtol, atol=atol, names="loss")
    assert [a.dtype for a in new] == [np.dtype(dtype)] * 4
    assert np.asarray(loss).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), lr=LEARNING_RATES)
def test_fused_step_moves_along_jax_gradient(dtype: type, data: st.DataObject, lr: float) -> None:
    params, x, y = data.draw(vs.mlp_problems(dtype).filter(_away_from_kink))
    loss, new = mlp_sgd_step_fused(params, x, y, lr)
    # Reference: float64 jax.value_and_grad of the JAX network on the same (exact) inputs.
    p64, x64, y64 = _f64(params), np.asarray(x, np.float64), np.asarray(y, np.float64)
    ref_loss, ref_grads = ref.mlp_loss_and_grads(p64, x64, y64)
    expected = mb.MLPParams(*(p - lr * np.asarray(g) for p, g in zip(p64, ref_grads, strict=True)))
    m, n = x.shape
    h, k = params.W2.shape
    scale = magnitude(p64) + lr * _gradient_scale(params, x, y)
    rtol, atol = tolerance(dtype, scale=scale, terms=m * max(n, h, k))
    assert_trees_close(new, expected, rtol=rtol, atol=atol)
    rtol, atol = tolerance(dtype, scale=_gradient_scale(params, x, y), terms=m * k)
    assert_trees_close(loss, np.asarray(ref_loss), rtol=rtol, atol=atol, names="loss")


def test_fused_step_keeps_relu_grad_zero_at_the_kink() -> None:
    # W1 = W2 = I, b1 = [0, 1], x = [1, -1]: Z1 = [1, 0] exactly. relu'(0) = 0, so W1[:, 1] and
    # b1[1] get no gradient and stay put (relu'(0) = 1/2 or 1 would move them).
    params = mb.MLPParams(np.eye(2), np.array([0.0, 1.0]), np.eye(2), np.zeros(2))
    x, y = np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]])
    _, new = mlp_sgd_step_fused(params, x, y, 0.5)
    np.testing.assert_array_equal(new.W1[:, 1], params.W1[:, 1])
    assert new.b1[1] == params.b1[1]
    assert new.b1[0] != params.b1[0]  # the active unit does move


def test_fused_step_does_not_modify_its_arguments() -> None:
    rng = np.random.default_rng(0)
    params = mb.init_mlp(rng, 5, 7, 3)
    params = params._replace(b1=rng.standard_normal(7), b2=rng.standard_normal(3))
    x = rng.standard_normal((4, 5))
    y = mb.one_hot(np.array([0, 2, 1, 2]), 3)
    copies = [a.copy() for a in (*params, x, y)]
    _, new = mlp_sgd_step_fused(params, x, y, 0.1)
    for before, after in zip(copies, (*params, x, y), strict=True):
        np.testing.assert_array_equal(after, before)
    for old, fresh in zip(params, new, strict=True):
        assert not np.shares_memory(old, fresh)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_fused_step_rejects_bad_learning_rate(lr: float) -> None:
    params = mb.init_mlp(np.random.default_rng(0), 2, 3, 2)
    with pytest.raises(ValueError, match="lr"):
        mlp_sgd_step_fused(params, np.ones((1, 2)), np.array([[1.0, 0.0]]), lr)


def test_fused_step_rejects_non_finite_input_and_bad_shapes() -> None:
    params = mb.init_mlp(np.random.default_rng(0), 2, 3, 2)
    with pytest.raises(ValueError, match="x must be finite"):
        mlp_sgd_step_fused(params, np.array([[np.nan, 0.0]]), np.array([[1.0, 0.0]]), 0.1)
    with pytest.raises(ValueError, match=r"x has shape \(1, 3\)"):
        mlp_sgd_step_fused(params, np.ones((1, 3)), np.array([[1.0, 0.0]]), 0.1)
    with pytest.raises(TypeError, match="lr must be a real number"):
        mlp_sgd_step_fused(params, np.ones((1, 2)), np.array([[1.0, 0.0]]), "0.1")  # type: ignore[arg-type]
