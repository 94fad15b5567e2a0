"""Section 3: how fast the JAX ground truth verifies, against the rate of generating the data.

Verification draws problems with hypothesis, computes the manual result and the JAX reference,
and compares them; generating the problems alone is the ceiling. Each verification is measured
three ways, each as a fraction of the generation rate measured in the same run:

* **cold**: a fresh process with an empty compilation cache (JAX compiles every shape);
* **cached**: a second fresh process on the same cache (the compiled references come from
  disk: what a user sees from the second run on);
* **warm**: the same work again in a process that has already run it (nothing to load).

For the main job, ``python -m verification --max-examples N`` (every row, both dtypes) runs in
a subprocess with ``--cache-dir`` set to a new folder, with 1 and 2 jobs, rated by the job's own
clock (after the imports) and by the command's wall time; the generation rate is that of every
row's problems, drawn in this process. For the audit, ``benchmarks.audit_throughput`` (the MLP
problem) runs twice in subprocesses on one new cache folder: the first process's cold audit is
cold, the second's is cached; its second audit in the same process is warm. The goal: at
least ``TARGET`` of the generation rate from the second run on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis.strategies import SearchStrategy

from benchmarks._report import Section, fmt, markdown_table

__all__ = ["TARGET", "generation_rate", "run"]

TARGET = 0.8
ROOT = Path(__file__).resolve().parent.parent


def generation_rate(
    problems: Callable[[np.dtype[Any]], SearchStrategy[Any]],
    dtypes: Sequence[str],
    max_examples: int,
) -> tuple[int, float]:
    """(examples drawn, seconds) for drawing ``max_examples`` problems per dtype with an
    empty test body and the main job's settings: what hypothesis alone costs."""
    count = 0

    def one(_inputs: Any) -> None:
        nonlocal count
        count += 1

    from verification.report import check_settings

    start = time.perf_counter()
    for dtype in dtypes:
        test: Callable[[], None] = check_settings(max_examples)(
            given(problems(np.dtype(dtype)))(one)
        )
        test()
    return count, time.perf_counter() - start


def _python(
    args: Sequence[str], cache: Path | None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python ARGS`` from the repository root's package path; (result, wall seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    if cache is not None:
        env["MANUAL_BP_JAX_CACHE"] = str(cache)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, check=False
    )
    return done, time.perf_counter() - start


def _main_job(max_examples: int, jobs: int, cache: Path, label: str) -> dict[str, Any]:
    """One ``python -m verification`` process: examples, job seconds, wall seconds."""
    out = cache.parent / f"report-{jobs}-{label}.json"
    argv = ["-m", "verification", "--max-examples", str(max_examples), "--jobs", str(jobs)]
    done, wall = _python([*argv, "--cache-dir", str(cache), "--json", str(out)], None)
    if not out.exists():
        raise RuntimeError(f"python -m verification wrote no JSON:\n{done.stderr[-2000:]}")
    document = json.loads(out.read_text(encoding="utf-8"))
    return {
        "examples": sum(r["examples"] for r in document["rows"]),
        "job_seconds": float(document["seconds"]),
        "wall_seconds": wall,
        "passed": document["passed"],
    }


def _warm_main_job(max_examples: int, cache: Path) -> dict[str, Any]:
    """The main job's rows twice in this process (cache loaded by the first); the second."""
    from verification import _cache
    from verification._jobs import run_tasks, tasks

    _cache.configure(cache)
    selected = tasks(["float64", "float32"])
    run_tasks(selected, max_examples)
    start = time.perf_counter()
    rows = run_tasks(selected, max_examples)
    seconds = time.perf_counter() - start
    return {"examples": sum(r.examples for r in rows), "job_seconds": seconds}


def _main_job_rows(max_examples: int, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from verification.report import CHECKS

    counts, seconds = 0, 0.0
    for check in CHECKS:
        c, s = generation_rate(check.problems, ["float64", "float32"], max_examples)
        counts, seconds = counts + c, seconds + s
    gen = counts / seconds
    runs: dict[str, dict[str, Any]] = {}
    for jobs in (1, 2):
        cache = tmp / f"main-cache-{jobs}"
        runs[f"cold, {jobs} job(s)"] = _main_job(max_examples, jobs, cache, "cold")
        runs[f"cached, {jobs} job(s)"] = _main_job(max_examples, jobs, cache, "cached")
    runs["warm, in-process, 1 job"] = _warm_main_job(max_examples, tmp / "main-cache-1")
    what = f"python -m verification --max-examples {max_examples}"
    rows = [
        {
            "what": f"generation only (all {len(CHECKS)} rows' problems, both dtypes)",
            "examples_per_s": gen,
            "fraction": 1.0,
        }
    ]
    for label, r in runs.items():
        rate = r["examples"] / r["job_seconds"]
        rows.append(
            {"what": f"{what}: {label}, job clock", "examples_per_s": rate, "fraction": rate / gen}
        )
        if "wall_seconds" in r:
            rate = r["examples"] / r["wall_seconds"]
            rows.append(
                {
                    "what": f"{what}: {label}, wall time (with Python start, imports)",
                    "examples_per_s": rate,
                    "fraction": rate / gen,
                }
            )
    return rows, runs


def _audit_rows(max_examples: int, tmp: Path) -> list[dict[str, Any]]:
    cache = tmp / "audit-cache"
    argv = ["-m", "benchmarks.audit_throughput", str(max_examples), "--json"]
    found: dict[str, dict[str, Any]] = {}
    for label in ("first process", "second process"):
        done, _ = _python(argv, cache)
        if done.returncode != 0:
            raise RuntimeError(f"benchmarks.audit_throughput failed:\n{done.stderr[-2000:]}")
        for raw in json.loads(done.stdout):
            found[f"{label}: {raw['measurement']}"] = raw
    picks = [
        ("generation", "first process: hypothesis generation alone"),
        ("cold (empty cache)", "first process: audit, cold (compiles each shape)"),
        ("cached (second process)", "second process: audit, cold (compiles each shape)"),
        ("warm (in-process)", "second process: audit, warm (shapes compiled)"),
    ]
    rows = []
    for label, key in picks:
        raw = found[key]
        row = dict(raw)
        row["what"] = f"verification.audit, MLP problem, {max_examples} examples: {label}"
        row["examples_per_s"] = float(raw["examples_per_s"])
        row["fraction"] = float(raw["ratio_to_generation"])
        rows.append(row)
    return rows


def run(*, quick: bool = False) -> Section:
    """Measure verification and generation rates; return the table and verdicts."""
    audit_examples, job_examples = (50, 20) if quick else (200, 100)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        job, job_runs = _main_job_rows(job_examples, tmp)
        audit = _audit_rows(audit_examples, tmp)
    rows = [*job, *audit]
    verdicts = [
        {
            "target": f"verification rate / generation rate >= {TARGET}",
            "what": r["what"],
            "value": r["fraction"],
            "met": r["fraction"] >= TARGET,
        }
        for r in rows
        if r["fraction"] != 1.0
    ]
    payload = {"rows": rows, "main_job": job_runs, "verdicts": verdicts, "target": TARGET}
    return Section("verification_speed", "3. Verification speed", payload, _markdown(rows))


def _markdown(rows: list[dict[str, Any]]) -> str:
    table = markdown_table(
        ["measurement", "examples/s", "fraction of generation rate", f">= {TARGET}"],
        [
            [
                r["what"],
                fmt(r["examples_per_s"], 1),
                fmt(r["fraction"]),
                "-" if r["fraction"] == 1.0 else ("yes" if r["fraction"] >= TARGET else "**no**"),
            ]
            for r in rows
        ],
    )
    return (
        "Examples per second; cold: empty compilation cache, cached: a second process on the "
        "same cache, warm: the same work again in one process (generation rate measured in "
        "the same run)\n\n" + table
    )
