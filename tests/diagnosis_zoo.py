"""A zoo for the audit's diagnoses: bugs whose cause must be named, and look-alikes where it must not.

Shrunk counterexamples are made of 0s and 1s, where different bugs look alike. Each case is a
candidate gradient with the signatures its diagnosis must name (``expected``) and the ones it
resembles on a shrunk input and must NOT name (``looks_like``). Every signature has at least one
case where it must be named and two look-alikes. ``score`` measures precision (named
signatures that are right) and recall (expected signatures that were named); run this file to
print them:

    python tests/diagnosis_zoo.py
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from verification.auditing import RELU, audit, named_arrays

Array = NDArray[Any]

SIGNATURES: dict[str, str] = {
    "1/m missing": r"is missing \(the factor doubles",
    "divided by m twice": r"once too often",
    "sign flipped": r"sign flipped",
    "constant factor": r"off by a constant factor",
    "missing mask": r"pattern of a missing mask",
    "transposed": r"transposed \(the transpose|transposed: values right",
    "wrong order": r"in another order",
    "values right, other shape": r"values right, shape|values right, only the shape",
    "integer dtype, values right": r"came back as int\d+ \(its values are right\)"
    r"|came back as int\d+.*values right, only the dtype",
    "float32 inside": r"float32's rounding level",
    "overflow": r"warned of an overflow",
    "memoised": r"memoised or cached",
}
"""Signature -> the words that name it in a diagnosis."""


def named(diagnosis: str | None) -> set[str]:
    """The signatures a diagnosis names."""
    return {s for s, pattern in SIGNATURES.items() if re.search(pattern, diagnosis or "")}


@dataclass(frozen=True)
class Case:
    """A candidate, what to audit it against, and what its diagnosis must (not) name."""

    candidate: Any
    loss: Any
    spec: dict[str, Any]
    argnums: int | tuple[int, ...] = 0
    expected: frozenset[str] = frozenset()
    looks_like: frozenset[str] = frozenset()
    dims: dict[str, list[int]] | None = None
    bounds: tuple[float, ...] = (3.0,)
    known_wrong: str = ""
    """Why the audit is known to name a wrong cause here (a limitation, kept in the score)."""
    kinks: Any = None
    """A ``Kinks`` declaration for the audit (None: none)."""


# -- losses (JAX, library functions) and candidates (numpy) ---------------------------------


def tanh_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jnp.tanh(x @ w)) / x.shape[0]


def _tanh_grad(x: Array, w: Array) -> Array:
    out: Array = x.T @ (1 - np.tanh(x @ w) ** 2) / x.shape[0]
    return out


def missing_one_over_m(x: Array, w: Array) -> Array:
    return _tanh_grad(x, w) * x.shape[0]


def divided_twice(x: Array, w: Array) -> Array:
    return _tanh_grad(x, w) / x.shape[0]


def sign_flipped(x: Array, w: Array) -> Array:
    return -_tanh_grad(x, w)


def times_three(x: Array, w: Array) -> Array:
    return 3.0 * _tanh_grad(x, w)


def square_loss(x: Any, w: Any) -> Any:
    return jnp.sum((x @ w) ** 2) / x.shape[0]


def square_grad_missing_2(x: Array, w: Array) -> Array:
    """d(u^2) = u, the 2 forgotten: x 1/2, a constant (not 1/m twice when m = 2)."""
    out: Array = x.T @ (x @ w) / x.shape[0]
    return out


def square_grad_2_twice(x: Array, w: Array) -> Array:
    """The 2 of d(u^2) applied twice: x 2, a constant (not a missing 1/m when m = 2)."""
    out: Array = 4 * x.T @ (x @ w) / x.shape[0]
    return out


def relu_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jax.nn.relu(x @ w)) / x.shape[0]


def relu_mask_dropped(x: Array, w: Array) -> Array:
    out: Array = x.T @ np.ones((x.shape[0], w.shape[1])) / x.shape[0]
    return out


def leaky_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jax.nn.leaky_relu(x @ w, 0.01)) / x.shape[0]


def leaky_wrong_slope(x: Array, w: Array) -> Array:
    """Slope 0.02 where 0.01 belongs: wrong where the reference is small, never exactly 0."""
    z = x @ w
    out: Array = x.T @ np.where(z > 0, 1.0, 0.02) / x.shape[0]
    return out


def softmax_weighted_loss(z: Any, c: Any) -> Any:
    return jnp.sum(c * jax.nn.softmax(z, axis=1))


def softmax_diagonal_only(z: Array, c: Array) -> Array:
    """The softmax Jacobian's diagonal p(1 - p) only: the off-diagonal -p_i p_j dropped."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    out: Array = c * p * (1 - p)
    return out


def pool_loss(x: Any, c: Any) -> Any:
    """Average pooling over blocks of 2 along axis 1, weighted by c."""
    m, n2 = x.shape
    return jnp.sum(c * x.reshape(m, n2 // 2, 2).mean(axis=2))


def pool_strided_pick(x: Array, c: Array) -> Array:
    """The gradient of picking every second element, where the block mean belongs."""
    out = np.zeros_like(x)
    out[:, ::2] = c
    return out


def shared_loss(x: Any, x2: Any, w: Any) -> Any:
    return jnp.sum(jnp.tanh(x @ w)) + jnp.sum(jnp.tanh(x2 @ w))


def shared_overwrite(x: Array, x2: Array, w: Array) -> Array:
    """The second use of w overwrites the first's gradient instead of adding to it."""
    grads = {"w": x.T @ (1 - np.tanh(x @ w) ** 2)}
    grads["w"] = x2.T @ (1 - np.tanh(x2 @ w) ** 2)  # should be grads["w"] += ...
    return grads["w"]


def sigmoid_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jax.nn.sigmoid(x @ w))


def sigmoid_for_its_derivative(x: Array, w: Array) -> Array:
    s = 1 / (1 + np.exp(-(x @ w)))
    out: Array = x.T @ s  # s * (1 - s) belongs here
    return out


def bias_loss(x: Any, b: Any) -> Any:
    return jnp.sum(jnp.tanh(x + b))


def bias_off_nonlinearly(x: Array, b: Array) -> Array:
    """A one-element leaf off by a term that is not a factor (1.0002 on one input, not another)."""
    g = (1 - np.tanh(x + b) ** 2).sum(axis=0)
    out: Array = g + 2e-4 * (1 + b**2)
    return out


def square_matrix_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jnp.tanh(x @ w) * jnp.arange(1.0, w.shape[1] + 1))


def _square_matrix_grad(x: Array, w: Array) -> Array:
    out: Array = x.T @ ((1 - np.tanh(x @ w) ** 2) * np.arange(1.0, w.shape[1] + 1))
    return out


def square_transposed(x: Array, w: Array) -> Array:
    return _square_matrix_grad(x, w).T


def square_rows_flipped(x: Array, w: Array) -> Array:
    return _square_matrix_grad(x, w)[::-1]


def square_plus_one(x: Array, w: Array) -> Array:
    return _square_matrix_grad(x, w) + 1.0


def rect_transposed_wrong(x: Array, w: Array) -> Array:
    return (_tanh_grad(x, w) * 2).T


def pair_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jnp.sin(x) * w) + jnp.sum(w**2)


def _pair_grads(x: Array, w: Array) -> tuple[Array, Array]:
    return np.cos(x) * w, np.sin(x) + 2 * w


def pair_swapped(x: Array, w: Array) -> tuple[Array, Array]:
    gx, gw = _pair_grads(x, w)
    return gw, gx


def pair_duplicated(x: Array, w: Array) -> tuple[Array, Array]:
    gx, _ = _pair_grads(x, w)
    return gx, gx


def pair_scaled(x: Array, w: Array) -> tuple[Array, Array]:
    gx, gw = _pair_grads(x, w)
    return gx, 2 * gw


def affine_loss(x: Any, b: Any) -> Any:
    return jnp.sum(jnp.tanh(x + b)) / x.shape[0]


def bias_keepdims(x: Array, b: Array) -> Array:
    out: Array = (1 - np.tanh(x + b) ** 2).sum(axis=0, keepdims=True) / x.shape[0]
    return out


def bias_keepdims_doubled(x: Array, b: Array) -> Array:
    out: Array = 2 * (1 - np.tanh(x + b) ** 2).sum(axis=0, keepdims=True)
    return out


def linear_loss(w: Any, x: Any) -> Any:
    return jnp.sum(x @ w)


def linear_as_int(w: Array, x: Array) -> Array:
    out: Array = (x.T @ np.ones((x.shape[0], w.shape[1]))).astype(np.int64)
    return out


def tanh_as_int(x: Array, w: Array) -> Array:
    """An integer array of sevens: wrong values in an integer dtype."""
    return np.full(w.shape, 7, dtype=np.int64)


def negative_abs(x: Array, w: Array) -> Array:
    """-|g|: a flipped sign where the gradient is positive, right where it is negative."""
    return -np.abs(_tanh_grad(x, w))


def flipped_where_w_positive(x: Array, w: Array) -> Array:
    return _tanh_grad(x, w) * np.where(w > 0, -1.0, 1.0)


def tanh_as_float32(x: Array, w: Array) -> Array:
    return _tanh_grad(x, w).astype(np.float32)


def off_by_3e_11(x: Array, w: Array) -> Array:
    return _tanh_grad(x, w) + 3e-11  # far above float64's rounding, far below float32's


def float32_inside(x: Array, w: Array) -> Array:
    return _tanh_grad(x.astype(np.float32), w.astype(np.float32)).astype(np.float64)


def off_by_a_thousandth(x: Array, w: Array) -> Array:
    return _tanh_grad(x, w) * (1 + 1e-3 * np.tanh(w))


def shifted_tanh_loss(x: Any) -> Any:
    return jnp.sum(jnp.tanh(x + 1.0))


_MEMO: dict[tuple[int, ...], Array] = {}


def memoised_per_shape(x: Array) -> Array:
    """Caches the first result for each shape and returns it for every later input of it."""
    if x.shape not in _MEMO:
        _MEMO[x.shape] = 1 - np.tanh(x + 1.0) ** 2
    return _MEMO[x.shape]


def unfinished_dx(x: Array, w: Array) -> Array:
    """``dx = zeros`` left where the formula belongs: the same output at every input."""
    return np.zeros_like(x)


def round_loss(x: Any, c: Any) -> Any:
    return jnp.sum(c * jnp.round(x))


def straight_through(x: Array, c: Array) -> Array:
    """A straight-through estimator: round's gradient taken as c (the reference's is 0)."""
    return np.array(c, copy=True)


def leaky_slope_at_kink(x: Array, w: Array) -> Array:
    """leaky_relu'(0) = 0.01 where jax.nn.leaky_relu takes 1: wrong at the kink only."""
    z = x @ w
    out: Array = x.T @ np.where(z > 0, 1.0, 0.01) / x.shape[0]
    return out


def ce_loss(z: Any, y: Any) -> Any:
    return -jnp.sum(y * jax.nn.log_softmax(z, axis=1)) / z.shape[0]


def ce_naive(z: Array, y: Array) -> Array:
    e = np.exp(z)
    out: Array = (e / e.sum(axis=1, keepdims=True) - y) / z.shape[0]
    return out


def ce_nan_without_overflow(z: Array, y: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Array = (p - y) / z.shape[0] + np.where(np.abs(z) > 100, np.nan, 0.0)
    return out


def ce_divide_by_zero(z: Array, y: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    out: Array = (p - y) / z.shape[0] + np.where(np.abs(z) > 100, 1 / np.zeros_like(z), 0.0)
    return out


XW = {"x": "m,n", "w": "n,h"}
S = frozenset

CASES: dict[str, Case] = {
    # Named where it must be
    "1/m missing": Case(missing_one_over_m, tanh_loss, XW, 1, S({"1/m missing"})),
    "1/m applied twice": Case(divided_twice, tanh_loss, XW, 1, S({"divided by m twice"})),
    "sign flipped": Case(sign_flipped, tanh_loss, XW, 1, S({"sign flipped"})),
    "x 3": Case(times_three, tanh_loss, XW, 1, S({"constant factor"})),
    "x 1/2 (the 2 of d(u^2) forgotten)": Case(
        square_grad_missing_2, square_loss, XW, 1, S({"constant factor"}), S({"divided by m twice"})
    ),
    "x 2 (the 2 of d(u^2) twice)": Case(
        square_grad_2_twice, square_loss, XW, 1, S({"constant factor"}), S({"1/m missing"})
    ),
    "ReLU mask dropped": Case(relu_mask_dropped, relu_loss, XW, 1, S({"missing mask"})),
    "square leaf transposed": Case(
        square_transposed,
        square_matrix_loss,
        XW,
        1,
        S({"transposed"}),
        dims={"m": [2], "n": [2], "h": [2]},
    ),
    "gradients in the wrong order": Case(
        pair_swapped,
        pair_loss,
        {"x": "n", "w": "n"},
        (0, 1),
        S({"wrong order"}),
        S({"missing mask"}),
    ),
    "bias with keepdims": Case(
        bias_keepdims, affine_loss, {"x": "m,n", "b": "n"}, 1, S({"values right, other shape"})
    ),
    "integer dtype, values right": Case(
        linear_as_int,
        linear_loss,
        {"w": "n,h", "x": "m,n:ints[-3,3]"},
        0,
        S({"integer dtype, values right"}),
    ),
    "float32 inside": Case(float32_inside, tanh_loss, XW, 1, S({"float32 inside"})),
    "exp without the max shift": Case(
        ce_naive, ce_loss, {"z": "m,k", "y": "m,k:onehot"}, 0, S({"overflow"}), bounds=(1000.0,)
    ),
    "softmax Jacobian diagonal only": Case(
        softmax_diagonal_only,
        softmax_weighted_loss,
        {"z": "m,k", "c": "m,k:ints[0,2]"},
        0,
        S(),
        S({"missing mask", "constant factor", "1/m missing"}),
    ),
    # Look-alikes: a cause must not be named
    "strided pick instead of a block mean": Case(
        pool_strided_pick,
        pool_loss,
        {"x": "m,2*j", "c": "m,j"},
        0,
        S(),
        S({"divided by m twice", "1/m missing", "constant factor"}),
    ),
    "overwrite instead of accumulate": Case(
        shared_overwrite,
        shared_loss,
        {"x": "m,n", "x2": "m,n", "w": "n,h"},
        2,
        S(),
        S({"divided by m twice", "1/m missing", "constant factor"}),
    ),
    "sigmoid where sigmoid' belongs": Case(
        sigmoid_for_its_derivative,
        sigmoid_loss,
        XW,
        1,
        S(),
        S({"constant factor", "1/m missing", "sign flipped"}),
    ),
    "one-element leaf off by a non-factor": Case(
        bias_off_nonlinearly, bias_loss, {"x": "m,1", "b": "1"}, 1, S(), S({"constant factor"})
    ),
    "leaky ReLU, wrong slope": Case(leaky_wrong_slope, leaky_loss, XW, 1, S(), S({"missing mask"})),
    "square leaf, rows flipped": Case(
        square_rows_flipped,
        square_matrix_loss,
        XW,
        1,
        S(),
        S({"transposed"}),
        dims={"m": [2], "n": [2], "h": [2]},
    ),
    "square leaf, plus one": Case(
        square_plus_one,
        square_matrix_loss,
        XW,
        1,
        S(),
        S({"transposed", "constant factor"}),
        dims={"m": [2], "n": [2], "h": [2]},
    ),
    "transposed shape, values wrong too": Case(
        rect_transposed_wrong,
        tanh_loss,
        XW,
        1,
        S(),
        S({"values right, other shape"}),
        dims={"m": [2], "n": [2], "h": [3]},
    ),
    "gradients duplicated": Case(
        pair_duplicated,
        pair_loss,
        {"x": "n", "w": "n"},
        (0, 1),
        S(),
        S({"wrong order", "missing mask"}),
    ),
    "one gradient scaled": Case(
        pair_scaled,
        pair_loss,
        {"x": "n", "w": "n"},
        (0, 1),
        S({"constant factor"}),
        S({"wrong order"}),
    ),
    "keepdims and doubled": Case(
        bias_keepdims_doubled,
        affine_loss,
        {"x": "m,n", "b": "n"},
        1,
        S(),
        S({"values right, other shape"}),
    ),
    "integer dtype, values truncated": Case(
        tanh_as_int, tanh_loss, XW, 1, S(), S({"integer dtype, values right"})
    ),
    "off by a thousandth": Case(
        off_by_a_thousandth, tanh_loss, XW, 1, S(), S({"float32 inside", "constant factor"})
    ),
    "minus the absolute value": Case(
        negative_abs,
        tanh_loss,
        XW,
        1,
        S(),
        S({"sign flipped", "constant factor"}),
        known_wrong="every input the audit tries has x >= 0, so the gradient is positive and "
        "-|g| = -g there: the sign error cannot be told from a flipped sign",
    ),
    "sign flipped where w > 0": Case(
        flipped_where_w_positive, tanh_loss, XW, 1, S(), S({"sign flipped", "constant factor"})
    ),
    "float32 result, values right": Case(
        tanh_as_float32, tanh_loss, XW, 1, S(), S({"integer dtype, values right"})
    ),
    "off by 3e-11 (float64 rounding level)": Case(
        off_by_3e_11, tanh_loss, XW, 1, S(), S({"float32 inside"})
    ),
    "NaN without an overflow": Case(
        ce_nan_without_overflow,
        ce_loss,
        {"z": "m,k", "y": "m,k:onehot"},
        0,
        S(),
        S({"overflow"}),
        bounds=(1000.0,),
    ),
    "memoised first result": Case(
        memoised_per_shape, shifted_tanh_loss, {"x": "m,n"}, 0, S({"memoised"})
    ),
    "unfinished dx = zeros": Case(unfinished_dx, tanh_loss, XW, 0, S(), S({"memoised"})),
    "straight-through estimator": Case(
        straight_through, round_loss, {"x": "m,n", "c": "m,n"}, 0, S(), S({"memoised"})
    ),
    "leaky ReLU slope at the kink, convention declared": Case(
        leaky_slope_at_kink, leaky_loss, XW, 1, S(), S({"constant factor"}), kinks=RELU
    ),
    "inf from a division by zero": Case(
        ce_divide_by_zero,
        ce_loss,
        {"z": "m,k", "y": "m,k:onehot"},
        0,
        S(),
        S({"overflow"}),
        bounds=(1000.0,),
    ),
}


def run(case: Case, seed: int = 0, max_examples: int = 60) -> str:
    """The audit's diagnosis for ``case`` (empty if it passed)."""
    found = report(case, seed, max_examples)
    return "" if found.passed else str(found.diagnosis)


_REPORTS: dict[tuple[int, int, int], Any] = {}
"""Reports made in this process: the zoo's test and its recorded texts (tests/report_texts.py)
audit the same cases; in one pytest worker (``xdist_group("zoo-diagnosis")``) once."""


def report(case: Case, seed: int = 0, max_examples: int = 60) -> Any:
    """The audit's report for ``case`` (made once a process: an audit is deterministic)."""
    key = (id(case), seed, max_examples)
    if key not in _REPORTS:
        _REPORTS[key] = _report(case, seed, max_examples)
    return _REPORTS[key]


def _report(case: Case, seed: int, max_examples: int) -> Any:
    strategy = named_arrays(case.spec, dims=case.dims, bounds=case.bounds)
    return audit(
        case.candidate,
        case.loss,
        strategy,
        argnums=case.argnums,
        max_examples=max_examples,
        seed=seed,
        arg_names=list(case.spec),
        kinks=case.kinks,
    )


def score(results: dict[str, str]) -> tuple[int, int, int, int]:
    """(right named, all named, expected named, all expected) over the zoo's ``results``."""
    right = total = found = wanted = 0
    for name, diagnosis in results.items():
        case = CASES[name]
        got = named(diagnosis)
        right += len(got & case.expected)
        total += len(got)
        found += len(got & case.expected)
        wanted += len(case.expected)
    return right, total, found, wanted


if __name__ == "__main__":
    results = {name: run(case) for name, case in CASES.items()}
    width = max(len(n) for n in results)
    for name, diagnosis in results.items():
        case = CASES[name]
        got = named(diagnosis)
        verdict = "ok" if got == case.expected else "WRONG" if got - case.expected else "missed"
        note = f"  (known: {case.known_wrong})" if case.known_wrong and verdict != "ok" else ""
        print(f"{name:<{width}}  {verdict:<6}  named {sorted(got) or '-'}{note}")
    right, total, found, wanted = score(results)
    print(
        f"\nprecision {right}/{total} = {right / max(total, 1):.2f} (named signatures that are right)"
    )
    print(f"recall    {found}/{wanted} = {found / max(wanted, 1):.2f} (expected signatures named)")
