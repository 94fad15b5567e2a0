"""Audit someone else's gradient: search for the input where it is wrong, shrink it, explain it.

``audit(grad_fn, loss_fn, args)`` checks a gradient function (any Python code) against
``jax.grad`` of a JAX loss in float64 on inputs hypothesis generates, and returns an
``AuditReport``; ``assert_gradient_correct`` raises ``AssertionError`` with the report instead;
``named_arrays`` builds the input strategy from named dimensions.

Layout (one concept per module; every kind of audit runs through the one engine):

* ``_audit``: the public ``audit`` / ``assert_gradient_correct``: validate, then ``run_audit``.
* ``_engine``: ``run_audit``, the engine other audit kinds call with their own candidate,
  loss and ``Policy``; builds the ``AuditReport``.
* ``_search``: the hypothesis search (or one concrete input) and shrinking.
* ``_check``: the per-example check (``Checker``) and its replaceable pieces (``Policy``:
  the tolerance rule and the comparison).
* ``_guards``: raised, mutated its input, nondeterministic (``_repeat``: repeatability
  within rounding), wrong structure/shape/dtype, memoised.
* ``_evidence``: a constant factor's cause, named only after re-checks at another input
  and another size; ``_errors``: ``AuditSpecError``.
* ``_oracle``: the float64 ``jax.grad`` reference, second opinions, finite differences;
  ``_program``: each reference program checked as float64 (``OracleRefusedError``), compiled.
* ``_tolerance``: the tolerance rule; ``_diagnose``: bug signatures in words.
* ``_report``: ``AuditReport``, its text, reproducer and JSON.
* ``_vjp``: ``audit_vjp``, a layer's backward against ``jax.vjp`` (the engine on
  <forward(inputs), random cotangent>); ``_stages``: the stage that went wrong (intermediate
  gradients against ``jax.grad`` of each stage); ``_kinks``: declared conventions at kinks.
* ``_hvp``: ``audit_hvp``, a Hessian-vector product against JAX (the engine on
  <grad loss, random direction v>); ``_vjp2``: ``audit_vjp(order=2)``, double backward.
* ``_shapes``: ``named_arrays`` and the ``--shapes`` grammar (``_grammar``; ``_elements``:
  the values of each kind); ``_simplify``: the counterexample made simple inside its declared
  domain; ``_outcome``, ``_trees``:
  per-example outcome and tally, pytree helpers.
* ``_locate``: ``where:``, the line where the error enters: ``_trace`` runs the candidate
  under a line tracer (hooked in by ``_hooks``), ``_refquant``/``_refsteps`` give the reference's quantities and steps,
  ``_walk`` walks back through the candidate's dataflow re-running statements (``_rerun``),
  ``_where`` holds the answer and its words, ``_second`` the second failing input (or
  sub-batches of a large one), ``_source`` reads the user's files.
* ``_finite_differences``, ``_cancellation``, ``_subgradient``: what the oracle measures
  besides the gradient (difference quotients, the size of the terms that cancel, kinks);
  ``_lowprec``: float16/bfloat16 verdicts; ``_profile``: where an audit's time went.
* ``_reproducer``: reproducers and offending elements at production sizes; ``_cotangent``:
  the random cotangents and directions derived audits draw; ``_targets``: ``MODULE:FUNCTION``.
* ``_config``: audits declared in ``[tool.manual-bp.audits.NAME]`` tables (``audit --config``,
  the pytest plugin ``manual_bp_pytest``); ``_store``: counterexamples kept in the user's
  repository and replayed before any search (``replay=``).
"""

from verification.auditing._audit import (
    assert_gradient_correct as assert_gradient_correct,
    audit as audit,
)
from verification.auditing._errors import AuditSpecError as AuditSpecError
from verification.auditing._hvp import audit_hvp as audit_hvp
from verification.auditing._kinks import (
    MAX_TIES as MAX_TIES,
    MLP_RELU as MLP_RELU,
    RELU as RELU,
    Kinks as Kinks,
    kinks_at as kinks_at,
    pool_ties as pool_ties,
)
from verification.auditing._program import (
    Environment as Environment,
    OracleRefusedError as OracleRefusedError,
)
from verification.auditing._report import AuditReport as AuditReport
from verification.auditing._shapes import (
    named_arrays as named_arrays,
    parse_shapes as parse_shapes,
    size_profiles as size_profiles,
)
from verification.auditing._stages import (
    MLP_STAGES as MLP_STAGES,
    Stage as Stage,
    StageVerdict as StageVerdict,
)
from verification.auditing._tolerance import KAPPA_SAFETY as KAPPA_SAFETY
from verification.auditing._vjp import audit_vjp as audit_vjp

__all__ = [
    "KAPPA_SAFETY",
    "MAX_TIES",
    "MLP_RELU",
    "MLP_STAGES",
    "RELU",
    "AuditReport",
    "AuditSpecError",
    "Environment",
    "Kinks",
    "OracleRefusedError",
    "Stage",
    "StageVerdict",
    "assert_gradient_correct",
    "audit",
    "audit_hvp",
    "audit_vjp",
    "kinks_at",
    "named_arrays",
    "parse_shapes",
    "pool_ties",
    "size_profiles",
]
