"""The one-hidden-layer network against JAX: forward probabilities, and the loss and every
parameter gradient against ``jax.value_and_grad`` of ``verification.reference.mlp_loss``, in
float64 and float32, with the ReLU kink handled on purpose.

Pre-activations Z1 = X W1 + b1 within a small margin of 0 (``verification.mainjob.checks.away_from_kink``)
are excluded from the general property: there two roundings may disagree on the side of the
kink. Exact zeros are tested on their own, where both sides take relu'(0) = 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

import manual_bp
from verification import strategies as vs
from verification.mainjob.checks import CHECKS_BY_NAME, assert_check, away_from_kink

DTYPES = [np.float64, np.float32]


def _problems(dtype: Any) -> st.SearchStrategy[tuple[manual_bp.MLPParams, Any, Any]]:
    return vs.mlp_problems(dtype).filter(away_from_kink)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_mlp_forward_and_loss_and_grads_match_jax_away_from_kink(
    dtype: Any, data: st.DataObject
) -> None:
    problem = data.draw(_problems(dtype))
    assert_check("mlp_forward", problem)
    assert_check("mlp_loss_and_grads", problem)


def _loss_and_backward(params: Any, x: Any, y: Any) -> Any:
    loss, _ = manual_bp.mlp_loss_and_grads(params, x, y)
    _, cache = manual_bp.mlp_forward(params, x)
    return loss, manual_bp.mlp_backward(params, cache, y)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_mlp_backward_from_forward_cache_matches_jax_grad(dtype: Any, data: st.DataObject) -> None:
    check = dataclasses.replace(CHECKS_BY_NAME["mlp_loss_and_grads"], manual=_loss_and_backward)
    comparison = check.compare(data.draw(_problems(dtype)))
    assert comparison.passed, str(comparison)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_mlp_grads_at_relu_kink_match_jax_nn_relu(dtype: Any, data: st.DataObject) -> None:
    """x = 0 makes Z1 = b1 exactly, and b1 has exact zeros: units at the kink get
    relu'(0) = 0 in both (a manual relu'(0) = 1 would give them a non-zero db1)."""
    params, x, y = data.draw(vs.mlp_problems(dtype))
    zeros = data.draw(st.lists(st.booleans(), min_size=params.b1.size, max_size=params.b1.size))
    b1 = np.where(np.array(zeros), 0, params.b1).astype(params.b1.dtype)
    kinked = (params._replace(b1=b1), np.zeros_like(x), y)
    assert_check("mlp_loss_and_grads", kinked)
