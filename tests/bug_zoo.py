"""A zoo of backpropagation mistakes, each written as a candidate gradient for ``audit``.

The network is the project's: z1 = x W1 + b1, a1 = relu(z1), z2 = a1 W2 + b2, p = softmax(z2),
J = -(1/m) sum y log p. ``mlp_grads`` below is a correct numpy derivation written for the zoo
(independent of ``manual_bp``); every bug is the same derivation with one classic mistake, so
each candidate differs from a correct one by exactly the line that names it. ``BUGS`` lists
them with the failure the audit must report; ``CORRECT`` lists correct and mathematically
equivalent implementations (different order of operations, per-sample loops, the explicit
softmax Jacobian, float32 in and out) that must pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray

from manual_bp import MLPParams
from verification import reference
from verification.auditing import named_arrays

Array = NDArray[Any]

MLP_SPEC = {
    "W1": ("n", "h"),
    "b1": ("h",),
    "W2": ("h", "k"),
    "b2": ("k",),
    "x": ("m", "n"),
    "y": ("m", "k"),
}


def mlp_problems(dtype: Any = np.float64, bounds: tuple[float, ...] = (3.0, 1000.0)) -> Any:
    """(MLPParams, x, y) from named dimensions: tiny shapes first, values up to 1e3 (logits
    that overflow a naive exp), one-hot labels of every class."""
    flat = named_arrays(MLP_SPEC, dtype=dtype, kinds={"y": "onehot"}, bounds=bounds)
    return flat.map(lambda a: (MLPParams(*a[:4]), a[4], a[5]))


def moderate_mlp_problems(dtype: Any = np.float64) -> Any:
    """``mlp_problems`` with values in [-3, 3] only (no overflow-sized logits)."""
    return mlp_problems(dtype, bounds=(3.0,))


def logit_problems(dtype: Any = np.float64) -> st.SearchStrategy[tuple[Array, ...]]:
    """(z, y): logits up to 1e3 and one-hot labels, for the softmax cross-entropy."""
    return named_arrays({"z": ("m", "k"), "y": ("m", "k")}, dtype=dtype, kinds={"y": "onehot"})


# ---------------------------------------------------------------------------------------------
# A correct derivation, with a switch for each classic mistake
# ---------------------------------------------------------------------------------------------


def _softmax(z: Array, *, shift: bool = True) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True) if shift else z)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def _mlp(
    params: MLPParams,
    x: Array,
    y: Array,
    *,
    mean: bool = True,
    sign: float = 1.0,
    w2_from_z1: bool = False,
    relu_mask: bool = True,
    db2: str = "sum",
    w2_transposed: bool = False,
    squeeze: bool = False,
    shift: bool = True,
) -> MLPParams:
    W1, b1, W2, b2 = params
    m = x.shape[0]
    z1 = x @ W1 + b1
    a1 = np.maximum(z1, 0.0)
    p = _softmax(a1 @ W2 + b2, shift=shift)
    dz2 = sign * (p - y)
    if mean:
        dz2 = dz2 / m
    dW2 = (z1 if w2_from_z1 else a1).T @ dz2
    if w2_transposed:
        dW2 = dW2.T
    if db2 == "mean":
        db2_value = dz2.sum(axis=0) / m
    elif db2 == "dropped":
        db2_value = np.zeros_like(b2)
    else:  # squeeze: (m, k) -> (k,) when m == 1, so the sum over axis 0 adds up the classes
        db2_value = (np.squeeze(dz2) if squeeze else dz2).sum(axis=0)
    da1 = dz2 @ W2.T
    dz1 = da1 * (z1 > 0) if relu_mask else da1
    return MLPParams(x.T @ dz1, dz1.sum(axis=0), dW2, db2_value)


def mlp_grads(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct: dZ2 = (P - Y)/m, dW2 = A1^T dZ2, db2 = sum dZ2, dZ1 = dZ2 W2^T * 1(Z1 > 0), ..."""
    return _mlp(params, x, y)


def mlp_missing_one_over_m(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dZ2 = P - Y (the 1/m of the mean is missing)."""
    return _mlp(params, x, y, mean=False)


def mlp_sign_flipped(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dZ2 = (Y - P)/m (the minus sign of the cross-entropy lost)."""
    return _mlp(params, x, y, sign=-1.0)


def mlp_dw2_from_preactivation(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dW2 = Z1^T dZ2 (the pre-activation instead of A1 = relu(Z1))."""
    return _mlp(params, x, y, w2_from_z1=True)


def mlp_relu_mask_dropped(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dZ1 = dA1 (the ReLU derivative 1(Z1 > 0) forgotten)."""
    return _mlp(params, x, y, relu_mask=False)


def mlp_bias_grad_dropped(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: db2 = 0 (the bias treated as a constant)."""
    return _mlp(params, x, y, db2="dropped")


def mlp_bias_averaged_twice(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: db2 = mean over the batch of dZ2, which already carries the 1/m."""
    return _mlp(params, x, y, db2="mean")


def mlp_dw2_transposed(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: dW2 = dZ2^T A1, (k, h) instead of (h, k) (right values only if read transposed)."""
    return _mlp(params, x, y, w2_transposed=True)


def mlp_squeeze(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: db2 = squeeze(dZ2).sum(axis=0): with one sample (m = 1) or one class (k = 1) the
    squeeze removes the wrong axis and the bias gradient collapses to a scalar (or raises)."""
    return _mlp(params, x, y, squeeze=True)


def mlp_softmax_without_max_shift(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: softmax as exp(z) / sum exp(z): overflows (inf / inf = NaN) for logits > 709."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _mlp(params, x, y, shift=False)


def mlp_float32_inside(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: computes in float32 and casts the result back to float64."""
    as32 = MLPParams(*(np.asarray(p, np.float32) for p in params))
    grads = _mlp(as32, x.astype(np.float32), y.astype(np.float32))
    return MLPParams(*(g.astype(np.float64) for g in grads))


def mlp_in_place(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: forms P - Y in the labels' own buffer (``y -= p``), so the caller's y changes."""
    W1, b1, W2, b2 = params
    z1 = x @ W1 + b1
    a1 = np.maximum(z1, 0.0)
    dz2 = y
    dz2 -= _softmax(a1 @ W2 + b2)
    dz2 *= -1.0 / x.shape[0]
    dz1 = (dz2 @ W2.T) * (z1 > 0)
    return MLPParams(x.T @ dz1, dz1.sum(axis=0), a1.T @ dz2, dz2.sum(axis=0))


_MEMO: dict[str, MLPParams] = {}


def mlp_memoised(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Bug: caches the first result it computes and returns it for every later input."""
    if "first" not in _MEMO:
        _MEMO["first"] = mlp_grads(params, x, y)
    return _MEMO["first"]


def softmax_ce_grad_naive(z: Array, y: Array) -> Array:
    """Bug: dJ/dz = (exp(z) / sum exp(z) - y) / m without the max shift (NaN for z > 709)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out: Array = (_softmax(z, shift=False) - y) / z.shape[0]
    return out


# ---------------------------------------------------------------------------------------------
# Correct and mathematically equivalent implementations
# ---------------------------------------------------------------------------------------------


def mlp_grads_per_sample(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct: the mean of per-sample gradients, each from outer products (another order of
    summation than the matrix form)."""
    W1, b1, W2, b2 = params
    total = [np.zeros_like(p) for p in params]
    for xi, yi in zip(x, y, strict=True):
        z1 = xi @ W1 + b1
        a1 = np.maximum(z1, 0.0)
        dz2 = _softmax((a1 @ W2 + b2)[None, :])[0] - yi
        dz1 = (W2 @ dz2) * (z1 > 0)
        for acc, g in zip(total, (np.outer(xi, dz1), dz1, np.outer(a1, dz2), dz2), strict=True):
            acc += g
    return MLPParams(*(t / x.shape[0] for t in total))


def mlp_grads_log_softmax(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct: P = exp(log_softmax(Z2)) with log_softmax = (Z2 - max) - log sum exp(Z2 - max),
    masks by np.where, products by einsum."""
    W1, b1, W2, b2 = params
    m = x.shape[0]
    z1 = np.einsum("mn,nh->mh", x, W1) + b1
    a1 = np.where(z1 > 0, z1, 0.0)
    z2 = np.einsum("mh,hk->mk", a1, W2) + b2
    shifted = z2 - z2.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    dz2 = (np.exp(log_p) - y) / m
    dz1 = np.where(z1 > 0, np.einsum("mk,hk->mh", dz2, W2), 0.0)
    return MLPParams(
        np.einsum("mn,mh->nh", x, dz1),
        dz1.sum(axis=0),
        np.einsum("mh,mk->hk", a1, dz2),
        dz2.sum(axis=0),
    )


def mlp_grads_jacobian(params: MLPParams, x: Array, y: Array) -> MLPParams:
    """Correct: dJ/dZ2 through the explicit softmax Jacobian diag(p) - p p^T applied to
    dJ/dP = -Y / (m P) where Y > 0 (0 elsewhere), with P from the shifted softmax."""
    W1, b1, W2, b2 = params
    z1 = x @ W1 + b1
    a1 = np.maximum(z1, 0.0)
    p = _softmax(a1 @ W2 + b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dp = np.where(y > 0, -y / (x.shape[0] * p), 0.0)
    jac = np.einsum("mi,ij->mij", p, np.eye(p.shape[1])) - np.einsum("mi,mj->mij", p, p)
    dz2 = np.einsum("mi,mij->mj", dp, jac)
    dz1 = (dz2 @ W2.T) * (z1 > 0)
    return MLPParams(x.T @ dz1, dz1.sum(axis=0), a1.T @ dz2, dz2.sum(axis=0))


def softmax_ce_grad(z: Array, y: Array) -> Array:
    """Correct: (softmax(z) - y) / m with the max shift."""
    out: Array = (_softmax(z) - y) / z.shape[0]
    return out


@dataclass(frozen=True)
class Bug:
    """A zoo entry: the candidate, what to audit it against, and what the audit must say."""

    candidate: Any
    loss: Any
    problems: Any
    kind: str
    signature: str  # a phrase the diagnosis must contain
    max_examples: int = 100


BUGS: dict[str, Bug] = {
    "missing 1/m": Bug(mlp_missing_one_over_m, reference.mlp_loss, mlp_problems, "mismatch", "1/m"),
    "sign flip": Bug(
        mlp_sign_flipped, reference.mlp_loss, mlp_problems, "mismatch", "sign flipped"
    ),
    "dW2 from Z1": Bug(
        mlp_dw2_from_preactivation, reference.mlp_loss, mlp_problems, "mismatch", "W2"
    ),
    "ReLU mask dropped": Bug(
        mlp_relu_mask_dropped, reference.mlp_loss, mlp_problems, "mismatch", "mask"
    ),
    "bias gradient dropped": Bug(
        mlp_bias_grad_dropped,
        reference.mlp_loss,
        mlp_problems,
        "mismatch",
        "zero where the reference is not",
    ),
    "bias averaged twice": Bug(
        mlp_bias_averaged_twice, reference.mlp_loss, mlp_problems, "mismatch", "twice"
    ),
    "dW2 transposed": Bug(
        mlp_dw2_transposed, reference.mlp_loss, mlp_problems, "wrong shape", "transposed"
    ),
    "squeeze at m = 1": Bug(
        mlp_squeeze,
        reference.mlp_loss,
        mlp_problems,
        "wrong shape|raised",
        "length 1|axis|values right, shape",
    ),
    "softmax without max shift": Bug(
        mlp_softmax_without_max_shift, reference.mlp_loss, mlp_problems, "mismatch", "NaN/inf"
    ),
    "naive softmax CE gradient": Bug(
        softmax_ce_grad_naive,
        reference.softmax_cross_entropy,
        logit_problems,
        "mismatch",
        "NaN/inf",
    ),
    "float32 inside": Bug(
        mlp_float32_inside, reference.mlp_loss, mlp_problems, "mismatch", "float32"
    ),
    "in-place update of an input": Bug(
        mlp_in_place, reference.mlp_loss, mlp_problems, "mutated its input", "args[2]"
    ),
    # Its first result is all 0 on the zoo's first input (a zero network): then a memo cannot
    # be told from a constant output, and the audit says only what it saw.
    "memoised first result": Bug(
        mlp_memoised,
        reference.mlp_loss,
        mlp_problems,
        "mismatch|wrong shape",
        "memoised|the same output at every input",
    ),
}

CORRECT: dict[str, tuple[Any, Any, Any]] = {
    "matrix form": (mlp_grads, reference.mlp_loss, mlp_problems),
    "per-sample loop": (mlp_grads_per_sample, reference.mlp_loss, mlp_problems),
    "log-softmax and einsum": (mlp_grads_log_softmax, reference.mlp_loss, mlp_problems),
    "explicit softmax Jacobian": (mlp_grads_jacobian, reference.mlp_loss, moderate_mlp_problems),
    "softmax CE, shifted": (softmax_ce_grad, reference.softmax_cross_entropy, logit_problems),
}


_REPORTS: dict[tuple[str, int], Any] = {}
"""Reports made in this process: the zoo's test (tests/test_audit.py) and its recorded texts
(tests/report_texts.py, group "network") audit the same bugs; in one pytest worker
(``xdist_group("zoo-network")``) once."""


def report(name: str, seed: int = 0) -> Any:
    """The audit's report on the bug ``name`` at ``seed`` with its ``max_examples`` (made once
    a process: an audit is deterministic)."""
    key = (name, seed)
    if key not in _REPORTS:
        from verification.auditing import audit

        bug = BUGS[name]
        _REPORTS[key] = audit(
            bug.candidate, bug.loss, bug.problems(), max_examples=bug.max_examples, seed=seed
        )
    return _REPORTS[key]


def _zoo_table(seeds: int) -> str:
    """Markdown: each bug over ``seeds`` seeds (caught, counterexample size, diagnosis), then
    each correct implementation (false alarms over 200 examples per seed)."""
    from verification.auditing import audit

    lines = [
        "| bug | caught | counterexample elements (nonzero) | kind | diagnosis (seed 0) |",
        "|---|---|---|---|---|",
    ]
    for name, bug in BUGS.items():
        reports = [
            audit(bug.candidate, bug.loss, bug.problems(), max_examples=bug.max_examples, seed=s)
            for s in range(seeds)
        ]
        caught = [r for r in reports if not r.passed]
        sizes = sorted(r.counterexample_size for r in caught)
        kinds = sorted({str(r.kind) for r in caught})
        size = f"{sizes[0][0]}-{sizes[-1][0]} ({sizes[0][1]}-{sizes[-1][1]})" if sizes else "-"
        lines.append(
            f"| {name} | {len(caught)}/{seeds} | {size} | {', '.join(kinds)} | "
            f"{reports[0].diagnosis} |"
        )
    lines += ["", "| correct implementation | runs | examples | false alarms | uncertain |"]
    lines.append("|---|---|---|---|---|")
    for name, (candidate, loss, problems) in CORRECT.items():
        reports = [audit(candidate, loss, problems(), seed=100 + s) for s in range(seeds)]
        lines.append(
            f"| {name} | {seeds} | {sum(r.examples for r in reports)} | "
            f"{sum(not r.passed for r in reports)} | {sum(r.uncertain for r in reports)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(_zoo_table(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
