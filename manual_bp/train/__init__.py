"""Training with the hand-derived gradients: minibatch gradient descent, pure and reproducible.

``python -m manual_bp.train`` runs it on real data (see :mod:`manual_bp.train.cli`).
This package imports numpy and :mod:`manual_bp` only; the command imports scikit-learn,
matplotlib and tqdm (the ``train`` extra) inside its functions.
"""

from manual_bp.train._loop import (
    GROWTH_LIMIT as GROWTH_LIMIT,
    DivergenceError as DivergenceError,
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
