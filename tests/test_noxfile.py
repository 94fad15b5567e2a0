"""noxfile.py: ``nox`` tests the Python that runs it (never "skipped" as success), the matrix
covers every supported version, and tests-minimum pins the lowest declared versions."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

nox = pytest.importorskip("nox")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def noxfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sessions() -> dict[str, Any]:
    from nox.registry import get

    return dict(get())


def test_plain_nox_runs_the_tests_on_the_interpreter_running_it(noxfile: ModuleType) -> None:
    assert nox.options.sessions == ["tests"]
    tests = _sessions()["tests"]
    assert tests.python is None  # the interpreter running nox, whatever its version
    # A session whose interpreter is missing fails instead of passing as "skipped".
    assert nox.options.error_on_missing_interpreters is True


def test_the_matrix_covers_every_supported_python(noxfile: ModuleType) -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    sessions = _sessions()
    for version in ("3.11", "3.12", "3.13"):
        assert sessions[f"tests-{version}"].python == version
    assert sessions["tests-minimum"].python == "3.11"


def test_ci_runs_the_locked_versions_and_the_newest_python_then_lint_and_types() -> None:
    script = (ROOT / ".ci/run").read_text()
    assert "nox -s tests-locked tests-3.13 lint typecheck docs" in script


def test_the_locked_session_installs_the_lock_on_the_oldest_python(noxfile: ModuleType) -> None:
    sessions = _sessions()
    assert sessions["tests-locked"].python == "3.11"
    assert sessions["readme"].python == "3.11"  # outputs are regenerated under the lock too
    pins = dict(line.split("==") for line in noxfile.LOCK.read_text().splitlines() if "==" in line)
    for name in ("numpy", "jax", "jaxlib", "hypothesis", "scikit-learn", "matplotlib"):
        assert name in pins, name
    assert "torch" not in pins  # the local CPU wheel, installed apart


def test_the_lock_records_the_versions_the_readme_outputs_were_made_with(
    noxfile: ModuleType,
) -> None:
    pins = {
        k.lower(): v
        for k, v in (
            line.split("==") for line in noxfile.LOCK.read_text().splitlines() if "==" in line
        )
    }
    made_with = (ROOT / "README.md").read_text().rstrip().splitlines()[-1]
    for name in ("numpy", "jax", "jaxlib", "hypothesis", "scikit-learn", "matplotlib"):
        assert f"{name} {pins[name]}" in made_with, (name, made_with)
    assert "Python 3.11." in made_with


def test_lock_lines_keep_every_pin_but_this_project_and_torch(noxfile: ModuleType) -> None:
    freeze = "numpy==2.4.6\nmanual-bp==0.1.0\ntorch==2.13.0+cpu\nJax==0.10.2\n# comment\n"
    assert noxfile.lock_lines(freeze) == ["Jax==0.10.2", "numpy==2.4.6"]


def test_lowest_constraints_pin_every_declared_minimum(noxfile: ModuleType, tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "manual-bp"\ndependencies = ["numpy>=2.0"]\n'
        "[project.optional-dependencies]\n"
        'verify = ["jax>=0.8.0", "hypothesis>=6.113,<7"]\ntrain = ["tqdm>=4.66"]\n'
        'bench = ["torch==2.13.0"]\n'
        'test = ["manual-bp[verify,train]", "pytest>=8"]\n'
    )
    assert noxfile.lowest_constraints(pyproject) == [
        "hypothesis==6.113",
        "jax==0.8.0",
        "numpy==2.0",
        "pytest==8",
        "tqdm==4.66",
    ]


def test_lowest_constraints_of_this_project_cover_the_test_extra(noxfile: ModuleType) -> None:
    pins = dict(line.split("==") for line in noxfile.lowest_constraints())
    for name in ("numpy", "jax", "jaxlib", "hypothesis", "scikit-learn", "pytest-xdist", "nox"):
        assert name in pins
    assert "torch" not in pins  # not in the test extra: PyPI's torch is a multi-GB CUDA build


def test_torch_is_not_required_by_the_test_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not any(
        r.startswith("torch") for r in extras["test"] + extras["verify"] + extras["train"]
    )
    assert "torch==2.13.0" in extras["bench"]


def test_session_descriptions_are_for_users_without_issue_numbers(noxfile: ModuleType) -> None:
    import re

    for name, session in _sessions().items():
        description = (session.__doc__ or "").strip().split("\n")[0]  # what nox --list shows
        assert description, name
        assert not re.search(r"issue\s*\d+|#\d+", description, re.IGNORECASE), (name, description)


def test_uv_not_found_is_not_logged(noxfile: ModuleType) -> None:
    import logging

    record = logging.LogRecord("nox", logging.INFO, __file__, 1, "uv binary not found.", (), None)
    assert not logging.getLogger("nox").filter(record)
    other = logging.LogRecord("nox", logging.INFO, __file__, 1, "Running session tests", (), None)
    assert logging.getLogger("nox").filter(other)


class _Recorder:
    """A stand-in for nox.Session that records the commands it is asked to run."""

    def __init__(self, posargs: list[str]) -> None:
        self.posargs = posargs
        self.commands: list[tuple[str, ...]] = []

    def run(self, *args: str, **kwargs: Any) -> None:
        self.commands.append(args)

    def log(self, *args: Any) -> None:
        pass

    def warn(self, *args: Any) -> None:
        self.commands.append(("warn", *args))


@pytest.mark.parametrize(
    ("posargs", "floor_off"),
    [
        ([], False),
        (["-x"], False),
        (["tests/test_compare.py"], True),
        (["-k", "softmax"], True),
        (["tests/test_compare.py::test_x", "-q"], True),
    ],
)
def test_a_run_of_some_tests_through_nox_adds_no_coverage_failure(
    noxfile: ModuleType, posargs: list[str], floor_off: bool
) -> None:
    session = _Recorder(posargs)
    noxfile._pytest(session, *posargs, thorough=True)  # (every test, the slow ones too)
    (command,) = session.commands
    assert ("--cov-fail-under=0" in command) is floor_off


@pytest.mark.parametrize(("every_test", "floor_off"), [(True, False), (False, True)])
def test_the_coverage_floor_holds_only_where_every_test_runs(
    noxfile: ModuleType, every_test: bool, floor_off: bool
) -> None:
    # Without torch the torch-based tests skip, and what they cover counts as missed.
    session = _Recorder([])
    noxfile._pytest(session, every_test=every_test, thorough=True)
    (command,) = session.commands
    assert ("--cov-fail-under=0" in command) is floor_off


@pytest.mark.parametrize(
    ("posargs", "thorough", "environ", "slow_left_out"),
    [
        ([], False, {}, True),
        (["-x", "-q"], False, {}, True),
        ([], True, {}, False),  # tests-locked: every test
        ([], False, {"MANUAL_BP_SLOW_TESTS": "1"}, False),  # CI
        ([], False, {"MANUAL_BP_SLOW_TESTS": "0"}, True),
        (["-m", "slow"], False, {}, False),  # the slow ones alone
        (["-mreadme"], False, {}, False),
        (["tests/test_readme.py"], False, {}, False),  # named tests run, slow or not
    ],
)
def test_the_everyday_suite_leaves_the_slow_tests_out_unless_asked_for_them(
    noxfile: ModuleType,
    posargs: list[str],
    thorough: bool,
    environ: dict[str, str],
    slow_left_out: bool,
) -> None:
    markers = noxfile.everyday_markers(posargs, thorough=thorough, environ=environ)
    assert (markers == ["-m", "not slow"]) is slow_left_out
    assert slow_left_out or markers == []


@pytest.mark.parametrize(("thorough", "slow_left_out"), [(False, True), (True, False)])
def test_a_session_without_the_slow_tests_holds_no_coverage_floor(
    noxfile: ModuleType, monkeypatch: pytest.MonkeyPatch, thorough: bool, slow_left_out: bool
) -> None:
    # What only the slow tests cover would count as missed.
    monkeypatch.delenv("MANUAL_BP_SLOW_TESTS", raising=False)
    session = _Recorder([])
    noxfile._pytest(session, thorough=thorough)
    (command,) = session.commands
    assert ("not slow" in command) is slow_left_out
    assert ("--cov-fail-under=0" in command) is slow_left_out


@pytest.mark.parametrize(
    ("content", "warned"), [("65530\n", True), ("262144\n", False), (None, False)]
)
def test_the_mutation_session_warns_of_a_memory_map_limit_its_stats_run_can_reach(
    noxfile: ModuleType, tmp_path: Path, content: str | None, warned: bool
) -> None:
    limit_file = tmp_path / "max_map_count"
    if content is not None:
        limit_file.write_text(content)
    session = _Recorder([])
    noxfile._map_count_note(session, limit_file)
    assert bool(session.commands) is warned
    if warned:
        assert "sysctl -w vm.max_map_count=" in session.commands[0][1]
