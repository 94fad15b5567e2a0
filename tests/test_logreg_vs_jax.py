"""Logistic regression against JAX: loss and gradients (dJ/dw = X^T (y_hat - y)/m, dJ/db)
against ``jax.value_and_grad`` of ``verification.reference.logreg_loss``, float64 and float32,
including saturated logits where a naive sigmoid or log overflows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

import manual_bp
from verification import strategies as vs
from verification.mainjob.checks import assert_check

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_logreg_loss_and_grads_match_jax_grad(dtype: Any, data: st.DataObject) -> None:
    assert_check("logreg_loss_and_grads", data.draw(vs.logreg_problems(dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_logreg_with_saturated_logits_is_finite_and_matches_jax(
    dtype: Any, data: st.DataObject
) -> None:
    """Weights scaled by 64: |z| reaches about 1.7e3, where exp(|z|) overflows both dtypes."""
    params, x, y = data.draw(vs.logreg_problems(dtype))
    big = manual_bp.LogRegParams(*(np.asarray(64 * leaf, dtype=dtype) for leaf in params))
    loss, grads = manual_bp.logreg_loss_and_grads(big, x, y)
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert_check("logreg_loss_and_grads", (big, x, y))
