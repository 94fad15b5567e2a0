"""Edge values at the border of the floating range: exact limits, errors, never a warning.

pytest turns every RuntimeWarning into an error, so each test also proves the computation
is warning-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import manual_bp as mb


def test_softmax_maps_a_single_plus_inf_logit_to_its_one_hot_limit() -> None:
    # lim_{t -> inf} softmax([t, 0, -inf]) = [1, 0, 0]
    out = mb.softmax(np.array([[np.inf, 0.0, -np.inf], [1.0, np.inf, 2.0]]))
    np.testing.assert_array_equal(out, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@pytest.mark.parametrize(
    "row", [[np.inf, np.inf], [-np.inf, -np.inf], [np.nan, 0.0], [np.nan, np.inf]]
)
def test_softmax_without_a_limit_gives_nan_in_that_row_only(row: list[float]) -> None:
    out = mb.softmax(np.array([row, [0.0, 0.0]]))
    assert np.isnan(out[0]).all()
    np.testing.assert_array_equal(out[1], [0.5, 0.5])


def test_softmax_extended_keeps_float32() -> None:
    out = mb.softmax(np.array([[np.inf, 0.0], [np.nan, 1.0]], dtype=np.float32))
    assert out.dtype == np.float32


def test_softmax_minus_inf_beside_finite_logits_gets_zero() -> None:
    np.testing.assert_array_equal(mb.softmax(np.array([[-np.inf, 0.0]])), [[0.0, 1.0]])


def test_softmax_accepts_more_than_32_leading_axes() -> None:
    z = np.zeros((1,) * 40 + (2,))
    assert mb.softmax(z).shape == z.shape


def test_linear_rejects_non_finite_input() -> None:
    with pytest.raises(ValueError, match=r"x must be finite"):
        mb.linear(np.array([[np.inf]]), np.array([[0.0]]), np.array([0.0]))


@pytest.mark.parametrize(
    ("fn", "p", "y"),
    [
        (mb.cross_entropy_grad, [[5e-324, 1.0]], [[1.0, 0.0]]),
        (mb.binary_cross_entropy_grad, [5e-324], [1.0]),
    ],
)
def test_probability_gradients_at_subnormal_p_round_to_minus_inf(
    fn: Callable[[Any, Any], Any], p: list[Any], y: list[Any]
) -> None:
    # -y/(m p) = -2e323 is beyond the float64 range: correctly rounded to -inf.
    assert np.ravel(fn(np.array(p), np.array(y)))[0] == -np.inf


def test_finite_values_whose_sum_overflows_are_accepted() -> None:
    np.testing.assert_array_equal(mb.relu_grad(np.array([1e308, 1e308])), [1.0, 1.0])


def test_one_hot_rejects_an_empty_label_array() -> None:
    with pytest.raises(ValueError, match=r"^labels is empty \(shape \(0,\)\)"):
        mb.one_hot(np.array([], dtype=np.int64), 3)


@pytest.mark.parametrize("which", ["x", "w", "b"])
def test_linear_names_the_non_finite_argument(which: str) -> None:
    args = {"x": np.ones((2, 3)), "w": np.ones((3, 4)), "b": np.ones(4)}
    args[which] = args[which].copy()
    args[which].flat[1] = np.nan
    with pytest.raises(ValueError, match=rf"^{which} must be finite, but {which}\["):
        mb.linear(args["x"], args["w"], args["b"])


def test_softmax_limits_are_taken_per_row_of_a_batch_of_matrices() -> None:
    # shape (2, 3, 2): the class axis is the last one, every other axis is a batch axis
    z = np.zeros((2, 3, 2))
    z[0, 0] = [np.inf, 0.0]  # one +inf: one-hot limit
    z[0, 1] = [np.inf, np.inf]  # no limit
    z[1, 2] = [-np.inf, -np.inf]  # no limit
    z[1, 0] = [np.nan, 0.0]  # no limit
    out = mb.softmax(z)
    np.testing.assert_array_equal(out[0, 0], [1.0, 0.0])
    for row in [(0, 1), (1, 2), (1, 0)]:
        assert np.isnan(out[row]).all(), row
    rest = [out[0, 2], out[1, 1]]
    np.testing.assert_array_equal(rest, [[0.5, 0.5]] * 2)
    assert mb.softmax(z.astype(np.float32)).dtype == np.float32
