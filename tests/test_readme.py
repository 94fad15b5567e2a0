"""README.md and the pages of docs/ quote only what the code prints: every marked output block
of every page is rerun by ``tools/readme_outputs.py`` and must match (parts marked ``varies``,
such as timings and library versions, excepted), under the same version rules on every page.
Regenerate with ``python tools/readme_outputs.py``."""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "readme_outputs", ROOT / "tools/readme_outputs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_outputs"] = module
    spec.loader.exec_module(module)
    return module


ro = _load()
PAGE_LINES = {
    ro.page_name(page): page.read_text(encoding="utf-8").split("\n") for page in ro.pages()
}
BLOCKS = [
    b for name, lines in PAGE_LINES.items() for b in ro.parse(lines, name) if b.kind == "output"
]


def _skip_without_torch(block: Any) -> None:
    """A block whose commands run a quoted file that imports torch needs the bench extra's
    torch (the CPU build is installed by the 3.11 sessions only)."""
    files = [b for b in ro.parse(PAGE_LINES[block.page], block.page) if b.kind == "file"]
    text = " ".join(c for c, _ in ro._sessions(block))
    if any(f.name in text and "import torch" in "\n".join(f.content) for f in files):
        pytest.importorskip("torch")


@pytest.mark.slow
@pytest.mark.readme
@pytest.mark.parametrize("block", BLOCKS, ids=[b.label for b in BLOCKS])
def test_readme_output_is_what_the_command_prints(block: Any) -> None:
    _skip_without_torch(block)
    lines = PAGE_LINES[block.page]
    files = [b for b in ro.parse(lines, block.page) if b.kind == "file"]
    same_versions = ro.recorded_environment(lines) == ro.environment()
    same, new = ro.compare(block, ro.run(block, files), same_versions)
    diff = "\n".join(difflib.unified_diff(block.content, new, block.page, "fresh", lineterm=""))
    assert same, f"{block.page} drifted; rerun python tools/readme_outputs.py\n{diff}"


def test_readme_marks_the_outputs_it_quotes() -> None:
    commands = " ".join(b.label for b in BLOCKS)
    for command in ("python -m manual_bp.train", "python -m verification twin", "audit"):
        assert command in commands


def test_every_page_of_docs_that_quotes_an_output_is_checked() -> None:
    """A page added under docs/ is covered as soon as it marks a block; built output is not."""
    checked = set(PAGE_LINES)
    assert "README.md" in checked
    for page in (ROOT / "docs").rglob("*.md"):
        name = str(page.relative_to(ROOT))
        lines = page.read_text(encoding="utf-8").split("\n")
        if "_build" not in page.parts and any(ln.startswith("<!-- output") for ln in lines):
            assert name in checked, name


def test_each_page_is_checked_with_its_own_files(tmp_path: Path) -> None:
    """A command sees the file blocks of its own page only: the same file name on two pages
    can hold different code."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "README.md").write_text("# r\n", encoding="utf-8")
    for name, word in (("a.md", "one"), ("b.md", "two")):
        text = f"<!-- file: w.txt -->\n```\n{word}\n```\n\n<!-- output -->\n```\n$ cat w.txt\n{word}\n```\n"
        (docs / name).write_text(text, encoding="utf-8")
    found = ro.pages(tmp_path)
    assert [p.name for p in found] == ["README.md", "a.md", "b.md"]
    for page in found[1:]:
        assert ro.process(page, check=True, listing=False, only="") == 0
    (docs / "b.md").write_text(
        (docs / "b.md").read_text(encoding="utf-8").replace("two\n```\n\n", "three\n```\n\n", 1),
        encoding="utf-8",
    )
    assert ro.process(docs / "b.md", check=True, listing=False, only="") == 1


# The machinery itself, on a small README of its own --------------------------------------

DEMO = """\
<!-- file: greet.py -->
```python
import sys, time
print("hello", sys.argv[1])
print(f"took {time.perf_counter() % 1:.3f} s")
```

<!-- output varies="seconds" -->
```console
$ python greet.py world
hello world
took 0.123 s
$ echo a; echo b; echo c; echo d
a
...
d
```

<!-- output run="python greet.py table" varies="seconds" -->
| a | b |
hello table
took 9.999 s
<!-- /output -->
"""


def _demo(text: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    status = ro.main(["--readme", str(readme), *args])
    return status, readme.read_text(encoding="utf-8")


def test_check_passes_when_only_the_marked_parts_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DEMO.replace("| a | b |\n", "")
    status, after = _demo(text, tmp_path, "--check")
    assert status == 0, capsys.readouterr().out
    assert after == text  # --check never writes


def test_check_fails_and_shows_the_diff_when_the_output_drifts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = _demo(DEMO.replace("hello world", "hello there"), tmp_path, "--check")
    out = capsys.readouterr().out
    assert status == 1
    assert "DRIFTED README.md:9: python greet.py world" in out
    assert "\n-hello there\n" in out
    assert "\n+hello world\n" in out
    assert "DRIFTED README.md:19: python greet.py table" in out  # the stray table row


def test_rewrite_puts_fresh_output_in_keeping_elisions_and_commands(tmp_path: Path) -> None:
    status, after = _demo(DEMO.replace("hello world", "stale"), tmp_path)
    assert status == 0
    assert "$ python greet.py world\nhello world\ntook " in after
    assert "$ echo a; echo b; echo c; echo d\na\n...\nd\n```" in after
    assert '<!-- output run="python greet.py table" varies="seconds" -->\nhello table\n' in after
    assert _demo(after, tmp_path, "--check")[0] == 0


def test_pip_install_commands_are_shown_but_not_run(tmp_path: Path) -> None:
    text = '<!-- output -->\n```console\n$ python -m pip install ".[nothing-here]"\n$ echo ok\nok\n```\n'
    assert _demo(text, tmp_path, "--check")[0] == 0


def test_unknown_attributes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown attribute"):
        _demo('<!-- output timing="x" -->\n```\n$ echo\n```\n', tmp_path, "--check")


def test_list_names_unmarked_output_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _demo(DEMO + "\n```\n$ echo unchecked\nunchecked\n```\n", tmp_path, "--list")
    out = capsys.readouterr().out
    assert "file   greet.py" in out
    assert "unmarked output-like block at README.md:" in out


def test_version_dependent_parts_count_only_when_the_versions_changed(tmp_path: Path) -> None:
    text = '<!-- output versions="v[0-9]+" -->\n```\n$ echo built with v$((0 + 1))\nbuilt with v2\n```\n'
    assert _demo(text, tmp_path, "--check")[0] == 0  # no record: versions may differ
    status, after = _demo(text, tmp_path)  # a rewrite records this environment
    assert status == 0
    assert after.rstrip().endswith(ro.ENV_LINE.format(ro.environment()))
    assert "built with v1" in after
    other = after.replace("built with v1", "built with v7").replace("Python ", "Python 0")
    assert _demo(other, tmp_path, "--check")[0] == 0  # other versions: v7 excepted
    assert _demo(other.replace("Python 0", "Python "), tmp_path, "--check")[0] == 1


def test_decimal_numbers_are_excepted_only_when_the_versions_changed(tmp_path: Path) -> None:
    text = (
        "<!-- output -->\n```\n$ echo fd 0.2975$((7 + 66)) tiny 8.35683e-17 n $((12 + 1)) of 40"
        " on 1.2.3\nfd 0.297573 tiny 8.35683e-17 n 13 of 40 on 1.2.3\n```\n"
    )
    status, after = _demo(text, tmp_path)  # records this environment
    assert status == 0
    drifted = after.replace("fd 0.297573", "fd 0.297258").replace("8.35683e-17", "-1e-16")
    assert _demo(drifted, tmp_path, "--check")[0] == 1  # same versions: every digit counts
    other = drifted.replace("Python ", "Python 0")
    assert _demo(other, tmp_path, "--check")[0] == 0  # other versions: measured decimals free
    # ...but integers (counts, indices, shapes), words and version-like strings still count,
    # and a decimal must still stand where the README has one
    for old, new in [("n 13", "n 14"), ("tiny", "huge"), ("1.2.3", "1.2.4"), ("0.297258", "NaN")]:
        head, _, tail = other.rpartition(old)  # the output line, not the command
        assert _demo(head + new + tail, tmp_path, "--check")[0] == 1, new


def test_the_stage_audit_drift_seen_on_a_fresh_clone_passes_under_other_versions() -> None:
    """jax 0.12.1 / numpy 2.5.5 on Python 3.13 moved a forward difference at step 3.5e-13 in
    its fourth digit: under other versions that is not drift; under the recorded ones it is."""
    block = ro.Block(
        "output",
        0,
        ["$ run", "finite differences (forward 0.297573, backward 0, step 3.5e-13) do not confirm"],
    )
    fresh = [["finite differences (forward 0.297258, backward 0, step 3.5e-13) do not confirm"]]
    assert ro.compare(block, fresh, same_versions=False)[0]
    assert not ro.compare(block, fresh, same_versions=True)[0]
    moved = [["finite differences (forward 0.297258, backward 1, step 3.5e-13) do not confirm"]]
    assert not ro.compare(block, moved, same_versions=False)[0]


def test_the_recorded_environment_names_the_versions_and_the_processor() -> None:
    """The last digits of a sum follow numpy's and XLA's kernels, chosen by the processor's
    vector instructions (AVX2 vs AVX-512) as much as by the versions: both are recorded."""
    env = ro.environment()
    for name in ("Python 3.", "numpy ", "jax ", "jaxlib ", "hypothesis ", "cpu "):
        assert name in env
    assert env.endswith(ro.cpu_level())
    machine, level = ro.cpu_level().split(" ")
    assert machine
    assert level


def test_commands_run_without_the_checking_machines_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI=true picks the pytest plugin's thorough profile, and the suite's own save folder
    moves saved counterexamples: a quoted output is what a reader's shell prints."""
    for name in ("CI", "HYPOTHESIS_PROFILE", "GRADIENT_AUDIT_PROFILE", "MANUAL_BP_AUDIT_DIR"):
        monkeypatch.setenv(name, "set-by-the-checking-machine")
    text = '<!-- output -->\n```\n$ echo "[${CI:-unset}] [${MANUAL_BP_AUDIT_DIR:-unset}]"\n[unset] [unset]\n```\n'
    assert _demo(text, tmp_path, "--check")[0] == 0
