"""docs/install.md: the torch extra's CPU build (issue 21, item 14). PyPI's torch for Linux is a
multi-GB CUDA build: uv must take torch from PyTorch's CPU index by itself, and the page must
give pip the same index, for the version the bench extra pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _torch_pin() -> str:
    bench = _pyproject()["project"]["optional-dependencies"]["bench"]  # type: ignore[index]
    (pin,) = [r for r in bench if r.startswith("torch")]
    return str(pin).split("==")[1]


def test_uv_takes_torch_from_the_cpu_index_and_nothing_else() -> None:
    uv = _pyproject()["tool"]["uv"]  # type: ignore[index]
    index = uv["sources"]["torch"]["index"]
    (entry,) = [i for i in uv["index"] if i["name"] == index]
    assert entry["url"] == CPU_INDEX
    assert entry["explicit"] is True  # only torch comes from it


def test_install_page_gives_pip_the_cpu_index_for_the_pinned_torch() -> None:
    text = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    assert f'pip install -e ".[bench]" --extra-index-url {CPU_INDEX}' in text
    assert f"pip install torch=={_torch_pin()} --index-url {CPU_INDEX}" in text
    assert f"{_torch_pin()}+cpu" in text
    assert re.search(r"torch-\S+\+cpu-cp311", text)


def test_the_test_extra_needs_no_torch() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    assert not any(r.startswith("torch") for r in extras["test"])
    assert not any(r.startswith("torch") for r in extras["verify"])
