"""The search: hypothesis draws examples, the check judges each, hypothesis shrinks a failure.

The search is a hypothesis test run internally: no example database, a given seed, quiet, no
deadline, health checks about slow or large examples off (a JAX reference compiles once per
shape). A concrete tuple of arguments is checked alone, without hypothesis (so it works inside
any ``@given`` test).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings, strategies as st

from verification.auditing._outcome import CandidateFailedError, Outcome, Tally
from verification.pinned import pinned_generation

__all__ = ["search"]

_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
    HealthCheck.filter_too_much,
]


def _check_one(
    check: Callable[[tuple[Any, ...]], Outcome], tally: Tally
) -> Callable[[tuple[Any, ...]], None]:
    def check_one(example: tuple[Any, ...]) -> None:
        tally.examples += 1
        outcome = check(example)
        if outcome.out_of_domain:
            tally.out_of_domain += 1
            return
        if outcome.uncertain:
            tally.uncertain += 1
            if len(tally.uncertain_notes) < 3 and outcome.diagnosis:
                tally.uncertain_notes.append(outcome.diagnosis)
            return
        if outcome.kind is None:
            tally.max_abs = max(tally.max_abs, outcome.max_abs)
            tally.max_rel = max(tally.max_rel, outcome.max_rel)
            tally.max_scaled = max(tally.max_scaled, outcome.max_scaled)
            tally.spread_ulp = max(tally.spread_ulp, outcome.spread_ulp)
            if (
                outcome.low_precision
                and not outcome.uncertain
                and outcome.low_rank > tally.low_rank
            ):
                tally.low_rank, tally.low_precision = outcome.low_rank, outcome.low_precision
            return
        if tally.first_failure is None:
            tally.first_failure, tally.first_failing = tally.examples, outcome
        raise CandidateFailedError(outcome)

    return check_one


def search(
    check: Callable[[tuple[Any, ...]], Outcome],
    tally: Tally,
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    *,
    max_examples: int,
    seed: int,
    replay: Sequence[tuple[Any, ...]] = (),
    shrink: bool = True,
) -> Outcome | None:
    """The shrunk failing example's ``Outcome``, or None when every example passed.

    ``check`` judges one example; ``tally`` gathers counts over the examples. A failure that
    does not reproduce when hypothesis replays it comes back as the first failing example's
    outcome with ``kind`` "flaky" (the engine measures how the candidate varies there).
    Generation is pinned to the seed (``verification.pinned``). ``replay``: examples checked
    first, in order, before any search (stored counterexamples, ``_store``); one that fails is
    the failure, unshrunk (it was shrunk when it was found).
    Generation is pinned to the seed (``verification.pinned``). ``shrink=False`` stops at
    the first failing example (``audit(quick=True)``: the verdict, not the smallest input).
    """
    check_one = _check_one(check, tally)
    try:
        for example in replay:
            check_one(tuple(example))
        if isinstance(args, st.SearchStrategy):
            with pinned_generation():
                hypothesis.seed(seed)(
                    settings(
                        max_examples=max_examples,
                        database=None,
                        deadline=None,
                        derandomize=False,
                        phases=(Phase.explicit, Phase.generate, Phase.shrink)[: 3 if shrink else 2],
                        suppress_health_check=_HEALTH,
                        report_multiple_bugs=False,
                        verbosity=Verbosity.quiet,
                        print_blob=False,
                    )(given(args)(check_one))
                )()
        else:  # one concrete input: no search, no hypothesis (so it works inside any @given)
            check_one(tuple(args))
    except CandidateFailedError as error:
        return error.outcome
    except hypothesis.errors.Flaky:  # the failure did not reproduce on replay
        first = tally.first_failing
        if first is None:  # pragma: no cover  (hypothesis replays only what failed)
            raise
        return replace(first, kind="flaky")
    return None
