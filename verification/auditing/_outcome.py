"""What one example gave (``Outcome``) and what the search gathers over examples (``Tally``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verification.auditing._diagnose import Fit

__all__ = ["CandidateFailedError", "Outcome", "Tally"]


@dataclass
class Outcome:
    """What one example gave: ``kind`` None when it passed (or was uncertain, or outside the
    loss's domain). ``got`` and ``grad`` (candidate and reference leaves), ``worst`` (the leaf
    blamed) and ``factor`` (a constant factor seen there, with its resolution) feed the final diagnosis;
    ``spread_ulp`` is how far two calls differed within rounding."""

    args: tuple[Any, ...]
    kind: str | None = None
    uncertain: bool = False
    location: str | None = None
    diagnosis: str | None = None
    candidate: float | None = None
    reference: float | None = None
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_scaled: float = 0.0
    rtol: float | None = None
    atol: float | None = None
    traceback: str | None = None
    leaves: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    out_of_domain: bool = False
    spread_ulp: float = 0.0
    got: list[Any] | None = None
    grad: list[np.ndarray[Any, Any]] | None = None
    worst: int | None = None
    factor: Fit | None = None
    zero_pattern: bool = False
    low_precision: list[str] = field(default_factory=list)
    low_rank: tuple[float, float] = (0.0, 0.0)
    offending: list[str] = field(default_factory=list)
    kink_note: str | None = None
    """ "at a kink, under the declared convention ..." (``_check``), kept before any diagnosis."""
    memo_note: str | None = None
    """ "; the candidate returned exactly what ..." (``_guards.note_memoised``), kept after it."""


@dataclass
class Tally:
    """Counts and extremes over the examples of one audit."""

    examples: int = 0
    first_failure: int | None = None
    first_failing: Outcome | None = None
    uncertain: int = 0
    out_of_domain: int = 0
    spread_ulp: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_scaled: float = 0.0
    first_output: list[np.ndarray[Any, Any]] | None = None
    first_input: list[np.ndarray[Any, Any]] | None = None
    first_passed: bool | None = None
    outputs_varied: bool = False
    """Whether some result of the same shapes differed from ``first_output``."""
    """Whether ``first_output`` was right for ``first_input`` (None: not judged yet)."""
    uncertain_notes: list[str] = field(default_factory=list)
    low_rank: tuple[float, float] = (-1.0, 0.0)
    low_precision: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("candidate", "compare"), 0.0)
    )


class CandidateFailedError(Exception):
    """Raised inside the hypothesis test so that it shrinks the example."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.kind)
        self.outcome = outcome
