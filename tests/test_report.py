"""The main job ``python -m verification``: exit status, table, JSON, failure detection, and
the ``__main__`` dispatch between ``report`` and ``audit``."""

from __future__ import annotations

import io
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import manual_bp
from verification import __main__ as entry, _cache
from verification.cli.report import Progress, main
from verification.mainjob.checks import CHECKS, Row


def test_real_package_passes_with_exit_status_0_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    assert main(["--max-examples", "3", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for check in CHECKS:
        assert check.formula in table
    assert "FAIL" not in table
    document = json.loads(out.read_text())
    assert document["passed"] is True
    rows = document["rows"]
    assert len(rows) == 2 * len(CHECKS)
    assert {row["dtype"] for row in rows} == {"float32", "float64"}
    for row in rows:
        assert row["passed"] is True
        assert row["examples"] >= 1
        assert 0 <= row["max_abs_error"] <= row["atol"] + row["rtol"] * 1e3
        assert row["rtol"] > 0


def _unnormalised_softmax_ce_grad(z: Any, y: Any) -> Any:
    """A plausible bug: (P - Y) without the 1/m."""
    return manual_bp.softmax(z) * np.sum(y, axis=-1, keepdims=True) - y


def test_a_broken_gradient_gives_exit_status_1_and_a_failing_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(manual_bp, "softmax_cross_entropy_grad", _unnormalised_softmax_ce_grad)
    out = tmp_path / "report.json"
    argv = ["--max-examples", "20", "--dtype", "float64", "--json", str(out)]
    status = main([*argv, "--only", "softmax_cross_entropy_grad", "--only", "softmax"])
    assert status == 1
    printed = capsys.readouterr().out
    assert "FAIL softmax_cross_entropy_grad [float64]" in printed
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["softmax"]["passed"] is True
    broken = rows["softmax_cross_entropy_grad"]
    assert broken["passed"] is False
    assert broken["failures"] > 0
    assert "out of tolerance" in broken["first_failure"]


def test_a_crashing_function_is_a_failed_row_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(z: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(manual_bp, "relu", crash)
    out = tmp_path / "report.json"
    argv = ["--max-examples", "2", "--dtype", "float32", "--only", "relu", "--json", str(out)]
    assert main(argv) == 1
    assert "raised RuntimeError: boom" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]  # strict JSON: the infinite error is null
    assert row["max_abs_error"] is None


def test_a_result_in_the_wrong_dtype_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = manual_bp.sigmoid
    monkeypatch.setattr(manual_bp, "sigmoid", lambda z: real(z).astype(np.float64))
    assert main(["--max-examples", "2", "--dtype", "float32", "--only", "sigmoid"]) == 1
    assert "dtype float64 for float32 input" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json", "/nonexistent/x.json"], "--json /nonexistent/x.json: directory /nonexistent"),
        (["--json", "{tmp}"], "is a directory"),
        (["--max-examples", "0"], "--max-examples must be at least 1"),
        (["--max-examples", "many"], "invalid int value"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--shard", "3/2"], "i must be between 1 and n"),
        (["--shard", "half"], "--shard expects i/n"),
        (["--only", "no_such_check"], "invalid choice"),
        (["--dtype", "float16"], "invalid choice"),
        (["--cache-dir", "{tmp}/file"], "exists and is not a directory"),
        (["--cache-dir", "{tmp}", "--no-cache"], "not allowed with argument"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_a_usage_mistake_is_one_line_with_exit_status_2_before_any_work(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as stopped:
        main([arg.format(tmp=tmp_path) for arg in argv])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # no table: nothing ran
    assert err.count("\n") == 1
    assert err.startswith("python -m verification: error: ")
    assert message in err


def test_help_gives_the_subcommands_and_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    usage = text.split("\n\n")[0]
    for subcommand in ("[report]", "verification audit", "verification merge", "verification twin"):
        assert subcommand in usage
    for option in ("--max-examples", "--dtype", "--only", "--jobs", "--shard", "--json"):
        assert option in usage
    for default in ("(default 100)", "(default both)", "default 1)", "(default: every row)"):
        assert default in " ".join(text.split())
    assert "MANUAL_BP_JAX_CACHE" in text


def test_progress_off_a_terminal_is_a_line_per_quarter_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--max-examples", "2", "--only", "relu", "--only", "sigmoid", "--only", "softmax"]
    assert main([*argv, "--only", "linear"]) == 0  # 8 rows: lines after rows 2, 4, 6, 8
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert [line.split(" rows done")[0] for line in lines] == ["[2/8]", "[4/8]", "[6/8]", "[8/8]"]
    assert all(", 0 failed (" in line for line in lines)
    assert "rows done" not in out  # never mixed into the table on stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _row(name: str, failures: int = 0) -> Row:
    return Row(name, "f", name, "float64", examples=3, failures=failures)


def test_progress_on_a_terminal_rewrites_one_line_and_keeps_failures() -> None:
    terminal = _Terminal()
    progress = Progress(3, terminal)
    for row in (_row("relu"), _row("softmax", failures=2), _row("linear")):
        progress(row)
    text = terminal.getvalue()
    assert text.count("\n") == 1  # only the failure stays on screen
    assert "\r\033[K[2/3] FAIL (2) softmax [float64]\n" in text
    assert "[1/3] PASS relu [float64]" in text
    assert text.endswith("\r\033[K")  # the line is cleared before the table


def test_progress_off_a_terminal_names_a_failure_at_once() -> None:
    log = io.StringIO()
    progress = Progress(8, log)
    progress(_row("relu", failures=1))
    assert log.getvalue() == "[1/8] FAIL (1) relu [float64]\n"


def test_entry_point_accepts_report_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_report(argv: list[str]) -> int:
        seen.append(list(argv))
        return 0

    monkeypatch.setattr("verification.cli.report.main", fake_report)
    assert entry.main(["report", "--dtype", "float64"]) == 0
    assert entry.main(["--dtype", "float32"]) == 0
    assert seen == [["--dtype", "float64"], ["--dtype", "float32"]]


def test_entry_point_dispatches_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr("verification.cli.report.merge_main", lambda argv: seen.append(argv) or 5)
    assert entry.main(["merge", "a.json", "b.json"]) == 5
    assert seen == [["a.json", "b.json"]]


def test_entry_point_dispatches_audit_to_the_audit_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("verification.cli.audit")
    calls: list[list[str]] = []

    def fake_audit(argv: list[str]) -> int:
        calls.append(list(argv))
        return 3

    fake.main = fake_audit  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "verification.cli.audit", fake)
    assert entry.main(["audit", "--help-me"]) == 3
    assert calls == [["--help-me"]]


@pytest.fixture
def cache_restored() -> Any:
    """The process's compilation cache setting, put back after the test changes it."""
    before = _cache.directory()
    yield
    _cache.configure(before)


def test_no_cache_and_cache_dir_set_this_process_s_cache(
    cache_restored: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["--max-examples", "1", "--dtype", "float64", "--only", "relu"]
    assert main([*rows, "--no-cache"]) == 0
    assert _cache.directory() is None
    folder = tmp_path / "not" / "yet"  # created on first write
    assert main([*rows, "--cache-dir", str(folder)]) == 0
    assert _cache.directory() == folder
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json", "{tmp}/x.json"], "--json {tmp}/x.json: not writable"),
        (["--cache-dir", "{tmp}/new/sub"], "is not a writable directory"),
    ],
)
def test_an_unwritable_output_or_cache_dir_is_refused_before_any_work(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as root, nothing is denied
    with pytest.raises(SystemExit) as stopped:
        main([arg.format(tmp=tmp_path) for arg in argv])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message.format(tmp=tmp_path) in err
