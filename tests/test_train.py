"""manual_bp.train: the descent loop, the training run, bad data, divergence.

The command line and the layering (no JAX, no verification) are in test_train_cli.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

from manual_bp import (
    LogRegParams,
    MLPParams,
    init_mlp,
    logreg_loss_and_grads,
    mlp_forward,
    mlp_loss_and_grads,
    sgd_step,
)
from manual_bp.datasets import Split, load_breast_cancer, load_digits
from manual_bp.train import (
    DivergenceError,
    History,
    batches,
    descend,
    evaluate,
    predict,
    targets,
    train,
)

FloatArray = np.ndarray[Any, np.dtype[np.floating[Any]]]


@pytest.fixture(scope="module")
def digits() -> Split:
    """The digits split cut to 400 training and 100 held-out rows, to keep runs short."""
    full = load_digits(seed=0)
    return Split(
        full.x_train[:400], full.labels_train[:400], full.x_test[:100], full.labels_test[:100], 10
    )


@pytest.fixture(scope="module")
def cancer() -> Split:
    return load_breast_cancer(seed=0)


def _mlp(seed: int = 0, h: int = 16, dtype: Any = np.float64) -> MLPParams:
    return init_mlp(np.random.default_rng(seed), 64, h, 10, dtype)


def _run(data: Split, params: Any, seed: int, **kw: Any) -> tuple[Any, History]:
    settings = {"lr": 0.3, "epochs": 3, "batch_size": 32, **kw}
    return train(
        params,
        data.x_train,
        data.labels_train,
        data.x_test,
        data.labels_test,
        rng=np.random.default_rng(seed),
        **settings,
    )


def _same(a: tuple[np.ndarray[Any, Any], ...], b: tuple[np.ndarray[Any, Any], ...]) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------
# batches and descend
# ------------------------------------------------------------------------------------------


@given(m=st.integers(1, 60), data=st.data())
def test_batches_cover_every_row_exactly_once(m: int, data: st.DataObject) -> None:
    batch_size = data.draw(st.integers(1, m))
    pieces = batches(np.random.default_rng(data.draw(st.integers(0, 99))), m, batch_size)
    assert len(pieces) == math.ceil(m / batch_size)
    assert all(len(p) == batch_size for p in pieces[:-1])
    assert 1 <= len(pieces[-1]) <= batch_size
    np.testing.assert_array_equal(np.sort(np.concatenate(pieces)), np.arange(m))


def test_batches_reshuffle_every_epoch() -> None:
    rng = np.random.default_rng(0)
    first, second = batches(rng, 50, 10), batches(rng, 50, 10)
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))


@pytest.mark.parametrize("model", ["mlp", "logreg"])
def test_each_step_is_sgd_on_the_gradient_of_its_own_minibatch(model: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((23, 4))
    if model == "mlp":
        params: Any = init_mlp(rng, 4, 5, 3)
        labels = rng.integers(0, 3, 23)
        grad_fn: Any = mlp_loss_and_grads
    else:
        params = LogRegParams(rng.standard_normal(4), np.array(0.3))
        labels = rng.integers(0, 2, 23)
        grad_fn = logreg_loss_and_grads
    y = targets(params, labels)
    steps = list(descend(params, x, y, grad_fn=grad_fn, lr=0.3, epochs=2, batch_size=5, rng=rng))
    assert [s.number for s in steps] == list(range(10))
    assert [s.epoch for s in steps] == [0] * 5 + [1] * 5
    before = params
    for step in steps:
        loss, grads = grad_fn(before, x[step.batch], y[step.batch])
        assert step.loss == float(loss)
        assert _same(step.params, sgd_step(before, grads, 0.3))
        before = step.params
    for epoch in (0, 1):  # every row is used once per epoch
        rows = np.concatenate([s.batch for s in steps if s.epoch == epoch])
        np.testing.assert_array_equal(np.sort(rows), np.arange(23))


def test_descend_checks_its_arguments_before_iteration_starts() -> None:
    params = LogRegParams(np.zeros(2), np.array(0.0))
    x, y = np.ones((4, 2)), np.ones(4)
    kw: dict[str, Any] = {"grad_fn": logreg_loss_and_grads, "lr": 0.1, "epochs": 1}
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"batch_size must be >= 1 and <= 4 \(the 4 rows of x\)"):
        descend(params, x, y, batch_size=5, rng=rng, **kw)  # no next(): the call itself raises
    with pytest.raises(ValueError, match=r"y has shape \(3,\) but x has shape \(4, 2\)"):
        descend(params, x, y[:3], batch_size=2, rng=rng, **kw)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        descend(params, x, y, batch_size=2, rng=0, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# train: learning, reproducibility, purity
# ------------------------------------------------------------------------------------------


def test_training_the_network_lowers_the_loss_and_raises_accuracy(digits: Split) -> None:
    _, history = _run(digits, _mlp(), seed=0)
    assert history.train_loss[-1] < 0.2 * history.train_loss[0]
    assert history.test_loss[-1] < 0.5 * history.test_loss[0]
    assert history.test_accuracy[-1] > 0.75 > 0.3 > history.test_accuracy[0]


def test_training_logistic_regression_reaches_95_percent_held_out(cancer: Split) -> None:
    params0 = LogRegParams(np.zeros(30), np.array(0.0))
    _, history = _run(cancer, params0, seed=0, lr=0.1, epochs=10)
    assert history.train_loss[-1] < 0.2 < history.train_loss[0]
    assert history.test_accuracy[-1] >= 0.95


def test_same_seed_gives_the_same_run(digits: Split) -> None:
    params_a, history_a = _run(digits, _mlp(), seed=7)
    params_b, history_b = _run(digits, _mlp(), seed=7)
    assert _same(params_a, params_b)
    assert history_a == history_b


def test_different_seed_gives_a_different_run(digits: Split) -> None:
    params_a, history_a = _run(digits, _mlp(), seed=7)
    params_b, history_b = _run(digits, _mlp(), seed=8)  # same start, other shuffles
    assert not np.array_equal(params_a.W1, params_b.W1)
    assert history_a.train_loss[0] == history_b.train_loss[0]
    assert history_a.train_loss[-1] != history_b.train_loss[-1]


def test_training_mutates_no_input_and_no_global_state(digits: Split) -> None:
    params0 = _mlp()
    saved_params = tuple(p.copy() for p in params0)
    saved_data = tuple(a.copy() for a in digits[:4])
    global_state = np.random.get_state()  # noqa: NPY002  (the legacy global generator)
    _run(digits, params0, seed=0, epochs=1)
    assert _same(params0, saved_params)
    assert _same(digits[:4], saved_data)
    state_after = np.random.get_state()  # noqa: NPY002
    assert np.array_equal(global_state[1], state_after[1])  # type: ignore[index]


def test_history_starts_at_the_initial_params_and_ends_at_the_trained_ones(
    digits: Split,
) -> None:
    params0 = _mlp()
    params, history = _run(digits, params0, seed=0, epochs=2)
    assert all(len(curve) == 3 for curve in history)
    assert (history.train_loss[0], history.train_accuracy[0]) == evaluate(
        params0, digits.x_train, digits.labels_train
    )
    assert (history.test_loss[-1], history.test_accuracy[-1]) == evaluate(
        params, digits.x_test, digits.labels_test
    )


def test_on_epoch_sees_the_history_grow_once_per_epoch(digits: Split) -> None:
    seen: list[tuple[int, int]] = []
    _run(digits, _mlp(), seed=0, epochs=3, on_epoch=lambda e, h: seen.append((e, len(h[0]))))
    assert seen == [(1, 2), (2, 3), (3, 4)]


def test_float32_training_stays_float32(digits: Split) -> None:
    data32 = digits._replace(
        x_train=digits.x_train.astype(np.float32), x_test=digits.x_test.astype(np.float32)
    )
    params, history = _run(data32, _mlp(dtype=np.float32), seed=0, epochs=2)
    assert {p.dtype for p in params} == {np.dtype(np.float32)}
    assert history.test_accuracy[-1] > 0.7


def test_a_custom_grad_fn_replaces_the_manual_gradient(digits: Split) -> None:
    def zero_grads(params: MLPParams, x: FloatArray, y: FloatArray) -> tuple[float, MLPParams]:
        return 0.0, MLPParams(*(np.zeros_like(p) for p in params))

    params0 = _mlp()
    params, _ = _run(digits, params0, seed=0, epochs=1, grad_fn=zero_grads)
    assert _same(params, params0)


# ------------------------------------------------------------------------------------------
# evaluate, predict, targets
# ------------------------------------------------------------------------------------------


def test_predict_takes_the_most_probable_class_of_the_network() -> None:
    rng = np.random.default_rng(1)
    params, x = init_mlp(rng, 3, 4, 5), rng.standard_normal((20, 3))
    probabilities, _ = mlp_forward(params, x)
    np.testing.assert_array_equal(predict(params, x), np.argmax(probabilities, axis=1))


def test_evaluate_counts_the_share_of_correct_predictions() -> None:
    params = LogRegParams(np.array([1.0]), np.array(0.0))  # predicts 1 exactly where x > 0
    x = np.array([[2.0], [-1.0], [3.0], [-4.0]])
    loss, accuracy = evaluate(params, x, np.array([1, 1, 1, 0]))
    assert accuracy == 0.75
    assert loss == float(logreg_loss_and_grads(params, x, np.array([1.0, 1.0, 1.0, 0.0]))[0])


def test_targets_are_one_hot_rows_or_floats_in_the_params_dtype() -> None:
    labels = np.array([2, 0])
    y = targets(_mlp(dtype=np.float32), labels)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[:, :3], [[0, 0, 1], [1, 0, 0]])
    assert y.shape == (2, 10)
    np.testing.assert_array_equal(targets(LogRegParams(np.zeros(1), np.array(0.0)), [1, 0]), [1, 0])


# ------------------------------------------------------------------------------------------
# bad data
# ------------------------------------------------------------------------------------------


def _bad(kind: str) -> tuple[Any, ...]:
    """(params, x_train, labels_train, x_test, labels_test, batch_size) with one defect."""
    rng = np.random.default_rng(0)
    params: Any = init_mlp(rng, 4, 3, 5)
    x, labels = rng.standard_normal((10, 4)), rng.integers(0, 5, 10)
    xt, lt = rng.standard_normal((6, 4)), rng.integers(0, 5, 6)
    batch = 4
    if kind == "label too large":
        labels[3] = 5
    elif kind == "label negative":
        lt[2] = -1
    elif kind == "logreg label 2":
        params, labels = LogRegParams(np.zeros(4), np.array(0.0)), labels % 2
        labels[0] = 2
    elif kind == "fewer labels than rows":
        labels = labels[:9]
    elif kind == "more held-out labels than rows":
        lt = np.append(lt, 0)
    elif kind == "NaN in features":
        x[2, 1] = np.nan
    elif kind == "inf in held-out features":
        xt[0, 3] = np.inf
    elif kind == "batch larger than data":
        batch = 11
    elif kind == "batch zero":
        batch = 0
    elif kind == "held-out columns differ":
        xt = xt[:, :3]
    elif kind == "float labels":
        labels = labels.astype(float)
    elif kind == "features of another dtype":
        x = x.astype(np.float32)
    return params, x, labels, xt, lt, batch


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("label too large", ValueError, r"labels_train must lie in \[0, 5\).*labels_train\[3\] = 5"),
        ("label negative", ValueError, r"labels_test must lie in \[0, 5\).*labels_test\[2\] = -1"),
        ("logreg label 2", ValueError, r"labels_train must lie in \[0, 2\).*= 2 \(shape \(10,\)\)"),
        ("fewer labels than rows", ValueError,
         r"labels_train has shape \(9,\) but x_train has shape \(10, 4\)"),
        ("more held-out labels than rows", ValueError,
         r"labels_test has shape \(7,\) but x_test has shape \(6, 4\)"),
        ("NaN in features", ValueError, r"x_train must be finite, but x_train\[2, 1\] = .*nan"),
        ("inf in held-out features", ValueError, r"x_test must be finite, but x_test\[0, 3\]"),
        ("batch larger than data", ValueError,
         r"batch_size must be >= 1 and <= 10 \(the 10 rows of x\), got 11"),
        ("batch zero", ValueError, r"batch_size must be >= 1 and <= 10 .*got 0"),
        ("held-out columns differ", ValueError,
         r"x_test has shape \(6, 3\) but x_train has shape \(10, 4\)"),
        ("float labels", TypeError, r"labels_train must be integer class labels, got dtype float64"),
        ("features of another dtype", TypeError,
         "x_train has dtype float32 but params have dtype float64"),
    ],
)  # fmt: skip
def test_bad_data_raises_naming_the_argument_and_shapes(
    kind: str, error: type[Exception], message: str
) -> None:
    params, x, labels, xt, lt, batch = _bad(kind)
    with pytest.raises(error, match=message):
        train(
            params,
            x,
            labels,
            xt,
            lt,
            lr=0.1,
            epochs=1,
            batch_size=batch,
            rng=np.random.default_rng(0),
        )


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"epochs": 0}, ValueError, r"epochs must be >= 1, got 0"),
        ({"lr": -0.1}, ValueError, r"lr must be finite and > 0, got -0.1"),
        ({"lr": float("nan")}, ValueError, r"lr must be finite and > 0, got nan"),
        ({"lr": "0.1"}, TypeError, r"lr must be a real number, got str"),
        ({"batch_size": 2.0}, TypeError, r"batch_size must be an integer, got float 2\.0"),
    ],
)
def test_bad_settings_raise(settings: dict[str, Any], error: type[Exception], message: str) -> None:
    params, x, labels, xt, lt, _ = _bad("none")
    full = {"lr": 0.1, "epochs": 1, "batch_size": 2, **settings}
    with pytest.raises(error, match=message):
        train(params, x, labels, xt, lt, rng=np.random.default_rng(0), **full)


def test_unknown_params_type_raises() -> None:
    _, x, labels, xt, lt, _ = _bad("none")
    with pytest.raises(TypeError, match="params must be MLPParams or LogRegParams, got tuple"):
        train(
            (np.zeros((4, 5)),),
            x,
            labels,
            xt,
            lt,
            lr=0.1,
            epochs=1,
            batch_size=2,  # type: ignore[type-var]
            rng=np.random.default_rng(0),
        )


# ------------------------------------------------------------------------------------------
# divergence is named, not left to overflow warnings
# ------------------------------------------------------------------------------------------


def _bowl(params: LogRegParams, x: Any, y: Any) -> tuple[float, LogRegParams]:
    """The quadratic bowl |w|^2 + b^2: gradient descent on it diverges for lr > 1."""
    loss = float(np.sum(params.w**2) + params.b**2)
    return loss, LogRegParams(2 * params.w, 2 * params.b)


@pytest.mark.parametrize(
    ("lr", "message"),
    [
        # w <- w - 2 lr w = -3 w: the loss grows 9x a step, past 1000x at the 5th step
        (2.0, r"^loss grew over 1000x \(from 3 to 1\.97e\+04\) at epoch 2 \(step 5\)$"),
        (1e300, r"^loss became non-finite at epoch 1 \(step 2\)$"),  # w = -2e300, then inf
    ],
)
def test_descent_that_blows_up_raises_divergence_error_naming_the_epoch(
    lr: float, message: str
) -> None:
    x, y = np.zeros((8, 3)), np.zeros(8)
    steps = descend(
        LogRegParams(np.ones(3), np.array(0.0)),
        x,
        y,
        grad_fn=_bowl,
        lr=lr,
        epochs=50,
        batch_size=2,
        rng=np.random.default_rng(0),
    )
    with pytest.raises(DivergenceError, match=message) as info:
        list(steps)
    assert info.value.step == (5 if lr == 2.0 else 2)


def test_a_descent_that_shrinks_the_loss_is_not_divergence() -> None:
    steps = list(
        descend(
            LogRegParams(np.ones(3), np.array(0.0)),
            np.zeros((8, 3)),
            np.zeros(8),
            grad_fn=_bowl,
            lr=0.9,  # w <- -0.8 w: oscillates in sign, shrinks in size
            epochs=5,
            batch_size=2,
            rng=np.random.default_rng(0),
        )
    )
    assert len(steps) == 20
    assert steps[-1].loss < steps[0].loss


def test_a_stable_run_never_trips_the_divergence_check(digits: Split) -> None:
    _, history = _run(digits, _mlp(), seed=0, lr=0.1, epochs=2)
    assert history.train_loss[-1] < history.train_loss[0]
