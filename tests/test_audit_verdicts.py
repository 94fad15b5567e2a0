"""The audit's verdicts and words (issue 11): repeatability within rounding, honest summaries,
INCONCLUSIVE, the loss's domain, labelled finite differences, and errors in what the user gave.

Each test reproduces one failure mode seen on real code and checks the new behaviour.
"""

from __future__ import annotations

import random
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import verification
from verification.auditing import AuditSpecError, audit, named_arrays
from verification.auditing._repeat import spread

XW = named_arrays({"x": "m,n", "w": "n,h"}, bounds=(2.0,))


def tanh_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jnp.tanh(x @ w)) / x.shape[0]


def tanh_grad(x: Any, w: Any) -> Any:
    return x.T @ (1 - np.tanh(x @ w) ** 2) / x.shape[0]


# -- repeatability within rounding ------------------------------------------------------------


def shuffled_sum_grad(x: Any, w: Any) -> Any:
    """Sums over the samples in a random order (a set, threads): 1-ulp differences per call."""
    d = 1 - np.tanh(x @ w) ** 2
    order = list(range(x.shape[0]))
    random.shuffle(order)
    out = np.zeros_like(w)
    for i in order:
        out += np.outer(x[i] * 1.0000000000000002, d[i])
    return out / x.shape[0]


def test_a_candidate_summing_in_a_shuffled_order_passes_with_its_spread_reported() -> None:
    x = np.array([[0.1, 0.7], [0.3, -0.2], [1e-3, 0.9], [0.61, 0.37], [0.2, 0.1]])
    w = np.array([[0.3, -0.1, 0.2], [0.5, 0.05, -0.4]])
    random.seed(0)
    runs = [shuffled_sum_grad(x, w) for _ in range(12)]
    assert any(not np.array_equal(runs[0], r) for r in runs), "the shuffle never changed a bit"
    report = audit(
        shuffled_sum_grad,
        tanh_loss,
        named_arrays({"x": "5,2", "w": "2,3"}),
        argnums=1,
        max_examples=40,
        seed=0,
    )
    assert report.passed, str(report)
    assert report.spread_ulp > 0
    assert "ulp: within what reordering" in str(report)


def test_noise_above_the_rounding_bound_is_nondeterministic_with_its_spread() -> None:
    rng = np.random.default_rng(0)

    def noisy(x: Any, w: Any) -> Any:
        return tanh_grad(x, w) * (1 + 1e-9 * rng.standard_normal(w.shape))

    report = audit(noisy, tanh_loss, XW, argnums=1, max_examples=20, seed=0)
    assert report.kind == "nondeterministic", str(report)
    assert "ulp of the leaf's largest element" in str(report.diagnosis)
    assert "hypothesis" not in str(report).lower()
    # The reproducer calls it twice.
    assert str(report).count("print(grad_fn(*copy.deepcopy(args)))") == 2


def test_nan_in_one_call_only_is_nondeterministic() -> None:
    calls = {"n": 0}

    def sometimes_nan(x: Any, w: Any) -> Any:
        calls["n"] += 1
        g = tanh_grad(x, w)
        return g * np.nan if calls["n"] % 2 == 0 else g

    report = audit(sometimes_nan, tanh_loss, XW, argnums=1, max_examples=10, seed=0)
    assert report.kind == "nondeterministic"
    assert "inf" in str(report.diagnosis)


def test_spread_is_none_for_bitwise_equal_results_and_measured_in_ulp() -> None:
    a = [np.array([1.0, 2.0])]
    assert spread(a, [a[0].copy()], terms=2) is None
    s = spread(a, [np.array([1.0, np.nextafter(2.0, 3.0)])], terms=2)
    assert s is not None
    assert (s.within, s.ulp, s.location) == (True, 1.0, "[1]")


def test_calls_that_differ_far_beyond_the_rounding_of_small_values_are_not_within_it() -> None:
    # the bound follows the leaf's own scale: at 1e-6, a 1e-10 relative change is 1e6 ulp
    a = [np.array([1e-6, -2e-6])]
    far = spread(a, [np.array([1e-6 * (1 + 1e-10), -2e-6])], terms=4)
    assert far is not None
    assert not far.within
    near = spread(a, [np.array([np.nextafter(1e-6, 1.0), -2e-6])], terms=4)
    assert near is not None
    assert near.within


def test_a_gradient_returned_as_none_is_named_as_such() -> None:
    def w_forgotten(x: Any, w: Any) -> Any:
        return ((1 - np.tanh(x @ w) ** 2) @ w.T / x.shape[0], None)  # dL/dx right, dL/dw None

    report = audit(w_forgotten, tanh_loss, XW, argnums=(0, 1), max_examples=5, seed=0)
    assert report.kind == "wrong shape", str(report)
    assert report.diagnosis == "args[1]: returned None", str(report)


def test_a_failure_that_does_not_reproduce_gets_the_same_report_without_search_internals() -> None:
    wrong_calls_left = [2]

    def stateful(x: Any, w: Any) -> Any:
        # Wrong on both calls of the first example with a nonzero x, right ever after: the
        # failure does not reproduce when the same example is checked again.
        if x.any() and wrong_calls_left[0] > 0:
            wrong_calls_left[0] -= 1
            return 2.0 * tanh_grad(x, w)
        return tanh_grad(x, w)

    shapes = named_arrays(
        {"x": "m,n", "w": "n,h"}, bounds=(2.0,), dims={"m": [2], "n": [2], "h": [2]}
    )
    report = audit(stateful, tanh_loss, shapes, argnums=1, max_examples=20, seed=0)
    assert report.kind == "nondeterministic", str(report)
    text = str(report)
    assert "replayed" not in text
    assert "hypothesis" not in str(report.diagnosis).lower()
    assert "Flaky" not in text
    assert "passed on the same input when it was checked again" in text
    assert report.counterexample is not None
    assert text.count("print(grad_fn(*copy.deepcopy(args)))") == 2


# -- summaries --------------------------------------------------------------------------------


def step_at_zero_is_one(z: Any) -> Any:
    return (z >= 0).astype(z.dtype)


def relu_sum(z: Any) -> Any:
    return jnp.sum(jax.nn.relu(z))


def test_uncertain_examples_stay_out_of_the_largest_error_and_a_warning_says_how_many() -> None:
    zeros_often = named_arrays({"z": "m,k:ints[-1,1]"})
    report = audit(step_at_zero_is_one, relu_sum, zeros_often, max_examples=40, seed=0)
    assert report.passed, str(report)
    assert report.uncertain > report.examples / 3
    assert report.max_abs_error == 0.0  # the kink's disagreements are not "errors"
    assert "WARNING" in str(report)
    assert "more than a third" in str(report)


def test_error_relative_to_the_gradients_scale_has_a_floor() -> None:
    def loss(z: Any, y: Any) -> Any:  # a logistic loss, saturated by logits of 1000
        return jnp.sum(jax.nn.softplus(-y * z))

    def textbook(z: Any, y: Any) -> Any:
        return -y / (1 + np.exp(np.clip(y * z, -700, 700)))

    spec = named_arrays({"z": "m:|x|>=200", "y": "m:pm1"}, bounds=(1000.0,))
    report = audit(textbook, loss, spec, max_examples=40, seed=0)
    assert report.passed, str(report)
    assert report.max_scaled_error < 1e-3, str(report)


def test_nothing_checked_is_inconclusive_not_passed() -> None:
    x = np.array([[np.nan, 1.0]])
    w = np.array([[1.0], [2.0]])
    report = audit(tanh_grad, tanh_loss, (x, w), argnums=1)
    assert not report.passed
    assert report.inconclusive
    assert report.verdict == "INCONCLUSIVE"
    assert str(report).startswith("INCONCLUSIVE")
    with pytest.raises(AssertionError, match="INCONCLUSIVE"):
        verification.assert_gradient_correct(tanh_grad, tanh_loss, (x, w), argnums=1)


def test_examples_outside_the_loss_domain_are_skipped_counted_and_never_blamed() -> None:
    def log_loss(x: Any) -> Any:
        return jnp.sum(jnp.log(x))

    def grad(x: Any) -> Any:
        return 1 / x

    report = audit(grad, log_loss, named_arrays({"x": "m"}), max_examples=40, seed=0)
    assert report.passed or report.inconclusive, str(report)
    assert report.out_of_domain > 0
    text = str(report)
    assert f"{report.out_of_domain} example(s) outside the loss's domain" in text
    assert "the input spec does not fit the loss" in text
    fitted = audit(grad, log_loss, named_arrays({"x": "m:positive"}), max_examples=40, seed=0)
    assert fitted.passed
    assert fitted.out_of_domain == 0


def test_the_finite_difference_in_a_failure_is_labelled_with_step_and_sides() -> None:
    def doubled(x: Any, w: Any) -> Any:
        return 2 * tanh_grad(x, w)

    report = audit(doubled, tanh_loss, XW, argnums=1, max_examples=30, seed=0)
    assert "finite difference" in str(report)
    assert report.finite_difference_note is not None
    assert "central (two-sided), step" in report.finite_difference_note


def test_a_finite_difference_across_a_kink_says_so() -> None:
    def wrong_mask(z: Any) -> Any:
        return (z >= 0.5).astype(z.dtype)

    z = np.array([1e-7, 2.0])  # the failing element within the step of relu's kink
    report = audit(wrong_mask, relu_sum, (z,))
    assert report.kind == "mismatch", str(report)
    assert report.finite_difference_note is not None
    assert "straddles a kink or clip" in report.finite_difference_note


# -- errors in what the user gave -------------------------------------------------------------


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return tanh_grad(*args)


@pytest.mark.parametrize(
    ("loss", "words"),
    [
        (lambda x: jnp.sum(x), "does not take the 2 arguments"),
        (lambda x, w: jnp.tanh(x @ w), "must return a scalar"),
        (lambda x, w: np.sum(np.tanh(np.asarray(x) @ np.asarray(w))), "not JAX-traceable"),
        (lambda x, w: jnp.sum(x @ w.T @ w @ w), "raised"),
    ],
)
def test_a_broken_loss_is_a_spec_error_before_any_candidate_call(loss: Any, words: str) -> None:
    candidate = Counting()
    shapes = named_arrays({"x": "m,n", "w": "n,h"}, dims={"m": [2], "n": [3], "h": [2]})
    with pytest.raises(AuditSpecError, match=words):
        audit(candidate, loss, shapes, argnums=1, max_examples=5, seed=0)
    assert candidate.calls == 0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"argnums": 5}, "out of range"),
        ({"argnums": -1}, "argnums"),
        ({"max_examples": 0}, "max_examples"),
        ({"rtol": -1.0}, "rtol"),
    ],
)
def test_bad_options_are_spec_errors(kwargs: dict[str, Any], words: str) -> None:
    candidate = Counting()
    args = (np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(AuditSpecError, match=words):
        audit(candidate, tanh_loss, args, **kwargs)
    with pytest.raises(AuditSpecError, match=words):
        audit(candidate, tanh_loss, XW, **kwargs)
    assert candidate.calls == 0


def test_argnums_beyond_the_drawn_arguments_is_a_spec_error() -> None:
    with pytest.raises(AuditSpecError, match="out of range"):
        audit(Counting(), tanh_loss, XW, argnums=(0, 2), max_examples=3, seed=0)


def test_a_differentiated_integer_argument_is_a_spec_error() -> None:
    spec = named_arrays({"x": "m,n:ints[0,3]", "y": "m:classes(n)"})
    with pytest.raises(AuditSpecError, match="float"):
        audit(Counting(), lambda x, y: jnp.sum(x), spec, argnums=1, max_examples=3, seed=0)


def test_audit_spec_error_is_exported_and_a_value_error() -> None:
    assert verification.AuditSpecError is AuditSpecError
    assert issubclass(AuditSpecError, ValueError)
