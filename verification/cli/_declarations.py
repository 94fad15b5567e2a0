"""``--kinks``, ``--stages`` and ``--intermediates``: what a user declares about the candidate,
shared by ``audit`` and ``audit-vjp`` (``audit-hvp`` takes ``--kinks`` alone): the built-in kink
conventions by name, kinks at given values, ties inside pooling windows, or a ``Kinks`` of the
user's own by ``MODULE:NAME``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from verification.auditing._kinks import BY_NAME as KINKS, Kinks, kinks_at, pool_ties
from verification.auditing._targets import lookup, resolve
from verification.cli._common import UsageError

__all__ = ["KINKS", "add_declaration_options", "declarations"]


def add_declaration_options(parser: argparse.ArgumentParser, *, stages: bool = True) -> None:
    """``--kinks``, and with ``stages`` ``--stages`` and ``--intermediates`` (audit, audit-vjp;
    audit-hvp, whose audit has no stages, takes ``--kinks`` alone)."""
    parser.add_argument(
        "--kinks",
        default=None,
        metavar="NAME|MODULE:NAME",
        help="declare that the candidate's convention at these kinks is the reference's: "
        + ", ".join(sorted(KINKS))
        + "; at=-1,1 (kinks at those values: clip, hardtanh); pool-ties=2x2 or 3x3/2x2 (ties "
        "inside 2-D pooling windows, stride after /); or MODULE:NAME of your own "
        "verification.auditing.Kinks (default: none)",
    )
    if not stages:
        return
    parser.add_argument(
        "--stages",
        default=None,
        metavar="MODULE:NAME",
        help="a mapping {intermediate name: Stage or a name of MLP_STAGES} in backward order; "
        "with --intermediates, a failure names the stage that broke (default: none)",
    )
    parser.add_argument(
        "--intermediates",
        default=None,
        metavar="MODULE:FUNCTION",
        help="the candidate's intermediate gradients by name, called with the same arguments "
        "as the candidate (goes with --stages)",
    )


def _kinks_form(text: str) -> Kinks | None:
    """``at=-1,1`` (``kinks_at``) or ``pool-ties=2x2`` / ``pool-ties=3x3/2x2`` (``pool_ties``)."""
    form, _, rest = text.partition("=")
    try:
        if form == "at" and rest:
            return kinks_at([float(v) for v in rest.split(",")])
        if form == "pool-ties" and rest:
            window, _, stride = rest.partition("/")
            pairs = [tuple(int(k) for k in p.split("x")) for p in (window, stride) if p]
            return pool_ties(*pairs)  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        raise UsageError(f"--kinks {text!r}: {error}") from None
    return None


def declarations(options: argparse.Namespace) -> dict[str, Any]:
    """``kinks``, ``stages`` and ``intermediates`` for the audit, from their options (``kinks``
    alone where the parser has no ``--stages``).

    Raises
    ------
    UsageError : a ``--kinks`` that is neither a built-in name nor a ``Kinks``, a ``--stages``
        that is not a mapping, one of ``--stages``/``--intermediates`` without the other.
    """
    out: dict[str, Any] = {"kinks": None}
    if options.kinks:
        kinks = KINKS.get(options.kinks) or _kinks_form(options.kinks)
        if kinks is None and ":" not in options.kinks:
            raise UsageError(
                f"--kinks {options.kinks!r}: expected one of {', '.join(sorted(KINKS))}, "
                "at=V,V (kinks at those values), pool-ties=KHxKW[/SHxSW] or MODULE:NAME of a "
                "verification.auditing.Kinks"
            )
        if kinks is None:
            kinks = lookup(options.kinks)
            if not isinstance(kinks, Kinks):
                raise UsageError(
                    f"--kinks {options.kinks}: is a {type(kinks).__name__}, not a "
                    "verification.auditing.Kinks"
                )
            module, _, name = options.kinks.rpartition(":")
            module = Path(module).stem if module.endswith(".py") else module
            kinks = replace(kinks, rebuild=(f"from {module} import {name} as kinks", "kinks"))
        out["kinks"] = kinks
    if not hasattr(options, "stages"):
        return out
    out["stages"], out["intermediates"] = None, None
    if (options.stages is None) != (options.intermediates is None):
        raise UsageError("--stages and --intermediates go together: give both or neither")
    if options.stages is not None:
        stages = lookup(options.stages)
        if not isinstance(stages, Mapping):
            raise UsageError(
                f"--stages {options.stages}: is a {type(stages).__name__}, not a mapping "
                "{intermediate name: Stage or stage name}"
            )
        out["stages"], out["intermediates"] = stages, resolve(options.intermediates)
    return out
