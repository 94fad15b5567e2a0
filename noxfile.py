"""Sessions: how people and CI run manual-bp. `nox` alone runs `tests`."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage (HYPOTHESIS_PROFILE=ci for the thorough profile)."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "--cov=manual_bp",
        "--cov=verification",
        "--cov-report=term",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "dev")},
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on both packages."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy")


@nox.session(python=PYTHON)
def verify(session: nox.Session) -> None:
    """The main job: every formula's manual gradient against JAX, as a table."""
    session.install("-e", ".[verify]")
    session.run("python", "-m", "verification", *session.posargs)


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of manual_bp and verification/compare.py: score and survivors.

    The configuration is ``[tool.mutmut]`` in pyproject.toml (what is mutated, which tests
    run); ``mutation/score.py`` prints the score net of ``mutation/EQUIVALENT.md`` and the
    surviving mutants, and fails below 95% (manual_bp) or 90% (compare.py). About 15 minutes
    on 2 cores (2353 mutants). Extra arguments go to score.py (e.g. ``-- --no-diffs``).
    """
    import shutil

    session.install("-e", ".[test]", "mutmut>=3.8,<4")
    # mutmut keeps existing copies under mutants/: start clean so edits are seen.
    shutil.rmtree("mutants", ignore_errors=True)
    env = {"HYPOTHESIS_PROFILE": "dev"}
    session.run("mutmut", "run", "--max-children", str(os.cpu_count() or 2), env=env)
    session.run("python", "mutation/score.py", *session.posargs, env=env)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks (issue 5): SGD step vs jax.jit and torch, gradient cost, verification speed.

    Prints markdown tables, writes JSON and PNG to bench-results/ and copies the figures to
    docs/bench/. ``nox -s bench -- --quick`` for a short run; ``-- --only sgd_step`` for one
    section.
    """
    session.install("-e", ".[verify,bench,train]")
    session.run("python", "-m", "benchmarks", *session.posargs)
