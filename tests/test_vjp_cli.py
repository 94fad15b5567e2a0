"""``python -m verification audit-vjp``: exit status, printed verdict, JSON, kinks, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verification.cli.audit_vjp import main

MODULE = textwrap.dedent(
    '''
    """Layers written as layer code is: softmax caches p; ReLU takes its input."""
    import numpy as np


    def softmax_forward(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return p, p


    def softmax_backward(dp, p):
        return p * (dp - (dp * p).sum(axis=1, keepdims=True))


    def softmax_backward_diagonal(dp, p):
        return dp * p * (1 - p)


    def relu_backward_one_at_zero(da, z):
        return da * (z >= 0)
    '''
)
SOFTMAX = ["--reference", "verification.reference:softmax", "--shapes", "z=m,k", "--seed", "0"]


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "layers_cli.py"
    path.write_text(MODULE)
    return path


def test_a_correct_layer_backward_exits_0(module: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forward = ["--forward", f"{module}:softmax_forward", "--max-examples", "30"]
    assert main([f"{module}:softmax_backward", *SOFTMAX, *forward]) == 0
    assert capsys.readouterr().out.startswith(f"PASSED: vjp audit of {module}:softmax_backward")


def test_a_wrong_layer_backward_exits_1_and_writes_json(
    module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = [f"{module}:softmax_backward_diagonal", *SOFTMAX, "--forward"]
    assert main([*argv, f"{module}:softmax_forward", "--json", str(out)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith(f"FAILED (mismatch): vjp audit of {module}:softmax_backward_diag")
    data = json.loads(out.read_text())
    assert data["passed"] is False
    assert data["location"].startswith("z[")


def test_kinks_relu_turns_the_uncertain_kink_into_a_failure(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        f"{module}:relu_backward_one_at_zero",
        "--reference",
        "verification.reference:relu",
        "--shapes",
        "z=m,h",
        "--seed",
        "0",
        "--max-examples",
        "40",
    ]
    assert main(argv) == 0
    assert "oracle-uncertain" in capsys.readouterr().out
    assert main([*argv, "--kinks", "relu"]) == 1
    assert "at a kink, under the declared convention relu'(0) = 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nocolon", "--reference", "m:f", "--shapes", "z=m"], "MODULE:FUNCTION"),
        (
            [
                "{m}:softmax_backward",
                "--reference",
                "m:f",
                "--shapes",
                "z=m",
                "--max-examples",
                "0",
            ],
            "give 1 or more",
        ),
        (["{m}:softmax_backward", "--reference", "{m}:nope", "--shapes", "z=m"], "no attribute"),
        (["{m}:softmax_backward", "--reference", "{m}:softmax_forward", "--shapes", "z"], "dim"),
        (
            [
                "{m}:softmax_backward",
                "--reference",
                "{m}:softmax_forward",
                "--shapes",
                "z=m",
                "--argnums",
                "1",
            ],
            "does not fit",
        ),
        (
            [
                "{m}:softmax_backward",
                "--reference",
                "{m}:softmax_forward",
                "--shapes",
                "z=m",
                "--dims",
                "m",
            ],
            "--dims",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    module: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.replace("{m}", str(module)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_python_m_verification_audit_vjp_dispatches_here(module: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(module.parent), *sys.path])}
    argv = ["layers_cli:softmax_backward_diagonal", *SOFTMAX, "--forward"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "verification",
            "audit-vjp",
            *argv,
            "layers_cli:softmax_forward",
            "--max-examples",
            "20",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "from layers_cli import softmax_backward_diagonal as grad_fn" in done.stdout
    assert "print(audit_vjp(grad_fn, loss_fn, args[:-1], cotangent=args[-1]" in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["m:f", "--reference", "m:g", "--shapes", "z=m", "--bogus"],
        ["m:f", "--shapes", "z=m"],  # --reference missing
        ["m:f", "--reference", "m:g", "--shapes", "z=m", "--kinks", "tanh"],
    ],
)
def test_argument_errors_are_one_line_with_exit_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = int(exit_info.code or 0)
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("python -m verification audit-vjp: error:")


def test_low_precision_dtypes_are_accepted_like_the_audit_command() -> None:
    from verification.cli.audit_vjp import _parser

    options = _parser().parse_args(
        ["m:f", "--reference", "m:g", "--shapes", "z=m", "--dtype", "bfloat16"]
    )
    assert options.dtype == "bfloat16"
