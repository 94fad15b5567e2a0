"""Bugs at the kink, with a declared convention: relu'(0) = 1 instead of jax.nn.relu's 0.

Without a declaration the audit cannot blame a disagreement at a kink (finite differences side
with neither answer) and counts it as oracle-uncertain; with ``kinks=`` the strategy aims
inputs exactly at the kinks and the disagreement there is a failure "at a kink, under the
declared convention". A correct candidate passes both ways.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import jax.numpy as jnp
import numpy as np
from hypothesis import find, settings

import manual_bp as mb
from verification import audit, audit_vjp, reference, strategies
from verification.auditing import MAX_TIES, MLP_RELU, RELU, Kinks, named_arrays
from verification.auditing._kinks import aimed, at_kink
from verification.auditing._oracle import FiniteDifferences

Array = np.ndarray[Any, Any]
EXAMPLES = min(settings().max_examples, 60)


def relu_backward(da: Array, z: Array) -> Array:
    """Correct: relu'(0) = 0."""
    out: Array = da * (z > 0)
    return out


def relu_backward_one_at_zero(da: Array, z: Array) -> Array:
    """Bug at the kink only: relu'(0) = 1."""
    out: Array = da * (z >= 0)
    return out


def mlp_grads_one_at_zero(params: mb.MLPParams, x: Array, y: Array) -> mb.MLPParams:
    """The network's gradient with relu'(0) = 1 (the mask 1[Z1 >= 0])."""
    W1, b1, W2, b2 = params
    z1 = x @ W1 + b1
    a1 = np.maximum(z1, 0.0)
    e = np.exp(a1 @ W2 + b2 - (a1 @ W2 + b2).max(axis=1, keepdims=True))
    dz2 = (e / e.sum(axis=1, keepdims=True) - y) / x.shape[0]
    dz1 = (dz2 @ W2.T) * (z1 >= 0)
    return mb.MLPParams(x.T @ dz1, dz1.sum(axis=0), a1.T @ dz2, dz2.sum(axis=0))


def mlp_grads_manual(params: mb.MLPParams, x: Array, y: Array) -> mb.MLPParams:
    return mb.mlp_loss_and_grads(params, x, y)[1]


Z = named_arrays({"z": ("m", "h")}, bounds=(3.0,))


def _relu_audit(backward: Any, kinks: Kinks | None) -> Any:
    return audit_vjp(
        backward, reference.relu, Z, kinks=kinks, seed=0, max_examples=EXAMPLES, arg_names=["z"]
    )


def test_relu_one_at_zero_fails_at_a_kink_under_the_declared_convention() -> None:
    report = _relu_audit(relu_backward_one_at_zero, RELU)
    assert not report.passed, str(report)
    assert report.kind == "mismatch"
    assert report.diagnosis is not None
    assert report.diagnosis.startswith(
        "at a kink, under the declared convention relu'(0) = 0, as jax.nn.relu"
    ), report.diagnosis
    z = report.counterexample[0]
    assert np.any(z == 0.0)  # the input sits exactly on the kink
    assert report.counterexample_size[0] <= 4, str(report)


def test_relu_one_at_zero_is_only_uncertain_without_the_declaration() -> None:
    report = _relu_audit(relu_backward_one_at_zero, None)
    assert report.passed, str(report)
    assert report.uncertain > 0  # hypothesis draws exact zeros; they cannot be blamed
    # and on an input exactly at the kink, alone:
    z, cot = np.array([[0.0, 1.0]]), np.array([[0.5, -2.0]])
    alone = audit_vjp(relu_backward_one_at_zero, reference.relu, (z,), cotangent=cot)
    assert alone.verdict == "INCONCLUSIVE"  # neither passed nor failed: nothing else checked
    assert alone.uncertain == 1


def test_correct_relu_passes_with_and_without_the_declaration() -> None:
    for kinks in (None, RELU):
        report = _relu_audit(relu_backward, kinks)
        assert report.passed, str(report)
        assert report.uncertain == 0


def test_network_with_relu_one_at_zero_fails_at_hidden_units_aimed_at_the_kink() -> None:
    report = audit(
        mlp_grads_one_at_zero,
        reference.mlp_loss,
        strategies.mlp_problems(),
        kinks=MLP_RELU,
        seed=0,
        max_examples=EXAMPLES,
    )
    assert not report.passed, str(report)
    assert "at a kink, under the declared convention relu'(0) = 0" in (report.diagnosis or "")
    params = report.counterexample[0]
    assert np.any(np.all(params.W1 == 0, axis=0) & (params.b1 == 0))  # a unit with Z1 = 0


def test_network_relu_one_at_zero_at_the_kink_is_uncertain_without_declaration() -> None:
    params = mb.MLPParams(np.zeros((1, 1)), np.zeros(1), np.array([[1.0, -1.0]]), np.zeros(2))
    problem = (params, np.array([[1.5]]), np.array([[1.0, 0.0]]))
    undeclared = audit(mlp_grads_one_at_zero, reference.mlp_loss, problem)
    assert undeclared.verdict == "INCONCLUSIVE"
    assert undeclared.uncertain == 1
    declared = audit(mlp_grads_one_at_zero, reference.mlp_loss, problem, kinks=MLP_RELU)
    assert not declared.passed
    assert declared.location == "W1[0, 0]"  # x = 1.5 times the wrong dZ1, the worst element


def test_manual_bp_network_passes_with_the_declaration() -> None:
    report = audit(
        mlp_grads_manual,
        reference.mlp_loss,
        strategies.mlp_problems(),
        kinks=MLP_RELU,
        seed=0,
        max_examples=EXAMPLES,
    )
    assert report.passed, str(report)
    assert report.uncertain == 0


def _max_first(x: Any) -> Any:
    """The row maximum with a tie going to the first index (jnp.argmax's convention)."""
    i = jnp.argmax(x, axis=-1)
    return jnp.take_along_axis(x, i[..., None], axis=-1)[..., 0]


def max_backward_first(dout: Array, x: Array) -> Array:
    """Correct under the first-index convention."""
    out = np.zeros_like(x)
    np.put_along_axis(out, np.argmax(x, axis=-1)[..., None], dout[..., None], axis=-1)
    return out


def max_backward_last(dout: Array, x: Array) -> Array:
    """Bug at ties only: the tie goes to the last index."""
    flipped = np.argmax(x[..., ::-1], axis=-1)
    out = np.zeros_like(x)
    np.put_along_axis(out, (x.shape[-1] - 1 - flipped)[..., None], dout[..., None], axis=-1)
    return out


def test_max_tie_to_the_last_index_fails_under_the_first_index_convention() -> None:
    shapes = named_arrays({"x": ("m", "k")}, bounds=(3.0,))
    kwargs: dict[str, Any] = {"seed": 0, "max_examples": EXAMPLES, "arg_names": ["x"]}
    assert audit_vjp(max_backward_first, _max_first, shapes, kinks=MAX_TIES, **kwargs).passed
    report = audit_vjp(max_backward_last, _max_first, shapes, kinks=MAX_TIES, **kwargs)
    assert not report.passed, str(report)
    assert "at a kink, under the declared convention a tie of maxima" in (report.diagnosis or "")
    x = report.counterexample[0]
    assert any(np.sum(row == row.max()) > 1 for row in x)  # a tied maximum


def test_aiming_puts_exact_kinks_into_the_examples() -> None:
    zeros = find(aimed(Z, RELU, (0,)), lambda a: bool(np.any(a[0] == 0.0) and a[0].size > 1))
    assert np.any(zeros[0] == 0.0)
    ties = find(
        aimed(Z, MAX_TIES, (0,)),
        lambda a: a[0].shape[-1] > 1 and a[0][0, 0] == a[0][0].max() == a[0][0, 1],
    )
    assert ties[0][0, 0] == ties[0][0, 1]
    units = find(
        aimed(strategies.mlp_problems(), MLP_RELU, (0,)), lambda a: bool(np.any(a[0].b1 == 0))
    )
    z1 = units[1] @ units[0].W1 + units[0].b1
    assert np.any(np.all(z1 == 0.0, axis=0))


def test_at_kink_needs_reliable_one_sided_slopes_that_leave_the_reference() -> None:
    kink = FiniteDifferences(
        forward=1.0, backward=0.0, central=0.5, truncation=0.0, rounding=1e-12, step=1e-6
    )
    assert at_kink(kink, reference=0.0, resolution=1.0)
    smooth = FiniteDifferences(0.0, 0.0, 0.0, 0.0, 1e-12, 1e-6)
    assert not at_kink(smooth, reference=0.0, resolution=1.0)
    noisy = FiniteDifferences(1.0, 0.0, 0.5, 0.5, 1e-12, 1e-6)  # truncation too large to tell
    assert not at_kink(noisy, reference=0.0, resolution=1.0)


def test_the_reproducer_declares_the_same_convention() -> None:
    problem = (
        mb.MLPParams(np.zeros((1, 1)), np.zeros(1), np.array([[1.0, -1.0]]), np.zeros(2)),
        np.array([[1.5]]),
        np.array([[1.0, 0.0]]),
    )
    report = audit(mlp_grads_one_at_zero, reference.mlp_loss, problem, kinks=MLP_RELU)
    code = report.reproducer()
    assert "from verification.auditing import MLP_RELU" in code
    assert "kinks=MLP_RELU))" in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})  # the code printed in str(report)
    assert "FAILED (mismatch)" in out.getvalue()
    assert "at a kink, under the declared convention" in out.getvalue()
    vjp = _relu_audit(relu_backward_one_at_zero, RELU)
    assert "kinks=RELU))" in vjp.reproducer()
    own = Kinks("my convention", RELU.aim)
    mine = audit_vjp(relu_backward_one_at_zero, reference.relu, Z, kinks=own, seed=0)
    code = mine.reproducer()  # built again from its importable aim, never a placeholder
    assert "kinks = Kinks('my convention', aim)" in code
    assert "from verification.auditing._kinks import _zeros as aim" in code
    assert "under the declared convention my convention" in (mine.diagnosis or "")


def test_the_curvature_of_a_smooth_loss_is_told_from_a_kink() -> None:
    from verification.auditing._finite_differences import quotients

    h = 1e-5
    for f, kink in ((lambda t: 3 * t**2, False), (abs, True)):
        fd = quotients(f(0.0), np.array([f(h), f(2 * h)]), np.array([f(-h), f(-2 * h)]), h, 2 * h)
        assert abs(fd.forward - fd.backward) > 0  # both one-sided quotients differ
        assert (fd.curvature < abs(fd.forward - fd.backward) / 2) is kink


def _half_square(w: Any) -> Any:
    return 1.5 * jnp.sum(w**2)


def _half_square_off(w: Any) -> Any:
    return 3 * np.asarray(w) + 1.0  # wrong everywhere, by 1


def test_a_smooth_point_where_the_slope_is_zero_is_not_called_a_kink() -> None:
    report = audit(_half_square_off, _half_square, (np.zeros(3),), argnums=0)
    assert not report.passed
    assert report.finite_difference_note is not None
    assert "central" in report.finite_difference_note
    assert "kink" not in report.finite_difference_note, report.finite_difference_note
