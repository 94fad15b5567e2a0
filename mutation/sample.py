"""A seeded, stratified random sample of mutmut's mutants, for a run that cannot try them all.

Run from the repository root (``nox -s mutation`` does, see ``MUTANT_SAMPLE``)::

    python mutation/sample.py GLOB=N [GLOB=N ...] --out FILE [--seed S]

For each ``GLOB=N``, the mutants whose names match GLOB (e.g. ``"verification.auditing.*"``)
are listed from mutmut's own generation step (``mutants/``, generated here with mutmut 3.8's
code if absent, as ``mutmut run`` would: the run that follows finds them up to date and does
not generate them again), and N of them are drawn without
replacement: the N places are shared among the modules in proportion to each module's mutant
count (largest remainders, ties to the larger module), and each module's share is drawn with
``random.Random(f"{seed}:{module}")``, so the sample depends on the seed and on each module's
own mutants alone: an edit to one module redraws that module's share only. The chosen names
are written one a line to FILE (mutmut's generation prints on stdout), for ``mutmut run NAME ...`` and
``mutation/score.py --sample FILE``.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path

#: The seed of ``nox -s mutation``'s sample: fixed, so two runs try the same mutants.
SEED = 20261207


def mutants_by_module(jobs: int) -> dict[str, list[str]]:
    """The names of the mutants of each mutated source file, keyed by its path.

    Generates ``mutants/`` with mutmut's own code (``jobs`` processes) where a file's mutants
    are missing or older than the file, then reads the names mutmut recorded for each file.
    """
    # Imported here: the sampling functions below run (and are tested) without mutmut.
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.utils.file_utils import walk_mutatable_files

    create_mutants(jobs)
    names: dict[str, list[str]] = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        names[str(path)] = sorted(data.exit_code_by_key)
    return names


def allocate(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Share n places among strata in proportion to their sizes (largest remainder method).

    Each stratum gets ``floor(n * size / total)``; the places left go to the largest
    remainders, ties to the larger stratum, then by name. n above the total takes everything.

    >>> allocate({"a": 10, "b": 30}, 4)
    {'a': 1, 'b': 3}
    >>> allocate({"a": 1, "b": 1, "c": 2}, 3)
    {'a': 1, 'b': 1, 'c': 1}
    >>> allocate({"a": 1, "b": 3}, 2)
    {'a': 0, 'b': 2}
    """
    if n < 0:
        raise ValueError(f"sample size must be >= 0, got {n}")
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    quotas = {key: n * size / total for key, size in sizes.items()}
    shares = {key: int(q) for key, q in quotas.items()}
    order = sorted(sizes, key=lambda key: (-(quotas[key] - shares[key]), -sizes[key], key))
    for key in order[: n - sum(shares.values())]:
        shares[key] += 1
    return shares


def stratified_sample(strata: Mapping[str, list[str]], n: int, seed: int) -> list[str]:
    """n names drawn without replacement, each stratum's share in proportion to its size,
    each share drawn with its own generator seeded by ``seed`` and the stratum's key. Sorted."""
    shares = allocate({key: len(names) for key, names in strata.items()}, n)
    chosen: list[str] = []
    for key, names in strata.items():
        rng = random.Random(f"{seed}:{key}")
        chosen += rng.sample(sorted(names), shares[key])
    return sorted(chosen)


def parse_request(text: str) -> tuple[str, int]:
    """``"GLOB=N"`` -> ``(GLOB, N)``."""
    glob, sep, count = text.rpartition("=")
    if not sep or not glob or not count.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected GLOB=N (e.g. 'verification.auditing.*=300'), got {text!r}"
        )
    return glob, int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requests", nargs="+", type=parse_request, metavar="GLOB=N")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, required=True, help="write the names here")
    args = parser.parse_args(argv)

    by_module = mutants_by_module(os.cpu_count() or 2)
    chosen: list[str] = []
    for glob, n in args.requests:
        strata = {
            module: matching
            for module, names in by_module.items()
            if (matching := [name for name in names if fnmatch.fnmatch(name, glob)])
        }
        if not strata:
            print(f"sample.py: no mutant matches {glob!r}", file=sys.stderr)
            return 2
        picked = stratified_sample(strata, n, args.seed)
        total = sum(len(names) for names in strata.values())
        print(f"sampled {len(picked)} of {total} mutants matching {glob}", file=sys.stderr)
        chosen += picked
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{name}\n" for name in chosen), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
