"""``python -m benchmarks``: run the benchmark sections, print their tables, save JSON and PNG.

Each section prints its tables (markdown) and writes ``<out>/<section>.json`` and
``<out>/<section>.png``; ``--out`` defaults to ``bench-results/`` beside this package (not
tracked by git). The README's figures in ``docs/bench/`` change only with ``--update-docs``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    _requires as _requires,  # first: one line, not a traceback, if extras are missing
)
from benchmarks._figures import (
    gradient_cost_figure,
    sgd_step_figure,
    verification_speed_figure,
)
from benchmarks._machine import machine_info, machine_line
from benchmarks._report import Section, write_json
from benchmarks.audit_cost import audit_cost_figure
from benchmarks.gradcheck_compare import gradcheck_compare_figure
from benchmarks.lowprec_factor import lowprec_factor_figure
from benchmarks.second_order import second_order_figure
from manual_bp._cli import ArgumentParser, UsageError

__all__ = ["main"]

SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any], Path], Path]]] = {
    "sgd_step": ("benchmarks.sgd_step", sgd_step_figure),
    "gradient_cost": ("benchmarks.gradient_cost", gradient_cost_figure),
    "verification_speed": ("benchmarks.verification_speed", verification_speed_figure),
    "gradcheck_compare": ("benchmarks.gradcheck_compare", gradcheck_compare_figure),
    "lowprec_factor": ("benchmarks.lowprec_factor", lowprec_factor_figure),
    "second_order": ("benchmarks.second_order", second_order_figure),
    "audit_cost": ("benchmarks.audit_cost", audit_cost_figure),
}
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "bench"
OUT = ROOT / "bench-results"
PROG = "python -m benchmarks"
DESCRIPTION = """\
Benchmarks of manual-bp. Sections:

  sgd_step            one SGD step (forward, backward, update) against jax.jit and torch
  gradient_cost       the full gradient against finite differences and forward mode, as the
                      network grows
  verification_speed  verification throughput against the rate of generating the problems
  gradcheck_compare   the audit against torch.autograd.gradcheck and jax check_grads on six
                      candidates at tiny, mnist and large sizes
  lowprec_factor      the measurements behind the float16/bfloat16 audit's factor
  second_order        audit_hvp against gradgradcheck and check_grads(order=2) on three
                      Hessian-vector products; the hand HVP's cost against a gradient and JAX's
  audit_cost          the audit's cost in candidate gradient steps at mnist and large size,
                      with the profile of where the time goes

Each section prints markdown tables and writes OUT/SECTION.json and OUT/SECTION.png.
The README's figures in docs/bench/ change only with --update-docs.
Needs the verify, bench and train extras: pip install ".[verify,bench,train]" in a clone.
Runs from any directory where the clone is importable (an editable install, or its root).

exit status: 0 done; 2 a bad option or output folder."""


def parser() -> ArgumentParser:
    """The command-line interface."""
    p = ArgumentParser(prog=PROG, description=DESCRIPTION, allow_abbrev=False)
    p.add_argument(
        "--quick", action="store_true", help="few repeats and smaller sizes, a few minutes"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=OUT,
        metavar="DIR",
        help="folder for the JSON and PNG files, created if missing (default: bench-results/ "
        "in the clone, not tracked by git)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=sorted(SECTIONS),
        metavar="SECTION",
        help=f"run only this section, repeatable; one of {', '.join(sorted(SECTIONS))} "
        "(default: all)",
    )
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="also copy the figures to docs/bench/, the README's (default: leave them alone)",
    )
    return p


def check_out(out: Path) -> None:
    """Create ``out`` (and its parents) or raise :class:`UsageError` saying why it cannot be."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create the folder ({error.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {out} is not writable; choose another folder")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_out(args.out)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
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
        if args.update_docs:
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(png, DOCS / png.name)
        print(f"## {section.title}\n")
        print(
            f"({elapsed:.0f} s; 1-minute load average {load_before:.1f} before, "
            f"{load_after:.1f} after, on {info['cores']} cores)\n"
        )
        print(section.markdown + "\n", flush=True)
    print(
        f"JSON and PNG in {args.out}/" + (f"; figures copied to {DOCS}" if args.update_docs else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
