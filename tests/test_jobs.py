"""The main job across processes and machines: ``--jobs N`` prints the table of one process,
``--shard i/n`` splits the rows so that n machines cover each exactly once, and ``merge`` joins
the shards' JSON into the table of the whole run, refusing anything that is not exactly that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from verification import __main__ as entry, _cache
from verification.cli.report import main, merge_main
from verification.mainjob import _jobs
from verification.mainjob.checks import CHECKS

ROOT = Path(__file__).resolve().parent.parent
_SMALL = ["--max-examples", "3", "--only", "relu", "--only", "softmax", "--only", "linear"]


def _table(printed: str) -> str:
    """The table and the pass count, without the seconds (which differ from run to run)."""
    return printed.split(" examples, ")[0]


@given(n=st.integers(1, 60), dtypes=st.sampled_from([["float64"], ["float64", "float32"]]))
def test_shards_cover_every_row_exactly_once(n: int, dtypes: list[str]) -> None:
    everything = _jobs.tasks(dtypes)
    parts = [_jobs.shard(everything, i, n) for i in range(1, n + 1)]
    covered = [task for part in parts for task in part]
    assert sorted(covered) == sorted(everything)
    assert len(covered) == len(set(covered)) == len(CHECKS) * len(dtypes)
    checks = [{name for name, _ in part} for part in parts]
    assert max(map(len, checks)) - min(map(len, checks)) <= 1  # balanced
    for part, names in zip(parts, checks, strict=True):  # a check's dtypes stay together
        assert len(part) == len(names) * len(dtypes)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "2", "a/b", "1/2/3", "-1/2", ""])
def test_a_shard_outside_one_to_n_or_not_i_slash_n_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        _jobs.parse_shard(text)


def test_parallel_jobs_print_the_same_table_as_one_process_and_as_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = subprocess.run(
        [sys.executable, "-m", "verification", *_SMALL, "--json", str(tmp_path / "cmd.json")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert main([*_SMALL, "--json", str(tmp_path / "one.json")]) == 0
    one = capsys.readouterr().out
    assert main([*_SMALL, "--jobs", "2", "--json", str(tmp_path / "two.json")]) == 0
    two, progress = capsys.readouterr()
    assert _table(two) == _table(one) == _table(command.stdout)
    assert progress.count("rows done, 0 failed") == 4  # reported as they finished
    rows = [
        json.loads((tmp_path / f).read_text())["rows"] for f in ("cmd.json", "one.json", "two.json")
    ]
    for row in (r for run in rows for r in run):
        row.pop("seconds")
    assert rows[0] == rows[1] == rows[2]


def test_merged_shards_give_the_table_and_json_of_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_SMALL, "--json", str(tmp_path / "all.json")]) == 0
    whole = capsys.readouterr().out
    files = []
    for i in (1, 2, 3, 4):
        files.append(str(tmp_path / f"shard{i}.json"))
        assert main([*_SMALL, "--shard", f"{i}/4", "--json", files[-1]]) == 0
        assert f"shard {i}/4" in capsys.readouterr().out
    merged_json = tmp_path / "merged.json"
    assert entry.main(["merge", *reversed(files), "--json", str(merged_json)]) == 0
    merged = capsys.readouterr().out
    assert _table(merged) == _table(whole)
    assert "over 4 shard(s)" in merged
    documents = [json.loads(p.read_text()) for p in (tmp_path / "all.json", merged_json)]
    for document in documents:
        document.pop("seconds")
        for row in document["rows"]:
            row.pop("seconds")
    assert documents[0] == documents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shards")
    paths = [folder / f"s{i}.json" for i in (1, 2)]
    for i, path in enumerate(paths, 1):
        assert main([*_SMALL, "--dtype", "float64", "--shard", f"{i}/2", "--json", str(path)]) == 0
    return paths


def _merge_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        merge_main(argv)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("python -m verification merge: error: ")
    return err


def _edited(path: Path, tmp_path: Path, change: Any) -> str:
    document = json.loads(path.read_text())
    change(document)
    out = tmp_path / f"edited-{path.name}"
    out.write_text(json.dumps(document))
    return str(out)


def test_merge_refuses_a_missing_shard(
    shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert "row(s) missing" in _merge_error([str(shards[0])], capsys)


def test_merge_refuses_a_row_twice(shards: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    err = _merge_error([str(shards[0]), str(shards[1]), str(shards[0])], capsys)
    assert "is in both" in err


def test_merge_refuses_shards_of_different_runs(
    shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _edited(shards[1], tmp_path, lambda d: d.update(max_examples=99))
    assert "another run" in _merge_error([str(shards[0]), other], capsys)


def test_merge_refuses_a_row_outside_the_run(
    shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = _edited(shards[1], tmp_path, lambda d: d["rows"][0].update(dtype="float16"))
    assert "not in the run's tasks" in _merge_error([str(shards[0]), stray], capsys)


def test_merge_refuses_unreadable_or_foreign_files(
    shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "cannot read" in _merge_error([str(tmp_path / "absent.json")], capsys)
    (tmp_path / "bad.json").write_text("{not json")
    assert "not JSON" in _merge_error([str(tmp_path / "bad.json")], capsys)
    (tmp_path / "audit.json").write_text('{"passed": true}')
    assert "is not an output of" in _merge_error([str(tmp_path / "audit.json")], capsys)
    out = str(tmp_path / "no" / "merged.json")
    assert "does not exist" in _merge_error([*map(str, shards), "--json", out], capsys)


def test_merge_of_a_failing_shard_exits_1_and_names_the_failure(
    shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(document: dict[str, Any]) -> None:
        document["rows"][0].update(passed=False, failures=2, first_failure="out of tolerance")
        document["rows"][0].update(max_abs_error=None, failing_inputs="(array([1.0]),)")

    failing = _edited(shards[0], tmp_path, fail)
    assert merge_main([failing, str(shards[1])]) == 1
    out = capsys.readouterr().out
    assert "FAIL (2)" in out
    assert "out of tolerance\n  inputs: (array([1.0]),)" in out


def test_a_worker_takes_the_parent_s_cache_choice_and_runs_a_check_s_rows(tmp_path: Path) -> None:
    before = _cache.directory()
    try:
        _jobs._start_worker(str(tmp_path))
        assert _cache.directory() == tmp_path
        _jobs._start_worker(None)
        assert _cache.directory() is None
    finally:
        _cache.configure(before)
    rows = _jobs._run_group([("relu", "float64"), ("relu", "float32")], 2)
    assert [(r.name, r.dtype, r.examples, r.passed) for r in rows] == [
        ("relu", "float64", 2, True),
        ("relu", "float32", 2, True),
    ]
