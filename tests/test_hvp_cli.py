"""``python -m verification audit-hvp``: exit status, printed verdict, JSON, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verification.cli.audit_hvp import main

MODULE = textwrap.dedent(
    '''
    """The Hessian-vector product of the mean of tanh(x w), right and with f' for f''."""
    import jax.numpy as jnp
    import numpy as np


    def loss(w, x):
        return jnp.sum(jnp.tanh(x @ w)) / x.shape[0]


    def hvp(w, x, v):
        t = np.tanh(x @ w)
        return x.T @ (-2 * t * (1 - t**2) * (x @ v)) / x.shape[0]


    def hvp_first_derivative(w, x, v):
        return x.T @ ((1 - np.tanh(x @ w) ** 2) * (x @ v)) / x.shape[0]


    from verification.auditing import kinks_at

    AT_ZERO = kinks_at([0.0])
    '''
)


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "tanh_hvp_cli.py"
    path.write_text(MODULE)
    return path


def _args(module: Path, name: str) -> list[str]:
    return [f"{module}:{name}", "--loss", f"{module}:loss", "--shapes", "w=n x=m,n", "--seed", "0"]


def test_a_correct_hvp_exits_0(module: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_args(module, "hvp"), "--max-examples", "30"]) == 0
    assert capsys.readouterr().out.startswith("PASSED: hvp audit of tanh_hvp_cli:hvp")


def test_a_wrong_hvp_exits_1_and_writes_json(
    module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    assert main([*_args(module, "hvp_first_derivative"), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert text.startswith("FAILED (mismatch): hvp audit of tanh_hvp_cli:hvp_first_derivative")
    assert "direction=args[-1]" in text  # the reproducer passes the drawn v back
    assert json.loads(out.read_text())["verdict"] == "FAILED"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--loss", "nowhere:loss"], "no module named 'nowhere'"),
        (["--argnums", "5"], "--argnums 5 does not fit"),
        (["--max-examples", "0"], "--max-examples"),
        (["--kinks", "nope"], "--kinks 'nope': expected one of"),
    ],
)
def test_a_usage_mistake_is_one_line_and_exit_2(
    module: Path, change: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_args(module, "hvp"), *change]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m verification audit-hvp: error:")
    assert message in err


@pytest.mark.parametrize("option", ["--profile", "--quick", "--no-locate"])
def test_options_the_second_order_audit_would_ignore_are_refused(
    module: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*_args(module, "hvp"), option])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"unrecognized arguments: {option}" in err


def test_kinks_takes_the_forms_audit_vjp_takes(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_args(module, "hvp"), "--max-examples", "20", "--kinks", "at=0"]) == 0
    capsys.readouterr()
    assert main([*_args(module, "hvp_first_derivative"), "--kinks", f"{module}:AT_ZERO"]) == 1
    text = capsys.readouterr().out
    assert "from tanh_hvp_cli import AT_ZERO as kinks" in text  # the reproducer rebuilds it
    assert "kinks=kinks" in text


def test_the_dispatcher_runs_audit_hvp(module: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "verification", "audit-hvp", *_args(module, "hvp"),
         "--max-examples", "5"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PASSED: hvp audit")
