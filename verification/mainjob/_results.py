"""The main job's JSON output, and merging the outputs of shards into one run.

A document holds the run's settings, every row's numbers, the rows the whole run covers
(``tasks``, before sharding) and the shard that wrote it (``"i/n"``, or ``null``). ``merge``
accepts documents of one run only: the same settings and task list, no row twice, and no row
missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from verification.mainjob._jobs import Task
from verification.mainjob.checks import Row

__all__ = ["MergeError", "Run", "from_document", "merge", "to_document"]


class MergeError(ValueError):
    """The documents are not the shards of one run (the message says why, in one line)."""


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf or NaN: a misplaced NaN/inf or a crash is written as null."""
    return value if math.isfinite(value) else None


def _row_to_json(r: Row) -> dict[str, Any]:
    return {
        "name": r.name,
        "formula": r.formula,
        "function": r.function,
        "dtype": r.dtype,
        "examples": r.examples,
        "failures": r.failures,
        "max_abs_error": _finite_or_none(r.max_abs_error),
        "max_rel_error": _finite_or_none(r.max_rel_error),
        "rtol": r.rtol,
        "atol": r.atol,
        "passed": r.passed,
        "first_failure": r.first_failure,
        "failing_inputs": r.failing_inputs,
        "seconds": r.seconds,
    }


def _row_from_json(d: dict[str, Any]) -> Row:
    def error(key: str) -> float:
        value = d[key]
        return math.inf if value is None else float(value)

    return Row(
        name=str(d["name"]),
        formula=str(d["formula"]),
        function=str(d["function"]),
        dtype=str(d["dtype"]),
        examples=int(d["examples"]),
        failures=int(d["failures"]),
        max_abs_error=error("max_abs_error"),
        max_rel_error=error("max_rel_error"),
        rtol=float(d["rtol"]),
        atol=float(d["atol"]),
        seconds=float(d.get("seconds", 0.0)),
        first_failure=d.get("first_failure"),
        failing_inputs=d.get("failing_inputs"),
    )


class Run:
    """A run's rows with its settings: ``max_examples``, ``tasks`` (every row of the whole
    run), ``shard`` (``"i/n"`` or ``None``), ``seconds`` (the job's own clock)."""

    def __init__(
        self,
        rows: Sequence[Row],
        max_examples: int,
        all_tasks: Sequence[Task],
        shard: str | None,
        seconds: float,
    ) -> None:
        self.rows = list(rows)
        self.max_examples = max_examples
        self.tasks: list[Task] = [(name, dtype) for name, dtype in all_tasks]
        self.shard = shard
        self.seconds = seconds

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]


def to_document(run: Run) -> dict[str, Any]:
    """The JSON document of ``run`` (strict JSON: no inf or NaN)."""
    return {
        "passed": not run.failed,
        "max_examples": run.max_examples,
        "seconds": run.seconds,
        "shard": run.shard,
        "tasks": [list(t) for t in run.tasks],
        "rows": [_row_to_json(r) for r in run.rows],
    }


def from_document(document: Any, source: str) -> Run:
    """The ``Run`` a document of ``to_document`` describes.

    Raises
    ------
    MergeError : ``document`` lacks the fields of a main-job output (``source`` names it).
    """
    try:
        return Run(
            [_row_from_json(r) for r in document["rows"]],
            int(document["max_examples"]),
            [(str(name), str(dtype)) for name, dtype in document["tasks"]],
            document.get("shard"),
            float(document["seconds"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise MergeError(
            f"{source} is not an output of python -m verification --json ({error!r} missing "
            "or malformed)"
        ) from None


def merge(runs: Sequence[Run], sources: Sequence[str]) -> Run:
    """One run from its shards: rows in the task order; seconds the sum of the shards'.

    Raises
    ------
    MergeError : the runs differ in settings or task list, a row appears twice, or a row of
        the task list is in none of them.
    """
    first = runs[0]
    for run, source in zip(runs[1:], sources[1:], strict=True):
        if run.max_examples != first.max_examples or run.tasks != first.tasks:
            raise MergeError(
                f"{source} is from another run than {sources[0]} (different --max-examples, "
                "--dtype or --only)"
            )
    found: dict[Task, tuple[Row, str]] = {}
    for run, source in zip(runs, sources, strict=True):
        for row in run.rows:
            key = (row.name, row.dtype)
            if key in found:
                raise MergeError(
                    f"row {row.name} [{row.dtype}] is in both {found[key][1]} and {source}"
                )
            found[key] = (row, source)
    stray = [key for key in found if key not in first.tasks]
    if stray:
        name, dtype = stray[0]
        raise MergeError(f"row {name} [{dtype}] of {found[stray[0]][1]} is not in the run's tasks")
    missing = [t for t in first.tasks if t not in found]
    if missing:
        name, dtype = missing[0]
        raise MergeError(
            f"{len(missing)} row(s) missing, e.g. {name} [{dtype}]: merge the outputs of "
            "every shard"
        )
    return Run(
        [found[t][0] for t in first.tasks],
        first.max_examples,
        first.tasks,
        None,
        sum(run.seconds for run in runs),
    )
