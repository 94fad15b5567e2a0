"""``python -m verification audit-vjp``: audit a layer's backward function from the command line.

    python -m verification audit-vjp MODULE:BACKWARD --reference MODULE:FORWARD_REF
        --shapes "x=m,n w=n,h b=h" [--forward MODULE:FORWARD] [--argnums 0,1,2]
        [--kinks relu|mlp-relu|max-ties] [--dtype float64] [--max-examples 200] [--seed S]
        [--dims "m=1,2,3 n=2"] [--bounds 3,1000] [--json PATH]

BACKWARD(cotangent, *inputs) returns the gradients of the inputs at ``--argnums`` (default 0);
with ``--forward``, FORWARD(*inputs) returns ``(out, cache)`` and BACKWARD(cotangent, cache) the
gradients, as layer code is written; BACKWARD may also be a ``torch.autograd.Function``
subclass. FORWARD_REF is the JAX forward function (the ground truth, through ``jax.vjp``). The
inputs are the arrays named by ``--shapes`` (the grammar of ``audit``); the cotangent is drawn at
random. ``--kinks`` declares that the candidate's convention at these kinks is the reference's
(``verification.auditing.RELU``, ``MLP_RELU``, ``MAX_TIES``). Prints the report; exit status 0
when the audit passes, 1 when it fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from verification._audit_cli import _dims, _ints, resolve
from verification.auditing import MAX_TIES, MLP_RELU, RELU, audit_vjp, named_arrays, parse_shapes

__all__ = ["main"]

KINKS = {"relu": RELU, "mlp-relu": MLP_RELU, "max-ties": MAX_TIES}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verification audit-vjp",
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
    """Run the audit-vjp command; returns the exit status (0 passed, 1 failed, 2 usage error)."""
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        backward = resolve(options.backward)
        reference = resolve(options.reference)
        forward = resolve(options.forward) if options.forward else None
        spec, kinds = parse_shapes(options.shapes)
        argnums = _ints(options.argnums)
        bounds = tuple(float(b) for b in options.bounds.split(",")) if options.bounds else None
        strategy = named_arrays(
            spec,
            dims=_dims(options.dims) if options.dims else None,
            dtype=options.dtype,
            kinds=kinds,
            **({"bounds": bounds} if bounds else {}),
        )
        if not argnums or max(argnums) >= len(spec):
            raise ValueError(f"--argnums {options.argnums} does not fit the {len(spec)} inputs")
    except (ValueError, ImportError) as error:
        print(f"python -m verification audit-vjp: error: {error}", file=sys.stderr)
        return 2
    report = audit_vjp(
        backward,
        reference,
        strategy,
        forward=forward,
        argnums=argnums[0] if len(argnums) == 1 else argnums,
        max_examples=options.max_examples,
        seed=options.seed,
        arg_names=list(spec),
        kinks=KINKS[options.kinks] if options.kinks else None,
    )
    print(report)
    if options.json:
        Path(options.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1
