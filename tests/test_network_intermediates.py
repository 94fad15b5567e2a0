"""``manual_bp.mlp_backward_intermediates`` against JAX: each intermediate gradient of the chain
(dZ2, dA1, dZ1) is ``jax.grad`` of the rest of the loss at its stage's forward value, and the
parameter gradients of ``mlp_backward`` are formed from them (A1^T dZ2, X^T dZ1, column sums).

The stages are ``verification.auditing._stages.MLP_STAGES`` (written with ``jax.nn`` and
``jax.numpy``, never with the manual formulas). Pre-activations near 0 are excluded as in
test_network_vs_jax.py: there the two roundings may take different sides of the ReLU kink.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest
from hypothesis import given, strategies as st

import manual_bp
from verification import strategies as vs
from verification.auditing._stages import MLP_STAGES
from verification.compare import assert_trees_close, magnitude, tolerance
from verification.mainjob.checks import away_from_kink

DTYPES = [np.float64, np.float32]
STAGE_OF = {"dZ2": "Z2", "dA1": "A1", "dZ1": "Z1"}


def _chain(params: Any, x: Any, y: Any) -> manual_bp.MLPIntermediates:
    _, cache = manual_bp.mlp_forward(params, x)
    return manual_bp.mlp_backward_intermediates(params, cache, y)


def _reference(name: str, params: Any, x: Any, y: Any) -> np.ndarray[Any, Any]:
    """dJ/dV for the stage of ``name``, in float64."""
    args = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), (params, x, y))
    stage = MLP_STAGES[STAGE_OF[name]]
    return np.asarray(jax.grad(stage.rest)(stage.value(*args), *args))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_each_intermediate_is_jax_grad_of_the_rest_of_the_loss_at_its_stage(
    dtype: Any, data: st.DataObject
) -> None:
    params, x, y = data.draw(vs.mlp_problems(dtype).filter(away_from_kink))
    chain = _chain(params, x, y)
    # The size of the terms each intermediate sums, from absolute values (|P| <= 1): a
    # saturated softmax leaves dZ2 at rounding level, but not the terms it is formed from.
    g = (1 + np.abs(np.asarray(y, np.float64))) / x.shape[0]
    terms_size = max(magnitude(g), magnitude(g @ np.abs(np.asarray(params.W2, np.float64)).T))
    for name, got in chain._asdict().items():
        assert got.dtype == dtype, name
        expected = _reference(name, params, x, y)
        scale = max(magnitude(expected), terms_size)
        rtol, atol = tolerance(dtype, scale=scale, terms=x.size + params.W1.size)
        assert_trees_close(got, expected, rtol=rtol, atol=atol, names=name)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_parameter_gradients_are_formed_from_the_intermediates(
    dtype: Any, data: st.DataObject
) -> None:
    # the identities of the chain: dW2 = A1^T dZ2, db2 = 1^T dZ2, dW1 = X^T dZ1, db1 = 1^T dZ1,
    # and dA1 = dZ2 W2^T (a wrong intermediate with right final gradients would fail here)
    params, x, y = data.draw(vs.mlp_problems(dtype))
    _, cache = manual_bp.mlp_forward(params, x)
    chain = manual_bp.mlp_backward_intermediates(params, cache, y)
    grads = manual_bp.mlp_backward(params, cache, y)
    np.testing.assert_array_equal(grads.W2, cache.a1.T @ chain.dZ2)
    np.testing.assert_array_equal(grads.b2, chain.dZ2.sum(axis=0))
    np.testing.assert_array_equal(grads.W1, x.T @ chain.dZ1)
    np.testing.assert_array_equal(grads.b1, chain.dZ1.sum(axis=0))
    np.testing.assert_array_equal(chain.dA1, chain.dZ2 @ params.W2.T)


def test_dz1_is_zero_exactly_where_the_pre_activation_is_not_positive() -> None:
    # relu'(0) = 0: a unit with Z1 = 0 (x row of zeros, b1 = 0) passes nothing back
    params = manual_bp.MLPParams(
        np.array([[1.0, -1.0]]), np.array([0.0, 0.5]), np.eye(2), np.zeros(2)
    )
    chain = _chain(params, np.array([[0.0], [2.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert chain.dZ1[0, 0] == 0.0  # Z1 = 0 exactly
    assert chain.dZ1[1, 1] == 0.0  # Z1 = -1.5
    assert chain.dZ1[0, 1] == chain.dA1[0, 1] != 0.0  # Z1 = 0.5


def test_intermediates_validate_like_mlp_backward() -> None:
    params = manual_bp.MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    _, cache = manual_bp.mlp_forward(params, np.ones((1, 2)))
    with pytest.raises(ValueError, match="y has shape"):
        manual_bp.mlp_backward_intermediates(params, cache, np.ones((3, 2)))
    with pytest.raises(TypeError, match="cache must be the MLPCache"):
        manual_bp.mlp_backward_intermediates(params, tuple(cache), np.ones((1, 2)))  # type: ignore[arg-type]
