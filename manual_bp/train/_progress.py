"""Progress of a training run on stderr: a tqdm bar on a terminal, a few plain lines elsewhere.

Redirected to a file or a CI log, a tqdm bar would write one carriage-return update per epoch
into a single line; there the run prints at most :data:`PLAIN_LINES` lines instead (about every
fifth of the run, and the last epoch).
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any, TextIO

__all__ = ["PLAIN_LINES", "Progress", "plain_epochs"]

#: How many lines a run prints at most when stderr is not a terminal.
PLAIN_LINES = 5


def plain_epochs(total: int, lines: int = PLAIN_LINES) -> list[int]:
    """The epochs (1-based) whose progress is printed as a plain line: every
    ``ceil(total / lines)``-th, and the last.

    >>> plain_epochs(30)
    [6, 12, 18, 24, 30]
    >>> plain_epochs(7)
    [2, 4, 6, 7]
    >>> plain_epochs(1)
    [1]
    """
    every = math.ceil(total / lines)
    return sorted({*range(every, total + 1, every), total})


class Progress:
    """``with Progress(total, stream) as p: p.update(text)`` once per epoch.

    On a terminal (``stream.isatty()``) a tqdm bar with ``text`` as its postfix; otherwise
    plain lines ``training: epoch 6/30: TEXT`` at :func:`plain_epochs`.
    """

    def __init__(self, total: int, stream: TextIO, desc: str = "training") -> None:
        self.total, self.stream, self.desc = total, stream, desc
        self.done = 0
        self._printed = set(plain_epochs(total))
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm  # lazily: tqdm is in the `train` extra

            self._bar = tqdm(total=total, unit="epoch", desc=desc, file=stream)

    def update(self, text: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update()
        elif self.done in self._printed:
            print(f"{self.desc}: epoch {self.done}/{self.total}: {text}", file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
