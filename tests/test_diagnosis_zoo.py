"""The diagnosis zoo (tests/diagnosis_zoo.py): causes named where the evidence carries them, never
for a look-alike."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    if "diagnosis_zoo" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "diagnosis_zoo", Path(__file__).with_name("diagnosis_zoo.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["diagnosis_zoo"] = module
        spec.loader.exec_module(module)
    return sys.modules["diagnosis_zoo"]


zoo = _load()
# In the worker that compares the zoo's recorded reports (test_report_texts): the zoo module
# keeps each report, so each case is audited once (``--dist loadgroup``).
pytestmark = pytest.mark.xdist_group("zoo-diagnosis")


def test_every_signature_has_a_case_and_two_look_alikes() -> None:
    for signature in zoo.SIGNATURES:
        positives = [n for n, c in zoo.CASES.items() if signature in c.expected]
        look_alikes = [n for n, c in zoo.CASES.items() if signature in c.looks_like]
        assert positives, signature
        assert len(look_alikes) >= 2, (signature, look_alikes)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=c.known_wrong))
        if c.known_wrong
        else n
        for n, c in zoo.CASES.items()
    ],
)
def test_diagnosis_names_the_cause_only_where_the_evidence_carries_it(name: str) -> None:
    case = zoo.CASES[name]
    diagnosis = zoo.run(case)
    assert diagnosis, f"{name}: the audit passed a wrong gradient"
    named = zoo.named(diagnosis)
    assert not named - case.expected, f"{name}: wrongly named {named - case.expected}: {diagnosis}"
    assert named == case.expected, f"{name}: missed {case.expected - named}: {diagnosis}"


def test_score_counts_precision_and_recall() -> None:
    name = "sign flipped"
    assert zoo.score({name: "W: sign flipped (at this input and at another)"}) == (1, 1, 1, 1)
    assert zoo.score({name: "W: off by a constant factor 2"}) == (0, 1, 0, 1)
