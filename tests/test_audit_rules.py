"""The audit's own rules, each pinned by a test that fails when the rule is removed (issue 21,
item 15: five hand-made regressions of ``verification/auditing`` survived the suite).

Each test goes through the audit's behaviour (a verdict, a diagnosis, a counterexample, the
oracle's opinion), not through the constant or the line that implements the rule.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

from verification.auditing import audit
from verification.auditing._engine import oracle_for

Array = Any
ZOO = runpy.run_path(str(Path(__file__).with_name("bug_zoo.py")))


# -- rule 1: a one-sided finite-difference step is never below 1024 ulp of the input --------


def _square_sum(x: Array) -> Array:
    return jnp.sum(x**2)


def test_one_sided_slopes_take_a_step_the_input_can_take() -> None:
    # A large resolution asks for a tiny step: 64 eps (|L| + 1) / 1e12 ~ 1e-21, which leaves
    # 1000 + h == 1000 in float64 and reads both slopes as 0.
    oracle = oracle_for(_square_sum, (0,))
    x = np.array([1000.0, -1000.0])
    fd = oracle.one_sided_slopes((x,), [np.array([1.0, 0.0])], 1e12)
    assert fd.step >= 1024 * np.finfo(np.float64).eps * 1000
    assert abs(fd.forward - 2000.0) < 1.0
    assert abs(fd.backward - 2000.0) < 1.0


def test_correct_network_gradient_passes_at_the_seed_that_once_raised_a_false_alarm() -> None:
    candidate, loss, problems = ZOO["CORRECT"]["matrix form"]
    report = audit(candidate, loss, problems(), seed=105)
    assert report.passed, str(report)


# -- rule 2: the reference is perturbed at both signs ------------------------------------------


def _relu_layer(w: Array, x: Array) -> Array:
    return jnp.sum(jax.nn.relu(x @ w))


def test_perturbed_reference_crosses_a_kink_that_cancels_within_rounding_at_every_draw() -> None:
    # x @ w = a + b - fl(a + b) = 0 exactly: relu'(0) = 0 here, 1 on one side. Multiplying the
    # input by (1 + r) moves the pre-activation to one side, by (1 - r) to the other: one of
    # the two gradients must show the jump, whatever r was drawn.
    a, b = 0.8132702392002724, 0.9127555772777217
    x, w = np.array([[a, b, -(a + b)]]), np.ones((3, 1))
    oracle = oracle_for(_relu_layer, (0,))
    _, grad = oracle.gradient((w, x))
    assert np.all(grad[0] == 0)
    v = [np.ones((3, 1)) / np.sqrt(3)]
    for seed in range(8):
        opinion = oracle.second_opinion((w, x), grad, v, np.random.default_rng(seed))
        jump = np.max(np.abs(opinion.grad_perturbed[0] - grad[0]))
        assert jump > 1.0, f"seed {seed}: the perturbed gradient stayed on the kink's side"


# -- rule 3: a missing 1/m is named only when the factor doubles with m ------------------------


def _mean_square(x: Array) -> Array:
    return jnp.sum(x**2) / x.shape[0]


def test_a_factor_equal_to_a_size_that_does_not_follow_it_is_not_called_a_missing_mean() -> None:
    def twice(x: Array) -> Array:  # Bug: x 2 everywhere, and m = 2 in this input
        return 2 * (2 * x / x.shape[0])

    x = np.random.default_rng(0).uniform(-2, 2, (2, 3))
    report = audit(twice, _mean_square, (x,), seed=0)
    assert not report.passed
    assert "1/m" not in (report.diagnosis or ""), report.diagnosis
    assert "constant factor 2" in (report.diagnosis or ""), report.diagnosis


def test_a_factor_that_doubles_with_m_is_called_a_missing_mean() -> None:
    def no_mean(x: Array) -> Array:  # Bug: the 1/m is missing
        return 2 * x

    x = np.random.default_rng(0).uniform(-2, 2, (2, 3))
    report = audit(no_mean, _mean_square, (x,), seed=0)
    assert "is missing" in (report.diagnosis or ""), report.diagnosis


# -- rule 4: a mask's pattern must be seen at two inputs ---------------------------------------


def _cube_sum(x: Array) -> Array:
    return jnp.sum(x**3) / 3


def test_a_mask_pattern_seen_at_one_input_only_is_not_called_a_missing_mask() -> None:
    def wrong_at_zeros(x: Array) -> Array:
        # Bug: x^2, plus the largest |x| where x is exactly 0 (so the all-zero input passes
        # and the counterexample keeps a nonzero element). Wrong only where the reference is
        # 0 on the counterexample, like a missing mask, but right at every input near it.
        return x**2 + (x == 0) * np.max(np.abs(x))

    # Already simple (zeroing the 1 makes it pass): no other failing input to lean on.
    report = audit(wrong_at_zeros, _cube_sum, (np.array([[0.0, 1.0]]),), seed=0)
    assert not report.passed
    assert "mask" not in (report.diagnosis or ""), report.diagnosis


def test_a_mask_pattern_seen_at_several_inputs_is_called_a_missing_mask() -> None:
    def relu_mask_dropped(x: Array) -> Array:
        return np.ones_like(x)  # Bug: relu's mask dropped

    def relu_sum(x: Array) -> Array:
        return jnp.sum(jax.nn.relu(x))

    report = audit(relu_mask_dropped, relu_sum, (np.array([[-1.0, 1.5, -2.0]]),), seed=0)
    assert "missing mask" in (report.diagnosis or ""), report.diagnosis


# -- rule 5: the counterexample is simplified past hypothesis's shrinking ----------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_counterexample_is_simplified_where_hypothesis_cannot_shrink(dtype: Any) -> None:
    def off_by_one(x: Array) -> Array:  # Bug: wrong at every input, so zeros keep it failing
        return 2 * x + 1

    x = np.full((8, 8), 1.4988, dtype=dtype)  # MAX_TRIALS = 64 elements: each one re-checked
    report = audit(off_by_one, _square_sum, st.tuples(st.just(x)), max_examples=5, seed=0)
    assert not report.passed
    assert np.all(report.counterexample[0] == 0), report.counterexample
    assert report.counterexample[0].dtype == dtype


def _weighted(x: Array, w: Array, lam: float) -> Array:
    return lam * jnp.sum(w**2) + jnp.sum(x)


def test_only_the_differentiated_argument_is_simplified_and_fixed_numbers_stay_numbers() -> None:
    def off_by_one(x: Array, w: Array, lam: float) -> Array:
        return 2 * lam * w + 1

    x, w = np.full((2, 2), 1.5), np.full((2, 3), 1.4988)
    args = st.tuples(st.just(x), st.just(w), st.just(0.5))
    report = audit(off_by_one, _weighted, args, argnums=1, max_examples=5, seed=0)
    got_x, got_w, lam = report.counterexample
    assert np.all(got_w == 0), got_w
    assert np.all(got_x == 1.5), got_x  # not differentiated: left as drawn
    assert type(lam) is float, type(lam)  # printed as 0.5 in the reproducer


def test_simplification_stops_after_max_trials_rechecks_and_skips_simple_elements() -> None:
    def off_by_one(x: Array) -> Array:
        return 2 * x + 1

    x = np.full(66, 1.4988)
    x[0] = 0.0  # already simple: no re-check spent on it
    report = audit(off_by_one, _square_sum, st.tuples(st.just(x)), max_examples=5, seed=0)
    (got,) = report.counterexample
    assert np.all(got[:65] == 0), got  # the first 64 nonzero elements, one re-check each
    assert got[65] == 1.4988, got  # then MAX_TRIALS is spent


def test_a_change_that_loses_the_failure_is_undone() -> None:
    def wrong_while_first_is_nonzero(x: Array) -> Array:
        return 2 * x + (x.flat[0] != 0)

    x = np.array([1.5, 1.5, 1.5])
    report = audit(wrong_while_first_is_nonzero, _square_sum, (x,), seed=0)
    np.testing.assert_array_equal(report.counterexample[0], [1.5, 0.0, 0.0])


def test_distinct_values_stay_distinct_and_each_takes_its_own_simplest_value() -> None:
    from verification.auditing._grammar import ArraySpec, parse_kinds
    from verification.auditing._simplify import declare_domain

    def off_by_one(x: Array) -> Array:
        return -1 / x**2 + 1  # Bug: d(1/x)/dx, plus 1

    x = np.array([-2.0, -3.0, 2.0])
    domain = (ArraySpec(("n",), parse_kinds(["|x|>=0.5", "distinct"])),)
    args = declare_domain(st.tuples(st.just(x)), domain)
    report = audit(off_by_one, lambda x: jnp.sum(1 / x), args, max_examples=5, seed=0)
    # -2 -> -1; -3 cannot (-1 is taken); 2 -> +1: the next element is still tried
    np.testing.assert_array_equal(report.counterexample[0], [-1.0, -3.0, 1.0])


# -- rule: a wrong shape whose reference is 0 near the counterexample is judged elsewhere ----


def _dead_zone_loss(x: Array, b: Array) -> Array:
    return jnp.sum(jax.nn.relu(x + b - 1) ** 2) / x.shape[0]


def _dead_zone_grad_keepdims(x: Array, b: Array) -> Array:
    return (2 * np.maximum(x + b - 1, 0)).sum(axis=0, keepdims=True) / x.shape[0]


def test_values_of_a_wrong_shape_are_judged_at_an_input_drawn_where_the_reference_is_not_0() -> (
    None
):
    # The shrunk counterexample is all 0 and every input near it lies in the dead zone of the
    # relu, where the reference is 0 too: only an input drawn from the audit's own strategy
    # (values away from 0) can show that the values are right and only the shape is wrong.
    from verification.auditing import named_arrays

    shapes = named_arrays({"x": "m,n", "b": "n"})
    report = audit(_dead_zone_grad_keepdims, _dead_zone_loss, shapes, argnums=1, seed=0)
    assert report.kind == "wrong shape"
    assert "values right, only the shape is wrong" in (report.diagnosis or ""), report.diagnosis


def _dead_zone_grad_doubled(x: Array, b: Array) -> Array:
    out: Array = 2 * (2 * np.maximum(x + b - 1, 0)).sum(axis=0) / x.shape[0]
    return out


def test_an_input_where_the_reference_is_0_is_no_evidence_against_a_constant_factor() -> None:
    # Inputs near the counterexample that fall in the relu's dead zone have a reference of 0:
    # any candidate agrees there, so they neither confirm nor refute the factor 2.
    from verification.auditing import named_arrays

    shapes = named_arrays({"x": "m,n", "b": "n"})
    report = audit(_dead_zone_grad_doubled, _dead_zone_loss, shapes, argnums=1, seed=0)
    assert report.kind == "mismatch"
    assert "off by a constant factor 2" in (report.diagnosis or ""), report.diagnosis


def test_right_values_in_another_shape_are_told_values_right_and_wrong_ones_are_not() -> None:
    from verification.auditing._diagnose import shape_words

    ref = np.arange(1.0, 7.0)
    assert (
        shape_words(ref.reshape(1, 6), ref) == "values right, shape (1, 6) where (6,) is expected"
    )
    assert "values right" not in shape_words(-ref.reshape(1, 6), ref)


def test_an_axis_of_length_1_where_the_reference_is_0_says_the_values_were_not_compared() -> None:
    from verification.auditing._diagnose import shape_words

    assert shape_words(np.ones((3, 1)), np.zeros(3)) == (
        "wrong shape (3, 1), expected (3,): an axis of length 1 added or lost "
        "(the reference is 0 here: values not compared)"
    )


def _linear_loss(w: Any, x: Any) -> Any:
    return jnp.sum(x @ w)


def _linear_grad_as_int(w: Array, x: Array) -> Array:
    out: Array = (x.T @ np.ones((x.shape[0], w.shape[1]))).astype(np.int64)
    return out


def test_a_wrong_dtype_whose_values_are_right_here_is_not_rechecked_elsewhere() -> None:
    # dL/dw = x^T 1 holds integers for integer x: the int64 result is right at the
    # counterexample already, so the words say so once and no other input is tried.
    args = (np.ones((3, 2)), np.array([[1.0, 2.0, -1.0], [0.0, 3.0, 1.0]]))
    report = audit(_linear_grad_as_int, _linear_loss, args, argnums=0, seed=0)
    assert report.kind == "wrong dtype", str(report)
    diagnosis = report.diagnosis or ""
    assert "came back as int64 (its values are right)" in diagnosis, diagnosis
    assert "other inputs" not in diagnosis


def test_the_input_drawn_to_judge_a_wrong_shape_is_one_where_the_reference_is_not_0() -> None:
    # One bias element: its reference is 0 at every input in the relu's dead zone, so only
    # an input drawn where it is not 0 shows that the values are right.
    from verification.auditing import named_arrays

    shapes = named_arrays({"x": "m,n", "b": "n"}, dims={"n": [1]})
    report = audit(_dead_zone_grad_keepdims, _dead_zone_loss, shapes, argnums=1, seed=0)
    assert report.kind == "wrong shape"
    assert "values right, only the shape is wrong" in (report.diagnosis or ""), report.diagnosis


def test_the_terms_a_product_sums_are_bounded_by_the_product_of_its_operands() -> None:
    # The backward pass of sum(3 (x @ w)) forms x^T (3 ones): sums of terms 100 * 3, though
    # neither operand exceeds 100. The tolerance's allowance for cancellation uses that bound.
    from verification.auditing._cancellation import summed_terms

    x, w = np.full((4, 2), 100.0), np.ones((2, 3))
    assert float(summed_terms(lambda w: jnp.sum((x @ w) * 3.0), w)) == 300.0


def test_gradients_in_another_order_are_named_in_the_order_returned_and_asked() -> None:
    from verification.auditing._guards import wrong_order

    gx, gw = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25])
    assert wrong_order([gw, gx], [gx, gw], ["x", "w"]) == (
        "the gradients are right but in another order: returned (w, x) where argnums asks for "
        "(x, w)"
    )
    assert wrong_order([gx, gw], [gx, gw], ["x", "w"]) is None


def test_the_first_axis_of_the_first_undifferentiated_argument_is_the_batch_size() -> None:
    from verification.auditing._trees import dimensions

    x, w, y = np.ones((5, 3)), np.ones((3, 4)), np.ones((5, 4))
    assert dimensions((w, x, y), (0,), ["w", "x", "y"]) == [
        (5, "m, the batch size (x.shape[0])"),
        (3, "x.shape[1]"),
        (4, "y.shape[1]"),
    ]


# -- the diagnosis's own arithmetic never warns: a candidate's huge values are evidence, not noise


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        ([1e308, -1e308, 3e307], [1e-308, 2.0, 1e-300]),  # ratios overflow, products underflow
        ([1e200, 2e200], [1e-200, 2e-200]),
    ],
)
def test_diagnosing_values_that_overflow_its_fits_warns_nothing_even_under_warnings_as_errors(
    actual: list[float], expected: list[float]
) -> None:
    import warnings

    from verification.auditing._diagnose import diagnose

    with warnings.catch_warnings(), np.errstate(all="warn"):
        warnings.simplefilter("error")  # as under pytest -W error: a warning would be a crash
        words = diagnose(np.array(actual), np.array(expected))
    assert "elements differ" in words


# -- a persistent compilation cache that cannot be read is no reason to warn or to fail --------


def test_a_compilation_cache_entry_that_cannot_be_read_is_no_warning_of_the_audit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import warnings

    import jax.stages

    from verification.auditing._program import compile_program

    original = jax.stages.Lowered.compile

    def compile_evicted(self: Any, *args: Any, **kwargs: Any) -> Any:  # as JAX says it
        warnings.warn(
            "Error reading persistent compilation cache entry for 'jit_fn': FileNotFoundError",
            UserWarning,
            stacklevel=2,
        )
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile_evicted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under pytest -W error
        compiled, _ = compile_program(lambda x: jnp.sum(x**2), np.ones(3), name="test")
    assert float(compiled(np.full(3, 2.0))) == 12.0
