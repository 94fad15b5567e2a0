"""The training command: ``python -m manual_bp.train`` (and ``python -m verification twin``).

:func:`main` parses and checks every option and output path before any work, loads the
bundled data, trains with a progress display on stderr, prints a summary and writes the plot.
``after`` is the hook that ``verification.mainjob.twin`` plugs in to compare the run with ``jax.grad``;
``manual_bp`` itself never imports ``verification``: ``--check-against-jax`` hands the whole
command to ``python -m verification twin`` in a new process, after checking that JAX is there.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from manual_bp import LogRegParams, MLPParams, init_mlp
from manual_bp._cli import (
    ArgumentParser,
    UsageError,
    check_output_file,
    missing_extra,
    nonnegative_int,
    positive_float,
    positive_int,
)
from manual_bp.datasets import Split, load
from manual_bp.train._loop import DivergenceError, History, train
from manual_bp.train._plot import plot_history
from manual_bp.train._progress import Progress

__all__ = ["DEFAULTS", "PROG", "AfterTraining", "TrainedRun", "main", "parser", "plot_history"]

PROG = "python -m manual_bp.train"
#: Settings used when an option is not given, per data set.
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"hidden": 64, "lr": 0.1, "epochs": 30, "batch_size": 32},
    "breast-cancer": {"hidden": None, "lr": 0.1, "epochs": 30, "batch_size": 32},
}
_MODEL = {"digits": "one-hidden-layer network", "breast-cancer": "logistic regression"}
#: What ``--check-against-jax`` imports from the `verify` extra.
_VERIFY = ("jax", "hypothesis")

_DESCRIPTION = """\
Minibatch gradient descent with the hand-derived backprop of manual_bp, on real data that
scikit-learn bundles (no download).

  digits         8x8 images of handwritten digits, 10 classes: the one-hidden-layer network
                 (64 -> hidden -> 10, ReLU, softmax cross-entropy)
  breast-cancer  30 features, 2 classes: logistic regression

The data are split 80/20 (stratified, by --seed) and standardised with the statistics of the
training split. Progress goes to stderr (a bar on a terminal, a few lines elsewhere); the
summary (final loss and accuracy, train and held-out) to stdout.

Needs the `train` extra: pip install ".[train]" in a clone; --check-against-jax also needs
`verify`: pip install ".[verify]".

exit status: 0 success; 1 training diverged, a missing extra, or the JAX twin disagrees;
2 a bad option or output path (one line on stderr says which and how to fix it)."""


class TrainedRun(NamedTuple):
    """What the ``after`` hook of :func:`main` receives: a run's inputs and its result.

    ``rng`` is a copy of the generator taken before training: drawing from it again gives
    the minibatches the run saw.
    """

    params0: MLPParams | LogRegParams
    params: MLPParams | LogRegParams
    x_train: np.ndarray[Any, Any]
    labels_train: np.ndarray[Any, Any]
    lr: float
    epochs: int
    batch_size: int
    rng: np.random.Generator


#: ``after(run) -> exit status``: called once training succeeded (``verification.mainjob.twin.check``).
AfterTraining = Callable[[TrainedRun], int]


def parser(prog: str = PROG) -> ArgumentParser:
    """The command-line interface; the defaults are :data:`DEFAULTS`."""
    d = DEFAULTS["digits"]
    p = ArgumentParser(prog=prog, description=_DESCRIPTION, allow_abbrev=False)
    p.add_argument(
        "--dataset",
        choices=sorted(DEFAULTS),
        default="digits",
        help="digits: 10-class network; breast-cancer: logistic regression (default: %(default)s)",
    )
    p.add_argument(
        "--hidden",
        type=positive_int,
        metavar="N",
        help=f"hidden units of the digits network (default: {d['hidden']})",
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        metavar="RATE",
        help=f"learning rate, a number > 0; too high diverges (default: {d['lr']})",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help=f"passes over the training data (default: {d['epochs']})",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help=f"rows per minibatch, at most the training rows (default: {d['batch_size']})",
    )
    p.add_argument(
        "--seed",
        type=nonnegative_int,
        default=0,
        metavar="N",
        help="seeds the split, the initial weights and the shuffles; 0 to 2**32-1 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="floating dtype of the data, the parameters and every step (default: %(default)s)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        metavar="PATH.png",
        help="write loss and accuracy curves (train vs held-out) to this PNG; its folder "
        "must exist (default: no plot)",
    )
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="let --plot replace a figure of the README in docs/ (default: refuse)",
    )
    p.add_argument(
        "--check-against-jax",
        action="store_true",
        help="then rerun with jax.grad gradients in lockstep and report the largest "
        "parameter difference (python -m verification twin; needs the verify extra)",
    )
    return p


def _settings(p: ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    settings = {**DEFAULTS[args.dataset]}
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.dataset == "breast-cancer" and args.hidden is not None:
        p.error(
            "--hidden applies to the digits network only (breast-cancer is logistic regression)"
        )
    if args.plot is not None:
        check_output_file("--plot", args.plot, ".png", update_docs=args.update_docs)
    return settings


def _missing(modules: Sequence[str]) -> ImportError | None:
    """An ImportError for the first of ``modules`` that is not installed, else None."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            return ImportError(f"No module named {name!r}", name=name)
    return None


def main(
    argv: Sequence[str] | None = None, *, prog: str = PROG, after: AfterTraining | None = None
) -> int:
    """Run the command; returns the exit status (0 ok, 1 diverged/missing extra/mismatch, 2 usage).

    ``after`` runs once training succeeded (``python -m verification twin`` passes its JAX
    comparison); without it, ``--check-against-jax`` reruns the command under
    ``python -m verification twin``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser(prog)
    args = p.parse_args(argv)
    try:
        settings = _settings(p, args)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    needed = ["sklearn", "threadpoolctl", "tqdm"] + (["matplotlib"] if args.plot else [])
    if (missing := _missing(needed)) is not None:
        return missing_extra(prog, "training", "train", missing)
    if args.check_against_jax and after is None:
        if (missing := _missing(_VERIFY)) is not None:
            return missing_extra(prog, "--check-against-jax", "verify", missing)
        twin = [sys.executable, "-m", "verification", "twin"]
        return subprocess.run([*twin, *(a for a in argv if a != "--check-against-jax")]).returncode

    from threadpoolctl import threadpool_limits

    try:
        data = load(args.dataset, seed=args.seed, dtype=np.dtype(args.dtype))
    except ImportError as err:
        return missing_extra(prog, "loading the data", "train", err)
    # The matrices are small (batch 32, 64 features): one BLAS thread is fastest, and on a
    # loaded machine several threads waiting for each other made the run ten times slower.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        Progress(settings["epochs"], sys.stderr) as progress,
    ):
        status, run = _run(args, settings, data, progress, prog)
    if run is None or after is None:
        return status
    return after(run)


def _run(
    args: argparse.Namespace, settings: dict[str, Any], data: Split, progress: Progress, prog: str
) -> tuple[int, TrainedRun | None]:
    """Initialise, train with progress, print the summary and plot; (status, the run or None)."""
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
        f"{m} training / {m_test} held-out rows",
        flush=True,
    )

    def show(epoch: int, history: History) -> None:
        progress.update(
            f"loss {history.train_loss[-1]:.4f}, held-out loss {history.test_loss[-1]:.4f}, "
            f"held-out acc {history.test_accuracy[-1]:.2%}"
        )

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
    except DivergenceError as err:
        progress.close()
        print(f"{prog}: error: {err}: lower --lr (it is {settings['lr']:g})", file=sys.stderr)
        return 1, None
    except ValueError as err:
        progress.close()
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2, None
    seconds = time.perf_counter() - start
    progress.close()

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
        plot_history(history, args.plot, title)
        print(f"plot written to {args.plot}")
    sys.stdout.flush()
    run = TrainedRun(
        params0,
        params,
        data.x_train,
        data.labels_train,
        settings["lr"],
        settings["epochs"],
        settings["batch_size"],
        twin_rng,
    )
    return 0, run
