"""Where an audit's time went: ``audit(..., profile=True)`` and ``--profile``.

A ``Profile`` splits the wall time of one audit into phases, each second counted once:

* **tracing and lowering**: JAX turning the loss into a program (paid in every process, also
  when the persistent compilation cache holds the compiled program: the cache key is computed
  from the lowered program);
* **XLA compilation**: compiling it, or loading it from the persistent cache;
* **reference runs**: the float64 ``jax.value_and_grad`` at each example;
* **candidate**: the candidate's calls (twice per example: the determinism guard);
* **comparison**: candidate against reference under the tolerance rule;
* **second opinion**: forward mode, the float32 and perturbed gradients, secant slopes (only
  for an example that fails the strict comparison);
* **finite differences**: the losses along the direction of a disagreement;
* **diagnosis and re-checks**: naming a cause after the verdict (re-checks at other inputs,
  the stage, the finite difference at the worst element): everything they run included,
  except compilation, which stays in the two phases above;
* **report**: the report's text (and the saved counterexample of a large input);
* **search and generation**: the rest (hypothesis drawing and shrinking, bookkeeping).

It also lists every program compiled (which one, at which argument shapes, and its tracing
and compilation seconds) and how often each kind of program ran. Recording is a context
variable set by the engine for the duration of one audit; code outside an audit records
nothing (``phase`` is then a no-op).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from jax import tree_util

__all__ = [
    "COMPILATION",
    "PHASES",
    "Profile",
    "ProgramRecord",
    "phase",
    "profiling",
    "record_program",
    "shapes_text",
]

TRACING = "tracing and lowering"
COMPILATION = "XLA compilation"
DIAGNOSIS = "diagnosis and re-checks"
REST = "search and generation"
PHASES = (
    TRACING,
    COMPILATION,
    "reference runs",
    "candidate",
    "comparison",
    "second opinion",
    "finite differences",
    DIAGNOSIS,
    "report",
    REST,
)
"""The phases in the order ``Profile`` prints them."""

_ABSORBING = frozenset({DIAGNOSIS, "report", "finite differences"})
"""Phases that take in the runs made inside them (compilation excepted): finite differences
of a small problem run in the second opinion's program, and count as finite differences."""


@dataclass(frozen=True)
class ProgramRecord:
    """One compiled program: its kind, argument shapes, tracing+lowering and compile seconds."""

    program: str
    shapes: str
    tracing_s: float
    compile_s: float


@dataclass
class Profile:
    """Seconds per phase (exclusive: they add up to ``total``), programs compiled, runs."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    programs: list[ProgramRecord] = field(default_factory=list)
    runs: Counter[str] = field(default_factory=Counter)
    total: float = 0.0
    _stack: list[list[Any]] = field(default_factory=list, repr=False)

    def fraction(self, name: str) -> float:
        """The share of ``total`` spent in phase ``name`` (0 for an empty profile)."""
        return self.seconds.get(name, 0.0) / self.total if self.total > 0 else 0.0

    def with_phase(self, name: str, seconds: float) -> Profile:
        """A copy with ``seconds`` more in phase ``name`` (and in the total): time measured
        after the audit returned, e.g. rendering its report."""
        more = dict(self.seconds)
        more[name] = more.get(name, 0.0) + seconds
        return Profile(more, list(self.programs), Counter(self.runs), self.total + seconds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: seconds per phase, programs, runs, total."""
        return {
            "total_s": self.total,
            "seconds": dict(self.seconds),
            "programs": [asdict(p) for p in self.programs],
            "runs": dict(self.runs),
        }

    def lines(self) -> list[str]:
        """The profile as report lines: phases with seconds and share, then the programs."""
        out = [f"profile: {self.total:.3g} s in all"]
        for name in PHASES:
            s = self.seconds.get(name, 0.0)
            if s > 0 or name in (TRACING, COMPILATION):
                count = self.runs.get(name, 0)
                calls = f" ({count} run{'s' if count != 1 else ''})" if count else ""
                out.append(f"  {name:<26}{s:9.3f} s {100 * self.fraction(name):5.1f}%{calls}")
        out.append(f"  programs compiled: {len(self.programs)}")
        out += [
            f"    {p.program} at {p.shapes}: tracing and lowering {p.tracing_s:.3f} s, "
            f"compilation {p.compile_s:.3f} s"
            for p in self.programs
        ]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


_CURRENT: ContextVar[Profile | None] = ContextVar("manual_bp_audit_profile", default=None)


@contextmanager
def profiling(profile: Profile) -> Iterator[Profile]:
    """Record into ``profile`` for the duration of the block (one audit); the time not
    claimed by any ``phase`` goes to "search and generation"."""
    token = _CURRENT.set(profile)
    start = time.perf_counter()
    try:
        yield profile
    finally:
        _CURRENT.reset(token)
        profile.total += time.perf_counter() - start
        claimed = sum(s for k, s in profile.seconds.items() if k != REST)
        profile.seconds[REST] = max(profile.total - claimed, 0.0)


@contextmanager
def phase(name: str, *, run: bool = False) -> Iterator[None]:
    """Count the block's time (less that of phases nested in it) towards ``name``; with
    ``run``, count one run of it. Inside "diagnosis and re-checks", "report" or "finite
    differences" (the innermost of them), everything but compilation counts towards that
    phase. Does nothing outside ``profiling``."""
    profile = _CURRENT.get()
    if profile is None:
        yield
        return
    outer = next((f[0] for f in reversed(profile._stack) if f[0] in _ABSORBING), None)
    if outer is not None and name not in (TRACING, COMPILATION):
        name = outer
    if run:
        profile.runs[name] += 1
    frame: list[Any] = [name, 0.0]
    profile._stack.append(frame)
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        profile._stack.pop()
        profile.seconds[name] = profile.seconds.get(name, 0.0) + elapsed - frame[1]
        if profile._stack:
            profile._stack[-1][1] += elapsed


def record_program(program: str, example: Any, tracing_s: float, compile_s: float) -> None:
    """Note one compiled program (``example``: its arguments) in the current profile."""
    profile = _CURRENT.get()
    if profile is not None:
        profile.programs.append(ProgramRecord(program, shapes_text(example), tracing_s, compile_s))


def shapes_text(example: Any) -> str:
    """The shapes of an argument tree's array leaves, e.g. "(2048, 784), (2048, 10)".

    >>> shapes_text((np.zeros((2, 3)), 1.0, [np.zeros(4)]))
    '(2, 3), (4,)'
    """
    leaves = [x for x in tree_util.tree_leaves(example) if np.ndim(x) > 0]
    return ", ".join(str(tuple(np.shape(x))) for x in leaves) or "scalars"
