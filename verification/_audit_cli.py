"""``python -m verification audit``: audit a gradient function from the command line.

    python -m verification audit MODULE:GRAD_FN --loss MODULE:LOSS_FN --shapes "x=m,n w=n,h"
        [--argnums 0,1] [--dtype float64|float32|float16|bfloat16] [--max-examples 200] [--seed S] [--json PATH]
        [--dims "m=1,2,3 n=2"] [--bounds 3,1000]

MODULE is an importable module name (the current directory is on the path) or a path to a
``.py`` file. GRAD_FN(*args) must return the gradient of the JAX function LOSS_FN(*args) with
respect to the argument(s) ``--argnums`` (default 0); the arguments are the arrays named by
``--shapes`` in order (``y=m,k:onehot`` for one-hot labels, ``p=m:prob`` for values in [0, 1],
``s=`` for a scalar). Prints the report; exit status 0 when the audit passes, 1 when it fails,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes

from verification.auditing import audit, named_arrays, parse_shapes

__all__ = ["main", "resolve"]


def resolve(target: str) -> Callable[..., Any]:
    """The function named by ``MODULE:NAME`` (MODULE a module name or a ``.py`` path).

    Raises
    ------
    ValueError : no ``:`` in ``target``, or the module has no callable of that name.
    ImportError : the module cannot be imported.
    """
    module_name, sep, name = target.rpartition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"expected MODULE:FUNCTION, got {target!r}")
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
    fn = module
    for part in name.split("."):
        fn = getattr(fn, part, None)  # type: ignore[assignment]
        if fn is None:
            raise ValueError(f"{module_name} has no attribute {name!r}")
    if not callable(fn):
        raise ValueError(f"{target} is not callable")
    return fn


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def _dims(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in text.split():
        name, sep, sizes = item.partition("=")
        if not sep:
            raise ValueError(f"expected name=size,size in --dims, got {item!r}")
        out[name] = list(_ints(sizes))
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verification audit",
        description="Search for the input where a gradient function disagrees with jax.grad.",
    )
    parser.add_argument("grad_fn", help="MODULE:FUNCTION, the gradient function audited")
    parser.add_argument("--loss", required=True, help="MODULE:FUNCTION, the JAX loss")
    parser.add_argument(
        "--shapes", required=True, help='argument shapes by named dimensions, "x=m,n w=n,h"'
    )
    parser.add_argument("--argnums", default="0", help="differentiated argument(s): 0 or 0,1")
    parser.add_argument(
        "--dtype", default="float64", choices=["float64", "float32", "float16", "bfloat16"]
    )
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dims", default=None, help='sizes per dimension, "m=1,2,3 n=2"')
    parser.add_argument("--bounds", default=None, help="bounds on |values| to draw, 3,1000")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the report")
    return parser


def main(argv: list[str]) -> int:
    """Run the audit command; returns the exit status (0 passed, 1 failed, 2 usage error)."""
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        grad_fn = resolve(options.grad_fn)
        loss_fn = resolve(options.loss)
        spec, kinds = parse_shapes(options.shapes)
        argnums = _ints(options.argnums)
        bounds = tuple(float(b) for b in options.bounds.split(",")) if options.bounds else None
        strategy = named_arrays(
            spec,
            dims=_dims(options.dims) if options.dims else None,
            dtype=ml_dtypes.bfloat16 if options.dtype == "bfloat16" else options.dtype,
            kinds=kinds,
            **({"bounds": bounds} if bounds else {}),
        )
    except (ValueError, ImportError) as error:
        parser.print_usage(sys.stderr)
        print(f"python -m verification audit: error: {error}", file=sys.stderr)
        return 2
    if not argnums or max(argnums) >= len(spec):
        print(
            f"--argnums {options.argnums} does not fit the {len(spec)} arguments", file=sys.stderr
        )
        return 2
    report = audit(
        grad_fn,
        loss_fn,
        strategy,
        argnums=argnums[0] if len(argnums) == 1 else argnums,
        max_examples=options.max_examples,
        seed=options.seed,
        arg_names=list(spec),
    )
    print(report)
    if options.json:
        Path(options.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1
