"""pytest plugin for mutmut runs (loaded by ``-p mutation.pytest_plugin``, see pyproject.toml).

mutmut runs the test suite many times inside one process (once to map tests to functions,
once clean, then once per mutant in a fork of that process). Two hypothesis settings need
adjusting for that, on top of the profile ``tests/conftest.py`` chose (``HYPOTHESIS_PROFILE``,
``dev`` in ``nox -s mutation``):

* ``derandomize``: the same examples for the clean run and every mutant, so a mutant is killed
  or not by the tests, not by the luck of the draw, and two runs give the same score;
* no shrinking: a mutant is killed by the first failing example; shrinking it to a minimal one
  only delays the verdict (often past mutmut's timeout, which would still count as a kill);
* ``HealthCheck.differing_executors`` suppressed: a ``@given`` method of a test class runs on a
  new class instance in each repetition, which hypothesis reports as an error when it sees it
  twice in one process. Here the repetition is mutmut's, not the test's.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings


def pytest_configure(config: pytest.Config) -> None:
    """Derive a ``mutmut`` profile from the one in force (the conftests are loaded by now)."""
    base = settings.default or settings()
    settings.register_profile(
        "mutmut",
        parent=base,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[*base.suppress_health_check, HealthCheck.differing_executors],
    )
    settings.load_profile("mutmut")
