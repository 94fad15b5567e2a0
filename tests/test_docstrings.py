"""Every public function of ``manual_bp`` has the one docstring template of the project.

The template (STYLE.md, habit 4): a one-line summary ending in a period, then a blank line; the
formula (a ``.. math::`` block or inline ``:math:``); an ``Args:`` section naming every
parameter; a ``Returns:`` section; shapes stated in those sections; the dtype rule; a doctest.
The doctests themselves run under pytest through ``--doctest-modules`` (checked below).

A gap the lead engineer has been told about is listed in ``KNOWN_GAPS`` with its exact wording:
the test asserts the gaps are exactly those, so a new gap fails, and so does a fixed one until
its entry is removed.
"""

from __future__ import annotations

import doctest
import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import manual_bp

ROOT = Path(__file__).resolve().parent.parent

PUBLIC_FUNCTIONS = sorted(
    name for name in manual_bp.__all__ if inspect.isfunction(getattr(manual_bp, name))
)
PUBLIC_NAMEDTUPLES = sorted(
    name
    for name in manual_bp.__all__
    if inspect.isclass(getattr(manual_bp, name)) and hasattr(getattr(manual_bp, name), "_fields")
)

# Reported to the lead (manual_bp/ is theirs); remove an entry once the docstring is fixed.
KNOWN_GAPS: dict[str, list[str]] = {}

# A shape as the docstrings write it: (m, k), (n,), (..., k, k), (), or the word "shape".
_SHAPE = re.compile(r"\((?:\.\.\.|\w+)(?:, ?(?:\.\.\.|\w+))*,?\)|\(\)|\bshapes?\b")
_SECTION = re.compile(r"^(Args|Returns|Raises|Yields|Notes|Examples):[ \t]*$", re.MULTILINE)


def sections(doc: str) -> dict[str, str]:
    """The Google-style sections of a docstring (``Args:`` ... up to the next heading or
    doctest), by heading."""
    found: dict[str, str] = {}
    heads = list(_SECTION.finditer(doc))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(doc)
        body = doc[head.end() : end]
        found[head.group(1)] = body.split("\n>>>", 1)[0]
    return found


def template_gaps(func: Callable[..., Any]) -> list[str]:
    """What ``func``'s docstring lacks from the template, in words (empty: nothing)."""
    doc = inspect.getdoc(func)
    if not doc:
        return ["no docstring"]
    gaps: list[str] = []
    lines = doc.splitlines()
    if not lines[0].strip() or not lines[0].rstrip().endswith("."):
        gaps.append("summary line missing or not ending in a period")
    if len(lines) > 1 and lines[1].strip():
        gaps.append("summary longer than one line (no blank line after the first)")
    if ".. math::" not in doc and ":math:`" not in doc:
        gaps.append("no formula (.. math:: or :math:)")
    parts = sections(doc)
    args, returns = parts.get("Args"), parts.get("Returns")
    if args is None:
        gaps.append("no 'Args:' section")
    else:
        for param in inspect.signature(func).parameters:
            if not re.search(rf"\b{re.escape(param)}\b", args):
                gaps.append(f"parameter {param!r} not described under 'Args:'")
    if returns is None:
        gaps.append("no 'Returns:' section")
    if (args is not None or returns is not None) and not _SHAPE.search(
        (args or "") + (returns or "")
    ):
        gaps.append("no shape stated under 'Args:' or 'Returns:'")
    if "dtype" not in doc:
        gaps.append("no dtype rule")
    if not doctest.DocTestParser().get_examples(doc):
        gaps.append("no doctest (>>>)")
    return gaps


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_function_docstring_follows_the_template(name: str) -> None:
    assert template_gaps(getattr(manual_bp, name)) == KNOWN_GAPS.get(name, [])


def test_known_gaps_name_public_functions() -> None:
    assert set(KNOWN_GAPS) <= set(PUBLIC_FUNCTIONS)


@pytest.mark.parametrize("name", PUBLIC_NAMEDTUPLES)
def test_parameter_tuple_docstring_gives_every_field_and_shapes(name: str) -> None:
    cls = getattr(manual_bp, name)
    doc = inspect.getdoc(cls) or ""
    missing = [field for field in cls._fields if not re.search(rf"\b{field}\b", doc)]
    assert missing == [], f"{name} docstring does not describe {missing}"
    assert _SHAPE.search(doc) or "0-d" in doc


def test_doctests_of_the_package_run_under_pytest() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pytest_config = config["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in pytest_config["addopts"]
    assert "manual_bp" in pytest_config["testpaths"]


def test_every_public_function_has_a_doctest_that_the_finder_collects() -> None:
    # The doctest finder, not a substring: a '>>>' inside a code literal would not count.
    finder = doctest.DocTestFinder(exclude_empty=True)
    without = [
        name for name in PUBLIC_FUNCTIONS if not finder.find(getattr(manual_bp, name), name=name)
    ]
    assert without == []


# The checker itself, on docstrings broken on purpose.


def _complete(z: Any, y: Any) -> Any:
    r"""Gradient of something.

    .. math:: J = z

    Args:
        z: logits of shape (m, k).
        y: labels of the same shape.

    Returns:
        dJ/dz, in ``z``'s dtype.

    >>> 1 + 1
    2
    """
    return z


def _with(doc: str) -> Callable[..., Any]:
    def func(z: Any, y: Any) -> Any:
        return z

    func.__doc__ = doc
    return func


def test_checker_accepts_a_complete_docstring() -> None:
    assert template_gaps(_complete) == []


@pytest.mark.parametrize(
    ("old", "new", "gap"),
    [
        ("Gradient of something.", "Gradient of something", "summary line"),
        (".. math:: J = z", "J is z", "no formula"),
        ("    y: labels of the same shape.\n", "", "parameter 'y' not described"),
        ("Returns:\n    dJ/dz, in", "dJ/dz is in", "no 'Returns:' section"),
        ("(m, k)", "(logits)", ""),  # "shape" still stated in words for y: no gap
        ("in ``z``'s dtype", "like z", "no dtype rule"),
        (">>> 1 + 1\n2", "1 + 1 is 2", "no doctest"),
    ],
)
def test_checker_reports_each_missing_part(old: str, new: str, gap: str) -> None:
    # Indentation as Python 3.13 keeps it (it strips the common indent at compile time).
    doc = inspect.cleandoc(_complete.__doc__ or "")
    assert old in doc
    gaps = template_gaps(_with(doc.replace(old, new)))
    if gap:
        assert len(gaps) == 1
        assert gap in gaps[0]
    else:
        assert gaps == []


def test_checker_reports_no_shape_when_neither_section_has_one() -> None:
    doc = inspect.cleandoc(_complete.__doc__ or "").replace(" of shape (m, k)", "")
    doc = doc.replace(" of the same shape", "")
    assert template_gaps(_with(doc)) == ["no shape stated under 'Args:' or 'Returns:'"]
