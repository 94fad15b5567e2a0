"""Classic network bugs, audited on ``verification.strategies.mlp_problems``, shrink to
counterexamples of at most 4 elements per array.

Hypothesis shrinks a failing example towards the first shape of ``MLP_DIMS`` and simpler values;
the counterexample is small only if the shape set holds the smallest shape at which the bug
shows ((1, 2, 1, 2) for one sample, (2, 1, 1, 2) for two) and if ``mlp_problems`` reaches the
magnitudes the bug needs (a softmax without its max shift fails only where exp overflows). The
candidates are the network bugs of tests/bug_zoo.py and, below, a layer-by-layer backward pass
with three more classic mistakes.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from manual_bp import MLPParams
from verification import audit, reference, strategies as vs

ZOO = runpy.run_path(str(Path(__file__).with_name("bug_zoo.py")))

NETWORK_BUGS = [
    "missing 1/m",
    "sign flip",
    "dW2 from Z1",
    "ReLU mask dropped",
    "bias gradient dropped",
    "bias averaged twice",
    "dW2 transposed",
    "squeeze at m = 1",
    "softmax without max shift",
    "float32 inside",
    "in-place update of an input",
]
"""The zoo's network bugs (all but "memoised first result", whose counterexample depends on
the first input it saw in the process, not on the bug)."""

MAX_ELEMENTS = 4
SEED = 0

Array = Any


# ---------------------------------------------------------------------------------------------
# A backward pass written layer by layer, with a switch for each mistake
# ---------------------------------------------------------------------------------------------


def _dense_forward(x: Array, w: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
    """z = x w + b, and the cache its backward pass needs."""
    return x @ w + b, (x, w)


def _dense_backward(
    dout: Array, cache: tuple[Array, Array], *, transposed: bool = False, bias_axis: int = 0
) -> tuple[Array, Array, Array]:
    """(dx, dw, db) from dout = dJ/dz (m, out)."""
    x, w = cache
    dw = dout.T @ x if transposed else x.T @ dout
    return dout @ w.T, dw, dout.sum(axis=bias_axis)


def _relu_forward(z: Array) -> tuple[Array, Array]:
    return np.maximum(z, 0.0), z > 0


def _softmax_ce_backward(z: Array, y: Array, *, axis: int = 1) -> Array:
    """dJ/dz of the mean softmax cross-entropy, the softmax taken along ``axis``."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True) - y) / z.shape[0]


def _layered(
    params: MLPParams,
    x: Array,
    y: Array,
    *,
    dw1_transposed: bool = False,
    db1_axis: int = 0,
    softmax_axis: int = 1,
) -> MLPParams:
    """Forward through dense, relu, dense, keeping each layer's cache; backward in reverse."""
    h, dense1 = _dense_forward(x, params.W1, params.b1)
    h, mask = _relu_forward(h)
    z2, dense2 = _dense_forward(h, params.W2, params.b2)
    dh, dW2, db2 = _dense_backward(_softmax_ce_backward(z2, y, axis=softmax_axis), dense2)
    grads1 = _dense_backward(dh * mask, dense1, transposed=dw1_transposed, bias_axis=db1_axis)
    return MLPParams(grads1[1], grads1[2], dW2, db2)


def layered_grads(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct."""
    return _layered(params, x, y)


def layered_dw1_transposed(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dW1 = dZ1^T X, (h, n) instead of (n, h)."""
    return _layered(params, x, y, dw1_transposed=True)


def layered_db1_wrong_axis(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: db1 = dZ1 summed over the hidden units (axis 1) instead of the samples."""
    return _layered(params, x, y, db1_axis=1)


def layered_softmax_wrong_axis(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: the softmax normalised over the batch (axis 0) instead of the classes."""
    return _layered(params, x, y, softmax_axis=0)


LAYERED_BUGS = [layered_dw1_transposed, layered_db1_wrong_axis, layered_softmax_wrong_axis]


def _sizes(counterexample: tuple[Any, ...]) -> list[int]:
    params, x, y = counterexample
    return [int(np.size(a)) for a in (*params, x, y)]


@pytest.mark.parametrize("name", NETWORK_BUGS)
def test_zoo_network_bug_shrinks_to_at_most_four_elements_per_array(name: str) -> None:
    bug = ZOO["BUGS"][name]
    report = audit(bug.candidate, bug.loss, vs.mlp_problems(), seed=SEED)
    assert not report.passed, str(report)
    assert max(_sizes(report.counterexample)) <= MAX_ELEMENTS, str(report)


@pytest.mark.parametrize("candidate", LAYERED_BUGS, ids=lambda f: f.__name__)
def test_layered_bug_shrinks_to_at_most_four_elements_per_array(candidate: Any) -> None:
    report = audit(candidate, reference.mlp_loss, vs.mlp_problems(), seed=SEED)
    assert not report.passed, str(report)
    assert max(_sizes(report.counterexample)) <= MAX_ELEMENTS, str(report)


def test_layered_backward_without_a_bug_passes() -> None:
    report = audit(layered_grads, reference.mlp_loss, vs.mlp_problems(), seed=SEED)
    assert report.passed, str(report)
