"""Trust on real layer code: no false alarm, no crash, words that are right (issue 21, 1-7, 16).

Each test is a realistic layer written here the way public layer code is written (batch norm at
batch size 1, max-pool with ties, a convolution by im2col with ``pad:=1 stride:=2``, a torch
``autograd.Function`` that also returns a count, an unfinished backward, a straight-through
estimator, a candidate that mutates its inputs, a ``jax.custom_vjp`` reference), checked for
the behaviour a user relies on: correct code passes, wrong code fails with true words.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from verification import audit, audit_vjp, reference
from verification.auditing import RELU, AuditSpecError, Kinks, named_arrays

Array = np.ndarray[Any, Any]

LEAKY_AT_ZERO = Kinks("leaky_relu'(0) = 1, as jax.nn.leaky_relu", RELU.aim)
"""A user's own declaration, at module level: the reproducer imports it by name."""


# ---------------------------------------------------------------------------------------------
# Item 3: fixed numbers (pad, stride) stay static in layer audits
# ---------------------------------------------------------------------------------------------


def conv_reference(x: jax.Array, w: jax.Array, pad: int, stride: int) -> jax.Array:
    """NCHW convolution (cross-correlation) with ``pad`` zeros on each side and ``stride``."""
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(pad, pad), (pad, pad)], dimension_numbers=("NCHW", "OIHW", "NCHW")
    )


def _windows(x: Array, f: int, pad: int, stride: int) -> tuple[Array, int, int]:
    """im2col: cols[n, c, i, j, r, s] = padded x[n, c, i + stride r, j + stride s]."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - f) // stride + 1, (w + 2 * pad - f) // stride + 1
    cols = np.empty((n, c, f, f, ho, wo), x.dtype)
    for i in range(f):
        for j in range(f):
            cols[:, :, i, j] = xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
    return cols, ho, wo


def conv_backward(dout: Array, x: Array, w: Array, pad: int, stride: int) -> tuple[Array, Array]:
    """Correct im2col backward: dW = dout . cols, dx = col2im(dout . W)."""
    f = w.shape[2]
    cols, ho, wo = _windows(x, f, pad, stride)
    dw = np.einsum("nkhw,ncijhw->kcij", dout, cols)
    dcols = np.einsum("nkhw,kcij->ncijhw", dout, w)
    n, c, h, width = x.shape
    dxp = np.zeros((n, c, h + 2 * pad, width + 2 * pad), x.dtype)
    for i in range(f):
        for j in range(f):
            dxp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += dcols[
                :, :, i, j
            ]
    return dxp[:, :, pad : pad + h, pad : pad + width], dw


def conv_backward_overwrites(
    dout: Array, x: Array, w: Array, pad: int, stride: int
) -> tuple[Array, Array]:
    """Bug: col2im assigns overlapping windows instead of accumulating them."""
    f = w.shape[2]
    cols, ho, wo = _windows(x, f, pad, stride)
    dw = np.einsum("nkhw,ncijhw->kcij", dout, cols)
    dcols = np.einsum("nkhw,kcij->ncijhw", dout, w)
    n, c, h, width = x.shape
    dxp = np.zeros((n, c, h + 2 * pad, width + 2 * pad), x.dtype)
    for i in range(f):
        for j in range(f):
            dxp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] = dcols[
                :, :, i, j
            ]
    return dxp[:, :, pad : pad + h, pad : pad + width], dw


CONV = named_arrays(
    {"x": ("m", "c", "5", "5"), "w": ("k", "c", "3", "3"), "pad": 1, "stride": 2},
    dims={"m": [1, 2], "c": [1, 2], "k": [1, 2]},
)


def test_vjp_audit_keeps_fixed_pad_and_stride_static() -> None:
    report = audit_vjp(conv_backward, conv_reference, CONV, argnums=(0, 1), max_examples=15, seed=0)
    assert report.passed, str(report)


def test_vjp_audit_with_fixed_stride_still_catches_an_overwriting_col2im() -> None:
    report = audit_vjp(
        conv_backward_overwrites, conv_reference, CONV, argnums=(0, 1), max_examples=30, seed=0
    )
    assert report.kind == "mismatch", str(report)


def test_vjp_cli_audits_a_convolution_with_fixed_pad_and_stride(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from verification.cli.audit_vjp import main

    here = Path(__file__)
    argv = [f"{here}:conv_backward", "--reference", f"{here}:conv_reference", "--argnums", "0,1"]
    shapes = ["--shapes", "x=m,c,5,5 w=k,c,3,3 pad:=1 stride:=2", "--dims", "m=1,2 c=1,2 k=1,2"]
    assert main([*argv, *shapes, "--max-examples", "10", "--seed", "0"]) == 0, capsys.readouterr()
    assert capsys.readouterr().out.startswith("PASSED: vjp audit of")


# ---------------------------------------------------------------------------------------------
# Item 4: a torch Function that also returns an integer
# ---------------------------------------------------------------------------------------------


def sparsemax_reference(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sparsemax over the last axis, and the size of its support (an integer)."""
    zs = -jnp.sort(-z, axis=-1)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cs = jnp.cumsum(zs, axis=-1)
    support = jnp.sum(1 + k * zs > cs, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(cs, support - 1, axis=-1) - 1) / support
    return jnp.maximum(z - tau, 0), jnp.max(support)


def sparsemax_probabilities(z: jax.Array) -> jax.Array:
    """Sparsemax alone (a reference without the count)."""
    return sparsemax_reference(z)[0]


def _sparsemax_function(scale_bug: float) -> Any:
    torch = pytest.importorskip("torch")

    class Sparsemax(torch.autograd.Function):  # type: ignore[misc]
        @staticmethod
        def forward(ctx: Any, z: Any) -> Any:
            zs, _ = torch.sort(z, dim=-1, descending=True)
            k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
            cs = zs.cumsum(-1)
            support = (1 + k * zs > cs).sum(-1, keepdim=True)
            tau = (cs.gather(-1, support - 1) - 1) / support
            p = torch.clamp(z - tau, min=0)
            ctx.save_for_backward(p)
            return p, int(support.max())

        @staticmethod
        def backward(ctx: Any, dp: Any, _dk: Any) -> Any:
            (p,) = ctx.saved_tensors
            s = (p > 0).to(dp.dtype)
            v = (dp * s).sum(-1, keepdim=True) / s.sum(-1, keepdim=True)
            return scale_bug * s * (dp - v)

    return Sparsemax


@pytest.mark.parametrize("reference", [sparsemax_reference, sparsemax_probabilities])
def test_torch_function_with_an_integer_output_gets_cotangents_for_its_float_outputs(
    reference: Any,
) -> None:
    spec = named_arrays({"z": ("m", "n")})
    report = audit_vjp(_sparsemax_function(1.0), reference, spec, max_examples=20, seed=0)
    assert report.passed, str(report)
    wrong = audit_vjp(_sparsemax_function(2.0), reference, spec, max_examples=20, seed=0)
    assert wrong.kind == "mismatch", str(wrong)


def test_torch_adapter_that_cannot_pair_outputs_is_a_spec_error_not_the_candidate_raising() -> None:
    def two_floats(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        p = sparsemax_probabilities(z)
        return p, p, p

    with pytest.raises(AuditSpecError, match="torch Function returned"):
        audit_vjp(_sparsemax_function(1.0), two_floats, named_arrays({"z": ("m", "n")}), seed=0)


# ---------------------------------------------------------------------------------------------
# Item 16: a reference without forward mode (jax.custom_vjp) on a concrete input
# ---------------------------------------------------------------------------------------------


@jax.custom_vjp
def _clipped_square_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2)


def _clipped_forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.sum(x**2), x


def _clipped_backward(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (2 * x * g,)


_clipped_square_sum.defvjp(_clipped_forward, _clipped_backward)


def test_custom_vjp_reference_gives_a_full_report_on_a_concrete_input() -> None:
    x = np.array([1.0, 2.0, -0.5])
    report = audit(lambda x: 3 * x, _clipped_square_sum, (x,), seed=0)
    assert report.kind == "mismatch", str(report)
    assert report.finite_difference is not None
    assert "constant factor 1.5" in str(report)
    assert audit(lambda x: 2 * x, _clipped_square_sum, (x,), seed=0).passed


# ---------------------------------------------------------------------------------------------
# Item 5: a result that does not depend on the input is not called a memo
# ---------------------------------------------------------------------------------------------


def tanh_layer_loss(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(jnp.tanh(x @ w)) / x.shape[0]


def unfinished_dx(x: Array, w: Array) -> Array:
    """An unfinished backward: ``dx = zeros`` left in place of the formula."""
    return np.zeros_like(x)


def round_loss(x: jax.Array, c: jax.Array) -> jax.Array:
    return jnp.sum(c * jnp.round(x))


def straight_through(x: Array, c: Array) -> Array:
    """A straight-through estimator: round's gradient taken as 1 (the reference's is 0)."""
    return np.ones_like(x)


_FIRST: dict[str, Array] = {}


def shifted_tanh_loss(x: jax.Array) -> jax.Array:
    return jnp.sum(jnp.tanh(x + 1.0))


def memoised_dx(x: Array) -> Array:
    """Keeps the first result it computes and returns it for every later input."""
    if "dx" not in _FIRST:
        _FIRST["dx"] = 1 - np.tanh(x + 1.0) ** 2
    return _FIRST["dx"]


@pytest.mark.parametrize(
    ("candidate", "loss", "spec", "words"),
    [
        (unfinished_dx, tanh_layer_loss, {"x": "m,n", "w": "n,h"}, "the same output at every"),
        (straight_through, round_loss, {"x": "m,n", "c": "m,n"}, "the reference is exactly 0"),
    ],
)
def test_output_independent_of_the_input_is_said_so_and_not_called_a_memo(
    candidate: Any, loss: Any, spec: dict[str, str], words: str
) -> None:
    sizes = {"m": [2, 3], "n": [2], "h": [2]}
    used = {d for shape in spec.values() for d in shape.split(":")[0].split(",")}
    dims = {d: s for d, s in sizes.items() if d in used}
    report = audit(candidate, loss, named_arrays(spec, dims=dims), seed=1)
    assert report.kind == "mismatch", str(report)
    assert "memoised" not in (report.diagnosis or ""), report.diagnosis
    assert words in (report.diagnosis or ""), report.diagnosis


def test_a_stale_first_result_is_still_called_a_memo() -> None:
    _FIRST.clear()
    report = audit(memoised_dx, shifted_tanh_loss, named_arrays({"x": "2,n"}), seed=1)
    assert "memoised or cached first result" in (report.diagnosis or ""), str(report)


# ---------------------------------------------------------------------------------------------
# Item 6: the kink explanation survives the constant-factor wording
# ---------------------------------------------------------------------------------------------


def leaky_backward_slope_at_zero(dout: Array, z: Array) -> Array:
    """Bug at the kink only: leaky_relu'(0) = 0.01 where jax.nn.leaky_relu takes 1."""
    out: Array = dout * np.where(z >= 0, 1.0, 0.01)
    return out


def leaky_backward_wrong_at_zero(dout: Array, z: Array) -> Array:
    out: Array = dout * np.where(z > 0, 1.0, 0.01)
    return out


def test_declared_kink_explanation_is_kept_next_to_a_factor_seen_at_the_kink() -> None:
    spec = named_arrays({"z": ("m", "n")})
    leaky = jax.nn.leaky_relu
    assert audit_vjp(leaky_backward_slope_at_zero, leaky, spec, kinks=RELU, seed=0).passed
    report = audit_vjp(leaky_backward_wrong_at_zero, leaky, spec, kinks=RELU, seed=0)
    assert report.kind == "mismatch", str(report)
    assert "at a kink, under the declared convention" in (report.diagnosis or ""), str(report)
    assert "off by a constant factor" not in (report.diagnosis or ""), str(report)


# ---------------------------------------------------------------------------------------------
# Item 1: cancellation to an exact zero (batch norm at batch size 1)
# ---------------------------------------------------------------------------------------------


def batchnorm_reference(x: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
    mu, var = jnp.mean(x, axis=0), jnp.var(x, axis=0)
    return gamma * (x - mu) / jnp.sqrt(var + 1e-5) + beta


def batchnorm_backward(
    dout: Array, x: Array, gamma: Array, beta: Array
) -> tuple[Array, Array, Array]:
    """Correct, with the terms of dx formed in an order of its own: at batch size 1 they are
    near gamma / sqrt(eps) and cancel to a few ulp of that instead of exactly 0."""
    m = x.shape[0]
    xmu = x - x.mean(axis=0)
    inv_std = 1.0 / np.sqrt((xmu**2).mean(axis=0) + 1e-5)
    xhat = xmu * inv_std
    dx = (
        gamma * inv_std * dout
        - (gamma * dout).sum(axis=0) * inv_std / m
        - xhat * inv_std * (gamma * dout * xhat).sum(axis=0) / m
    )
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_no_mean_term(
    dout: Array, x: Array, gamma: Array, beta: Array
) -> tuple[Array, Array, Array]:
    """Bug: the term through the batch mean is dropped."""
    m = x.shape[0]
    xmu = x - x.mean(axis=0)
    inv_std = 1.0 / np.sqrt((xmu**2).mean(axis=0) + 1e-5)
    xhat = xmu * inv_std
    dx = gamma * inv_std * dout - xhat * inv_std * (gamma * dout * xhat).sum(axis=0) / m
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


BATCH_OF_ONE = named_arrays({"x": ("1", "d"), "gamma": ("d",), "beta": ("d",)})


@pytest.mark.parametrize("argnums", [0, (0, 1, 2)])
def test_terms_that_cancel_to_an_exact_zero_widen_the_tolerance(argnums: Any) -> None:
    report = audit_vjp(
        batchnorm_backward,
        batchnorm_reference,
        BATCH_OF_ONE,
        argnums=argnums,
        seed=0,
        max_examples=60,
    )
    assert report.passed, str(report)


def test_cancellation_allowance_still_catches_a_dropped_term_at_batch_size_one() -> None:
    report = audit_vjp(batchnorm_backward_no_mean_term, batchnorm_reference, BATCH_OF_ONE, seed=0)
    assert report.kind == "mismatch", str(report)


# ---------------------------------------------------------------------------------------------
# Item 2: valid subgradients at ties
# ---------------------------------------------------------------------------------------------


def pool_reference(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2 (jnp.max shares a tied window's gradient among its maxima)."""
    m, c, h, w = x.shape
    return jnp.max(x.reshape(m, c, h // 2, 2, w // 2, 2), axis=(3, 5))


def _pool_backward(dout: Array, x: Array, pick: Any) -> Array:
    m, c, h, w = x.shape
    windows = x.reshape(m, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(m, c, h // 2, w // 2, 4)
    chosen = pick(windows)
    dwin = np.zeros_like(windows)
    np.put_along_axis(dwin, chosen[..., None], dout[..., None], axis=-1)
    dx = dwin.reshape(m, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    out: Array = dx.reshape(x.shape)
    return out


def pool_backward_first_max(dout: Array, x: Array) -> Array:
    """Correct subgradient: a tied window's gradient goes to its first maximum."""
    return _pool_backward(dout, x, lambda win: np.argmax(win, axis=-1))


def pool_backward_to_minimum(dout: Array, x: Array) -> Array:
    """Bug: the gradient goes to the window's minimum."""
    return _pool_backward(dout, x, lambda win: np.argmin(win, axis=-1))


POOL = named_arrays({"x": ("m", "c", "4", "4")}, dims={"m": [1, 2], "c": [1, 2]})


@pytest.mark.parametrize("seed", range(4))
def test_first_maximum_of_a_tied_window_is_a_valid_subgradient(seed: int) -> None:
    report = audit_vjp(pool_backward_first_max, pool_reference, POOL, seed=seed)
    assert report.passed, str(report)


def test_gradient_sent_to_the_window_minimum_still_fails() -> None:
    report = audit_vjp(pool_backward_to_minimum, pool_reference, POOL, seed=0)
    assert report.kind == "mismatch", str(report)


def test_with_a_declared_convention_a_subgradient_at_a_tie_is_judged_by_it() -> None:
    # RELU aims elements at 0: whole windows tie.
    report = audit_vjp(pool_backward_first_max, pool_reference, POOL, kinks=RELU, seed=0)
    assert report.kind == "mismatch", str(report)
    assert "at a kink, under the declared convention" in (report.diagnosis or "")


def test_tied_windows_whose_kinks_cancel_along_the_difference_are_not_blamed() -> None:
    """Ties in windows with cotangents of both signs: forward and backward quotients along
    the difference agree (the kinks cancel), the worst element's own coordinate shows its."""
    x = np.zeros((1, 2, 4, 4))
    x[0, 0, 0, 0] = x[0, 1, 2, 0] = x[0, 1, 2, 1] = x[0, 1, 2, 2] = 1.0
    cotangent = np.array([[[[1.798, -0.893], [-2.097, 0.190]], [[0.295, -0.230], [2.296, 2.558]]]])
    report = audit_vjp(pool_backward_first_max, pool_reference, (x,), cotangent=cotangent, seed=0)
    assert report.verdict == "INCONCLUSIVE", str(report)
    assert "valid subgradient" in report.uncertain_notes[0]


def test_one_sided_quotients_that_disagree_bracket_the_valid_slopes() -> None:
    from verification.auditing._oracle import FiniteDifferences
    from verification.auditing._subgradient import inside_kink

    tie = FiniteDifferences(0.0244, 0.0358, 0.0301, 1e-12, 1e-12, 1e-7)
    assert inside_kink(tie, 0.0244, 0.0114)
    assert inside_kink(tie, 0.0358, 0.0114)
    assert not inside_kink(tie, 0.0472, 0.0228)  # beyond the bracket: a wrong slope
    smooth = FiniteDifferences(0.03, 0.03 + 1e-9, 0.03, 1e-12, 1e-12, 1e-7)
    assert not inside_kink(smooth, 0.0301, 1e-4)


# ---------------------------------------------------------------------------------------------
# Item 7: the reproducer reproduces
# ---------------------------------------------------------------------------------------------


def _run_reproducer(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})  # the code printed in str(report)
    return out.getvalue()


def relu_backward_zeroing_dout(dout: Array, z: Array) -> Array:
    """Bug: right values, computed by zeroing the caller's dout in place where z <= 0; and
    relu'(0) = 1 (wrong at the kink)."""
    dout[z < 0] = 0.0
    return dout


def test_reproducer_of_a_mutating_candidate_passes_it_copies() -> None:
    spec = named_arrays({"z": ("m", "n")})
    report = audit_vjp(relu_backward_zeroing_dout, jax.nn.relu, spec, seed=0)
    assert report.kind == "mutated its input", str(report)
    code = report.reproducer()
    assert "copy.deepcopy(args)" in code
    assert "FAILED (mutated its input)" in _run_reproducer(code)


def scaled_tanh_grad(x: Array, w: Array) -> Array:
    """Bug: half the gradient of tanh_layer_loss with respect to w."""
    out: Array = 0.5 * x.T @ (1 - np.tanh(x @ w) ** 2) / x.shape[0]
    return out


def test_reproducer_reaches_the_reports_diagnosis_with_its_names_and_no_seed() -> None:
    spec = named_arrays({"x": "m,n", "w": "n,h"})
    report = audit(scaled_tanh_grad, tanh_layer_loss, spec, argnums=1, seed=3, arg_names=["x", "w"])
    assert report.kind == "mismatch", str(report)
    code = report.reproducer()
    assert "arg_names=['x', 'w']" in code
    printed = _run_reproducer(code)
    assert f"diagnosis: {report.diagnosis}\n" in printed, printed
    assert "seed" not in printed.split("counterexample")[0], printed


def test_concrete_input_audit_prints_no_seed_and_is_the_same_at_every_run() -> None:
    x, w = np.array([[0.5, -1.0]]), np.array([[2.0], [0.25]])
    first = audit(scaled_tanh_grad, tanh_layer_loss, (x, w), argnums=1)
    second = audit(scaled_tanh_grad, tanh_layer_loss, (x, w), argnums=1)
    assert "seed" not in str(first).split("counterexample")[0]
    assert first.diagnosis == second.diagnosis


def test_user_defined_kinks_is_printed_as_an_importable_name() -> None:
    report = audit_vjp(
        leaky_backward_wrong_at_zero,
        jax.nn.leaky_relu,
        named_arrays({"z": ("m", "n")}),
        kinks=LEAKY_AT_ZERO,
        seed=0,
    )
    assert report.kind == "mismatch", str(report)
    code = report.reproducer()
    assert f"from {__name__} import LEAKY_AT_ZERO as kinks" in code, code
    assert "paste it here" not in code.split("grad_fn")[-1]


def test_user_defined_kinks_without_a_name_is_built_again_from_its_aim() -> None:
    own = Kinks("leaky_relu'(0) = 1 (declared in a function)", RELU.aim)
    report = audit_vjp(
        leaky_backward_wrong_at_zero,
        jax.nn.leaky_relu,
        named_arrays({"z": ("m", "n")}),
        kinks=own,
        seed=0,
    )
    code = report.reproducer()
    assert "paste it here" not in code.split("grad_fn")[-1], code
    printed = _run_reproducer(code)
    assert "under the declared convention leaky_relu'(0) = 1 (declared" in printed, printed


def _penalised_logreg_loss(x: Any, w: Any, b: Any, y: Any, lam: Any) -> Any:
    return reference.sigmoid_binary_cross_entropy(x @ w + b, y) + lam * jnp.sum(w**2)


def _penalised_logreg_no_mean(x: Any, w: Any, b: Any, y: Any, lam: float) -> Any:
    p = 1 / (1 + np.exp(-(x @ w + b)))
    dz = p - y  # the 1/m is missing: right at m = 1, and the same sum for rows that repeat
    return x.T @ dz + 2 * lam * w, dz.sum()


def test_a_pure_candidate_that_repeats_an_earlier_result_by_coincidence_is_not_a_memo() -> None:
    """Shrunk inputs are simple: a sum over one row (right at m = 1) and over two rows that
    add to the same gives the same result at two different inputs. A memo returns its stale
    result at a new input too; a pure function does not, so no memo is named."""
    spec = {"x": ("m", "n"), "w": ("n",), "b": (), "y": "m:(0,1)", "lam": 0.1}
    problems = named_arrays(spec, dims={"m": [1, 2, 5], "n": [1, 3, 4]}, bounds=(2.0,))
    report = audit(
        _penalised_logreg_no_mean,
        _penalised_logreg_loss,
        problems,
        argnums=(1, 2),
        max_examples=40,
        seed=0,
        locate=False,
    )
    assert report.kind == "mismatch", str(report)
    assert "memoised" not in (report.diagnosis or ""), report.diagnosis
    assert "1/m is missing" in (report.diagnosis or ""), report.diagnosis
