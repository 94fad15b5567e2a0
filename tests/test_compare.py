"""verification.compare: the tolerance rule and tree comparison (messages, structure, NaN)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, strategies as st

from verification.compare import (
    SAFETY,
    Comparison,
    assert_trees_close,
    compare_trees,
    magnitude,
    tolerance,
)


class Params(NamedTuple):
    W1: Any
    b1: Any
    W2: Any


class Other(NamedTuple):
    x: Any
    y: Any
    z: Any


def _params() -> Params:
    return Params(np.arange(6.0).reshape(2, 3), np.ones(3), np.arange(8.0).reshape(4, 2))


class TestTolerance:
    def test_rtol_is_safety_times_eps_times_sqrt_terms(self) -> None:
        for dtype in (np.float32, np.float64):
            eps = float(np.finfo(dtype).eps)
            rtol, _ = tolerance(dtype, terms=9)
            assert rtol == pytest.approx(SAFETY * eps * 3)

    def test_atol_is_rtol_times_scale_plus_smallest_normal(self) -> None:
        rtol, atol = tolerance(np.float64, scale=5.0, terms=4)
        assert atol == rtol * 5.0 + float(np.finfo(np.float64).smallest_normal)

    def test_float32_tolerance_is_larger_than_float64_by_the_eps_ratio(self) -> None:
        ratio = tolerance(np.float32)[0] / tolerance(np.float64)[0]
        assert ratio == pytest.approx(np.finfo(np.float32).eps / np.finfo(np.float64).eps)

    def test_tolerance_grows_with_terms(self) -> None:
        assert tolerance("float64", terms=100)[0] > tolerance("float64", terms=10)[0]

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            ((np.int64,), {}),
            ((np.float64,), {"scale": -1.0}),
            ((np.float64,), {"scale": math.inf}),
            ((np.float64,), {"terms": 0}),
        ],
    )
    def test_rejects_bad_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"dtype|scale|terms"):
            tolerance(*args, **kwargs)

    @given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20))
    def test_float32_rounding_of_float64_values_is_within_float32_tolerance(
        self, values: list[float]
    ) -> None:
        exact = np.array(values)
        rtol, atol = tolerance(np.float32, scale=magnitude(exact))
        assert compare_trees(exact.astype(np.float32), exact, rtol=rtol, atol=atol).passed

    @given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20), st.integers(0, 19))
    def test_a_one_percent_error_exceeds_the_float32_tolerance(
        self, values: list[float], where: int
    ) -> None:
        exact = np.array(values)
        wrong = exact.copy()
        index = where % exact.size
        wrong[index] += 0.01 * (abs(exact[index]) + magnitude(exact)) + 1e-3
        rtol, atol = tolerance(np.float32, scale=magnitude(exact), terms=100)
        assert not compare_trees(wrong, exact, rtol=rtol, atol=atol).passed


class TestCompareTrees:
    def test_equal_trees_pass(self) -> None:
        result = compare_trees(_params(), _params(), rtol=0.0, atol=0.0)
        assert result.passed
        assert result.n_failed == 0
        assert result.n_total == 6 + 3 + 8
        assert result.max_abs_error == 0.0

    def test_failure_names_namedtuple_field_and_element(self) -> None:
        actual = _params()
        actual.W2[3, 1] += 0.5
        result = compare_trees(actual, _params(), rtol=1e-12, atol=1e-12)
        assert not result.passed
        assert result.location == "W2[3, 1]"
        assert (result.actual, result.expected) == (7.5, 7.0)
        assert result.max_abs_error == 0.5
        assert result.n_failed == 1
        message = str(result)
        assert "W2[3, 1]" in message
        assert "7.5" in message
        assert "rtol=1e-12" in message

    def test_plain_array_location_is_the_index(self) -> None:
        result = compare_trees(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0]), rtol=0, atol=0)
        assert result.location == "[2]"

    def test_worst_element_is_the_one_furthest_outside_its_tolerance(self) -> None:
        expected = np.array([1000.0, 1.0])
        actual = np.array([1000.5, 1.2])  # 5e-4 relative vs 2e-1 relative
        result = compare_trees(actual, expected, rtol=1e-3, atol=0.0)
        assert result.location == "[1]"
        assert result.n_failed == 1

    def test_names_argument_labels_tuple_leaves(self) -> None:
        actual = (np.zeros(2), np.ones((2, 2)))
        expected = (np.zeros(2), np.eye(2))
        result = compare_trees(actual, expected, rtol=0, atol=0, names=("dx", "dw"))
        assert result.location in {"dw[0, 1]", "dw[1, 0]"}

    def test_unnamed_tuple_leaves_are_indexed(self) -> None:
        result = compare_trees(
            (np.zeros(1), np.ones(1)), (np.zeros(1), np.zeros(1)), rtol=0, atol=0
        )
        assert result.location == "[1][0]"

    def test_dict_leaves_are_named_by_key(self) -> None:
        result = compare_trees({"a": np.zeros(2)}, {"a": np.array([0.0, 1.0])}, rtol=0, atol=0)
        assert result.location == "['a'][1]"

    def test_scalar_leaf_location(self) -> None:
        assert compare_trees(1.0, 2.0, rtol=0, atol=0, names="loss").location == "loss"
        assert compare_trees(np.float32(1), 2.0, rtol=0, atol=0).location == "value"

    def test_wrong_number_of_names_raises(self) -> None:
        with pytest.raises(ValueError, match="names"):
            compare_trees((1.0, 2.0), (1.0, 2.0), rtol=0, atol=0, names=("a",))

    def test_shape_mismatch_fails_without_broadcasting(self) -> None:
        result = compare_trees(np.zeros((3, 1)), np.zeros(3), rtol=1, atol=1)
        assert not result.passed
        assert result.detail is not None
        assert "(3, 1)" in str(result)
        assert "(3,)" in str(result)

    @pytest.mark.parametrize(
        ("actual", "expected"),
        [
            ((np.zeros(1), np.zeros(1)), (np.zeros(1),)),
            (np.zeros(1), (np.zeros(1),)),
            ({"a": np.zeros(1)}, {"b": np.zeros(1)}),
            (_params(), Other(1, 2, 3)),
        ],
    )
    def test_structure_mismatch_is_a_failed_comparison_not_an_exception(
        self, actual: Any, expected: Any
    ) -> None:
        result = compare_trees(actual, expected, rtol=1, atol=1)
        assert not result.passed
        assert str(result).startswith("mismatch:")

    def test_namedtuple_against_plain_tuple_of_same_length_compares(self) -> None:
        result = compare_trees(tuple(_params()), _params(), rtol=0, atol=0)
        assert result.passed

    def test_nan_where_expected_is_finite_fails(self) -> None:
        result = compare_trees(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), rtol=1, atol=1)
        assert not result.passed
        assert result.location == "[0]"
        assert result.max_abs_error == math.inf

    def test_finite_where_expected_is_nan_fails(self) -> None:
        assert not compare_trees(np.array([0.0]), np.array([np.nan]), rtol=1, atol=1).passed

    def test_matching_nan_and_inf_at_the_same_place_pass(self) -> None:
        values = np.array([np.nan, np.inf, -np.inf, 1.0])
        assert compare_trees(values, values.copy(), rtol=0, atol=0).passed

    def test_opposite_infinities_fail(self) -> None:
        assert not compare_trees(np.array([np.inf]), np.array([-np.inf]), rtol=1, atol=1).passed

    def test_inputs_of_different_dtypes_compare_as_float64(self) -> None:
        x = np.array([0.1, 0.2], dtype=np.float32)
        assert compare_trees(x, x.astype(np.float64), rtol=0, atol=0).passed

    def test_relative_error_ignores_elements_below_atol(self) -> None:
        result = compare_trees(np.array([1e-20, 2.0]), np.array([0.0, 1.0]), rtol=0, atol=1e-10)
        assert result.max_rel_error == 1.0

    def test_non_numeric_leaf_raises_type_error(self) -> None:
        with pytest.raises(TypeError, match="not numeric"):
            compare_trees(np.array(["a"]), np.array([1.0]), rtol=0, atol=0)

    @given(st.floats(-1e6, 1e6), st.floats(0, 1e-3), st.floats(1e-12, 1e-3))
    def test_passes_exactly_when_within_atol_plus_rtol_times_expected(
        self, expected: float, delta: float, rtol: float
    ) -> None:
        actual = expected + delta
        allowed = 1e-9 + rtol * abs(expected)
        result = compare_trees(actual, expected, rtol=rtol, atol=1e-9)
        assert result.passed == (abs(actual - expected) <= allowed)

    def test_passing_message_says_all_elements_within_tolerance(self) -> None:
        assert "all 17 elements within tolerance" in str(
            compare_trees(_params(), _params(), rtol=0, atol=0)
        )


class TestAssertTreesClose:
    def test_raises_assertion_error_with_the_comparison_message(self) -> None:
        actual = _params()._replace(b1=np.array([1.0, 1.0, 9.0]))
        with pytest.raises(AssertionError, match=r"b1\[2\]"):
            assert_trees_close(actual, _params(), rtol=1e-6, atol=1e-6)

    def test_silent_when_close(self) -> None:
        assert_trees_close(_params(), _params(), rtol=0, atol=0)


def test_magnitude_is_largest_finite_absolute_value() -> None:
    assert magnitude((np.array([1.0, -7.0]), {"a": np.array([np.inf, np.nan, 3.0])})) == 7.0
    assert magnitude(()) == 0.0


def test_comparison_is_frozen() -> None:
    result = compare_trees(1.0, 1.0, rtol=0, atol=0)
    assert isinstance(result, Comparison)
    with pytest.raises(AttributeError):
        result.passed = False  # type: ignore[misc]
