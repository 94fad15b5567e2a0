"""``python -m verification audit-vjp``: audit a layer's backward function from the command line.

    python -m verification audit-vjp MODULE:BACKWARD --reference MODULE:FORWARD_REF
        --shapes "x=m,n w=n,h b=h" [--forward MODULE:FORWARD] [--argnums 0,1,2]
        [--kinks relu|mlp-relu|max-ties] [--dtype float64] [--max-examples 200] [--seed S]
        [--dims "m=1,2,3 n=2"] [--bounds 3,1000] [--json PATH]

BACKWARD(cotangent, *inputs) returns the gradients of the inputs at ``--argnums`` (default 0);
with ``--forward``, FORWARD(*inputs) returns ``(out, cache)`` and BACKWARD(cotangent, cache) the
gradients, as layer code is written; BACKWARD may also be a ``torch.autograd.Function``
subclass. FORWARD_REF is the JAX forward function (the ground truth, through ``jax.vjp``). The
inputs are described by ``--shapes`` (the grammar of ``audit``); the cotangent is drawn at
random. ``--kinks`` declares that the candidate's convention at these kinks is the reference's
(``verification.auditing.RELU``, ``MLP_RELU``, ``MAX_TIES``). Prints the report; exit status 0
when the audit passes, 1 when it fails, 2 for a usage error (one line), 3 when it is
inconclusive.
"""

from __future__ import annotations

import argparse
import json
import sys

from verification._audit_cli import (
    EXIT_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_PASSED,
    EXIT_USAGE,
    UsageError,
    _bounds,
    _dims,
    _ints,
    _writable,
    resolve,
)
from verification.auditing import (
    MAX_TIES,
    MLP_RELU,
    RELU,
    OracleRefusedError,
    audit_vjp,
    named_arrays,
)
from verification.auditing._shapes import DEFAULT_BOUNDS, parse_shapes

__all__ = ["main"]

KINKS = {"relu": RELU, "mlp-relu": MLP_RELU, "max-ties": MAX_TIES}
_PROG = "python -m verification audit-vjp"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Search for inputs and a cotangent where a layer's backward disagrees "
        "with jax.vjp of its JAX forward.",
    )
    parser.add_argument("backward", help="MODULE:FUNCTION (or a torch.autograd.Function)")
    parser.add_argument("--reference", required=True, help="MODULE:FUNCTION, the JAX forward")
    parser.add_argument("--forward", default=None, help="MODULE:FUNCTION -> (out, cache)")
    parser.add_argument("--shapes", required=True, help='input shapes, "x=m,n w=n,h b=h"')
    parser.add_argument("--argnums", default="0", help="inputs whose gradients are returned")
    parser.add_argument("--kinks", default=None, choices=sorted(KINKS))
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dims", default=None, help='sizes per dimension, "m=1,2,3 n=2"')
    parser.add_argument("--bounds", default=None, help="bounds on |values| to draw, 3,1000")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the report")
    return parser


def main(argv: list[str]) -> int:
    """Run the audit-vjp command; returns the exit status (0 passed, 1 failed, 2 usage error,
    3 inconclusive)."""
    options = _parser().parse_args(argv)
    try:
        if options.max_examples < 1:
            raise UsageError(f"--max-examples {options.max_examples}: give 1 or more")
        json_path = _writable(options.json) if options.json else None
        spec = parse_shapes(options.shapes)
        argnums = _ints(options.argnums, "--argnums")
        if max(argnums) >= len(spec) or min(argnums) < 0:
            raise UsageError(
                f"--argnums {options.argnums} does not fit the {len(spec)} inputs of --shapes "
                f"({', '.join(spec)}): count from 0"
            )
        strategy = named_arrays(
            spec,
            dims=_dims(options.dims) if options.dims else None,
            dtype=options.dtype,
            bounds=_bounds(options.bounds) if options.bounds else DEFAULT_BOUNDS,
        )
        report = audit_vjp(
            resolve(options.backward),
            resolve(options.reference),
            strategy,
            forward=resolve(options.forward) if options.forward else None,
            argnums=argnums[0] if len(argnums) == 1 else argnums,
            max_examples=options.max_examples,
            seed=options.seed,
            arg_names=list(spec),
            kinks=KINKS[options.kinks] if options.kinks else None,
        )
    except (UsageError, ValueError, ImportError, OracleRefusedError) as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(report)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if report.passed:
        return EXIT_PASSED
    return EXIT_INCONCLUSIVE if report.inconclusive else EXIT_FAILED
