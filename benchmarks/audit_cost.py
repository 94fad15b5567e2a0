"""The audit's cost in candidate gradient steps at production sizes, and where it goes.

Issue 19's targets, each measured in a fresh process (``python -m benchmarks.audit_cost
--child ...``) as audit time / the candidate's own time for one gradient at that size (the
fastest of three calls, in the same process, just before the audit):

* **large** (m, n, h, k = 2048, 784, 1024, 10), from a warm compilation cache: the verdict on a
  correct candidate, on one wrong element of dW1 and on a missing 1/m (at most 10 steps each);
  the two failures also with ``quick=True`` (the verdict and the offending elements only);
* **mnist** (256, 784, 128, 10), the first audit at a new shape on an empty cache (at most 20
  steps): every program compiled from scratch.

The warm cache is a new folder filled by one priming process that audits every candidate
first (so the numbers do not depend on what the user's own cache holds); the empty cache is a
new folder per process. Each measurement is repeated (3 times; once with ``--quick``) and the
table gives the median and the range, with the profile (``audit(profile=True)``) of the median
run: tracing and lowering, XLA compilation, the reference, the candidate, the second opinion,
finite differences, diagnosis.

    python -m benchmarks --only audit_cost [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import Section, markdown_table

__all__ = ["SCENARIOS", "audit_cost_figure", "run"]

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS: list[tuple[str, str, str, bool, float]] = [
    ("large", "warm", "(a) correct", False, 10.0),
    ("large", "warm", "(c) one wrong element", False, 10.0),
    ("large", "warm", "(b) missing 1/m", False, 10.0),
    ("large", "warm", "(c) one wrong element", True, 10.0),
    ("large", "warm", "(b) missing 1/m", True, 10.0),
    ("mnist", "empty", "(a) correct", False, 20.0),
]
"""(size, cache, candidate, quick, target steps)."""


def _child(size_name: str, candidate: str, quick: bool) -> dict[str, Any]:
    """One audit in this (fresh) process: its seconds, the candidate's step, the profile."""
    from benchmarks.gradcheck_compare import CANDIDATES, problem
    from benchmarks.sgd_step import SIZES
    from verification import audit, reference

    grad, dtype, correct = CANDIDATES[candidate]
    args = problem(SIZES[size_name], dtype)
    steps = []
    for _ in range(3):
        start = time.perf_counter()
        grad(*args)
        steps.append(time.perf_counter() - start)
    start = time.perf_counter()
    report = audit(grad, reference.mlp_loss, args, argnums=0, seed=0, profile=True, quick=quick)
    seconds = time.perf_counter() - start
    assert report.profile is not None
    return {
        "seconds": seconds,
        "step_s": min(steps),
        "steps": seconds / min(steps),
        "verdict": report.verdict,
        "right": report.passed == correct,
        "diagnosis": report.diagnosis,
        "profile": report.profile.to_dict(),
        "profile_lines": report.profile.lines(),
    }


def _spawn(cache: Path, size_name: str, candidate: str, quick: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.audit_cost", "--child", size_name, candidate]
    env = {**os.environ, "MANUAL_BP_JAX_CACHE": str(cache)}
    done = subprocess.run(
        [*command, *(["--quick-audit"] if quick else [])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(*, quick: bool = False) -> Section:
    """Every scenario, repeated; the markdown table and the payload."""
    repeats = 1 if quick else 3
    scenarios = [s for s in SCENARIOS if not quick or s[0] == "mnist"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="audit-cost-") as folder:
        warm = Path(folder) / "warm"
        primed: set[str] = set()
        for size_name, cache, candidate, quick_audit, target in scenarios:
            if cache == "warm" and size_name not in primed:
                for name in dict.fromkeys(c for s, k, c, _, _ in scenarios if s == size_name):
                    _spawn(warm, size_name, name, False)
                primed.add(size_name)
            runs = []
            for i in range(repeats):
                where = warm if cache == "warm" else Path(folder) / f"empty-{len(rows)}-{i}"
                runs.append(_spawn(where, size_name, candidate, quick_audit))
                print(
                    f"  {size_name} {candidate} {'quick ' if quick_audit else ''}"
                    f"({cache} cache): {runs[-1]['steps']:.1f} steps",
                    flush=True,
                )
            steps = [r["steps"] for r in runs]
            median = sorted(runs, key=lambda r: r["steps"])[len(runs) // 2]
            rows.append(
                {
                    "size": size_name,
                    "cache": cache,
                    "candidate": candidate,
                    "quick": quick_audit,
                    "target_steps": target,
                    "steps_median": statistics.median(steps),
                    "steps_min": min(steps),
                    "steps_max": max(steps),
                    "right": all(r["right"] for r in runs),
                    "runs": runs,
                    "median_profile": median["profile_lines"],
                }
            )
    return Section("audit_cost", _TITLE, {"rows": rows, "repeats": repeats}, _markdown(rows))


_TITLE = "The audit's cost in candidate gradient steps at production sizes"


def _markdown(rows: list[dict[str, Any]]) -> str:
    header = ["size", "cache", "candidate", "audit", "verdict", "steps (median, range)", "target"]
    table = [
        [
            r["size"],
            r["cache"],
            r["candidate"],
            "quick" if r["quick"] else "full",
            ("right" if r["right"] else "WRONG") + f" ({r['runs'][0]['verdict']})",
            f"{r['steps_median']:.1f} ({r['steps_min']:.1f} to {r['steps_max']:.1f})",
            f"<= {r['target_steps']:.0f}",
        ]
        for r in rows
    ]
    profiles = [
        f"{r['size']}, {r['cache']} cache, {r['candidate']}"
        + (", quick" if r["quick"] else "")
        + " (median run):\n\n```\n"
        + "\n".join(r["median_profile"])
        + "\n```"
        for r in rows
    ]
    return markdown_table(header, table) + "\n\n" + "\n\n".join(profiles)


def audit_cost_figure(payload: dict[str, Any], path: Path) -> Path:
    """Steps per scenario (median, range as error bar) against its target."""
    import matplotlib.pyplot as plt

    from benchmarks._figures import save_figure  # (selects the Agg backend)

    rows = payload["rows"]
    labels = [
        f"{r['size']} {r['cache']}\n{r['candidate']}{' quick' if r['quick'] else ''}" for r in rows
    ]
    medians = np.array([r["steps_median"] for r in rows])
    low = medians - np.array([r["steps_min"] for r in rows])
    high = np.array([r["steps_max"] for r in rows]) - medians
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows)), 4.2))
    x = np.arange(len(rows))
    colors = ["tab:green" if r["right"] else "tab:red" for r in rows]
    ax.bar(x, medians, yerr=[low, high], color=colors, alpha=0.8)
    ax.scatter(x, [r["target_steps"] for r in rows], marker="_", s=600, color="k", label="target")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("audit time / candidate step")
    ax.legend(fontsize=8)
    ax.set_title("Audit cost in candidate gradient steps (fresh process each)", fontsize=10)
    return save_figure(fig, path, laid_out=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], "--quick-audit" in sys.argv[4:])))
    else:
        print(run(quick="--quick" in sys.argv[1:]).markdown)
