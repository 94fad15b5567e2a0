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

__all__ = ["Timing", "calls_per_sample", "interleaved", "paired_ratio"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median over repeats and the spread (min, max) around it."""

    median: float
    low: float
    high: float
    repeats: int
    calls: int
    samples: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median_s": self.median,
            "min_s": self.low,
            "max_s": self.high,
            "repeats": self.repeats,
            "calls_per_repeat": self.calls,
        }


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of time(a) / time(b) in the same round (rounds pair the two up, so
    drift that slows both alike cancels); the ratio of medians if no samples were kept."""
    if not a.samples or len(a.samples) != len(b.samples):
        return a.median / b.median
    return statistics.median(x / y for x, y in zip(a.samples, b.samples, strict=True))


def _time_calls(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calls_per_sample(fn: Callable[[], object], target_s: float) -> int:
    """How many calls of ``fn`` take about ``target_s`` seconds (1 to 65536).

    The time per call is the fastest of three single calls: the first call after another
    library ran can be slower by milliseconds (its threads wake up), and should not decide
    that a fast function gets one call per sample.
    """
    per_call = min(_time_calls(fn, 1) for _ in range(3))
    return int(min(1 << 16, max(1, round(target_s / max(per_call, 1e-9)))))


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    warmup_s: float = 0.3,
    sample_s: float = 0.05,
) -> dict[str, Timing]:
    """Median seconds per call of each function, timed in turns.

    Each function first runs ``warmup`` times and for at least ``warmup_s`` seconds (JIT
    compilation, oneDNN kernel generation in torch, caches, allocator), then a
    call count is chosen so that one sample lasts about ``sample_s``. Then ``repeats`` rounds
    follow; in each round every function is timed once, in an order rotated from round to round.
    Functions must block until their result is ready (``block_until_ready`` for JAX).
    """
    names = list(fns)
    for name in names:
        start, done = time.perf_counter(), 0
        while done < warmup or (done > 0 and time.perf_counter() - start < warmup_s):
            fns[name]()
            done += 1
    calls = {name: calls_per_sample(fns[name], sample_s) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_time_calls(fns[name], calls[name]))
    return {
        name: Timing(
            statistics.median(s),
            min(s),
            max(s),
            repeats=len(s),
            calls=calls[name],
            samples=tuple(s),
        )
        for name, s in samples.items()
    }
