"""Sessions: how people and CI run manual-bp.

``nox`` alone runs ``tests`` on the interpreter that runs nox (any supported Python). The
matrix ``tests-3.11``, ``tests-3.12``, ``tests-3.13`` runs the suite on each version and fails
when that interpreter is missing (never a silent "skipped"); ``tests-minimum`` runs it with the
lowest version of every dependency that ``pyproject.toml`` declares; ``tests-locked`` runs it on
Python 3.11 with the versions of ``locks/py3.11.txt``, those the quoted outputs were made with,
so that the drift check compares them exactly (with other versions it compares what does not
depend on rounding order: see ``tools/readme_outputs.py``). ``nox`` and ``tests-3.X`` leave
the slow-marked tests out (``everyday_markers``); ``tests-locked`` runs every test, and CI
(``.ci/run``, ``MANUAL_BP_SLOW_TESTS=1``) runs every test in each session.
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path

import nox
from packaging.requirements import Requirement

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
# A session whose interpreter is missing fails instead of reporting "skipped" as success.
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
#: Every supported version (requires-python = ">=3.11"); CI runs the oldest and the newest.
PYTHONS = ["3.11", "3.12", "3.13"]
OLDEST = PYTHONS[0]
#: The CPU build of torch for the torch-based tests: the bench extra's pin, found in
#: MANUAL_BP_WHEELS (default /opt/wheels) where it lies on disk. PyPI's torch is a multi-GB
#: CUDA build, so no session downloads it; without the wheel those tests skip.
TORCH = "torch==2.13.0"
WHEELS = Path(os.environ.get("MANUAL_BP_WHEELS", "/opt/wheels"))
#: The versions README.md's quoted outputs were made with (Python 3.11): pip constraints.
LOCK = ROOT / "locks" / "py3.11.txt"


class _QuietUv(logging.Filter):
    """Drops nox's "uv binary not found." (logged where uv is not installed; no session here
    uses uv, so the line is noise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "uv binary not found" not in record.getMessage()


logging.getLogger("nox").addFilter(_QuietUv())


def partial_run(args: tuple[str, ...] | list[str]) -> bool:
    """Whether pytest ``args`` select part of the suite (a path, a node id or an expression
    after -k/-m): the suite's coverage floor then does not apply."""
    return any(not a.startswith("-") for a in args)


#: Set to 1 (CI does), the everyday sessions run the slow-marked tests too (``everyday_markers``).
SLOW_TESTS = "MANUAL_BP_SLOW_TESTS"


def everyday_markers(
    posargs: tuple[str, ...] | list[str], *, thorough: bool, environ: dict[str, str]
) -> list[str]:
    """The marker selection a test session adds: ``-m "not slow"`` for the everyday suite
    (``nox``, ``tests-3.X``): the slow-marked tests (every output the pages quote rerun, which
    ``nox -s docs`` reruns too; the locate zoo's 48 audits; installs of the built wheel) are
    what a thorough run adds. None where the run is ``thorough`` (tests-locked), where
    ``environ`` has ``MANUAL_BP_SLOW_TESTS=1``, or where ``posargs`` choose markers (``-m``)
    or name tests themselves (``nox -s tests -- tests/test_readme.py`` runs those)."""
    chosen = any(a.startswith("-m") for a in posargs) or partial_run(posargs)
    if thorough or environ.get(SLOW_TESTS) == "1" or chosen:
        return []
    return ["-m", "not slow"]


def _pytest(
    session: nox.Session, *args: str, every_test: bool = True, thorough: bool = False
) -> None:
    """pytest on all cores with branch coverage; HYPOTHESIS_PROFILE picks dev (default) or ci;
    the slow-marked tests only where ``everyday_markers`` says.
    The coverage floor (``fail_under`` in pyproject.toml) holds where the whole suite runs:
    a run of some tests (``nox -s tests -- tests/test_x.py``, or without the slow ones), or a
    session without the torch the torch-based tests need (``every_test=False``: they skip),
    reports coverage without failing. tests-locked, where every test runs, holds the floor in
    CI."""
    given = [*args, *session.posargs]  # (tests-minimum chooses its own markers)
    markers = everyday_markers(given, thorough=thorough, environ=dict(os.environ))
    if markers:
        session.log(
            "the slow-marked tests are left out (nox -s tests-locked runs every test; "
            f"{SLOW_TESTS}=1 adds them here)"
        )
    args = (*markers, *args)
    whole = every_test and not markers and not partial_run(session.posargs)
    if not every_test:
        session.log(
            "not every test runs here (the torch-based ones skip without torch): coverage is "
            "reported, and its floor is held by nox -s tests-locked"
        )
    floor = [] if whole else ["--cov-fail-under=0"]
    session.run(
        "pytest",
        "-n",
        os.environ.get("PYTEST_XDIST_WORKERS", "auto"),
        # A zoo's test and its recorded reports share a worker and each audit (xdist_group)
        "--dist=loadgroup",
        "--cov=manual_bp",
        "--cov=verification",
        "--cov-report=term",
        *floor,
        *args,
        env={
            "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "dev"),
            # Subprocesses that tests start in other folders find the coverage settings
            # (branch = true) too: pytest-cov before 7 measures them and combines the data.
            "COVERAGE_RCFILE": str(ROOT / "pyproject.toml"),
        },
    )


def _install_local_torch(session: nox.Session, version: str) -> bool:
    """Install the CPU torch wheel from WHEELS when one for this Python lies there; whether
    it did."""
    tag = "cp" + version.replace(".", "")
    wheels = sorted(WHEELS.glob(f"torch-2.13.0*-{tag}-{tag}-*.whl"))
    if wheels:
        session.install(str(wheels[-1]))
        return True
    session.log(f"no {TORCH} wheel for {tag} in {WHEELS}: the torch-based tests will skip")
    return False


def _has_torch(session: nox.Session) -> bool:
    """Whether the session's interpreter imports torch (so the torch-based tests run)."""
    found = session.run(
        "python",
        "-c",
        "import importlib.util as u; print(bool(u.find_spec('torch')))",
        silent=True,
    )
    return str(found).strip() == "True"


@nox.session(python=None)
def tests(session: nox.Session) -> None:
    """The test suite on the interpreter running nox, on all cores, with branch coverage."""
    session.install("-e", ".[test]")
    _pytest(session, *session.posargs, every_test=_has_torch(session))


def _tests_on(version: str) -> None:
    def run(session: nox.Session) -> None:
        session.install("-e", ".[test]")
        if version == OLDEST:
            _install_local_torch(session, version)
        _pytest(session, *session.posargs, every_test=_has_torch(session))

    run.__doc__ = f"The test suite on Python {version} (fails if python{version} is missing)."
    nox.session(python=version, name=f"tests-{version}")(run)


for _version in PYTHONS:
    _tests_on(_version)


@nox.session(python=OLDEST, name="tests-locked")
def tests_locked(session: nox.Session) -> None:
    """The whole test suite, the slow-marked tests included, with the locked versions the
    quoted outputs were made with (Python 3.11): the README and docs drift check compares every
    quoted output exactly. CI's thorough run; the one that holds the coverage floor."""
    session.install("-c", str(LOCK), "-e", ".[test]")
    _pytest(
        session,
        *session.posargs,
        every_test=_install_local_torch(session, OLDEST),
        thorough=True,
    )


def lock_lines(freeze: str) -> list[str]:
    """The lock file's pins from ``pip freeze`` output: every installed distribution but this
    project (editable) and torch (a local CPU wheel, installed apart)."""
    pins = []
    for line in freeze.splitlines():
        name = line.split("==")[0].strip().lower().replace("_", "-")
        if "==" in line and name not in ("manual-bp", "torch"):
            pins.append(line.strip())
    return sorted(pins, key=str.lower)


@nox.session(python=OLDEST)
def lock(session: nox.Session) -> None:
    """Re-resolve the test extra's newest versions (Python 3.11) into locks/py3.11.txt; then
    ``nox -s readme`` regenerates the quoted outputs under them."""
    session.install("-e", ".[test]")
    freeze = session.run("pip", "freeze", "--exclude-editable", silent=True)
    header = LOCK.read_text(encoding="utf-8").split("\n")
    comments = [line for line in header if line.startswith("#")]
    LOCK.write_text("\n".join([*comments, *lock_lines(str(freeze))]) + "\n", encoding="utf-8")
    session.log(f"wrote {LOCK.relative_to(ROOT)}")


def lowest_constraints(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """``name==X`` for every ``name>=X`` among the dependencies and the verify, train and
    test extras of ``pyproject`` (extras of manual-bp itself are followed)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    pins: dict[str, str] = {}
    todo, seen = [*project["dependencies"], *extras["test"]], set()
    while todo:
        req = Requirement(todo.pop())
        if req.name == project["name"]:
            todo += [r for e in sorted(req.extras - seen) for r in extras[e]]
            seen |= req.extras
            continue
        lows = [s.version for s in req.specifier if s.operator in (">=", "==")]
        if lows:
            pins[req.name] = lows[0]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


@nox.session(python=OLDEST, name="tests-minimum")
def tests_minimum(session: nox.Session) -> None:
    """The suite with the lowest declared version of every direct dependency (oldest Python)."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(lowest_constraints()) + "\n", encoding="utf-8")
    session.log("lowest versions: " + ", ".join(lowest_constraints()))
    session.install("-c", str(constraints), "-e", ".[test]")
    session.run("pip", "list", "--format=freeze", silent=False)
    # The README quotes outputs of the current versions (hypothesis's draws depend on its
    # version): their drift check belongs to the other sessions.
    _pytest(session, "-m", "not readme", *session.posargs, every_test=False)


@nox.session(python=OLDEST)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=OLDEST)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on both packages."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy")


@nox.session(python=None)
def verify(session: nox.Session) -> None:
    """The main job: every formula's manual gradient against JAX, as a table."""
    session.install("-e", ".[verify]")
    session.run("python", "-m", "verification", *session.posargs)


#: How many of the audit's mutants ``nox -s mutation`` samples: what fits about an hour on
#: 2 cores, the audit's mutants running a median 2 minutes of tests each where they survive
#: (see docs/reference/development.md, Quality).
AUDIT_SAMPLE = 60


#: Linux's limit on a process's memory maps (``vm.max_map_count``) under which mutmut's test
#: mapping run may crash: that one process runs every selected test, compiling thousands of
#: shapes, and XLA loads each compiled program as objects of three maps each, kept while the
#: process lives. With 34 maps a program it reached the default 65,530 at 90% of the tests and
#: died with SIGSEGV inside XLA (2026-12-07); ``verification._xla``'s options now make about
#: 16 a program (jaxlib 0.10), and the selection keeps growing.
MAP_COUNT_ADVISED = 131072


def _map_count_note(
    session: nox.Session, limit_file: Path = Path("/proc/sys/vm/max_map_count")
) -> None:
    """Warn where ``vm.max_map_count`` is below ``MAP_COUNT_ADVISED`` (Linux only)."""
    try:
        limit = int(limit_file.read_text("utf-8"))
    except (OSError, ValueError):
        return
    if limit < MAP_COUNT_ADVISED:
        session.warn(
            f"vm.max_map_count is {limit}: if mutmut's stats run dies with SIGSEGV inside XLA, "
            f"raise it (sudo sysctl -w vm.max_map_count={2 * MAP_COUNT_ADVISED})"
        )


@nox.session(python=OLDEST)
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of manual_bp, verification/compare.py and the audit.

    The configuration is ``[tool.mutmut]`` in pyproject.toml (what is mutated, which tests
    run: per mutant, only the selected tests that executed the mutated function);
    ``mutation/score.py`` prints the score net of ``mutation/EQUIVALENT.md`` and the surviving
    mutants, and fails below 95% (manual_bp) or 90% (compare.py, verification/auditing).
    The CPU torch wheel is installed where it lies on disk (``MANUAL_BP_WHEELS``), so that the
    torch-based tests run on the audit's torch code.

    manual_bp and compare.py are run in full; the audit (about 13,000 mutants, a median 2
    minutes of tests each) by a seeded random sample of ``MUTANT_SAMPLE`` of them (default
    ``AUDIT_SAMPLE``), stratified by module (``mutation/sample.py``), scored with its 95%
    interval. ``MUTANT_SEED`` (an integer, default ``sample.SEED``) seeds the draw: the same
    seed tries the same mutants; a new one draws a fresh sample, whose first score, taken
    before any triage, is the unbiased estimate. ``MUTANTS=GLOB nox -s mutation`` runs the
    mutants matching GLOB alone (e.g. ``"verification.auditing._simplify*"``), all of them, or
    a sample of them when ``MUTANT_SAMPLE`` is set. ``MUTANT_LIST=FILE`` runs the mutants
    named in FILE (one a line, e.g. a sample's survivors) and scores them as a sample.
    Extra arguments go to score.py (e.g.
    ``-- --no-diffs``).
    """
    import shutil

    # The locked versions, as tests-locked: the recorded reports (tests/report_texts/) are
    # compared every character only under the versions they were recorded with.
    session.install("-c", str(LOCK), "-e", ".[test]", "mutmut>=3.8,<4")
    # The torch-based tests (audit_vjp of torch layers, audit_double_backward): without torch
    # they skip, and the audit's torch code counts as run by no test.
    _install_local_torch(session, OLDEST)
    # mutmut keeps existing copies under mutants/: start clean so edits are seen.
    shutil.rmtree("mutants", ignore_errors=True)
    _map_count_note(session)
    env = {"HYPOTHESIS_PROFILE": "dev"}
    only = os.environ.get("MUTANTS")
    size = os.environ.get("MUTANT_SAMPLE")
    jobs = str(os.cpu_count() or 2)
    if only and size is None:
        session.run("mutmut", "run", only, "--max-children", jobs, env=env)
        session.run("python", "mutation/score.py", "--only", only, *session.posargs, env=env)
        return
    sampled = only or "verification.auditing.*"
    full = [] if only else ["manual_bp.*", "verification.compare.*"]
    names = ROOT / "mutants" / "sample.txt"
    request = f"{sampled}={size or AUDIT_SAMPLE}"
    seed = os.environ.get("MUTANT_SEED")
    if seed is not None and not seed.isdigit():
        session.error(f"MUTANT_SEED must be a non-negative integer, got {seed!r}")
    seeded = ["--seed", seed] if seed is not None else []
    listed = os.environ.get("MUTANT_LIST")
    if listed:  # rerun named mutants (e.g. a sample's survivors), one name a line
        names.parent.mkdir(exist_ok=True)
        names.write_text(Path(listed).read_text("utf-8"), "utf-8")
    else:
        session.run("python", "mutation/sample.py", request, *seeded, "--out", str(names), env=env)
    chosen = names.read_text("utf-8").split()
    session.run("mutmut", "run", *full, *chosen, "--max-children", jobs, env=env)
    scope = ["--only", only] if only else []
    session.run(
        "python", "mutation/score.py", *scope, "--sample", str(names), *session.posargs, env=env
    )


@nox.session(python=OLDEST)
def bench(session: nox.Session) -> None:
    """Benchmarks: SGD step vs jax.jit and torch, gradient cost, verification speed.

    Prints markdown tables and writes JSON and PNG to bench-results/ (untracked);
    ``nox -s bench -- --update-docs`` also replaces the figures in docs/bench/. ``-- --quick``
    for a short run; ``-- --only sgd_step`` for one section.
    """
    session.install("-e", ".[verify,bench,train]")
    session.run("python", "-m", "benchmarks", *session.posargs)


#: Where ``nox -s docs`` writes the site (open ``index.html`` in a browser).
SITE = ROOT / "docs" / "_build" / "html"


@nox.session(python=OLDEST)
def docs(session: nox.Session) -> None:
    """The documentation site, strictly: fails on a broken link, a missing reference or a
    failing example.

    ``sphinx-build -W -n`` turns every warning into a failure (a reference to a function that
    does not exist, a page outside the table of contents, a formula that cannot be rendered, a
    docstring that cannot be read); ``tools/site_links.py`` then checks every link and anchor
    of the built pages; ``tools/readme_outputs.py --check`` reruns every example the pages
    quote and fails if an output drifted. The site lands in docs/_build/html.
    """
    # The examples run with the locked versions, as README.md's do (nox -s readme).
    session.install("-c", str(LOCK), "-e", ".[docs]")
    _install_local_torch(session, OLDEST)  # the pages' torch examples, as in tests-locked
    session.run("sphinx-build", "-E", "-W", "-n", "--keep-going", "-b", "html", "docs", str(SITE))
    session.run("python", "tools/site_links.py", str(SITE))
    session.run("python", "tools/readme_outputs.py", "--check")  # README.md and every page


@nox.session(python=OLDEST)
def readme(session: nox.Session) -> None:
    """Regenerate every command output quoted in README.md and the pages of docs/ with the
    locked versions (``-- --check`` only compares; ``-- --readme PAGE`` one page)."""
    session.install("-c", str(LOCK), "-e", ".[test]")
    session.run("python", "tools/readme_outputs.py", *session.posargs)
