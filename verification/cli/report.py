"""``python -m verification [report] ...`` and ``python -m verification merge ...``.

Every argument and output path is checked before any work: a mistake is answered with one
line on stderr and exit status 2. While the job runs, ``Progress`` reports the rows on stderr
as they finish; the table goes to stdout at the end, in the table's order, whatever the number
of jobs or the shard.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from verification import _cache
from verification.mainjob._jobs import parse_shard, run_tasks, shard, tasks
from verification.mainjob._results import MergeError, Run, from_document, merge, to_document
from verification.mainjob.checks import CHECKS_BY_NAME, Row, format_table

__all__ = ["Progress", "main", "merge_main"]

PROG = "python -m verification"
USAGE = (
    f"{PROG} [report] [--max-examples N] [--dtype {{float32,float64,both}}] [--only NAME] "
    "[--jobs N] [--shard I/N] [--json PATH] [--cache-dir DIR | --no-cache]\n"
    f"       {PROG} audit MODULE:GRAD_FN --loss MODULE:LOSS_FN --shapes SPEC ... "
    f"(see {PROG} audit --help)\n"
    f"       {PROG} audit-vjp MODULE:BACKWARD --reference MODULE:FORWARD --shapes SPEC ... "
    f"(see {PROG} audit-vjp --help)\n"
    f"       {PROG} audit-hvp MODULE:HVP --loss MODULE:LOSS_FN --shapes SPEC ... "
    f"(see {PROG} audit-hvp --help)\n"
    f"       {PROG} merge FILE.json FILE.json ... [--json PATH]\n"
    f"       {PROG} twin [--dataset NAME] ... (see {PROG} twin --help)"
)


class _Parser(argparse.ArgumentParser):
    """An argument parser that answers a mistake with one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class UsageError(ValueError):
    """A mistake in the command line, said in one line."""


def _writable_file(path: str, option: str) -> None:
    """Raise ``UsageError`` unless ``path`` can be written as a file (checked before work)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory; give a file name")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")


def _usable_cache_dir(path: str) -> None:
    """Raise ``UsageError`` unless ``path`` is (or can be created as) a writable directory."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--cache-dir {path}: exists and is not a directory")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"--cache-dir {path}: {existing} is not a writable directory")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        usage=USAGE,
        description="Check every formula of manual_bp against JAX on generated problems and "
        "print one table row per formula and dtype (exit status 1 if any row fails, 2 for a "
        "usage error). Subcommands: report (the default), audit (check a gradient function "
        "of your own), audit-vjp (check a layer's backward against jax.vjp of its forward), "
        "audit-hvp (check a Hessian-vector product against forward-over-reverse JAX), merge (join the --json outputs of --shard runs), twin (a training run "
        "of manual_bp replayed with JAX's gradients).",
        epilog=f"The compiled JAX references are cached in {_cache.default_directory()} "
        f"($XDG_CACHE_HOME/manual-bp/jax); the environment variable {_cache.ENV_VAR} sets "
        "another directory, or 'off'.",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=100,
        metavar="N",
        help="problems per formula and dtype (default 100)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64", "both"),
        default="both",
        help="the dtype of the manual computation; the reference is always float64 (default both)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(CHECKS_BY_NAME),
        metavar="NAME",
        help="run only this check (repeatable); names: " + ", ".join(CHECKS_BY_NAME),
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run the rows in N processes (each imports JAX, about 2 s; default 1)",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help="run only the I-th of N disjoint parts of the rows (a check's dtypes stay "
        "together), for N CI machines; join "
        f"their --json outputs with '{PROG} merge' (default: every row)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help=f"keep compiled JAX references here (default: ${_cache.ENV_VAR}, else "
        f"{_cache.default_directory()})",
    )
    cache.add_argument(
        "--no-cache", action="store_true", help="compile every reference afresh, keep nothing"
    )
    return parser


class Progress:
    """Rows as they finish, on ``stream`` (stderr): on a terminal, one line rewritten in place;
    elsewhere (a CI log, a pipe) a plain line at each quarter of the rows. A failing row is
    always a line of its own, at once."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self.done = self.failed = 0
        self.start = time.perf_counter()

    def __call__(self, row: Row) -> None:
        self.done += 1
        self.failed += not row.passed
        width = len(str(self.total))
        head = f"[{self.done:>{width}}/{self.total}]"
        if not row.passed:
            self._line(f"{head} FAIL ({row.failures}) {row.name} [{row.dtype}]")
        elif self.tty:
            self._write(f"\r\033[K{head} PASS {row.name} [{row.dtype}]")
        if self.tty and self.done == self.total:
            self._write("\r\033[K")
        elif not self.tty and self._quarter():
            elapsed = time.perf_counter() - self.start
            self._line(f"{head} rows done, {self.failed} failed ({elapsed:.1f} s)")

    def _quarter(self) -> bool:
        """Whether this row crosses a quarter of the total (or is the last one)."""
        return any(self.done == -(-self.total * q // 4) for q in (1, 2, 3, 4))

    def _line(self, text: str) -> None:
        self._write(("\r\033[K" if self.tty else "") + text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _print_run(run: Run, note: str) -> None:
    """The table, the summary line and each failure with its inputs."""
    print(format_table(run.rows))
    passed = len(run.rows) - len(run.failed)
    examples = sum(r.examples for r in run.rows)
    print(f"\n{passed} of {len(run.rows)} rows pass ({examples} examples, {note}).")
    for r in run.failed:
        print(f"\nFAIL {r.name} [{r.dtype}]: {r.first_failure}\n  inputs: {r.failing_inputs}")


def _write(document: object, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, allow_nan=False)
        handle.write("\n")


def main(argv: Sequence[str]) -> int:
    """The main job; 0 if every row passes, 1 if one fails, 2 for a usage error."""
    parser = _parser()
    args = parser.parse_args(list(argv))
    try:
        if args.max_examples < 1:
            raise UsageError(f"--max-examples must be at least 1, got {args.max_examples}")
        if args.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
        part = parse_shard(args.shard) if args.shard else None
        if args.json:
            _writable_file(args.json, "--json")
        if args.cache_dir:
            _usable_cache_dir(args.cache_dir)
    except (UsageError, ValueError) as error:
        parser.exit(2, f"{PROG}: error: {error}\n")
    if args.no_cache:
        _cache.configure(None)
    elif args.cache_dir:
        _cache.configure(args.cache_dir)
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    everything = tasks(dtypes, args.only)
    selected = shard(everything, *part) if part else everything
    start = time.perf_counter()
    rows = run_tasks(selected, args.max_examples, args.jobs, Progress(len(selected), sys.stderr))
    run = Run(rows, args.max_examples, everything, args.shard, time.perf_counter() - start)
    of_shard = f", shard {args.shard}" if args.shard else ""
    _print_run(run, f"{run.seconds:.1f} s{of_shard}")
    if args.json:
        _write(to_document(run), args.json)
    return 1 if run.failed else 0


def merge_main(argv: Sequence[str]) -> int:
    """``merge FILE.json ... [--json PATH]``: the one table of the shards' outputs; 0 if
    every row passes, 1 if one fails, 2 if the files are not the shards of one run."""
    parser = _Parser(
        prog=f"{PROG} merge",
        description="Join the --json outputs of 'python -m verification --shard I/N' runs "
        "into one table (refused if a row is missing or appears twice).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE.json", help="the shards' outputs")
    parser.add_argument("--json", metavar="PATH", help="also write the merged results here")
    args = parser.parse_args(list(argv))
    try:
        if args.json:
            _writable_file(args.json, "--json")
        runs = []
        for name in args.files:
            try:
                document = json.loads(Path(name).read_text(encoding="utf-8"))
            except OSError as error:
                raise MergeError(f"{name}: cannot read ({error.strerror})") from None
            except json.JSONDecodeError as error:
                raise MergeError(f"{name}: not JSON ({error.msg}, line {error.lineno})") from None
            runs.append(from_document(document, name))
        run = merge(runs, args.files)
    except (UsageError, MergeError) as error:
        parser.exit(2, f"{PROG} merge: error: {error}\n")
    _print_run(run, f"{run.seconds:.1f} s over {len(runs)} shard(s)")
    if args.json:
        _write(to_document(run), args.json)
    return 1 if run.failed else 0
