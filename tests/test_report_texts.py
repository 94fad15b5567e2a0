"""Every zoo case's report reads as recorded (tests/report_texts.py): the audit's words, numbers,
reproducers and JSON fields change only when a reviewed recording changes with them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _texts() -> ModuleType:
    if "report_texts" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "report_texts", Path(__file__).with_name("report_texts.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["report_texts"] = module
        spec.loader.exec_module(module)
    return sys.modules["report_texts"]


texts = _texts()
CASES = [(group, name) for group in texts.GROUPS for name in texts.read(group)[1]]
SHARED = {"diagnosis": "zoo-diagnosis", "locate": "zoo-locate", "network": "zoo-network"}
"""Groups whose reports the zoo's own test makes too: run in its pytest worker, where the zoo
module keeps them (``--dist loadgroup``), each audit runs once."""


@pytest.mark.parametrize("group", list(texts.GROUPS))
def test_every_zoo_case_has_a_recording_and_every_recording_a_case(group: str) -> None:
    recorded, cases = list(texts.read(group)[1]), list(texts.GROUPS[group]())
    assert [name for name in recorded if name in cases] == cases  # in the zoo's order
    for name in set(recorded) - set(cases):  # a zoo leaves out what needs a missing module
        needs = texts.needs(name)
        assert needs is not None, f"{group}: {name} is recorded but no longer a case"
        assert importlib.util.find_spec(needs) is None, name


@pytest.mark.parametrize(
    ("group", "name"),
    [
        pytest.param(g, n, marks=[pytest.mark.xdist_group(SHARED[g])] if g in SHARED else [])
        for g, n in CASES
    ],
    ids=[f"{g}: {n}" for g, n in CASES],
)
def test_the_report_reads_as_recorded(group: str, name: str) -> None:
    recorded_env, recorded = texts.read(group)
    here = texts.outputs().environment()
    if texts.needs(name) is not None:
        pytest.importorskip(texts.needs(name))
    scenario = texts.GROUPS[group]()[name]
    exact = texts.same(recorded_env, here)
    if scenario.searched and not exact:
        # The search's path follows every verdict on the way, and a verdict near a bound
        # follows the last bits of numpy's and XLA's kernels (a kink confirmed or not, one
        # more shrink step): drawn cases are compared where they were recorded only.
        pytest.skip(f"recorded under {recorded_env}: another environment searches another path")
    fresh = texts.render(scenario.run())
    assert texts.matches(recorded[name], fresh, exact), (
        f"the report changed ({'every character counts' if exact else 'decimals free'}); "
        "if intended, regenerate with `python tests/report_texts.py` and review the diff:\n"
        + texts.diff(recorded[name], fresh, name)
    )


def test_a_changed_word_or_count_fails_and_a_drifted_decimal_passes_under_other_versions() -> None:
    recorded = (
        "FAILED (mismatch): f\n  after 8 examples; finite difference 0.999999999988 (step 6.1e-06)"
    )
    drifted = recorded.replace("0.999999999988", "0.999999999991")
    assert texts.matches(recorded, recorded, exact=True)
    assert not texts.matches(recorded, drifted, exact=True)
    assert texts.matches(recorded, drifted, exact=False)
    for old, new in [
        ("8 examples", "9 examples"),
        ("mismatch", "raised"),
        ("0.999999999988", "NaN"),
    ]:
        assert not texts.matches(recorded, recorded.replace(old, new), exact=False), new


def test_searched_cases_are_compared_only_under_the_recorded_versions_and_processor() -> None:
    a = "Python 3.11.7, numpy 2.4.6, jax 0.10.2, jaxlib 0.10.2, hypothesis 6.170.17, cpu x86_64 AVX2"
    assert texts.same(a, a)
    assert not texts.same(a, a.replace("6.170.17", "6.170.27"))
    assert not texts.same(a, a.replace("AVX2", "AVX512F"))
    assert not texts.same(a, a.replace("numpy 2.4.6", "numpy 2.5.5"))
    assert not texts.same(a, a.replace("jax 0.10.2", "jax 0.12.1"))
    assert texts.same(a, a.replace("jaxlib 0.10.2", "jaxlib 0.10.2, scikit-learn -"))
