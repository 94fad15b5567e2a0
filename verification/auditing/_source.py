"""The user's source, read statically: which files are the user's own, the statement at a
line, and the names a statement reads (from its AST).

The line tracer (``_trace``) is active only in the files ``user_file`` accepts, and records
for each statement what it read by the names ``names_read`` finds in the statement's AST.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
import sysconfig
from functools import cache
from pathlib import Path

__all__ = ["names_read", "only_fetches", "statement_at", "user_file"]

_SKIPPED_PACKAGES = ("numpy", "jax", "jaxlib", "torch", "hypothesis", "ml_dtypes", "scipy")


@cache
def _skipped_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for name in _SKIPPED_PACKAGES:
        module_file = getattr(sys.modules.get(name), "__file__", None)
        if module_file:
            roots.add(str(Path(module_file).parent))
    roots.add(str(Path(__file__).resolve().parent.parent))  # this project's verification/
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots if r))


@cache
def user_file(filename: str) -> bool:
    """Whether ``filename`` is the user's source (a real file outside libraries and this
    project's ``verification`` package)."""
    if filename.startswith("<") or not os.path.isfile(filename):
        return False
    real = os.path.realpath(filename)
    return not any(real.startswith(root) for root in _skipped_roots())


@cache
def _statements(filename: str) -> dict[int, ast.stmt]:
    """line -> the innermost statement that line belongs to (for a compound statement, its
    header lines only)."""
    source = "".join(linecache.getlines(filename))
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    table: dict[int, ast.stmt] = {}
    for node in ast.walk(tree):  # breadth first: inner statements overwrite outer ones
        if not isinstance(node, ast.stmt):
            continue
        end = node.end_lineno or node.lineno
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            first = node.body[0].lineno  # type: ignore[attr-defined]
            end = max(node.lineno, first - 1)
        for line in range(node.lineno, end + 1):
            table[line] = node
    return table


def statement_at(filename: str, line: int) -> ast.stmt | None:
    """The statement (or compound statement's header) of ``filename`` at ``line``."""
    return _statements(filename).get(line)


def _header_parts(stmt: ast.stmt) -> list[ast.AST]:
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.target, stmt.iter]
    if isinstance(stmt, (ast.While, ast.If)):
        return [stmt.test]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return list(stmt.items)
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return []
    return [stmt]


@cache
def names_read(filename: str, line: int) -> tuple[str, ...]:
    """The names the statement at ``line`` reads (an augmented assignment reads its target)."""
    stmt = statement_at(filename, line)
    if stmt is None:
        return ()
    names: list[str] = []
    for part in _header_parts(stmt):
        for node in ast.walk(part):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                names.append(node.id)
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        names.append(stmt.target.id)
    return tuple(dict.fromkeys(names))


_FETCH: tuple[type[ast.AST], ...] = (ast.Name, ast.Attribute, ast.Subscript, ast.Constant)
_FETCH += (ast.Tuple, ast.List, ast.Dict, ast.Slice, ast.Starred, ast.expr_context)


@cache
def only_fetches(filename: str, line: int, steps: tuple[str, ...] = ()) -> bool:
    """Whether the statement at ``line`` only moves the value at ``steps`` of what it binds or
    returns (``return layer.dW, dz.sum(0)`` at ``("[0]",)``, ``dW = cache["dW"]``): names,
    attributes, items and displays of them, no operation or call.

    A value that such a statement produces and the tracer did not see made was computed
    elsewhere, where it does not look: the statement cannot be where an error enters.
    """
    stmt = statement_at(filename, line)
    if not isinstance(stmt, (ast.Return, ast.Assign, ast.AnnAssign, ast.Expr)):
        return False
    value = stmt.value
    for step in steps:  # into the display that built the container: its element there
        if isinstance(value, (ast.Tuple, ast.List)) and step[1:-1].lstrip("-").isdigit():
            index = int(step[1:-1])
            value = value.elts[index] if -len(value.elts) <= index < len(value.elts) else None
        elif isinstance(value, ast.Dict) and step.startswith("["):
            keys = [k.value if isinstance(k, ast.Constant) else None for k in value.keys]
            found = [v for k, v in zip(keys, value.values, strict=True) if repr(k) == step[1:-1]]
            value = found[0] if found else None
        if value is None or isinstance(value, ast.Starred):
            return False
        if not isinstance(value, (ast.Tuple, ast.List, ast.Dict)):
            break
    return value is not None and all(isinstance(n, _FETCH) for n in ast.walk(value))
