"""The stage that went wrong: a candidate's intermediate gradients, checked stage by stage.

Backprop forms a chain of intermediate gradients (for the network: dZ2, then dA1, then dZ1) and
the parameter gradients from them. A candidate that exposes its intermediates by name lets a
failed audit say *where* the chain broke. Each intermediate is declared with the forward stage
it belongs to, a ``Stage``: the stage's value V = ``value(*args)`` and the rest of the loss from
V on, J = ``rest(V, *args)`` (both JAX). Its reference is ``jax.grad`` of ``rest`` at V, in
float64 (the engine's ``Oracle``), compared under the engine's tolerance rule.

``locate_stage`` walks the intermediates in the order the backward pass forms them and reports
the last that agrees and the first that differs, and the step between them: the local
derivative that turned a right gradient into a wrong one. If every intermediate agrees, the
error is in a step after them (to the failing parameter gradient, named when the stage says
which step feeds it). Nothing more is claimed: a step is named only because the gradients on
either side of it were measured, one right and one wrong.

``MLP_STAGES`` is the stage map of the project's network (``verification.reference.mlp_loss``,
arguments ``(params, x, y)``), whose intermediates ``manual_bp.mlp_backward_intermediates``
returns: Z2 (logits), A1 (hidden activation) and Z1 (pre-activation), the chain of
docs/derivations.md, sections 6 and 7.
"""

from __future__ import annotations

import re
import traceback
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax import tree_util

from verification import reference
from verification.auditing._diagnose import diagnose
from verification.auditing._errors import AuditSpecError
from verification.auditing._program import PRECISION
from verification.auditing._tolerance import leaf_tolerances
from verification.auditing._trees import is_float
from verification.compare import compare_trees, magnitude

__all__ = ["MLP_STAGES", "Stage", "StageVerdict", "locate_stage", "resolve_stages"]


@dataclass(frozen=True)
class Stage:
    """A forward stage that an intermediate gradient belongs to.

    value : JAX, ``value(*args) -> V``: the stage's forward value (e.g. Z1 = x W1 + b1).
    rest : JAX, ``rest(V, *args) -> J``: the loss computed from V on; ``rest(value(*args),
        *args)`` must be the audited loss. The intermediate must equal dJ/dV (shape of V).
    step : the local derivative that forms this gradient from the previous one, in words
        (e.g. "the ReLU mask, dZ1 = dA1 * 1[Z1 > 0]"): named when this stage is the first
        to differ.
    feeds : leaf name -> the step from this gradient to that parameter gradient (e.g.
        ``{"W2": "dW2 = A1^T dZ2"}``): named when every intermediate agrees and that leaf fails.
    """

    value: Callable[..., Any]
    rest: Callable[..., Any]
    step: str
    feeds: Mapping[str, str] = field(default_factory=dict)


def _z1(params: Any, x: Any, y: Any) -> Any:
    return reference.linear(x, reference.param(params, "W1"), reference.param(params, "b1"))


def _a1(params: Any, x: Any, y: Any) -> Any:
    return reference.relu(_z1(params, x, y))


def _z2(params: Any, x: Any, y: Any) -> Any:
    return reference.mlp_logits(params, x)


def _from_z2(z2: Any, params: Any, x: Any, y: Any) -> Any:
    return reference.softmax_cross_entropy(z2, y)


def _from_a1(a1: Any, params: Any, x: Any, y: Any) -> Any:
    z2 = reference.linear(a1, reference.param(params, "W2"), reference.param(params, "b2"))
    return _from_z2(z2, params, x, y)


def _from_z1(z1: Any, params: Any, x: Any, y: Any) -> Any:
    return _from_a1(reference.relu(z1), params, x, y)


MLP_STAGES: dict[str, Stage] = {
    "Z2": Stage(
        _z2,
        _from_z2,
        "the softmax cross-entropy's gradient, dZ2 = (P * rowsum(Y) - Y)/m",
        {"W2": "dW2 = A1^T dZ2", "b2": "db2 = the column sums of dZ2"},
    ),
    "A1": Stage(_a1, _from_a1, "back through the second layer, dA1 = dZ2 W2^T"),
    "Z1": Stage(
        _z1,
        _from_z1,
        "the ReLU mask, dZ1 = dA1 * 1[Z1 > 0]",
        {"W1": "dW1 = X^T dZ1", "b1": "db1 = the column sums of dZ1"},
    ),
}
"""The network's stages (``reference.mlp_loss(params, x, y)``), in the order backprop forms
their gradients: dZ2, dA1, dZ1 (docs/derivations.md, sections 6 and 7)."""


def resolve_stages(
    stages: Mapping[str, Stage | str], stage_map: Mapping[str, Stage] = MLP_STAGES
) -> dict[str, Stage]:
    """``{intermediate name: Stage}``, names of ``stage_map`` (e.g. ``"Z1"``) replaced by theirs.

    Raises
    ------
    AuditSpecError : no stages, a name that is not in ``stage_map``, or an entry that is
        neither a ``Stage`` nor a name.
    """
    if not stages:
        raise AuditSpecError("stages must name at least one intermediate gradient, got none")
    out: dict[str, Stage] = {}
    for name, stage in stages.items():
        if isinstance(stage, str):
            if stage not in stage_map:
                raise AuditSpecError(
                    f"stages[{name!r}] = {stage!r} is not a stage of the map {sorted(stage_map)}"
                )
            out[name] = stage_map[stage]
        elif isinstance(stage, Stage):
            out[name] = stage
        else:
            raise AuditSpecError(
                f"stages[{name!r}] must be a Stage or a stage name, got {type(stage).__name__}"
            )
    return out


@dataclass(frozen=True)
class StageVerdict:
    """Where the chain broke: the intermediates that agree, the first that differs, and why.

    agree : the intermediates before ``differs`` (in backward order) that match the reference.
    differs : the first intermediate that does not, or None if all agree.
    step : the words of the step that forms ``differs`` (or, when all agree, the step to the
        failing leaf, if the stage map names it); None when unknown.
    detail : how ``differs`` is wrong (a bug signature, or why it could not be checked).
    failing_leaf : the parameter gradient the audit found wrong, if known.
    """

    agree: tuple[str, ...]
    differs: str | None
    step: str | None = None
    detail: str | None = None
    failing_leaf: str | None = None

    def __str__(self) -> str:
        agreed = _and(self.agree)
        verb = "agrees" if len(self.agree) == 1 else "agree"
        if self.differs is not None:
            head = f"{agreed} {verb}; " if self.agree else ""
            text = f"{head}{self.differs} differs"
            if self.step:
                text += f": {self.step}"
            return text + (f" ({self.detail})" if self.detail else "")
        leaf = self.failing_leaf or "the failing gradient"
        text = f"{agreed} {verb}; {leaf} differs, so the error is in a step after them"
        return text + (f": {self.step}" if self.step else "")


def _and(names: Sequence[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _as_mapping(result: Any) -> Mapping[str, Any]:
    if isinstance(result, Mapping):
        return result
    if isinstance(result, tuple) and hasattr(result, "_asdict"):
        return dict(result._asdict())
    raise TypeError(
        f"the intermediates function must return a mapping or a NamedTuple of named "
        f"gradients, got {type(result).__name__}"
    )


def _leaf_of(location: str | None) -> str | None:
    """The leaf's own name in a report's location: its last field or key, indices dropped.

    >>> [_leaf_of(s) for s in ("W2[0, 1]", "params.W2", "params['W2'][0, 1]", "b1[0]", None)]
    ['W2', 'W2', 'W2', 'b1', None]
    """
    if location is None:
        return None
    path = re.sub(r"(\[[-\d, ]*\])+$", "", location)  # the element's indices
    found = re.search(r"""\['([^']+)'\]$|(\w+)$""", path)
    return (found.group(1) or found.group(2)) if found else None


def _checks(
    stage: Stage,
    got: Any,
    args: tuple[Any, ...],
    oracle_for: Callable[[Callable[..., Any], tuple[int, ...]], Any],
    chain_scale: list[float],
    seed: int,
) -> str | None:
    """None if ``got`` is dJ/dV of ``stage`` at ``args`` under the engine's tolerance, else how
    it differs. ``chain_scale`` holds the largest |reference| of the stages so far (updated
    here): the size of the gradients flowing through the chain, which the tolerance and the
    diagnosis use where this stage's own reference cancels to nearly 0."""
    if got is None:
        return "not returned"
    got_a = np.asarray(got)
    if not np.issubdtype(got_a.dtype, np.floating):
        return f"came back as {got_a.dtype}, not a float array"
    oracle = oracle_for(stage.rest, (0,))
    args64 = tree_util.tree_map(
        lambda a: np.asarray(a, np.float64) if is_float(a) else np.asarray(a), args
    )
    with jax.default_matmul_precision(PRECISION):
        value = np.asarray(stage.value(*args64), np.float64)
    stage_args = (value, *args)
    _, (ref,) = oracle.gradient(stage_args)
    if got_a.shape != ref.shape:
        return diagnose(got_a, ref)
    chain_scale[0] = scale = max(chain_scale[0], magnitude([ref]))
    terms = max(int(np.size(leaf)) for leaf in (got_a, *tree_util.tree_leaves(args)))
    tols = leaf_tolerances([got_a.dtype], [ref], secant=scale, terms=terms)
    with np.errstate(all="ignore"):
        strict = compare_trees(got_a, ref, rtol=tols[0][0], atol=tols[0][1])
    if strict.passed:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(value).tobytes())])
    v = rng.standard_normal(ref.shape)
    v /= float(np.linalg.norm(v)) or 1.0
    opinion = oracle.second_opinion(stage_args, [ref], [v], rng)
    tols = leaf_tolerances(
        [got_a.dtype],
        [ref],
        opinion.grad32,
        opinion.grad_perturbed,
        secant=max(opinion.secant, scale),
        summed=opinion.summed,  # terms that cancel, as the engine's check allows them
        terms=terms,
    )
    with np.errstate(all="ignore"):
        if compare_trees(got_a, ref, rtol=tols[0][0], atol=tols[0][1]).passed:
            return None
        return diagnose(got_a, ref, float64_result=got_a.dtype == np.float64, scale=scale)


def locate_stage(
    intermediates: Callable[..., Any],
    stages: Mapping[str, Stage],
    args: tuple[Any, ...],
    *,
    oracle_for: Callable[[Callable[..., Any], tuple[int, ...]], Any],
    failing_location: str | None = None,
    seed: int = 0,
) -> StageVerdict:
    """Check each intermediate of ``intermediates(*args)`` against its stage's reference.

    Parameters
    ----------
    intermediates : the candidate's, ``intermediates(*args)`` -> a mapping (or NamedTuple) of
        intermediate gradients by name.
    stages : name -> ``Stage``, in the order the backward pass forms them (dZ2 before dZ1).
    args : the input (the audit's shrunk counterexample).
    oracle_for : the engine's cache of oracles, ``oracle_for(loss_fn, argnums)``.
    failing_location : the element the audit found wrong, e.g. ``"W2[0, 1]"``.
    seed : randomness of the tolerance's second look (derived per input, as in the audit).

    Returns
    -------
    StageVerdict : the intermediates that agree, the first that differs and the step between.
    """
    leaf = _leaf_of(failing_location)
    try:
        found = _as_mapping(intermediates(*args))
    except Exception as error:
        last = traceback.format_exception_only(error)[-1].strip()
        return StageVerdict((), next(iter(stages)), None, f"the intermediates raised {last}")
    agree: list[str] = []
    chain_scale = [0.0]
    for name, stage in stages.items():
        problem = _checks(stage, found.get(name), args, oracle_for, chain_scale, seed)
        if problem is not None:
            return StageVerdict(tuple(agree), name, stage.step, f"{name}: {problem}", leaf)
        agree.append(name)
    feeding = [s.feeds[leaf] for s in stages.values() if leaf is not None and leaf in s.feeds]
    return StageVerdict(tuple(agree), None, feeding[0] if feeding else None, None, leaf)
