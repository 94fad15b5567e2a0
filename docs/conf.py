"""Sphinx configuration of the manual-bp site (``nox -s docs`` builds it with -W -n)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

project = "manual-bp"
author = "manual-bp contributors"
copyright = "manual-bp contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "mathml",
    "plain_docstrings",
]
html_math_renderer = "mathml"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4

napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "pydata_sphinx_theme"
html_title = "manual-bp"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
myst_fence_as_directive = ["math"]

# Strict (-n) for every reference the docstrings make (:func:, :mod:, :class: of this project);
# a class name of another library, or a type that napoleon reads from prose ("(m, n) array"),
# has no target in an offline build, and a TypeVar or private protocol in a signature none.
nitpick_ignore_regex = [
    (r"py:class", r"(?!manual_bp\.|verification\.).*"),
    (r"py:class", r"(manual_bp|verification)\.(?:\w+\.)*(?:_\w+|P|T)(?:\.\w+)*"),
]
napoleon_use_param = False  # parameter types such as "(m, n) array" are prose, not class names
napoleon_use_rtype = False
napoleon_use_ivar = True  # an "Attributes" section is a field list, not a second entry per field
# Constants of __all__ (GROWTH_LIMIT, CHECKS) are documented even without a docstring of their own.
autodoc_default_options = {"undoc-members": True}
