"""``python -m manual_bp.train``: options and paths checked before work, one-line errors,
divergence named, install hints for a clone, plain progress off a terminal, and the layering
(manual_bp never imports verification or JAX; ``--check-against-jax`` hands over to
``python -m verification twin``)."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manual_bp._cli import REPOSITORY
from manual_bp.train.__main__ import main
from manual_bp.train._progress import Progress, plain_epochs

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m manual_bp.train"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _one_line_error(err: str, *words: str) -> None:
    """stderr is exactly one line, starting with the program, containing every word."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: "), err
    for word in words:
        assert word in lines[0], err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------
# the run itself
# ------------------------------------------------------------------------------------------


def test_cli_trains_prints_a_summary_and_writes_a_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "curves.png"
    assert main(["--epochs", "1", "--hidden", "16", "--lr", "0.2", "--plot", str(plot)]) == 0
    out = capsys.readouterr()
    assert "digits: one-hidden-layer network (64-16-10), float64, 1437 training / 360 held-out" in (
        out.out
    )
    assert "1 epochs x 45 steps (batch 32, lr 0.2)" in out.out
    assert "held-out" in out.out
    assert f"plot written to {plot}" in out.out
    assert out.err.startswith("training: epoch 1/1: loss ")  # plain progress, not a tqdm bar
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_trains_logistic_regression_in_float32(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dataset", "breast-cancer", "--epochs", "3", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "logistic regression (30 features), float32, 455 training / 114 held-out" in out


def test_cli_batch_larger_than_the_data_exits_2_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--dataset", "breast-cancer", "--batch-size", "456"]) == 2
    _one_line_error(capsys.readouterr().err, "batch_size must be >= 1 and <= 455")


# ------------------------------------------------------------------------------------------
# options and paths: one line, exit 2, before any work
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--seed", "-1"], ["--seed", "0 to 2**32 - 1", "'-1'"]),
        (["--seed", "4294967296"], ["--seed", "0 to 2**32 - 1"]),
        (["--lr", "nonsense"], ["--lr", "expected a number, got 'nonsense'"]),
        (["--lr", "-1"], ["--lr", "finite number > 0"]),
        (["--lr", "inf"], ["--lr", "finite number > 0"]),
        (["--epochs", "0"], ["--epochs", "integer >= 1"]),
        (["--epochs", "2.5"], ["--epochs", "whole number"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--dtype", "float16"], ["--dtype", "invalid choice"]),
        (["--dataset", "mnist"], ["--dataset", "invalid choice"]),
        (["--dataset", "breast-cancer", "--hidden", "8"], ["--hidden applies to the digits"]),
        (["--check"], ["unrecognized arguments: --check"]),  # no silent abbreviations
    ],
)
def test_cli_rejects_bad_options_in_one_line_with_exit_status_2(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    _one_line_error(out.err, *words, f"(see {PROG} --help)")
    assert out.out == ""


@pytest.mark.parametrize(
    ("plot", "words"),
    [
        ("missing/dir/x.png", ["folder", "does not exist; create it"]),
        ("out.txt", ["written as PNG; give a path ending in .png"]),
        (".", ["is a folder"]),
    ],
)
def test_cli_checks_the_plot_path_before_training(
    plot: str,
    words: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--plot", plot]) == 2
    out = capsys.readouterr()
    _one_line_error(out.err, f"--plot {plot}", *words)
    assert out.out == ""  # nothing was trained
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_to_replace_a_readme_figure_unless_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figure = REPOSITORY / "docs" / "training.png"
    before = figure.read_bytes()
    assert main(["--plot", str(figure)]) == 2
    _one_line_error(
        capsys.readouterr().err, "would replace a figure of the README", "--update-docs"
    )
    assert figure.read_bytes() == before


def test_cli_update_docs_lets_the_plot_replace_a_readme_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "training.png").write_bytes(b"old")
    monkeypatch.setattr("manual_bp._cli.REPOSITORY", tmp_path)
    argv = ["--dataset", "breast-cancer", "--epochs", "1", "--plot", str(docs / "training.png")]
    assert main(argv) == 2
    assert main([*argv, "--update-docs"]) == 0
    assert (docs / "training.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()


# ------------------------------------------------------------------------------------------
# divergence
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", ["5", "1e6"])
def test_cli_names_divergence_and_exits_1(lr: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lr", lr]) == 1
    out = capsys.readouterr()
    _one_line_error(
        out.err.splitlines()[-1], "at epoch 1 (step", f"lower --lr (it is {float(lr):g})"
    )
    assert "loss grew over 1000x" in out.err or "non-finite" in out.err
    assert "RuntimeWarning" not in out.err
    assert "accuracy" not in out.out  # no summary of a diverged run


# ------------------------------------------------------------------------------------------
# missing extras: the install command for a clone, before any work
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("tqdm", [], "train"),
        ("sklearn", [], "train"),
        ("matplotlib", ["--plot", "never.png"], "train"),
        ("jax", ["--check-against-jax"], "verify"),
        ("hypothesis", ["--check-against-jax"], "verify"),
    ],
)
def test_cli_names_the_extra_to_install_when_a_dependency_is_missing(
    module: str,
    argv: list[str],
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # makes find_spec and import fail
    assert main(["--dataset", "breast-cancer", "--epochs", "1", *argv]) == 1
    out = capsys.readouterr()
    _one_line_error(out.err, f'pip install ".[{extra}]"', f"missing module {module!r}")
    assert out.out == ""  # failed before training
    assert not (tmp_path / "never.png").exists()


# ------------------------------------------------------------------------------------------
# progress: a bar on a terminal, a few plain lines elsewhere
# ------------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_prints_a_few_plain_lines() -> None:
    stream = io.StringIO()
    with Progress(60, stream) as progress:
        for epoch in range(60):
            progress.update(f"loss {epoch}")
    lines = stream.getvalue().splitlines()
    assert lines == [f"training: epoch {e}/60: loss {e - 1}" for e in (12, 24, 36, 48, 60)]
    assert "\r" not in stream.getvalue()


def test_progress_on_a_terminal_is_a_tqdm_bar() -> None:
    stream = _Terminal()
    with Progress(3, stream) as progress:
        for _ in range(3):
            progress.update("loss 1")
    assert "\r" in stream.getvalue()
    assert "3/3" in stream.getvalue()


@pytest.mark.parametrize("total", [1, 2, 5, 6, 29, 30, 31, 1000])
def test_plain_progress_prints_at_most_five_lines_ending_at_the_last_epoch(total: int) -> None:
    epochs = plain_epochs(total)
    assert 1 <= len(epochs) <= 5
    assert epochs[-1] == total
    assert epochs == sorted(set(epochs))


def test_cli_help_gives_every_option_a_default_and_an_explanation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [
        ("--dataset", "default: digits"),
        ("--hidden N", "default: 64"),
        ("--lr RATE", "default: 0.1"),
        ("--epochs N", "default: 30"),
        ("--batch-size N", "default: 32"),
        ("--seed N", "default: 0"),
        ("--dtype", "default: float64"),
        ("--plot PATH.png", "default: no plot"),
        ("--update-docs", "default: refuse"),
    ]:
        assert option in text
        assert default in text
    assert "exit status" in text
    assert 'pip install ".[train]"' in text


# ------------------------------------------------------------------------------------------
# layering: manual_bp never imports verification or JAX
# ------------------------------------------------------------------------------------------


def test_no_module_of_manual_bp_imports_verification_or_jax() -> None:
    offenders = []
    for path in sorted((ROOT / "manual_bp").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("verification", "jax")
            ]
    assert offenders == []


def test_importing_manual_bp_and_its_training_command_loads_no_optional_dependency() -> None:
    code = (
        "import sys, manual_bp, manual_bp.train, manual_bp.datasets, manual_bp.train.__main__\n"
        "import manual_bp.train.cli\n"
        "heavy = ('jax', 'verification', 'sklearn', 'matplotlib', 'tqdm', 'hypothesis')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    assert out.stdout.strip() == "[]"


def test_check_against_jax_runs_without_importing_verification_in_this_process() -> None:
    code = (
        "import sys\n"
        "from manual_bp.train.cli import main\n"
        "status = main(['--dataset', 'breast-cancer', '--epochs', '1', '--check-against-jax'])\n"
        "print('status', status, 'imported', sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('jax', 'verification')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    assert "JAX twin" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "status 0 imported []"


def test_plot_goes_where_asked_from_any_directory(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "manual_bp.train", "--dataset", "breast-cancer", "--epochs", "1",
         "--plot", "curves.png"],
        capture_output=True, text=True, cwd=tmp_path, env=_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "curves.png").exists()


def test_check_against_jax_runs_python_m_verification_twin_with_the_same_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert main(["--epochs", "2", "--check-against-jax", "--seed", "4"]) == 3
    assert calls == [[sys.executable, "-m", "verification", "twin", "--epochs", "2", "--seed", "4"]]
    assert capsys.readouterr().out == ""  # the twin process does the training


def test_cli_refuses_an_unwritable_plot_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["--plot", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys.readouterr().err, "is not writable; choose another path")


def test_cli_names_the_extra_when_loading_the_data_fails_to_import(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_load(*args: object, **kwargs: object) -> None:
        raise ImportError("No module named 'sklearn.datasets'", name="sklearn.datasets")

    monkeypatch.setattr("manual_bp.train.cli.load", broken_load)
    assert main(["--epochs", "1"]) == 1
    _one_line_error(capsys.readouterr().err, "loading the data", 'pip install ".[train]"')
