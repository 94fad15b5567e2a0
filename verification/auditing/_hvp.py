"""``audit_hvp``: audit a Hessian-vector product against JAX in float64, on the one engine.

A Hessian-vector product ``hvp_fn(*args, v)`` is H v, H the Hessian of the scalar
``loss_fn(*args)`` in ``args[argnums]``. Since H is symmetric, H v is exactly the gradient of
the directional derivative <grad loss(args), v> with respect to ``args[argnums]`` (v held
fixed): so this audit is the engine's gradient audit of that scalar (computed by ``jax.jvp``,
forward mode, and differentiated by ``jax.grad``), with the direction v drawn as one more
argument. Search, shrinking, guards, tolerance, finite differences, reproducer: nothing is
re-implemented (``_engine.run_audit``).

The direction is drawn at random (standard normal from a drawn seed, like the differentiated
arguments in shape and dtype), never a vector of ones (a row of H that sums to zero, as every
row of the softmax's curvature does, hides any error there). The counterexample holds v as its
last argument.

Where the candidate fails, two measurements on the counterexample say what kind of operator it
is (``operator_words``, on the whole matrix of a small counterexample): whether it is symmetric
(w_i^T C w_j = w_j^T C w_i, which every Hessian is: a term applied transposed breaks it, a
missing or scaled term does not), and whether it has the negative curvature the Hessian has
there (a Gauss-Newton or Fisher product, positive semidefinite, has none).

Kinks. A ReLU network's loss is smooth between kinks (the pre-activations at 0), where relu''
is 0: on each piece the network is linear in its input and only the softmax and the weights
bring curvature. At a kink the *gradient* jumps, so H does not exist there: the reference (like
every hand-written product) takes relu'' = 0 and the mask 1[Z1 > 0] as constant, and a finite
difference of the gradient across a kink measures the jump divided by the step, not a
curvature. The engine's one-sided quotients then disagree, and such an example is
oracle-uncertain (not counted), unless a ``Kinks`` declaration says the candidate follows the
reference's convention there (``MLP_RELU``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from hypothesis import strategies as st
from jax import tree_util

from verification.auditing._audit import check_options
from verification.auditing._check import Policy
from verification.auditing._cotangent import with_drawn
from verification.auditing._engine import oracle_for, run_audit
from verification.auditing._errors import AuditSpecError
from verification.auditing._kinks import Kinks, source
from verification.auditing._report import AuditReport, function_name
from verification.auditing._trees import is_float

__all__ = ["audit_hvp", "draw_direction", "operator_words"]

MAX_COLUMNS = 256
"""Up to this many differentiated elements, the operator words use the whole matrix (one
candidate call and one reference call per column); above, ``DIRECTIONS`` drawn directions."""

DIRECTIONS = 10
"""Drawn directions spanning the subspace the operator words measure on, for large inputs."""


def _differentiated(args: tuple[Any, ...], argnums: tuple[int, ...]) -> Any:
    return args[argnums[0]] if len(argnums) == 1 else tuple(args[i] for i in argnums)


def draw_direction(args: tuple[Any, ...], argnums: tuple[int, ...], seed: int) -> Any:
    """A standard normal direction shaped and typed like ``args[argnums]`` (one pytree for one
    position, a tuple of them for several); non-float leaves are copied as they are."""
    rng = np.random.default_rng(seed)

    def normal(leaf: Any) -> Any:
        a = np.asarray(leaf)
        return rng.standard_normal(a.shape).astype(a.dtype) if is_float(a) else a

    return tree_util.tree_map(normal, _differentiated(args, argnums))


@functools.cache
def _directional(loss_fn: Callable[..., Any], argnums: tuple[int, ...]) -> Callable[..., Any]:
    """<grad loss_fn(*args), v> as a JAX scalar of ``(*args, v)``, by ``jax.jvp`` (one function
    object per (loss, argnums), so the engine's compiled oracle is reused)."""

    def directional(*args: Any) -> Any:
        *inputs, v = args

        def along(*moving: Any) -> Any:
            full = list(inputs)
            for i, value in zip(argnums, moving, strict=True):
                full[i] = value
            return loss_fn(*full)

        tangents = (v,) if len(argnums) == 1 else tuple(v)
        return jax.jvp(along, tuple(inputs[i] for i in argnums), tangents)[1]

    directional.__qualname__ = f"<grad {function_name(loss_fn)}, v>"
    return directional


def _probes(v: Any, args: tuple[Any, ...], argnums: tuple[int, ...], seed: int) -> list[Any]:
    """The directions the operator words are measured on: every basis vector (the whole
    matrix) up to ``MAX_COLUMNS`` elements, else v and ``DIRECTIONS - 1`` drawn directions."""
    leaves, treedef = tree_util.tree_flatten(v)
    size = sum(int(np.size(x)) for x in leaves)
    if size > MAX_COLUMNS:
        return [v] + [draw_direction(args, argnums, seed + k) for k in range(1, DIRECTIONS)]
    probes = []
    for j in range(size):
        flat = np.zeros(size)
        flat[j] = 1.0
        parts, start = [], 0
        for leaf in leaves:
            a = np.asarray(leaf)
            parts.append(flat[start : start + a.size].reshape(a.shape).astype(a.dtype))
            start += a.size
        probes.append(tree_util.tree_unflatten(treedef, parts))
    return probes


def _flat(tree: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    leaves = tree_util.tree_leaves(tree)
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in leaves])


def operator_words(
    hvp_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: tuple[Any, ...],
    v: Any,
    argnums: tuple[int, ...],
    seed: int,
) -> str | None:
    """What the candidate's operator C is, measured at ``args``; None where nothing could be.

    On probe directions D (the whole matrix for up to ``MAX_COLUMNS`` elements, else v and
    drawn directions), the candidate's D^T C D and the reference's D^T H D: whether C is
    symmetric (|D^T C D - (D^T C D)^T| against 64 eps sqrt(n) |D^T C D| of the candidate's
    dtype), and whether it lacks the negative curvature (eigenvalues) that H has there.
    """
    oracle = oracle_for(_directional(loss_fn, argnums), argnums)
    probes = _probes(v, args, argnums, int(np.random.default_rng(seed).integers(2**31)))
    got_cols, ref_cols = [], []
    try:
        for w in probes:
            got_cols.append(_flat(hvp_fn(*args, w)))
            ref_cols.append(np.concatenate([g.ravel() for g in oracle.gradient((*args, w))[1]]))
    except Exception:
        return None
    basis = np.stack([_flat(w) for w in probes], axis=1)
    if any(c.shape != (basis.shape[0],) for c in got_cols) or not np.all(np.isfinite(got_cols)):
        return None
    c = basis.T @ np.stack(got_cols, axis=1)
    h = basis.T @ np.stack(ref_cols, axis=1)
    dtype = np.result_type(*[np.asarray(x).dtype for x in tree_util.tree_leaves(hvp_fn(*args, v))])
    eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 2.0**-8
    floor = (
        64 * eps * math.sqrt(basis.shape[0]) * max(float(np.abs(c).max()), float(np.abs(h).max()))
    )
    where = (
        f"on the whole {basis.shape[0]} x {basis.shape[0]} matrix"
        if len(probes) == basis.shape[0]
        else f"on {len(probes)} directions (v and drawn ones)"
    )
    words: list[str] = []
    asymmetry = float(np.abs(c - c.T).max())
    if asymmetry > floor:
        i, j = np.unravel_index(int(np.argmax(np.abs(c - c.T))), c.shape)
        words.append(
            f"the candidate is not symmetric ({where}: w_i^T C w_j = {c[i, j]:.6g} but "
            f"w_j^T C w_i = {c[j, i]:.6g}; the Hessian's {h[i, j]:.6g} and {h[j, i]:.6g}): a "
            "Hessian is symmetric, so some term is applied transposed or on one side only"
        )
    elif float(np.abs(c).max()) == 0 and float(np.abs(h).max()) > floor:
        words.append(
            f"the candidate is 0 {where} while the Hessian is not: none of the curvature "
            "present at this input is there"
        )
    elif float(np.abs(c).max()) > 0 and len(probes) > 1:  # (a 1 x 1 matrix says nothing)
        words.append(
            f"the candidate is symmetric within rounding ({where}), so its error is symmetric "
            "too: a curvature term missing, extra or scaled (a term applied transposed would "
            "break the symmetry)"
        )
    lowest_h = float(np.linalg.eigvalsh((h + h.T) / 2).min())
    lowest_c = float(np.linalg.eigvalsh((c + c.T) / 2).min())
    if lowest_h < -floor and lowest_c >= -floor and float(np.abs(c).max()) > floor:
        words.append(
            f"the Hessian has negative curvature here (smallest eigenvalue {lowest_h:.6g}, "
            f"{where}) and the candidate none (smallest {lowest_c:.3g}): a positive "
            "semidefinite approximation, such as the Gauss-Newton or Fisher product, returned "
            "for the Hessian"
        )
    return "; ".join(words) or None


def audit_hvp(
    hvp_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    *,
    argnums: int | Sequence[int] = 0,
    direction: Any = None,
    max_examples: int = 200,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = None,
    arg_names: Sequence[str] | None = None,
    kinks: Kinks | None = None,
) -> AuditReport:
    """Search for inputs and a direction where ``hvp_fn`` is not the Hessian-vector product of
    ``loss_fn``.

    Checks ``hvp_fn(*args, v)`` = H v, H the Hessian of ``loss_fn`` in ``args[argnums]``, as
    the gradient of <grad loss_fn(*args), v> (``jax.jvp`` inside ``jax.grad``, float64), with v
    drawn at random, by ``audit``'s engine.

    Parameters
    ----------
    hvp_fn : the candidate, ``hvp_fn(*args, v)`` -> H v, shaped like ``args[argnums]`` (a
        pytree such as ``MLPParams``; a tuple of them for several positions). Any Python code.
    loss_fn : the ground truth, a JAX-traceable scalar ``loss_fn(*args)``.
    args : a hypothesis strategy of argument tuples, or one concrete tuple.
    argnums : the position(s) of the arguments the Hessian is taken in (default 0).
    direction : with a concrete ``args`` tuple, the v to use (default: drawn from ``seed``).
    max_examples, rtol, atol, seed, arg_names, kinks : as for ``audit`` (the direction is
        named "v" in the report).

    Returns
    -------
    AuditReport : as ``audit``'s; the counterexample's last element is v. On a failure the
        diagnosis adds what the candidate's operator is (``operator_words``).

    Raises
    ------
    OracleRefusedError : the reference is not a float64 computation.
    AuditSpecError : malformed arguments (before any example is run).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from verification.auditing import named_arrays
    >>> loss = lambda w, x: jnp.sum(jnp.tanh(x @ w)) / x.shape[0]
    >>> def hvp(w, x, v):
    ...     t = np.tanh(x @ w)
    ...     return x.T @ (-2 * t * (1 - t**2) * (x @ v)) / x.shape[0]
    >>> shapes = named_arrays({"w": ("n",), "x": ("m", "n")}, bounds=(2.0,))
    >>> audit_hvp(hvp, loss, shapes, max_examples=20, seed=0).passed
    True
    >>> wrong = lambda w, x, v: x.T @ ((1 - np.tanh(x @ w) ** 2) * (x @ v)) / x.shape[0]
    >>> audit_hvp(wrong, loss, shapes, max_examples=20, seed=0).kind
    'mismatch'
    """
    if not callable(loss_fn):
        raise AuditSpecError(f"loss_fn must be a JAX function, got {type(loss_fn).__name__}")
    if not callable(hvp_fn):
        raise AuditSpecError(f"hvp_fn must be callable, got {type(hvp_fn).__name__}")
    if isinstance(args, st.SearchStrategy) and direction is not None:
        raise AuditSpecError("direction can be given only with a concrete args tuple")
    argnums_t = check_options(args, argnums, max_examples, rtol, atol)
    full = with_drawn(
        args,
        lambda inputs, s: (draw_direction(inputs, argnums_t, s),),
        given=None if direction is None else (direction,),
        seed=seed,
    )
    report = run_audit(
        hvp_fn,
        _directional(loss_fn, argnums_t),
        full,
        argnums=argnums_t,
        max_examples=max_examples,
        seed=seed,
        arg_names=None if arg_names is None else [*arg_names, "v"],
        policy=Policy(rtol=rtol, atol=atol),
        argnums_shown=argnums if isinstance(argnums, int) else argnums_t,
        kinks=kinks,
    )
    report.grad_fn = function_name(hvp_fn)
    report.loss_fn = function_name(loss_fn)
    report.title = (
        f"hvp audit of {report.grad_fn} against the Hessian of {report.loss_fn} "
        f"(argnums={report.argnums!r}, random direction v; reference jax.grad of jax.jvp)"
    )
    if report.kind == "mismatch" and report.counterexample is not None:
        *inputs, v = report.counterexample
        words = operator_words(hvp_fn, loss_fn, tuple(inputs), v, argnums_t, report.seed)
        if words:
            report.diagnosis = f"{report.diagnosis}; {words}" if report.diagnosis else words
    calls = ["from verification import audit_hvp"]
    options = f", argnums={report.argnums!r}"
    if kinks is not None:
        line, name = source(kinks)
        calls.append(line)
        options += f", kinks={name}"
    calls += [
        "print(grad_fn(*args))",
        f"print(audit_hvp(grad_fn, loss_fn, args[:-1], direction=args[-1]{options}))",
    ]
    report.reproducer_calls = calls
    return report
