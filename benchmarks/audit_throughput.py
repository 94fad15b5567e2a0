"""Audit throughput: examples/s of ``verification.audit`` on the MLP problem in float64.

Measured in one process, on the same examples (same strategy, seed and settings):

* generation alone: a hypothesis test with an empty body over ``strategies.mlp_problems()``;
* the audit of ``manual_bp.mlp_loss_and_grads`` against ``reference.mlp_loss``, cold (every
  shape compiled for the first time) and warm (the same shapes again: compiled code is kept per
  loss function for the life of the process);

with the audit's time split into JAX compilation (once per shape), the reference's calls, the
candidate's calls (twice per example: the determinism guard), the comparison, and the rest
(hypothesis: generation, bookkeeping). The target is an audit rate of at least half the
generation rate.

    python -m benchmarks.audit_throughput [max_examples] [--json]

(``--json``: the rows as JSON on stdout, as ``benchmarks.verification_speed`` reads them from
a fresh process, so as to measure the audit cold, from the compilation cache, and warm.)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

import manual_bp as mb
from verification import reference, strategies
from verification.auditing import audit

__all__ = ["run"]

_SEED = 20261127


def _candidate(params: mb.MLPParams, x: Any, y: Any) -> mb.MLPParams:
    return mb.mlp_loss_and_grads(params, x, y)[1]


def _generation_seconds(max_examples: int) -> float:
    """Seconds for hypothesis to generate ``max_examples`` MLP problems with an empty body."""

    @seed(_SEED)
    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategies.mlp_problems())
    def generate(problem: Any) -> None:
        del problem

    start = time.perf_counter()
    generate()
    return time.perf_counter() - start


def run(max_examples: int = 200) -> list[dict[str, object]]:
    """One row per measurement: examples, seconds, examples/s, ratio to generation, breakdown.

    The audit rows carry the seconds spent compiling (and how many compilations), calling the
    reference, calling the candidate, comparing, and in hypothesis (the rest).
    """
    generation = _generation_seconds(max_examples)
    rows: list[dict[str, object]] = [
        {
            "measurement": "hypothesis generation alone",
            "examples": max_examples,
            "seconds": generation,
            "examples_per_s": max_examples / generation,
            "ratio_to_generation": 1.0,
        }
    ]

    def loss(params: Any, x: Any, y: Any) -> Any:  # a fresh function: nothing compiled yet
        return reference.mlp_loss(params, x, y)

    for label in ("audit, cold (compiles each shape)", "audit, warm (shapes compiled)"):
        report = audit(
            _candidate, loss, strategies.mlp_problems(), max_examples=max_examples, seed=_SEED
        )
        if not report.passed:
            raise RuntimeError(f"the benchmark's candidate failed the audit:\n{report}")
        t = report.timings
        rows.append(
            {
                "measurement": label,
                "examples": report.examples,
                "seconds": t["total"],
                "examples_per_s": report.examples / t["total"],
                "ratio_to_generation": (report.examples / t["total"]) / (max_examples / generation),
                "compile_s": t["compile"],
                "compilations": report.compilations,
                "reference_s": t["oracle"],
                "candidate_s": t["candidate"],
                "compare_s": t["compare"],
                "hypothesis_s": t["generation and hypothesis"],
            }
        )
    return rows


def _table(rows: list[dict[str, object]]) -> str:
    columns = [
        ("measurement", "{}"),
        ("examples", "{}"),
        ("seconds", "{:.2f}"),
        ("examples_per_s", "{:.0f}"),
        ("ratio_to_generation", "{:.2f}"),
        ("compile_s", "{:.2f}"),
        ("compilations", "{}"),
        ("reference_s", "{:.2f}"),
        ("candidate_s", "{:.2f}"),
        ("compare_s", "{:.2f}"),
        ("hypothesis_s", "{:.2f}"),
    ]
    cells = [[fmt.format(row[k]) if k in row else "-" for k, fmt in columns] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, (k, _) in enumerate(columns)]
    lines = [
        "| " + " | ".join(k.ljust(w) for (k, _), w in zip(columns, widths, strict=True)) + " |"
    ]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if a != "--json"]
    measured = run(int(numbers[0]) if numbers else 200)
    print(json.dumps(measured) if "--json" in sys.argv[1:] else _table(measured))
