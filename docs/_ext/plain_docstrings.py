"""Show a docstring as written where it is not valid reStructuredText.

The docstrings of ``manual_bp`` and ``verification`` follow the numpydoc layout but are written
to be read with ``help()``: ``|x|`` for an absolute value, ``name : text`` lists without blank
lines. Parsed as reStructuredText, such a docstring would render garbled (``|x|`` is a
substitution). After napoleon has turned its sections into reStructuredText, each docstring is
parsed on its own; one that docutils reports a problem in is shown verbatim, as a literal
block, so the page shows exactly what ``help()`` shows, and the build stays strict for
everything else."""

from __future__ import annotations

import io
from typing import Any

from docutils.core import publish_doctree
from sphinx.application import Sphinx

#: How many docstrings were shown verbatim (the build prints it).
_VERBATIM: list[str] = []


def _has_problems(text: str, env: Any) -> bool:
    stream = io.StringIO()
    publish_doctree(
        text,
        settings_overrides={
            "report_level": 2,  # warnings and errors
            "halt_level": 5,
            "warning_stream": stream,
            "file_insertion_enabled": False,
            "raw_enabled": False,
            "env": env,  # Sphinx's roles (:func:, :math:) look it up
        },
    )
    return bool(stream.getvalue().strip())


def _verbatim_if_invalid(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if lines and _has_problems("\n".join(lines), app.env):
        original = (getattr(obj, "__doc__", None) or "").expandtabs()
        import inspect

        text = inspect.cleandoc(original) if original else "\n".join(lines)
        lines[:] = ["::", "", *("    " + line for line in text.splitlines()), ""]
        _VERBATIM.append(name)


def _summary(app: Sphinx, exception: Exception | None) -> None:
    if _VERBATIM:
        names = ", ".join(sorted(set(_VERBATIM)))
        print(f"plain_docstrings: {len(set(_VERBATIM))} docstrings shown verbatim: {names}")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _verbatim_if_invalid, priority=900)
    app.connect("build-finished", _summary)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
