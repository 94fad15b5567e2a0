"""The linear layer against JAX: z = x w + b, and its backward pass against ``jax.vjp`` with a
random cotangent, in float64 and float32."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

from verification import strategies as vs
from verification.mainjob.checks import assert_check

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_linear_matches_jax(dtype: Any, data: st.DataObject) -> None:
    x, w, b, _ = data.draw(vs.linear_problems(dtype))
    assert_check("linear", (x, w, b))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_linear_backward_matches_jax_vjp_with_random_cotangent(
    dtype: Any, data: st.DataObject
) -> None:
    """(dx, dw, db) = pullback of x @ w + b at a random dz: dz w^T, x^T dz, column sums."""
    x, w, _, dz = data.draw(vs.linear_problems(dtype))
    assert_check("linear_backward", (dz, x, w))
