"""``python -m verification [report|audit|audit-vjp|audit-hvp|merge|twin] ...``: the main job
(default), the audit CLIs, the merge of sharded outputs, or the JAX twin of a training run."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "DEFAULT", "main"]

#: Each subcommand: the module and function that run it (imported only when chosen).
COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("verification.cli.report", "main"),
    "audit": ("verification.cli.audit", "main"),
    "audit-vjp": ("verification.cli.audit_vjp", "main"),
    "audit-hvp": ("verification.cli.audit_hvp", "main"),
    "merge": ("verification.cli.report", "merge_main"),
    "twin": ("verification.mainjob.twin", "main"),
}
#: The subcommand run when the first argument names none (``python -m verification --dtype float32``).
DEFAULT = "report"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the subcommand that the first argument names (``COMMANDS``), or ``DEFAULT`` with
    all the arguments; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = args.pop(0) if args and args[0] in COMMANDS else DEFAULT
    module, function = COMMANDS[name]
    run: Callable[[list[str]], int | None] = getattr(importlib.import_module(module), function)
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
