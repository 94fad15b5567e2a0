"""The main job ``python -m verification``: exit status, table, JSON, failure detection, and
the ``__main__`` dispatch between ``report`` and ``audit``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import manual_bp
from verification import __main__ as entry
from verification.report import CHECKS, main


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


def test_bad_options_are_rejected() -> None:
    with pytest.raises(SystemExit):
        main(["--max-examples", "0"])
    with pytest.raises(SystemExit):
        main(["--only", "no_such_check"])


def test_entry_point_accepts_report_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_report(argv: list[str]) -> int:
        seen.append(list(argv))
        return 0

    monkeypatch.setattr("verification.report.main", fake_report)
    assert entry.main(["report", "--dtype", "float64"]) == 0
    assert entry.main(["--dtype", "float32"]) == 0
    assert seen == [["--dtype", "float64"], ["--dtype", "float32"]]


def test_entry_point_dispatches_audit_to_the_audit_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("verification._audit_cli")
    calls: list[list[str]] = []

    def fake_audit(argv: list[str]) -> int:
        calls.append(list(argv))
        return 3

    fake.main = fake_audit  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "verification._audit_cli", fake)
    assert entry.main(["audit", "--help-me"]) == 3
    assert calls == [["--help-me"]]


def test_entry_point_says_clearly_when_the_audit_cli_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "verification._audit_cli", None)
    assert entry.main(["audit"]) == 2
    assert "audit command is not installed" in capsys.readouterr().err
