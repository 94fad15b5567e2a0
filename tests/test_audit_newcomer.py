"""A newcomer's second hour (issue 21, items 10-12): spec mistakes are spec errors before any
candidate call, with a suggestion; ``--dims`` overrides only what it names; help that gives the
defaults for the dtype; no BrokenPipeError into ``head``; reports name functions as given;
counterexample files where the user chooses, named so they can be found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from verification.auditing import AuditSpecError, audit, audit_vjp, named_arrays, parse_shapes
from verification.auditing._reproducer import SAVE_DIR_VARIABLE, save_counterexample
from verification.auditing._targets import resolve
from verification.cli.audit import main as audit_main
from verification.cli.audit_vjp import main as vjp_main

Array = Any

MODULE = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np


    def index_loss(z, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))


    def index_grad(z, y):
        raise AssertionError("the candidate must not be called")


    def layer(x):
        return jnp.tanh(x)


    def layer_grad(x):
        return 1 - np.tanh(x) ** 2


    def big_loss(x):
        return jnp.sum(x ** 2)


    def big_grad_one_wrong(x):
        g = 2 * x
        g.flat[-1] += 1.0
        return g
    """
)


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "newcomer_mod.py"
    path.write_text(MODULE)
    return path


class Counting:
    """A candidate that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return args[0]


def _one_line_exit_2(status: int, capsys: pytest.CaptureFixture[str], words: str) -> None:
    captured = capsys.readouterr()
    assert status == 2, captured
    assert words in captured.err, captured.err
    assert captured.err.count("\n") == 1, captured.err
    assert captured.out == ""


# -- item 10: spec mistakes ---------------------------------------------------------------------


def test_a_class_count_naming_no_dimension_is_a_spec_error_with_the_name_meant() -> None:
    with pytest.raises(ValueError, match=r"did you mean classes\(k\)\?"):
        parse_shapes("z=m,k y=m:classes(q)")
    with pytest.raises(ValueError, match="appears once only"):
        named_arrays({"z": "m,k", "y": "m:classes(q)"})


def test_a_class_count_is_never_suggested_as_the_labels_own_batch_axis() -> None:
    # labels y=m alone: m is their own length, no class count; say how to give one instead
    with pytest.raises(ValueError, match="appears once only") as error:
        parse_shapes("x=m:classes(k)")
    assert "classes(m)" not in str(error.value)
    assert str(error.value).endswith("give an array that axis (e.g. scores=m,k) or fix it (k:=10)")
    assert parse_shapes("y=m:classes(k) k:=10") is not None  # the suggested fix is valid


def test_a_class_count_typo_on_the_command_line_fails_before_the_candidate(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"{module}:index_grad", "--loss", f"{module}:index_loss"]
    status = audit_main([*argv, "--shapes", "z=m,k y=m:classes(q)"])
    _one_line_exit_2(status, capsys, "did you mean classes(k)?")


def test_module_dot_function_suggests_module_colon_function() -> None:
    with pytest.raises(ValueError, match=r"did you mean sce:grad\?"):
        resolve("sce.grad")
    with pytest.raises(ValueError, match=r"did you mean pkg.sce:grad\?"):
        resolve("pkg.sce.grad")


def test_a_module_not_found_names_the_current_directory_and_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ImportError) as caught:
        resolve("no_such_module_21:grad")
    assert str(Path.cwd()) in str(caught.value)
    assert "PYTHONPATH" in str(caught.value)
    status = audit_main(["no_such_module_21:grad", "--loss", "x:y", "--shapes", "x=m"])
    _one_line_exit_2(status, capsys, "current directory")


def test_a_vector_valued_loss_points_to_audit_vjp(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidate = Counting()
    with pytest.raises(AuditSpecError, match="audit_vjp"):
        audit(candidate, jnp.tanh, named_arrays({"x": "m,n"}), max_examples=3, seed=0)
    assert candidate.calls == 0
    argv = [f"{module}:layer_grad", "--loss", f"{module}:layer", "--shapes", "x=m,n"]
    _one_line_exit_2(audit_main(argv), capsys, "audit-vjp")


@pytest.mark.parametrize(
    "args",
    [
        named_arrays({"x": "m,n"}),
        st.tuples(hnp.arrays(np.float64, (2, 3))),
        (np.ones((2, 3)),),
    ],
    ids=["named_arrays", "a strategy of one's own", "a concrete input"],
)
def test_audit_vjp_argnums_out_of_range_is_a_spec_error_before_any_call(args: Any) -> None:
    # argnums=1 would be the cotangent, which the audit appends: correct code was failed.
    candidate = Counting()
    with pytest.raises(AuditSpecError, match="out of range for the 1 inputs"):
        audit_vjp(candidate, jnp.tanh, args, argnums=1, max_examples=3, seed=0)
    assert candidate.calls == 0


def test_dims_naming_a_dimension_no_size_uses_is_an_error_with_a_suggestion(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="did you mean 'batch'"):
        named_arrays({"x": "batch,n"}, dims={"bath": [2]})
    argv = [f"{module}:layer_grad", "--reference", f"{module}:layer", "--shapes", "x=m,n"]
    _one_line_exit_2(vjp_main([*argv, "--dims", "q=2"]), capsys, "no size of the spec uses")


# -- item 11: dims, help, pipes, names -----------------------------------------------------------


@settings(max_examples=60, database=None, suppress_health_check=list(HealthCheck))
@given(named_arrays({"x": "m,n", "w": "n,h"}, dims={"m": [5]}))
def test_dims_override_the_names_given_and_keep_the_default_profiles_for_the_others(
    args: tuple[Any, ...],
) -> None:
    x, w = args
    assert x.shape[0] == 5
    assert 1 <= x.shape[1] <= 4
    assert 1 <= w.shape[1] <= 4


def test_dims_draw_the_other_names_from_their_default_profiles_not_one_size() -> None:
    from hypothesis import find

    strategy = named_arrays({"x": "m,n", "w": "n,h"}, dims={"m": [5]})
    assert find(strategy, lambda a: a[0].shape[1] > 1) is not None
    assert find(strategy, lambda a: a[1].shape[1] > 1) is not None


@pytest.mark.parametrize("command", [audit_main, vjp_main])
def test_bounds_help_gives_the_default_of_each_dtype(
    command: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        command(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3,1000 for float64, float32, bfloat16; 3,8 for float16" in text
    assert "the others keep the default" in text


def _run_into_closed_pipe(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m verification ARGV`` with its stdout's reader gone (``... | head -0``)."""
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write raises BrokenPipeError
    try:
        done = subprocess.run(
            [sys.executable, "-m", "verification", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=False,
        )
    finally:
        os.close(write)
    return done


@pytest.mark.parametrize("command", ["audit", "audit-vjp"])
def test_help_into_a_closed_pipe_prints_no_broken_pipe_error(command: str) -> None:
    done = _run_into_closed_pipe([command, "--help"], dict(os.environ))
    assert "BrokenPipe" not in done.stderr, done.stderr
    assert done.stderr == ""


def test_a_report_into_a_closed_pipe_keeps_its_exit_status_and_prints_no_error(
    module: Path,
) -> None:
    path = [str(module.parent), str(Path(__file__).resolve().parents[1])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    argv = ["audit", "newcomer_mod:big_grad_one_wrong", "--loss", "newcomer_mod:big_loss"]
    done = _run_into_closed_pipe([*argv, "--shapes", "x=m", "--max-examples", "5"], env)
    assert "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 1


def test_reports_name_the_functions_by_the_path_the_user_gave(
    module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"{module}:big_grad_one_wrong", "--loss", f"{module}:big_loss", "--shapes", "x=m"]
    assert audit_main([*argv, "--max-examples", "5", "--seed", "0"]) == 1
    out = capsys.readouterr().out
    assert (
        f"gradient audit of {module}:big_grad_one_wrong against jax.grad of {module}:big_loss"
        in out
    )


# -- item 12: where counterexamples are saved ------------------------------------------------------

BIG = ["--shapes", "x=m,n", "--dims", "m=40 n=30", "--max-examples", "3", "--seed", "0"]


def test_save_dir_chooses_where_a_large_counterexample_goes_and_its_name_says_whose(
    module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "saved" / "here"
    argv = [f"{module}:big_grad_one_wrong", "--loss", f"{module}:big_loss", *BIG]
    assert audit_main([*argv, "--save-dir", str(folder)]) == 1
    out = capsys.readouterr().out
    (saved,) = folder.iterdir()
    assert saved.name.startswith("counterexample-newcomer_mod.big_grad_one_wrong-")
    assert saved.suffix == ".npz"
    assert str(saved) in out


def test_the_environment_variable_chooses_the_folder_without_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SAVE_DIR_VARIABLE, str(tmp_path / "env"))
    path = save_counterexample((np.zeros(3),), name="mod:grad")
    assert path.parent == tmp_path / "env"
    assert path.name.startswith("counterexample-mod.grad-")


def test_save_dir_that_is_a_file_is_a_usage_error(
    module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    argv = [f"{module}:big_grad_one_wrong", "--loss", f"{module}:big_loss", *BIG]
    _one_line_exit_2(audit_main([*argv, "--save-dir", str(afile)]), capsys, "--save-dir")


def test_the_json_report_is_unchanged_by_the_save_dir(
    module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    argv = [f"{module}:big_grad_one_wrong", "--loss", f"{module}:big_loss", *BIG]
    assert audit_main([*argv, "--save-dir", str(tmp_path), "--json", str(out)]) == 1
    assert json.loads(out.read_text())["passed"] is False


def test_a_module_that_imports_something_missing_keeps_its_own_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_missing_21.py").write_text("import no_such_dependency_21\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="no_such_dependency_21") as caught:
        resolve("needs_missing_21:grad")
    assert "current directory" not in str(caught.value)
