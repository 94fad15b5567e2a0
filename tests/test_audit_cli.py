"""``python -m verification audit``: exit status, printed verdict, JSON, usage errors."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verification.auditing._targets import resolve
from verification.cli.audit import main

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


    def never_finite(x):
        return jnp.sum(jnp.log(-(x ** 2) - 1.0))


    def loss_one_arg(x):
        return jnp.sum(x)


    def index_loss(z, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))


    def index_grad(z, y):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True) - np.eye(z.shape[1])[y]) / z.shape[0]


    def conv_loss(x, w, dout, s):
        cols = [x[:, i * s : i * s + w.shape[0]] @ w for i in range(dout.shape[1])]
        return jnp.sum(dout * jnp.stack(cols, axis=1))


    def conv_grad_w(x, w, dout, s):
        return sum(dout[:, i] @ x[:, i * s : i * s + w.shape[0]] for i in range(dout.shape[1]))


    def conv_grad_w_stride_ignored(x, w, dout, s):
        return sum(dout[:, i] @ x[:, i : i + w.shape[0]] for i in range(dout.shape[1]))


    def dict_loss(params, x, lam):
        return jnp.sum(jnp.tanh(x @ params["W"] + params["b"])) + lam * jnp.sum(params["W"] ** 2)


    def dict_grad(params, x, lam):
        d = 1 - np.tanh(x @ params["W"] + params["b"]) ** 2
        return {"W": x.T @ d + 2 * lam * params["W"], "b": d.sum(axis=0)}
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
        (
            ["{m}:grad_w", "--loss", "{m}:loss", *SHAPES, "--json", "/nonexistent/x.json"],
            "does not exist",
        ),
        (["{m}:grad_w", "--loss", "{m}:loss", *SHAPES, "--json", "/"], "is a directory"),
        (["{m}:grad_w", "--loss", "{m}:loss", *SHAPES, "--bounds", "3,-1"], "--bounds"),
        (["{m}:grad_w", "--loss", "{m}:loss", *SHAPES, "--bounds", "abc"], "--bounds"),
        (["{m}:grad_w", "--loss", "{m}:loss", *SHAPES, "--max-examples", "0"], "--max-examples"),
        (["{m}:grad_w", "--loss", "{m}:loss", *SHAPES, "--argnums", "x"], "--argnums"),
        (["{m}:grad_w", "--loss", "{m}:loss", "--shapes", "x=m:gauss"], "unknown kind"),
        (["{m}:grad_w", "--loss", "{m}:loss_one_arg", *SHAPES], "does not take the 3 arguments"),
        (["broken_cli:f", "--loss", "{m}:loss", "--shapes", "x=m"], "raised ZeroDivisionError"),
        (["{m}:grad_w", "--loss", "{m}:loss", *SHAPES, "--dtype", "int8"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line_before_any_work(
    module: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (module.parent / "broken_cli.py").write_text("f = 1 / 0\n")
    sys.path.insert(0, str(module.parent))
    try:
        with pytest.raises(SystemExit) if "int8" in argv else contextlib.nullcontext() as caught:
            status = main([a.replace("{m}", str(module)) for a in argv])
    finally:
        sys.path.remove(str(module.parent))
    captured = capsys.readouterr()
    assert (caught.value.code if caught is not None else status) == 2
    assert message in captured.err
    assert captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_nothing_checked_exits_3(module: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [f"{module}:grad_w", "--loss", f"{module}:never_finite", "--shapes", "x=m"]
    assert main([*argv, "--max-examples", "10", "--seed", "0"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("INCONCLUSIVE")
    assert "the input spec does not fit the loss" in out


@pytest.mark.parametrize(
    ("grad", "loss", "shapes", "argnums", "status"),
    [
        ("index_grad", "index_loss", "z=m,k y=m:classes(k)", "0", 0),
        ("conv_grad_w", "conv_loss", "x=m,L w=f dout=m,(L-f)//s+1 s:=2", "1", 0),
        ("conv_grad_w_stride_ignored", "conv_loss", "x=m,L w=f dout=m,(L-f)//s+1 s:=2", "1", 1),
        ("dict_grad", "dict_loss", "params.W=n,h params.b=h x=m,n lam:=0.1", "0", 0),
    ],
)
def test_the_input_forms_are_reached_from_the_command_line(
    module: Path, grad: str, loss: str, shapes: str, argnums: str, status: int
) -> None:
    argv = [f"{module}:{grad}", "--loss", f"{module}:{loss}", "--shapes", shapes]
    assert main([*argv, "--argnums", argnums, "--max-examples", "30", "--seed", "0"]) == status


def test_help_gives_defaults_and_the_shapes_grammar(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help's lines
    for words in (
        "(default: 200)",
        "(default: 3,1000 for float64, float32, bfloat16; 3,8 for float16)",
        "classes(K)",
        "|x|>=d",
        "(H+2*p-f)//s+1",
        "exit status",
        "lam:=0.01",
    ):
        assert words.lower() in text.lower(), words


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
