"""docs/derivations.md stays true to the code: every link resolves, every linked function and
test exists under its linked name, every public function of ``manual_bp`` is linked to the
module that defines it, and every formula of the source document is quoted once and mapped to
code and tests.

Renaming a function or a test without updating the page fails here. The checkers return lists
of problems (empty when the page is right); the tests at the bottom feed them deliberately
broken pages to show that they catch what they claim to.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
from collections import Counter
from pathlib import Path

import pytest

import manual_bp

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC = DOCS / "derivations.md"

# The displayed formulas of backprop-notes.md (the project's source document), verbatim, by
# line number. The document is fixed (published 2020-06-03); these are its text, not results.
SOURCE_FORMULAS: dict[int, str] = {
    21: r"$$\frac{\partial z}{\partial w} = X\nabla f $$",
    23: r"$$\frac{\partial z}{\partial x} = W\nabla f $$",
    31: r"$$J = \sum ylog(p)$$",
    35: r"$$\frac{\partial J}{\partial W_1} , \frac{\partial J}{\partial W_2}$$",
    39: r"$$\frac{\partial J}{\partial W_2}= \frac{\partial J}{\partial Z_2}.\frac{\partial Z_2}{\partial W_2}$$",
    43: r"$$\frac{\partial J}{\partial W_2} = \frac{\partial J}{\partial Z_2}. \nabla f_2. Z_1$$",
    47: r"$$\frac{\partial J}{\partial W_2} = 1/m*(Z_2-y).Z_1$$",
    51: r"$$\frac{\partial J}{\partial W_1} = \frac{\partial J}{\partial Z_2}.\frac{\partial Z_2}{\partial Z_1}.\frac{\partial Z_1}{\partial W_1}$$",
    57: r"$$\frac{\partial J}{\partial W_1} = \frac{\partial J}{\partial Z_2}.\frac{\partial Z_2}{\partial Z_1}.\nabla f_1.X$$",
    61: r"$$\frac{\partial Z_2}{\partial Z_1} = W_2\nabla f_2$$",
    65: r"$$\frac{\partial J}{\partial W_1} = \frac{\partial J}{\partial Z_2}.\nabla f_2.W_2.\nabla f_1.X$$",
    69: r"$$\frac{\partial J}{\partial W_1} = 1/m*(Z_2-y).W_2.\nabla f_1.X$$",
    83: r"$$\frac{\partial J}{\partial W} = 1/m*(y_p-y).X$$",
}
# The source document's three images (missing; described in FIGURES.md), by line number.
SOURCE_FIGURES = (17, 75, 79)

_LINK = re.compile(r"!?\[([^\]\n]+)\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`\n]+`")
_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.DOTALL)
_INLINE_MATH = re.compile(r"\$[^$\n]+\$")
_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CODE_TEXT = re.compile(rf"`({_IDENT})`")
_TEST_TEXT = re.compile(rf"`(?:(Test{_IDENT})::)?(test_{_IDENT})`")


def _strip_math(text: str) -> str:
    """The page with code spans, fenced blocks and math blanked out.

    Code spans go first (they quote LaTeX verbatim, dollar signs included), then math, where
    ``\\mathbb{1}[z > 0](...)`` must not be read as a link. Link texts that are code spans
    (the function and test links) are kept: only spans outside ``[...]`` are blanked.
    """
    text = _FENCE.sub("", text)

    def blank(match: re.Match[str]) -> str:
        start, end = match.span()
        is_label = text[start - 1 : start] == "[" and text[end : end + 1] == "]"
        return match.group(0) if is_label else "``"

    text = _CODE_SPAN.sub(blank, text)
    text = _DISPLAY_MATH.sub("", text)
    return _INLINE_MATH.sub("", text)


def links(text: str) -> list[tuple[str, str]]:
    """Every markdown link and image of the page as (text, target), math and code excluded."""
    return _LINK.findall(_strip_math(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = re.sub(r"[`*_]", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub generates for the page's headings (repeats get -1, -2, ...)."""
    seen: Counter[str] = Counter()
    result = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", text), re.MULTILINE):
        base = slug(heading)
        result.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return result


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@functools.cache
def _test_names(path: Path) -> frozenset[str]:
    """The tests pytest collects from the file: ``test_x`` for functions, and both
    ``TestC::test_x`` and ``test_x`` for methods of a ``Test`` class."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test_"
        ):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    item.name.startswith("test_")
                ):
                    names.update({item.name, f"{node.name}::{item.name}"})
    return frozenset(names)


def check_links(text: str, base: Path = DOCS) -> list[str]:
    """Problems with the page's links: missing targets, anchors, functions or tests."""
    problems: list[str] = []
    own_anchors = anchors(text)
    for label, target in links(text):
        if re.match(r"[a-z]+:", target):
            continue  # absolute URLs are not checked (no network in tests)
        path_part, _, fragment = target.partition("#")
        if not path_part:
            if fragment not in own_anchors:
                problems.append(f"[{label}]({target}): no heading with anchor #{fragment}")
            continue
        path = (base / path_part).resolve()
        if not path.is_relative_to(ROOT):
            problems.append(f"[{label}]({target}): points outside the repository")
            continue
        if not path.exists():
            problems.append(f"[{label}]({target}): {path.relative_to(ROOT)} does not exist")
            continue
        rel = path.relative_to(ROOT)
        if path.suffix != ".py":
            continue
        if rel.parts[0] == "tests" and path.name.startswith("test_"):
            problems.extend(_check_test_link(label, target, path))
        elif rel.parts[0] == "tests":
            problems.extend(_check_helper_link(label, target, path))
        else:
            problems.extend(_check_code_link(label, target, path))
    return problems


def _check_code_link(label: str, target: str, path: Path) -> list[str]:
    match = _CODE_TEXT.fullmatch(label)
    if match is None:
        return [f"[{label}]({target}): a link to code must name one object, as [`name`]"]
    name, module_name = match.group(1), _module_name(path)
    module = importlib.import_module(module_name)
    obj = getattr(module, name, None)
    if obj is None:
        return [f"[{label}]({target}): {module_name} has no attribute {name!r}"]
    defined_in = getattr(obj, "__module__", module_name)
    if defined_in != module_name:
        return [f"[{label}]({target}): {name} is defined in {defined_in}, not {module_name}"]
    return []


@functools.cache
def _top_level_names(path: Path) -> frozenset[str]:
    """Names a module binds at top level (its attributes once imported): functions, classes,
    assignments and imports."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def _check_helper_link(label: str, target: str, path: Path) -> list[str]:
    """A helper module of the tests (not a package, so read rather than imported)."""
    match = _CODE_TEXT.fullmatch(label)
    if match is None:
        return [f"[{label}]({target}): a link to code must name one object, as [`name`]"]
    if match.group(1) not in _top_level_names(path):
        return [f"[{label}]({target}): {path.relative_to(ROOT)} defines no {match.group(1)}"]
    return []


def _check_test_link(label: str, target: str, path: Path) -> list[str]:
    match = _TEST_TEXT.fullmatch(label)
    if match is None:
        return [
            f"[{label}]({target}): a link to a test must name it, as [`test_x`] or [`TestC::test_x`]"
        ]
    cls, func = match.groups()
    wanted = f"{cls}::{func}" if cls else func
    if wanted not in _test_names(path):
        return [f"[{label}]({target}): no test {wanted} in {path.relative_to(ROOT)}"]
    return []


def linked_code(text: str) -> set[tuple[str, str]]:
    """(module, name) for every link to an object in ``manual_bp``."""
    found = set()
    for label, target in links(text):
        match = _CODE_TEXT.fullmatch(label)
        path_part = target.partition("#")[0]
        if match and path_part.endswith(".py") and not re.match(r"[a-z]+:", target):
            path = (DOCS / path_part).resolve()
            if path.is_relative_to(ROOT / "manual_bp"):
                found.add((_module_name(path), match.group(1)))
    return found


def check_public_functions_linked(text: str) -> list[str]:
    """Every public function of manual_bp must be linked to the module that defines it."""
    linked = linked_code(text)
    problems = []
    for name in manual_bp.__all__:
        obj = getattr(manual_bp, name)
        if inspect.isfunction(obj) and (obj.__module__, name) not in linked:
            problems.append(f"{name} (from {obj.__module__}) is not linked on the page")
    return problems


def check_source_formulas(text: str) -> list[str]:
    """Every formula of the source document quoted exactly once, verbatim, as code."""
    problems = []
    for line, formula in SOURCE_FORMULAS.items():
        count = text.count(f"`{formula}`")
        if count != 1:
            problems.append(f"source line {line} {formula} is quoted {count} times, not once")
    return problems


def source_table_rows(text: str) -> dict[int, str]:
    """The rows of the "Source line → code" table, by their first cell (a line number)."""
    _, _, table = text.partition("## Source line → code")
    rows = {}
    for match in re.finditer(r"^\| *(\d+) *\|(.*)$", table, re.MULTILINE):
        rows[int(match.group(1))] = match.group(2)
    return rows


def check_source_table(text: str) -> list[str]:
    """Each source formula and figure has a row linking a section, code and a test."""
    rows = source_table_rows(text)
    problems = []
    for line in sorted({*SOURCE_FORMULAS, *SOURCE_FIGURES}):
        row = rows.get(line)
        if row is None:
            problems.append(f"source line {line} has no row in the Source line → code table")
            continue
        targets = [target for _, target in links(row)]
        if not any(t.startswith("#") for t in targets):
            problems.append(f"source line {line}: no link to a section")
        if not any(t.startswith("../manual_bp/") for t in targets):
            problems.append(f"source line {line}: no link to code")
        if not any(t.startswith("../tests/") for t in targets):
            problems.append(f"source line {line}: no link to a test")
    return problems


@pytest.fixture(scope="module")
def page() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_link_resolves_to_an_existing_file_function_test_or_heading(page: str) -> None:
    assert check_links(page) == []


def test_page_links_code_and_tests(page: str) -> None:
    targets = [target for _, target in links(page)]
    assert sum(t.startswith("../manual_bp/") for t in targets) >= len(manual_bp.__all__) // 2
    assert any(t.startswith("../tests/") for t in targets)


def test_every_public_function_is_linked_to_its_defining_module(page: str) -> None:
    assert check_public_functions_linked(page) == []


def test_every_source_formula_is_quoted_exactly_once(page: str) -> None:
    assert check_source_formulas(page) == []


def test_every_source_formula_maps_to_a_section_code_and_a_test(page: str) -> None:
    assert check_source_table(page) == []


# The checkers themselves, on pages broken on purpose.

_GOOD = (
    "## 2. Section\n"
    "[`relu_grad`](../manual_bp/activations.py) and [`MLPParams`](../manual_bp/network.py) "
    "and [section](#2-section) and [folder](../manual_bp/)\n"
    "and [`settings`](../tests/conftest.py)\n"
)


def test_checker_accepts_a_correct_page() -> None:
    assert check_links(_GOOD) == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("[`relu_gradient`](../manual_bp/activations.py)", "has no attribute 'relu_gradient'"),
        ("[`relu`](../manual_bp/__init__.py)", "is defined in manual_bp.activations"),
        ("[`relu`](../manual_bp/activation.py)", "does not exist"),
        ("[relu](../manual_bp/activations.py)", "must name one object"),
        ("[x](#no-such-section)", "no heading with anchor"),
        ("[x](../../outside.md)", "outside the repository"),
        ("[`no_such_helper`](../tests/conftest.py)", "tests/conftest.py defines no no_such_helper"),
    ],
)
def test_checker_reports_a_renamed_or_missing_target(broken: str, expected: str) -> None:
    problems = check_links(_GOOD + broken + "\n")
    assert len(problems) == 1
    assert expected in problems[0]


def test_checker_reports_a_renamed_test(tmp_path: Path) -> None:
    # A test file of the repository is needed for the path check; use this very file.
    this = Path(__file__).resolve().relative_to(ROOT).as_posix()
    ok = f"[`test_checker_reports_a_renamed_test`](../{this})"
    renamed = f"[`test_checker_reports_a_renamed_tset`](../{this})"
    in_class = f"[`TestNope::test_checker_reports_a_renamed_test`](../{this})"
    assert check_links(ok) == []
    assert "no test test_checker_reports_a_renamed_tset" in check_links(renamed)[0]
    assert "no test TestNope::" in check_links(in_class)[0]


def test_links_inside_math_and_code_are_not_links() -> None:
    text = "$\\mathbb{1}[z > 0](x)$ and `[a](b.py)` and $$[c](d.py)$$"
    assert links(text) == []


def test_checker_reports_an_unlinked_public_function(page: str) -> None:
    removed = page.replace("[`softmax_vjp`](../manual_bp/activations.py)", "`softmax_vjp`")
    assert check_public_functions_linked(removed) == [
        "softmax_vjp (from manual_bp.activations) is not linked on the page"
    ]


def test_checker_reports_a_formula_dropped_or_quoted_twice(page: str) -> None:
    quoted = f"`{SOURCE_FORMULAS[47]}`"
    assert "line 47" in check_source_formulas(page.replace(quoted, ""))[0]
    assert "quoted 2 times" in check_source_formulas(page + quoted)[0]


def test_checker_reports_a_table_row_without_a_test(page: str) -> None:
    rows = source_table_rows(page)
    row = f"| 83 |{rows[83]}"
    stripped = re.sub(r"\[[^\]]+\]\(\.\./tests/[^)]+\)", "", row)
    assert check_source_table(page.replace(row, stripped)) == ["source line 83: no link to a test"]


def _section(text: str, heading: str) -> str:
    _, _, rest = text.partition(heading)
    return rest.split("\n## ", 1)[0]


def test_second_order_section_links_each_product_its_reference_tests_and_the_audit(
    page: str,
) -> None:
    section = _section(page, "## 11. Second order")
    targets = {(label.strip("`"), target) for label, target in links(section)}
    for name in ("mlp_hvp", "mlp_gnvp", "logreg_hvp", "logreg_gnvp"):
        assert (name, "../manual_bp/hvp.py") in targets
    assert ("mlp_hvp", "../verification/reference.py") in targets
    assert ("audit_hvp", "../verification/auditing/_hvp.py") in targets
    tests = {t for _, t in targets if t.startswith("../tests/test_")}
    assert {"../tests/test_hvp.py", "../tests/test_audit_hvp.py"} <= tests
