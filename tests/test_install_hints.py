"""A missing extra is answered with the install command for a clone, in one line, never a bare
``ModuleNotFoundError`` or a traceback: ``import verification`` and ``python -m verification``
without JAX, ``python -m benchmarks`` without matplotlib."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from manual_bp._cli import install_hint

ROOT = Path(__file__).resolve().parent.parent


def _without(module: str, tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import ``module`` (a stand-in that fails to import
    shadows the installed one)."""
    fake = tmp_path / module
    fake.mkdir()
    (fake / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n"
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_install_hint_names_the_clone_command_and_the_package_index_one() -> None:
    assert install_hint("verify").startswith('pip install ".[verify]" (in a clone of manual-bp')
    assert 'pip install "manual-bp[verify]"' in install_hint("verify")


@pytest.mark.parametrize("module", ["jax", "hypothesis"])
def test_import_verification_without_the_verify_extra_says_how_to_install_it(
    module: str, tmp_path: Path
) -> None:
    out = _run(["-c", "import verification"], _without(module, tmp_path), tmp_path)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        f"ModuleNotFoundError: verification needs the `verify` extra (no module named "
        f"{module!r}); install it with: {install_hint('verify')}"
    )


@pytest.mark.parametrize("argv", [[], ["audit", "--help"], ["twin"]])
def test_python_m_verification_without_jax_prints_one_line_and_exits_1(
    argv: list[str], tmp_path: Path
) -> None:
    out = _run(["-m", "verification", *argv], _without("jax", tmp_path), tmp_path)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip() == (
        "python -m verification: error: verification needs the `verify` extra (no module "
        f"named 'jax'); install it with: {install_hint('verify')}"
    )


def test_python_m_benchmarks_without_matplotlib_prints_one_line_and_exits_1(
    tmp_path: Path,
) -> None:
    out = _run(["-m", "benchmarks", "--quick"], _without("matplotlib", tmp_path), tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "python -m benchmarks: error: the benchmarks need the verify, bench and train extras "
        f"(missing module 'matplotlib'); install them with: {install_hint('verify,bench,train')}"
    )


def test_training_with_check_against_jax_but_no_jax_fails_before_training(
    tmp_path: Path,
) -> None:
    out = _run(
        ["-m", "manual_bp.train", "--check-against-jax"], _without("jax", tmp_path), tmp_path
    )
    assert out.returncode == 1
    assert out.stdout == ""  # nothing trained
    assert 'pip install ".[verify]"' in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_requires_module_raises_the_hint_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, "jax", None)
    monkeypatch.delitem(sys.modules, "verification._requires", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"needs the `verify` extra") as info:
        importlib.import_module("verification._requires")
    assert info.value.name == "jax"
    monkeypatch.setattr(sys, "argv", ["-m"])  # as while `python -m verification` locates it
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("verification._requires")
    assert exit_info.value.code == 1
