"""Inputs that real layers need (issue 21, item 9): class indices with an ignore value, ties
inside 2-D pooling windows, kinks at points other than 0, and declarations from the command
line (``--kinks`` at values, pooling ties or MODULE:NAME; ``--stages`` on ``audit``)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings

from verification.auditing import audit, audit_vjp, kinks_at, named_arrays, pool_ties
from verification.auditing._grammar import parse_kinds
from verification.auditing._kinks import aimed, source
from verification.cli.audit import main as audit_main
from verification.cli.audit_vjp import main as vjp_main

Array = Any


# -- class indices with an ignore value ---------------------------------------------------------


def ignore_loss(z: Array, y: Array) -> Array:
    """Mean cross-entropy over the labels that are not -1 (as torch's ignore_index)."""
    keep = y != -1
    picked = jnp.take_along_axis(jax.nn.log_softmax(z), jnp.where(keep, y, 0)[:, None], axis=1)
    return -jnp.sum(jnp.where(keep, picked[:, 0], 0.0)) / jnp.maximum(jnp.sum(keep), 1)


def _softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ignore_grad(z: Array, y: Array) -> Array:
    keep = y != -1
    onehot = np.eye(z.shape[1])[np.where(keep, y, 0)]
    return (_softmax(z) - onehot) * keep[:, None] / max(int(keep.sum()), 1)


def ignore_grad_wraps(z: Array, y: Array) -> Array:
    """Bug: y = -1 indexes the last class (numpy wraps negative indices) instead of skipping."""
    return (_softmax(z) - np.eye(z.shape[1])[y]) / z.shape[0]


def test_classes_with_ignore_draws_real_labels_and_the_ignore_value() -> None:
    strategy = named_arrays({"z": "m,k", "y": "m:classes(k):ignore(-1)"}, dims={"m": [6]})
    _, y = find(strategy, lambda a: bool(np.any(a[1] == -1) and np.any(a[1] >= 0)))
    k_seen = find(strategy, lambda a: bool(np.all((a[1] == -1) | (a[1] < a[0].shape[1]))))
    assert y.dtype == np.int64
    assert set(np.unique(y)) <= {-1, *range(4)}
    assert k_seen is not None


def test_the_bar_spelling_of_ignore_is_the_same_kind() -> None:
    assert parse_kinds(["classes(k)|ignore(-1)"]) == parse_kinds(["classes(k)", "ignore(-1)"])
    with pytest.raises(ValueError, match="goes with classes"):
        parse_kinds(["real", "ignore(-1)"])


def test_a_loss_with_ignored_labels_is_audited_and_the_wrapping_bug_found() -> None:
    shapes = named_arrays({"z": "m,k", "y": "m:classes(k):ignore(-1)"})
    assert audit(ignore_grad, ignore_loss, shapes, max_examples=40, seed=0).passed
    report = audit(ignore_grad_wraps, ignore_loss, shapes, max_examples=100, seed=0)
    assert not report.passed
    assert -1 in report.counterexample[1], report.counterexample


# -- kinks at points other than 0 ---------------------------------------------------------------


def clip_forward(x: Array) -> Array:
    return jnp.clip(x, -1.0, 1.0)  # JAX: clip'(+-1) = 0.5 (a tie of max and min)


def clip_backward_inclusive(dout: Array, x: Array) -> Array:
    """Convention clip'(+-1) = 1 (the mask |x| <= 1), not the reference's 0.5."""
    return dout * (np.abs(x) <= 1)


def clip_backward_halves(dout: Array, x: Array) -> Array:
    return dout * np.where(np.abs(x) == 1, 0.5, np.abs(x) < 1)


def test_kinks_at_plus_minus_one_aim_exactly_at_them() -> None:
    strategy = aimed(named_arrays({"x": "m,n"}, dims={"m": [3], "n": [4]}), kinks_at([-1, 1]), [0])
    (x,) = find(strategy, lambda a: bool(np.any(a[0] == 1.0) and np.any(a[0] == -1.0)))
    assert x.shape == (3, 4)


def test_a_clip_convention_at_one_fails_only_when_declared() -> None:
    shapes = named_arrays({"x": "m,n"})
    declared = audit_vjp(
        clip_backward_inclusive, clip_forward, shapes, kinks=kinks_at([-1, 1]), seed=0
    )
    assert not declared.passed
    assert np.any(np.abs(declared.counterexample[0]) == 1), declared.counterexample
    undeclared = audit_vjp(clip_backward_inclusive, clip_forward, shapes, seed=0)
    assert undeclared.passed or undeclared.inconclusive, str(undeclared)
    right = audit_vjp(clip_backward_halves, clip_forward, shapes, kinks=kinks_at([-1, 1]), seed=0)
    assert right.passed, str(right)


def test_kinks_at_values_rebuild_in_the_reproducer() -> None:
    line, name = source(kinks_at([-1, 1]))
    namespace: dict[str, Any] = {}
    exec(line, namespace)
    assert namespace[name].convention == kinks_at([-1, 1]).convention


def test_kinks_at_rejects_no_points() -> None:
    with pytest.raises(ValueError, match="finite points"):
        kinks_at([])


# -- ties inside 2-D pooling windows --------------------------------------------------------------


def maxpool_forward(x: Array) -> Array:
    """2x2 max pooling of (m, H, W) with H, W even (JAX splits a tie's gradient equally)."""
    m, h, w = x.shape
    return x.reshape(m, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def _windows(x: Array) -> Array:
    m, h, w = x.shape
    return x.reshape(m, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 2, 4).reshape(m, h // 2, w // 2, 4)


def _unwindows(g: Array, shape: tuple[int, ...]) -> Array:
    m, h, w = shape
    return g.reshape(m, h // 2, w // 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(shape)


def maxpool_backward_first(dout: Array, x: Array) -> Array:
    """The whole gradient of a window to its first maximum (argmax), as most numpy code does."""
    win = _windows(x)
    first = np.eye(4)[win.argmax(axis=-1)]
    return _unwindows(first * dout[..., None], x.shape)


def maxpool_backward_split(dout: Array, x: Array) -> Array:
    win = _windows(x)
    ties = (win == win.max(axis=-1, keepdims=True)).astype(float)
    return _unwindows(ties / ties.sum(axis=-1, keepdims=True) * dout[..., None], x.shape)


POOL = {"x": "m,2*a,2*b"}


def test_pool_ties_aim_puts_ties_across_rows_of_a_window() -> None:
    strategy = aimed(
        named_arrays(POOL, dims={"m": [1], "a": [2], "b": [2]}), pool_ties((2, 2)), [0]
    )

    def vertical_tie(args: tuple[Any, ...]) -> bool:
        win = _windows(args[0])
        top = win.max(axis=-1)
        # a window whose maximum is in both rows (positions 0-1 are row 0, 2-3 row 1)
        return bool(np.any((win[..., :2].max(-1) == top) & (win[..., 2:].max(-1) == top)))

    assert find(strategy, vertical_tie) is not None


@settings(max_examples=30, database=None, suppress_health_check=list(HealthCheck))
@given(aimed(named_arrays(POOL), pool_ties((2, 2)), [0]))
def test_pool_ties_keep_the_shape_and_dtype(args: tuple[Any, ...]) -> None:
    (x,) = args
    assert x.dtype == np.float64
    assert x.shape[1] % 2 == 0
    assert x.shape[2] % 2 == 0


def test_a_pooling_tie_convention_fails_only_when_declared() -> None:
    shapes = named_arrays(POOL)
    declared = audit_vjp(maxpool_backward_first, maxpool_forward, shapes, kinks=pool_ties((2, 2)))
    assert not declared.passed
    assert "pooling window" in (declared.diagnosis or ""), declared.diagnosis
    right = audit_vjp(maxpool_backward_split, maxpool_forward, shapes, kinks=pool_ties((2, 2)))
    assert right.passed, str(right)


def test_pool_ties_reject_a_bad_window() -> None:
    with pytest.raises(ValueError, match="window"):
        pool_ties((0, 2))


# -- the command line ------------------------------------------------------------------------------

MODULE = textwrap.dedent(
    """
    import jax.numpy as jnp
    import numpy as np

    from verification.auditing import Stage, kinks_at

    CLIP = kinks_at([-1, 1], "clip'(+-1) = 1/2, as jnp.clip")
    NOT_KINKS = 3


    def clip_forward(x):
        return jnp.clip(x, -1.0, 1.0)


    def clip_backward_inclusive(dout, x):
        return dout * (np.abs(x) <= 1)


    def loss(x, w):
        return jnp.sum(jnp.tanh(x @ w))


    def grad_w_transposed_chain(x, w):
        dz = 1 - np.tanh(x @ w) ** 2
        return 2 * x.T @ dz


    def intermediates(x, w):
        return {"dZ": 1 - np.tanh(x @ w) ** 2}


    STAGES = {
        "dZ": Stage(
            value=lambda x, w: x @ w,
            rest=lambda z, x, w: jnp.sum(jnp.tanh(z)),
            step="tanh', dZ = 1 - tanh(Z)^2",
            feeds={"w": "dW = X^T dZ"},
        )
    }
    """
)


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "layer_decls.py"
    path.write_text(MODULE)
    return path


def test_kinks_from_the_command_line_at_values_and_by_module_name(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"{module}:clip_backward_inclusive", "--reference", f"{module}:clip_forward"]
    argv += ["--shapes", "x=m,n", "--seed", "0", "--max-examples", "100"]
    assert vjp_main([*argv, "--kinks", "at=-1,1"]) == 1
    assert "kinks = kinks_at([-1.0, 1.0])" in capsys.readouterr().out  # the reproducer's
    assert vjp_main([*argv, "--kinks", f"{module}:CLIP"]) == 1
    assert "from layer_decls import CLIP as kinks" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kinks", "words"),
    [
        ("tanh", "expected one of"),
        ("{m}:NOT_KINKS", "not a verification.auditing.Kinks"),
        ("pool-ties=2xq", "--kinks"),
        ("at=", "expected one of"),
    ],
)
def test_a_bad_kinks_option_is_one_line_exit_2(
    module: Path, kinks: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"{module}:clip_backward_inclusive", "--reference", f"{module}:clip_forward"]
    argv += ["--shapes", "x=m,n", "--kinks", kinks.replace("{m}", str(module))]
    assert vjp_main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1, err


def test_stages_on_the_audit_command_name_the_step_after_the_last_right_gradient(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"{module}:grad_w_transposed_chain", "--loss", f"{module}:loss"]
    argv += ["--shapes", "x=m,n w=n,h", "--argnums", "1", "--seed", "0"]
    stages = ["--stages", f"{module}:STAGES", "--intermediates", f"{module}:intermediates"]
    assert audit_main([*argv, *stages]) == 1
    out = capsys.readouterr().out
    assert "stage:" in out
    assert "dW = X^T dZ" in out
    assert audit_main([*argv, "--stages", f"{module}:STAGES"]) == 2
    assert "go together" in capsys.readouterr().err
