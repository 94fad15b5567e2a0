"""manual-bp's pytest plugin: gradient audits in anyone's test suite (a ``pytest11`` entry point).

* Audits declared in ``pyproject.toml`` (``[tool.manual-bp.audits.NAME]``, see
  ``verification.auditing._config``) are collected as test items ``pyproject.toml::NAME``.
* The fixture ``gradient_audit(grad_fn, loss_fn, args, **options)`` (and
  ``gradient_audit.vjp(backward, forward_ref, args, **options)``) runs ``audit`` /
  ``audit_vjp`` with the session's settings and fails the test with the report.
* The marker ``@pytest.mark.gradient_audit(max_examples=..., seed=..., kinks=...)`` overrides
  the settings for one test's audits.
* Options ``--gradient-audit-{profile,max-examples,seed,update,json}``; profiles ``quick``
  (local) and ``thorough`` (chosen when the environment variable ``CI`` is set, like
  hypothesis's CI profile), or ``GRADIENT_AUDIT_PROFILE``; a header line with the settings.
* Failing audits keep their counterexample under ``gradient-audits/`` beside pyproject
  (``[tool.manual-bp] counterexamples = ...``), replayed first by every later run
  (``verification.auditing._store``); each audit's outcome is a JUnit property
  ``gradient_audit`` and counts in the session summary (also under pytest-xdist).

Light: this module is imported by every pytest session where manual-bp is installed, so it
imports neither JAX nor ``verification`` (which needs the ``verify`` extra); they load when an
audit runs.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "PROFILES",
    "STORE_DEFAULT",
    "Profile",
    "audit_names",
    "choose_profile",
    "read_tool",
    "store_folder",
]

STORE_DEFAULT = "gradient-audits"
"""The folder (beside pyproject.toml) where failing audits keep their counterexamples."""


@dataclass(frozen=True)
class Profile:
    """Settings of a named profile: examples per audit and the seed (None: a fresh one)."""

    max_examples: int
    seed: int | None


PROFILES = {"quick": Profile(50, None), "thorough": Profile(500, 0)}
"""quick: local runs, a fresh seed each run; thorough: CI, the same examples on every run."""


def choose_profile(option: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """(profile name, why): the option, else ``GRADIENT_AUDIT_PROFILE``, else ``thorough``
    where ``CI`` is set, else ``quick``."""
    if option:
        return option, "--gradient-audit-profile"
    chosen = environ.get("GRADIENT_AUDIT_PROFILE", "")
    if chosen in PROFILES:
        return chosen, "GRADIENT_AUDIT_PROFILE"
    if environ.get("CI"):
        return "thorough", "CI is set"
    return "quick", "default"


def read_tool(pyproject: Path) -> dict[str, Any]:
    """The ``[tool.manual-bp]`` table of ``pyproject`` ({} when there is none)."""
    with pyproject.open("rb") as file:
        tool = tomllib.load(file).get("tool", {}).get("manual-bp", {})
    return tool if isinstance(tool, dict) else {}


def store_folder(pyproject: Path, tool: Mapping[str, Any]) -> Path:
    """Where counterexamples are kept: ``[tool.manual-bp] counterexamples`` (default
    ``STORE_DEFAULT``), relative to the folder of ``pyproject``."""
    return pyproject.parent / str(tool.get("counterexamples", STORE_DEFAULT))


def audit_names(tool: Mapping[str, Any]) -> list[str]:
    """The NAMEs of ``[tool.manual-bp.audits.NAME]``, in the file's order."""
    audits = tool.get("audits", {})
    return list(audits) if isinstance(audits, dict) else []


@dataclass(frozen=True)
class Settings:
    """The session's effective settings."""

    profile: str
    why: str
    max_examples: int
    seed: int | None
    update: bool
    store: Path
    pyproject: Path | None
    json: str | None

    def header(self, rootpath: Path) -> str:
        seed = "a fresh seed per audit" if self.seed is None else f"seed {self.seed}"
        store = (
            self.store.relative_to(rootpath) if self.store.is_relative_to(rootpath) else self.store
        )
        return (
            f"gradient audits: profile {self.profile} ({self.why}): {self.max_examples} "
            f"examples, {seed}; counterexamples kept in {store}/"
            + ("; --gradient-audit-update: stale entries removed" if self.update else "")
        )


_SETTINGS = pytest.StashKey[Settings]()
_COLLECTED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradient-audit", "gradient audits (manual-bp)")
    group.addoption(
        "--gradient-audit-profile",
        choices=sorted(PROFILES),
        default=None,
        help="quick (local: 50 examples, fresh seed) or thorough (CI: 500 examples, seed 0); "
        "default: GRADIENT_AUDIT_PROFILE, else thorough where CI is set, else quick",
    )
    group.addoption(
        "--gradient-audit-max-examples",
        type=int,
        default=None,
        metavar="N",
        help="examples per audit (default: the profile's)",
    )
    group.addoption(
        "--gradient-audit-seed",
        type=int,
        default=None,
        metavar="S",
        help="seed of every audit's search (default: the profile's)",
    )
    group.addoption(
        "--gradient-audit-update",
        action="store_true",
        help="remove kept counterexamples that pass now, refresh the others",
    )
    group.addoption(
        "--gradient-audit-json",
        default=None,
        metavar="PATH",
        help="write every audit's outcome and the summary as JSON to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gradient_audit(max_examples=None, seed=None, kinks=None, **options): options of "
        "this test's gradient_audit fixture calls (manual-bp)",
    )
    name, why = choose_profile(config.getoption("gradient_audit_profile"), os.environ)
    profile = PROFILES[name]
    max_examples = config.getoption("gradient_audit_max_examples")
    max_examples = profile.max_examples if max_examples is None else max_examples
    seed = config.getoption("gradient_audit_seed")
    if max_examples < 1 or (seed is not None and seed < 0):
        raise pytest.UsageError(
            "--gradient-audit-max-examples must be >= 1, --gradient-audit-seed >= 0"
        )
    pyproject = config.rootpath / "pyproject.toml"
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        pyproject = config.inipath
    try:
        tool = read_tool(pyproject) if pyproject.is_file() else {}
    except tomllib.TOMLDecodeError as error:
        raise pytest.UsageError(f"{pyproject}: not valid TOML: {error}") from None
    config.stash[_SETTINGS] = Settings(
        profile=name,
        why=why,
        max_examples=max_examples,
        seed=profile.seed if seed is None else seed,
        update=bool(config.getoption("gradient_audit_update")),
        store=store_folder(pyproject, tool),
        pyproject=pyproject if audit_names(tool) else None,
        json=config.getoption("gradient_audit_json"),
    )
    config.stash[_COLLECTED] = False
    config.pluginmanager.register(_Summary(config.stash[_SETTINGS]), "gradient-audit-summary")


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[_SETTINGS].header(config.rootpath)


class AuditFailedError(Exception):
    """A declared audit failed: its text is the report."""


class AuditFile(pytest.File):
    """pyproject.toml: one item per declared audit."""

    def collect(self) -> Iterator[pytest.Item]:
        self.config.stash[_COLLECTED] = True
        for name in audit_names(read_tool(self.path)):
            yield AuditItem.from_parent(self, name=name)


class AuditItem(pytest.Item):
    """One ``[tool.manual-bp.audits.NAME]`` table, run by ``_config.run_configured``."""

    def runtest(self) -> None:
        from verification.auditing._config import load_audits, run_configured

        settings = self.config.stash[_SETTINGS]
        start = time.perf_counter()
        (declared,) = load_audits(self.path, [self.name])
        kept = run_configured(
            declared,
            self.path.parent,
            max_examples=settings.max_examples,
            seed=settings.seed,
            store=settings.store,
            update=settings.update,
        )
        if not _finish(self, kept, time.perf_counter() - start):
            raise AuditFailedError(str(kept.report))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The report of a failed audit, or the one line of a mistake in its table."""
        if excinfo.errisinstance(AuditFailedError):
            return str(excinfo.value)
        try:  # loaded by now, unless the verify extra is missing
            from verification.auditing._config import ConfigError
        except ImportError as error:  # its message is the install command (verification._requires)
            return str(error)
        if excinfo.errisinstance(ConfigError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"gradient audit {self.name}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> AuditFile | None:
    settings = parent.config.stash[_SETTINGS]
    if settings.pyproject is not None and file_path == settings.pyproject:
        return AuditFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """With ``testpaths`` (pytest run without arguments), pyproject.toml lies outside the
    folders collected: its audits are collected all the same."""
    config = session.config
    settings = config.stash[_SETTINGS]
    if settings.pyproject is None or config.stash[_COLLECTED]:
        return
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return
    items.extend(AuditFile.from_parent(session, path=settings.pyproject).collect())


def _finish(item: pytest.Item, kept: Any, seconds: float) -> bool:
    """Record the outcome (a JUnit property, the summary's counts), add the store's lines as
    a report section; whether the audit passed."""
    from verification.auditing._store import shown_path

    settings = item.config.stash[_SETTINGS]
    report = kept.report
    lines = kept.lines(settings.store, "--gradient-audit-update")
    record = {
        "test": item.nodeid,
        "verdict": report.verdict,
        "kind": report.kind,
        "examples": report.examples,
        "uncertain": report.uncertain,
        "seed": report.seed,
        "seconds": round(seconds, 3),
        "replayed": report.replayed,
        "replay_failed": report.replay_failed,
        "stored": None if kept.saved is None else shown_path(kept.saved, settings.store),
        "stale": [shown_path(p, settings.store) for p in kept.stale],
        "stale_removed": kept.removed,
    }
    item.user_properties.append(("gradient_audit", json.dumps(record)))
    if lines:
        item.add_report_section("call", "gradient audit", "\n".join(lines))
    return bool(report.passed)


class GradientAudit:
    """The ``gradient_audit`` fixture: call it as ``audit``, or ``.vjp`` as ``audit_vjp``."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item
        self._calls = 0

    def __call__(self, grad_fn: Any, loss_fn: Any, args: Any, **options: Any) -> Any:
        """``verification.audit(grad_fn, loss_fn, args, **options)`` with the session's
        settings, the marker's options, and kept counterexamples replayed first; fails the test
        with the report unless it passes; returns the report."""
        __tracebackhide__ = True
        return self._run("gradient", grad_fn, loss_fn, args, options)

    def vjp(self, backward: Any, forward_ref: Any, args: Any, **options: Any) -> Any:
        """``verification.audit_vjp(backward, forward_ref, args, **options)``, as ``__call__``."""
        __tracebackhide__ = True
        return self._run("vjp", backward, forward_ref, args, options)

    def _run(self, kind: str, fn: Any, reference: Any, args: Any, options: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        from hypothesis import strategies as st

        from verification.auditing import audit, audit_vjp
        from verification.auditing._kinks import BY_NAME
        from verification.auditing._store import Kept, folder_name, run_kept

        settings = self._item.config.stash[_SETTINGS]
        marker = self._item.get_closest_marker("gradient_audit")
        merged: dict[str, Any] = {"max_examples": settings.max_examples, "seed": settings.seed}
        merged.update(marker.kwargs if marker is not None else {})
        merged.update(options)
        if isinstance(merged.get("kinks"), str):
            merged["kinks"] = BY_NAME[merged["kinks"]]
        run_audit: Callable[..., Any] = audit if kind == "gradient" else audit_vjp
        self._calls += 1
        start = time.perf_counter()
        if not isinstance(args, st.SearchStrategy):  # one concrete input: nothing to keep
            kept = Kept(run_audit(fn, reference, args, **merged))
        else:
            key = self._item.nodeid + ("" if self._calls == 1 else f"-{self._calls}")
            spec = {"test": self._item.nodeid, "kind": kind, "call": self._calls}
            kept = run_kept(
                lambda replay: run_audit(fn, reference, args, replay=replay, **merged),
                settings.store / folder_name(key),
                spec,
                update=settings.update,
            )
        if not _finish(self._item, kept, time.perf_counter() - start):
            pytest.fail(str(kept.report), pytrace=False)
        return kept.report


@pytest.fixture
def gradient_audit(request: pytest.FixtureRequest) -> GradientAudit:
    """Audit a gradient (``gradient_audit(grad_fn, loss_fn, args, **options)``) or a layer's
    backward (``gradient_audit.vjp(backward, forward_ref, args, **options)``) with the
    session's settings; a failure fails the test with the audit's report."""
    return GradientAudit(request.node)


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [r["verdict"] for r in records]
    return {
        "audits": len(records),
        "passed": verdicts.count("PASSED"),
        "failed": verdicts.count("FAILED"),
        "inconclusive": verdicts.count("INCONCLUSIVE"),
        "uncertain_examples": sum(r["uncertain"] for r in records),
        "seconds": round(sum(r["seconds"] for r in records), 3),
    }


class _Summary:
    """The session's audit records: gathered from the reports (on the controller under
    pytest-xdist, where the properties travel with the reports), summed up at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.records: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == "gradient_audit":
                self.records.append(json.loads(str(value)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        s = _summary(self.records)
        terminalreporter.section("gradient audits")
        terminalreporter.line(
            f"{s['audits']} audits: {s['passed']} passed, {s['failed']} failed, "
            f"{s['inconclusive']} inconclusive; {s['uncertain_examples']} oracle-uncertain "
            f"examples; {s['seconds']:.1f} s in audits"
        )
        for r in self.records:
            for path in r["stale"]:
                action = "removed" if r["stale_removed"] else "--gradient-audit-update removes it"
                terminalreporter.line(f"stale: {path} passes now ({action}) [{r['test']}]")
            if r["stored"]:
                terminalreporter.line(f"stored: {r['stored']} [{r['test']}]")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.settings.json is None or hasattr(session.config, "workerinput"):
            return
        document = {"summary": _summary(self.records), "audits": self.records}
        Path(self.settings.json).write_text(json.dumps(document, indent=2) + "\n")
