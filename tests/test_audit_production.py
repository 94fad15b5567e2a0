"""The audit at the sizes people train: one concrete input, every element compared in float64.

At the benchmark's mnist size (m, n, h, k = 256, 784, 128, 10: 101,770 parameters) the audit
must pass a correct gradient, find a single wrong element among them, and print a report a
person can read: shapes, the offending elements and how to rebuild the input (a saved
``.npz``), never the arrays themselves. The large size (2048, 784, 1024, 10) runs under
``slow``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import manual_bp as mb
from verification import audit, reference
from verification.auditing._reproducer import (
    LITERAL_LIMIT,
    offending_elements,
    rebuild_source,
    save_counterexample,
    shape_lines,
)

MNIST = (256, 784, 128, 10)
LARGE = (2048, 784, 1024, 10)


def _network(m: int, n: int, h: int, k: int) -> tuple[mb.MLPParams, Any, Any]:
    rng = np.random.default_rng(0)
    params = mb.init_mlp(rng, n, h, k)
    params = params._replace(b1=rng.uniform(-0.1, 0.1, h), b2=rng.uniform(-0.1, 0.1, k))
    return params, rng.standard_normal((m, n)), np.eye(k)[rng.integers(0, k, m)]


def _correct(params: mb.MLPParams, x: Any, y: Any) -> mb.MLPParams:
    return mb.mlp_loss_and_grads(params, x, y)[1]


def _one_wrong_element(params: mb.MLPParams, x: Any, y: Any) -> mb.MLPParams:
    """Correct except dW1[700, 100], off by a thousandth of dW1's largest element."""
    g = _correct(params, x, y)
    dW1 = g.W1.copy()
    dW1[700, 100] += 1e-3 * np.max(np.abs(dW1))
    return g._replace(W1=dW1)


def _check_production(size: tuple[int, int, int, int]) -> None:
    args = _network(*size)
    assert audit(_correct, reference.mlp_loss, args, argnums=0, seed=0).passed
    report = audit(_one_wrong_element, reference.mlp_loss, args, argnums=0, seed=0)
    assert not report.passed
    assert report.location == "W1[700, 100]"
    text = str(report)
    assert f"W1: 1 of {size[1] * size[2]} elements out of tolerance" in text
    assert text.count("\n") < 60  # readable: no array printed
    assert "offending elements (worst first):" in text
    assert "W1[700, 100]: candidate" in text
    assert f"args[1]: shape ({size[0]}, 784), float64" in text
    # the reproducer rebuilds the very input from the saved file
    namespace: dict[str, Any] = {"np": np}
    source = [
        line for line in report.reproducer().splitlines() if line.startswith(("data", "args"))
    ]
    exec("\n".join(["from manual_bp.network import MLPParams", *source]), namespace)
    rebuilt = namespace["args"]
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt[0], args[0], strict=True))
    assert np.array_equal(rebuilt[1], args[1])


def test_one_wrong_element_found_at_mnist_size() -> None:
    _check_production(MNIST)


@pytest.mark.slow
def test_one_wrong_element_found_at_large_size() -> None:
    _check_production(LARGE)


def test_small_counterexample_still_prints_as_literals() -> None:
    args = _network(2, 3, 2, 2)
    report = audit(_one_wrong_element_small, reference.mlp_loss, args, argnums=0, seed=0)
    assert not report.passed
    assert "args = (MLPParams(W1=np.array(" in report.reproducer()


def _one_wrong_element_small(params: mb.MLPParams, x: Any, y: Any) -> mb.MLPParams:
    g = _correct(params, x, y)
    return g._replace(b2=g.b2 + np.array([0.5, 0.0]))


def test_saved_counterexample_round_trips_bfloat16(tmp_path: Path) -> None:
    bf16 = np.dtype(ml_dtypes.bfloat16)
    args = (mb.MLPParams(*(np.full(s, 1.5, bf16) for s in [(2, 3), (3,), (3, 2), (2,)])), 7)
    path = save_counterexample(args, tmp_path)
    namespace: dict[str, Any] = {"np": np}
    exec(
        "\n".join(["from manual_bp.network import MLPParams", *rebuild_source(args, path)]),
        namespace,
    )
    rebuilt = namespace["args"]
    assert rebuilt[1] == 7
    assert rebuilt[0].W1.dtype == bf16
    assert np.array_equal(rebuilt[0].W1, args[0].W1)


def test_shape_lines_and_offending_elements_name_what_matters() -> None:
    args = (np.zeros((3, 4)), {"w": np.array([1.0, -5.0])})
    assert shape_lines(args, ["x", "p"]) == [
        "x: shape (3, 4), float64, largest |element| 0",
        "p['w']: shape (2,), float64, largest |element| 5",
    ]
    got = [np.array([[1.0, 2.0], [3.0, 9.0]]), np.array([0.0])]
    ref = [np.array([[1.0, 2.0], [3.5, 4.0]]), np.array([0.0])]
    lines = offending_elements(got, ref, [(0.0, 0.1), (0.0, 0.1)], ["a", "b"])
    assert lines == [
        "a[1, 1]: candidate 9, reference 4, |error| 5 > allowed 0.1",
        "a[1, 0]: candidate 3, reference 3.5, |error| 0.5 > allowed 0.1",
    ]
    assert LITERAL_LIMIT < 101_770
