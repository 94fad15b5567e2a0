r"""Regenerate every command output quoted in README.md and the pages of docs/ from a real run,
or check for drift.

``python tools/readme_outputs.py`` reruns each marked block of every page (README.md and each
Markdown page under docs/ that marks a block, ``pages``) and writes the fresh output in;
``--readme PAGE`` takes one page; ``--check`` only compares and exits 1 naming each block that drifted (with a
diff); ``--list`` shows the marked blocks and the fenced blocks that look like output but are
not marked. ``tests/test_readme.py`` runs the check for every block of every page. Each page is
on its own: its ``file:`` blocks are the files its commands see, and the environment its outputs
were made with is recorded at its end.

Markup (HTML comments, invisible on GitHub), on the line just above a fenced block:

``<!-- file: NAME -->``
    The block is a file: it is written as NAME into the folder where the commands run.
``<!-- output -->``
    The block is a console session: lines ``$ COMMAND`` (a trailing ``\`` continues the
    command on the next line) each followed by what the command prints, stdout and stderr
    together, as a user sees it.
``<!-- output run="COMMAND" -->``
    The whole block is what COMMAND prints (the command is not shown in the block, e.g. the
    output of a Python snippet given as a ``file:`` block). Without a fenced block below it,
    the marker covers the lines up to ``<!-- /output -->`` (a markdown table the command
    prints, say).

Attributes (``key="value"``, ``\"`` for a quote inside a value):

``varies="REGEX"``
    Parts of the output that change from run to run or machine to machine (timings, library
    versions), marked so: what REGEX matches is excepted from the comparison and refreshed on
    a rewrite. ``seconds`` stands for a duration like ``0.32 s`` or ``(3.5 s)``; several
    patterns are joined by ``|`` as in any regex.
``versions="REGEX"``
    Parts that depend on the versions of Python and the libraries (a shrunk counterexample,
    whose draws follow hypothesis's version; the step where a rounding-level maximum falls):
    excepted only when the versions running, or the processor, differ from those the README's
    outputs were made with, which a rewrite records in the line
    ``<!-- readme-outputs made with: ... -->`` at the end of README.md.

Two rules, one per kind of environment:

* **The versions the outputs were made with** (``locks/py3.11.txt``, installed by
  ``nox -s tests-locked`` and ``nox -s readme``) on the same kind of processor (the widest
  vector instructions numpy dispatches to, recorded beside the versions): every character
  outside ``varies`` counts.
* **Any other versions** (what pip resolves today for a newcomer): what does not depend on the
  library's order of operations counts — every word, verdict, integer (counts, indices,
  shapes, exit statuses), sign of structure and line — while every decimal number (``0.297573``,
  ``8.35683e-17``, ``1e-05``: a measured value whose digits follow the order in which numpy or
  XLA sums) may differ, and the ``versions`` parts are excepted too. A decimal number must
  still stand where the README has one.
``setup="COMMAND"``
    Run first, not shown and not compared (e.g. a sed that fixes the bug in a ``file:``).

A line ``...`` in an output stands for any number of lines. Commands run through bash in a
fresh temporary folder holding the ``file:`` blocks, with ``python`` being the interpreter
that runs this script, the repository on PYTHONPATH, PYTHONUNBUFFERED=1, COLUMNS=100 and none
of the settings of ``UNSET`` (CI, the hypothesis profile...); ``pip install`` commands are shown but not run (they are the reader's
install step). Exit statuses are not compared (a failing audit is a legitimate output).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ALIASES = {"seconds": r"\d+(?:\.\d+)? ?(?:s|ms|us)\b"}
MARKER = re.compile(r"^<!--\s*(output|file)(?::\s*(\S+))?((?:\s+\w+=\"(?:[^\"\\]|\\.)*\")*)\s*-->$")
ATTRIBUTE = re.compile(r"(\w+)=\"((?:[^\"\\]|\\.)*)\"")
END_MARKER = "<!-- /output -->"
TIMEOUT_S = 900
#: Settings of the machine running the check that a reader's shell does not have: the
#: hypothesis profile, CI (the pytest plugin's profile follows it), the plugin's profile and
#: the folder the test suite saves counterexamples to. Quoted outputs are what a reader sees.
UNSET = frozenset({"HYPOTHESIS_PROFILE", "CI", "GRADIENT_AUDIT_PROFILE", "MANUAL_BP_AUDIT_DIR"})


@dataclass
class Block:
    """A marked fenced block: where it lies in the README and what it asks for."""

    kind: str  # "output" or "file"
    line: int  # 0-based index of the first content line (after the opening fence, if any)
    content: list[str]
    name: str = ""  # file name for "file" blocks
    attrs: dict[str, str] = field(default_factory=dict)
    page: str = "README.md"  # the page it lies in, relative to the repository

    @property
    def label(self) -> str:
        first = self.attrs.get("run") or next(
            (c[2:] for c in self.content if c.startswith("$ ")), "?"
        )
        first = first.rstrip(" \\")[:70]
        return f"{self.page}:{self.line}: {first}"


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/ (built output left out) that marks a
    block: the pages whose outputs are checked, each on its own."""
    found = [root / "README.md"]
    for page in sorted((root / "docs").rglob("*.md")):
        if "_build" in page.relative_to(root).parts:
            continue
        if any(MARKER.match(line.strip()) for line in page.read_text(encoding="utf-8").split("\n")):
            found.append(page)
    return found


def page_name(page: Path) -> str:
    """The page's path relative to the repository (its own name if it lies elsewhere)."""
    try:
        return str(page.resolve().relative_to(ROOT))
    except ValueError:
        return page.name


def parse(lines: list[str], page: str = "README.md") -> list[Block]:
    """The marked blocks of a page (README.md by default) given as lines (without line ends)."""
    blocks = []
    for i, line in enumerate(lines[:-1]):
        match = MARKER.match(line.strip())
        if not match:
            continue
        if lines[i + 1].startswith("```"):
            start = i + 2
            end = next(j for j in range(start, len(lines)) if lines[j].startswith("```"))
        else:  # a region up to <!-- /output -->, e.g. a markdown table the command prints
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == END_MARKER)
        attrs = {k: v.replace('\\"', '"') for k, v in ATTRIBUTE.findall(match.group(3) or "")}
        unknown = set(attrs) - {"run", "varies", "versions", "setup"}
        if unknown:
            raise ValueError(f"{page}:{i + 1}: unknown attribute(s) {sorted(unknown)}")
        kind, name = match.group(1), match.group(2) or ""
        blocks.append(Block(kind, start, lines[start:end], name, attrs, page))
    return blocks


def unmarked_output_blocks(lines: list[str]) -> list[int]:
    """1-based lines of fenced blocks that look like output (plain ``` or console with "$ ")
    but carry no marker: outputs the drift check does not cover."""
    found, inside = [], False
    for i, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if not inside and line.strip() in ("```", "```console", "```text"):
            marked = i > 0 and MARKER.match(lines[i - 1].strip()) is not None
            if not marked:
                found.append(i + 1)
        inside = not inside
    return found


def _sessions(block: Block) -> list[tuple[str, list[str]]]:
    """(command, its output lines) pairs: from ``$`` lines, or the single ``run`` command."""
    if "run" in block.attrs:
        return [(block.attrs["run"], block.content)]
    sessions: list[tuple[str, list[str]]] = []
    lines = iter(block.content)
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + next(lines).strip()
            sessions.append((command, []))
        elif sessions:
            sessions[-1][1].append(line)
        else:
            raise ValueError(f"{block.label}: output before the first '$ ' command")
    return sessions


def _shown(block: Block) -> list[str]:
    """The block's command lines as shown (with continuations), in order."""
    shown, continuing = [], False
    for line in block.content:
        if line.startswith("$ ") or continuing:
            shown.append(line)
        continuing = (line.startswith("$ ") or continuing) and line.endswith("\\")
    return shown


def _environment(workdir: Path) -> dict[str, str]:
    bindir = workdir / ".bin"
    bindir.mkdir()
    python = bindir / "python"  # a script, not a symlink: a venv's python must keep its path
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {
        **env,
        "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": path,
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "100",
        "TERM": "dumb",
    }


def run(block: Block, files: list[Block]) -> list[list[str]]:
    """Run the block's commands in a fresh folder; the output lines of each command."""
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        workdir = Path(tmp)
        for f in files:
            (workdir / f.name).write_text("\n".join(f.content) + "\n", encoding="utf-8")
        env = _environment(workdir)
        if "setup" in block.attrs:
            subprocess.run(["bash", "-c", block.attrs["setup"]], cwd=workdir, env=env, check=True)
        outputs = []
        for command, _ in _sessions(block):
            if re.search(r"\bpip install\b", command):
                outputs.append([])
                continue
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=TIMEOUT_S,
            )
            outputs.append([line.rstrip() for line in done.stdout.rstrip("\n").split("\n")])
        return outputs


def cpu_level() -> str:
    """The machine and the widest vector instructions numpy dispatches to (``x86_64 AVX2``,
    ``x86_64 AVX512F``...): numpy's and XLA's kernels, hence the last digits of a sum, follow
    them as much as the library versions."""
    import platform

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # pragma: no cover - numpy < 2 or another layout
        features = {}
    levels = ("AVX512_SPR", "AVX512_ICL", "AVX512_SKX", "AVX512F", "AVX2", "SSE42", "SVE", "ASIMD")
    found = next((name for name in levels if features.get(name)), "baseline")
    return f"{platform.machine()} {found}"


def environment() -> str:
    """The versions and the machine the outputs depend on, as recorded in README.md."""
    from importlib import metadata

    names = ("numpy", "jax", "jaxlib", "hypothesis", "scikit-learn", "matplotlib")
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} -")
    return f"Python {sys.version.split()[0]}, " + ", ".join(versions) + f", cpu {cpu_level()}"


ENV_LINE = "<!-- readme-outputs made with: {} -->"


def recorded_environment(lines: list[str]) -> str | None:
    """The environment recorded by the last rewrite, if any."""
    prefix, suffix = ENV_LINE.split("{}")
    for line in lines:
        if line.startswith(prefix) and line.endswith(suffix):
            return line[len(prefix) : -len(suffix)]
    return None


DECIMAL = r"(?<![\w.])-?(?:\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?![\w.]*\d)"
"""A decimal number (not an integer, not part of a version like 3.11.7): a measured value whose
digits follow the library's order of operations, compared only under the recorded versions."""


def _varies(block: Block, same_versions: bool = True) -> str | None:
    parts = [block.attrs.get("varies", "")]
    if not same_versions:
        parts += [block.attrs.get("versions", ""), DECIMAL]
    pattern = "|".join(p for p in parts if p)
    if not pattern:
        return None
    return "|".join(ALIASES.get(part, part) for part in pattern.split("|"))


def _pattern(expected: list[str], varies: str | None) -> re.Pattern[str]:
    """A regex for the whole output: literal lines, ``...`` as any lines, varying parts free."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(rf"(?P<skip{len(parts)}>(?:[^\n]*\n)*?)")
            continue
        pieces = re.split(f"(?:{varies})", line) if varies else [line]
        body = f"(?:{varies})".join(re.escape(piece) for piece in pieces)
        parts.append(body + r"\n")
    return re.compile("".join(parts) + r"\Z")


def _elide(expected: list[str], actual: list[str], varies: str | None) -> list[str] | None:
    """``actual`` with the lines that ``...`` covered put back as ``...``; None if no match."""
    text = "".join(line + "\n" for line in actual)
    match = _pattern([e.rstrip() for e in expected], varies).match(text)
    if match is None:
        return None
    out, position = [], 0
    for name in match.groupdict():
        start, end = match.span(name)
        out += [text[position:start], "...\n"]
        position = end
    out.append(text[position:])
    return "".join(out).rstrip("\n").split("\n")


def compare(
    block: Block, outputs: list[list[str]], same_versions: bool = True
) -> tuple[bool, list[str]]:
    """(whether the block matches the fresh outputs, the block's new content); with
    ``same_versions`` False the ``versions`` parts are excepted too."""
    varies = _varies(block, same_versions)
    new: list[str] = []
    same = True
    shown = iter(_shown(block))
    for (command, expected), actual in zip(_sessions(block), outputs, strict=True):
        if "run" not in block.attrs:
            new.append(next(shown))
            while new[-1].endswith("\\"):
                new.append(next(shown))
        if not actual and re.search(r"\bpip install\b", command):
            new += expected
            continue
        elided = _elide(expected, actual, varies)
        same = same and elided is not None
        new += actual if elided is None else elided
    return same, new


def check_blocks(
    lines: list[str], only: str = "", page: str = "README.md"
) -> list[tuple[Block, bool, list[str]]]:
    """Run every marked output block of a page (whose label contains ``only``); the results."""
    blocks = parse(lines, page)
    files = [b for b in blocks if b.kind == "file"]
    same_versions = recorded_environment(lines) == environment()
    results = []
    for block in blocks:
        if block.kind != "output" or only not in block.label:
            continue
        same, new = compare(block, run(block, files), same_versions)
        results.append((block, same, new))
    return results


def process(path: Path, check: bool, listing: bool, only: str) -> int:
    """Regenerate (or with ``check`` compare, or with ``listing`` list) the blocks of one
    page; 1 if ``check`` found drift, else 0."""
    page = page_name(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    if listing:
        for block in parse(lines, page):
            print(f"{block.kind:7}{block.name or block.label}")
        for line in unmarked_output_blocks(lines):
            print(f"unmarked output-like block at {page}:{line}")
        return 0
    results = check_blocks(lines, only, page)
    drifted = [(b, new) for b, same, new in results if not same]
    for block, same, _ in results:
        print(f"{'ok     ' if same else 'DRIFTED'} {block.label}", flush=True)
    if check:
        for block, new in drifted:
            diff = difflib.unified_diff(block.content, new, page, "fresh run", lineterm="")
            print("\n".join(diff))
        return 1 if drifted else 0
    if not results:
        return 0
    for block, _, new in sorted(results, key=lambda r: -r[0].line):
        lines[block.line : block.line + len(block.content)] = new
    recorded = recorded_environment(lines)
    if recorded is not None:
        lines.remove(ENV_LINE.format(recorded))
    while lines and not lines[-1]:
        lines.pop()
    lines += ["", ENV_LINE.format(environment()), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"{page}: {len(results)} block(s) rewritten, {len(drifted)} had drifted")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python tools/readme_outputs.py",
        description="Regenerate (default) or --check the command outputs quoted in README.md "
        "and the pages of docs/.",
    )
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    p.add_argument("--list", action="store_true", help="list marked and unmarked blocks")
    p.add_argument("--only", default="", metavar="TEXT", help="blocks whose command has TEXT")
    p.add_argument(
        "--readme",
        type=Path,
        default=None,
        metavar="PAGE",
        help="one page only (default: README.md and every page of docs/ that marks a block)",
    )
    args = p.parse_args(argv)
    chosen = [args.readme] if args.readme is not None else pages()
    statuses = [process(path, args.check, args.list, args.only) for path in chosen]
    return max(statuses, default=0)


if __name__ == "__main__":
    sys.exit(main())
