"""Hessian-vector and Gauss-Newton-vector products by hand (``manual_bp.hvp``) against JAX:
``jax.jvp(jax.grad(loss))`` for H v and jvp/vjp of the model for G v, in float64 and float32,
on the usual shapes and the saturating output layers of ``verification.strategies``; the ReLU
kink on its own; the algebra (symmetry, linearity, G positive semidefinite) on its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

import manual_bp
from manual_bp import LogRegParams, MLPParams
from verification import reference as ref, strategies as vs
from verification.mainjob.checks import (
    CHECKS_BY_NAME,
    _mlp_hvp as _mlp_hvp_scale,
    assert_check,
    away_from_kink,
)

DTYPES = [np.float64, np.float32]


def _mlp(dtype: Any) -> st.SearchStrategy[tuple[Any, ...]]:
    return vs.mlp_hvp_problems(dtype).filter(lambda p: away_from_kink(p[:3]))


def _dot(a: Any, b: Any) -> float:
    return float(
        sum(
            np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64))
            for x, y in zip(a, b, strict=True)
        )
    )


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_mlp_hvp_matches_jax_jvp_of_grad_away_from_kink(dtype: Any, data: st.DataObject) -> None:
    assert_check("mlp_hvp", data.draw(_mlp(dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_mlp_gnvp_matches_jax_gauss_newton_product(dtype: Any, data: st.DataObject) -> None:
    assert_check("mlp_gnvp", data.draw(_mlp(dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_logreg_hvp_and_gnvp_match_jax(dtype: Any, data: st.DataObject) -> None:
    problem = data.draw(vs.logreg_hvp_problems(dtype))
    assert_check("logreg_hvp", problem)
    assert_check("logreg_gnvp", problem)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_mlp_hvp_at_relu_kink_matches_jax_nn_relu(dtype: Any, data: st.DataObject) -> None:
    """x = 0 puts Z1 = b1, with exact zeros: there relu'(0) = 0 and relu'' = 0 in both, so the
    units at the kink contribute nothing (a mask 1[Z1 >= 0] would give them a db1 and dW2)."""
    params, x, y, v = data.draw(vs.mlp_hvp_problems(dtype))
    zeros = data.draw(st.lists(st.booleans(), min_size=params.b1.size, max_size=params.b1.size))
    b1 = np.where(np.array(zeros), 0, params.b1).astype(params.b1.dtype)
    assert_check("mlp_hvp", (params._replace(b1=b1), np.zeros_like(x), y, v))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_products_keep_the_dtype_and_shapes_of_the_params(dtype: Any, data: st.DataObject) -> None:
    params, x, y, v = data.draw(vs.mlp_hvp_problems(dtype))
    for product in (manual_bp.mlp_hvp, manual_bp.mlp_gnvp):
        out = product(params, x, y, v)
        assert [(a.shape, a.dtype) for a in out] == [(a.shape, a.dtype) for a in params]
    lparams, lx, ly, lv = data.draw(vs.logreg_hvp_problems(dtype))
    out_l = manual_bp.logreg_hvp(lparams, lx, ly, lv)
    assert [(np.shape(a), a.dtype) for a in out_l] == [(np.shape(a), a.dtype) for a in lparams]


@given(data=st.data())
def test_mlp_hvp_is_symmetric_and_linear_in_the_direction(data: st.DataObject) -> None:
    """u^T (H v) = v^T (H u) and H(a u + b v) = a H u + b H v: a product with one term
    transposed breaks the first, one that is not linear in v (a square) breaks the second.
    Rounding is bounded by the absolute values of the R-pass (the main job's scale rule)."""
    params, x, y, v = data.draw(_mlp(np.float64))
    fields = [vs.bounded_arrays(np.float64, np.shape(p), bound=2.0) for p in params]
    u = data.draw(st.tuples(*fields).map(lambda leaves: MLPParams(*leaves)))
    hv, hu = manual_bp.mlp_hvp(params, x, y, v), manual_bp.mlp_hvp(params, x, y, u)
    size_v, size_u = _mlp_hvp_scale((params, x, y, v), hv), _mlp_hvp_scale((params, x, y, u), hu)
    l1 = [sum(float(np.abs(a).sum()) for a in t) for t in (u, v)]
    assert abs(_dot(u, hv) - _dot(v, hu)) <= 1e-12 * (l1[0] * size_v + l1[1] * size_u)
    a, b = 0.75, -1.5
    mixed = MLPParams(*(a * p + b * q for p, q in zip(u, v, strict=True)))
    combined = manual_bp.mlp_hvp(params, x, y, mixed)
    for got, hu_i, hv_i in zip(combined, hu, hv, strict=True):
        np.testing.assert_allclose(
            got, a * hu_i + b * hv_i, rtol=1e-9, atol=1e-12 * (abs(a) * size_u + abs(b) * size_v)
        )


@given(data=st.data())
def test_mlp_gnvp_is_positive_semidefinite_where_the_hessian_need_not_be(
    data: st.DataObject,
) -> None:
    params, x, y, v = data.draw(_mlp(np.float64))
    gv = manual_bp.mlp_gnvp(params, x, y, v)
    assert _dot(v, gv) >= -1e-10 * max(1.0, np.sqrt(_dot(gv, gv) * _dot(v, v)))


def test_hessian_has_negative_curvature_the_gauss_newton_matrix_lacks() -> None:
    """The two products differ: at this input v^T H v < 0 while v^T G v >= 0 (so returning G
    for H is a wrong answer, not a rounding matter)."""
    rng = np.random.default_rng(3)
    params = manual_bp.init_mlp(rng, 3, 4, 3)
    params = params._replace(b1=rng.standard_normal(4), b2=rng.standard_normal(3))
    x, y = rng.standard_normal((5, 3)), manual_bp.one_hot(rng.integers(0, 3, 5), 3)
    curvatures = []
    for _ in range(20):
        v = MLPParams(*(rng.standard_normal(np.shape(p)) for p in params))
        curvatures.append(
            (
                _dot(v, manual_bp.mlp_hvp(params, x, y, v)),
                _dot(v, manual_bp.mlp_gnvp(params, x, y, v)),
            )
        )
    assert min(h for h, _ in curvatures) < 0
    assert min(g for _, g in curvatures) >= 0


@pytest.mark.parametrize(
    ("wrong", "check"),
    [(manual_bp.mlp_gnvp, "mlp_hvp"), (manual_bp.mlp_hvp, "mlp_gnvp")],
)
def test_the_checks_tell_the_hessian_from_the_gauss_newton_product(wrong: Any, check: str) -> None:
    """The main job's tolerance is tight enough to fail one product passed off as the other."""
    rng = np.random.default_rng(0)
    params = manual_bp.init_mlp(rng, 3, 4, 2)
    params = params._replace(b1=np.abs(rng.standard_normal(4)) + 0.5)
    x, y = rng.standard_normal((4, 3)), manual_bp.one_hot(np.array([0, 1, 1, 0]), 2)
    v = MLPParams(*(rng.standard_normal(np.shape(p)) for p in params))
    swapped = dataclasses.replace(CHECKS_BY_NAME[check], manual=wrong)
    assert not swapped.compare((params, x, y, v)).passed


def test_logreg_hvp_known_value() -> None:
    """w = 0, b = 0: sigma(0) sigma(-0) = 1/4; x = [[2]], v_w = 1: r = 1/4 * 2 / 1 = 1/2,
    H v = (x^T r, sum r) = (1, 1/2)."""
    out = manual_bp.logreg_hvp(
        LogRegParams(np.array([0.0]), np.array(0.0)),
        np.array([[2.0]]),
        np.array([0.0]),
        LogRegParams(np.array([1.0]), np.array(0.0)),
    )
    np.testing.assert_array_equal(out.w, [1.0])
    assert float(out.b) == 0.5


def test_logreg_hvp_at_saturated_logits_is_finite_and_matches_jax() -> None:
    """z = +-800: sigma(z) sigma(-z) underflows to 0 in float64 without overflowing."""
    params = LogRegParams(np.array([400.0]), np.array(0.0))
    x, y = np.array([[2.0], [-2.0]]), np.array([1.0, 0.0])
    v = LogRegParams(np.array([1.0]), np.array(1.0))
    out = manual_bp.logreg_hvp(params, x, y, v)
    expected = ref.logreg_hvp(params, x, y, v)
    assert all(np.all(np.isfinite(a)) for a in out)
    np.testing.assert_allclose(out.w, expected.w, atol=1e-300)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v._replace(W1=v.W1[:, :1]), "v.W1 has shape (3, 1) but params.W1"),
        (lambda v: v._replace(b2=v.b2.astype(np.float32)), "v must have one dtype"),
        (lambda v: MLPParams(*(a.astype(np.float32) for a in v)), "v has dtype float32"),
        (lambda v: tuple(v), "v must be a MLPParams, got tuple"),
        (lambda v: v._replace(b1=np.full(4, np.nan)), "v.b1 must be finite"),
    ],
)
def test_bad_direction_raises_naming_v(change: Any, message: str) -> None:
    rng = np.random.default_rng(0)
    params = manual_bp.init_mlp(rng, 3, 4, 2)
    x, y = rng.standard_normal((2, 3)), np.eye(2)
    v = MLPParams(*(rng.standard_normal(np.shape(p)) for p in params))
    with pytest.raises(
        (TypeError, ValueError), match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        manual_bp.mlp_hvp(params, x, y, change(v))
