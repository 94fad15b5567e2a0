r"""The JAX twin of a training run: the same descent with ``jax.grad`` in place of backprop.

:func:`twin_run` runs :func:`manual_bp.train.descend` twice from the same initial parameters
with two copies of the same ``np.random.Generator``, so both runs see the same minibatches
in the same order and apply the same :func:`manual_bp.sgd_step`. The only difference is the
gradient function: the manual :func:`manual_bp.mlp_loss_and_grads` (or
:func:`manual_bp.logreg_loss_and_grads`) in one run, ``jax.value_and_grad`` of
:func:`verification.reference.mlp_loss` (or ``logreg_loss``) in the other. The runs advance in
lockstep and the largest absolute parameter difference is recorded after every step.

Tolerance
---------
In exact arithmetic the two runs are identical. In floating point each gradient is rounded
differently (JAX differentiates ``log_softmax`` and sums in its own order; the manual code
forms ``(P - Y)/m`` from cached log-probabilities), a fraction of an ulp of the parameter
scale per step, and a step's rounding is carried into every later step. Gradient descent at
a stable learning rate does not amplify such perturbations, so the difference grows at most
linearly with the number of steps s (independent roundings grow more slowly, like sqrt(s)):

.. math:: \max_\theta |\theta_{\text{manual}} - \theta_{\text{JAX}}|
          \le c \cdot \varepsilon \cdot s \cdot \max(1, \max |\theta|)

with :math:`\varepsilon` the machine epsilon of the dtype and c = :data:`ULPS_PER_STEP` = 2;
:func:`tolerance` computes the bound. Measured in float64 on the default digits run
(1350 steps, parameters below 1): 1.2e-15 after the last step (5.5 ulps), against a bound
of 6.0e-13, a margin of about 500. Across other settings (up to 5400 steps) the worst
step was 0.25 ulps per step; a 1e-6 relative error in the gradient moves the parameters by
about 1e-9 per step, beyond the bound after the first step. The bound assumes a converging
run: a diverging one (parameters growing without limit) amplifies rounding and fails it, as
would a ReLU pre-activation that lands within rounding of 0 in one run only (probability of
order 1e-9 per run with continuous data).

Command line
------------
``python -m verification twin [options of python -m manual_bp.train]`` trains exactly as
``python -m manual_bp.train`` does, then runs :func:`twin_run` from the same start and
reports the largest difference (:func:`check`); ``python -m manual_bp.train
--check-against-jax`` hands itself to this command, so that ``manual_bp`` never imports
``verification``. Exit status 1 when the runs differ beyond the tolerance.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from manual_bp import LogRegParams, MLPParams, logreg_loss_and_grads, mlp_loss_and_grads
from manual_bp.train import GradFn, descend, targets
from manual_bp.train.cli import TrainedRun, main as train_main
from verification import reference

__all__ = ["PROG", "ULPS_PER_STEP", "TwinRun", "check", "main", "tolerance", "twin_run"]

PROG = "python -m verification twin"

P = TypeVar("P", bound=MLPParams | LogRegParams)

#: Rounding allowed per step, in units of the dtype's epsilon relative to the parameter scale.
ULPS_PER_STEP = 2


class TwinRun(NamedTuple):
    """The result of :func:`twin_run`.

    Attributes
    ----------
    max_abs_diff : ndarray, shape (steps,), float64
        After step s, the largest ``|manual - jax|`` over every entry of every parameter.
    scale : ndarray, shape (steps,), float64
        After step s, the largest ``|parameter|`` of the manual run.
    tolerance : ndarray, shape (steps,), float64
        After step s, the allowed difference :func:`tolerance` (dtype, s, scale[s]).
    manual : MLPParams or LogRegParams
        Final parameters of the manual run.
    jax : MLPParams or LogRegParams
        Final parameters of the JAX run (numpy arrays).
    """

    max_abs_diff: NDArray[np.float64]
    scale: NDArray[np.float64]
    tolerance: NDArray[np.float64]
    manual: MLPParams | LogRegParams
    jax: MLPParams | LogRegParams

    @property
    def agrees(self) -> bool:
        """Whether the difference stayed within its tolerance after every step."""
        return bool(np.all(self.max_abs_diff <= self.tolerance))


def tolerance(dtype: np.dtype[Any] | type[np.floating[Any]], steps: int, scale: float) -> float:
    r"""Allowed parameter difference after ``steps`` steps: :math:`c\,\varepsilon\,s\,\max(1, scale)`.

    Examples
    --------
    >>> tolerance(np.float64, 100, 0.5)  # 200 ulps of 1.0
    4.440892098500626e-14
    >>> tolerance(np.float32, 100, 3.0)  # 600 ulps of 1.0 in float32
    7.152557373046875e-05
    """
    eps = float(np.finfo(dtype).eps)
    return ULPS_PER_STEP * eps * steps * max(1.0, scale)


def _max_abs(params: MLPParams | LogRegParams) -> float:
    return max(float(np.max(np.abs(p))) for p in params)


def _max_abs_diff(a: MLPParams | LogRegParams, b: MLPParams | LogRegParams) -> float:
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a, b, strict=True))


def _grad_fns(params: MLPParams | LogRegParams) -> tuple[GradFn[Any], GradFn[Any]]:
    """The manual gradient function for ``params``'s model and its JAX counterpart."""
    if isinstance(params, MLPParams):
        return mlp_loss_and_grads, reference.mlp_loss_and_grads
    return logreg_loss_and_grads, reference.logreg_loss_and_grads


def twin_run(
    params: P,
    x: ArrayLike,
    labels: ArrayLike,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
) -> TwinRun:
    """Run manual and JAX gradient descent side by side and compare them after every step.

    Parameters
    ----------
    params : MLPParams or LogRegParams
        Shared initial parameters; their type picks the model (and the reference loss).
    x : array, shape (m, n)
        Training features of the params' dtype.
    labels : int array, shape (m,)
        Class indices, as for :func:`manual_bp.train.train`.
    lr, epochs, batch_size
        As :func:`manual_bp.train.descend`.
    rng : np.random.Generator
        Not advanced: each run draws its shuffles from its own copy, so both see the batches
        that ``train(..., rng=rng)`` would see.

    Returns
    -------
    TwinRun

    Examples
    --------
    >>> run = twin_run(LogRegParams(np.zeros(1), np.array(0.0)), np.array([[1.0], [-1.0]]),
    ...                np.array([1, 0]), lr=1.0, epochs=3, batch_size=1,
    ...                rng=np.random.default_rng(0))
    >>> run.max_abs_diff.shape, run.agrees
    ((6,), True)
    """
    y = targets(params, labels)
    manual_fn, jax_fn = _grad_fns(params)
    settings: dict[str, Any] = {"lr": lr, "epochs": epochs, "batch_size": batch_size}
    manual_steps = descend(params, x, y, grad_fn=manual_fn, rng=copy.deepcopy(rng), **settings)
    jax_steps = descend(params, x, y, grad_fn=jax_fn, rng=copy.deepcopy(rng), **settings)
    diffs: list[float] = []
    scales: list[float] = []
    manual, twin = params, params
    for manual_step, jax_step in zip(manual_steps, jax_steps, strict=True):
        manual, twin = manual_step.params, jax_step.params
        diffs.append(_max_abs_diff(manual, twin))
        scales.append(_max_abs(manual))
    dtype = np.asarray(params[0]).dtype
    bounds = [tolerance(dtype, s, c) for s, c in enumerate(scales, start=1)]
    return TwinRun(np.array(diffs), np.array(scales), np.array(bounds), manual, twin)


def check(trained: TrainedRun) -> int:
    """Rerun ``trained`` with manual and JAX gradients in lockstep and print the largest
    parameter difference; 0 when they agree to rounding at every step, else 1 (with the
    reason on stderr). The hook :func:`main` gives ``manual_bp.train.cli.main``."""
    start = time.perf_counter()
    run = twin_run(
        trained.params0,
        trained.x_train,
        trained.labels_train,
        lr=trained.lr,
        epochs=trained.epochs,
        batch_size=trained.batch_size,
        rng=trained.rng,
    )
    seconds = time.perf_counter() - start
    steps = len(run.max_abs_diff)
    worst = int(np.argmax(run.max_abs_diff))
    closest = int(np.argmax(run.max_abs_diff / run.tolerance))
    same = all(np.array_equal(a, b) for a, b in zip(run.manual, trained.params, strict=True))
    print(
        f"JAX twin ({seconds:.1f} s): largest parameter difference over {steps} steps "
        f"{run.max_abs_diff[worst]:.2e} (after step {worst + 1}, tolerance there "
        f"{run.tolerance[worst]:.1e}); closest to its tolerance: step {closest + 1}, "
        f"{run.max_abs_diff[closest] / run.tolerance[closest]:.1%} of it"
    )
    if not same:
        print(
            f"{PROG}: error: the twin's manual run did not reproduce the trained parameters",
            file=sys.stderr,
        )
        return 1
    if not run.agrees:
        print(
            f"{PROG}: error: the manual and jax.grad runs differ beyond rounding", file=sys.stderr
        )
        return 1
    print("the manual and jax.grad runs agree to rounding at every step")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m verification twin``: the training command with :func:`check` after it."""
    return train_main(argv, prog=PROG, after=check)
