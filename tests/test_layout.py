"""The package layout: no import cycle in ``verification/``, one dispatcher table whose every
subcommand runs and is listed by ``--help``, and the public import paths kept.

The import graph is read from the source (``ast``), every ``import`` statement counted, also
those inside functions (a deferred import hides a cycle; it does not remove it). An edge goes
from a module to each module of the package it imports: ``from pkg import name`` is an edge
to ``pkg.name`` when that is a module, else to ``pkg``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from verification import __main__ as entry

ROOT = Path(__file__).resolve().parent.parent


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root/package`` (``__init__`` is the package)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a (possibly relative) ``from ... import`` target."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join([*base, target] if target else base)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (anywhere in its source)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node.level, node.module)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]`` when the graph has none."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_no_import_cycle_in_verification() -> None:
    graph = import_graph(ROOT, "verification")
    assert "verification.cli.report" in graph
    assert "verification.mainjob.checks" in graph
    assert find_cycle(graph) == []


def test_no_import_cycle_in_manual_bp() -> None:
    assert find_cycle(import_graph(ROOT, "manual_bp")) == []


def test_cycle_finder_sees_a_deferred_and_a_relative_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .c import g\n")
    (package / "sub" / "c.py").write_text("from .. import a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]
    (package / "sub" / "c.py").write_text("import numpy\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) == []


@pytest.mark.parametrize("name", sorted(entry.COMMANDS))
def test_every_subcommand_resolves_to_a_function(name: str) -> None:
    module, function = entry.COMMANDS[name]
    assert callable(getattr(importlib.import_module(module), function))


def test_help_lists_every_subcommand() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "verification", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    usage = done.stdout.split("\n\n")[0]
    for name in entry.COMMANDS:
        prefix = "python -m verification [report]" if name == entry.DEFAULT else None
        assert (prefix or f"python -m verification {name} ") in usage, name


def test_public_import_paths_are_kept() -> None:
    import verification

    assert callable(verification.audit)
    assert callable(verification.audit_vjp)
    assert importlib.import_module("verification.reference") is verification.reference
    assert importlib.import_module("verification.strategies") is verification.strategies
