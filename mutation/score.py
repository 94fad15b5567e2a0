"""Mutation score from mutmut's results, per target, net of the documented equivalent mutants.

Run from the repository root after ``mutmut run`` (``nox -s mutation`` does both)::

    python mutation/score.py [--min-manual-bp 95] [--min-compare 90] [--min-auditing 90]
        [--only GLOB] [--sample FILE] [--no-diffs]

``--only`` counts the mutants whose names match GLOB alone (e.g.
``"verification.auditing._simplify*"``), for a run restricted the same way
(``mutmut run GLOB``): mutants that were not run are not counted as survivors.

``--sample FILE`` (names one a line, from ``mutation/sample.py``): a target with mutants in
FILE is scored on those alone, a random sample of its mutants, and its score is given with its
95% Wilson score interval, as an estimate of the score of all its mutants ("sample n of N").
Targets with no mutant in FILE are scored on all their mutants, as without ``--sample``. A
target's minimum applies to the sample's score; a target with no mutant counted is "not run".

The score of a target is ``detected / (total - equivalent)``, where *detected* counts mutants
killed by a test (a failing test, a timeout, or a crash), and *equivalent* counts the
surviving mutants listed in ``mutation/EQUIVALENT.md``. Each listed entry records the line
the mutant introduces; an entry whose mutant no longer survives, or whose recorded line no
longer matches the mutant's diff (mutant names shift when the source changes), is reported as
stale and not counted. Survivors that are not listed are printed with their diff. Exits 1 if a
target is below its minimum or an entry is stale.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

EQUIVALENT = Path(__file__).with_name("EQUIVALENT.md")
#: mutmut statuses that mean a test noticed the mutant.
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}
#: An entry of EQUIVALENT.md: a heading with the mutant's name, then a line "mutated: `code`".
ENTRY = re.compile(r"^### `(?P<name>[\w.]+__mutmut_\d+)`\s*$", re.MULTILINE)
MUTATED = re.compile(r"^mutated: `(?P<code>.+)`\s*$", re.MULTILINE)


@dataclass
class Target:
    """Counts for one mutated target (``manual_bp``, ``verification/compare.py`` or
    ``verification/auditing``)."""

    name: str
    minimum: float
    statuses: Counter[str] = field(default_factory=Counter)
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)
    #: how many mutants the target has, when the counted ones are a sample of them (else 0).
    population: int = 0

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def detected(self) -> int:
        return sum(n for status, n in self.statuses.items() if status in DETECTED)

    @property
    def score(self) -> float:
        denominator = self.total - self.equivalent
        return 100.0 * self.detected / denominator if denominator else 100.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of the score, in percent."""
        low, high = wilson(self.detected, self.total - self.equivalent)
        return 100.0 * low, 100.0 * high


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for the default z).

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = successes / n``;
    ``(0, 1)`` for ``n = 0``.

    >>> [round(x, 4) for x in wilson(9, 10)]
    [0.5958, 0.9821]
    >>> [round(x, 4) for x in wilson(10, 10)]
    [0.7225, 1.0]
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / denominator
    return max(0.0, center - half), min(1.0, center + half)


def read_sample(path: Path) -> set[str]:
    """The mutant names listed in a sample file, one a line."""
    return {line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()}


def read_equivalents(text: str) -> dict[str, str]:
    """Map each mutant named in EQUIVALENT.md to the mutated line recorded for it."""
    entries: dict[str, str] = {}
    matches = list(ENTRY.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        code = MUTATED.search(text, match.end(), end)
        if code is None:
            raise SystemExit(f"EQUIVALENT.md: entry {match['name']} has no 'mutated: `...`' line")
        entries[match["name"]] = code["code"]
    return entries


def added_lines(diff: str) -> list[str]:
    """The lines a unified diff adds, stripped."""
    return [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


def target_of(name: str) -> str:
    """The target a mutant belongs to, by its name (``verification.auditing._simplify.x_...``).

    >>> target_of("verification.auditing._simplify.x_simplify__mutmut_3")
    'verification.auditing'
    """
    for prefix in ("manual_bp", "verification.auditing"):
        if name.startswith(prefix + "."):
            return prefix
    return "verification.compare"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-manual-bp", type=float, default=95.0)
    parser.add_argument("--min-compare", type=float, default=90.0)
    parser.add_argument("--min-auditing", type=float, default=90.0)
    parser.add_argument("--only", default=None, metavar="GLOB", help="count these mutants only")
    parser.add_argument(
        "--sample", type=Path, default=None, metavar="FILE", help="score these mutants alone"
    )
    parser.add_argument("--no-diffs", action="store_true", help="list survivors without diffs")
    args = parser.parse_args(argv)
    sample = read_sample(args.sample) if args.sample is not None else set()
    sampled_targets = {target_of(name) for name in sample}

    targets = {
        "manual_bp": Target("manual_bp", args.min_manual_bp),
        "verification.compare": Target("verification/compare.py", args.min_compare),
        "verification.auditing": Target("verification/auditing", args.min_auditing),
    }
    status_of: dict[str, str] = {}
    path_of: dict[str, Path] = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            if args.only is not None and not fnmatch.fnmatch(name, args.only):
                continue
            if target_of(name) in sampled_targets:
                targets[target_of(name)].population += 1
                if name not in sample:
                    continue
            status_of[name] = status_by_exit_code[exit_code]
            path_of[name] = path
    if not status_of:
        print("no mutmut results under mutants/: run `mutmut run` first", file=sys.stderr)
        return 1

    equivalents = read_equivalents(EQUIVALENT.read_text("utf-8")) if EQUIVALENT.exists() else {}
    stale: list[str] = []
    for name, code in equivalents.items():
        if args.only is not None and not fnmatch.fnmatch(name, args.only):
            continue
        if target_of(name) in sampled_targets and name not in sample:
            continue
        if status_of.get(name) != "survived":
            stale.append(
                f"{name}: listed as equivalent but its status is {status_of.get(name, 'absent')}"
            )
        elif code.strip() not in added_lines(get_diff_for_mutant(name, path=path_of[name])):
            stale.append(f"{name}: its diff no longer adds `{code}` (mutant names shifted?)")

    for name, status in sorted(status_of.items()):
        target = targets[target_of(name)]
        target.statuses[status] += 1
        if status != "survived":
            continue
        if name in equivalents and not any(s.startswith(f"{name}:") for s in stale):
            target.equivalent += 1
        else:
            target.survivors.append(name)

    failed = bool(stale)
    print(
        f"{'target':<26}{'mutants':>8}{'detected':>9}{'survived':>9}{'equiv.':>7}"
        f"{'no tests':>9}{'other':>6}{'score':>8}{'min':>6}"
    )
    for t in targets.values():
        if not t.total:
            print(f"{t.name:<26}{'not run':>8}")
            continue
        other = t.total - t.detected - t.statuses["survived"] - t.statuses["no tests"]
        ok = t.score >= t.minimum
        failed |= not ok
        print(
            f"{t.name:<26}{t.total:>8}{t.detected:>9}{t.statuses['survived']:>9}{t.equivalent:>7}"
            f"{t.statuses['no tests']:>9}{other:>6}{t.score:>7.1f}%{t.minimum:>5.0f}%"
            f"  {'ok' if ok else 'BELOW MINIMUM'}"
        )
    for t in targets.values():
        if t.population and t.total:
            low, high = t.interval
            print(
                f"\n{t.name}: a random sample of {t.total} of its {t.population} mutants; "
                f"score {t.score:.1f}%, 95% interval {low:.1f}%-{high:.1f}% (Wilson) "
                "for the score of all of them"
            )
    for t in targets.values():
        if t.statuses["not checked"]:
            print(
                f"\n{t.name}: {t.statuses['not checked']} mutants not tried (an interrupted "
                "run?): counted as not detected"
            )
        if t.statuses["no tests"]:
            print(f"\n{t.name}: {t.statuses['no tests']} mutants in code no selected test runs")
        if t.survivors:
            print(f"\n{t.name}: {len(t.survivors)} surviving mutants not listed in EQUIVALENT.md")
            for name in t.survivors:
                print(
                    f"  {name}" if args.no_diffs else get_diff_for_mutant(name, path=path_of[name])
                )
    for line in stale:
        print(f"STALE {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
