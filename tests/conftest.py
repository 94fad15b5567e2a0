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

import pytest
from hypothesis import settings

from verification.pinned import pinned_generation

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci", max_examples=150, derandomize=True, deadline=None, print_blob=True, database=None
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """Run every test with hypothesis's generation pinned to its seed (module docstring)."""
    with pinned_generation():
        return (yield)
