"""Readable reproducers at production sizes: shapes, offending elements and a saved ``.npz``.

A counterexample of a few hundred elements prints as Python literals (``python_literal``).
Above ``LITERAL_LIMIT`` elements (an mnist-sized input has 300,000) it would be thousands of
numbers, so the report instead lists each argument's shape and dtype, the offending elements
of the gradient (index, candidate, reference), and saves the input to an ``.npz`` file whose
reproducer rebuilds the arguments exactly (``np.load`` of the saved arrays, structure
restored by code).
"""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jax import tree_util

__all__ = [
    "LITERAL_LIMIT",
    "SAVE_DIR_VARIABLE",
    "offending_elements",
    "python_literal",
    "rebuild_source",
    "save_counterexample",
    "save_directory",
    "shape_lines",
]

LITERAL_LIMIT = 1000
"""Counterexamples with more elements than this are saved to ``.npz``, not printed."""


class _Ref:
    """A placeholder that ``python_literal`` prints as ``data['aI']``."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"data['a{self.index}']"


def _dtype_source(dtype: np.dtype[Any]) -> str:
    """``np.float64``, or ``ml_dtypes.bfloat16`` (numpy has no bfloat16 of its own)."""
    return "ml_dtypes.bfloat16" if dtype.name == "bfloat16" else f"np.{dtype.name}"


def python_literal(value: Any) -> str:
    """Python source that rebuilds ``value`` exactly (numpy arrays, NamedTuples, tuples).

    Floats print with repr, which round-trips.

    >>> python_literal((np.array([[0.5, -1.0]]), np.float64(2.0)))
    '(np.array([[0.5, -1.0]], dtype=np.float64), np.float64(2.0))'
    """
    if isinstance(value, np.ndarray):
        text = f"np.array({value.tolist()!r}, dtype={_dtype_source(value.dtype)})"
        return f"{text}.reshape({value.shape})" if value.size == 0 else text
    if isinstance(value, np.generic):
        return f"{_dtype_source(value.dtype)}({value.item()!r})"
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        inner = ", ".join(
            f"{f}={python_literal(v)}" for f, v in zip(value._fields, value, strict=True)
        )
        return f"{type(value).__name__}({inner})"
    if isinstance(value, (tuple, list)):
        items = [python_literal(v) for v in value]
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {python_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


SAVE_DIR_VARIABLE = "MANUAL_BP_AUDIT_DIR"
"""The environment variable that names the folder for saved counterexamples."""


def save_directory(directory: Path | None = None) -> Path:
    """Where counterexamples are saved: ``directory``, else the folder named by the
    environment variable ``MANUAL_BP_AUDIT_DIR``, else ``manual-bp-audit/`` in the system's
    temporary folder."""
    if directory is not None:
        return directory
    chosen = os.environ.get(SAVE_DIR_VARIABLE)
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / "manual-bp-audit"


def save_counterexample(args: Any, directory: Path | None = None, name: str | None = None) -> Path:
    """Save every array leaf of ``args`` to ``counterexample-<name>-<crc32>.npz`` in
    ``save_directory(directory)`` (``name``: the audited function, e.g. ``mymodule:grad``,
    kept to letters, digits, ``.``, ``_`` and ``-``); returns the path.

    bfloat16 leaves are saved as their uint16 bit patterns (``.npz`` cannot hold them) and
    restored by ``rebuild_source``'s code.
    """
    leaves = [x for x in tree_util.tree_leaves(args) if _is_array(x)]
    stored = {f"a{i}": _storable(np.asarray(x)) for i, x in enumerate(leaves)}
    crc = 0
    for a in stored.values():
        crc = zlib.crc32(a.tobytes(), crc)
    folder = save_directory(directory)
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace(":", ".")).strip("_.") if name else ""
    path = folder / f"counterexample-{slug + '-' if slug else ''}{crc:08x}.npz"
    np.savez(path, **stored)  # type: ignore[arg-type]
    return path


def _storable(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return a.view(np.uint16) if a.dtype.name == "bfloat16" else a


def rebuild_source(args: Any, path: Path) -> list[str]:
    """Python lines that rebuild ``args`` from the ``.npz`` at ``path`` (``save_counterexample``).

    >>> import numpy as np
    >>> print(rebuild_source((np.zeros(2), 3), Path("c.npz"))[-1])
    args = (data['a0'], 3)
    """
    counter = iter(range(1 << 30))
    bf16 = []

    def placeholder(x: Any) -> Any:
        if not _is_array(x):
            return x
        ref = _Ref(next(counter))
        if np.asarray(x).dtype.name == "bfloat16":
            bf16.append(ref.index)
        return ref

    template = tree_util.tree_map(placeholder, args)
    lines = [f"data = dict(np.load({str(path)!r}))"]
    if bf16:
        keys = ", ".join(repr(f"a{i}") for i in bf16)
        lines.append("import ml_dtypes")
        lines.append(f"for key in ({keys},):  # bfloat16, saved as its bits")
        lines.append("    data[key] = data[key].view(ml_dtypes.bfloat16)")
    lines.append(f"args = {python_literal(template)}")
    return lines


def shape_lines(args: Any, names: Sequence[str]) -> list[str]:
    """One line per argument leaf: its name, shape, dtype and largest |element|."""
    lines = []
    for i, arg in enumerate(args):
        name = names[i] if i < len(names) else f"args[{i}]"
        for path, leaf in tree_util.tree_flatten_with_path(arg)[0]:
            a = np.asarray(leaf)
            largest = float(np.max(np.abs(a.astype(np.float64)), initial=0.0))
            lines.append(
                f"{name}{tree_util.keystr(path)}: shape {a.shape}, {a.dtype.name}, "
                f"largest |element| {largest:.3g}"
            )
    return lines


def offending_elements(
    got: Sequence[Any],
    grad: Sequence[np.ndarray[Any, Any]],
    tols: Sequence[tuple[float, float]],
    names: Sequence[str],
    limit: int = 5,
) -> list[str]:
    """The worst ``limit`` elements outside tolerance over all leaves, worst first:
    ``name[index]: candidate c, reference r, |error| e > allowed a``.

    >>> offending_elements([np.array([1.0, 5.0])], [np.array([1.0, 2.0])], [(0.0, 0.1)], ["g"])
    ['g[1]: candidate 5, reference 2, |error| 3 > allowed 0.1']
    """
    found: list[tuple[float, str]] = []
    for g, e, (rtol, atol), name in zip(got, grad, tols, names, strict=True):
        c = np.asarray(g, np.float64)
        if c.shape != np.shape(e):
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.abs(c - e)
            allowed = atol + rtol * np.abs(e)
            badness = np.where(np.isfinite(error), error / np.maximum(allowed, 1e-300), np.inf)
        bad = np.flatnonzero(~(error <= allowed))
        scores = -badness.ravel()[bad]
        if scores.size > limit:  # sort only the candidates for the top ``limit`` (800k at a time)
            keep = np.flatnonzero(scores <= np.partition(scores, limit - 1)[limit - 1])
            bad, scores = bad[keep], scores[keep]
        worst = bad[np.argsort(scores, kind="stable")[:limit]]
        for flat in worst:
            index = np.unravel_index(flat, c.shape)
            where = ", ".join(str(int(i)) for i in index)
            text = (
                f"{name}[{where}]: candidate {c[index]:.6g}, reference {e[index]:.6g}, "
                f"|error| {error[index]:.3g} > allowed {allowed[index]:.3g}"
            )
            found.append((float(badness[index]), text))
    found.sort(key=lambda t: -t[0])
    return [text for _, text in found[:limit]]
