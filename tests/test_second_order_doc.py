"""docs/second-order.md quotes only what the code prints: every marked output block is rerun
by ``tools/readme_outputs.py`` and must match (parts marked ``varies`` or ``versions``
excepted). Regenerate with ``python tools/readme_outputs.py --readme docs/second-order.md``."""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "second-order.md"


def _load() -> ModuleType:
    if "readme_outputs" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "readme_outputs", ROOT / "tools/readme_outputs.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["readme_outputs"] = module
        spec.loader.exec_module(module)
    return sys.modules["readme_outputs"]


ro = _load()
LINES = PAGE.read_text(encoding="utf-8").split("\n")
BLOCKS = [b for b in ro.parse(LINES) if b.kind == "output"]
FILES = [b for b in ro.parse(LINES) if b.kind == "file"]


@pytest.mark.slow
@pytest.mark.readme
@pytest.mark.parametrize("block", BLOCKS, ids=[b.label for b in BLOCKS])
def test_second_order_page_output_is_what_the_command_prints(block: Any) -> None:
    text = " ".join(c for c, _ in ro._sessions(block))
    if any(f.name in text and "import torch" in "\n".join(f.content) for f in FILES):
        pytest.importorskip("torch")  # the bench extra's CPU build: the 3.11 sessions only
    same_versions = ro.recorded_environment(LINES) == ro.environment()
    same, new = ro.compare(block, ro.run(block, FILES), same_versions)
    diff = "\n".join(difflib.unified_diff(block.content, new, PAGE.name, "fresh", lineterm=""))
    assert same, f"{PAGE.name} drifted; rerun tools/readme_outputs.py --readme {PAGE}\n{diff}"


def test_second_order_page_shows_each_feature_on_the_source_network() -> None:
    commands = " ".join(b.label for b in BLOCKS)
    for command in ("curvature.py", "audit_gn.py", "audit-hvp", "silu.py"):
        assert command in commands
