"""Interleaved timing: implementations take turns, medians over repeats after warm-up.

The machine is shared and noisy, so absolute times drift between runs. Timing implementations
alternately (A, B, C, A, B, C, ... with the order rotated each round) exposes them to the same
drift; the ratio of their medians is what the benchmarks report.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Timing", "calls_per_sample", "interleaved"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median over repeats and the spread (min, max) around it."""

    median: float
    low: float
    high: float
    repeats: int
    calls: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median_s": self.median,
            "min_s": self.low,
            "max_s": self.high,
            "repeats": self.repeats,
            "calls_per_repeat": self.calls,
        }


def _time_calls(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calls_per_sample(fn: Callable[[], object], target_s: float) -> int:
    """How many calls of ``fn`` take about ``target_s`` seconds (at least 1); ``fn`` runs a few times."""
    calls, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target_s / 4 or calls >= 1 << 16:
            break
        calls *= 4
    per_call = elapsed / calls
    return max(1, round(target_s / per_call))


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    sample_s: float = 0.05,
) -> dict[str, Timing]:
    """Median seconds per call of each function, timed in turns.

    Each function first runs ``warmup`` times (JIT compilation, caches, allocator), then a
    call count is chosen so that one sample lasts about ``sample_s``. Then ``repeats`` rounds
    follow; in each round every function is timed once, in an order rotated from round to round.
    Functions must block until their result is ready (``block_until_ready`` for JAX).
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    calls = {name: calls_per_sample(fns[name], sample_s) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_time_calls(fns[name], calls[name]))
    return {
        name: Timing(statistics.median(s), min(s), max(s), repeats=len(s), calls=calls[name])
        for name, s in samples.items()
    }
