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
import importlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from verification.auditing import (
    MAX_TIES,
    MLP_RELU,
    RELU,
    Kinks,
    OracleRefusedError,
    audit,
    kinks_at,
    named_arrays,
    pool_ties,
)
from verification.auditing._grammar import GRAMMAR
from verification.auditing._lowprec import BFLOAT16, default_bounds
from verification.auditing._shapes import DEFAULT_BOUNDS, parse_shapes

__all__ = [
    "DTYPES",
    "EXIT_FAILED",
    "EXIT_INCONCLUSIVE",
    "EXIT_PASSED",
    "EXIT_USAGE",
    "KINKS",
    "OneLineParser",
    "SearchInputs",
    "add_declaration_options",
    "add_search_options",
    "declarations",
    "finish",
    "lookup",
    "main",
    "pipe_closed",
    "resolve",
    "search_inputs",
]

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
DTYPES = ("float64", "float32", "float16", "bfloat16")
_PROG = "python -m verification audit"


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit status 2."""


def resolve(target: str) -> Callable[..., Any]:
    """The function named by ``MODULE:NAME`` (MODULE a module name or a ``.py`` path).

    Raises
    ------
    ValueError : no ``:`` in ``target`` (with the ``MODULE:NAME`` meant, for a
        ``MODULE.NAME``), or the module has no callable of that name.
    ImportError : the module cannot be imported (also for an error while importing it); a
        module not found names the current directory and how to put it on the path.
    """
    fn = lookup(target)
    if not callable(fn):
        raise ValueError(f"{target} is not callable")
    return fn


def lookup(target: str) -> Any:
    """The object named by ``MODULE:NAME`` (see ``resolve``), callable or not."""
    module_name, sep, name = target.rpartition(":")
    if not sep or not module_name or not name:
        head, dot, tail = target.removesuffix(".py").rpartition(".")
        hint = f" (did you mean {head}:{tail}?)" if dot and head and tail else ""
        raise ValueError(f"expected MODULE:FUNCTION, got {target!r}{hint}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ImportError(f"cannot load {path}: no such Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module  # so that the report's reproducer can import it
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not (module_name + ".").startswith(error.name + "."):
            raise  # the user's module imports something missing: its own message
        raise ImportError(
            f"no module named {module_name!r} in the current directory ({Path.cwd()}) or on "
            "the Python path: run from the folder that holds it, give its path "
            f"(path/to/{module_name.replace('.', '/')}.py:{name}), or add its folder to "
            "PYTHONPATH"
        ) from None
    except ImportError:
        raise
    except Exception as error:  # the user's module raised while importing
        first = str(error).splitlines()[0] if str(error) else ""
        raise ImportError(
            f"importing {module_name} raised {type(error).__name__}: {first}"
        ) from None
    fn = module
    for part in name.split("."):
        fn = getattr(fn, part, None)  # type: ignore[assignment]
        if fn is None:
            raise ValueError(f"{module_name} has no attribute {name!r}")
    return fn


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


def _writable(path_text: str) -> Path:
    path = Path(path_text)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"--json {path_text}: is a directory; give a file name")
    if not parent.is_dir():
        raise UsageError(f"--json {path_text}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--json {path_text}: cannot write there; choose another path")
    return path


def _folder(path_text: str) -> Path:
    path = Path(path_text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--save-dir {path_text}: is a file; give a folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise UsageError(f"--save-dir {path_text}: cannot write there; choose another folder")
    return path


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit status 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


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


def add_search_options(parser: argparse.ArgumentParser, what: str = "arguments") -> None:
    """The options every audit command shares (``--shapes`` names the ``what`` in order)."""
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
    parser.add_argument(
        "--save-dir",
        default=None,
        metavar="DIR",
        help="folder for a counterexample too large to print, saved as "
        "counterexample-<function>-<checksum>.npz (default: $MANUAL_BP_AUDIT_DIR, else "
        "manual-bp-audit/ in the system's temporary folder)",
    )


def _default_bounds_by_dtype() -> dict[tuple[float, ...], list[str]]:
    """The default ``--bounds`` of each ``--dtype`` (``_lowprec.default_bounds``)."""
    out: dict[tuple[float, ...], list[str]] = {}
    for name in DTYPES:
        dtype = BFLOAT16 if name == "bfloat16" else name
        out.setdefault(default_bounds(dtype) or DEFAULT_BOUNDS, []).append(name)
    return out


def pipe_closed() -> int:
    """Exit status 0 after stdout's reader went away (``... | head``): the rest of the output
    goes to /dev/null, so that the interpreter's final flush prints no BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PASSED


KINKS = {"relu": RELU, "mlp-relu": MLP_RELU, "max-ties": MAX_TIES}
"""The built-in ``Kinks`` declarations by their ``--kinks`` names."""


def add_declaration_options(parser: argparse.ArgumentParser) -> None:
    """``--kinks``, ``--stages`` and ``--intermediates``, shared by audit and audit-vjp."""
    parser.add_argument(
        "--kinks",
        default=None,
        metavar="NAME|MODULE:NAME",
        help="declare that the candidate's convention at these kinks is the reference's: "
        + ", ".join(sorted(KINKS))
        + "; at=-1,1 (kinks at those values: clip, hardtanh); pool-ties=2x2 or 3x3/2x2 (ties "
        "inside 2-D pooling windows, stride after /); or MODULE:NAME of your own "
        "verification.auditing.Kinks (default: none)",
    )
    parser.add_argument(
        "--stages",
        default=None,
        metavar="MODULE:NAME",
        help="a mapping {intermediate name: Stage or a name of MLP_STAGES} in backward order; "
        "with --intermediates, a failure names the stage that broke (default: none)",
    )
    parser.add_argument(
        "--intermediates",
        default=None,
        metavar="MODULE:FUNCTION",
        help="the candidate's intermediate gradients by name, called with the same arguments "
        "as the candidate (goes with --stages)",
    )


def _kinks_form(text: str) -> Kinks | None:
    """``at=-1,1`` (``kinks_at``) or ``pool-ties=2x2`` / ``pool-ties=3x3/2x2`` (``pool_ties``)."""
    form, _, rest = text.partition("=")
    try:
        if form == "at" and rest:
            return kinks_at([float(v) for v in rest.split(",")])
        if form == "pool-ties" and rest:
            window, _, stride = rest.partition("/")
            pairs = [tuple(int(k) for k in p.split("x")) for p in (window, stride) if p]
            return pool_ties(*pairs)  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        raise UsageError(f"--kinks {text!r}: {error}") from None
    return None


def declarations(options: argparse.Namespace) -> dict[str, Any]:
    """``kinks``, ``stages`` and ``intermediates`` for the audit, from their options.

    Raises
    ------
    UsageError : a ``--kinks`` that is neither a built-in name nor a ``Kinks``, a ``--stages``
        that is not a mapping, one of ``--stages``/``--intermediates`` without the other.
    """
    out: dict[str, Any] = {"kinks": None, "stages": None, "intermediates": None}
    if options.kinks:
        kinks = KINKS.get(options.kinks) or _kinks_form(options.kinks)
        if kinks is None and ":" not in options.kinks:
            raise UsageError(
                f"--kinks {options.kinks!r}: expected one of {', '.join(sorted(KINKS))}, "
                "at=V,V (kinks at those values), pool-ties=KHxKW[/SHxSW] or MODULE:NAME of a "
                "verification.auditing.Kinks"
            )
        if kinks is None:
            kinks = lookup(options.kinks)
            if not isinstance(kinks, Kinks):
                raise UsageError(
                    f"--kinks {options.kinks}: is a {type(kinks).__name__}, not a "
                    "verification.auditing.Kinks"
                )
            module, _, name = options.kinks.rpartition(":")
            module = Path(module).stem if module.endswith(".py") else module
            kinks = replace(kinks, rebuild=(f"from {module} import {name} as kinks", "kinks"))
        out["kinks"] = kinks
    if (options.stages is None) != (options.intermediates is None):
        raise UsageError("--stages and --intermediates go together: give both or neither")
    if options.stages is not None:
        stages = lookup(options.stages)
        if not isinstance(stages, Mapping):
            raise UsageError(
                f"--stages {options.stages}: is a {type(stages).__name__}, not a mapping "
                "{intermediate name: Stage or stage name}"
            )
        out["stages"], out["intermediates"] = stages, resolve(options.intermediates)
    return out


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


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


def main(argv: list[str]) -> int:
    """Run the audit command; returns the exit status (0 passed, 1 failed, 2 usage error,
    3 inconclusive)."""
    try:
        options = _parser().parse_args(argv)
    except BrokenPipeError:  # --help | head
        return pipe_closed()
    try:
        inputs = search_inputs(options)
        declared = declarations(options)
        report = audit(
            resolve(options.grad_fn),
            resolve(options.loss),
            inputs.strategy,
            argnums=inputs.argnums,
            max_examples=options.max_examples,
            seed=options.seed,
            arg_names=list(inputs.spec),
            **declared,
        )
    except (UsageError, ValueError, ImportError, OracleRefusedError) as error:
        return _fail(str(error))
    report.title = (
        f"gradient audit of {options.grad_fn} against jax.grad of {options.loss} "
        f"(argnums={report.argnums!r})"
    )
    return finish(report, inputs.json_path, inputs.save_dir)
