"""Section 3: how fast the JAX ground truth verifies, against the rate of generating the data.

Verification draws problems with hypothesis, computes the manual result and the JAX reference,
and compares them. Generating the problems alone is the floor: the target is a verification
rate of at least half the generation rate (JAX compiles once per shape, so the strategies draw
shapes from small fixed sets). Measured, with the generation rate taken in the same run:

* the MLP problem (``mlp_loss_and_grads`` row of ``verification.report``): hypothesis draws the
  report's own problems with the report's settings, once with an empty body (generation) and
  once through ``run_check`` (generation + manual + JAX + comparison), alternately, the first
  verification "cold" (JAX compiling each shape), the rest warm;
* the main job, ``python -m verification --max-examples N`` in a subprocess, every row, both
  dtypes: examples/s from the command's wall time and from the job's own clock (without the
  interpreter start and the JAX import), against the generation rate of all the rows' problems;
* ``verification.audit`` on the MLP problem, by ``benchmarks.audit_throughput.run`` (written by
  the audit's author), when it is there.
"""

from __future__ import annotations

import importlib
import json
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

__all__ = ["generation_rate", "run"]

TARGET = 0.5
MLP_CHECK = "mlp_loss_and_grads"


def generation_rate(
    problems: Callable[[np.dtype[Any]], SearchStrategy[Any]],
    dtypes: Sequence[str],
    max_examples: int,
) -> tuple[int, float]:
    """(examples drawn, seconds) for drawing ``max_examples`` problems per dtype with an
    empty test body: what hypothesis alone costs."""
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


def _mlp_rows(max_examples: int, rounds: int) -> list[dict[str, Any]]:
    from verification.report import CHECKS_BY_NAME, run_check

    check = CHECKS_BY_NAME[MLP_CHECK]
    gen_rates: list[float] = []
    verify_rates: list[float] = []
    cold_rate = None
    for r in range(rounds + 1):
        count, seconds = generation_rate(check.problems, ["float64"], max_examples)
        gen_rates.append(count / seconds)
        row = run_check(check, np.dtype("float64"), max_examples)
        if row.failures:
            raise RuntimeError(f"{MLP_CHECK} failed during the benchmark: {row.first_failure}")
        rate = row.examples / row.seconds
        if r == 0:
            cold_rate = rate
        else:
            verify_rates.append(rate)
    gen = statistics.median(gen_rates)
    warm = statistics.median(verify_rates)
    assert cold_rate is not None
    what = f"{MLP_CHECK}, float64, {max_examples} examples"
    return [
        {"what": f"generation only ({what})", "examples_per_s": gen, "fraction": 1.0},
        {
            "what": f"verification, cold: JAX compiles each shape ({what})",
            "examples_per_s": cold_rate,
            "fraction": cold_rate / gen,
        },
        {
            "what": f"verification, warm ({what}, median of {rounds})",
            "examples_per_s": warm,
            "fraction": warm / gen,
        },
    ]


def _main_job_rows(max_examples: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from verification.report import CHECKS

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "verification",
                "--max-examples",
                str(max_examples),
                "--json",
                str(out),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        if not out.exists():
            raise RuntimeError(f"python -m verification wrote no JSON:\n{done.stderr[-2000:]}")
        document = json.loads(out.read_text(encoding="utf-8"))
    examples = sum(r["examples"] for r in document["rows"])
    job_seconds = float(document["seconds"])
    counts, seconds = 0, 0.0
    for check in CHECKS:
        c, s = generation_rate(check.problems, ["float64", "float32"], max_examples)
        counts, seconds = counts + c, seconds + s
    gen = counts / seconds
    what = f"python -m verification --max-examples {max_examples}: {examples} examples"
    rows = [
        {
            "what": f"generation only (all {len(CHECKS)} rows' problems, both dtypes)",
            "examples_per_s": gen,
            "fraction": 1.0,
        },
        {
            "what": f"{what}, job clock (after imports)",
            "examples_per_s": examples / job_seconds,
            "fraction": examples / job_seconds / gen,
        },
        {
            "what": f"{what}, command wall time (with interpreter start, JAX import)",
            "examples_per_s": examples / wall,
            "fraction": examples / wall / gen,
        },
    ]
    info = {
        "returncode": done.returncode,
        "passed": document.get("passed"),
        "examples": examples,
        "job_seconds": job_seconds,
        "wall_seconds": wall,
        "rows": len(document["rows"]),
    }
    return rows, info


def _audit_rows(max_examples: int) -> list[dict[str, Any]]:
    try:
        module = importlib.import_module("benchmarks.audit_throughput")
    except ModuleNotFoundError as error:
        if error.name != "benchmarks.audit_throughput":
            raise
        return [
            {
                "what": "verification.audit on the MLP problem: MISSING "
                "(benchmarks/audit_throughput.py is not there)",
                "examples_per_s": None,
                "fraction": None,
            }
        ]
    rows = []
    for raw in module.run(max_examples=max_examples):
        # Keep everything the audit's benchmark reports; name the three columns shown here.
        row: dict[str, Any] = dict(raw)
        rate, fraction = raw.get("examples_per_s"), raw.get("ratio_to_generation")
        row["what"] = f"verification.audit, MLP problem: {raw.get('measurement', '?')}"
        row["examples_per_s"] = float(rate) if isinstance(rate, int | float) else None
        row["fraction"] = float(fraction) if isinstance(fraction, int | float) else None
        rows.append(row)
    return rows


def run(*, quick: bool = False) -> Section:
    """Measure verification and generation rates; return the table and verdicts."""
    mlp_examples, rounds, job_examples = (50, 1, 20) if quick else (200, 3, 100)
    mlp = _mlp_rows(mlp_examples, rounds)
    job, job_info = _main_job_rows(job_examples)
    audit = _audit_rows(mlp_examples)
    rows = [*mlp, *job, *audit]
    verdicts = [
        {
            "target": f"verification rate / generation rate >= {TARGET}",
            "what": r["what"],
            "value": r["fraction"],
            "met": r["fraction"] is not None and r["fraction"] >= TARGET,
        }
        for r in rows
        if r["fraction"] != 1.0
    ]
    payload = {"rows": rows, "main_job": job_info, "verdicts": verdicts, "target": TARGET}
    return Section("verification_speed", "3. Verification speed", payload, _markdown(rows))


def _markdown(rows: list[dict[str, Any]]) -> str:
    table = markdown_table(
        ["measurement", "examples/s", "fraction of generation rate", f">= {TARGET}"],
        [
            [
                r["what"],
                fmt(r["examples_per_s"], 1),
                fmt(r["fraction"]),
                "-"
                if r["fraction"] in (None, 1.0)
                else ("yes" if r["fraction"] >= TARGET else "**no**"),
            ]
            for r in rows
        ],
    )
    return "Examples per second (generation rate measured in the same run)\n\n" + table
