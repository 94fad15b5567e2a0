"""The localisation zoo (tests/locate_zoo.py): the line where the error enters, named for at least
90% of the buggy cases, a wrong line for at most 1 in 30, and no ``where:`` on a correct case."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    if "locate_zoo" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "locate_zoo", Path(__file__).with_name("locate_zoo.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["locate_zoo"] = module
        spec.loader.exec_module(module)
    return sys.modules["locate_zoo"]


zoo = _load()
# In the worker that compares the zoo's recorded reports (test_report_texts): the zoo module
# keeps each report, so each case is audited once (``--dist loadgroup``).
pytestmark = pytest.mark.xdist_group("zoo-locate")


def test_the_zoo_has_thirty_buggy_cases_each_with_one_marked_line() -> None:
    buggy = [c for c in zoo.CASES.values() if c.bug_in is not None]
    assert len(buggy) >= 30
    for case in buggy:
        file, line = zoo.bug_line(case)
        assert Path(file).exists()
        assert line > 0
    assert any(c.bug_in is None for c in zoo.CASES.values())


def test_score_counts_right_wrong_and_unlocated_buggy_cases() -> None:
    names = [n for n, c in zoo.CASES.items() if c.bug_in is not None][:3]
    correct = next(n for n, c in zoo.CASES.items() if c.bug_in is None)
    outcomes = dict(zip(names, ["right", "wrong line", "not located"], strict=True))
    outcomes[correct] = "passed"
    assert zoo.score(outcomes) == (1, 1, 1, 3)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, str]:
    return {name: zoo.outcome(case, zoo.run(case)) for name, case in zoo.CASES.items()}


@pytest.mark.slow
def test_the_right_line_for_nine_in_ten_and_a_wrong_line_for_at_most_one_in_thirty(
    outcomes: dict[str, str],
) -> None:
    right, wrong, _, total = zoo.score(outcomes)
    table = "\n".join(f"{n}: {o}" for n, o in outcomes.items())
    assert right >= 0.9 * total, table
    assert wrong * 30 <= total, table


@pytest.mark.slow
def test_no_correct_case_fails_or_has_a_where(outcomes: dict[str, str]) -> None:
    correct = {n: o for n, o in outcomes.items() if zoo.CASES[n].bug_in is None}
    assert all(o == "passed" for o in correct.values()), correct
