"""``python -m verification audit --config PYPROJECT [NAME ...]``: the audits declared in
``[tool.manual-bp.audits.NAME]`` tables (``verification.auditing._config``), run from the command
line with the same results as pytest's items, their kept counterexamples replayed first."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from manual_bp_pytest import PROFILES, choose_profile, read_tool, store_folder
from verification.auditing._config import ConfigError, load_audits, run_configured
from verification.cli._common import EXIT_USAGE, OneLineParser, UsageError, _writable

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    """``python -m verification audit --config PYPROJECT [NAME ...]``: run the declared audits;
    exit status 0 all passed, 1 one failed, 3 none failed but one was inconclusive, 2 a
    mistake in the command or the configuration (one line)."""
    prog = "python -m verification audit --config"
    parser = OneLineParser(
        prog=prog,
        description="Run the audits declared in [tool.manual-bp.audits.NAME] tables of "
        "PYPROJECT, with their kept counterexamples replayed first. Exit status: 0 passed, 1 "
        "failed, 2 usage or configuration error, 3 inconclusive.",
    )
    parser.add_argument("--config", required=True, metavar="PYPROJECT", help="pyproject.toml")
    parser.add_argument("names", nargs="*", metavar="NAME", help="audits to run (default: all)")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="as pytest's --gradient-audit-profile (default: thorough where CI is set, else quick)",
    )
    parser.add_argument("--max-examples", type=int, default=None, help="default: the profile's")
    parser.add_argument("--seed", type=int, default=None, help="default: the profile's")
    parser.add_argument(
        "--update", action="store_true", help="remove kept counterexamples that pass now"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="write the reports to PATH")
    options = parser.parse_args(list(argv))
    profile, _ = choose_profile(options.profile, os.environ)
    max_examples = options.max_examples
    if max_examples is None:
        max_examples = PROFILES[profile].max_examples
    seed = PROFILES[profile].seed if options.seed is None else options.seed
    pyproject = Path(options.config).resolve()
    try:
        if max_examples < 1 or (seed is not None and seed < 0):
            raise ConfigError("--max-examples must be >= 1 and --seed >= 0")
        json_path = _writable(options.json) if options.json else None
        audits = load_audits(pyproject, options.names)
        store = store_folder(pyproject, read_tool(pyproject))
        results = []
        for config in audits:
            kept = run_configured(
                config,
                pyproject.parent,
                max_examples=max_examples,
                seed=seed,
                store=store,
                update=options.update,
            )
            print(f"== {config.name} ==")
            for line in kept.lines(store, "--update"):
                print(line)
            print(kept.report)
            results.append((config.name, kept))
    except (ConfigError, UsageError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if json_path is not None:
        out = [{"name": n, **k.report.to_dict()} for n, k in results]
        json_path.write_text(json.dumps(out, indent=2) + "\n")
    verdicts = {k.report.verdict for _, k in results}
    return 1 if "FAILED" in verdicts else 3 if "INCONCLUSIVE" in verdicts else 0
