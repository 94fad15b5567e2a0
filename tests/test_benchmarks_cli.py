"""``python -m benchmarks``: plain --help, output folder checked first, runs from any
directory, and the README's figures (docs/bench/) change only with --update-docs."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("jax")

import benchmarks.__main__ as bench
from benchmarks._report import Section

ROOT = Path(__file__).resolve().parent.parent


def test_help_is_plain_text_with_every_section_and_the_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for markup in ("``", ":mod:", ":func:", ".. "):
        assert markup not in text
    for name in bench.SECTIONS:
        assert name in text
    flat = " ".join(text.split())
    assert "default: bench-results/ in the clone, not tracked by git" in flat
    assert "--update-docs" in flat


def test_help_works_from_any_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "usage: python -m benchmarks" in out.stdout


def test_default_output_folder_is_untracked_and_outside_docs() -> None:
    assert bench.OUT == ROOT / "bench-results"
    assert "bench-results/" in (ROOT / ".gitignore").read_text().splitlines()
    assert bench.parser().parse_args([]).out == bench.OUT


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.joinpath("file").write_text("x") and p / "file", "is a file; give a folder"),
        (lambda p: p / "file" / "sub", "cannot create the folder"),
    ],
)
def test_a_bad_output_folder_is_one_line_and_exit_2_before_any_run(
    make: Any, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    out = make(tmp_path)
    assert bench.main(["--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no section ran
    assert captured.err.strip().splitlines() == [
        f"python -m benchmarks: error: --out {out}{':' if 'cannot' in words else ''} {words}"
        + (" (Not a directory)" if "cannot" in words else "")
    ]


@pytest.fixture
def fake_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """One section that runs instantly; docs/bench/ redirected to a temporary folder."""
    module = types.ModuleType("fake_section")

    def run(quick: bool) -> Section:
        return Section("fake", "A fake section", {"rows": []}, "| a |\n|---|")

    def figure(payload: dict[str, Any], path: Path) -> Path:
        path.write_bytes(b"png")
        return path

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_section", module)
    monkeypatch.setattr(bench, "SECTIONS", {"fake": ("fake_section", figure)})
    docs = tmp_path / "docs" / "bench"
    monkeypatch.setattr(bench, "DOCS", docs)
    return docs


def test_tracked_figures_stay_untouched_without_update_docs(
    fake_section: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    assert bench.main(["--out", str(out)]) == 0
    assert (out / "fake.png").read_bytes() == b"png"
    assert (out / "fake.json").exists()
    assert not fake_section.exists()
    assert "figures copied" not in capsys.readouterr().out


def test_update_docs_copies_the_figures_to_docs(
    fake_section: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--out", str(tmp_path / "results"), "--update-docs"]) == 0
    assert (fake_section / "fake.png").read_bytes() == b"png"
    assert f"figures copied to {fake_section}" in capsys.readouterr().out
