r"""Minibatch gradient descent with the hand-derived gradients, pure and reproducible.

Each epoch draws a fresh permutation of the m training rows from an explicit
``np.random.Generator`` and cuts it into :math:`\lceil m / b \rceil` consecutive minibatches
(the last one smaller when b does not divide m). Each minibatch B takes one step

.. math:: \theta \leftarrow \theta - \eta \, \nabla_\theta J_B(\theta),
          \qquad J_B = \text{mean loss over the rows of } B

with the gradient from ``grad_fn`` (by default the manual backprop of :mod:`manual_bp`) and
the update from :func:`manual_bp.sgd_step`. Nothing is stored between calls: the parameters,
the data and the generator come in as arguments and the results go out as return values
(the generator advances, as every numpy ``Generator`` does when drawn from).

Two levels:

* :func:`descend` is the bare loop: it yields a :class:`Step` after every update. The JAX
  twin (``verification.mainjob.twin``) runs it twice with two gradient functions to compare runs
  step by step without a copy of the loop.
* :func:`train` consumes :func:`descend` and evaluates loss and accuracy on the training and
  held-out data after each epoch, returning the trained params and a :class:`History`.

Both models train through the same code; the type of ``params`` picks the model:
:class:`~manual_bp.MLPParams` (softmax network, targets one-hot rows (m, k)) or
:class:`~manual_bp.LogRegParams` (logistic regression, targets 0/1 floats (m,)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from manual_bp._params import params_dtype
from manual_bp._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_lr,
    check_ndim,
    check_nonempty,
    shape_str,
)
from manual_bp.labels import one_hot
from manual_bp.logreg import LogRegParams, logreg_loss_and_grads, logreg_predict_proba
from manual_bp.network import MLPParams, mlp_forward, mlp_loss_and_grads
from manual_bp.optim import sgd_step

__all__ = [
    "GROWTH_LIMIT",
    "DivergenceError",
    "GradFn",
    "History",
    "Step",
    "batches",
    "descend",
    "evaluate",
    "predict",
    "targets",
    "train",
]

P = TypeVar("P", bound=MLPParams | LogRegParams)
Labels = NDArray[np.integer[Any]]

#: ``grad_fn(params, x, y) -> (loss, grads)``: a minibatch's mean loss and its gradient, with
#: ``grads`` of the type and shapes of ``params`` (array-likes; converted with ``np.asarray``).
GradFn = Callable[[P, FloatArray, FloatArray], tuple[Any, P]]


class Step(NamedTuple, Generic[P]):
    """One update of :func:`descend`.

    Attributes
    ----------
    epoch : int
        0-based epoch the step belongs to.
    number : int
        0-based step number over the whole run.
    batch : ndarray of int, shape (b,)
        The rows of ``x`` that formed the minibatch.
    loss : float
        The minibatch loss at the parameters *before* the update.
    params : MLPParams or LogRegParams
        The parameters *after* the update.
    """

    epoch: int
    number: int
    batch: NDArray[np.intp]
    loss: float
    params: P


#: A run has diverged once a minibatch loss exceeds this multiple of max(1, first loss).
GROWTH_LIMIT = 1000.0


class DivergenceError(ValueError):
    """Gradient descent blew up: a loss or a parameter became non-finite, or the minibatch
    loss grew past :data:`GROWTH_LIMIT` times max(1, the first step's loss).

    ``str(error)`` says which and where, e.g. ``loss grew over 1000x (from 2.3 to
    4.1e+03) at epoch 3 (step 95)``; the attributes ``epoch`` and ``step`` are 1-based. The usual cure is a lower
    learning rate.
    """

    def __init__(self, what: str, epoch: int, step: int) -> None:
        super().__init__(f"{what} at epoch {epoch} (step {step})")
        self.epoch = epoch
        self.step = step


class History(NamedTuple):
    """Loss and accuracy per epoch, on the training and the held-out data.

    Each field is a tuple of ``epochs + 1`` floats: entry 0 is measured at the initial
    parameters, entry e after epoch e. Losses are mean cross-entropies over the whole split,
    accuracies the fraction of rows whose predicted class equals the label.
    """

    train_loss: tuple[float, ...]
    train_accuracy: tuple[float, ...]
    test_loss: tuple[float, ...]
    test_accuracy: tuple[float, ...]


def _positive_int(name: str, value: object, upper: int | None = None, why: str = "") -> int:
    """Return ``value`` as an int after checking ``1 <= value (<= upper)``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < 1 or (upper is not None and value > upper):
        bound = "" if upper is None else f" and <= {upper}{why}"
        raise ValueError(f"{name} must be >= 1{bound}, got {value}")
    return int(value)


def batches(rng: np.random.Generator, m: int, batch_size: int) -> list[NDArray[np.intp]]:
    """One epoch's minibatches: a fresh permutation of ``range(m)`` cut into pieces.

    Returns :math:`\\lceil m / b \\rceil` index arrays; all have ``batch_size`` rows except
    possibly the last, which holds the remainder. Every row appears exactly once.

    Examples
    --------
    >>> [b.tolist() for b in batches(np.random.default_rng(0), 5, 2)]
    [[2, 4], [3, 0], [1]]
    """
    order = rng.permutation(m)
    return [order[start : start + batch_size] for start in range(0, m, batch_size)]


def descend(
    params: P,
    x: ArrayLike,
    y: ArrayLike,
    *,
    grad_fn: GradFn[P],
    lr: float,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[Step[P]]:
    """Minibatch gradient descent, one :class:`Step` yielded per update.

    Parameters
    ----------
    params : MLPParams or LogRegParams
        Initial parameters; not modified (every step makes new arrays).
    x : array, shape (m, n)
        Training inputs, finite.
    y : array, shape (m, k) or (m,)
        Training targets in the form ``grad_fn`` takes (see :func:`targets`).
    grad_fn : GradFn
        ``(params, x_batch, y_batch) -> (loss, grads)``.
    lr : float
        Learning rate, finite and > 0.
    epochs : int
        Number of passes over the data, >= 1.
    batch_size : int
        Rows per minibatch, in ``[1, m]``.
    rng : np.random.Generator
        Source of the shuffles; it advances by one permutation per epoch.

    Returns
    -------
    Iterator of ``epochs * ceil(m / batch_size)`` steps. The arguments are checked when
    ``descend`` is called, not when iteration starts.

    Raises
    ------
    TypeError
        ``rng`` not a Generator, non-numeric data, non-integer sizes.
    ValueError
        ``x`` not 2-D, empty or non-finite; ``y`` with a different number of rows;
        ``batch_size`` outside ``[1, m]``; ``epochs < 1``; ``lr`` not finite and positive.
    DivergenceError
        During iteration, when a minibatch loss or an updated parameter is NaN or infinite,
        or a minibatch loss exceeds ``GROWTH_LIMIT * max(1, first loss)`` (the learning
        rate is too high). numpy's overflow warnings inside the step are silenced: this
        check reports the divergence instead.

    Examples
    --------
    >>> from manual_bp import LogRegParams, logreg_loss_and_grads
    >>> steps = descend(LogRegParams(np.zeros(1), np.array(0.0)), np.array([[1.0], [-1.0]]),
    ...                 np.array([1.0, 0.0]), grad_fn=logreg_loss_and_grads, lr=1.0,
    ...                 epochs=2, batch_size=2, rng=np.random.default_rng(0))
    >>> [(s.number, round(s.loss, 4)) for s in steps]
    [(0, 0.6931), (1, 0.4741)]
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    xa = as_float_array("x", x)
    check_ndim("x", xa, (2,), "(m, n)")
    check_nonempty("x", xa)
    check_finite("x", xa)
    ya = as_float_array("y", y)
    m = xa.shape[0]
    if ya.ndim == 0 or ya.shape[0] != m:
        raise ValueError(
            f"y has shape {shape_str(ya.shape)} but x has shape {shape_str(xa.shape)}: "
            "need one target row per row of x"
        )
    check_finite("y", ya)
    batch = _positive_int("batch_size", batch_size, m, f" (the {m} rows of x)")
    n_epochs = _positive_int("epochs", epochs)
    return _descend(params, xa, ya, grad_fn, check_lr(lr), n_epochs, batch, rng)


def _descend(
    params: P,
    x: FloatArray,
    y: FloatArray,
    grad_fn: GradFn[P],
    lr: float,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[Step[P]]:
    index = 0
    first = limit = math.inf
    for epoch in range(epochs):
        for batch in batches(rng, x.shape[0], batch_size):
            # A diverging run overflows before it fails: the checks below name it instead.
            with np.errstate(over="ignore", invalid="ignore"):
                loss, grads = grad_fn(params, x[batch], y[batch])
                grads = type(params)(*(np.asarray(g) for g in grads))
                params = sgd_step(params, grads, lr)
            value = float(loss)
            if not (math.isfinite(value) and all(np.isfinite(p).all() for p in params)):
                raise DivergenceError("loss became non-finite", epoch + 1, index + 1)
            if value > limit:
                raise DivergenceError(
                    f"loss grew over {GROWTH_LIMIT:g}x (from {first:.3g} to {value:.3g})",
                    epoch + 1,
                    index + 1,
                )
            if index == 0:
                first, limit = value, GROWTH_LIMIT * max(1.0, value)
            yield Step(epoch, index, batch, value, params)
            index += 1


def _n_classes(params: MLPParams | LogRegParams) -> int:
    """k: the columns of W2 for the network, 2 for logistic regression."""
    if isinstance(params, MLPParams):
        return int(np.shape(params.W2)[1])
    if isinstance(params, LogRegParams):
        return 2
    raise TypeError(f"params must be MLPParams or LogRegParams, got {type(params).__name__}")


def _check_labels(name: str, labels: ArrayLike, k: int) -> Labels:
    """Integer class labels of shape (m,), each in ``[0, k)``."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be integer class labels, got dtype {arr.dtype} "
            f"(shape {shape_str(arr.shape)})"
        )
    check_ndim(name, arr, (1,), "(m,)")
    bad = (arr < 0) | (arr >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{name} must lie in [0, {k}) for a model with {k} classes, "
            f"but {name}[{i}] = {int(arr[i])} (shape {shape_str(arr.shape)})"
        )
    return arr


def _check_data(
    params: MLPParams | LogRegParams, name: str, x: ArrayLike, labels_name: str, labels: ArrayLike
) -> tuple[FloatArray, Labels]:
    """Features of the params' dtype, 2-D, non-empty, finite; labels as :func:`_check_labels`."""
    xa = as_float_array(name, x)
    check_ndim(name, xa, (2,), "(m, n)")
    check_nonempty(name, xa)
    dtype = params_dtype(params)
    if xa.dtype != dtype:
        raise TypeError(f"{name} has dtype {xa.dtype} but params have dtype {dtype}")
    check_finite(name, xa)
    la = _check_labels(labels_name, labels, _n_classes(params))
    if la.shape[0] != xa.shape[0]:
        raise ValueError(
            f"{labels_name} has shape {shape_str(la.shape)} but {name} has shape "
            f"{shape_str(xa.shape)}: need one label per row"
        )
    return xa, la


def targets(params: MLPParams | LogRegParams, labels: ArrayLike) -> FloatArray:
    """The loss's targets for integer ``labels`` (m,), in the params' dtype.

    One-hot rows (m, k) for :class:`~manual_bp.MLPParams`; the labels as floats (m,) for
    :class:`~manual_bp.LogRegParams` (which must then be 0 or 1).

    Examples
    --------
    >>> from manual_bp import LogRegParams
    >>> targets(LogRegParams(np.zeros(2, np.float32), np.array(0, np.float32)), np.array([1, 0]))
    array([1., 0.], dtype=float32)
    """
    k = _n_classes(params)
    arr = _check_labels("labels", labels, k)
    if isinstance(params, MLPParams):
        return one_hot(arr, k, params_dtype(params))
    return arr.astype(params_dtype(params))


def predict(params: MLPParams | LogRegParams, x: ArrayLike) -> NDArray[np.intp]:
    """Predicted class per row of ``x`` (m, n): argmax of P, or 1 where sigma(z) > 1/2.

    Examples
    --------
    >>> from manual_bp import LogRegParams
    >>> predict(LogRegParams(np.array([1.0]), np.array(0.0)), np.array([[2.0], [-3.0]]))
    array([1, 0])
    """
    if isinstance(params, MLPParams):
        probabilities, _ = mlp_forward(params, x)
        return np.argmax(probabilities, axis=1)
    return (logreg_predict_proba(params, x) > 0.5).astype(np.intp)


def evaluate(
    params: MLPParams | LogRegParams, x: ArrayLike, labels: ArrayLike
) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``params`` on a whole data set.

    The loss is the model's mean cross-entropy against :func:`targets` (computed by the same
    function that gives the gradients); accuracy is ``mean(predict(params, x) == labels)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`train` for bad data.
    """
    xa, la = _check_data(params, "x", x, "labels", labels)
    y = targets(params, la)
    loss = (
        mlp_loss_and_grads(params, xa, y)[0]
        if isinstance(params, MLPParams)
        else logreg_loss_and_grads(params, xa, y)[0]
    )
    return float(loss), float(np.mean(predict(params, xa) == la))


def _default_grad_fn(params: P) -> GradFn[P]:
    grad_fn: GradFn[Any] = (
        mlp_loss_and_grads if isinstance(params, MLPParams) else logreg_loss_and_grads
    )
    return grad_fn


def train(
    params: P,
    x_train: ArrayLike,
    labels_train: ArrayLike,
    x_test: ArrayLike,
    labels_test: ArrayLike,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    grad_fn: GradFn[P] | None = None,
    on_epoch: Callable[[int, History], None] | None = None,
) -> tuple[P, History]:
    """Train by minibatch gradient descent and record loss and accuracy per epoch.

    Parameters
    ----------
    params : MLPParams or LogRegParams
        Initial parameters (e.g. from :func:`manual_bp.init_mlp`); their type picks the model
        and their dtype is the dtype of the whole run. Not modified.
    x_train : array, shape (m, n)
        Training features of the params' dtype, finite.
    labels_train : int array, shape (m,)
        Class indices in ``[0, k)`` (k = columns of W2; 2 for logistic regression).
    x_test, labels_test : arrays, shapes (m_test, n) and (m_test,)
        Held-out data, only evaluated, never trained on.
    lr, epochs, batch_size, rng
        As :func:`descend`.
    grad_fn : GradFn, optional
        Gradient function; default :func:`manual_bp.mlp_loss_and_grads` or
        :func:`manual_bp.logreg_loss_and_grads` by the type of ``params``.
    on_epoch : callable, optional
        ``on_epoch(epoch, history)`` after each epoch's evaluation (epoch counts from 1);
        for progress display. Its return value is ignored.

    Returns
    -------
    (params, history) : the trained parameters and a :class:`History` of ``epochs + 1``
        entries per curve.

    Raises
    ------
    TypeError
        Unknown params type, non-integer labels, features of another dtype than the params.
    ValueError
        Labels out of range, features and labels of different lengths, NaN or inf in the
        features, ``batch_size`` outside ``[1, m]``, bad ``epochs`` or ``lr``.

    Examples
    --------
    >>> from manual_bp import LogRegParams
    >>> x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> labels = np.array([0, 0, 1, 1])
    >>> params, history = train(LogRegParams(np.zeros(1), np.array(0.0)), x, labels, x, labels,
    ...                         lr=1.0, epochs=3, batch_size=2, rng=np.random.default_rng(0))
    >>> history.train_accuracy
    (0.5, 1.0, 1.0, 1.0)
    """
    _n_classes(params)
    xa, la = _check_data(params, "x_train", x_train, "labels_train", labels_train)
    xt, lt = _check_data(params, "x_test", x_test, "labels_test", labels_test)
    if xt.shape[1] != xa.shape[1]:
        raise ValueError(
            f"x_test has shape {shape_str(xt.shape)} but x_train has shape "
            f"{shape_str(xa.shape)}: the number of columns must be equal"
        )
    steps = descend(
        params,
        xa,
        targets(params, la),
        grad_fn=_default_grad_fn(params) if grad_fn is None else grad_fn,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        rng=rng,
    )
    data = (xa, la, xt, lt)
    curves = [_measure(params, data)]
    steps_per_epoch = math.ceil(xa.shape[0] / batch_size)
    for step in steps:
        params = step.params
        if (step.number + 1) % steps_per_epoch == 0:
            curves.append(_measure(params, data))
            if on_epoch is not None:
                on_epoch(step.epoch + 1, _history(curves))
    return params, _history(curves)


def _measure(
    params: MLPParams | LogRegParams, data: tuple[FloatArray, Labels, FloatArray, Labels]
) -> tuple[float, float, float, float]:
    """(train loss, train accuracy, held-out loss, held-out accuracy) at ``params``."""
    x_train, labels_train, x_test, labels_test = data
    return (*evaluate(params, x_train, labels_train), *evaluate(params, x_test, labels_test))


def _history(curves: list[tuple[float, float, float, float]]) -> History:
    train_loss, train_accuracy, test_loss, test_accuracy = zip(*curves, strict=True)
    return History(train_loss, train_accuracy, test_loss, test_accuracy)
