"""Audits declared in ``[tool.manual-bp.audits.NAME]`` tables (``verification.auditing._config``):
one-line errors naming the table and the key, and ``python -m verification audit --config``
running them with exit statuses, kept counterexamples and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from verification.__main__ import main as verification_main
from verification.auditing._config import ConfigError, load_audits, parse_table, run_configured

ROOT = Path(__file__).resolve().parent.parent

GRADS = textwrap.dedent(
    '''
    """The network's output layer: softmax cross-entropy, its gradient, and one without 1/m."""
    import jax
    import jax.numpy as jnp
    import numpy as np


    def loss(z, y):
        return -jnp.sum(y * jax.nn.log_softmax(z, axis=1)) / z.shape[0]


    def _softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


    def dz(z, y):
        return (_softmax(z) - y) / z.shape[0]


    def dz_no_mean(z, y):
        return _softmax(z) - y
    '''
)

PYPROJECT = textwrap.dedent(
    """
    [tool.manual-bp]
    counterexamples = "kept"

    [tool.manual-bp.audits.good]
    candidate = "grads:dz"
    reference = "grads:loss"
    shapes = "z=m,k y=m,k:onehot"

    [tool.manual-bp.audits.no-mean]
    candidate = "grads:dz_no_mean"
    reference = "grads:loss"
    shapes = "z=m,k y=m,k:onehot"
    max_examples = 30
    """
)

TABLE = {"candidate": "grads:dz", "reference": "grads:loss", "shapes": "z=m,k y=m,k:onehot"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"argnum": 1}, "argnum: unknown key; the keys are candidate, reference"),
        ({"candidate": "grads.dz"}, "candidate: expected \"MODULE:FUNCTION\", got 'grads.dz'"),
        ({"shapes": None}, "shapes: missing (candidate, reference, shapes are needed)"),
        ({"shapes": "z=m,k y"}, "shapes: "),
        ({"kind": "jvp"}, 'kind: expected "gradient" or "vjp", got \'jvp\''),
        ({"forward": "grads:f"}, 'forward: only for kind = "vjp"'),
        ({"dtype": "float8"}, "dtype: expected one of float64, float32, float16, bfloat16"),
        ({"kinks": "tanh"}, "kinks: expected one of max-ties, mlp-relu, relu, got 'tanh'"),
        ({"argnums": 2}, "argnums: 2 does not fit the 2 arguments of shapes (z, y): count from 0"),
        ({"argnums": [0, -1]}, "argnums: expected an integer >= 0 or a list of them"),
        ({"max_examples": 0}, "max_examples: expected an integer >= 1, got 0"),
        ({"seed": True}, "seed: expected an integer >= 0, got True"),
        ({"rtol": -1}, "rtol: expected a number >= 0, got -1"),
        ({"bounds": [3, 0]}, "bounds: expected a list of positive numbers"),
        ({"dims": {"m": [0]}}, "dims: expected a table of size lists"),
        ({"stages": {"dZ2": "Z9"}}, "stages: expected a table of intermediate name = stage"),
        ({"stages": {"dZ2": "Z2"}}, "intermediates: stages and intermediates go together"),
    ],
)
def test_a_mistake_is_one_line_naming_the_table_and_the_key(
    change: dict[str, Any], message: str
) -> None:
    table = {k: v for k, v in {**TABLE, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_table("softmax", table)
    text = str(info.value)
    assert text.startswith(f"pyproject.toml [tool.manual-bp.audits.softmax] {message}")
    assert "\n" not in text


def test_a_table_that_is_not_a_table_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^pyproject.toml \[tool.manual-bp.audits.x\]: expected"):
        parse_table("x", "grads:dz")


def test_a_valid_table_parses_its_shapes_and_argnums() -> None:
    config = parse_table("softmax", {**TABLE, "argnums": [0, 1], "kinks": "relu"})
    assert list(config.spec) == ["z", "y"]
    assert config.argnums == (0, 1)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "grads.py").write_text(GRADS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "grads", raising=False)
    return tmp_path


def test_load_audits_names_an_audit_that_is_not_declared(project: Path) -> None:
    assert [a.name for a in load_audits(project / "pyproject.toml")] == ["good", "no-mean"]
    with pytest.raises(ConfigError, match=r"no audit named 'nomean'; declared: good, no-mean$"):
        load_audits(project / "pyproject.toml", ["nomean"])
    (project / "empty.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"no \[tool.manual-bp.audits.NAME\] tables"):
        load_audits(project / "empty.toml")


def test_a_declared_audit_runs_without_a_store_and_keeps_nothing(project: Path) -> None:
    (no_mean,) = load_audits(project / "pyproject.toml", ["no-mean"])
    kept = run_configured(no_mean, project, max_examples=30, seed=0, store=None)
    assert not kept.report.passed
    assert kept.report.replayed == 0
    assert kept.saved is None
    assert not (project / "kept").exists()


def test_audit_config_runs_the_declared_audits_and_keeps_the_failure(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(project / "pyproject.toml")
    json_path = project / "out.json"
    status = verification_main(
        ["audit", "--config", config, "--seed", "0", "--json", str(json_path)]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "== good ==\nPASSED: gradient audit of grads:dz" in out
    assert "== no-mean ==\ncounterexample stored in kept/no-mean/counterexample-" in out
    assert "FAILED (mismatch): gradient audit of grads:dz_no_mean" in out
    assert [r["verdict"] for r in json.loads(json_path.read_text())] == ["PASSED", "FAILED"]
    assert len(list((project / "kept" / "no-mean").glob("*.npz"))) == 1

    assert verification_main(["audit", "--config", config, "no-mean"]) == 1
    out = capsys.readouterr().out
    assert "== good ==" not in out
    assert "after 1 examples, shrunk in 0 more" in out

    assert verification_main(["audit", "--config", config, "good", "--seed", "3"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "missing.toml"], "missing.toml: cannot read it"),
        (["--config", "pyproject.toml", "bad"], "no audit named 'bad'"),
        (["--config", "pyproject.toml", "--max-examples", "0"], "--max-examples must be >= 1"),
        (
            ["--config", "pyproject.toml", "--json", "no/such/out.json"],
            "directory no/such does not",
        ),
    ],
)
def test_audit_config_mistakes_exit_2_with_one_line(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(project)
    assert verification_main(["audit", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m verification audit --config: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_a_loss_that_does_not_fit_the_shapes_is_a_config_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PYPROJECT.replace('shapes = "z=m,k y=m,k:onehot"\n', 'shapes = "z=m,k"\n', 1)
    (project / "pyproject.toml").write_text(text)
    assert verification_main(["audit", "--config", str(project / "pyproject.toml"), "good"]) == 2
    err = capsys.readouterr().err
    assert (
        "pyproject.toml [tool.manual-bp.audits.good]: loss_fn does not take the 1 arguments" in err
    )


def test_python_m_verification_audit_config_from_the_project_folder(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "verification", "audit", "--config", "pyproject.toml", "good"],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "PASSED: gradient audit of grads:dz against jax.grad of grads:loss" in result.stdout


def test_kept_arguments_that_no_longer_fit_the_audit_are_reported_and_skipped(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(project / "pyproject.toml")
    assert verification_main(["audit", "--config", config, "no-mean", "--seed", "0"]) == 1
    grads = project / "grads.py"
    grads.write_text(grads.read_text().replace("def loss(z, y):", "def loss(z, y, scale):"))
    text = PYPROJECT.replace('"z=m,k y=m,k:onehot"', '"z=m,k y=m,k:onehot scale:=1.0"')
    (project / "pyproject.toml").write_text(text)
    sys.modules.pop("grads", None)
    capsys.readouterr()
    assert verification_main(["audit", "--config", config, "no-mean"]) == 1
    out = capsys.readouterr().out
    assert "skipped: counterexample-" in out
    assert "it holds 2 arguments, the audit now takes 3 (skipped; delete it" in out


LAYER = textwrap.dedent(
    '''
    """The network's hidden ReLU layer: its JAX forward, its backward, one without the mask."""
    import jax
    import numpy as np


    def relu(z):
        return jax.nn.relu(z)


    def relu_backward(dout, z):
        return dout * (z > 0)


    def relu_backward_no_mask(dout, z):
        return dout
    '''
)


@pytest.mark.parametrize(
    ("candidate", "passed"), [("relu_backward", True), ("relu_backward_no_mask", False)]
)
def test_a_declared_vjp_audit_checks_the_layers_backward_against_its_jax_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, candidate: str, passed: bool
) -> None:
    (tmp_path / "layer.py").write_text(LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "layer", raising=False)
    table = {"kind": "vjp", "candidate": f"layer:{candidate}", "reference": "layer:relu"}
    config = parse_table("hidden", {**table, "shapes": "z=m,h"})
    kept = run_configured(config, tmp_path, max_examples=20, seed=0, store=None)
    assert kept.report.passed is passed, str(kept.report)
    if not passed:  # a layer's counterexample: the inputs, then the cotangent drawn with them
        assert len(kept.report.counterexample or ()) == 2


def test_a_module_that_raises_while_importing_is_named_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from verification.auditing._targets import lookup

    (tmp_path / "broken.py").write_text('raise ValueError("no data file here")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken", raising=False)
    with pytest.raises(
        ImportError, match=r"^importing broken raised ValueError: no data file here$"
    ):
        lookup("broken:grad")


NETWORK = textwrap.dedent(
    '''
    """The source document's network with params as the shapes grammar makes them (a dict)."""
    import numpy as np


    def _chain(params, x, y, *, mask=True, w2_factor=1.0):
        z1 = x @ params["W1"] + params["b1"]
        a1 = np.maximum(z1, 0.0)
        z2 = a1 @ params["W2"] + params["b2"]
        e = np.exp(z2 - z2.max(axis=1, keepdims=True))
        dz2 = (e / e.sum(axis=1, keepdims=True) - y) / x.shape[0]
        da1 = dz2 @ params["W2"].T
        dz1 = da1 * (z1 > 0) if mask else da1
        grads = {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": w2_factor * a1.T @ dz2, "b2": dz2.sum(0)}
        return grads, {"dZ2": dz2, "dA1": da1, "dZ1": dz1}


    def right(params, x, y):
        return _chain(params, x, y)[0]


    def no_mask(params, x, y):
        return _chain(params, x, y, mask=False)[0]


    def w2_doubled(params, x, y):
        return _chain(params, x, y, w2_factor=2.0)[0]


    def chain(params, x, y):
        return _chain(params, x, y)[1]


    def chain_no_mask(params, x, y):
        return _chain(params, x, y, mask=False)[1]
    '''
)


@pytest.mark.parametrize(
    ("candidate", "intermediates", "stage"),
    [
        ("right", "chain", None),
        ("no_mask", "chain_no_mask", "dZ2 and dA1 agree; dZ1 differs: the ReLU mask"),
        (
            "w2_doubled",
            "chain",
            "dZ2, dA1 and dZ1 agree; W2 differs, so the error is in a step after them: "
            "dW2 = A1^T dZ2",
        ),
    ],
)
def test_a_declared_staged_audit_of_the_network_locates_the_stage_with_params_from_shapes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    candidate: str,
    intermediates: str,
    stage: str | None,
) -> None:
    (tmp_path / "network.py").write_text(NETWORK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "network", raising=False)
    table = {
        "candidate": f"network:{candidate}",
        "reference": "verification.reference:mlp_loss",
        "shapes": "params.W1=n,h params.b1=h params.W2=h,k params.b2=k x=m,n y=m,k:onehot",
        "stages": {"dZ2": "Z2", "dA1": "A1", "dZ1": "Z1"},
        "intermediates": f"network:{intermediates}",
        "kinks": "mlp-relu",
    }
    report = run_configured(
        parse_table("net", table), tmp_path, max_examples=30, seed=0, store=None
    ).report
    assert report.passed is (stage is None), str(report)
    if stage is not None:
        assert f"stage: {stage}" in str(report)
