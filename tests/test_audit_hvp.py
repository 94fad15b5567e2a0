"""``audit_hvp``: Hessian-vector products of the network against the Hessian of the JAX loss.

The zoo (tests/hvp_zoo.py) holds the classic second-order mistakes as candidates; each must
fail with a small counterexample and the words of its evidence (symmetric or not, negative
curvature missing), and every correct or equivalent product must pass on 10 seeds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import settings

import manual_bp
from verification import audit_hvp, reference, strategies as vs
from verification.auditing import MLP_RELU, AuditSpecError, named_arrays
from verification.auditing._hvp import draw_direction


def _load_zoo() -> ModuleType:
    """tests/hvp_zoo.py as the module ``hvp_zoo`` (the tests directory is not a package)."""
    if "hvp_zoo" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "hvp_zoo", Path(__file__).with_name("hvp_zoo.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["hvp_zoo"] = module
        spec.loader.exec_module(module)
    return sys.modules["hvp_zoo"]


zoo = _load_zoo()
EXAMPLES = min(settings().max_examples, 60)
SMALL = 40
"""A counterexample of at most this many elements (params, x, y and v together) is small."""


@pytest.mark.parametrize("bug", zoo.BUGS, ids=lambda b: b.name)
def test_each_wrong_hvp_fails_with_a_small_counterexample_and_its_evidence(bug: Any) -> None:
    report = audit_hvp(bug.hvp, reference.mlp_loss, zoo.mlp_problems(), seed=0, max_examples=100)
    assert not report.passed
    assert report.kind == "mismatch"
    assert report.counterexample_size[0] <= SMALL, str(report)
    for words in bug.words:
        assert words in (report.diagnosis or ""), str(report)


@pytest.mark.parametrize("name", [c[0] for c in zoo.CORRECT])
def test_correct_and_equivalent_hvps_pass_on_ten_seeds(name: str) -> None:
    _, hvp, dtype = next(c for c in zoo.CORRECT if c[0] == name)
    if "torch" in name:
        pytest.importorskip("torch")
    for seed in range(10):
        report = audit_hvp(hvp, reference.mlp_loss, zoo.mlp_problems(dtype), seed=seed,
                           max_examples=min(EXAMPLES, 20))  # fmt: skip
        assert report.passed, str(report)


def test_operator_words_follow_the_measured_operator_not_the_bug_name() -> None:
    """The words come from measurements: only the transposed term breaks the symmetry, and
    only the Gauss-Newton product (positive semidefinite where H is not) is called one."""
    for bug in zoo.BUGS:
        report = audit_hvp(
            bug.hvp, reference.mlp_loss, zoo.mlp_problems(), seed=0, max_examples=100
        )
        words = report.diagnosis or ""
        assert ("not symmetric" in words) == (bug.hvp is zoo.hvp_transposed_term), bug.name
        assert ("Gauss-Newton" in words) == (bug.hvp is zoo.hvp_gauss_newton), bug.name


def test_manual_logreg_hvp_passes_and_a_missing_curvature_factor_fails() -> None:
    problems = vs.logreg_problems()
    assert audit_hvp(manual_bp.logreg_hvp, reference.logreg_loss, problems, seed=0,
                     max_examples=EXAMPLES).passed  # fmt: skip

    def no_sigmoid_derivative(params: Any, x: Any, y: Any, v: Any) -> Any:
        r = (x @ v.w + v.b) / x.shape[0]  # sigma'(z) dropped: the Hessian of a linear loss
        return manual_bp.LogRegParams(x.T @ r, np.asarray(r.sum()))

    report = audit_hvp(no_sigmoid_derivative, reference.logreg_loss, problems, seed=0)
    assert report.kind == "mismatch"


def test_the_direction_is_drawn_normal_never_ones() -> None:
    args = (np.zeros((3, 2)), np.zeros(4))
    v = draw_direction(args, (0,), seed=1)
    assert v.shape == (3, 2)
    assert v.dtype == np.float64
    assert not np.allclose(v, v.flat[0])  # not constant, so not ones
    assert not np.array_equal(v, draw_direction(args, (0,), seed=2))
    both = draw_direction((np.zeros(2, np.float32), np.zeros(3)), (0, 1), seed=0)
    assert [b.dtype for b in both] == [np.float32, np.float64]


def test_the_direction_is_named_v_after_the_names_given_to_the_arguments() -> None:
    def loss(w: Any, x: Any) -> Any:
        return jnp.sum(jnp.tanh(x @ w) ** 2) / x.shape[0]

    def hvp_without_mean(w: Any, x: Any, v: Any) -> Any:
        t = np.tanh(x @ w)
        return x.T @ ((2 * (1 - t**2) ** 2 - 4 * t**2 * (1 - t**2)) * (x @ v))  # BUG: no 1/m

    shapes = named_arrays({"w": ("n",), "x": ("m", "n")}, bounds=(2.0,))
    report = audit_hvp(
        hvp_without_mean, loss, shapes, seed=0, max_examples=20, arg_names=["weights", "inputs"]
    )
    assert not report.passed
    assert report.arg_names == ["weights", "inputs", "v"]


def test_a_wrong_hvp_for_a_tuple_of_arguments() -> None:
    """argnums=(0, 1): v is a tuple, and the cross terms between the two are checked."""

    def loss(w: Any, b: Any, x: Any) -> Any:
        return jnp.sum(jnp.tanh(x @ w + b) ** 2) / x.shape[0]

    def hvp(w: Any, b: Any, x: Any, v: Any, *, cross: bool = True) -> Any:
        t = np.tanh(x @ w + b)
        d2 = 2 * (1 - t**2) ** 2 - 4 * t**2 * (1 - t**2)  # f''(z) for f = tanh^2
        r = d2 * (x @ v[0] + v[1]) / x.shape[0]  # R{dJ/dz} = f''(z) R{z} / m
        r_w = d2 * (x @ v[0] + (v[1] if cross else 0.0)) / x.shape[0]  # BUG: b's share lost
        return x.T @ r_w, np.asarray(np.sum(r))

    shapes = named_arrays({"w": ("n",), "b": (), "x": ("m", "n")}, bounds=(2.0,))
    assert audit_hvp(hvp, loss, shapes, argnums=(0, 1), seed=0, max_examples=EXAMPLES).passed
    broken = audit_hvp(lambda w, b, x, v: hvp(w, b, x, v, cross=False), loss, shapes,
                       argnums=(0, 1), seed=0)  # fmt: skip
    assert broken.kind == "mismatch"
    assert "not symmetric" in (broken.diagnosis or "")


def test_relu_mask_at_zero_fails_only_where_the_kink_convention_is_declared() -> None:
    """A mask 1[Z1 >= 0] differs from relu'(0) = 0 only at exact kinks, where the gradient jumps
    and finite differences cannot confirm the reference: without a declaration those examples
    are oracle-uncertain; with ``MLP_RELU`` inputs are aimed there and it fails."""

    def hvp_mask_at_zero(params: Any, x: Any, y: Any, v: Any) -> Any:
        z1 = x @ params.W1 + params.b1
        shifted = params._replace(b1=params.b1 + np.where(z1 == 0, 1e-300, 0.0).max(axis=0))
        return zoo.hvp(shifted, x, y, v)  # units at the kink treated as active

    undeclared = audit_hvp(hvp_mask_at_zero, reference.mlp_loss, zoo.mlp_problems(), seed=0,
                           max_examples=EXAMPLES)  # fmt: skip
    assert undeclared.passed, str(undeclared)
    declared = audit_hvp(hvp_mask_at_zero, reference.mlp_loss, zoo.mlp_problems(), seed=0,
                         kinks=MLP_RELU, max_examples=EXAMPLES)  # fmt: skip
    assert declared.kind == "mismatch", str(declared)
    assert "at a kink, under the declared convention" in (declared.diagnosis or "")
    correct = audit_hvp(zoo.hvp, reference.mlp_loss, zoo.mlp_problems(), seed=0,
                        kinks=MLP_RELU, max_examples=EXAMPLES)  # fmt: skip
    assert correct.passed, str(correct)


def test_reproducer_reruns_the_hvp_failure() -> None:
    report = audit_hvp(zoo.hvp_gauss_newton, reference.mlp_loss, zoo.mlp_problems(), seed=0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(report.reproducer(), {})  # the code printed in str(report)
    assert "FAILED (mismatch)" in out.getvalue()
    assert "hvp audit of" in out.getvalue()
    assert "Gauss-Newton" in out.getvalue()


def test_bad_arguments_are_refused_before_any_example() -> None:
    shapes = named_arrays({"w": ("n",)})
    with pytest.raises(AuditSpecError, match="loss_fn must be a JAX function"):
        audit_hvp(zoo.hvp, None, shapes)  # type: ignore[arg-type]
    with pytest.raises(AuditSpecError, match="hvp_fn must be callable"):
        audit_hvp(None, reference.mlp_loss, shapes)  # type: ignore[arg-type]
    with pytest.raises(AuditSpecError, match="direction can be given only with a concrete"):
        audit_hvp(zoo.hvp, reference.mlp_loss, shapes, direction=np.ones(1))
    with pytest.raises(AuditSpecError, match="argnums 3 is out of range"):
        audit_hvp(zoo.hvp, reference.mlp_loss, (np.ones(1),), argnums=3)
    with pytest.raises(AuditSpecError, match="max_examples must be an int >= 1"):
        audit_hvp(zoo.hvp, reference.mlp_loss, shapes, max_examples=0)
    with pytest.raises(AuditSpecError, match="rtol must be finite and >= 0"):
        audit_hvp(zoo.hvp, reference.mlp_loss, shapes, rtol=-1.0)
    with pytest.raises(AuditSpecError, match="args must be a hypothesis strategy or a tuple"):
        audit_hvp(zoo.hvp, reference.mlp_loss, [np.ones(1)])  # type: ignore[arg-type]


def test_the_operator_words_on_drawn_directions_are_the_same_for_the_same_seed() -> None:
    # Above MAX_COLUMNS elements the words are measured on v and drawn directions: the numbers
    # they quote must come from the audit's seed, or a report cannot be reproduced.
    from verification.auditing._hvp import MAX_COLUMNS, operator_words

    n = MAX_COLUMNS + 44
    rng = np.random.default_rng(5)
    s = rng.normal(size=(n, n))
    sym = (s + s.T) / 2
    skew = rng.normal(size=(n, n))

    def loss(w: Any) -> Any:
        return 0.5 * w @ (jnp.asarray(sym) @ w)

    def hvp(w: Any, v: Any) -> Any:  # a term applied on one side only: not symmetric
        return (sym + 0.1 * skew) @ np.asarray(v)

    w, v = rng.normal(size=n), rng.normal(size=n)
    first = operator_words(hvp, loss, (w,), v, (0,), seed=11)
    assert first is not None
    assert "not symmetric" in first
    assert operator_words(hvp, loss, (w,), v, (0,), seed=11) == first
    assert operator_words(hvp, loss, (w,), v, (0,), seed=12) != first
