"""``python -m verification audit-vjp``: audit a layer's backward function from the command line.

    python -m verification audit-vjp MODULE:BACKWARD --reference MODULE:FORWARD_REF
        --shapes "x=m,n w=n,h b=h" [--forward MODULE:FORWARD] [--argnums 0,1,2]
        [--kinks relu|mlp-relu|max-ties|at=V,V|pool-ties=KHxKW[/SHxSW]|MODULE:NAME]
        [--dtype float64|float32|float16|bfloat16]
        [--stages MODULE:NAME --intermediates MODULE:FUNCTION]
        [--max-examples 200] [--seed S]
        [--dims "m=1,2,3 n=2"] [--bounds 3,1000] [--json PATH]

BACKWARD(cotangent, *inputs) returns the gradients of the inputs at ``--argnums`` (default 0);
with ``--forward``, FORWARD(*inputs) returns ``(out, cache)`` and BACKWARD(cotangent, cache) the
gradients, as layer code is written; BACKWARD may also be a ``torch.autograd.Function``
subclass. FORWARD_REF is the JAX forward function (the ground truth, through ``jax.vjp``). The
inputs are described by ``--shapes`` (the grammar of ``audit``); the cotangent is drawn at
random. ``--kinks`` declares that the candidate's convention at these kinks is the reference's
(``verification.auditing.RELU``, ``MLP_RELU``, ``MAX_TIES``, ``kinks_at``, ``pool_ties``, or a
``Kinks`` of your own as MODULE:NAME); ``--stages`` with ``--intermediates`` locates the stage that broke. Prints the report; exit status 0
when the audit passes, 1 when it fails, 2 for a usage error (one line), 3 when it is
inconclusive.
"""

from __future__ import annotations

import argparse

from verification.auditing import AuditReport, audit_vjp
from verification.auditing._grammar import GRAMMAR
from verification.auditing._targets import resolve
from verification.cli._common import OneLineParser
from verification.cli._declarations import add_declaration_options
from verification.cli.audit import SearchInputs, add_search_options, audit_arguments, run_command

__all__ = ["main"]

_PROG = "python -m verification audit-vjp"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=_PROG,
        description="Search for inputs and a cotangent where a layer's backward disagrees "
        "with jax.vjp of its JAX forward. Exit status: 0 passed, 1 failed, 2 usage error, "
        "3 inconclusive.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The --shapes grammar:\n" + GRAMMAR,
    )
    parser.add_argument("backward", help="MODULE:FUNCTION (or a torch.autograd.Function)")
    parser.add_argument(
        "--reference", required=True, help="MODULE:FUNCTION, the JAX forward (required)"
    )
    parser.add_argument(
        "--forward", default=None, help="MODULE:FUNCTION -> (out, cache) (default: none)"
    )
    add_search_options(parser, what="inputs")
    add_declaration_options(parser)
    return parser


def _audit(options: argparse.Namespace, inputs: SearchInputs) -> AuditReport:
    arguments = audit_arguments(options, inputs)  # the declarations checked first
    report = audit_vjp(
        resolve(options.backward),
        resolve(options.reference),
        inputs.strategy,
        forward=resolve(options.forward) if options.forward else None,
        profile=options.profile,
        quick=options.quick,
        locate=not options.no_locate,
        **arguments,
    )
    if report.title is not None:  # the functions as the user named them
        report.title = report.title.replace(report.grad_fn, options.backward, 1)
        report.title = report.title.replace(report.loss_fn, options.reference, 1)
    return report


def main(argv: list[str]) -> int:
    """Run the audit-vjp command; returns the exit status (0 passed, 1 failed, 2 usage error,
    3 inconclusive)."""
    return run_command(_PROG, _parser(), argv, _audit, what="inputs")
