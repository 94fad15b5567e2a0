"""verification.compare: the behaviours that surviving mutants showed untested.

Each test pins one documented behaviour of the comparison helpers (messages naming the leaf,
structure mismatches at every depth, the choice of the worst element, defaults) that the
property tests in ``tests/test_compare.py`` leave free. Found with ``nox -s mutation``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pytest

from verification.compare import (
    SAFETY,
    Comparison,
    assert_trees_close,
    compare_trees,
    magnitude,
    tolerance,
)


class P(NamedTuple):
    W: Any
    b: Any


class Q(NamedTuple):
    x: Any
    y: Any


class Outer(NamedTuple):
    p: Any
    c: Any


ONE = np.array([1.0])
TWO = np.array([2.0])
TOL: dict[str, float] = {"rtol": 1e-12, "atol": 1e-12}


def _detail(actual: Any, expected: Any) -> str:
    result = compare_trees(actual, expected, **TOL)
    assert result.passed is False
    assert result.detail is not None
    return result.detail


def test_tolerance_defaults_are_scale_one_and_one_term() -> None:
    eps, tiny = float(np.finfo(np.float64).eps), float(np.finfo(np.float64).smallest_normal)
    assert tolerance("float64") == (SAFETY * eps, SAFETY * eps + tiny)


def test_structure_mismatch_result_is_failed_with_infinite_errors() -> None:
    result = compare_trees((ONE, ONE), (ONE,), **TOL)
    assert result.passed is False
    assert result.max_abs_error == math.inf
    assert result.max_rel_error == math.inf
    assert result.location is None


@pytest.mark.parametrize(
    ("actual", "expected", "detail"),
    [
        ((ONE, ONE), (ONE,), "at the root: 2 children in actual vs 1 in expected"),
        ((ONE, ONE), ONE, "at the root: actual is a container, expected is a leaf"),
        (ONE, (ONE, ONE), "at the root: actual is a leaf, expected is a container"),
        ({"a": ONE}, (ONE,), "at the root: actual is a container, expected is a container"),
        ({"a": (ONE, ONE)}, {"a": (ONE,)}, "at ['a']: 2 children in actual vs 1 in expected"),
        (((ONE, ONE),), ((ONE,),), "at [0]: 2 children in actual vs 1 in expected"),
        (P(ONE, ONE), Q(ONE, ONE), "at the root: fields ('W', 'b') vs ('x', 'y')"),
        (P((ONE, ONE), ONE), P((ONE,), ONE), "at W: 2 children"),
        (((ONE, ONE), ONE), P((ONE,), ONE), "at W: 2 children"),
        (P((ONE, ONE), ONE), ((ONE,), ONE), "at W: 2 children"),
        (Outer(P(ONE, (ONE, ONE)), ONE), Outer(P(ONE, (ONE,)), ONE), "at p.b: 2 children"),
        ({"k": ONE}, {"j": ONE}, "at the root: keys ['k'] vs ['j']"),
    ],
)
def test_structure_mismatch_names_where_and_what(actual: Any, expected: Any, detail: str) -> None:
    # never an exception: a mismatch at any depth is a failed comparison naming its path
    assert _detail(actual, expected).startswith(detail)


def test_shape_mismatch_of_a_single_array_says_the_array() -> None:
    assert _detail(np.zeros(2), np.zeros(3)) == (
        "the array has shape (2,) in actual but (3,) in expected"
    )


def test_nested_namedtuple_location_is_the_dotted_path() -> None:
    actual = Outer(P(ONE, np.array([0.0, 1.0])), ONE)
    expected = Outer(P(ONE, np.array([0.0, 2.0])), ONE)
    assert compare_trees(actual, expected, **TOL).location == "p.b[1]"


def test_plain_tuple_against_namedtuple_takes_the_expected_field_names() -> None:
    assert compare_trees((ONE, ONE), P(ONE, TWO), **TOL).location == "b[0]"


def test_non_numeric_leaf_message_names_the_side_and_the_leaf() -> None:
    with pytest.raises(TypeError, match=r"^actual leaf b is not numeric"):
        compare_trees(P(ONE, np.array(["x"])), P(ONE, ONE), **TOL)
    with pytest.raises(TypeError, match=r"^expected leaf W is not numeric"):
        compare_trees(P(ONE, ONE), P(np.array(["x"]), ONE), **TOL)
    with pytest.raises(TypeError, match=r"^actual leaf root is not numeric"):
        compare_trees(np.array(["x"]), ONE, **TOL)


def test_an_empty_leaf_does_not_stop_the_comparison() -> None:
    result = compare_trees(P(np.zeros(0), ONE), P(np.zeros(0), TWO), **TOL)
    assert result.passed is False
    assert result.location == "b[0]"


def test_nothing_to_compare_passes_with_no_location() -> None:
    result = compare_trees(np.zeros(0), np.zeros(0), **TOL)
    assert result.passed is True
    assert (result.location, result.actual, result.expected) == (None, None, None)
    assert result.n_total == 0


def test_worst_element_prefers_a_misplaced_nan_over_a_finite_miss() -> None:
    result = compare_trees(np.array([1.0, np.nan]), np.array([1.5, 1.0]), rtol=0.0, atol=0.1)
    assert result.location == "[1]"
    assert result.n_failed == 2


def test_worst_element_ties_keep_the_first_leaf() -> None:
    assert compare_trees(P(ONE, ONE), P(TWO, TWO), **TOL).location == "W[0]"


def test_zero_tolerance_exact_zero_is_not_worse_than_a_small_error() -> None:
    # element 0: error 0 against allowed 0 is not a miss at all; element 1 uses 1/10 of its
    # allowance, so it is the worst element
    a, e = np.array([0.0, 1.0]), np.array([0.0, 1.0 + 2**-40])
    result = compare_trees(a, e, rtol=2**-40 * 10, atol=0.0)
    assert result.passed is True
    assert result.location == "[1]"


def test_max_rel_error_is_error_over_expected_and_zero_when_equal() -> None:
    result = compare_trees(TWO, np.array([4.0]), **TOL)
    assert result.max_rel_error == 0.5
    assert compare_trees(TWO, TWO, **TOL).max_rel_error == 0.0


def test_overflowing_difference_fails_without_warning() -> None:
    # 1e308 - (-1e308) overflows to inf: a failure, not a RuntimeWarning
    result = compare_trees(np.array([1e308]), np.array([-1e308]), **TOL)
    assert result.passed is False
    assert result.max_abs_error == math.inf


def test_failure_message_states_error_and_allowance() -> None:
    # actual 1, expected 2: |error| 1 > atol + rtol * 2 = 0.01 + 0.2
    message = str(compare_trees(ONE, TWO, rtol=0.1, atol=0.01))
    assert "|error| 1 > atol + rtol*|expected| = 0.21" in message
    passing = str(compare_trees(ONE, ONE, rtol=0.1, atol=0.01))
    assert "max abs error 0, max rel error 0" in passing


def test_message_of_an_unlocated_failure() -> None:
    # a Comparison built by hand may fail without a location: its message still says how many
    c = Comparison(False, 1.0, 1.0, None, None, 2.0, 0.1, 0.01, n_failed=3, n_total=4)
    assert str(c) == "3 of 4 elements out of tolerance (rtol=0.1, atol=0.01)"


def test_assert_trees_close_uses_the_given_names() -> None:
    with pytest.raises(AssertionError, match=r"worst at dx\[0\]"):
        assert_trees_close((ONE,), (TWO,), names=("dx",), **TOL)


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [(np.array([-(2**63)]), 2.0**63), (2**70, 2.0**70), (np.array([True, False]), 1.0)],
)
def test_magnitude_is_computed_in_float64(leaf: Any, expected: float) -> None:
    # int64's most negative value has no int64 absolute value; a Python int beyond int64 is
    # an object array unless converted
    assert magnitude(leaf) == expected
