"""The main job: every formula of the source document, manual gradient against JAX, as a table.

``python -m verification [report] [--max-examples N] [--dtype float32|float64|both]
[--only NAME ...] [--jobs N] [--shard I/N] [--json PATH] [--cache-dir DIR | --no-cache]``

For each formula (one ``Check`` in ``CHECKS``) and each dtype, hypothesis draws ``N`` problems
from the strategies of ``verification.strategies`` (derandomized: the same problems on every run,
no example database), the ``manual_bp`` function computes its result in the problem's dtype, the
JAX reference of ``verification.reference`` computes the same value in float64 on the float64
copy of the same inputs, and ``compare_trees`` compares the two with the tolerance of
``verification.compare.tolerance`` for the problem's dtype, scale and number of summed terms.
The manual result must also keep the input's dtype. The table has one row per formula and dtype;
the exit status is 1 if any row fails.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from numpy.typing import NDArray

import manual_bp
from verification import reference as ref, strategies as vs
from verification.compare import Comparison, compare_trees, magnitude, tolerance
from verification.pinned import pinned_generation

__all__ = [
    "CHECKS",
    "CHECKS_BY_NAME",
    "Check",
    "Row",
    "assert_check",
    "away_from_kink",
    "format_table",
    "run_check",
    "to_float64",
]

Inputs = tuple[Any, ...]
F64 = NDArray[np.float64]


def to_float64(tree: Any) -> Any:
    """A copy of ``tree`` (array, or NamedTuple/tuple/list of them) with float64 leaves.

    Float32 values are exactly representable in float64, so the reference sees the very
    numbers the float32 computation saw.
    """
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(to_float64(leaf) for leaf in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(to_float64(leaf) for leaf in tree)
    return np.asarray(tree, dtype=np.float64)


def _leaf_dtypes(tree: Any) -> list[np.dtype[Any]]:
    if isinstance(tree, (tuple, list)):
        return [dt for leaf in tree for dt in _leaf_dtypes(leaf)]
    return [np.asarray(tree).dtype]


def _manual(name: str) -> Callable[..., Any]:
    """``manual_bp.<name>``, looked up at call time (so that a monkeypatched one is used)."""

    def call(*args: Any) -> Any:
        return getattr(manual_bp, name)(*args)

    call.__name__ = name
    return call


@dataclass(frozen=True)
class Check:
    """One formula: how to draw problems, compute it by hand and by JAX, and set a tolerance.

    name : row id (the manual function's name, or a short tag for a derivation).
    formula : the formula as in the source document, in corrected notation.
    function : the ``manual_bp`` function(s) checked.
    problems : dtype -> strategy of input tuples.
    manual, reference : inputs -> result tree (the reference gets float64 inputs).
    scale : (float64 inputs, expected) -> the magnitude of the values involved.
    terms : inputs -> the number of terms summed into one result.
    names : leaf names for failure messages (None: NamedTuple fields or none).
    """

    name: str
    formula: str
    function: str
    problems: Callable[[np.dtype[Any]], st.SearchStrategy[Inputs]]
    manual: Callable[..., Any]
    reference: Callable[..., Any]
    scale: Callable[[Inputs, Any], float]
    terms: Callable[[Inputs], int] = lambda inputs: 1
    names: tuple[str, ...] | None = None

    def compare(self, inputs: Inputs) -> Comparison:
        """Manual result on ``inputs`` against the float64 reference, at ``inputs``' dtype.

        A result whose dtype differs from the inputs' fails (dtype in = dtype out).
        """
        dtype = _leaf_dtypes(inputs)[0]
        inputs64 = to_float64(inputs)
        actual = self.manual(*inputs)
        expected = self.reference(*inputs64)
        rtol, atol = tolerance(
            dtype, scale=self.scale(inputs64, expected), terms=self.terms(inputs)
        )
        wrong = [dt for dt in _leaf_dtypes(actual) if dt != dtype]
        if wrong:
            detail = f"result has dtype {wrong[0]} for {dtype} input"
            return Comparison(
                False, math.inf, math.inf, None, None, None, rtol, atol, detail=detail
            )
        return compare_trees(actual, expected, rtol=rtol, atol=atol, names=self.names)


# ---------------------------------------------------------------------------------------------
# Scales: the magnitude of the values a result is computed from, so that an element that is
# small by cancellation may carry the rounding error of the large values behind it.
# ---------------------------------------------------------------------------------------------


def _of_expected(inputs: Inputs, expected: Any) -> float:
    return magnitude(expected)


def _probability_loss(inputs: Inputs, expected: Any) -> float:
    """log p and log(1 - p) are computed from numbers of magnitude up to 1: a loss that is
    tiny (p = 1e-147 where y = 0) may carry an absolute error of eps."""
    return max(magnitude(expected), 1.0)


def _unit(inputs: Inputs, expected: Any) -> float:
    return 1.0


def _of_cotangent(inputs: Inputs, expected: Any) -> float:
    return magnitude(inputs[1])


def _softmax_ce_loss(inputs: Inputs, expected: Any) -> float:
    z, y = inputs
    return magnitude(expected) + magnitude(z) * float(np.sum(y, axis=-1).max())


def _softmax_ce_grad(inputs: Inputs, expected: Any) -> float:
    z, y = inputs
    return max(float(np.sum(y, axis=-1).max()), magnitude(y)) / float(z.shape[0])


def _sigmoid_bce_loss(inputs: Inputs, expected: Any) -> float:
    """Per element max(z, 0) - y z + log(1 + e^-|z|): the first two cancel for soft labels
    (0.016 from 5.1 - 0.998 * 5.1), leaving the absolute rounding of |z|, k times per row."""
    z, _ = inputs
    return max(magnitude(expected), magnitude(z) * z.size / float(z.shape[0]))


def _bce_grad(inputs: Inputs, expected: Any) -> float:
    p, y = inputs
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = np.where(y > 0, y / p, 0.0)
        neg = np.where(y < 1, (1 - y) / (1 - p), 0.0)
    return (magnitude(pos) + magnitude(neg)) / float(p.shape[0])


def _per_sample(inputs: Inputs, expected: Any) -> float:
    return 1.0 / float(inputs[0].shape[0])


def _linear(inputs: Inputs, expected: Any) -> float:
    x, w, b = inputs
    return magnitude(np.abs(x) @ np.abs(w) + np.abs(b))


def _linear_backward(inputs: Inputs, expected: Any) -> float:
    dz, x, w = inputs
    return max(
        magnitude(np.abs(dz) @ np.abs(w).T),
        magnitude(np.abs(x).T @ np.abs(dz)),
        magnitude(np.abs(dz).sum(axis=0)),
    )


def _mlp_bounds(inputs: Inputs) -> tuple[F64, F64]:
    """Elementwise bounds on |Z1| and |Z2| from absolute values: the rounding error of a dot
    product is a multiple of eps times the sum of the absolute values of its terms."""
    params, x, _ = inputs
    z1 = np.abs(x) @ np.abs(params.W1) + np.abs(params.b1)
    return z1, z1 @ np.abs(params.W2) + np.abs(params.b2)


def _mlp_logits(inputs: Inputs, expected: Any) -> float:
    """P = softmax(Z2) carries the absolute rounding error of Z2 (dp = p (dz - p . dz))."""
    return max(1.0, magnitude(_mlp_bounds(inputs)[1]))


def _mlp(inputs: Inputs, expected: Any) -> float:
    """Bounds on |Z1|, |Z2| (the loss's log-sum-exp cancels against Z2) and on each gradient
    computed from absolute values: |A1|^T (|P| + |Y|) / m, |X|^T (|G| |W2|^T) / m."""
    params, x, y = inputs
    z1, z2 = _mlp_bounds(inputs)
    g = (1 + np.abs(y)) / x.shape[0]
    return max(
        magnitude(expected),
        magnitude(z2) * float(np.sum(y, axis=-1).max()),
        magnitude(z1.T @ g),
        magnitude(np.abs(x).T @ (g @ np.abs(params.W2).T)),
    )


def _logreg(inputs: Inputs, expected: Any) -> float:
    params, x, y = inputs
    z = np.abs(x) @ np.abs(params.w) + np.abs(params.b)
    return max(magnitude(expected), magnitude(z), magnitude(np.abs(x).T @ (1 + np.abs(y))))


def _mlp_hvp(inputs: Inputs, expected: Any) -> float:
    """Bounds from absolute values on every product of the R-pass (``manual_bp.hvp``):
    |R Z1|, |R Z2| (R P carries its absolute rounding), and each term of H v and G v."""
    params, x, y, v = inputs
    z1, _ = _mlp_bounds(inputs[:3])
    r_z1 = np.abs(x) @ np.abs(v.W1) + np.abs(v.b1)
    r_z2 = r_z1 @ np.abs(params.W2) + z1 @ np.abs(v.W2) + np.abs(v.b2)
    mass = np.sum(np.abs(y), axis=1, keepdims=True)
    dz2 = (mass + np.abs(y)) / x.shape[0]
    r_dz2 = 2 * mass * r_z2.max(axis=1, keepdims=True) / x.shape[0] * np.ones_like(dz2)
    r_da1 = r_dz2 @ np.abs(params.W2).T + dz2 @ np.abs(v.W2).T
    return max(
        magnitude(expected),
        magnitude(r_z2) * float(mass.max()) / x.shape[0],
        magnitude(z1.T @ r_dz2 + r_z1.T @ dz2),
        magnitude(np.abs(x).T @ r_da1),
    )


def _logreg_hvp(inputs: Inputs, expected: Any) -> float:
    _, x, _, v = inputs
    r_z = (np.abs(x) @ np.abs(v.w) + np.abs(v.b)) / x.shape[0]
    return max(magnitude(expected), magnitude(r_z), magnitude(np.abs(x).T @ r_z))


def _mlp_hvp_problems(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    return vs.mlp_hvp_problems(dtype).filter(lambda problem: away_from_kink(problem[:3]))


def _size(inputs: Inputs) -> int:
    return int(np.size(inputs[0]))


def _last_axis(inputs: Inputs) -> int:
    return int(np.shape(inputs[0])[-1])


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------


def _one(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Inputs]:
    return strategy.map(lambda value: (value,))


def _activations(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    """Ordinary and extreme values (beyond exp overflow), any of the elementwise shapes."""
    shapes = st.sampled_from(vs.ELEMENTWISE_SHAPES)
    return _one(st.one_of(vs.bounded_arrays(dtype, shapes), vs.extreme_logits(dtype, shapes)))


def _rows(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    ordinary = vs.bounded_arrays(dtype, st.sampled_from(vs.BATCH_SHAPES))
    return _one(st.one_of(ordinary, vs.extreme_logits(dtype)))


def _vjp(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    return st.one_of(vs.softmax_vjp_problems(dtype), vs.softmax_vjp_problems(dtype, extreme=True))


def _logits(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    return st.one_of(vs.logit_problems(dtype), vs.logit_problems(dtype, extreme=True))


def _binary_logits(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    return st.one_of(vs.binary_logit_problems(dtype), vs.binary_logit_problems(dtype, extreme=True))


def _chain_problems(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    """Bounded logits (every softmax probability > 0) with labels summing to 1 per row."""
    return vs.logit_problems(dtype, kinds=("one_hot", "soft"))


def _kink_margin(dtype: np.dtype[Any]) -> float:
    """|x W1 + b1| below this is too close to the ReLU kink for two roundings to agree on
    its side: 1e-4 in float32, 1e-10 in float64 (far above the rounding of |Z1| <= 20)."""
    return 1e-4 if dtype == np.float32 else 1e-10


def away_from_kink(problem: Inputs) -> bool:
    """True when no pre-activation of the network's hidden layer is within the kink margin."""
    params, x, _ = problem
    z1 = to_float64(x) @ to_float64(params.W1) + to_float64(params.b1)
    return bool(np.all(np.abs(z1) >= _kink_margin(np.asarray(x).dtype)))


def _mlp_problems(dtype: np.dtype[Any]) -> st.SearchStrategy[Inputs]:
    return vs.mlp_problems(dtype).filter(away_from_kink)


# ---------------------------------------------------------------------------------------------
# Manual and reference computations that are more than one call
# ---------------------------------------------------------------------------------------------


def _chained_manual(z: Any, y: Any) -> Any:
    """The document's derivation by hand: dJ/dP (cross_entropy_grad) chained through the
    softmax Jacobian, sum_i dJ/dp_i dp_i/dz_j, per row."""
    p = manual_bp.softmax(z)
    return np.einsum(
        "mi,mij->mj", manual_bp.cross_entropy_grad(p, y), manual_bp.softmax_jacobian(z)
    )


def _mlp_forward_manual(params: Any, x: Any, y: Any) -> Any:
    return manual_bp.mlp_forward(params, x)[0]


def _linear_backward_reference(dz: Any, x: Any, w: Any) -> Any:
    return ref.linear_backward(dz, x, w)


CHECKS: tuple[Check, ...] = (
    Check("relu", "a = max(z, 0)", "relu", _activations, _manual("relu"), ref.relu,
          _of_expected),
    Check("relu_grad", "relu'(z) = 1[z > 0]  (relu'(0) = 0)", "relu_grad", _activations,
          _manual("relu_grad"), ref.relu_grad, _unit),
    Check("sigmoid", "s(z) = 1 / (1 + e^(-z))", "sigmoid", _activations, _manual("sigmoid"),
          ref.sigmoid, _unit),
    Check("sigmoid_grad", "s'(z) = s(z) (1 - s(z))", "sigmoid_grad", _activations,
          _manual("sigmoid_grad"), ref.sigmoid_grad, _unit),
    Check("softmax", "p_i = e^(z_i) / sum_j e^(z_j)  (per row)", "softmax", _rows,
          _manual("softmax"), ref.softmax, _unit, _last_axis),
    Check("softmax_jacobian", "dp_i/dz_j = p_i (delta_ij - p_j), J = diag(p) - p p^T",
          "softmax_jacobian", _rows, _manual("softmax_jacobian"), ref.softmax_jacobian, _unit,
          _last_axis),
    Check("softmax_vjp", "(g^T J)_j = p_j (g_j - g . p)", "softmax_vjp", _vjp,
          _manual("softmax_vjp"), ref.softmax_vjp, _of_cotangent, _last_axis),
    Check("cross_entropy", "J = -(1/m) sum_ic y_ic log p_ic", "cross_entropy",
          vs.probability_problems, _manual("cross_entropy"), ref.cross_entropy, _of_expected,
          _size),
    Check("cross_entropy_grad", "dJ/dP = -Y / (m P)  (0 where Y = 0)", "cross_entropy_grad",
          vs.probability_problems, _manual("cross_entropy_grad"), ref.cross_entropy_grad,
          _of_expected),
    Check("softmax_cross_entropy", "J = -(1/m) sum_ic y_ic log softmax(z)_ic",
          "softmax_cross_entropy", _logits, _manual("softmax_cross_entropy"),
          ref.softmax_cross_entropy, _softmax_ce_loss, _size),
    Check("softmax_cross_entropy_grad",
          "dJ/dZ = (P rowsum(Y) - Y) / m  = (P - Y) / m for one-hot Y",
          "softmax_cross_entropy_grad", _logits, _manual("softmax_cross_entropy_grad"),
          ref.softmax_cross_entropy_grad, _softmax_ce_grad, _last_axis),
    Check("chain_rule", "dJ/dZ = dJ/dP . dP/dZ = (P - Y) / m  (the document's derivation)",
          "cross_entropy_grad . softmax_jacobian", _chain_problems, _chained_manual,
          ref.softmax_cross_entropy_grad, _softmax_ce_grad, _last_axis),
    Check("binary_cross_entropy", "J = -(1/m) sum [y log p + (1 - y) log(1 - p)]",
          "binary_cross_entropy", vs.binary_probability_problems,
          _manual("binary_cross_entropy"), ref.binary_cross_entropy, _probability_loss, _size),
    Check("binary_cross_entropy_grad", "dJ/dp = (p - y) / (m p (1 - p))",
          "binary_cross_entropy_grad", vs.binary_probability_problems,
          _manual("binary_cross_entropy_grad"), ref.binary_cross_entropy_grad, _bce_grad),
    Check("sigmoid_binary_cross_entropy", "J = -(1/m) sum [y log s(z) + (1 - y) log s(-z)]",
          "sigmoid_binary_cross_entropy", _binary_logits,
          _manual("sigmoid_binary_cross_entropy"), ref.sigmoid_binary_cross_entropy,
          _sigmoid_bce_loss, _size),
    Check("sigmoid_binary_cross_entropy_grad", "dJ/dz = (s(z) - y) / m",
          "sigmoid_binary_cross_entropy_grad", _binary_logits,
          _manual("sigmoid_binary_cross_entropy_grad"), ref.sigmoid_binary_cross_entropy_grad,
          _per_sample),
    Check("linear", "Z = X W + b", "linear",
          lambda dtype: vs.linear_problems(dtype).map(lambda p: p[:3]), _manual("linear"),
          ref.linear, _linear, lambda inputs: int(np.shape(inputs[0])[1])),
    Check("linear_backward", "dJ/dX = G W^T, dJ/dW = X^T G, dJ/db = 1^T G  (G = dJ/dZ)",
          "linear_backward",
          lambda dtype: vs.linear_problems(dtype).map(lambda p: (p[3], p[0], p[1])),
          _manual("linear_backward"), _linear_backward_reference, _linear_backward,
          lambda inputs: int(max(np.shape(inputs[0]))), ("dx", "dw", "db")),
    Check("mlp_forward", "P = softmax(relu(X W1 + b1) W2 + b2)", "mlp_forward", _mlp_problems,
          _mlp_forward_manual, lambda params, x, y: ref.mlp_forward(params, x), _mlp_logits,
          lambda inputs: int(max(inputs[0].W1.shape) * max(inputs[0].W2.shape))),
    Check("mlp_loss_and_grads",
          "dJ/dW2 = A1^T (P - Y) / m, dJ/dW1 = X^T [((P - Y) / m) W2^T * 1(X W1 + b1 > 0)], "
          "db = column sums", "mlp_loss_and_grads", _mlp_problems,
          _manual("mlp_loss_and_grads"), ref.mlp_loss_and_grads, _mlp,
          lambda inputs: int(np.size(inputs[1]) * max(inputs[0].W1.shape)),
          ("loss", "dW1", "db1", "dW2", "db2")),
    Check("logreg_loss_and_grads", "dJ/dw = X^T (y_hat - y) / m, dJ/db = (1/m) sum (y_hat - y)",
          "logreg_loss_and_grads", vs.logreg_problems, _manual("logreg_loss_and_grads"),
          ref.logreg_loss_and_grads, _logreg, lambda inputs: int(np.size(inputs[1])),
          ("loss", "dw", "db")),
    Check("mlp_hvp", "H V = R{grad J}: R dW2 = R{A1}^T dZ2 + A1^T R{dZ2}, R dW1 = X^T "
          "[(R{dZ2} W2^T + dZ2 V2^T) * 1(Z1 > 0)]", "mlp_hvp", _mlp_hvp_problems,
          _manual("mlp_hvp"), ref.mlp_hvp, _mlp_hvp,
          lambda inputs: int(np.size(inputs[1]) * max(inputs[0].W1.shape)),
          ("dW1", "db1", "dW2", "db2")),
    Check("mlp_gnvp", "G V = J^T H_Z2 J V  (H V without the terms carrying dZ2)", "mlp_gnvp",
          _mlp_hvp_problems, _manual("mlp_gnvp"), ref.mlp_gnvp, _mlp_hvp,
          lambda inputs: int(np.size(inputs[1]) * max(inputs[0].W1.shape)),
          ("dW1", "db1", "dW2", "db2")),
    Check("logreg_hvp", "H v = X1^T [s(z) s(-z) (X v_w + v_b) / m]", "logreg_hvp",
          vs.logreg_hvp_problems, _manual("logreg_hvp"), ref.logreg_hvp, _logreg_hvp,
          lambda inputs: int(np.size(inputs[1])), ("w", "b")),
    Check("logreg_gnvp", "G v = J^T H_z J v = H v  (the model is linear)", "logreg_gnvp",
          vs.logreg_hvp_problems, _manual("logreg_gnvp"), ref.logreg_gnvp, _logreg_hvp,
          lambda inputs: int(np.size(inputs[1])), ("w", "b")),
)  # fmt: skip
"""Every formula of the document (and the functions it implies), in the order of the table."""

CHECKS_BY_NAME: dict[str, Check] = {check.name: check for check in CHECKS}


def assert_check(name: str, inputs: Inputs) -> Comparison:
    """Run the check ``name`` (a key of ``CHECKS_BY_NAME``) on one problem; raise
    ``AssertionError`` saying which element differs by how much if it fails.

    The property tests call this with hypothesis-drawn problems, so that the tests and the
    main job judge a result by the same reference and the same tolerance rule.
    """
    comparison = CHECKS_BY_NAME[name].compare(inputs)
    if not comparison.passed:
        raise AssertionError(f"{name}: {comparison}")
    return comparison


@dataclass
class Row:
    """One line of the table: a check's results in one dtype."""

    name: str
    formula: str
    function: str
    dtype: str
    examples: int = 0
    failures: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    rtol: float = 0.0
    atol: float = 0.0
    seconds: float = 0.0
    first_failure: str | None = None
    failing_inputs: str | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return self.examples > 0 and self.failures == 0

    def record(self, comparison: Comparison) -> None:
        self.examples += 1
        self.max_abs_error = max(self.max_abs_error, comparison.max_abs_error)
        self.max_rel_error = max(self.max_rel_error, comparison.max_rel_error)
        self.rtol = max(self.rtol, comparison.rtol)
        self.atol = max(self.atol, comparison.atol)
        if not comparison.passed:
            self.failures += 1
            if self.first_failure is None:
                self.first_failure = str(comparison)


def check_settings(max_examples: int) -> settings:
    """The hypothesis settings of every check: derandomized, no database, generation only."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def run_check(check: Check, dtype: np.dtype[Any], max_examples: int) -> Row:
    """Run ``check`` on ``max_examples`` derandomized problems of ``dtype``; never raises for
    a failing formula (an exception from the manual code counts as a failure)."""
    row = Row(check.name, check.formula, check.function, np.dtype(dtype).name)
    start = time.perf_counter()

    @check_settings(max_examples)
    @given(check.problems(np.dtype(dtype)))
    def one(inputs: Inputs) -> None:
        try:
            comparison = check.compare(inputs)
        except Exception as error:  # a crash in the manual code is a failed formula
            row.examples += 1
            row.failures += 1
            row.max_abs_error = row.max_rel_error = math.inf
            if row.first_failure is None:
                row.first_failure = f"raised {type(error).__name__}: {error}"
                row.failing_inputs = repr(inputs)
            return
        if not comparison.passed and row.failing_inputs is None:
            row.failing_inputs = repr(inputs)
        row.record(comparison)

    with pinned_generation():  # the same problems whatever else the process has loaded
        one()
    row.seconds = time.perf_counter() - start
    return row


def _fmt(value: float) -> str:
    return f"{value:.1e}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (formula, function, dtype, examples, errors, tolerance)."""
    lines = [
        "| formula | function | dtype | examples | max abs error | max rel error | rtol (max) "
        "| result |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        result = "PASS" if r.passed else f"FAIL ({r.failures})"
        lines.append(
            f"| {r.formula} | `{r.function}` | {r.dtype} | {r.examples} | "
            f"{_fmt(r.max_abs_error)} | {_fmt(r.max_rel_error)} | {_fmt(r.rtol)} | {result} |"
        )
    return "\n".join(lines)
