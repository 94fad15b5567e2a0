"""Audits declared in ``pyproject.toml``: ``[tool.manual-bp.audits.NAME]`` tables.

    [tool.manual-bp.audits.softmax]
    candidate = "mypkg.grads:softmax_grad"      # MODULE:FUNCTION (or path/to/file.py:FUNCTION)
    reference = "mypkg.jaxref:softmax_loss"     # the JAX loss (kind "vjp": the JAX forward)
    shapes = "x=m,n w=n,k y=m:onehot(k)"        # the --shapes grammar (_grammar.GRAMMAR)
    argnums = 1                                 # optional, default 0; or a list [0, 1]
    # optional: kind = "gradient" | "vjp", forward (vjp: MODULE:FUNCTION -> (out, cache)),
    # dtype, kinks ("relu", "mlp-relu", "max-ties"), stages ({dZ2 = "Z2", ...}) with
    # intermediates (MODULE:FUNCTION), max_examples, seed, dims ({m = [1, 2]}), bounds, rtol, atol

    [tool.manual-bp]
    counterexamples = "gradient-audits"         # optional: where failures are kept (_store)

The pytest plugin (``manual_bp_pytest``) collects each table as a test item named NAME;
``python -m verification audit --config pyproject.toml [NAME ...]`` (``main``) runs the same
audits through the same ``run_configured``. A mistake is a ``ConfigError``: one line naming the
file, the table and the key.
"""

from __future__ import annotations

import math
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manual_bp_pytest import audit_names, read_tool
from verification.auditing._audit import audit
from verification.auditing._errors import AuditSpecError
from verification.auditing._kinks import BY_NAME
from verification.auditing._lowprec import BFLOAT16
from verification.auditing._program import OracleRefusedError
from verification.auditing._shapes import named_arrays, parse_shapes
from verification.auditing._stages import MLP_STAGES
from verification.auditing._store import Kept, folder_name, run_kept
from verification.auditing._targets import resolve
from verification.auditing._vjp import audit_vjp

__all__ = ["AuditConfig", "ConfigError", "load_audits", "parse_table", "run_configured"]

_FUNCTIONS = ("candidate", "reference", "forward", "intermediates")
_KEYS = (
    *_FUNCTIONS,
    *("shapes", "kind", "argnums", "dtype", "kinks", "stages", "max_examples", "seed"),
    *("dims", "bounds", "rtol", "atol"),
)
_DTYPES = ("float64", "float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """A mistake in a ``[tool.manual-bp.audits.NAME]`` table: one line naming table and key."""


@dataclass(frozen=True)
class AuditConfig:
    """One declared audit, validated (``parse_table``); ``table`` is the raw TOML table."""

    name: str
    where: str
    table: dict[str, Any]
    spec: dict[str, Any]
    argnums: int | tuple[int, ...]
    kind: str = "gradient"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(key: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``key`` (None: it is)."""
    if key in (*_FUNCTIONS, "shapes"):
        if not isinstance(value, str) or (key != "shapes" and ":" not in value.strip(":")):
            return (
                f'expected "MODULE:FUNCTION", got {value!r}'
                if key != "shapes"
                else (
                    f'expected a string in the --shapes grammar, e.g. "x=m,n w=n,h", got {value!r}'
                )
            )
    elif key == "kind" and value not in ("gradient", "vjp"):
        return f'expected "gradient" or "vjp", got {value!r}'
    elif key == "dtype" and value not in _DTYPES:
        return f"expected one of {', '.join(_DTYPES)}, got {value!r}"
    elif key == "kinks" and value not in BY_NAME:
        return f"expected one of {', '.join(sorted(BY_NAME))}, got {value!r}"
    elif key == "argnums":
        values = value if isinstance(value, list) else [value]
        if not values or not all(_is_int(v) and v >= 0 for v in values):
            return f"expected an integer >= 0 or a list of them, got {value!r}"
    elif key in ("max_examples", "seed"):
        low = 1 if key == "max_examples" else 0
        if not _is_int(value) or value < low:
            return f"expected an integer >= {low}, got {value!r}"
    elif key in ("rtol", "atol"):
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
            return f"expected a number >= 0, got {value!r}"
    elif key == "bounds":
        ok = isinstance(value, list) and bool(value)
        ok = ok and all(isinstance(b, int | float) and math.isfinite(b) and b > 0 for b in value)
        if not ok:
            return f"expected a list of positive numbers, e.g. [3, 1000], got {value!r}"
    elif key == "dims":
        ok = isinstance(value, dict) and all(
            isinstance(v, list) and v and all(_is_int(s) and s >= 1 for s in v)
            for v in value.values()
        )
        if not ok:
            return f"expected a table of size lists, e.g. {{m = [1, 2], n = [3]}}, got {value!r}"
    elif key == "stages":
        ok = (
            isinstance(value, dict) and bool(value) and all(v in MLP_STAGES for v in value.values())
        )
        if not ok:
            return (
                "expected a table of intermediate name = stage, stages among "
                f'{", ".join(MLP_STAGES)}, e.g. {{dZ2 = "Z2"}}, got {value!r}'
            )
    return None


def parse_table(name: str, table: Any, source: str = "pyproject.toml") -> AuditConfig:
    """Validate one audit table (module docstring) and parse its shapes.

    Raises
    ------
    ConfigError : ``"<source> [tool.manual-bp.audits.NAME] KEY: what is wrong"``.
    """
    where = f"{source} [tool.manual-bp.audits.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {table!r}")
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(f"{where} {key}: unknown key; the keys are {', '.join(_KEYS)}")
        problem = _check_value(key, value)
        if problem:
            raise ConfigError(f"{where} {key}: {problem}")
    for key in ("candidate", "reference", "shapes"):
        if key not in table:
            raise ConfigError(f"{where} {key}: missing (candidate, reference, shapes are needed)")
    kind = table.get("kind", "gradient")
    if "forward" in table and kind != "vjp":
        raise ConfigError(f'{where} forward: only for kind = "vjp"')
    if ("stages" in table) != ("intermediates" in table):
        missing = "intermediates" if "stages" in table else "stages"
        raise ConfigError(f"{where} {missing}: stages and intermediates go together")
    try:
        spec = parse_shapes(table["shapes"])
    except ValueError as error:
        raise ConfigError(f"{where} shapes: {error}") from None
    raw = table.get("argnums", 0)
    argnums = tuple(raw) if isinstance(raw, list) else (raw,)
    if max(argnums) >= len(spec):
        raise ConfigError(
            f"{where} argnums: {raw!r} does not fit the {len(spec)} arguments of shapes "
            f"({', '.join(spec)}): count from 0"
        )
    return AuditConfig(
        name, where, dict(table), spec, argnums[0] if len(argnums) == 1 else argnums, kind
    )


def load_audits(pyproject: Path, names: Sequence[str] = ()) -> list[AuditConfig]:
    """The audits declared in ``pyproject`` (all, or those ``names`` in that order), validated.

    Raises
    ------
    ConfigError : an unreadable file, no audits table, a name not declared, a bad table.
    """
    try:
        tool = read_tool(pyproject)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{pyproject}: cannot read it: {error}") from None
    declared = audit_names(tool)
    if not declared:
        raise ConfigError(f"{pyproject}: no [tool.manual-bp.audits.NAME] tables")
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise ConfigError(
            f"{pyproject}: no audit named {unknown[0]!r}; declared: {', '.join(declared)}"
        )
    tables = tool["audits"]
    return [parse_table(n, tables[n], pyproject.name) for n in (names or declared)]


def _resolve(config: AuditConfig, key: str, root: Path) -> Any:
    target = config.table[key]
    module, _, function = target.rpartition(":")
    if module.endswith(".py") and not Path(module).is_absolute():
        target = f"{root / module}:{function}"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # the user's modules, as from the project's folder
    try:
        return resolve(target)
    except (ImportError, ValueError) as error:
        raise ConfigError(f"{config.where} {key}: {error}") from None


def run_configured(
    config: AuditConfig,
    root: Path,
    *,
    max_examples: int,
    seed: int | None,
    store: Path | None,
    update: bool = False,
) -> Kept:
    """Run one declared audit (its table's ``max_examples`` and ``seed`` win over the
    arguments) with the counterexamples kept in ``store / NAME`` replayed first (``_store``);
    ``root``: the pyproject's folder (modules are imported from there). ``store`` None: no
    counterexamples kept."""
    table = config.table
    try:
        strategy = named_arrays(
            config.spec,
            dims=table.get("dims"),
            dtype=BFLOAT16 if table.get("dtype") == "bfloat16" else table.get("dtype", "float64"),
            bounds=table.get("bounds"),
        )
    except ValueError as error:
        raise ConfigError(f"{config.where} shapes: {error}") from None
    options: dict[str, Any] = {
        "argnums": config.argnums,
        "max_examples": table.get("max_examples", max_examples),
        "seed": table.get("seed", seed),
        "arg_names": list(config.spec),
        "kinks": BY_NAME[table["kinks"]] if "kinks" in table else None,
        "rtol": table.get("rtol"),
        "atol": table.get("atol"),
    }
    if "stages" in table:
        options["stages"] = dict(table["stages"])
        options["intermediates"] = _resolve(config, "intermediates", root)
    candidate = _resolve(config, "candidate", root)
    reference = _resolve(config, "reference", root)
    if config.kind == "vjp":
        forward = _resolve(config, "forward", root) if "forward" in table else None

        def run(replay: list[tuple[Any, ...]]) -> Any:
            return audit_vjp(
                candidate, reference, strategy, forward=forward, replay=replay, **options
            )

    else:

        def run(replay: list[tuple[Any, ...]]) -> Any:
            return audit(candidate, reference, strategy, replay=replay, **options)

    spec = {"audit": config.name, **table}

    def fits(args: tuple[Any, ...]) -> str | None:
        n = len(config.spec) + (config.kind == "vjp")  # audit_vjp's last argument: the cotangent
        if len(args) == n:
            return None
        return f"it holds {len(args)} arguments, the audit now takes {n}"

    try:
        if store is None:
            return Kept(run([]))
        return run_kept(run, store / folder_name(config.name), spec, update=update, fits=fits)
    except (AuditSpecError, OracleRefusedError) as error:  # the loss does not fit the shapes
        raise ConfigError(f"{config.where}: {error}") from None
