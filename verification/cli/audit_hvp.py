"""``python -m verification audit-hvp``: audit a Hessian-vector product from the command line.

    python -m verification audit-hvp MODULE:HVP_FN --loss MODULE:LOSS_FN
        --shapes "w=n x=m,n" [--argnums 0]
        [--kinks relu|mlp-relu|max-ties|at=V,V|pool-ties=KHxKW[/SHxSW]|MODULE:NAME]
        [--dtype float64|float32|float16|bfloat16] [--max-examples 200] [--seed S]
        [--dims "m=1,2,3 n=2"] [--bounds 3,1000] [--json PATH]

HVP_FN(*args, v) must return H v, H the Hessian of the JAX function LOSS_FN(*args) with respect
to the argument(s) ``--argnums`` (default 0); v is shaped like those arguments (a tuple of
them for several) and drawn at random (standard normal). The arguments are described by
``--shapes`` in order, in the grammar of ``audit`` (printed by ``--help``). ``--kinks``
declares that the candidate's convention at these kinks is the reference's (in the forms
``audit-vjp`` takes: a built-in name, ``at=V,V``, ``pool-ties=...``, or a ``Kinks`` of your
own as MODULE:NAME). Prints the report; exit status 0 when the audit passes, 1 when it fails,
2 for a usage error (one line), 3 when it is inconclusive.
"""

from __future__ import annotations

import argparse

from verification.auditing import AuditReport, audit_hvp
from verification.auditing._grammar import GRAMMAR
from verification.auditing._targets import resolve
from verification.cli._common import OneLineParser
from verification.cli._declarations import add_declaration_options
from verification.cli.audit import SearchInputs, add_search_options, audit_arguments, run_command

__all__ = ["main"]

_PROG = "python -m verification audit-hvp"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=_PROG,
        description="Search for inputs and a direction v where a Hessian-vector product "
        "disagrees with the Hessian of a JAX loss (float64). Exit status: 0 passed, 1 failed, "
        "2 usage error, 3 inconclusive.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The --shapes grammar:\n" + GRAMMAR,
    )
    parser.add_argument("hvp", help="MODULE:FUNCTION, called as hvp(*args, v)")
    parser.add_argument("--loss", required=True, help="MODULE:FUNCTION, the JAX loss (required)")
    add_search_options(parser, first_order=False)  # no --profile, --quick, --no-locate
    add_declaration_options(parser, stages=False)
    return parser


def _audit(options: argparse.Namespace, inputs: SearchInputs) -> AuditReport:
    arguments = audit_arguments(options, inputs)  # the declarations checked first
    return audit_hvp(resolve(options.hvp), resolve(options.loss), inputs.strategy, **arguments)


def main(argv: list[str]) -> int:
    """Run the audit-hvp command; returns the exit status (0 passed, 1 failed, 2 usage error,
    3 inconclusive)."""
    return run_command(_PROG, _parser(), argv, _audit)
