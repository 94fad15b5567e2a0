"""The mutant sample of ``nox -s mutation`` (mutation/sample.py) and its interval (score.py)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

MUTATION = Path(__file__).resolve().parent.parent / "mutation"


def load(name: str) -> ModuleType:
    """A module of mutation/ (a folder of scripts, not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"mutation_{name}", MUTATION / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sample = load("sample")

STRATA = {
    "a.py": [f"a.x_f__mutmut_{i}" for i in range(1, 41)],
    "b.py": [f"b.x_g__mutmut_{i}" for i in range(1, 121)],
    "c.py": [f"c.x_h__mutmut_{i}" for i in range(1, 8)],
}


@pytest.mark.parametrize("n", [0, 1, 5, 17, 100, 166, 167, 500])
def test_allocation_is_proportional_and_sums_to_the_sample_size(n: int) -> None:
    sizes = {key: len(names) for key, names in STRATA.items()}
    total = sum(sizes.values())
    shares = sample.allocate(sizes, n)
    assert sum(shares.values()) == min(n, total)
    for key, size in sizes.items():
        quota = min(n, total) * size / total
        assert math.floor(quota) <= shares[key] <= math.ceil(quota), (key, shares)


def test_allocation_rejects_a_negative_size() -> None:
    with pytest.raises(ValueError, match="sample size"):
        sample.allocate({"a": 3}, -1)


def test_sample_draws_each_modules_share_without_repeats() -> None:
    chosen = sample.stratified_sample(STRATA, 50, seed=1)
    assert len(chosen) == len(set(chosen)) == 50
    shares = sample.allocate({key: len(names) for key, names in STRATA.items()}, 50)
    for key, names in STRATA.items():
        assert sum(name in names for name in chosen) == shares[key]
    assert chosen == sorted(chosen)


def test_sample_is_reproducible_for_a_seed_and_differs_across_seeds() -> None:
    first = sample.stratified_sample(STRATA, 30, seed=7)
    assert sample.stratified_sample(STRATA, 30, seed=7) == first
    assert sample.stratified_sample(dict(reversed(STRATA.items())), 30, seed=7) == first
    assert sample.stratified_sample(STRATA, 30, seed=8) != first


def test_editing_one_module_redraws_that_modules_share_alone() -> None:
    edited = {**STRATA, "b.py": [name.replace("x_g", "x_g2") for name in STRATA["b.py"]]}
    before = sample.stratified_sample(STRATA, 30, seed=3)
    after = sample.stratified_sample(edited, 30, seed=3)
    assert [n for n in before if not n.startswith("b.")] == [
        n for n in after if not n.startswith("b.")
    ]


def test_sample_larger_than_the_population_takes_every_mutant() -> None:
    chosen = sample.stratified_sample(STRATA, 10_000, seed=0)
    assert chosen == sorted(name for names in STRATA.values() for name in names)


@pytest.mark.parametrize("text", ["300", "glob=", "=3", "glob=x", "glob=-2"])
def test_a_malformed_request_is_refused(text: str) -> None:
    with pytest.raises(Exception, match="GLOB=N"):
        sample.parse_request(text)


def test_a_request_is_a_glob_and_a_count() -> None:
    assert sample.parse_request("verification.auditing.*=300") == ("verification.auditing.*", 300)


def test_wilson_interval_matches_the_textbook_values() -> None:
    score = pytest.importorskip("mutmut") and load("score")
    # Wilson (1927) 95% interval of 9 successes in 10: 0.5958 to 0.9821; of 0 in 10: 0 to 0.2775.
    assert score.wilson(9, 10) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    assert score.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert score.wilson(10, 10)[1] == pytest.approx(1.0)
    low, high = score.wilson(270, 300)
    assert low < 0.9 < high
    assert high - low < 0.07
    assert score.wilson(0, 0) == (0.0, 1.0)
