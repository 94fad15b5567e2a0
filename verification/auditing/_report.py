"""The audit's verdict: ``AuditReport``, its text (with a reproducer) and its JSON form."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verification.auditing._profile import Profile
from verification.auditing._program import Environment
from verification.auditing._reproducer import (
    LITERAL_LIMIT,
    python_literal,
    rebuild_source,
    save_counterexample,
    shape_lines,
)

__all__ = ["AuditReport", "function_name"]


def function_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of ``fn`` (``<lambda>`` or ``<locals>`` in it if not importable)."""
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module}:{qualname}"


def _namedtuple_imports(value: Any, found: set[str]) -> None:
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        found.add(f"from {type(value).__module__} import {type(value).__name__}")
    if isinstance(value, (tuple, list)):
        for v in value:
            _namedtuple_imports(v, found)
    if isinstance(value, dict):
        for v in value.values():
            _namedtuple_imports(v, found)


def _import_line(name: str, alias: str) -> str:
    module, _, qualname = name.partition(":")
    if "<" in qualname or "." in qualname or module in ("?", "__main__"):
        return f"{alias} = ...  # {name} is not importable: paste it here"
    return f"from {module} import {qualname} as {alias}"


def count_elements(value: Any) -> tuple[int, int]:
    """(elements, nonzero elements) over all array leaves of ``value``."""
    if isinstance(value, (tuple, list)):
        pairs = [count_elements(v) for v in value]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    if isinstance(value, dict):
        return count_elements(list(value.values()))
    a = np.asarray(value)
    return int(a.size), int(np.count_nonzero(a))


@dataclass
class AuditReport:
    """The outcome of ``audit``.

    passed : no example failed (examples where the oracle was uncertain do not count against
        the candidate).
    examples : how many examples were checked (including hypothesis's shrinking steps).
    counterexample : None, or the minimal failing ``args`` tuple after shrinking.
    kind : what failed: "mismatch", "raised", "mutated its input", "nondeterministic",
        "wrong dtype", "wrong structure", "wrong shape"; None when passed.
    max_scaled_error : the largest |error| divided by the largest |reference| element of the
        same example (elementwise relative errors are large wherever cancellation makes the
        reference small; this one is not).
    location : the worst element, e.g. "W2[3, 1]".
    diagnosis : the bug signature in words.
    candidate, reference, finite_difference : the values at ``location``.
    uncertain : examples where the reference could not be trusted: the candidate disagreed with
        it but finite differences did not confirm it (a kink within rounding, or curvature too
        large for finite differences), forward and reverse mode disagreed, or it was not finite.
    uncertain_notes : why, for the first three such examples.
    inconclusive : no example could be checked (all oracle-uncertain or outside the loss's
        domain): not passed, not failed.
    out_of_domain : examples where the reference loss or gradient is not finite (outside the
        loss's domain): skipped, never blamed on the candidate.
    spread_ulp : the largest difference between two calls on one input that rounding explains
        (ulp of the leaf's largest element), over the examples checked.
    finite_difference_note : how ``finite_difference`` was taken (step, sides, kink).
    stage : where the chain of intermediate gradients broke (``_stages.StageVerdict``), when
        the candidate exposes its intermediates.
    replayed, replay_failed : how many stored counterexamples were checked before the search
        (``replay=``), and the index of the one that failed again (None: none did).
    profile : where the time went (``_profile.Profile``), for an audit run with
        ``profile=True``; printed after the report.
    where : the line of the candidate where a mismatch enters (``_locate.Where``), or why it
        was not located (``_locate.NotLocated``); None when not looked for.
    title, reproducer_calls : set by other kinds of audit (``audit_vjp``): the report's first
        line after the verdict, and the reproducer's lines after ``args = ...``.
    concrete : the audit was given one input (a tuple), not a strategy: no seed is printed.
    save_dir : where a counterexample too large to print is saved (None: ``MANUAL_BP_AUDIT_DIR``
        or the temporary folder, ``_reproducer.save_directory``).
    """

    passed: bool
    examples: int
    counterexample: tuple[Any, ...] | None
    max_abs_error: float
    max_rel_error: float
    location: str | None
    seed: int
    environment: Environment
    grad_fn: str
    loss_fn: str
    argnums: int | tuple[int, ...]
    kind: str | None = None
    diagnosis: str | None = None
    candidate: float | None = None
    reference: float | None = None
    finite_difference: float | None = None
    rtol: float | None = None
    atol: float | None = None
    max_scaled_error: float = 0.0
    uncertain: int = 0
    uncertain_notes: list[str] = field(default_factory=list)
    shrink_steps: int = 0
    traceback: str | None = None
    leaves: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    compilations: int = 0
    inconclusive: bool = False
    out_of_domain: int = 0
    spread_ulp: float = 0.0
    finite_difference_note: str | None = None
    low_precision: list[str] = field(default_factory=list)
    offending: list[str] = field(default_factory=list)
    arg_names: list[str] = field(default_factory=list)
    stage: str | None = None
    where: Any = None
    title: str | None = None
    reproducer_calls: list[str] = field(default_factory=list)
    replayed: int = 0
    replay_failed: int | None = None
    concrete: bool = False
    """The audit checked one given input (no search: no seed to print)."""
    profile: Profile | None = None
    save_dir: Path | None = None

    @property
    def verdict(self) -> str:
        """ "PASSED", "FAILED" or "INCONCLUSIVE" (nothing could be checked)."""
        return "PASSED" if self.passed else "INCONCLUSIVE" if self.inconclusive else "FAILED"

    @property
    def checked(self) -> int:
        """Examples that were compared: neither oracle-uncertain nor outside the domain."""
        return self.examples - self.uncertain - self.out_of_domain

    @property
    def counterexample_size(self) -> tuple[int, int]:
        """(elements, nonzero elements) of the counterexample, (0, 0) if none."""
        return count_elements(self.counterexample) if self.counterexample is not None else (0, 0)

    def call_options(self, names: Sequence[str] | None = None) -> str:
        """``, argnums=..., arg_names=[...]`` for the reproducer's audit call (``names``: the
        argument names to give, default the report's), so that it names what the report named."""
        names = self.arg_names if names is None else names
        options = f", argnums={self.argnums!r}"
        return options + (f", arg_names={list(names)!r}" if names else "")

    def reproducer(self) -> str:
        """Python code that re-runs the candidate and the audit on the counterexample; the
        candidate is called on a copy (it may change its input: the audit must see it intact)."""
        if self.counterexample is None:
            return ""
        imports = {"import numpy as np", "import copy"}
        if not self.reproducer_calls:
            imports.add("from verification import audit")
        _namedtuple_imports(self.counterexample, imports)
        source = self._args_source()
        if any("ml_dtypes." in line for line in source) and "import ml_dtypes" not in source:
            imports.add("import ml_dtypes")
        lines = sorted(imports)
        lines += [
            _import_line(self.grad_fn, "grad_fn"),
            _import_line(self.loss_fn, "loss_fn"),
            *source,
        ]
        if self.reproducer_calls:  # another kind of audit (audit_vjp) or declared kinks
            lines += self.reproducer_calls
        elif self.kind == "nondeterministic":
            lines += [
                "print(grad_fn(*copy.deepcopy(args)))",
                "print(grad_fn(*copy.deepcopy(args)))  # the same input again",
            ]
        else:
            lines += [
                "print(grad_fn(*copy.deepcopy(args)))",
                f"print(audit(grad_fn, loss_fn, args{self.call_options()}))",
            ]
        return "\n".join(lines)

    def _args_source(self) -> list[str]:
        """``args = ...`` as literals, or (above ``LITERAL_LIMIT`` elements) loaded from a
        saved ``.npz``."""
        if self.counterexample_size[0] <= LITERAL_LIMIT:
            return [f"args = {python_literal(self.counterexample)}"]
        saved = save_counterexample(self.counterexample, self.save_dir, self.grad_fn)
        return rebuild_source(self.counterexample, saved)

    def _large_input_lines(self) -> list[str]:
        """Shapes of a counterexample too large to print."""
        if self.counterexample is None or self.counterexample_size[0] <= LITERAL_LIMIT:
            return []
        lines = ["  input (too large to print; saved, see the reproducer):"]
        return lines + ["    " + t for t in shape_lines(self.counterexample, self.arg_names)]

    def _replay_lines(self) -> list[str]:
        """What the replay of stored counterexamples gave (none: no line)."""
        if self.replay_failed is not None:
            return [
                f"  stored counterexample {self.replay_failed + 1} of {self.replayed}, replayed "
                "before any search, fails again"
            ]
        if self.replayed:
            return [f"  the {self.replayed} stored counterexample(s) replayed first pass"]
        return []

    def _summary_lines(self) -> list[str]:
        """Uncertain and out-of-domain examples on their own lines, with the warnings."""
        lines = []
        if self.out_of_domain:
            lines.append(
                f"  {self.out_of_domain} example(s) outside the loss's domain (the reference "
                "loss or gradient is not finite there): skipped, not counted"
            )
            if 2 * self.out_of_domain > self.examples:
                lines.append(
                    f"  WARNING: the input spec does not fit the loss: {self.out_of_domain} of "
                    f"{self.examples} drawn inputs are outside its domain; narrow the values "
                    "(e.g. :positive, :(0,1), :|x|>=0.1 in the --shapes grammar)"
                )
        uncertain = f"  {self.uncertain} example(s) oracle-uncertain"
        if self.uncertain:
            uncertain += (
                ", not counted against the candidate (the reference could not be confirmed "
                "there: a kink within rounding, or too much curvature for finite differences); "
                f"first: {self.uncertain_notes[0] if self.uncertain_notes else '?'}"
            )
        lines.append(uncertain)
        if 3 * self.uncertain > self.examples:
            lines.append(
                f"  WARNING: {self.uncertain} of {self.examples} examples were oracle-uncertain "
                f"(more than a third): the verdict rests on the other {self.checked}"
            )
        return lines

    def __str__(self) -> str:
        """A readable verdict, with a copy-paste reproducer when it failed; then, for an
        audit run with ``profile=True``, where the time went (the report's own rendering,
        saving a large counterexample included)."""
        if self.profile is None:
            return self._text()
        start = time.perf_counter()
        text = self._text()
        profile = self.profile.with_phase("report", time.perf_counter() - start)
        return text + "\n" + "\n".join("  " + line for line in profile.lines())

    def _text(self) -> str:
        head = self.title or (
            f"gradient audit of {self.grad_fn} against jax.grad of {self.loss_fn} "
            f"(argnums={self.argnums!r})"
        )
        oracle = f"oracle: {self.environment}"
        seed = "" if self.concrete else f"; seed {self.seed}"
        if self.passed or self.inconclusive:
            if self.inconclusive:
                first = (
                    f"  nothing could be checked: of {self.examples} example(s), "
                    f"{self.uncertain} oracle-uncertain and {self.out_of_domain} outside the "
                    f"loss's domain{seed}"
                )
            else:
                first = (
                    f"  {self.examples} examples{seed.replace(';', ',')}; over the "
                    f"{self.checked} checked: largest error {self.max_abs_error:.3g}, "
                    f"{self.max_scaled_error:.3g} of the gradient's scale (elementwise relative "
                    f"{self.max_rel_error:.3g})"
                )
            lines = [f"{self.verdict}: {head}", first, *self._replay_lines()]
            if self.spread_ulp > 0:
                lines.append(
                    f"  two calls on one input differed by up to {self.spread_ulp:.3g} ulp: "
                    "within what reordering the candidate's sums explains"
                )
            lines += [f"  {t}" for t in self.low_precision]
            return "\n".join([*lines, *self._summary_lines(), f"  {oracle}"])
        elements, nonzero = self.counterexample_size
        lines = [
            f"FAILED ({self.kind}): {head}",
            f"  after {self.examples - self.shrink_steps} examples, shrunk in "
            f"{self.shrink_steps} more{seed}",
            *self._replay_lines(),
        ]
        if self.location is not None and self.candidate is None:
            lines.append(f"  at {self.location}")
        if self.location is not None and self.candidate is not None:
            where = f"  worst element {self.location}: candidate {self.candidate!r}, "
            where += f"reference {self.reference!r}"
            if self.finite_difference is not None and math.isfinite(self.finite_difference):
                where += f", finite difference {self.finite_difference:.12g}"
                if self.finite_difference_note:
                    where += f" ({self.finite_difference_note})"
            lines.append(where)
        if self.rtol is not None and self.atol is not None and math.isfinite(self.max_abs_error):
            lines.append(
                f"  |error| {self.max_abs_error:.3g} (relative {self.max_rel_error:.3g}); "
                f"allowed atol {self.atol:.3g} + rtol {self.rtol:.3g} * |reference|"
            )
        if self.diagnosis:
            lines.append(f"  diagnosis: {self.diagnosis}")
        lines += [f"    {leaf}" for leaf in self.leaves]
        if self.stage:
            lines.append(f"  stage: {self.stage}")
        if self.where is not None:
            lines += [f"  {t}" for t in self.where.lines()]
        if self.offending:
            lines.append("  offending elements (worst first):")
            lines += [f"    {t}" for t in self.offending]
        lines += [f"  {t}" for t in self.low_precision]
        lines += self._large_input_lines()
        if self.warnings:
            lines.append("  the candidate warned: " + "; ".join(self.warnings[:3]))
        if self.traceback:
            lines.append("  traceback:")
            lines += ["    " + t for t in self.traceback.rstrip().splitlines()]
        lines.append(f"  counterexample ({elements} elements, {nonzero} nonzero):")
        lines += ["    " + r for r in self.reproducer().splitlines()]
        lines += [*self._summary_lines(), f"  {oracle}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the counterexample as Python source)."""

        def number(x: float | None) -> float | str | None:
            return x if x is None or math.isfinite(x) else str(x)

        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "kind": self.kind,
            "examples": self.examples,
            "shrink_steps": self.shrink_steps,
            "uncertain": self.uncertain,
            "uncertain_notes": self.uncertain_notes,
            "out_of_domain": self.out_of_domain,
            "spread_ulp": self.spread_ulp,
            "seed": self.seed,
            "grad_fn": self.grad_fn,
            "loss_fn": self.loss_fn,
            "argnums": list(self.argnums) if isinstance(self.argnums, tuple) else self.argnums,
            "location": self.location,
            "diagnosis": self.diagnosis,
            "stage": self.stage,
            "where": self.where.to_dict() if hasattr(self.where, "to_dict") else None,
            "where_note": getattr(self.where, "reason", None),
            "candidate": number(self.candidate),
            "reference": number(self.reference),
            "finite_difference": number(self.finite_difference),
            "finite_difference_note": self.finite_difference_note,
            "max_abs_error": number(self.max_abs_error),
            "max_rel_error": number(self.max_rel_error),
            "max_scaled_error": number(self.max_scaled_error),
            "rtol": self.rtol,
            "atol": self.atol,
            "counterexample": (
                None
                if self.counterexample is None
                else "\n".join(self._args_source()).removeprefix("args = ")
            ),
            "counterexample_elements": self.counterexample_size[0],
            "traceback": self.traceback,
            "warnings": self.warnings,
            "environment": {
                "jax_version": self.environment.jax_version,
                "backend": self.environment.backend,
                "x64": self.environment.x64,
                "matmul_precision": self.environment.matmul_precision,
            },
            "timings": self.timings,
            "compilations": self.compilations,
            "low_precision": self.low_precision,
            "offending": self.offending,
            "replayed": self.replayed,
            "replay_failed": self.replay_failed,
            "profile": None if self.profile is None else self.profile.to_dict(),
        }


def leaf_lines(names: Sequence[str], comparisons: Sequence[Any]) -> list[str]:
    """One line per leaf: its name and ``str(Comparison)``."""
    return [f"{name}: {c}" for name, c in zip(names, comparisons, strict=True)]
