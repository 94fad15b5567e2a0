"""verification.mainjob.twin: manual and jax.grad training runs agree to rounding at every step.

The tolerance (``verification.mainjob.twin.tolerance``) is ULPS_PER_STEP = 2 machine epsilons per
step, relative to max(1, largest parameter): rounding differences between the two gradient
computations are a fraction of an ulp per step and accumulate at most linearly (measured:
0.25 ulps after the first step, 5.5 ulps after the 1350 steps of the default digits run). A
gradient that is wrong by one part in a million exceeds it after a few steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from manual_bp import LogRegParams, init_mlp
from manual_bp.datasets import Split, load_breast_cancer, load_digits
from manual_bp.train import train
from manual_bp.train.cli import TrainedRun
from verification import reference
from verification.__main__ import main as dispatch
from verification.mainjob.twin import ULPS_PER_STEP, check, main as twin_main, tolerance, twin_run


@pytest.fixture(scope="module")
def digits() -> Split:
    """200 training rows of the digits: 7 steps per epoch at batch 32 (the last one of 8)."""
    full = load_digits(seed=0)
    return Split(full.x_train[:200], full.labels_train[:200], full.x_test, full.labels_test, 10)


@pytest.fixture(scope="module")
def cancer() -> Split:
    return load_breast_cancer(seed=0)


def _assert_within_tolerance_at_every_step(run: Any, dtype: Any) -> None:
    bounds = np.array([tolerance(dtype, s, c) for s, c in enumerate(run.scale, start=1)])
    np.testing.assert_array_equal(run.tolerance, bounds)
    worst = int(np.argmax(run.max_abs_diff / bounds))
    assert run.agrees, (
        f"step {worst + 1}: difference {run.max_abs_diff[worst]:.3e} > bound {bounds[worst]:.3e}"
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_network_runs_agree_to_rounding_at_every_step(digits: Split, dtype: Any) -> None:
    rng = np.random.default_rng(0)
    params = init_mlp(rng, 64, 16, 10, dtype)
    x = digits.x_train.astype(dtype)
    run = twin_run(params, x, digits.labels_train, lr=0.3, epochs=3, batch_size=32, rng=rng)
    assert run.max_abs_diff.shape == (21,)
    assert run.scale.min() > 0.1  # the runs move: the comparison is not of two idle copies
    assert not np.array_equal(run.manual[0], params.W1)
    _assert_within_tolerance_at_every_step(run, dtype)


def test_logistic_regression_runs_agree_to_rounding_at_every_step(cancer: Split) -> None:
    params = LogRegParams(np.zeros(30), np.array(0.0))
    run = twin_run(
        params,
        cancer.x_train,
        cancer.labels_train,
        lr=0.1,
        epochs=2,
        batch_size=32,
        rng=np.random.default_rng(0),
    )
    assert run.max_abs_diff.shape == (30,)
    _assert_within_tolerance_at_every_step(run, np.float64)


def test_twin_detects_a_gradient_wrong_by_one_part_in_a_million(
    digits: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact = reference.mlp_loss_and_grads

    def perturbed(params: Any, x: Any, y: Any) -> tuple[Any, Any]:
        loss, grads = exact(params, x, y)
        return loss, grads._replace(W2=grads.W2 * (1 + 1e-6))

    monkeypatch.setattr(reference, "mlp_loss_and_grads", perturbed)
    rng = np.random.default_rng(0)
    params = init_mlp(rng, 64, 16, 10)
    run = twin_run(
        params, digits.x_train, digits.labels_train, lr=0.3, epochs=1, batch_size=32, rng=rng
    )
    assert not run.agrees
    assert run.max_abs_diff[-1] > 10 * run.tolerance[-1]


def test_twin_sees_the_batches_of_train_and_leaves_the_generator_alone(digits: Split) -> None:
    rng = np.random.default_rng(4)
    params = init_mlp(rng, 64, 8, 10)
    state = rng.bit_generator.state
    run = twin_run(
        params, digits.x_train, digits.labels_train, lr=0.3, epochs=2, batch_size=32, rng=rng
    )
    assert rng.bit_generator.state == state
    trained, _ = train(
        params,
        digits.x_train,
        digits.labels_train,
        digits.x_test,
        digits.labels_test,
        lr=0.3,
        epochs=2,
        batch_size=32,
        rng=rng,
    )
    for manual, expected in zip(run.manual, trained, strict=True):
        np.testing.assert_array_equal(manual, expected)


def test_tolerance_grows_linearly_with_steps_and_parameter_scale() -> None:
    eps = np.finfo(np.float64).eps
    assert tolerance(np.float64, 1, 0.3) == ULPS_PER_STEP * eps
    assert tolerance(np.float64, 10, 4.0) == 40 * tolerance(np.float64, 1, 1.0)
    assert tolerance(np.float32, 1, 1.0) == ULPS_PER_STEP * np.finfo(np.float32).eps


# ------------------------------------------------------------------------------------------
# python -m verification twin (what python -m manual_bp.train --check-against-jax runs)
# ------------------------------------------------------------------------------------------


def test_twin_command_trains_then_reports_the_largest_difference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert twin_main(["--dataset", "breast-cancer", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "logistic regression (30 features), float64, 455 training / 114 held-out" in out
    assert "largest parameter difference over 30 steps" in out
    assert "agree to rounding at every step" in out


def test_twin_command_fails_when_the_gradients_differ(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exact = reference.logreg_loss_and_grads

    def off_by_a_millionth(params: Any, x: Any, y: Any) -> tuple[Any, Any]:
        loss, grads = exact(params, x, y)
        return loss, type(grads)(*(g * (1 + 1e-6) for g in grads))

    monkeypatch.setattr(reference, "logreg_loss_and_grads", off_by_a_millionth)
    assert twin_main(["--dataset", "breast-cancer", "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1]
        == "python -m verification twin: error: the manual and jax.grad runs differ beyond rounding"
    )


def test_twin_command_checks_options_as_the_training_command_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert dispatch(["twin", "--plot", "x.txt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m verification twin: error: --plot x.txt")
    assert len(err.strip().splitlines()) == 1


def test_twin_command_reports_a_run_that_diverged_without_comparing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert twin_main(["--dataset", "digits", "--lr", "5", "--epochs", "1"]) == 1
    out = capsys.readouterr()
    assert "lower --lr" in out.err
    assert "JAX twin" not in out.out


def test_twin_check_fails_when_the_manual_rerun_does_not_reproduce_the_trained_params(
    cancer: Split, capsys: pytest.CaptureFixture[str]
) -> None:
    params0 = LogRegParams(np.zeros(30), np.array(0.0))
    untrained = TrainedRun(
        params0, params0, cancer.x_train, cancer.labels_train, 0.1, 1, 32, np.random.default_rng(0)
    )
    assert check(untrained) == 1
    assert "did not reproduce the trained parameters" in capsys.readouterr().err
