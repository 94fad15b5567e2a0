"""``python -m benchmarks [--quick] [--out DIR] [--only SECTION ...]``: run, print, save.

Each section prints its tables (markdown) and writes ``DIR/<section>.json`` and
``DIR/<section>.png``; the figures are also copied to ``docs/bench/`` for the README (pass
``--no-docs`` to skip that). ``--quick`` cuts repeats and sizes for a run of a few minutes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._figures import (
    gradient_cost_figure,
    sgd_step_figure,
    verification_speed_figure,
)
from benchmarks._machine import machine_info, machine_line
from benchmarks._report import Section, write_json
from benchmarks.gradcheck_compare import gradcheck_compare_figure
from benchmarks.lowprec_factor import lowprec_factor_figure

__all__ = ["main"]

SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any], Path], Path]]] = {
    "sgd_step": ("benchmarks.sgd_step", sgd_step_figure),
    "gradient_cost": ("benchmarks.gradient_cost", gradient_cost_figure),
    "verification_speed": ("benchmarks.verification_speed", verification_speed_figure),
    "gradcheck_compare": ("benchmarks.gradcheck_compare", gradcheck_compare_figure),
    "lowprec_factor": ("benchmarks.lowprec_factor", lowprec_factor_figure),
}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "bench"


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repeats, smaller sizes")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument(
        "--only", action="append", choices=sorted(SECTIONS), help="run only this section"
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not copy the figures to docs/bench/"
    )
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    names = [n for n in SECTIONS if not args.only or n in args.only]
    info = machine_info()
    print(f"# manual-bp benchmarks{' (--quick)' if args.quick else ''}\n")
    print(f"Machine: {machine_line(info)}\n")
    for name in names:
        module_name, figure = SECTIONS[name]
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        section: Section = importlib.import_module(module_name).run(quick=args.quick)
        elapsed = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        section.payload["machine"] = info
        section.payload["quick"] = args.quick
        section.payload["seconds"] = elapsed
        section.payload["load_average_1min"] = {"before": load_before, "after": load_after}
        section.payload["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(args.out / f"{name}.json", section.payload)
        png = figure(section.payload, args.out / f"{name}.png")
        if not args.no_docs:
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(png, DOCS / png.name)
        print(f"## {section.title}\n")
        print(
            f"({elapsed:.0f} s; 1-minute load average {load_before:.1f} before, "
            f"{load_after:.1f} after, on {info['cores']} cores)\n"
        )
        print(section.markdown + "\n", flush=True)
    print(f"JSON and PNG in {args.out}/" + ("" if args.no_docs else f"; figures copied to {DOCS}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
