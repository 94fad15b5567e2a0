"""Hypothesis profiles, chosen by the environment variable HYPOTHESIS_PROFILE.

``dev`` (default): 25 examples per test, for the edit-test loop. ``ci``: 150 examples,
derandomized (the same examples on every run, so CI is reproducible), failing examples printed
as a reproduction blob. Neither has a deadline: a JAX reference compiles once per new input
shape (about 160 ms), which the default 200 ms deadline would report as flaky.

Every test runs with hypothesis's generation pinned (``verification.pinned``): hypothesis draws
constants from the source of the local modules loaded so far, so without it a derandomized test
would draw other examples depending on which tests ran before it in the same process (under
``pytest -n auto``, on which worker it lands).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from verification.pinned import pinned_generation

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci", max_examples=150, derandomize=True, deadline=None, print_blob=True, database=None
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True, scope="session")
def _audit_saves_in_pytest_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Counterexamples the audits save go to pytest's own temporary folder (cleaned by
    pytest), never to the system's ``manual-bp-audit/``."""
    before = os.environ.get("MANUAL_BP_AUDIT_DIR")
    os.environ["MANUAL_BP_AUDIT_DIR"] = str(tmp_path_factory.mktemp("audit-saves"))
    yield
    if before is None:
        del os.environ["MANUAL_BP_AUDIT_DIR"]
    else:
        os.environ["MANUAL_BP_AUDIT_DIR"] = before


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """Run every test with hypothesis's generation pinned to its seed (module docstring)."""
    with pinned_generation():
        return (yield)
