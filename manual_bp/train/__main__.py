"""``python -m manual_bp.train``: train on real data with the hand-derived gradients.

With no arguments it trains the one-hidden-layer network on scikit-learn's bundled digits
(64 -> 64 -> 10, 30 epochs of minibatch gradient descent, batch 32, learning rate 0.1),
shows a progress bar over the epochs with loss and accuracy, and prints a summary.
``--dataset breast-cancer`` trains logistic regression instead. ``--plot PATH`` writes the
loss and accuracy curves (train vs held-out) as a PNG; ``--check-against-jax`` repeats the run
with ``jax.grad`` gradients (``verification.twin``) and reports the largest parameter
difference seen over all steps.

Needs the ``train`` extra (scikit-learn, matplotlib, tqdm), and ``verify`` (JAX) for
``--check-against-jax``. Exit status: 0 on success, 1 when an extra is missing or the JAX run
disagrees beyond its tolerance, 2 for bad options.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from manual_bp import LogRegParams, MLPParams, init_mlp
from manual_bp.datasets import Split, load
from manual_bp.train._loop import History, train

__all__ = ["DEFAULTS", "main", "parser", "plot_history"]

#: Settings used when an option is not given, per data set.
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"hidden": 64, "lr": 0.1, "epochs": 30, "batch_size": 32},
    "breast-cancer": {"hidden": None, "lr": 0.1, "epochs": 30, "batch_size": 32},
}
_MODEL = {"digits": "one-hidden-layer network", "breast-cancer": "logistic regression"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line interface (every option defaults to :data:`DEFAULTS`)."""
    p = argparse.ArgumentParser(
        prog="python -m manual_bp.train",
        description="Minibatch gradient descent with hand-derived backprop on bundled real data.",
    )
    p.add_argument(
        "--dataset",
        choices=sorted(DEFAULTS),
        default="digits",
        help="digits: 10-class network; breast-cancer: logistic regression (default: %(default)s)",
    )
    p.add_argument("--hidden", type=_positive_int, help="hidden units of the network (64)")
    p.add_argument("--lr", type=_positive_float, help="learning rate (0.1)")
    p.add_argument("--epochs", type=_positive_int, help="passes over the training data (30)")
    p.add_argument("--batch-size", type=_positive_int, help="rows per minibatch (32)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the split, the initial weights and the shuffles (default: 0)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="floating dtype of data and parameters (default: %(default)s)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help="write loss and accuracy curves (train vs held-out) to this PNG",
    )
    p.add_argument(
        "--check-against-jax",
        action="store_true",
        help="rerun with jax.grad gradients and report the largest parameter "
        "difference (needs the verify extra)",
    )
    return p


def plot_history(history: History, path: Path, title: str) -> None:
    """Write loss (log scale) and accuracy curves, train vs held-out, per epoch as a PNG."""
    from matplotlib.figure import Figure  # lazily: matplotlib is in the `train` extra

    epochs = np.arange(len(history.train_loss))
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, history.train_loss, label="train", color="tab:blue")
    loss_ax.plot(epochs, history.test_loss, label="held-out", color="tab:orange")
    loss_ax.set(title="Cross-entropy loss", xlabel="epoch", ylabel="mean loss (log scale)")
    loss_ax.set_yscale("log")
    loss_ax.legend(loc="upper right")
    train_acc = 100 * np.asarray(history.train_accuracy)
    test_acc = 100 * np.asarray(history.test_accuracy)
    acc_ax.plot(epochs, train_acc, color="tab:blue", label=f"train (final {train_acc[-1]:.2f}%)")
    acc_ax.plot(epochs, test_acc, color="tab:orange", label=f"held-out (final {test_acc[-1]:.2f}%)")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    # Zoom on the trained range: epoch 0 (chance level) would squash the curves that matter.
    low = min(train_acc[1:].min(), test_acc[1:].min()) if len(epochs) > 1 else test_acc.min()
    acc_ax.set_ylim(max(0.0, np.floor(low) - 1), 100.5)
    if test_acc[0] < acc_ax.get_ylim()[0]:
        note = f"epoch 0 (off scale): {train_acc[0]:.1f}% train, {test_acc[0]:.1f}% held-out"
        acc_ax.text(0.98, 0.03, note, transform=acc_ax.transAxes, ha="right", color="gray")
    acc_ax.legend(loc="center right")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def _missing_extra(what: str, extra: str, err: ImportError) -> int:
    print(
        f"error: {what} needs the `{extra}` extra ({err}); "
        f"install it with: pip install 'manual-bp[{extra}]'",
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 missing extra or JAX mismatch, 2 usage)."""
    p = parser()
    args = p.parse_args(argv)
    settings = {**DEFAULTS[args.dataset]}
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.dataset == "breast-cancer" and args.hidden is not None:
        p.error(
            "--hidden applies to the digits network only (breast-cancer is logistic regression)"
        )
    try:
        from threadpoolctl import threadpool_limits
        from tqdm import tqdm
    except ImportError as err:
        return _missing_extra("training", "train", err)
    try:
        data = load(args.dataset, seed=args.seed, dtype=np.dtype(args.dtype))
    except ImportError as err:
        return _missing_extra("loading the data", "train", err)
    # The matrices are small (batch 32, 64 features): one BLAS thread is fastest, and on a
    # loaded machine several threads waiting for each other made the run ten times slower.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        tqdm(total=settings["epochs"], unit="epoch", desc="training", file=sys.stderr) as bar,
    ):
        return _run(args, settings, data, bar)


def _run(args: argparse.Namespace, settings: dict[str, Any], data: Split, bar: Any) -> int:
    """Initialise, train with a progress bar, print the summary, plot, compare with JAX."""
    rng = np.random.default_rng(args.seed)
    n, dtype = data.x_train.shape[1], data.x_train.dtype
    params0: MLPParams | LogRegParams
    if args.dataset == "digits":
        params0 = init_mlp(rng, n, settings["hidden"], data.n_classes, dtype)
        shape = f"{n}-{settings['hidden']}-{data.n_classes}"
    else:
        params0 = LogRegParams(np.zeros(n, dtype), np.zeros((), dtype))
        shape = f"{n} features"
    m, m_test = data.x_train.shape[0], data.x_test.shape[0]
    print(
        f"{args.dataset}: {_MODEL[args.dataset]} ({shape}), {args.dtype}, "
        f"{m} training / {m_test} held-out rows"
    )

    def show(epoch: int, history: History) -> None:
        bar.set_postfix_str(
            f"loss {history.train_loss[-1]:.4f}, held-out loss {history.test_loss[-1]:.4f}, "
            f"held-out acc {history.test_accuracy[-1]:.2%}"
        )
        bar.update()

    twin_rng = copy.deepcopy(rng)  # the twin must see the batches train() will draw
    start = time.perf_counter()
    try:
        params, history = train(
            params0,
            data.x_train,
            data.labels_train,
            data.x_test,
            data.labels_test,
            lr=settings["lr"],
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            rng=rng,
            on_epoch=show,
        )
    except ValueError as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    bar.close()

    steps = math.ceil(m / settings["batch_size"])
    print(
        f"{settings['epochs']} epochs x {steps} steps (batch {settings['batch_size']}, "
        f"lr {settings['lr']:g}) in {seconds:.2f} s"
    )
    print(f"{'':10}{'loss':>8}{'accuracy':>10}")
    print(f"{'train':10}{history.train_loss[-1]:8.4f}{history.train_accuracy[-1]:10.2%}")
    print(f"{'held-out':10}{history.test_loss[-1]:8.4f}{history.test_accuracy[-1]:10.2%}")

    if args.plot is not None:
        title = (
            f"{args.dataset}: {_MODEL[args.dataset]} ({shape}), batch {settings['batch_size']}, "
            f"lr {settings['lr']:g}, seed {args.seed}"
        )
        try:
            plot_history(history, args.plot, title)
        except ImportError as err:
            return _missing_extra("--plot", "train", err)
        print(f"plot written to {args.plot}")

    if args.check_against_jax:
        return _check_against_jax(
            params0, params, data.x_train, data.labels_train, settings, twin_rng
        )
    return 0


def _check_against_jax(
    params0: MLPParams | LogRegParams,
    trained: MLPParams | LogRegParams,
    x: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    settings: dict[str, Any],
    rng: np.random.Generator,
) -> int:
    """Rerun with manual and JAX gradients in lockstep; report the largest difference."""
    try:
        from verification.twin import twin_run
    except ImportError as err:
        return _missing_extra("--check-against-jax", "verify", err)
    start = time.perf_counter()
    run = twin_run(
        params0,
        x,
        labels,
        lr=settings["lr"],
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        rng=rng,
    )
    seconds = time.perf_counter() - start
    steps = len(run.max_abs_diff)
    worst = int(np.argmax(run.max_abs_diff))
    closest = int(np.argmax(run.max_abs_diff / run.tolerance))
    same = all(np.array_equal(a, b) for a, b in zip(run.manual, trained, strict=True))
    print(
        f"JAX twin ({seconds:.1f} s): largest parameter difference over {steps} steps "
        f"{run.max_abs_diff[worst]:.2e} (after step {worst + 1}, tolerance there "
        f"{run.tolerance[worst]:.1e}); closest to its tolerance: step {closest + 1}, "
        f"{run.max_abs_diff[closest] / run.tolerance[closest]:.1%} of it"
    )
    if not same:
        print(
            "error: the twin's manual run did not reproduce the trained parameters", file=sys.stderr
        )
        return 1
    if not run.agrees:
        print("error: the manual and jax.grad runs differ beyond rounding", file=sys.stderr)
        return 1
    print("the manual and jax.grad runs agree to rounding at every step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
