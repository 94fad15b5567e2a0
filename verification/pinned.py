"""Hypothesis draws that depend on the seed and the library versions only.

Hypothesis (since 6.131) mixes into its random draws the literals it finds in the source of
every *local* module loaded (anything outside the standard library and site-packages: the
user's own files, this project), and caches them under ``.hypothesis/constants/`` in the
working directory. Then the same seed draws different examples when the user edits a file or
imports another module, and running an audit leaves a ``.hypothesis/`` folder behind. There is
no setting to switch this off (hypothesis issue #4627, "Opt-out configuration for collecting
local constants", is open), so ``pinned_generation`` isolates the generation instead: inside
it, hypothesis's one source of local constants (``providers._get_local_constants``) returns
none, and its cache of constants allowed per kind of draw is emptied on the way in and out
(it may hold the user's constants from an earlier draw). Hypothesis's built-in constants
still apply (they depend on its version only). With ``database=None`` nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis.internal.conjecture import providers

__all__ = ["pinned_generation"]

try:  # hypothesis >= 6.131 collects local constants; older versions have nothing to pin
    from hypothesis.internal.constants_ast import Constants
except ImportError:  # pragma: no cover - depends on the installed hypothesis
    Constants = None  # type: ignore[assignment,misc]


def _no_local_constants() -> Any:
    return Constants()


@contextmanager
def pinned_generation() -> Iterator[None]:
    """Within the block, hypothesis ignores the literals of local modules (module docstring).

    The patch is undone on exit, also when the block raises.

    >>> with pinned_generation():
    ...     len(providers._get_local_constants())
    0
    """
    if Constants is None or not hasattr(providers, "_get_local_constants"):  # pragma: no cover
        yield
        return
    original = providers._get_local_constants
    providers.CONSTANTS_CACHE.cache.clear()
    providers._get_local_constants = _no_local_constants
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()
