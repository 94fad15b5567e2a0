"""Training with the hand-derived gradients: minibatch gradient descent, pure and reproducible.

``python -m manual_bp.train`` runs it on real data (see :mod:`manual_bp.train.__main__`).
This package imports numpy and :mod:`manual_bp` only; the command imports scikit-learn,
matplotlib and tqdm (the ``train`` extra) inside its functions.
"""

from manual_bp.train._loop import (
    GradFn as GradFn,
    History as History,
    Step as Step,
    batches as batches,
    descend as descend,
    evaluate as evaluate,
    predict as predict,
    targets as targets,
    train as train,
)

__all__ = [
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
