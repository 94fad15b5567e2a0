"""``audit_vjp``: layer backward functions against ``jax.vjp`` of a JAX forward.

The layers of the source document, written as layer code is (``forward(*inputs) -> (out,
cache)``, ``backward(dout, cache) -> grads``), each correct and with the classic mistakes:
linear z = x W + b, ReLU, softmax (row-wise) and softmax cross-entropy (logits and labels to
the mean loss, a scalar: its ``dout`` is a scalar too). ``LAYERS`` gives each layer's JAX
reference (``verification.reference``), input spec and differentiated inputs; ``BUGS`` each
mistake with the failure the audit must report. The correct ones must pass, the buggy ones fail.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pytest
from hypothesis import settings
from numpy.typing import NDArray

from verification import audit_vjp, reference
from verification.auditing import AuditSpecError, named_arrays

Array = NDArray[Any]


# ---------------------------------------------------------------------------------------------
# Linear: z = x W + b
# ---------------------------------------------------------------------------------------------


def linear_forward(x: Array, w: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
    return x @ w + b, (x, w)


def linear_backward(dz: Array, cache: tuple[Array, Array]) -> tuple[Array, Array, Array]:
    """Correct: dx = dz W^T, dW = x^T dz, db = column sums of dz."""
    x, w = cache
    return dz @ w.T, x.T @ dz, dz.sum(axis=0)


def linear_backward_dw_transposed(dz: Array, cache: tuple[Array, Array]) -> Any:
    """Bug: dW = dz^T x, (h, n) instead of (n, h)."""
    x, w = cache
    return dz @ w.T, dz.T @ x, dz.sum(axis=0)


def linear_backward_db_mean(dz: Array, cache: tuple[Array, Array]) -> Any:
    """Bug: db = the mean of dz over the batch (the 1/m belongs to the loss, not the layer)."""
    x, w = cache
    return dz @ w.T, x.T @ dz, dz.mean(axis=0)


def linear_backward_dx_without_transpose(dz: Array, cache: tuple[Array, Array]) -> Any:
    """Bug: dx = dz W instead of dz W^T (right shape only when W is square)."""
    x, w = cache
    return dz @ w, x.T @ dz, dz.sum(axis=0)


# ---------------------------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------------------------


def relu_forward(z: Array) -> tuple[Array, Array]:
    return np.maximum(z, 0.0), z


def relu_backward(da: Array, z: Array) -> Array:
    """Correct, relu'(0) = 0 like jax.nn.relu: da * 1[z > 0]."""
    out: Array = da * (z > 0)
    return out


def relu_backward_mask_only(da: Array, z: Array) -> Array:
    """Bug: the local derivative 1[z > 0] returned without the upstream gradient."""
    return (z > 0).astype(da.dtype)


def relu_backward_in_place(da: Array, z: Array) -> Array:
    """Bug: ``dx = dout; dx[z <= 0] = 0`` zeroes the caller's upstream gradient in place."""
    dx = da
    dx[z <= 0] = 0
    return dx


# ---------------------------------------------------------------------------------------------
# Softmax (row-wise)
# ---------------------------------------------------------------------------------------------


def _softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def softmax_forward(z: Array) -> tuple[Array, Array]:
    p = _softmax(z)
    return p, p


def softmax_backward(dp: Array, p: Array) -> Array:
    """Correct: dz = p * (dp - <dp, p>) row by row (the Jacobian diag(p) - p p^T applied)."""
    out: Array = p * (dp - (dp * p).sum(axis=1, keepdims=True))
    return out


def softmax_backward_diagonal_only(dp: Array, p: Array) -> Array:
    """Bug: dz = dp * p (1 - p), the Jacobian's diagonal only (the classic elementwise slip)."""
    out: Array = dp * p * (1 - p)
    return out


def softmax_backward_wrong_axis(dp: Array, p: Array) -> Array:
    """Bug: the inner product <dp, p> summed over the batch (axis 0) instead of the classes."""
    out: Array = p * (dp - (dp * p).sum(axis=0, keepdims=True))
    return out


# ---------------------------------------------------------------------------------------------
# Softmax cross-entropy: (logits z, labels y) -> mean loss
# ---------------------------------------------------------------------------------------------


def softmax_ce_forward(z: Array, y: Array) -> tuple[Array, tuple[Array, Array]]:
    p = _softmax(z)
    loss = -np.sum(y * np.log(np.maximum(p, np.finfo(p.dtype).tiny))) / z.shape[0]
    return np.asarray(loss), (p, y)


def softmax_ce_backward(dloss: Array, cache: tuple[Array, Array]) -> Array:
    """Correct: dz = dloss * (p - y) / m (one-hot rows)."""
    p, y = cache
    out: Array = dloss * (p - y) / p.shape[0]
    return out


def softmax_ce_backward_ignores_dout(dloss: Array, cache: tuple[Array, Array]) -> Array:
    """Bug: (p - y) / m, as if the upstream gradient were always 1 (a loss layer used inside a
    larger graph, or scaled, gets it wrong)."""
    p, y = cache
    out: Array = (p - y) / p.shape[0]
    return out


def softmax_ce_backward_missing_one_over_m(dloss: Array, cache: tuple[Array, Array]) -> Array:
    """Bug: dloss * (p - y), the mean's 1/m forgotten."""
    p, y = cache
    out: Array = dloss * (p - y)
    return out


@dataclass(frozen=True)
class Layer:
    """A layer: its candidate forward, its JAX reference, inputs and differentiated inputs."""

    forward: Any
    reference: Any
    spec: dict[str, tuple[str, ...]]
    argnums: tuple[int, ...]
    kinds: dict[str, Any]


LAYERS: dict[str, Layer] = {
    "linear": Layer(
        linear_forward,
        reference.linear,
        {"x": ("m", "n"), "w": ("n", "h"), "b": ("h",)},
        (0, 1, 2),
        {},
    ),
    "relu": Layer(relu_forward, reference.relu, {"z": ("m", "h")}, (0,), {}),
    "softmax": Layer(softmax_forward, reference.softmax, {"z": ("m", "k")}, (0,), {}),
    "softmax cross-entropy": Layer(
        softmax_ce_forward,
        reference.softmax_cross_entropy,
        {"z": ("m", "k"), "y": ("m", "k")},
        (0,),
        {"y": "onehot"},
    ),
}


@dataclass(frozen=True)
class Bug:
    """A layer's backward with one mistake, and what the audit must say about it."""

    layer: str
    backward: Any
    kind: str  # the report's kind
    signature: str  # a phrase the diagnosis (or location) must contain


CORRECT: dict[str, Any] = {
    "linear": linear_backward,
    "relu": relu_backward,
    "softmax": softmax_backward,
    "softmax cross-entropy": softmax_ce_backward,
}

BUGS: dict[str, Bug] = {
    "linear: dW transposed": Bug(
        "linear", linear_backward_dw_transposed, "wrong shape|mismatch", "transposed"
    ),
    "linear: db averaged": Bug("linear", linear_backward_db_mean, "mismatch", "1/m"),
    "linear: dx without transpose": Bug(
        "linear", linear_backward_dx_without_transpose, "raised|wrong shape|mismatch", "x"
    ),
    "relu: mask only": Bug("relu", relu_backward_mask_only, "mismatch", "z"),
    "relu: in place": Bug("relu", relu_backward_in_place, "mutated its input", "cotangent"),
    "softmax: diagonal only": Bug("softmax", softmax_backward_diagonal_only, "mismatch", "z"),
    "softmax: wrong axis": Bug("softmax", softmax_backward_wrong_axis, "mismatch", "z"),
    "softmax CE: ignores dout": Bug(
        "softmax cross-entropy", softmax_ce_backward_ignores_dout, "mismatch", "z"
    ),
    "softmax CE: missing 1/m": Bug(
        "softmax cross-entropy", softmax_ce_backward_missing_one_over_m, "mismatch", "1/m|2 times"
    ),
}


EXAMPLES = min(settings().max_examples, 60)  # 25 (dev) or 60 (ci: 150, capped for time)


def _audit(backward: Any, layer: Layer, **kwargs: Any) -> Any:
    shapes = named_arrays(layer.spec, kinds=layer.kinds)
    return audit_vjp(
        backward,
        layer.reference,
        shapes,
        forward=layer.forward,
        argnums=layer.argnums,
        arg_names=list(layer.spec),
        **{"max_examples": EXAMPLES, "seed": 0, **kwargs},
    )


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_layer_backward_passes(name: str) -> None:
    report = _audit(CORRECT[name], LAYERS[name])
    assert report.passed, str(report)
    assert report.examples >= EXAMPLES


@pytest.mark.parametrize("name", list(BUGS))
def test_layer_bug_fails_with_its_signature(name: str) -> None:
    bug = BUGS[name]
    report = _audit(bug.backward, LAYERS[bug.layer], max_examples=100)
    assert not report.passed, str(report)
    assert report.kind in bug.kind.split("|"), str(report)
    words = f"{report.location} {report.diagnosis} {report.traceback}"
    assert any(s in words for s in bug.signature.split("|")), str(report)
    assert report.title is not None
    assert report.title.startswith(f"vjp audit of {__name__}:{bug.backward.__name__}")


def test_a_sum_would_hide_an_error_the_random_cotangent_finds() -> None:
    # dz = 0 is the vjp of softmax for a cotangent of ones (the Jacobian's columns sum to 0):
    # a check with sum(softmax(z)) passes it; the random cotangent does not
    def zero_backward(dp: Array, p: Array) -> Array:
        return np.zeros_like(p)

    z = np.array([[0.5, -1.0, 2.0]])
    assert audit_vjp(
        zero_backward, reference.softmax, (z,), forward=softmax_forward, cotangent=np.ones((1, 3))
    ).passed
    report = _audit(zero_backward, LAYERS["softmax"])
    assert not report.passed
    cotangent = report.counterexample[-1]
    assert np.ptp(cotangent) > 0  # not a constant


def test_backward_of_the_inputs_without_a_cache() -> None:
    def backward(dz: Array, x: Array, w: Array, b: Array) -> tuple[Array, Array, Array]:
        return dz @ w.T, x.T @ dz, dz.sum(axis=0)

    shapes = named_arrays(LAYERS["linear"].spec)
    kwargs: dict[str, Any] = {"max_examples": EXAMPLES, "seed": 1}
    assert audit_vjp(backward, reference.linear, shapes, argnums=(0, 1, 2), **kwargs).passed
    # one gradient per input with argnums a subset: only those at argnums are checked
    assert audit_vjp(backward, reference.linear, shapes, argnums=1, **kwargs).passed
    wrong_db = audit_vjp(
        lambda dz, x, w, b: (dz @ w.T, x.T @ dz, dz[0]),
        reference.linear,
        shapes,
        argnums=(0, 1, 2),
        **kwargs,
    )
    assert not wrong_db.passed
    assert wrong_db.location is not None
    assert wrong_db.location.startswith("args[2]")


def test_a_pytree_output_gets_a_pytree_cotangent() -> None:
    def forward_ref(z: Any) -> Any:
        return {"relu": jax.nn.relu(z), "square": z * z}

    def backward(cot: dict[str, Array], z: Array) -> Array:
        return cot["relu"] * (z > 0) + 2 * z * cot["square"]

    shapes = named_arrays({"z": ("m",)}, bounds=(3.0,))
    assert audit_vjp(backward, forward_ref, shapes, max_examples=EXAMPLES, seed=0).passed
    bad = audit_vjp(lambda c, z: c["relu"] * (z > 0) + z * c["square"], forward_ref, shapes, seed=0)
    assert not bad.passed
    assert bad.kind == "mismatch"


def test_reproducer_reruns_the_vjp_failure() -> None:
    report = _audit(softmax_ce_backward_missing_one_over_m, LAYERS["softmax cross-entropy"])
    assert not report.passed
    namespace: dict[str, Any] = {}
    code = report.reproducer().replace(
        f"from {__name__} import", "# (this test module is not importable) from x import"
    )
    namespace.update(
        softmax_ce_backward_missing_one_over_m=softmax_ce_backward_missing_one_over_m,
        softmax_ce_forward=softmax_ce_forward,
    )
    code = code.replace(
        "# (this test module is not importable) from x import softmax_ce_backward_missing_one_over_m as grad_fn",
        "grad_fn = softmax_ce_backward_missing_one_over_m",
    ).replace(
        "# (this test module is not importable) from x import softmax_ce_forward as forward",
        "forward = softmax_ce_forward",
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    assert "FAILED (mismatch)" in out.getvalue()
    assert "vjp audit of" in out.getvalue()


def test_bad_arguments_are_refused_before_any_example() -> None:
    shapes = named_arrays({"z": ("m",)})
    with pytest.raises(AuditSpecError, match="forward_ref must be a JAX function"):
        audit_vjp(relu_backward, None, shapes)  # type: ignore[arg-type]
    with pytest.raises(AuditSpecError, match="backward must be callable"):
        audit_vjp(None, reference.relu, shapes)
    with pytest.raises(AuditSpecError, match="cotangent can be given only with a concrete"):
        audit_vjp(relu_backward, reference.relu, shapes, cotangent=np.ones(1))
    with pytest.raises(AuditSpecError, match="args must be a hypothesis strategy or a tuple"):
        audit_vjp(relu_backward, reference.relu, [np.ones(1)])  # type: ignore[arg-type]
    with pytest.raises(AuditSpecError, match="max_examples must be an int >= 1"):
        audit_vjp(relu_backward, reference.relu, shapes, max_examples=0)


# ---------------------------------------------------------------------------------------------
# torch.autograd.Function, given directly
# ---------------------------------------------------------------------------------------------


def _torch_relu(one_at_zero: bool) -> Any:
    torch = pytest.importorskip("torch")

    class Relu(torch.autograd.Function):  # type: ignore[misc]
        @staticmethod
        def forward(ctx: Any, z: Any) -> Any:
            ctx.save_for_backward(z)
            return z.clamp(min=0)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (z,) = ctx.saved_tensors
            return grad * ((z >= 0) if one_at_zero else (z > 0)).to(grad.dtype)

    return Relu


def _torch_linear(dw_scale: float) -> Any:
    torch = pytest.importorskip("torch")

    class Linear(torch.autograd.Function):  # type: ignore[misc]
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
            ctx.save_for_backward(x, w)
            return x @ w + b

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            x, w = ctx.saved_tensors
            return grad @ w.T, dw_scale * (x.T @ grad), grad.sum(0)

    return Linear


def test_torch_function_backward_is_audited_against_the_jax_forward() -> None:
    shapes = named_arrays(LAYERS["linear"].spec)
    kwargs: dict[str, Any] = {"argnums": (0, 1, 2), "max_examples": EXAMPLES, "seed": 0}
    assert audit_vjp(_torch_linear(1.0), reference.linear, shapes, **kwargs).passed
    report = audit_vjp(_torch_linear(2.0), reference.linear, shapes, **kwargs)
    assert not report.passed
    assert "factor 2" in (report.diagnosis or ""), str(report)
    assert report.title is not None
    assert "Linear" in report.title


def test_torch_function_relu_one_at_zero_fails_only_with_the_declaration() -> None:
    from verification.auditing import RELU

    shapes = named_arrays({"z": ("m", "h")}, bounds=(3.0,))
    relu = _torch_relu(one_at_zero=True)
    declared = audit_vjp(relu, reference.relu, shapes, kinks=RELU, seed=0, max_examples=EXAMPLES)
    assert not declared.passed
    assert "at a kink" in (declared.diagnosis or "")
    assert audit_vjp(_torch_relu(False), reference.relu, shapes, kinks=RELU, seed=0).passed


def test_drawn_arguments_follow_the_inputs_or_lead_them_from_one_seed() -> None:
    from hypothesis import given, strategies as st

    from verification.auditing._cotangent import with_drawn

    def draw(inputs: tuple[Any, ...], s: int) -> tuple[Any, ...]:
        return (s, s + 1)  # what the double-backward audit draws: two seeds in a row

    assert with_drawn((1.0, 2.0), draw, seed=5) == (1.0, 2.0, 5, 6)
    assert with_drawn((1.0,), draw, seed=None, front=True) == (0, 1, 1.0)
    assert with_drawn((1.0,), draw, given=("c", "w"), seed=5) == (1.0, "c", "w")

    @settings(max_examples=30)
    @given(with_drawn(st.tuples(st.floats(0, 1)), draw, front=True, seeds=2))
    def drawn_in_front(example: tuple[Any, ...]) -> None:
        s, s_next, x = example
        assert 0 <= s <= 2**32 - 2
        assert s_next == s + 1
        assert 0 <= x <= 1

    drawn_in_front()


def test_argnums_beyond_the_inputs_of_a_plain_strategy_are_named() -> None:
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    one_input = st.tuples(arrays(np.float64, (2, 3), elements=st.floats(-1, 1)))
    with pytest.raises(AuditSpecError) as info:
        audit_vjp(lambda dout, x: dout, jax.nn.relu, one_input, argnums=1, max_examples=5)
    assert str(info.value).startswith("argnums 1 is out of range for the 1 inputs given")
