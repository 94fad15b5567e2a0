"""What every command line of ``python -m verification`` shares: its exit statuses, a usage
error as one line and exit status 2 (``UsageError``, ``OneLineParser``), and an output path
checked before any work (``_writable``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

__all__ = [
    "EXIT_FAILED",
    "EXIT_INCONCLUSIVE",
    "EXIT_PASSED",
    "EXIT_USAGE",
    "OneLineParser",
    "UsageError",
    "_folder",
    "_writable",
    "pipe_closed",
]

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit status 2."""


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


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit status 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _folder(path_text: str) -> Path:
    path = Path(path_text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--save-dir {path_text}: is a file; give a folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise UsageError(f"--save-dir {path_text}: cannot write there; choose another folder")
    return path


def pipe_closed() -> int:
    """Exit status 0 after stdout's reader went away (``... | head``): the rest of the output
    goes to /dev/null, so that the interpreter's final flush prints no BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PASSED
