"""``python -m verification audit``: exit status, printed verdict, JSON, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verification._audit_cli import main, resolve

MODULE = textwrap.dedent(
    '''
    """A softmax regression: the loss in JAX, two hand-derived weight gradients."""
    import jax
    import jax.numpy as jnp
    import numpy as np


    def loss(x, w, y):
        return -jnp.sum(y * jax.nn.log_softmax(x @ w, axis=1)) / x.shape[0]


    def _p(x, w):
        z = x @ w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


    def grad_w(x, w, y):
        return x.T @ (_p(x, w) - y) / x.shape[0]


    def grad_w_no_mean(x, w, y):
        return x.T @ (_p(x, w) - y)
    '''
)
SHAPES = ["--shapes", "x=m,n w=n,k y=m,k:onehot", "--argnums", "1", "--seed", "0"]


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "tests" / "softreg_cli.py"  # under tests/: no hypothesis constants from it
    path.parent.mkdir()
    path.write_text(MODULE)
    return path


def test_a_correct_gradient_exits_0(module: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main([f"{module}:grad_w", "--loss", f"{module}:loss", *SHAPES, "--max-examples", "30"])
    assert status == 0
    assert capsys.readouterr().out.startswith("PASSED")


def test_a_wrong_gradient_exits_1_and_writes_json(
    module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = [f"{module}:grad_w_no_mean", "--loss", f"{module}:loss", *SHAPES, "--json", str(out)]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("FAILED (mismatch)")
    assert "the 1/m is missing" in printed
    data = json.loads(out.read_text())
    assert data["passed"] is False
    assert data["location"].startswith("w[")
    assert data["environment"]["x64"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nocolon", "--loss", "m:f", "--shapes", "x=m"], "MODULE:FUNCTION"),
        (["{m}:grad_w", "--loss", "{m}:missing", "--shapes", "x=m"], "no attribute"),
        (["{m}:grad_w", "--loss", "{m}:loss", "--shapes", "x"], "name=dim"),
        (["{m}:grad_w", "--loss", "{m}:loss", "--shapes", "x=m", "--argnums", "3"], "argnums"),
        (["{m}:grad_w", "--loss", "{m}:loss", "--shapes", "x=m", "--dims", "m"], "--dims"),
        (["nowhere.py:f", "--loss", "{m}:loss", "--shapes", "x=m"], "no such Python file"),
    ],
)
def test_usage_errors_exit_2(
    module: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.replace("{m}", str(module)) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_resolve_imports_by_module_name() -> None:
    assert resolve("json:dumps") is json.dumps


def test_python_m_verification_audit_dispatches_here(module: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(module.parent)}
    argv = ["softreg_cli:grad_w_no_mean", "--loss", "softreg_cli:loss", *SHAPES]
    done = subprocess.run(
        [sys.executable, "-m", "verification", "audit", *argv, "--max-examples", "20"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "from softreg_cli import grad_w_no_mean as grad_fn" in done.stdout
