"""The documentation: README.md is a landing page of at most 250 lines whose every link
resolves; the site's API pages cover every public name of ``manual_bp`` and ``verification``;
``tools/site_links.py`` finds a broken link or anchor in built HTML.

The site itself is built by ``nox -s docs`` (Sphinx, strict); these tests need no Sphinx."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "tools"))

from site_links import broken_links  # noqa: E402

_LINK = re.compile(r"(?<!!)\[[^\]\n]+\]\(([^)\s]+)\)|!\[[^\]\n]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_AUTOMODULE = re.compile(r"^\.\. automodule:: (\S+)\n((?:   :.*\n)*)", re.MULTILINE)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped (hyphens and
    underscores kept), each space a hyphen."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of every heading of a Markdown text (fenced blocks left out)."""
    found = set()
    for line in _FENCE.sub("", markdown).splitlines():
        match = re.match(r"^#{1,6} (.+)$", line)
        if match:
            found.add(github_slug(match.group(1)))
    return found


def unresolved_links(page: Path) -> list[str]:
    """Every relative link of a Markdown page whose file, or heading anchor, does not exist."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    problems = []
    for match in _LINK.finditer(text):
        link = match.group(1) or match.group(2)
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            problems.append(f"{link}: no such file")
        elif (
            fragment
            and target.suffix == ".md"
            and fragment not in anchors(target.read_text(encoding="utf-8"))
        ):
            problems.append(f"{link}: no heading with that anchor")
    return problems


def test_readme_is_a_landing_page_of_at_most_250_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_every_link_of_the_readme_resolves() -> None:
    assert unresolved_links(README) == []


def test_link_check_sees_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some `code` here\n", encoding="utf-8")
    page = tmp_path / "index.md"
    page.write_text(
        "[ok](a.md#some-code-here) [bad anchor](a.md#nowhere) [gone](b.md)\n"
        "```\n[in a fence](c.md)\n```\n[web](https://example.org)\n",
        encoding="utf-8",
    )
    assert unresolved_links(page) == [
        "a.md#nowhere: no heading with that anchor",
        "b.md: no such file",
    ]


def documented_names() -> dict[str, set[str] | None]:
    """Module -> the names its ``automodule`` directive lists (None: all of ``__all__``)."""
    documented: dict[str, set[str] | None] = {}
    for page in sorted((DOCS / "reference").glob("api-*.md")):
        for module, options in _AUTOMODULE.findall(page.read_text(encoding="utf-8")):
            members = re.search(r":members:(.*)", options)
            assert members is not None, f"{page.name}: {module} without :members:"
            listed = {n.strip() for n in members.group(1).split(",") if n.strip()}
            documented[module] = listed or None
    return documented


@pytest.mark.parametrize(
    "module",
    [
        "manual_bp",
        "manual_bp.fused",
        "manual_bp.datasets",
        "manual_bp.train",
        "verification",
        "verification.auditing",
        "verification.compare",
        "verification.reference",
        "verification.strategies",
        "verification.mainjob.checks",
        "verification.mainjob.twin",
    ],
)
def test_every_public_name_has_an_api_entry(module: str) -> None:
    """Each public name is on an API page: its module's ``automodule`` documents all of
    ``__all__``, or lists the name (``verification.auditing`` may leave out what
    ``verification`` already documents)."""
    documented = documented_names()
    public = set(importlib.import_module(module).__all__)
    covered: set[str] = set()
    for name, listed in documented.items():
        if name == module:
            covered |= public if listed is None else listed
    if module == "verification.auditing":
        covered |= documented["verification"] or set()
    if module == "verification":  # the submodules it re-exports have their own entries
        covered |= {"reference", "strategies"} | set(
            importlib.import_module("verification.compare").__all__
        )
    assert sorted(public - covered) == []


def test_site_link_check_finds_a_broken_anchor_and_a_missing_page(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a><a href="sub/page.html#gone">anchor</a>'
        '<a href="missing.html">page</a><a href="https://example.org">web</a>'
        '<img src="sub/pic.png"><a href="#top">self</a><h1 id="top">t</h1>',
        encoding="utf-8",
    )
    (tmp_path / "sub" / "page.html").write_text('<h2 id="here">x</h2>', encoding="utf-8")
    assert broken_links(tmp_path) == [
        "index.html: missing.html",
        "index.html: sub/page.html#gone",
        "index.html: sub/pic.png",
    ]
    (tmp_path / "sub" / "pic.png").write_bytes(b"")
    assert len(broken_links(tmp_path)) == 2
