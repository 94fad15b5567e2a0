"""manual_bp.datasets: bundled data, stratified split, standardisation from the training split."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
import sklearn.datasets
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from manual_bp.datasets import Split, load, load_breast_cancer, load_digits, standardise


@pytest.fixture(scope="module")
def digits() -> Split:
    return load_digits(seed=0)


def test_digits_split_is_80_20_with_64_standardised_features(digits: Split) -> None:
    assert digits.x_train.shape == (1437, 64)
    assert digits.x_test.shape == (360, 64)
    assert digits.labels_train.shape == (1437,)
    assert digits.labels_test.shape == (360,)
    assert digits.labels_train.dtype == np.int64
    assert digits.n_classes == 10


def test_breast_cancer_split_has_30_features_and_two_classes() -> None:
    data = load("breast-cancer", seed=0)
    assert (data.x_train.shape, data.x_test.shape, data.n_classes) == ((455, 30), (114, 30), 2)
    assert set(np.unique(data.labels_train)) == {0, 1}


def test_split_is_stratified(digits: Split) -> None:
    train_counts = np.bincount(digits.labels_train, minlength=10)
    test_counts = np.bincount(digits.labels_test, minlength=10)
    total = train_counts + test_counts
    # every sample lands in exactly one part
    np.testing.assert_array_equal(total, np.bincount(sklearn.datasets.load_digits().target))
    # each class is split 80/20 up to one sample of rounding
    assert np.all(np.abs(test_counts - 0.2 * total) <= 1)


def test_training_split_is_standardised_and_held_out_split_is_not_exactly(digits: Split) -> None:
    train_mean = digits.x_train.mean(axis=0)
    train_std = digits.x_train.std(axis=0)
    np.testing.assert_allclose(train_mean, 0, atol=1e-12)
    constant = train_std == 0  # the always-blank corner pixels of the digits
    assert 0 < constant.sum() < 64
    np.testing.assert_allclose(train_std[~constant], 1, rtol=1e-12)
    # the held-out rows were scaled with the training statistics, not their own
    assert np.abs(digits.x_test.mean(axis=0)).max() > 1e-3
    assert np.abs(digits.x_test.std(axis=0)[~constant] - 1).max() > 1e-3


def test_same_seed_gives_the_same_split_and_another_seed_another() -> None:
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.labels_train, b.labels_train)
    assert not np.array_equal(a.labels_train, c.labels_train)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_features_have_the_requested_dtype(dtype: type[np.floating[Any]]) -> None:
    data = load_breast_cancer(seed=0, dtype=dtype)
    assert data.x_train.dtype == dtype
    assert data.x_test.dtype == dtype
    assert data.labels_test.dtype == np.int64


# values on a 0.1 grid: a column's spread is then 0 or at least about 0.05, never subnormal
_values = st.integers(-1000, 1000).map(lambda i: i / 10)


@given(
    x_train=arrays(np.float64, st.tuples(st.integers(2, 8), st.just(3)), elements=_values),
    x_test=arrays(np.float64, st.tuples(st.integers(1, 4), st.just(3)), elements=_values),
)
def test_standardise_uses_only_the_training_statistics(
    x_train: np.ndarray[tuple[int, int], np.dtype[np.float64]],
    x_test: np.ndarray[tuple[int, int], np.dtype[np.float64]],
) -> None:
    train_out, test_out = standardise(x_train, x_test)
    # the held-out rows do not influence the training output ...
    np.testing.assert_array_equal(train_out, standardise(x_train, x_test[:1])[0])
    # ... and a held-out row equal to a training row maps to the same standardised row
    _, copied = standardise(x_train, x_train[:2])
    np.testing.assert_array_equal(copied, train_out[:2])
    assert test_out.shape == x_test.shape
    assert np.all(np.isfinite(test_out))


def test_standardise_only_centres_a_constant_column() -> None:
    train_out, test_out = standardise(np.array([[5.0, 1.0], [5.0, 3.0]]), np.array([[7.0, 2.0]]))
    np.testing.assert_array_equal(train_out[:, 0], [0.0, 0.0])
    np.testing.assert_array_equal(test_out, [[2.0, 0.0]])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: load("mnist"), ValueError, r"name: expected one of \['breast-cancer', 'digits'\]"),
        (lambda: load_digits(dtype=np.int32), TypeError, "dtype: expected a floating dtype"),
        (lambda: load_digits(test_fraction=1.0), ValueError, r"test_fraction: expected .* \(0, 1\)"),
        (lambda: standardise(np.ones((3, 2)), np.ones((3, 3))), ValueError,
         r"same n, got shapes \(3, 2\) and \(3, 3\)"),
        (lambda: standardise(np.ones((0, 2)), np.ones((3, 2))), ValueError,
         r"x_train: expected at least one row, got shape \(0, 2\)"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_naming_the_argument(
    call: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


def test_missing_scikit_learn_names_the_train_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "\.\[train\]" \(in a clone'):
        load_digits()


def test_standardise_scales_a_column_whose_std_is_below_one() -> None:
    # column 0 has std 0.25 (values 0 and 0.5): it must be divided by 0.25, not left alone.
    train = np.array([[0.0, 10.0], [0.5, 30.0]])
    x_train, x_test = standardise(train, np.array([[0.25, 20.0]]))
    np.testing.assert_allclose(x_train, [[-1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(x_test, [[0.0, 0.0]])


def test_standardise_keeps_float32() -> None:
    train = np.array([[0.0], [2.0]], dtype=np.float32)
    x_train, x_test = standardise(train, train.copy())
    assert x_train.dtype == np.float32
    assert x_test.dtype == np.float32


@pytest.mark.parametrize("bad", ["train", "test"])
def test_standardise_rejects_a_one_dimensional_part(bad: str) -> None:
    two_d, one_d = np.zeros((2, 3)), np.zeros(3)
    args = (one_d, two_d) if bad == "train" else (two_d, one_d)
    with pytest.raises(ValueError, match=r"2-D arrays"):
        standardise(*args)


@pytest.mark.parametrize("name", ["digits", "breast-cancer"])
def test_load_forwards_seed_fraction_and_dtype(name: str) -> None:
    direct = {"digits": load_digits, "breast-cancer": load_breast_cancer}[name]
    via_load = load(name, seed=3, test_fraction=0.3, dtype=np.float32)
    expected = direct(seed=3, test_fraction=0.3, dtype=np.float32)
    assert via_load.x_train.dtype == np.float32
    for got, want in zip(via_load, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert via_load.x_test.shape[0] != load(name).x_test.shape[0]  # 30% differs from 20%


@pytest.mark.parametrize("loader", [load_digits, load_breast_cancer])
def test_default_seed_is_zero_and_fixed(loader: Any) -> None:
    default, seeded = loader(), loader(seed=0)
    for got, want in zip(default, seeded, strict=True):
        np.testing.assert_array_equal(got, want)
    other = loader(seed=1)
    assert not np.array_equal(default.labels_test, other.labels_test)


def test_load_default_seed_is_zero() -> None:
    np.testing.assert_array_equal(load("digits").labels_test, load_digits(seed=0).labels_test)


def test_test_fraction_zero_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"test_fraction"):
        load_digits(test_fraction=0.0)


def test_breast_cancer_split_is_stratified() -> None:
    split = load_breast_cancer()
    full = np.bincount(sklearn.datasets.load_breast_cancer().target)
    held_out = np.bincount(split.labels_test, minlength=2)
    # stratified: each class's held-out count is within one of 20% of its total
    assert np.all(np.abs(held_out - 0.2 * full) <= 1)
