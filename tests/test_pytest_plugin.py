"""The pytest plugin (``manual_bp_pytest``): declared audits collected as items, the fixture and
the marker (also under ``pytest -n 2``), kept counterexamples replayed, the summary, JSON and
JUnit properties, and no JAX imported until an audit runs.

Each test runs pytest in a subprocess on a temporary project (the network's output layer of the
source document: softmax cross-entropy and its weights), with the plugin named by ``-p``
(the entry point names the same module, so this works installed or not). The end-to-end test
installs the built wheel into a fresh virtual environment: ``test_pip_installed_package...``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

GRADS = textwrap.dedent(
    '''
    """The output layer of the network: softmax cross-entropy and the gradient of its weights."""
    import jax
    import jax.numpy as jnp
    import numpy as np


    def loss_z(z, y):
        return -jnp.sum(y * jax.nn.log_softmax(z, axis=1)) / z.shape[0]


    def loss_w(a, w, y):
        return loss_z(a @ w, y)


    def _softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


    def dz(z, y):
        return (_softmax(z) - y) / z.shape[0]


    def dw(a, w, y):
        return a.T @ (_softmax(a @ w) - y)  # BUG: the 1/m is missing
    '''
)
FIXED = "return a.T @ (_softmax(a @ w) - y) / a.shape[0]"

PYPROJECT = textwrap.dedent(
    """
    [project]
    name = "mynet"
    version = "0"

    [tool.manual-bp.audits.softmax-cross-entropy]
    candidate = "grads:dz"
    reference = "grads:loss_z"
    shapes = "z=m,k y=m,k:onehot"

    [tool.manual-bp.audits.output-weights]
    candidate = "grads:dw"
    reference = "grads:loss_w"
    shapes = "a=m,h w=h,k y=m,k:onehot"
    argnums = 1
    """
)


def _project(tmp_path: Path, pyproject: str = PYPROJECT) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(pyproject)
    (project / "grads.py").write_text(GRADS)
    return project


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    env.pop("GRADIENT_AUDIT_PROFILE", None)
    return {**env, "PYTHONPATH": str(ROOT), "COLUMNS": "120", **extra}


def _pytest(
    project: Path, *args: str, python: str = sys.executable, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [python, "-m", "pytest", "-p", "manual_bp_pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, env=env or _env(), timeout=600
    )


def _fix(project: Path) -> None:
    grads = project / "grads.py"
    grads.write_text(
        grads.read_text().replace(
            "return a.T @ (_softmax(a @ w) - y)  # BUG: the 1/m is missing", FIXED
        )
    )


def _check_declared_audit_cycle(project: Path, run: object) -> None:
    """Run 1: 1 passed, 1 failed (named after the audit, the report shown, the counterexample
    kept); run 2: the kept one replayed first fails on the first example; after the fix: both
    pass and the entry is reported stale; with the update flag it is removed."""
    assert callable(run)
    first = run(project, "--gradient-audit-seed", "0")
    out = first.stdout
    assert first.returncode == 1, out + first.stderr
    assert "1 failed, 1 passed" in out
    assert "FAILED pyproject.toml::output-weights" in out
    assert "FAILED (mismatch): gradient audit of grads:dw" in out
    assert "the 1/m is missing" in out
    assert "manual_bp_pytest.py" not in out  # the report, not a traceback into the plugin
    kept = sorted((project / "gradient-audits" / "output-weights").glob("*.npz"))
    assert len(kept) == 1
    assert f"counterexample stored in gradient-audits/output-weights/{kept[0].name}" in out

    second = run(project)  # a fresh seed: the replay, not the search, finds it again
    out = second.stdout
    assert second.returncode == 1, out + second.stderr
    assert "after 1 examples, shrunk in 0 more" in out
    assert "stored counterexample 1 of 1, replayed before any search, fails again" in out
    assert (
        f"replayed the stored counterexample gradient-audits/output-weights/{kept[0].name}" in out
    )

    _fix(project)
    third = run(project, "--gradient-audit-seed", "0")  # the same examples on every run
    assert third.returncode == 0, third.stdout + third.stderr
    assert "2 passed" in third.stdout
    stale = f"stale: gradient-audits/output-weights/{kept[0].name} passes now"
    assert stale + " (--gradient-audit-update removes it)" in third.stdout
    assert kept[0].exists()
    fourth = run(project, "--gradient-audit-update", "--gradient-audit-seed", "0")
    assert fourth.returncode == 0
    assert stale + " (removed)" in fourth.stdout
    assert not kept[0].exists()


def test_declared_audits_fail_replay_and_go_stale(tmp_path: Path) -> None:
    _check_declared_audit_cycle(_project(tmp_path), _pytest)


def test_a_config_mistake_is_one_line_naming_table_and_key(tmp_path: Path) -> None:
    project = _project(tmp_path, PYPROJECT.replace("argnums = 1", "argnums = 5"))
    result = _pytest(project, "-q")
    assert result.returncode == 1
    assert (
        "pyproject.toml [tool.manual-bp.audits.output-weights] argnums: 5 does not fit the 3 "
        "arguments of shapes (a, w, y): count from 0"
    ) in result.stdout
    assert "Traceback" not in result.stdout


FIXTURE_TESTS = textwrap.dedent(
    """
    import numpy as np
    import pytest
    from verification import named_arrays

    import grads

    SHAPES = named_arrays({"a": "m,h", "w": "h,k", "y": "m,k:onehot"})


    def test_correct(gradient_audit):
        report = gradient_audit(grads.dz, grads.loss_z, named_arrays({"z": "m,k", "y": "m,k:onehot"}))
        assert report.passed


    @pytest.mark.gradient_audit(max_examples=3)
    def test_marker_limits_examples(gradient_audit):
        gradient_audit(grads.dz, grads.loss_z, named_arrays({"z": "m,k", "y": "m,k:onehot"}))


    def test_buggy(gradient_audit):
        gradient_audit(grads.dw, grads.loss_w, SHAPES, argnums=1)


    def test_nothing_checkable(gradient_audit):
        import jax.numpy as jnp
        never_finite = lambda x: jnp.sum(jnp.log(-(x ** 2) - 1.0))
        gradient_audit(lambda x: x, never_finite, named_arrays({"x": "m"}), max_examples=5)


    @pytest.mark.gradient_audit(kinks="relu", max_examples=10)
    def test_vjp_with_declared_kinks(gradient_audit):
        import jax
        gradient_audit.vjp(lambda dout, z: dout * (z > 0), jax.nn.relu, named_arrays({"z": "m,h"}))
    """
)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_fixture_and_marker_report_json_and_junit(tmp_path: Path, workers: list[str]) -> None:
    project = _project(tmp_path)
    (project / "test_grads.py").write_text(FIXTURE_TESTS)
    args = ["test_grads.py", "--gradient-audit-seed", "1", "--junitxml", "junit.xml"]
    result = _pytest(project, *workers, *args, "--gradient-audit-json", "audits.json")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 failed, 3 passed" in out
    assert "FAILED (mismatch): gradient audit of grads:dw" in out
    assert "INCONCLUSIVE: gradient audit of" in out
    assert "Traceback" not in out
    assert "5 audits: 3 passed, 1 failed, 1 inconclusive" in out
    document = json.loads((project / "audits.json").read_text())
    assert document["summary"]["failed"] == 1
    assert document["summary"]["audits"] == 5
    records = {r["test"].rpartition("::")[2]: r for r in document["audits"]}
    assert records["test_marker_limits_examples"]["examples"] == 3
    assert records["test_correct"]["examples"] > 3  # the profile's 50
    assert records["test_vjp_with_declared_kinks"]["verdict"] == "PASSED"
    assert records["test_buggy"]["stored"].startswith("gradient-audits/test_grads.py--test_buggy/")
    junit = ET.parse(project / "junit.xml")
    properties = [
        p.get("value") for p in junit.iter("property") if p.get("name") == "gradient_audit"
    ]
    assert len(properties) == 5
    verdicts = {json.loads(str(v))["verdict"] for v in properties}
    assert verdicts == {"PASSED", "FAILED", "INCONCLUSIVE"}


def test_importing_the_plugin_or_running_pytest_with_it_imports_no_jax(tmp_path: Path) -> None:
    code = "import sys, manual_bp_pytest; print(sorted(m for m in ('jax', 'verification') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=tmp_path
    )
    assert result.stdout.strip() == "[]", result.stderr
    (tmp_path / "test_plain.py").write_text(
        "import sys\n\ndef test_no_jax():\n    assert 'jax' not in sys.modules\n"
    )
    run = _pytest(tmp_path, "test_plain.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gradient audits: profile quick (default): 50 examples, a fresh seed" in run.stdout


def test_ci_chooses_the_thorough_profile_and_the_header_says_so(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_nothing():\n    pass\n")
    run = _pytest(tmp_path, "test_plain.py", env=_env(CI="true"))
    assert "gradient audits: profile thorough (CI is set): 500 examples, seed 0" in run.stdout


def _fresh_venv(tmp_path: Path) -> str:
    """A new virtual environment with this package installed from its built wheel (not the
    clone); its dependencies (jax, hypothesis, pytest) are the running environment's, made
    visible by a ``.pth`` file (no download)."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("manual_bp-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "_parent_environment.pth").write_text("\n".join(parents) + "\n")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return python


@pytest.mark.slow
def test_pip_installed_package_runs_declared_audits_end_to_end(tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path)
    env = {k: v for k, v in _env().items() if k != "PYTHONPATH"}
    project = _project(tmp_path)
    where = subprocess.run(
        [python, "-c", "import verification, manual_bp_pytest as p; print(p.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
    )
    assert where.returncode == 0, where.stderr
    assert str(tmp_path / "venv") in where.stdout  # the installed package, not the clone

    def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
        command = [python, "-m", "pytest", "-p", "no:cacheprovider", *args]  # entry point only
        return subprocess.run(
            command, cwd=project, capture_output=True, text=True, env=env, timeout=600
        )

    _check_declared_audit_cycle(project, run)


def test_declared_audits_run_when_testpaths_leave_pyproject_out(tmp_path: Path) -> None:
    text = PYPROJECT.split("[tool.manual-bp.audits.output-weights]")[0]
    project = _project(tmp_path, text + '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (project / "tests").mkdir()
    (project / "tests" / "test_plain.py").write_text("def test_nothing():\n    pass\n")
    result = _pytest(project, "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tests/test_plain.py::test_nothing PASSED" in result.stdout
    assert "pyproject.toml::softmax-cross-entropy PASSED" in result.stdout
    only_tests = _pytest(project, "-v", "tests")
    assert "softmax-cross-entropy" not in only_tests.stdout


def test_bad_settings_are_a_usage_error(tmp_path: Path) -> None:
    result = _pytest(tmp_path, "--gradient-audit-max-examples", "0")
    assert result.returncode == 4
    assert "--gradient-audit-max-examples must be >= 1" in result.stderr


def test_without_the_verify_extra_pytest_runs_and_an_audit_names_the_install(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path)
    (project / "test_plain.py").write_text("def test_nothing():\n    pass\n")
    stub = tmp_path / "stub" / "jax"  # shadows the installed jax: importing it fails
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'jax'\", name='jax')\n"
    )
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path / "stub"), str(ROOT)]))
    result = _pytest(project, "-q", "-k", "nothing or softmax", env=env)
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert "verification needs the `verify` extra (no module named 'jax')" in result.stdout
    assert "Traceback" not in result.stdout
