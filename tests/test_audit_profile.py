"""Where an audit's time goes (``profile=True``), what ``quick=True`` skips, and the speed
mechanisms behind them: one compiled program per kind and shape, finite differences without a
gradient, a large counterexample's factor re-checked on a sub-batch."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from jax.nn import log_softmax

from verification import audit
from verification.auditing import _program
from verification.auditing._evidence import LARGE
from verification.auditing._factor import SUB_BATCH
from verification.auditing._oracle import Oracle
from verification.auditing._profile import PHASES, Profile, phase, profiling
from verification.cli.audit import main

Array = np.ndarray[Any, Any]


def loss(x: Any, w: Any, y: Any) -> Any:
    """Softmax regression, mean cross-entropy over the m rows of x."""
    return -jnp.sum(y * log_softmax(x @ w, axis=1)) / x.shape[0]


def _probabilities(x: Array, w: Array) -> Array:
    z = x @ w
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def grad_w(x: Array, w: Array, y: Array) -> Array:
    out: Array = x.T @ (_probabilities(x, w) - y) / x.shape[0]
    return out


def grad_w_no_mean(x: Array, w: Array, y: Array) -> Array:
    return grad_w(x, w, y) * x.shape[0]


def grad_w_times_3(x: Array, w: Array, y: Array) -> Array:
    return grad_w(x, w, y) * 3.0


def grad_w_scaled_by_the_data(x: Array, w: Array, y: Array) -> Array:
    """c times the gradient, with c depending on the whole batch: constant on one input only."""
    return grad_w(x, w, y) * (2.0 + float(np.mean(x)) ** 2)


def grad_w_one_element(x: Array, w: Array, y: Array) -> Array:
    g = grad_w(x, w, y)
    g[0, 0] += 0.1 * np.max(np.abs(g))
    return g


def _problem(m: int, n: int, k: int, seed: int = 0) -> tuple[Array, Array, Array]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n))
    w = rng.standard_normal((n, k)) / math.sqrt(n)
    y = np.eye(k)[rng.integers(0, k, m)]
    return x, w, y


SMALL = _problem(16, 6, 3)
BIG = _problem(1024, 100, 4)  # 106,800 elements: above LARGE, a sub-batch re-check
assert sum(a.size for a in BIG) > LARGE


class TestProfile:
    def test_phases_add_up_to_the_total(self) -> None:
        report = audit(grad_w_no_mean, loss, SMALL, argnums=1, seed=0, profile=True)
        profile = report.profile
        assert profile is not None
        assert not report.passed
        assert list(profile.seconds) == list(PHASES)
        assert sum(profile.seconds.values()) == pytest.approx(profile.total, rel=1e-9)
        assert all(s >= 0 for s in profile.seconds.values())
        assert profile.runs["reference runs"] >= 1
        assert profile.runs["candidate"] >= 1
        assert profile.runs["second opinion"] == 1  # only the failing example needs one

    def test_each_program_is_compiled_once_per_shape(self) -> None:
        def fresh(x: Any, w: Any, y: Any) -> Any:  # nothing compiled for it yet
            return loss(x, w, y)

        report = audit(grad_w_one_element, fresh, SMALL, argnums=1, seed=0, profile=True)
        profile = report.profile
        assert profile is not None
        assert report.finite_difference is not None
        compiled = [(p.program, p.shapes) for p in profile.programs]
        assert len(compiled) == len(set(compiled))
        # a small problem: the finite differences run in the second opinion's program
        assert sorted(p for p, _ in compiled) == ["reference runs", "second opinion"]
        assert all(s == "(16, 6), (6, 3), (16, 3)" for _, s in compiled)
        # the confirmation (along the difference, then along the worst element's own coordinate:
        # a valid subgradient at a tie, ``_subgradient``) and the worst element's finite
        # difference (a run of the diagnosis) share one program
        assert profile.runs["finite differences"] == 2
        assert profile.runs["diagnosis and re-checks"] >= 1  # simplifying, the difference
        again = audit(grad_w_one_element, fresh, SMALL, argnums=1, seed=0, profile=True)
        assert again.profile is not None
        assert again.profile.programs == []

    def test_report_prints_the_profile_after_the_verdict(self) -> None:
        text = str(audit(grad_w, loss, SMALL, argnums=1, seed=0, profile=True))
        assert text.startswith("PASSED")
        tail = text[text.index("profile:") :]
        assert "reference runs" in tail
        assert "programs compiled: " in tail
        assert "\n  profile:" not in str(audit(grad_w, loss, SMALL, argnums=1, seed=0))

    def test_phase_outside_an_audit_records_nothing(self) -> None:
        with phase("candidate", run=True):
            pass
        profile = Profile()
        with profiling(profile), phase("candidate", run=True):
            pass
        assert profile.runs == {"candidate": 1}

    def test_to_dict_is_json_ready(self) -> None:
        import json

        report = audit(grad_w, loss, SMALL, argnums=1, seed=0, profile=True)
        data = json.loads(json.dumps(report.to_dict()))
        assert set(data["profile"]["seconds"]) == set(PHASES)


def test_the_json_counterexample_is_the_source_of_the_arguments_themselves() -> None:
    report = audit(grad_w_no_mean, loss, SMALL, argnums=1, seed=0)
    assert not report.passed
    text = report.to_dict()["counterexample"]
    args = eval(text, {"np": np, "array": np.array, "float64": np.float64})
    assert len(args) == len(SMALL)
    for got, want in zip(args, report.counterexample, strict=True):
        np.testing.assert_array_equal(got, want)


class TestQuick:
    def test_quick_keeps_verdict_and_offending_elements_and_skips_the_explanation(self) -> None:
        full = audit(grad_w_no_mean, loss, BIG, argnums=1, seed=0, profile=True)
        quick = audit(grad_w_no_mean, loss, BIG, argnums=1, seed=0, quick=True, profile=True)
        assert (quick.verdict, quick.kind) == (full.verdict, full.kind) == ("FAILED", "mismatch")
        assert quick.location == full.location
        assert quick.offending == full.offending
        assert "is missing" in (full.diagnosis or "")
        assert full.finite_difference is not None
        assert "is missing" not in (quick.diagnosis or "")
        assert quick.finite_difference is None
        assert quick.profile is not None
        assert full.profile is not None
        # no re-check: none of the runs the full audit makes to explain (its factor re-checked
        # on a sub-batch), and the verdict's one candidate call and one reference run (counts,
        # not seconds: a loaded machine moves the seconds)
        assert quick.profile.runs["diagnosis and re-checks"] == 0
        assert full.profile.runs["diagnosis and re-checks"] > 0
        assert (quick.profile.runs["candidate"], quick.profile.runs["reference runs"]) == (1, 1)

    def test_quick_does_not_shrink(self) -> None:
        from verification.auditing import named_arrays
        from verification.auditing._shapes import parse_shapes

        shapes = named_arrays(parse_shapes("x=m,n w=n,k y=m,k:onehot"))
        full = audit(grad_w_no_mean, loss, shapes, argnums=1, seed=3, max_examples=50)
        quick = audit(grad_w_no_mean, loss, shapes, argnums=1, seed=3, max_examples=50, quick=True)
        assert not full.passed
        assert not quick.passed
        assert quick.shrink_steps == 0
        assert full.shrink_steps > 0


class TestLargeEvidence:
    def test_a_missing_mean_is_named_from_a_sub_batch(self) -> None:
        report = audit(grad_w_no_mean, loss, BIG, argnums=1, seed=0)
        assert f"x {BIG[0].shape[0]} = m, the batch size" in (report.diagnosis or "")
        assert f"the 1/m is missing (re-checked on a sub-batch of {SUB_BATCH}" in (
            report.diagnosis or ""
        )

    def test_a_constant_factor_is_rechecked_on_a_sub_batch(self) -> None:
        report = audit(grad_w_times_3, loss, BIG, argnums=1, seed=0)
        assert "off by a constant factor 3 (at this input and on a sub-batch" in (
            report.diagnosis or ""
        )

    def test_a_factor_of_one_input_only_is_not_named(self) -> None:
        report = audit(grad_w_scaled_by_the_data, loss, BIG, argnums=1, seed=0)
        diagnosis = report.diagnosis or ""
        assert "but not on a sub-batch" in diagnosis
        assert "no cause named" in diagnosis

    def test_a_large_input_is_rechecked_at_two_near_inputs_of_its_own_shape(self) -> None:
        from verification.auditing._evidence import variants

        rng = np.random.default_rng(0)
        near = variants(BIG, (1,), rng, bigger=True, large=True)
        assert len(near) == 2
        for other in near:
            assert [a.shape for a in other] == [a.shape for a in BIG]
            assert not np.array_equal(other[1], BIG[1])  # the differentiated one moved
            assert np.array_equal(other[0], BIG[0])
        # small: one mild and five strong near it, eight strong with every axis doubled
        assert len(variants(SMALL, (1,), rng, bigger=True)) == 14


class TestFiniteDifferences:
    @pytest.mark.parametrize("large", [False, True])
    def test_finite_differences_take_one_program_and_match_the_derivative(
        self, large: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Small: the second opinion's program; large (``OPTIMISE_ABOVE`` lowered to this
        problem's size): a forward-only program, the loss at x the reference run's."""
        if large:
            monkeypatch.setattr(_program, "OPTIMISE_ABOVE", sum(a.size for a in SMALL))
        oracle = Oracle(loss, (1,))
        value, grad = oracle.gradient(SMALL)
        d = [np.random.default_rng(0).standard_normal(SMALL[1].shape)]
        d[0] /= np.linalg.norm(d[0])
        before = oracle.compilations
        along = oracle.losses_along
        steps_taken: list[int] = []

        def spy(*args: Any) -> list[float]:
            steps_taken.append(len(args[-1]))
            return along(*args)

        monkeypatch.setattr(oracle, "losses_along", spy)
        fd = oracle.one_sided_slopes(SMALL, d, 1e-3)  # a step that resolves 1e-3
        assert oracle.compilations == before + 1  # one program, no gradient run
        # large: x +- h d, x +- 2h d; L(x) is the reference run's, not a fifth forward pass
        assert steps_taken == ([4] if large else [])
        assert bool(oracle._losses) == large
        assert bool(oracle._seconds) != large
        exact = float(np.vdot(grad[0], d[0]))
        for quotient in (fd.forward, fd.backward, fd.central):
            assert quotient == pytest.approx(exact, abs=1e-3 / 8)
        accurate = oracle.one_sided_slopes(SMALL, d, 1e-3, step=6e-6)
        assert accurate.central == pytest.approx(exact, abs=1e-8)
        assert oracle.compilations == before + 1
        assert oracle.losses_along(SMALL, d, [0.0])[0] == pytest.approx(value, rel=1e-14)
        runs = oracle.run_seconds
        oracle.one_sided_slopes(SMALL, d, 1e-3)
        assert oracle.run_seconds > runs


def test_profile_and_quick_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = tmp_path / "tests" / "softreg_profile.py"
    module.parent.mkdir()
    module.write_text(
        textwrap.dedent(
            """
            import jax.numpy as jnp
            from jax.nn import log_softmax

            def loss(x, w, y):
                return -jnp.sum(y * log_softmax(x @ w, axis=1)) / x.shape[0]

            def no_mean(x, w, y):
                z = x @ w
                e = jnp.exp(z - z.max(axis=1, keepdims=True))
                return x.T @ (e / e.sum(axis=1, keepdims=True) - y)
            """
        )
    )
    argv = [
        f"{module}:no_mean",
        "--loss",
        f"{module}:loss",
        "--shapes",
        "x=m,n w=n,k y=m,k:onehot",
        "--argnums",
        "1",
        "--seed",
        "0",
        "--max-examples",
        "30",
    ]
    assert main([*argv, "--profile", "--quick"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED (mismatch)")
    assert "offending elements" in out
    assert "profile:" in out
    assert "programs compiled:" in out
    assert "shrunk in 0 more" in out
    assert "is missing" not in out


def test_the_profile_counts_runs_in_words() -> None:
    from collections import Counter

    from verification.auditing._profile import COMPILATION, TRACING

    profile = Profile(
        {**dict.fromkeys(PHASES, 0.0), TRACING: 1.0, COMPILATION: 2.0},
        runs=Counter({TRACING: 1, COMPILATION: 2}),
        total=3.0,
    )
    lines = profile.lines()
    assert next(line for line in lines if TRACING in line).endswith("(1 run)")
    assert next(line for line in lines if COMPILATION in line).endswith("(2 runs)")


def grad_w_mean_twice(x: Array, w: Array, y: Array) -> Array:
    return grad_w(x, w, y) / x.shape[0]


def test_a_mean_taken_twice_is_named_from_a_sub_batch_where_the_factor_follows_m() -> None:
    report = audit(grad_w_mean_twice, loss, BIG, argnums=1, seed=0)
    diagnosis = report.diagnosis or ""
    assert f"x 1/{BIG[0].shape[0]} = 1/m, the batch size" in diagnosis, diagnosis
    assert "divided by m once too often" in diagnosis
    assert f"where the factor is 1/{SUB_BATCH}: it follows that dimension)" in diagnosis


def test_the_json_report_holds_the_seed_that_reproduces_it() -> None:
    report = audit(grad_w_no_mean, loss, SMALL, argnums=1, seed=7, max_examples=5)
    assert report.to_dict()["seed"] == report.seed == 7


def test_a_dict_of_arrays_is_written_as_python_that_rebuilds_it() -> None:
    from verification.auditing._reproducer import python_literal

    value = {"w": np.array([[0.5, -1.0]]), "b": np.float32(2.5), "n": 3}
    rebuilt = eval(python_literal(value), {"np": np})
    assert list(rebuilt) == list(value)
    np.testing.assert_array_equal(rebuilt["w"], value["w"])
    assert rebuilt["b"] == value["b"]
    assert rebuilt["b"].dtype == np.float32
    assert rebuilt["n"] == 3


def test_lists_and_tuples_of_arrays_are_written_as_python_that_rebuilds_them() -> None:
    from verification.auditing._reproducer import python_literal

    value = ([np.array([1.5, -2.0]), np.float64(3.0)], (np.array([[0.25]]),), [])
    text = python_literal(value)
    rebuilt = eval(text, {"np": np})
    assert isinstance(rebuilt, tuple)
    assert isinstance(rebuilt[0], list)
    assert isinstance(rebuilt[1], tuple)
    assert rebuilt[2] == []
    np.testing.assert_array_equal(rebuilt[0][0], value[0][0])
    assert rebuilt[0][1] == 3.0
    np.testing.assert_array_equal(rebuilt[1][0], value[1][0])


def test_a_factor_holds_a_value_up_to_and_including_its_resolution() -> None:
    from verification.auditing._diagnose import Fit
    from verification.auditing._factor import _fit_at

    assert Fit(1e6).holds(1_000_001.0)  # |a - b| is exactly 1e-6 * |c|
    assert not Fit(1e6).holds(1_000_001.5)
    assert Fit(1e6, 0.5).holds(1.4e6)
    assert not Fit(1e6, 0.5).tells(1.4e6, 1e6)
    assert Fit(2.0).holds(2.5, other=0.2)  # the other value's own resolution counts too
    assert _fit_at(None) is None


def test_the_finite_difference_step_keeps_rounding_64_eps_below_the_resolution() -> None:
    from verification.auditing._finite_differences import step_for

    eps = float(np.finfo(np.float64).eps)
    # h = 64 eps (|L| + 1) / resolution, between 1024 eps scale and 0.1 scale
    assert step_for(0.0, 1e-6, 1.0) == 64 * eps * 1 / 1e-6
    assert step_for(3.0, 1e-6, 1.0) == 64 * eps * 4 / 1e-6
    assert step_for(0.0, 1.0, 1.0) == 1024 * eps
    assert step_for(0.0, 1e-20, 1.0) == 0.1
