"""Counterexamples kept in the user's repository and replayed before any new search.

A failing audit's shrunk counterexample is written to ``ROOT/AUDIT/counterexample-<crc32>.npz``
(its array leaves, by ``_reproducer.save_counterexample``) with a ``.json`` beside it: how to
rebuild the argument tuple from the arrays (tuples, lists, dicts, NamedTuples, numbers), the
audit's spec and the report. The folder is meant to be committed and reviewed like a snapshot:
unlike hypothesis's example database it is explicit and survives cache wipes.

``run_kept`` is the cycle every kept audit goes through: load the audit's entries, run the audit
with them replayed first (``replay=`` of ``audit``: a regression fails on the first example),
then write a new counterexample, and report the entries that pass now (stale). Stale entries
are removed, and the reports of the kept ones rewritten, only under the update flag.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._report import AuditReport
from verification.auditing._reproducer import save_counterexample

__all__ = [
    "Entry",
    "Kept",
    "folder_name",
    "load_entries",
    "run_kept",
    "save_entry",
    "shown_path",
]

_FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """One stored counterexample: the ``.npz`` of its arrays and the argument tuple rebuilt."""

    path: Path
    args: tuple[Any, ...]


@dataclass
class Kept:
    """What ``run_kept`` did with the store for one audit.

    replayed : the stored counterexamples replayed before the search.
    failed_again : the stored one that fails again (the audit stopped there), or None.
    saved : the counterexample written by this run, or None.
    stale : stored entries that pass now; ``removed`` when the update flag deleted them.
    unreadable : entries not replayed: they could not be rebuilt, or do not fit the audit
        (one line each: file and why).
    """

    report: AuditReport
    replayed: list[Path] = field(default_factory=list)
    failed_again: Path | None = None
    saved: Path | None = None
    stale: list[Path] = field(default_factory=list)
    removed: bool = False
    unreadable: list[str] = field(default_factory=list)

    def lines(self, root: Path, update_flag: str) -> list[str]:
        """What happened, one line per fact, with paths relative to ``root``'s parent."""

        def shown(path: Path) -> str:
            return shown_path(path, root)

        out = []
        if self.failed_again is not None:
            out.append(
                f"replayed the stored counterexample {shown(self.failed_again)} first: "
                "it fails again"
            )
        elif self.replayed:
            out.append(
                f"replayed {len(self.replayed)} stored counterexample(s) first: they pass now"
            )
        if self.saved is not None:
            out.append(
                f"counterexample stored in {shown(self.saved)} (+ .json): commit it; every "
                "later run replays it before searching"
            )
        for path in self.stale:
            action = "removed" if self.removed else f"{update_flag} removes it"
            out.append(f"stale: {shown(path)} passes now ({action})")
        out += [f"skipped: {text}" for text in self.unreadable]
        return out


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to the folder holding the store ``root`` (as a user names it)."""
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def folder_name(key: str) -> str:
    """A file-system-safe folder name for an audit key (a config NAME, a test's node id).

    >>> folder_name("tests/test_x.py::test_grad[relu]")
    'tests-test_x.py--test_grad-relu'
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", key.replace("::", "--")).strip("-.")
    return safe or "audit"


def _encode(value: Any, dtypes: list[str]) -> Any:
    """``value`` (arrays replaced by their index in ``tree_leaves`` order) as JSON."""
    if isinstance(value, _Leaf):
        return {"array": value.index, "dtype": dtypes[value.index]}
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("only dicts with string keys can be stored")
        return {"dict": {k: _encode(v, dtypes) for k, v in value.items()}}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        kind = type(value)
        return {
            "namedtuple": f"{kind.__module__}:{kind.__qualname__}",
            "items": [_encode(v, dtypes) for v in value],
        }
    if isinstance(value, list | tuple):
        return {type(value).__name__: [_encode(v, dtypes) for v in value]}
    raise ValueError(f"an argument of type {type(value).__name__} cannot be stored")


def _decode(node: Any, arrays: Sequence[np.ndarray[Any, Any]]) -> Any:
    if not isinstance(node, dict):
        return node
    if "array" in node:
        a = arrays[node["array"]]
        if node["dtype"] == "bfloat16":  # saved as its bits (``save_counterexample``)
            import ml_dtypes

            return a.view(ml_dtypes.bfloat16)
        return a
    if "dict" in node:
        return {k: _decode(v, arrays) for k, v in node["dict"].items()}
    if "namedtuple" in node:
        module, _, name = node["namedtuple"].partition(":")
        kind: Any = importlib.import_module(module)
        for part in name.split("."):
            kind = getattr(kind, part)
        return kind(*(_decode(v, arrays) for v in node["items"]))
    if "list" in node:
        return [_decode(v, arrays) for v in node["list"]]
    return tuple(_decode(v, arrays) for v in node["tuple"])


class _Leaf:
    def __init__(self, index: int) -> None:
        self.index = index


def save_entry(folder: Path, args: tuple[Any, ...], spec: dict[str, Any], report: Any) -> Path:
    """Write ``args`` (``.npz``) and its rebuild recipe, ``spec`` and ``report`` (a dict, JSON)
    into ``folder``; returns the ``.npz`` path (named by the arrays' crc32, so the same
    counterexample is written once)."""
    dtypes: list[str] = []
    counter = iter(range(1 << 30))

    def leaf(x: Any) -> Any:
        if not isinstance(x, np.ndarray | np.generic):
            return x
        dtypes.append(np.asarray(x).dtype.name)
        return _Leaf(next(counter))

    template = tree_util.tree_map(leaf, tuple(args))
    recipe = _encode(template, dtypes)
    path = save_counterexample(tuple(args), folder)
    document = {"format": _FORMAT, "args": recipe, "spec": spec, "report": report}
    path.with_suffix(".json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def load_entries(folder: Path) -> tuple[list[Entry], list[str]]:
    """The entries stored in ``folder`` (sorted by name) and a line for each unreadable one."""
    entries, unreadable = [], []
    for recipe in sorted(folder.glob("counterexample-*.json")):
        path = recipe.with_suffix(".npz")
        try:
            document = json.loads(recipe.read_text())
            with np.load(path) as data:
                arrays = [data[f"a{i}"] for i in range(len(data.files))]
            args = _decode(document["args"], arrays)
        except Exception as error:  # a file edited by hand, a class renamed since
            unreadable.append(f"{path.name}: {type(error).__name__}: {error}")
            continue
        entries.append(Entry(path, tuple(args)))
    return entries, unreadable


def run_kept(
    run: Callable[[list[tuple[Any, ...]]], AuditReport],
    folder: Path,
    spec: dict[str, Any],
    *,
    update: bool,
    fits: Callable[[tuple[Any, ...]], str | None] | None = None,
) -> Kept:
    """Run an audit with the entries of ``folder`` replayed first (``run(replay)``), then keep
    its new counterexample and report stale entries (module docstring).

    A failure on a stored entry writes nothing new (the entry is the counterexample). A new
    failure is written beside the entries. Entries replayed before the failing one, or all of
    them when the audit passed or failed on a new input, pass now: stale. ``update`` removes
    stale entries and rewrites the report of the entry that fails again. ``fits(args)``: why
    stored arguments cannot be replayed (None: they can); such entries are reported, not run.
    """
    entries, unreadable = load_entries(folder) if folder.is_dir() else ([], [])
    misfits = [(e, why) for e in entries if (why := fits(e.args))] if fits else []
    for entry, why in misfits:
        entries.remove(entry)
        unreadable.append(
            f"{entry.path.name}: {why} (skipped; delete it to keep it from this list)"
        )
    report = run([e.args for e in entries])
    kept = Kept(report, replayed=[e.path for e in entries], unreadable=unreadable)
    again = report.replay_failed
    passing = entries if again is None else entries[:again]
    if report.inconclusive:  # nothing was checked: no entry is shown to pass
        passing = []
    kept.stale = [e.path for e in passing]
    if again is not None:
        kept.failed_again = entries[again].path
        if update:
            save_entry(folder, entries[again].args, spec, report.to_dict())
    elif report.counterexample is not None and not report.passed:
        kept.saved = save_entry(folder, report.counterexample, spec, report.to_dict())
    if update and kept.stale:
        for path in kept.stale:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
        kept.removed = True
        if not any(folder.iterdir()):
            folder.rmdir()
    return kept
