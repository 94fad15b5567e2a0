"""``python -m verification audit``: audit a gradient function from the command line.

    python -m verification audit MODULE:GRAD_FN --loss MODULE:LOSS_FN --shapes "x=m,n w=n,h"
        [--argnums 0,1] [--dtype float64|float32|float16|bfloat16] [--max-examples 200] [--seed S] [--json PATH]
        [--dims "m=1,2,3 n=2"] [--bounds 3,1000]
        [--kinks relu|mlp-relu|max-ties|at=V,V|pool-ties=KHxKW[/SHxSW]|MODULE:NAME]
        [--stages MODULE:NAME --intermediates MODULE:FUNCTION]

MODULE is an importable module name (the current directory is on the path) or a path to a
``.py`` file. GRAD_FN(*args) must return the gradient of the JAX function LOSS_FN(*args) with
respect to the argument(s) ``--argnums`` (default 0); the arguments are described by
``--shapes`` in order, in the grammar of ``verification.auditing._grammar`` (printed by
``--help``). Every option and the output path are checked before any work; a mistake is one
line on stderr and exit status 2. Prints the report; exit status 0 when the audit passes, 1
when it fails, 3 when it is inconclusive (no example could be checked).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from verification.auditing import OracleRefusedError, audit, named_arrays
from verification.auditing._grammar import GRAMMAR
from verification.auditing._lowprec import BFLOAT16, default_bounds
from verification.auditing._shapes import DEFAULT_BOUNDS, parse_shapes
from verification.auditing._targets import resolve
from verification.cli._common import (
    EXIT_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_PASSED,
    EXIT_USAGE,
    OneLineParser,
    UsageError,
    _folder,
    _writable,
    pipe_closed,
)
from verification.cli._declarations import add_declaration_options, declarations

__all__ = [
    "DTYPES",
    "SearchInputs",
    "add_search_options",
    "audit_arguments",
    "finish",
    "main",
    "run_command",
    "search_inputs",
]

DTYPES = ("float64", "float32", "float16", "bfloat16")
_PROG = "python -m verification audit"


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected integers separated by commas") from None
    if not values:
        raise UsageError(f"{option} {text!r}: expected at least one integer")
    return values


def _dims(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in text.split():
        name, sep, sizes = item.partition("=")
        if not sep or not name:
            raise UsageError(f"expected name=size,size in --dims, got {item!r}")
        out[name] = list(_ints(sizes, f"--dims {name}="))
    return out


def _bounds(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(b) for b in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not (math.isfinite(b) and b > 0) for b in values):
        raise UsageError(
            f"--bounds {text!r}: expected positive finite numbers separated by commas, e.g. "
            "3,1000 (each array draws its largest |value| from these)"
        )
    return values


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=_PROG,
        description=(
            "Search for an input where a gradient function disagrees with jax.grad of a JAX "
            "loss (float64 reference), shrink it, and explain it. Exit status: 0 passed, 1 "
            "failed, 2 usage error, 3 inconclusive (no example could be checked)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "The --shapes grammar:\n" + GRAMMAR + "\nExamples:\n"
            '  --shapes "x=m,n w=n,h"                      two matrices sharing n\n'
            '  --shapes "z=m,k y=m:classes(k)"             logits and integer labels in [0, k)\n'
            '  --shapes "p=m:(0,1) y=m:binary"             probabilities without exact 0 or 1\n'
            '  --shapes "x=m,c,H w=k,c,f dout=m,k,(H-f)//s+1 s:=2"   a strided convolution\n'
            '  --shapes "params.W=n,h params.b=h x=m,n lam:=0.01"   a dict argument, a float\n'
        ),
    )
    parser.add_argument("grad_fn", help="MODULE:FUNCTION, the gradient function audited")
    parser.add_argument("--loss", required=True, help="MODULE:FUNCTION, the JAX loss (required)")
    add_search_options(parser)
    add_declaration_options(parser)
    return parser


def add_search_options(
    parser: argparse.ArgumentParser, what: str = "arguments", *, first_order: bool = True
) -> None:
    """The options every audit command shares (``--shapes`` names the ``what`` in order);
    ``first_order`` adds those only the first-order engine honours (--profile, --quick,
    --no-locate)."""
    parser.add_argument(
        "--shapes",
        required=True,
        help=f'the {what} in order, in the grammar below (required), e.g. "x=m,n w=n,h"',
    )
    parser.add_argument(
        "--argnums", default="0", help=f"differentiated {what}: 0 or 0,1 (default: 0)"
    )
    parser.add_argument(
        "--dtype",
        default="float64",
        choices=list(DTYPES),
        help="dtype of every float array drawn (default: float64); float16 and bfloat16 are "
        "judged against jax.grad in that dtype",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=200,
        help="examples to draw before shrinking a failure, >= 1 (default: 200)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the search, >= 0; the same seed draws the same examples (default: a "
        "fresh one, printed in the report)",
    )
    parser.add_argument(
        "--dims",
        default=None,
        help='sizes to draw for the dimension names given, "m=1,2,3 n=2"; the others keep '
        "the default (default: joint profiles of sizes 1 to 4, all ones first)",
    )
    parser.add_argument(
        "--bounds",
        default=None,
        help="largest |value| of real arrays, one drawn per array, e.g. 3,1000 (default: "
        + "; ".join(
            f"{','.join(f'{b:g}' for b in bounds)} for {', '.join(names)}"
            for bounds, names in _default_bounds_by_dtype().items()
        )
        + ")",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the report as JSON to PATH"
    )
    if first_order:
        _add_engine_options(parser)
    parser.add_argument(
        "--save-dir",
        default=None,
        metavar="DIR",
        help="folder for a counterexample too large to print, saved as "
        "counterexample-<function>-<checksum>.npz (default: $MANUAL_BP_AUDIT_DIR, else "
        "manual-bp-audit/ in the system's temporary folder)",
    )


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print where the time went after the report (tracing, compilation, reference, "
        "candidate, second opinion, finite differences, diagnosis) and the programs compiled",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="stop at the verdict, the failing input and its offending elements: no shrinking "
        "and no re-checks to name a cause (nor the line where the error enters)",
    )
    parser.add_argument(
        "--no-locate",
        action="store_true",
        help="on a mismatch, do not look for the line where the error enters (the report's "
        "where: section; looking runs the candidate again under a line tracer)",
    )


def _default_bounds_by_dtype() -> dict[tuple[float, ...], list[str]]:
    """The default ``--bounds`` of each ``--dtype`` (``_lowprec.default_bounds``)."""
    out: dict[tuple[float, ...], list[str]] = {}
    for name in DTYPES:
        dtype = BFLOAT16 if name == "bfloat16" else name
        out.setdefault(default_bounds(dtype) or DEFAULT_BOUNDS, []).append(name)
    return out


class SearchInputs(NamedTuple):
    """What the shared options give, checked: the output path, the spec, argnums, strategy."""

    json_path: Path | None
    save_dir: Path | None
    spec: dict[str, Any]
    argnums: int | tuple[int, ...]
    strategy: Any


def search_inputs(options: argparse.Namespace, what: str = "arguments") -> SearchInputs:
    """Check the shared options (before any work) and build the input strategy.

    Raises
    ------
    UsageError, ValueError : a mistake in an option, named with the fix.
    """
    if options.max_examples < 1:
        raise UsageError(f"--max-examples {options.max_examples}: give 1 or more")
    if options.seed is not None and options.seed < 0:
        raise UsageError(f"--seed {options.seed}: give 0 or more")
    json_path = _writable(options.json) if options.json else None
    save_dir = _folder(options.save_dir) if options.save_dir else None
    spec = parse_shapes(options.shapes)
    argnums = _ints(options.argnums, "--argnums")
    if max(argnums) >= len(spec) or min(argnums) < 0:
        raise UsageError(
            f"--argnums {options.argnums} does not fit the {len(spec)} {what} of "
            f"--shapes ({', '.join(spec)}): count from 0"
        )
    strategy = named_arrays(
        spec,
        dims=_dims(options.dims) if options.dims else None,
        dtype=BFLOAT16 if options.dtype == "bfloat16" else options.dtype,
        bounds=_bounds(options.bounds) if options.bounds else None,
    )
    argnums_given = argnums[0] if len(argnums) == 1 else argnums
    return SearchInputs(json_path, save_dir, spec, argnums_given, strategy)


def finish(report: Any, json_path: Path | None, save_dir: Path | None = None) -> int:
    """Print ``report`` (a counterexample too large to print saved in ``save_dir``), write its
    JSON where asked; the exit status of its verdict."""
    report.save_dir = save_dir
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    try:
        print(report, flush=True)
    except BrokenPipeError:  # ... | head: the reader has what it wanted
        pipe_closed()
    if report.passed:
        return EXIT_PASSED
    return EXIT_INCONCLUSIVE if report.inconclusive else EXIT_FAILED


def audit_arguments(options: argparse.Namespace, inputs: SearchInputs) -> dict[str, Any]:
    """The keyword arguments of an audit that the shared options give: ``argnums``,
    ``max_examples``, ``seed``, ``arg_names`` and the declarations (``_declarations``).

    Raises
    ------
    UsageError : a declaration that cannot be used (``declarations``).
    """
    return {
        "argnums": inputs.argnums,
        "max_examples": options.max_examples,
        "seed": options.seed,
        "arg_names": list(inputs.spec),
        **declarations(options),
    }


def run_command(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: list[str],
    run: Callable[[argparse.Namespace, SearchInputs], Any],
    what: str = "arguments",
) -> int:
    """An audit command: parse ``argv``, check the shared options (``search_inputs``), run the
    audit (``run(options, inputs)`` -> its report) and print the report (``finish``).

    Returns the exit status: the report's verdict's (0 passed, 1 failed, 3 inconclusive), or 2
    with one line on stderr, ``PROG: error: ...``, for a mistake the user can fix (an option,
    a name that does not import, a reference that is not float64); 0 after ``--help`` into a
    closed pipe.
    """
    try:
        options = parser.parse_args(argv)
    except BrokenPipeError:  # --help | head
        return pipe_closed()
    try:
        inputs = search_inputs(options, what)
        report = run(options, inputs)
    except (UsageError, ValueError, ImportError, OracleRefusedError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return finish(report, inputs.json_path, inputs.save_dir)


def _audit(options: argparse.Namespace, inputs: SearchInputs) -> Any:
    arguments = audit_arguments(options, inputs)  # the declarations checked first
    report = audit(
        resolve(options.grad_fn),
        resolve(options.loss),
        inputs.strategy,
        profile=options.profile,
        quick=options.quick,
        locate=not options.no_locate,
        **arguments,
    )
    report.title = (
        f"gradient audit of {options.grad_fn} against jax.grad of {options.loss} "
        f"(argnums={report.argnums!r})"
    )
    return report


def main(argv: list[str]) -> int:
    """Run the audit command; returns the exit status (0 passed, 1 failed, 2 usage error,
    3 inconclusive)."""
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        from verification.cli.audit_config import main as config_main

        return config_main(argv)  # the audits declared in a pyproject.toml
    return run_command(_PROG, _parser(), argv, _audit)
