"""The public audit: ``audit`` and ``assert_gradient_correct``.

``audit`` validates what the user gave and hands the search to the engine
(``_engine.run_audit``), which every kind of audit shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from verification.auditing._check import Policy
from verification.auditing._engine import run_audit
from verification.auditing._errors import AuditSpecError
from verification.auditing._kinks import Kinks
from verification.auditing._report import AuditReport
from verification.auditing._stages import Stage

__all__ = ["assert_gradient_correct", "audit", "check_options"]


def audit(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    *,
    argnums: int | Sequence[int] = 0,
    max_examples: int = 200,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = None,
    arg_names: Sequence[str] | None = None,
    kinks: Kinks | None = None,
    stages: Mapping[str, Stage | str] | None = None,
    intermediates: Callable[..., Any] | None = None,
    replay: Sequence[tuple[Any, ...]] = (),
    profile: bool = False,
    quick: bool = False,
    locate: bool = True,
) -> AuditReport:
    """Search for an input where ``grad_fn`` is not the gradient of ``loss_fn``.

    Parameters
    ----------
    grad_fn : the candidate, ``grad_fn(*args)`` -> the gradient of ``loss_fn`` with respect to
        ``args[argnums]``: an array, or a pytree (e.g. an ``MLPParams``) like that argument; a
        tuple of them when ``argnums`` is a tuple. Any Python code (numpy, torch via .numpy()).
    loss_fn : the ground truth, a JAX-traceable scalar function ``loss_fn(*args)``.
    args : a hypothesis strategy of argument tuples (``named_arrays`` builds one from named
        dimensions), or one concrete tuple to check that input alone (without hypothesis, so
        it works inside any ``@given`` test; a strategy there needs
        ``HealthCheck.nested_given`` suppressed on that outer test).
    argnums : the position(s) of the differentiated arguments.
    max_examples : examples to generate (shrinking a failure adds more).
    rtol, atol : fixed tolerances; None (default) applies the rule in
        ``verification.auditing._tolerance`` (derived from the dtype and the problem's scale).
    seed : the search's random seed (None: a fresh one, printed in the report).
    arg_names : names of the arguments for the report (default ``args[i]``).
    kinks : a ``Kinks`` declaration (``RELU``, ``MLP_RELU``, ``MAX_TIES``): my convention at
        these kinks is the reference's. Inputs are then aimed exactly at them, and a
        disagreement there is a failure "at a kink under the declared convention" instead of
        oracle-uncertain (``verification.auditing._kinks``).
    stages, intermediates : ``intermediates(*args)`` -> the candidate's intermediate gradients
        by name (a mapping or NamedTuple), and ``stages``: name -> ``Stage`` or a name of
        ``MLP_STAGES`` ("Z2", "A1", "Z1"), in the order the backward pass forms them. On a
        failure the report's ``stage`` says which intermediates agree and which first differs
        (``verification.auditing._stages``).
    replay : argument tuples checked first, in order, before any search (counterexamples kept
        from earlier runs, ``verification.auditing._store``): a regression fails on its first
        example; the report's ``replay_failed`` says which one failed again.
    profile : record where the time went (tracing and lowering, XLA compilation, reference
        runs, the candidate, the second opinion, finite differences, diagnosis, report) and
        which programs were compiled at which shapes: ``report.profile``, printed after the
        report (``verification.auditing._profile``).
    quick : stop at the verdict: the failing input (not shrunk), the worst element and the
        offending elements, without the re-checks that name a cause, the stage or the finite
        difference at the worst element.
    locate : on a mismatch, run the candidate again under a line tracer and name the line of
        its code where the error enters (the report's ``where``; ``verification.auditing.
        _locate``). False skips it.

    Returns
    -------
    AuditReport : ``passed``, ``verdict`` (PASSED, FAILED, INCONCLUSIVE), ``examples``, ``counterexample`` (minimal, after shrinking),
        ``max_abs_error``, ``max_rel_error``, ``location``, and ``str(report)`` with a
        diagnosis and a reproducer.

    Raises
    ------
    OracleRefusedError : the reference is not a float64, highest-precision computation.
    AuditSpecError : (a ValueError) what was given cannot be used, before the candidate is
        called on the input concerned: bad options (argnums out of range, max_examples < 1, a
        negative tolerance), a loss that cannot be evaluated on the arguments (wrong
        signature, not a scalar, not JAX-traceable, raises), arguments that do not fit it.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from verification.auditing import named_arrays
    >>> loss = lambda x, w: jnp.sum(jnp.tanh(x @ w)) / x.shape[0]
    >>> good = lambda x, w: x.T @ (1 - np.tanh(x @ w) ** 2) / x.shape[0]
    >>> shapes = named_arrays({"x": ("m", "n"), "w": ("n", "h")}, bounds=(2.0,))
    >>> audit(good, loss, shapes, argnums=1, max_examples=20, seed=0).passed
    True
    >>> bad = lambda x, w: x.T @ (1 - np.tanh(x @ w) ** 2)
    >>> report = audit(bad, loss, shapes, argnums=1, max_examples=50, seed=0)
    >>> report.passed, report.counterexample[0].shape[0], "1/m is missing" in report.diagnosis
    (False, 2, True)
    """
    argnums_t = check_options(args, argnums, max_examples, rtol, atol)
    return run_audit(
        grad_fn,
        loss_fn,
        args,
        argnums=argnums_t,
        max_examples=max_examples,
        seed=seed,
        arg_names=arg_names,
        policy=Policy(rtol=rtol, atol=atol),
        argnums_shown=argnums if isinstance(argnums, int) else argnums_t,
        kinks=kinks,
        stages=stages,
        intermediates=intermediates,
        replay=replay,
        profile=profile,
        quick=quick,
        locate=locate,
    )


def check_options(
    args: Any,
    argnums: int | Sequence[int],
    max_examples: int,
    rtol: float | None = None,
    atol: float | None = None,
) -> tuple[int, ...]:
    """``argnums`` as a tuple, once the options every audit takes are checked (``audit``,
    ``audit_hvp``, the double-backward audit).

    Raises
    ------
    AuditSpecError : ``argnums`` not a non-negative int or a non-empty tuple of them, or out of
        range for a concrete ``args`` tuple; ``max_examples`` below 1; a negative or infinite
        ``rtol``/``atol``; ``args`` neither a hypothesis strategy nor a tuple.
    """
    argnums_t = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not argnums_t or any(not isinstance(i, int) or i < 0 for i in argnums_t):
        raise AuditSpecError(
            f"argnums must be a non-negative int or a tuple of them, got {argnums!r}"
        )
    if not isinstance(max_examples, int) or max_examples < 1:
        raise AuditSpecError(f"max_examples must be an int >= 1, got {max_examples!r}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None and not (tol >= 0 and math.isfinite(tol)):
            raise AuditSpecError(f"{name} must be finite and >= 0, got {tol}")
    if not isinstance(args, st.SearchStrategy) and not isinstance(args, tuple):
        raise AuditSpecError(
            f"args must be a hypothesis strategy or a tuple, got {type(args).__name__}"
        )
    if isinstance(args, tuple) and max(argnums_t) >= len(args):
        raise AuditSpecError(
            f"argnums {argnums!r} is out of range for the {len(args)} arguments given: count from 0"
        )
    return argnums_t


def assert_gradient_correct(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    **kwargs: Any,
) -> AuditReport:
    """``audit`` that raises ``AssertionError(str(report))`` unless the audit passes (a failure,
    or an INCONCLUSIVE audit that could check nothing).

    Same arguments as ``audit``; returns the (passing) report. For use in any pytest suite.
    """
    report = audit(grad_fn, loss_fn, args, **kwargs)
    if not report.passed:
        error = AssertionError(str(report))
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report
