"""What the walk reports: ``Where`` (the line, what it should equal, in words) or
``NotLocated`` (why not), and the words for how a value relates to what it should be."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._refquant import Quantity, step_name
from verification.auditing._rerun import aligned

__all__ = ["NotLocated", "Target", "Where", "axes", "how_wrong", "step_between"]


@dataclass(frozen=True)
class Where:
    """The line where the error enters, and what it should equal.

    file, line, function, source : the candidate's statement.
    should_equal : the reference quantity its value should equal (e.g. "dL/dz1"), or None.
    reference_line : that quantity's line in the reference ("reference.py:11 `a1 = ...`").
    words : what is wrong on it, where the evidence shows it.
    agreeing : the last value before it that agrees with the reference (line, text, quantity).
    located_on : which inputs the line was found on, where they are not the counterexample
        itself (sub-batches of a large input), else None.
    """

    file: str
    line: int
    function: str
    source: str
    should_equal: str | None
    reference_line: str | None
    words: str
    agreeing: str | None = None
    located_on: str | None = None

    def lines(self) -> list[str]:
        """The report's ``where:`` section."""
        out = [
            f"where: the error enters at {_shown(self.file)}:{self.line}, in {self.function}",
            f"  {self.line} | {self.source}",
            f"  {self.words}",
        ]
        if self.agreeing:
            out.append(f"  last agreeing: {self.agreeing}")
        if self.located_on:
            out.append(f"  located {self.located_on}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: file, line, function, source, should_equal, reference_line (and
        the words, and the inputs it was located on where they are sub-batches)."""
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "source": self.source,
            "should_equal": self.should_equal,
            "reference_line": self.reference_line,
            "words": self.words,
            "located_on": self.located_on,
        }


def _shown(file: str) -> str:
    """``file`` relative to the working directory when it lies under it."""
    try:
        relative = os.path.relpath(file)
    except ValueError:
        return file
    return file if relative.startswith("..") else relative


@dataclass(frozen=True)
class NotLocated:
    """No single line can be singled out, and why; ``agrees``: because the failing leaf
    agrees with the reference at the inputs the locator was given (the error does not show
    there)."""

    reason: str
    agrees: bool = False

    def lines(self) -> list[str]:
        return [f"where: not located ({self.reason})"]


@dataclass(frozen=True)
class Target:
    """What a value should equal: a reference quantity, or a local derivative of a step."""

    name: str
    where: str
    values: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
    quantity: Quantity | None = None


def step_between(
    role: Quantity, should: Quantity | None, quantities: dict[tuple[Any, ...], Quantity]
) -> str | None:
    """The reference step from ``should``'s value to ``role``'s (e.g. "a1 = jnp.tanh(z1)",
    reference line 11), when one step links them."""
    if should is None or role.of is None or should.of is None:
        return None
    value = quantities.get(role.of)
    if value is None or value.step is None or should.of not in value.step.input_keys:
        return None
    return step_name(value.step)


def axes(args: tuple[Any, ...], arg_names: Sequence[str]) -> list[tuple[str, int]]:
    """(name, size) of every axis of every array argument: "x.shape[0]"."""
    out = []
    for i, arg in enumerate(args):
        for path, leaf in tree_util.tree_flatten_with_path(arg)[0]:
            for axis, size in enumerate(np.shape(leaf)):
                out.append((f"{arg_names[i]}{tree_util.keystr(path)}.shape[{axis}]", size))
    return out


def _factor(values: Sequence[np.ndarray[Any, Any]], wants: Sequence[Any]) -> list[float] | None:
    """The constant c with value = c * want at each input, if there is one."""
    factors = []
    for got, want in zip(values, wants, strict=True):
        w = np.asarray(want, np.float64)
        a = aligned(got, w.shape)
        if a is None or not np.any(w):
            return None
        a = a.astype(np.float64)
        c = float(np.vdot(a, w) / np.vdot(w, w))
        if c == 0 or not np.allclose(a, c * w, rtol=1e-9, atol=1e-12 * np.max(np.abs(w))):
            return None
        factors.append(c)
    return factors


def how_wrong(
    values: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    target: Target,
    axes: Sequence[Sequence[tuple[str, int]]],
) -> str:
    """ "is -1 times dL/dz2" or "is 1/x.shape[0] times dL/dz2" where a constant or a size
    explains it at both inputs (of different sizes), else "should equal dL/dz2"."""
    factors = _factor(values, target.values)
    plain = f"should equal {target.name}"
    if factors is None:
        return plain
    ca, cb = factors
    if math.isclose(ca, cb, rel_tol=1e-9):
        return f"is {ca:.6g} times {target.name}, not equal to it"
    for (name, sa), (_, sb) in zip(*axes, strict=False):
        for sign in (1.0, -1.0):
            for power, text in ((1, name), (-1, f"1/{name}")):
                fa, fb = sign * float(sa) ** power, sign * float(sb) ** power
                if math.isclose(ca, fa, rel_tol=1e-9) and math.isclose(cb, fb, rel_tol=1e-9):
                    spelled = text if sign > 0 else f"-{text}"
                    return f"is {spelled} times {target.name}, not equal to it"
    return plain
