"""``audit_vjp(..., order=2)``: the double backward of layer code against JAX.

The pattern of pytorch#76185: a ``torch.autograd.Function`` that saves an intermediate
computed in ``forward`` (here the sigmoid of SiLU, x * sigmoid(x), as memory-saving Swish
implementations do) has a right first derivative and a silently wrong second one, because the
saved tensor is a constant to double backward. Its twin saves only the input and recomputes the
sigmoid in ``backward``; it must pass. Layers written in torch operations are audited the same
way.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import jax
import numpy as np
import pytest
from hypothesis import settings

from verification import audit_vjp, reference
from verification.auditing import RELU, AuditSpecError, named_arrays

torch = pytest.importorskip("torch")  # the bench extra's CPU build: the 3.11 sessions only

EXAMPLES = min(settings().max_examples, 60)
SHAPES = named_arrays({"x": ("m", "h")}, bounds=(4.0,))


class SiLUSavedSigmoid(torch.autograd.Function):
    """x * sigmoid(x), saving the sigmoid computed in forward: wrong at second order."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, s = ctx.saved_tensors
        return grad * s * (1 + x * (1 - s))


class SiLURecomputed(torch.autograd.Function):
    """x * sigmoid(x), saving only x: the sigmoid is recomputed, differentiably, in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * s * (1 + x * (1 - s))


def silu(x: Any) -> Any:
    return jax.nn.silu(x)


def test_saved_intermediate_function_passes_first_order_and_fails_second_with_its_stage() -> None:
    first = audit_vjp(SiLUSavedSigmoid, silu, SHAPES, seed=0, max_examples=EXAMPLES)
    assert first.passed, str(first)  # the first order is right: gradcheck-style checks pass
    report = audit_vjp(SiLUSavedSigmoid, silu, SHAPES, seed=0, order=2, arg_names=["x"])
    assert report.kind == "mismatch", str(report)
    assert report.stage is not None
    assert report.stage.startswith("first order right"), report.stage
    assert "second order wrong with respect to x, right with respect to cotangent" in report.stage
    assert "neither an input nor an output" in (report.diagnosis or "")
    assert "pytorch#76185" in (report.diagnosis or "")
    assert report.counterexample_size[0] <= 6  # cotangent, w and x of one element each, or so


def test_without_arg_names_the_inputs_keep_their_own_numbers_in_every_sentence() -> None:
    """The audit puts the cotangent pair first; the user's x is still args[0], in the
    diagnosis as in the stage (it was args[2] in one and args[0] in the other)."""
    report = audit_vjp(SiLUSavedSigmoid, silu, SHAPES, seed=0, order=2, max_examples=20)
    assert report.kind == "mismatch", str(report)
    assert "wrong with respect to args[0]" in (report.stage or ""), report.stage
    assert (report.diagnosis or "").startswith("args[0]: "), report.diagnosis
    assert "args[2]" not in str(report).split("counterexample (")[0]


@pytest.mark.parametrize("seed", range(10))
def test_recomputing_twin_passes_at_second_order(seed: int) -> None:
    report = audit_vjp(SiLURecomputed, silu, SHAPES, seed=seed, order=2, max_examples=20)
    assert report.passed, str(report)


def test_torch_written_backward_is_audited_at_second_order() -> None:
    """A layer's backward written in torch operations: tanh' = 1 - tanh^2 is right; 1 - tanh is
    wrong, and shrinks to z = 0, where its value is right (1 - tanh(0) = 1 - tanh(0)^2) and only
    its derivative in z is wrong: the stage says exactly that."""

    def tanh_backward(dout: Any, z: Any) -> Any:
        return dout * (1 - torch.tanh(z) ** 2)

    def tanh_backward_wrong(dout: Any, z: Any) -> Any:
        return dout * (1 - torch.tanh(z))

    import jax.numpy as jnp

    assert audit_vjp(tanh_backward, jnp.tanh, SHAPES, seed=0, order=2, max_examples=EXAMPLES).passed
    report = audit_vjp(tanh_backward_wrong, jnp.tanh, SHAPES, seed=0, order=2)
    assert report.kind == "mismatch"
    assert report.stage == (
        "first order right (the backward agrees with jax.vjp here); second order wrong with "
        "respect to args[0], right with respect to cotangent"
    )


def test_a_backward_that_ignores_dout_at_second_order_is_wrong_in_the_cotangent() -> None:
    """A backward that detaches dout: its value is right (first order), but the gradient of
    <g, w> with respect to dout is 0 where it should be J w."""

    def relu_backward_detached(dout: Any, z: Any) -> Any:
        return dout.detach() * (z > 0)

    report = audit_vjp(relu_backward_detached, reference.relu, SHAPES, seed=0, order=2)
    assert report.kind == "mismatch"
    assert "second order wrong with respect to cotangent" in (report.stage or "")


def test_reproducer_reruns_the_double_backward_failure() -> None:
    report = audit_vjp(SiLUSavedSigmoid, silu, SHAPES, seed=0, order=2)
    code = report.reproducer().replace(f"from {__name__} import", "# from x import")
    namespace: dict[str, Any] = {"grad_fn": SiLUSavedSigmoid, "loss_fn": silu}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    assert "FAILED (mismatch): double-backward audit" in out.getvalue()


def test_order_arguments_are_checked() -> None:
    with pytest.raises(AuditSpecError, match="order must be 1 or 2"):
        audit_vjp(SiLURecomputed, silu, SHAPES, order=3)
    with pytest.raises(AuditSpecError, match="order=2 takes no kinks"):
        audit_vjp(SiLURecomputed, silu, SHAPES, order=2, kinks=RELU)
    with pytest.raises(AuditSpecError, match="cotangent must be the pair"):
        audit_vjp(SiLURecomputed, silu, (np.ones((1, 1)),), order=2, cotangent=np.ones((1, 1)))
    with pytest.raises(AuditSpecError, match="argnums 1 is out of range"):  # as at first order
        audit_vjp(SiLURecomputed, silu, (np.ones((1, 1)),), order=2, argnums=1)
    with pytest.raises(AuditSpecError, match="atol must be finite and >= 0"):
        audit_vjp(SiLURecomputed, silu, SHAPES, order=2, atol=float("nan"))


class Double(torch.autograd.Function):
    """2 x: linear, so its backward does not depend on x and the second derivative in x is 0."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return 2 * grad


def test_a_second_derivative_torch_leaves_out_is_a_zero_of_the_inputs_dtype() -> None:
    shapes = named_arrays({"x": ("m", "h")}, bounds=(4.0,), dtype=np.float32)
    report = audit_vjp(Double, lambda x: 2 * x, shapes, seed=0, order=2, max_examples=10)
    assert report.passed, str(report)
    assert report.kind is None, str(report)


def test_a_given_cotangent_pair_is_the_one_audited_at_second_order() -> None:
    # <backward(dout, x), w> with dout = w = 0 is 0 whatever x: nothing to get wrong there,
    # while the saved sigmoid's lost dependence on x shows with a pair that is not 0
    x = np.array([[0.5, -1.5, 2.0]])
    zero = (np.zeros((1, 3)), np.zeros((1, 3)))
    pair = (np.array([[1.0, -2.0, 0.5]]), np.array([[0.25, 3.0, -1.0]]))
    assert audit_vjp(SiLUSavedSigmoid, silu, (x,), cotangent=zero, order=2, seed=0).passed
    report = audit_vjp(SiLUSavedSigmoid, silu, (x,), cotangent=pair, order=2, seed=0)
    assert report.kind == "mismatch", str(report)
