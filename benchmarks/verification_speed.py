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
row's problems, drawn in this process just before each measurement. For the audit, ``benchmarks.audit_throughput`` (the MLP
problem) runs twice in subprocesses on one new cache folder: the first process's cold audit is
cold, the second's is cached; its second audit in the same process is warm. The goal: at
least ``TARGET`` of the generation rate from the second run on.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
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

    from verification.mainjob.checks import check_settings

    start = time.perf_counter()
    for dtype in dtypes:
        test: Callable[[], None] = check_settings(max_examples)(
            given(problems(np.dtype(dtype)))(one)
        )
        test()
    return count, time.perf_counter() - start


def _python(
    args: Sequence[str], cache: Path | None
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``python ARGS`` with the repository on the path; (result, wall seconds, CPU seconds
    of the process and its workers: what the machine's load does not inflate)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    if cache is not None:
        env["MANUAL_BP_JAX_CACHE"] = str(cache)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, wall, cpu


def _main_job(max_examples: int, jobs: int, cache: Path, label: str) -> dict[str, Any]:
    """One ``python -m verification`` process: examples, job seconds, wall seconds."""
    out = cache.parent / f"report-{jobs}-{label}.json"
    argv = ["-m", "verification", "--max-examples", str(max_examples), "--jobs", str(jobs)]
    done, wall, cpu = _python([*argv, "--cache-dir", str(cache), "--json", str(out)], None)
    if not out.exists():
        raise RuntimeError(f"python -m verification wrote no JSON:\n{done.stderr[-2000:]}")
    document = json.loads(out.read_text(encoding="utf-8"))
    return {
        "examples": sum(r["examples"] for r in document["rows"]),
        "job_seconds": float(document["seconds"]),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "passed": document["passed"],
    }


def _warm_main_job(max_examples: int, cache: Path) -> dict[str, Any]:
    """The main job's rows twice in this process (cache loaded by the first); the second."""
    from verification import _cache
    from verification.mainjob._jobs import run_tasks, tasks

    _cache.configure(cache)
    selected = tasks(["float64", "float32"])
    run_tasks(selected, max_examples)
    start, cpu = time.perf_counter(), time.process_time()
    rows = run_tasks(selected, max_examples)
    seconds = time.perf_counter() - start
    return {
        "examples": sum(r.examples for r in rows),
        "job_seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
    }


def _generation(max_examples: int) -> tuple[float, float]:
    """Examples per wall second and per CPU second of drawing every row's problems (both
    dtypes) with an empty test body."""
    from verification.mainjob.checks import CHECKS

    counts, seconds, cpu = 0, 0.0, time.process_time()
    for check in CHECKS:
        c, s = generation_rate(check.problems, ["float64", "float32"], max_examples)
        counts, seconds = counts + c, seconds + s
    return counts / seconds, counts / (time.process_time() - cpu)


def _main_job_rows(max_examples: int, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each measurement against the generation rate measured just before it (the machine's
    load drifts between measurements; adjacent pairs keep the ratio honest)."""
    runs: dict[str, dict[str, Any]] = {}
    for jobs in (1, 2):
        cache = tmp / f"main-cache-{jobs}"
        for label in ("cold", "cached"):
            gen, gen_cpu = _generation(max_examples)
            runs[f"{label}, {jobs} job(s)"] = {
                **_main_job(max_examples, jobs, cache, label),
                "generation_per_s": gen,
                "generation_per_cpu_s": gen_cpu,
            }
    gen, gen_cpu = _generation(max_examples)
    runs["warm, in-process, 1 job"] = {
        **_warm_main_job(max_examples, tmp / "main-cache-1"),
        "generation_per_s": gen,
        "generation_per_cpu_s": gen_cpu,
    }
    what = f"python -m verification --max-examples {max_examples}"
    rows = [
        {
            "what": "generation only (every row's problems, both dtypes; median of the runs)",
            "examples_per_s": statistics.median(r["generation_per_s"] for r in runs.values()),
            "fraction": 1.0,
        }
    ]
    for label, r in runs.items():
        clocks = [("job clock", "job_seconds"), ("wall time (with Python start)", "wall_seconds")]
        for clock, key in clocks:
            if key in r:
                rate = r["examples"] / r[key]
                rows.append(
                    {
                        "what": f"{what}: {label}, {clock}",
                        "examples_per_s": rate,
                        "fraction": rate / r["generation_per_s"],
                    }
                )
    return rows, runs


def _audit_rows(max_examples: int, tmp: Path) -> list[dict[str, Any]]:
    cache = tmp / "audit-cache"
    argv = ["-m", "benchmarks.audit_throughput", str(max_examples), "--json"]
    found: dict[str, dict[str, Any]] = {}
    for label in ("first process", "second process"):
        done, _, _ = _python(argv, cache)
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
    markdown = _markdown(rows) + "\n\n" + _seconds_table(job_runs, job_examples)
    return Section("verification_speed", "3. Verification speed", payload, markdown)


def _seconds_table(runs: dict[str, dict[str, Any]], max_examples: int) -> str:
    """Seconds of each main-job run (wall, the job's clock, CPU of all its processes) and the
    CPU-time fraction: generation's examples per CPU second over the job's (load-proof)."""
    table = markdown_table(
        [
            "python -m verification",
            "wall s",
            "job clock s",
            "CPU s (all processes)",
            "fraction of generation, CPU time",
        ],
        [
            [
                label,
                fmt(r.get("wall_seconds"), 1),
                fmt(r["job_seconds"], 1),
                fmt(r["cpu_seconds"], 1),
                fmt(r["examples"] / r["cpu_seconds"] / r["generation_per_cpu_s"]),
            ]
            for label, r in runs.items()
        ],
    )
    return f"Seconds per run of the main job (--max-examples {max_examples})\n\n" + table


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
