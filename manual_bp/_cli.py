"""Command-line plumbing shared by the project's commands: one-line errors, install hints,
output paths checked before any work.

A user's mistake gets ONE line on stderr naming the problem and the fix, and exit status 2
(:class:`ArgumentParser`, :class:`UsageError`); a missing optional dependency gets the exact
install command for a clone (:func:`install_hint`) and exit status 1.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

__all__ = [
    "ArgumentParser",
    "UsageError",
    "check_output_file",
    "install_hint",
    "nonnegative_int",
    "positive_float",
    "positive_int",
]

#: The repository a clone of manual-bp has around the package (docs/ holds the README's figures).
REPOSITORY = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """A mistake in the command line: its message is the one line the user sees."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: MESSAGE (see prog --help)``, exit 2."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def install_hint(extra: str) -> str:
    """The command that installs an extra: from a clone, and from the package index.

    >>> install_hint("train")
    'pip install ".[train]" (in a clone of manual-bp; from PyPI: pip install "manual-bp[train]")'
    """
    return (
        f'pip install ".[{extra}]" (in a clone of manual-bp; '
        f'from PyPI: pip install "manual-bp[{extra}]")'
    )


def missing_extra(prog: str, what: str, extra: str, error: ImportError) -> int:
    """Print the one-line hint for a missing optional dependency; return exit status 1."""
    name = error.name or str(error)
    print(
        f"{prog}: error: {what} needs the `{extra}` extra (missing module {name!r}); "
        f"install it with: {install_hint(extra)}",
        file=sys.stderr,
    )
    return 1


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer in [0, 2**32 - 1] (what numpy and scikit-learn take as seeds)."""
    value = _integer(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def check_output_file(option: str, path: Path, suffix: str, *, update_docs: bool) -> None:
    """Raise :class:`UsageError` unless ``path`` can take a new file of type ``suffix``.

    Checked before any work: the suffix, that the folder exists and is writable, that the
    path is not a folder, and that it does not replace a figure of this repository's docs/
    (a tracked file the README shows) unless ``update_docs``.
    """
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name ending in {suffix}")
    if path.suffix.lower() != suffix:
        raise UsageError(
            f"{option} {path}: the file is written as {suffix[1:].upper()}; give a path ending in {suffix}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(
            f"{option} {path}: folder {folder} does not exist; create it or choose another path"
        )
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path}: folder {folder} is not writable; choose another path")
    docs = REPOSITORY / "docs"
    if path.exists() and path.resolve().is_relative_to(docs) and not update_docs:
        raise UsageError(
            f"{option} {path} would replace a figure of the README (tracked in docs/); "
            "pass --update-docs to replace it, or choose another path"
        )
