"""``python -m verification [report|audit|audit-vjp|merge|twin] ...``: the main job
(default), the audit CLIs, the merge of sharded outputs, or the JAX twin of a training run."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch: ``audit ...`` to ``verification._audit_cli.main``; ``audit-vjp ...`` to
    ``verification._vjp_cli.main``; ``merge ...`` to ``verification._report_cli.merge_main``;
    ``twin ...`` to ``verification.twin.main``;
    ``report ...`` or anything else to ``verification.report.main``. Returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "twin":
        from verification.twin import main as twin_main

        return twin_main(args[1:])
    if args and args[0] == "audit":
        try:
            module = importlib.import_module("verification._audit_cli")
        except ModuleNotFoundError as error:
            if error.name != "verification._audit_cli":
                raise
            print(
                "python -m verification audit: the audit command is not installed "
                "(verification/_audit_cli.py is missing)",
                file=sys.stderr,
            )
            return 2
        return int(module.main(args[1:]) or 0)
    if args and args[0] == "audit-vjp":
        from verification._vjp_cli import main as vjp_main

        return vjp_main(args[1:])
    if args and args[0] == "audit-hvp":
        return int(importlib.import_module("verification._hvp_cli").main(args[1:]))
    if args and args[0] == "merge":
        from verification._report_cli import merge_main

        return merge_main(args[1:])
    if args and args[0] == "report":
        args = args[1:]
    from verification.report import main as report_main

    return report_main(args)


if __name__ == "__main__":
    sys.exit(main())
