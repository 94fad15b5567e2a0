"""What locating the wrong line adds to a failing audit: ``python -m benchmarks.locate_cost``.

A backward pass of the source document's network with the 1/m missing from its first gradient
is audited on one concrete input of each size (m, n, h, k): tiny (32, 8, 16, 3), mnist (256, 784, 128, 10) and,
with ``--large``, (2048, 784, 1024, 10). Each audit runs once with ``locate=True``; the report's
``timings["locate"]`` is the time added (drawing the second input, the traced runs, the
reference's quantities, the re-run lines), printed next to the audit's total.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from manual_bp import MLPParams
from verification import reference
from verification.auditing import audit

Array = NDArray[Any]
SIZES = {
    "tiny": (32, 8, 16, 3),
    "mnist": (256, 784, 128, 10),
    "large": (2048, 784, 1024, 10),
}


def missing_one_over_m(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """The network's gradient with 1/m missing from dZ2 (and put back in dW2, db2 only)."""
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    dz2 = p - y
    dw2 = a1.T @ dz2 / m
    db2 = dz2.sum(axis=0) / m
    da1 = dz2 @ params.W2.T
    dz1 = da1 * (z1 > 0)
    return MLPParams(x.T @ dz1, dz1.sum(axis=0), dw2, db2)


def problem(m: int, n: int, h: int, k: int) -> tuple[MLPParams, Array, Array]:
    """One concrete input of these sizes (random weights and inputs, one-hot labels)."""
    rng = np.random.default_rng(0)
    params = MLPParams(
        rng.normal(size=(n, h)) / np.sqrt(n),
        rng.normal(size=h) * 0.1,
        rng.normal(size=(h, k)) / np.sqrt(h),
        rng.normal(size=k) * 0.1,
    )
    x = rng.normal(size=(m, n))
    y = np.eye(k)[rng.integers(0, k, m)]
    return params, x, y


def measure(name: str) -> tuple[float, float, str]:
    """(seconds the audit took, seconds locating took, the where line) at size ``name``."""
    start = time.perf_counter()
    report = audit(missing_one_over_m, reference.mlp_loss, problem(*SIZES[name]), seed=0)
    total = time.perf_counter() - start
    where = report.where.lines()[0] if report.where is not None else "no where"
    return total, report.timings.get("locate", float("nan")), where


def main(argv: list[str]) -> None:
    names = ["tiny", "mnist", *(["large"] if "--large" in argv else [])]
    print(f"{'size':8} {'(m, n, h, k)':22} {'audit s':>8} {'locate s':>9}  where")
    for name in names:
        total, locate, where = measure(name)
        print(f"{name:8} {SIZES[name]!s:22} {total:8.2f} {locate:9.2f}  {where}")


if __name__ == "__main__":
    main(sys.argv[1:])
