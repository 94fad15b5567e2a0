"""Real data with no download: scikit-learn's bundled digits and breast-cancer sets.

Both loaders return a :class:`Split`: a stratified train / held-out split (80/20 by default,
fixed by an explicit ``seed``) whose features are standardised with the mean and standard
deviation of the *training* split only, so nothing about the held-out rows leaks into the
model. scikit-learn ships these sets inside its wheel; it is imported inside the functions,
so ``import manual_bp.datasets`` needs numpy alone. Install the ``train`` extra
(``pip install ".[train]"`` in a clone) to load the data.

==============  =========  ========  =======  =================================
name            samples    features  classes  model in ``python -m manual_bp.train``
==============  =========  ========  =======  =================================
digits          1797       64 (8x8)  10       one-hidden-layer network
breast-cancer   569        30        2        logistic regression
==============  =========  ========  =======  =================================
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike, NDArray

from manual_bp._cli import install_hint

__all__ = ["DATASETS", "Split", "load", "load_breast_cancer", "load_digits", "standardise"]

_EXTRA_HINT = f"install the `train` extra: {install_hint('train')}"


class Split(NamedTuple):
    """A labelled data set split into a training part and a held-out part.

    Attributes
    ----------
    x_train : ndarray, shape (m_train, n), float dtype chosen by the loader
        Standardised training features, one sample per row.
    labels_train : ndarray, shape (m_train,), int64
        Class indices in ``[0, n_classes)``.
    x_test : ndarray, shape (m_test, n), same dtype as ``x_train``
        Held-out features, standardised with the *training* statistics.
    labels_test : ndarray, shape (m_test,), int64
        Held-out class indices.
    n_classes : int
        Number of classes k.
    """

    x_train: NDArray[np.floating[Any]]
    labels_train: NDArray[np.int64]
    x_test: NDArray[np.floating[Any]]
    labels_test: NDArray[np.int64]
    n_classes: int


def standardise(
    x_train: NDArray[np.floating[Any]], x_test: NDArray[np.floating[Any]]
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """Centre and scale both parts with the statistics of the training part only.

    .. math::  \\mu = \\tfrac{1}{m}\\sum_i x_{i\\cdot},\\quad
               \\sigma^2 = \\tfrac{1}{m}\\sum_i (x_{i\\cdot} - \\mu)^2,\\quad
               x' = (x - \\mu) / \\sigma

    with ``mu`` and ``sigma`` per column over the rows of ``x_train``. A column that is
    constant in the training part (sigma = 0, e.g. the always-blank corner pixels of the
    digits) is only centred: dividing by 1 there keeps the training column at exactly 0
    and the held-out column finite.

    Parameters
    ----------
    x_train : ndarray, shape (m_train, n)
    x_test : ndarray, shape (m_test, n)

    Returns
    -------
    (x_train', x_test') : ndarrays of the same shapes and dtypes as the inputs.

    Raises
    ------
    ValueError
        If either part is not 2-D, the column counts differ, or ``x_train`` is empty.

    Examples
    --------
    >>> train = np.array([[1.0, 5.0], [3.0, 5.0]])
    >>> test = np.array([[2.0, 7.0]])
    >>> a, b = standardise(train, test)
    >>> a.tolist(), b.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[0.0, 2.0]])
    """
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            "x_train and x_test: expected 2-D arrays (m, n) with the same n, "
            f"got shapes {x_train.shape} and {x_test.shape}"
        )
    if x_train.shape[0] == 0:
        raise ValueError(f"x_train: expected at least one row, got shape {x_train.shape}")
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    scale = np.where(std > 0, std, 1).astype(x_train.dtype)
    return (x_train - mean) / scale, (x_test - mean) / scale


def _split(
    sklearn: ModuleType,
    features: NDArray[np.floating[Any]],
    labels: NDArray[np.integer[Any]],
    n_classes: int,
    *,
    seed: int,
    test_fraction: float,
    dtype: DTypeLike,
) -> Split:
    """Stratified split, standardisation from the training part, cast to ``dtype``."""
    out_dtype = np.dtype(dtype)
    if out_dtype.kind != "f":
        raise TypeError(f"dtype: expected a floating dtype such as float64, got {out_dtype}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    x_train, x_test, y_train, y_test = sklearn.model_selection.train_test_split(
        np.asarray(features, dtype=np.float64),
        np.asarray(labels, dtype=np.int64),
        test_size=test_fraction,
        stratify=labels,
        random_state=seed,
    )
    x_train, x_test = standardise(x_train, x_test)
    return Split(
        x_train=x_train.astype(out_dtype),
        labels_train=y_train,
        x_test=x_test.astype(out_dtype),
        labels_test=y_test,
        n_classes=n_classes,
    )


def _import_sklearn() -> ModuleType:
    """Import scikit-learn (datasets, model_selection), or raise an ImportError naming the extra."""
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError as err:
        raise ImportError(
            f"loading the bundled data sets needs scikit-learn; {_EXTRA_HINT}"
        ) from err
    module: ModuleType = sklearn
    return module


def load_digits(
    *, seed: int = 0, test_fraction: float = 0.2, dtype: DTypeLike = np.float64
) -> Split:
    """Handwritten digits: 1797 images of 8x8 pixels (64 features), 10 classes.

    Parameters
    ----------
    seed : int
        Fixes the stratified split (``random_state`` of scikit-learn's ``train_test_split``).
    test_fraction : float in (0, 1)
        Share of samples held out (0.2 gives 1437 training and 360 held-out rows).
    dtype : floating dtype
        dtype of the feature arrays (labels are always int64).

    Returns
    -------
    Split with ``n_classes = 10``; features standardised from the training split.

    Raises
    ------
    ImportError
        If scikit-learn (the ``train`` extra) is not installed.

    Examples
    --------
    >>> data = load_digits(seed=0)
    >>> data.x_train.shape, data.x_test.shape, data.n_classes
    ((1437, 64), (360, 64), 10)
    """
    sklearn = _import_sklearn()
    bunch = sklearn.datasets.load_digits()
    return _split(
        sklearn, bunch.data, bunch.target, 10, seed=seed, test_fraction=test_fraction, dtype=dtype
    )


def load_breast_cancer(
    *, seed: int = 0, test_fraction: float = 0.2, dtype: DTypeLike = np.float64
) -> Split:
    """Wisconsin breast-cancer diagnoses: 569 samples, 30 features, 2 classes.

    Label 1 is benign (357 samples), 0 malignant (212), as scikit-learn encodes them.
    Parameters, return value and errors as for :func:`load_digits`.

    Examples
    --------
    >>> data = load_breast_cancer(seed=0, dtype=np.float32)
    >>> data.x_train.shape, data.x_test.dtype, data.n_classes
    ((455, 30), dtype('float32'), 2)
    """
    sklearn = _import_sklearn()
    bunch = sklearn.datasets.load_breast_cancer()
    return _split(
        sklearn, bunch.data, bunch.target, 2, seed=seed, test_fraction=test_fraction, dtype=dtype
    )


#: The data sets by command-line name.
DATASETS: dict[str, Callable[..., Split]] = {
    "digits": load_digits,
    "breast-cancer": load_breast_cancer,
}


def load(
    name: str, *, seed: int = 0, test_fraction: float = 0.2, dtype: DTypeLike = np.float64
) -> Split:
    """Load a data set by its name in :data:`DATASETS` (``"digits"`` or ``"breast-cancer"``).

    Raises
    ------
    ValueError
        If ``name`` is not one of the names in :data:`DATASETS`.
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](seed=seed, test_fraction=test_fraction, dtype=dtype)
