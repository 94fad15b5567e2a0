"""The main job's rows as tasks: which rows a run covers, one shard of them, in parallel processes.

A task is one row of the table: a check's name and a dtype. ``tasks`` lists them in the table's
order; ``shard(tasks, i, n)`` keeps the rows of every n-th check, starting at the i-th (1-based), so
n machines with i = 1..n cover every row exactly once; ``run_tasks`` runs them in this process or in
``jobs`` worker processes. Each row draws its own derandomized problems (hypothesis seeds a
derandomized test from the test's code, the same for every row), so a row's result does not
depend on the process that ran it, the order or the shard (``run_check`` pins generation to
the seed: ``verification.pinned``).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from verification import _cache
from verification.mainjob.checks import CHECKS, CHECKS_BY_NAME, Row, run_check

__all__ = [
    "Task",
    "parse_shard",
    "run_task",
    "run_tasks",
    "shard",
    "tasks",
]

Task = tuple[str, str]
"""(check name, dtype name): one row of the table."""

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def tasks(dtypes: Sequence[str], only: Sequence[str] | None = None) -> list[Task]:
    """Every row of a run, in the table's order: dtype by dtype, checks in ``CHECKS`` order.

    >>> tasks(["float64"], ["softmax", "relu"])
    [('relu', 'float64'), ('softmax', 'float64')]
    """
    return [(c.name, d) for d in dtypes for c in CHECKS if not only or c.name in only]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 1 <= i <= n.

    >>> parse_shard("2/3")
    (2, 3)

    Raises
    ------
    ValueError : not of the form i/n, or i outside 1..n.
    """
    match = _SHARD.match(text)
    if match is None:
        raise ValueError(f"--shard expects i/n such as 1/4, got {text!r}")
    i, n = int(match.group(1)), int(match.group(2))
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text}: i must be between 1 and n (got i={i}, n={n})")
    return i, n


def shard(all_tasks: Sequence[Task], i: int, n: int) -> list[Task]:
    """The i-th of n disjoint shards (1-based): every row of the checks i-1, i-1+n, ... .

    A check's rows (its dtypes) stay together, as they call the same compiled references: a
    machine that runs one of them would otherwise compile the same programs as another. Round
    robin over the checks mixes cheap elementwise checks and the costlier network ones. With
    more shards than checks, the extra shards are empty.

    >>> shard([("a", "f"), ("b", "f"), ("a", "g"), ("c", "f")], 1, 2)
    [('a', 'f'), ('a', 'g'), ('c', 'f')]
    """
    names = list(dict.fromkeys(name for name, _ in all_tasks))
    kept = set(names[i - 1 :: n])
    return [task for task in all_tasks if task[0] in kept]


def run_task(task: Task, max_examples: int) -> Row:
    """Run one row (the check ``task[0]`` in dtype ``task[1]``)."""
    name, dtype = task
    return run_check(CHECKS_BY_NAME[name], np.dtype(dtype), max_examples)


def _run_group(group: Sequence[Task], max_examples: int) -> list[Row]:
    """A worker's unit: one check's rows, which share their compiled references."""
    return [run_task(task, max_examples) for task in group]


def _start_worker(cache_dir: str | None) -> None:
    """In each worker: the parent's compilation cache choice (its --cache-dir / --no-cache)."""
    _cache.configure(cache_dir)


def run_tasks(
    selected: Sequence[Task],
    max_examples: int,
    jobs: int = 1,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """The rows of ``selected``, in that order; ``on_row`` sees each as soon as it finishes.

    ``jobs`` > 1 runs them in that many fresh processes ("spawn": JAX does not survive a
    fork), each of which imports JAX and loads its compiled references from the persistent
    cache, or compiles them once when the cache is cold or off. A worker takes one check at a
    time with all its dtypes (they share compiled references); the rows of a check are
    reported when the check is done.
    """
    notify = on_row if on_row is not None else (lambda row: None)
    if jobs <= 1 or len(selected) <= 1:
        rows = []
        for task in selected:
            rows.append(run_task(task, max_examples))
            notify(rows[-1])
        return rows
    groups: dict[str, list[Task]] = {}
    for task in selected:
        groups.setdefault(task[0], []).append(task)
    folder = _cache.directory()
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(jobs, len(groups)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(None if folder is None else str(Path(folder)),),
    ) as pool:
        futures = [pool.submit(_run_group, group, max_examples) for group in groups.values()]
        done: dict[Task, Row] = {}
        for future in concurrent.futures.as_completed(futures):
            for row in future.result():
                done[(row.name, row.dtype)] = row
                notify(row)
    return [done[task] for task in selected]
