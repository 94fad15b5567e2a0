"""The audit in float16 and bfloat16: errors judged against a reference in the same precision.

Candidates are the seed network's gradient written as low-precision kernels
(``lowprec_kernels``): correct ones must pass over many drawn examples (logits up to 1e3 in
bfloat16, up to the float16 range in float16), each classic bug must fail, a factor-2 error
must fail where today's float rule (rtol above 1 in float16) let it through, and a kernel that
accumulates its batch sums in bfloat16 must fail at a batch size where that matters.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import find

from manual_bp import MLPParams, init_mlp
from verification import audit, reference
from verification.auditing import named_arrays
from verification.auditing._lowprec import (
    FACTOR,
    default_bounds,
    is_float,
    low_precision_dtype,
    reference_errors,
    tolerances,
)
from verification.auditing._tolerance import leaf_tolerances
from verification.cli.audit import main as cli_main


def _test_module(name: str) -> Any:
    """tests/<name>.py as a module (the tests directory is not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


kernels = _test_module("lowprec_kernels")
mlp_problems = _test_module("bug_zoo").mlp_problems
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
LOW = [pytest.param(F16, id="float16"), pytest.param(BF16, id="bfloat16")]


def _problems(dtype: np.dtype[Any]) -> Any:
    return mlp_problems(dtype, bounds=default_bounds(dtype) or (3.0, 1000.0))


def _network(
    dtype: Any, m: int, n: int, h: int, k: int, seed: int = 0
) -> tuple[MLPParams, Any, Any]:
    rng = np.random.default_rng(seed)
    params = init_mlp(rng, n, h, k)
    params = params._replace(b1=rng.uniform(-0.1, 0.1, h), b2=rng.uniform(-0.1, 0.1, k))
    x = rng.standard_normal((m, n))
    y = np.eye(k)[rng.integers(0, k, m)]
    return MLPParams(*(p.astype(dtype) for p in params)), x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", LOW)
def test_correct_numpy_kernel_passes_in_low_precision(dtype: np.dtype[Any]) -> None:
    report = audit(
        kernels.mlp_grads_lowp, reference.mlp_loss, _problems(dtype), max_examples=100, seed=3
    )
    assert report.passed, str(report)
    assert report.examples >= 100
    assert report.low_precision[0].startswith(f"low precision ({dtype.name})")


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("kernel", ["mlp_grads_torch", "mlp_grads_torch_autograd"])
def test_correct_torch_kernels_pass_in_low_precision(dtype: np.dtype[Any], kernel: str) -> None:
    pytest.importorskip("torch")
    report = audit(
        getattr(kernels, kernel), reference.mlp_loss, _problems(dtype), max_examples=30, seed=4
    )
    assert report.passed, str(report)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("kernel", ["mlp_grads_lowp", "mlp_grads_torch_autograd"])
def test_correct_kernels_pass_hundreds_of_examples(dtype: np.dtype[Any], kernel: str) -> None:
    if kernel != "mlp_grads_lowp":
        pytest.importorskip("torch")
    report = audit(getattr(kernels, kernel), reference.mlp_loss, _problems(dtype), seed=10)
    assert report.passed, str(report)
    assert report.examples >= 200


# The phrase the diagnosis must contain, where it does not rest on a factor re-checked at
# another input (in low precision that re-check, which asks two factors to agree to 1e-6,
# declines to name a cause: the verdict is what these tests pin).
BUGS = {
    "missing 1/m": (kernels.mlp_lowp_missing_one_over_m, ""),
    "sign flipped": (kernels.mlp_lowp_sign_flipped, ""),
    "ReLU mask dropped": (kernels.mlp_lowp_mask_dropped, ""),
    "dW2 transposed": (kernels.mlp_lowp_dw2_transposed, "W2"),
    "softmax without max shift": (kernels.mlp_lowp_no_max_shift, "NaN/inf"),
    "doubled dW1": (kernels.mlp_lowp_doubled_dw1, ""),
    "bias averaged twice": (kernels.mlp_lowp_bias_averaged_twice, ""),
}


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("bug", list(BUGS))
def test_classic_bug_fails_in_low_precision(dtype: np.dtype[Any], bug: str) -> None:
    candidate, phrase = BUGS[bug]
    report = audit(candidate, reference.mlp_loss, _problems(dtype), max_examples=150, seed=5)
    assert not report.passed
    assert report.kind in ("mismatch", "wrong shape"), str(report)
    assert phrase in str(report.diagnosis), str(report)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize(
    "candidate", [kernels.mlp_lowp_doubled_dw1, kernels.mlp_lowp_bias_averaged_twice]
)
def test_factor_two_fails_at_m64_where_the_float_rule_allowed_it(
    dtype: np.dtype[Any], candidate: Any
) -> None:
    args = _network(dtype, 64, 32, 16, 10)
    grad = reference.mlp_loss_and_grads(
        MLPParams(*(p.astype(np.float64) for p in args[0])),
        *(a.astype(np.float64) for a in args[1:]),
    )[1]
    # the float rule of _tolerance, applied to this dtype: an rtol above 1 tolerates a factor 2
    (rtol, _), *_ = leaf_tolerances([F16] * 4, [np.asarray(g) for g in grad], terms=64 * 32)
    assert rtol > 1
    report = audit(candidate, reference.mlp_loss, args, argnums=0, seed=0)
    assert not report.passed
    assert report.kind == "mismatch"
    ratios = [float(line.split("= ")[1].split(" x")[0]) for line in report.low_precision[1:]]
    assert max(ratios) > FACTOR, report.low_precision


def test_bfloat16_accumulated_sums_pass_at_small_batch_and_fail_at_large() -> None:
    def at(kernel: Any, m: int) -> Any:
        args = _network(BF16, m, 32, 16, 10)
        return audit(kernel, reference.mlp_loss, args, argnums=0, seed=0)

    small = at(kernels.mlp_grads_lowp_bf16_sums, 64)
    assert small.passed, str(small)
    large = at(kernels.mlp_grads_lowp_bf16_sums, 2048)
    assert not large.passed
    assert large.location is not None
    assert large.location.startswith(("b1", "b2"))
    assert "x the bfloat16 reference's" in str(large)
    careful = at(kernels.mlp_grads_lowp, 2048)
    assert careful.passed, str(careful)


# What each factor bug's diagnosis may say: the true cause, or no cause at all.
FACTOR_BUGS = {
    "missing 1/m": (kernels.mlp_lowp_missing_one_over_m, "x 4 = m, the batch size"),
    "bias averaged twice": (kernels.mlp_lowp_bias_averaged_twice, "x 1/4 = 1/m, the batch"),
    "sign flipped": (kernels.mlp_lowp_sign_flipped, "sign flipped"),
    "doubled dW1": (kernels.mlp_lowp_doubled_dw1, "it does not follow a dimension"),
}
CAUSES = ("is missing", "once too often", "sign flipped", "it does not follow a dimension")


@pytest.mark.parametrize("bug", list(FACTOR_BUGS))
def test_a_factor_in_a_float16_kernel_gets_its_cause_named_despite_the_kernels_rounding(
    bug: str,
) -> None:
    # m = 4, n = 3, h = 5, k = 2: the kernel's rounding moves each ratio by about 1e-3, far
    # more than float64's 1e-6; judged by the verdict's own allowance, the factor is known
    # well enough here to tell m from m + 1 and the doubled batch's 2m from m.
    candidate, truth = FACTOR_BUGS[bug]
    report = audit(candidate, reference.mlp_loss, _network(F16, 4, 3, 5, 2, 1), argnums=0)
    assert not report.passed
    assert truth in str(report.diagnosis), str(report)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("seed", [0, 2])
def test_a_low_precision_factor_known_too_roughly_names_no_wrong_cause(
    dtype: np.dtype[Any], seed: int
) -> None:
    # Small leaves next to the gradient's largest element: the verdict allows them so much
    # that a factor 4 may be 3 or 5 (bfloat16 allows 1/8 of the largest element): no size, no
    # sign and no "does not follow" may be said then, only the truth or nothing.
    args = _network(dtype, 4, 3, 5, 2, seed)
    for candidate, truth in FACTOR_BUGS.values():
        diagnosis = str(audit(candidate, reference.mlp_loss, args, argnums=0).diagnosis)
        said = [cause for cause in CAUSES if cause in diagnosis]
        assert not said or truth in diagnosis, (candidate.__name__, diagnosis)


def test_report_states_both_errors_ratio_factor_and_how_the_reference_ran() -> None:
    report = audit(
        kernels.mlp_lowp_doubled_dw1, reference.mlp_loss, _network(BF16, 8, 4, 3, 2), argnums=0
    )
    text = str(report)
    assert f"= {FACTOR:g} x the bfloat16 reference's error E" in text
    assert "jax.grad of the loss with every float input in bfloat16" in text
    assert "W1: error" in text
    assert "x the bfloat16 reference's" in text


def test_float16_input_beyond_its_range_is_not_counted() -> None:
    params, x, y = _network(F16, 2, 3, 2, 2)
    big = MLPParams(*(p * np.float16(200) for p in params))  # logits beyond 65504
    report = audit(kernels.mlp_grads_lowp, reference.mlp_loss, (big, x * np.float16(200), y))
    assert report.verdict == "INCONCLUSIVE"
    assert report.out_of_domain == 1


def test_float32_audit_keeps_the_float_rule() -> None:
    report = audit(
        kernels.mlp_grads_lowp,
        reference.mlp_loss,
        mlp_problems(np.float32),
        max_examples=30,
        seed=0,
    )
    assert report.passed
    assert report.low_precision == []


def test_tf32_matmuls_fail_the_float32_rule_by_tf32_rounding() -> None:
    """torch's CPU has no TF32: the kernel rounds its matmul inputs to a 10-bit mantissa. Its
    float32 output errs by about 2^-11 relative, far above float32's allowance."""
    args = _network(np.float32, 64, 32, 16, 10)
    report = audit(kernels.mlp_grads_tf32, reference.mlp_loss, args, argnums=0, seed=0)
    assert not report.passed
    assert report.kind == "mismatch"
    exact = reference.mlp_loss_and_grads(*args)[1]
    error = max(
        float(np.max(np.abs(a - b))) / float(np.max(np.abs(b)))
        for a, b in zip(kernels.mlp_grads_tf32(*args), exact, strict=True)
    )
    assert 2.0**-16 < error < 2.0**-8
    exact = audit(kernels.mlp_grads_lowp, reference.mlp_loss, args, argnums=0, seed=0)
    assert exact.passed


def test_tf32_rounding_keeps_ten_mantissa_bits() -> None:
    a = np.array([1 + 2.0**-10, 1 + 2.0**-11, 1 + 3 * 2.0**-11, -(1 + 2.0**-12)], np.float32)
    assert kernels.tf32_round(a).tolist() == [1 + 2.0**-10, 1.0, 1 + 2.0**-9, -1.0]


@pytest.mark.parametrize("dtype", LOW)
def test_named_arrays_draws_low_precision_within_bounds(dtype: np.dtype[Any]) -> None:
    strategy = named_arrays({"x": ("m", "n")}, dims={"m": [3], "n": [4]}, dtype=dtype)
    (x,) = find(strategy, lambda a: float(np.max(np.abs(a[0].astype(np.float64)))) > 2)
    assert x.dtype == dtype
    assert x.shape == (3, 4)
    bound = max(default_bounds(dtype) or (3.0, 1000.0))
    assert float(np.max(np.abs(x.astype(np.float64)))) <= bound * (1 + 2.0**-7)


def test_named_arrays_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match=r"float16, bfloat16\), got int32"):
        named_arrays({"x": ("m",)}, dtype=np.int32)


def test_rule_pieces() -> None:
    assert is_float(BF16)
    assert not is_float(np.int8)
    assert low_precision_dtype([np.float32, F16, BF16]) == BF16
    assert low_precision_dtype([np.float32]) is None
    g = [np.array([4.0, -8.0])]
    errors = reference_errors(BF16, g, [g[0] + 0.5], g, [np.array([np.inf, 0.0])])
    assert errors == [float("inf")]
    two = [g[0], np.zeros(3)]  # an exact reference: the floor is the rounding of 8 in bf16
    assert reference_errors(BF16, two, two, two, two) == [8 * 2.0**-8, 8 * 2.0**-8]
    (rtol, atol), *_ = tolerances(BF16, [0.25])
    assert rtol == 2.0**-8
    assert atol == pytest.approx(FACTOR * 0.25)


KERNELS = Path(__file__).with_name("lowprec_kernels.py")


def test_cli_audits_bfloat16(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(
        [
            f"{KERNELS}:mlp_grads_lowp_flat",
            "--loss",
            f"{KERNELS}:mlp_loss_flat",
            "--shapes",
            "W1=n,h b1=h W2=h,k b2=k x=m,n y=m,k:onehot",
            "--argnums",
            "0,1,2,3",
            "--dtype",
            "bfloat16",
            "--max-examples",
            "20",
            "--seed",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "low precision (bfloat16)" in out


def test_nudging_moves_low_precision_differentiated_leaves_by_about_an_ulp_and_nothing_else() -> (
    None
):
    from verification.auditing._lowprec import nudged

    x16 = np.linspace(0.5, 2.0, 64).astype(np.float16)
    w64 = np.linspace(-1.0, 1.0, 8)
    out = nudged((x16, w64, x16), (0, 1), np.random.default_rng(0))
    assert out[0].dtype == np.float16
    moved = out[0] != x16
    assert moved.any()
    assert not moved.all()
    step = np.abs(out[0].astype(np.float64) - x16.astype(np.float64))
    assert np.all(step <= 2 * np.spacing(np.abs(x16)).astype(np.float64))
    np.testing.assert_array_equal(out[1], w64)  # float64: not low precision, left as it is
    assert out[2] is x16  # not differentiated
