"""``audit_vjp(..., order=2)``: audit a layer's double backward (the VJP of its backward).

A backward function maps (inputs, dout) to the gradients g of the inputs, the vector-Jacobian
product of the forward. Its own derivative is what ``create_graph=True`` relies on (gradient
penalties, Hessian-vector products, meta-learning): the gradient of the scalar <g(inputs, dout), w>
with respect to the inputs and to dout. ``jax.vjp`` gives the ground truth of g, so the
reference is ``jax.grad`` of <vjp(forward_ref)(dout), w> (float64), and this audit is the
engine's gradient audit of that scalar with dout and w drawn (standard normal, never ones) as
two more arguments, in front: the counterexample is (cotangent, w, *inputs), the order of
``backward(dout, *inputs)``.

The candidate's second derivative is taken by PyTorch's autograd, so the backward must be
differentiable in torch: a ``torch.autograd.Function`` subclass (its backward run with
``create_graph=True``), or ``backward(dout, *inputs)`` / ``backward(dout, cache)`` written with
torch operations.

On a failure the report's ``stage`` says which stage broke at the counterexample: the first
order (the backward itself, against ``jax.vjp``), or the second order with respect to dout or
to each input. For a ``torch.autograd.Function`` whose second order is wrong with respect to its
inputs, the diagnosis names a tensor that ``forward`` saved which is neither an input nor an
output, where there is one: computed without autograd recording, it is a constant to double
backward, and its dependence on the inputs is lost (pytorch#76185).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import tree_util

from verification.auditing._audit import check_options
from verification.auditing._check import Policy
from verification.auditing._cotangent import draw_cotangent, with_drawn
from verification.auditing._engine import oracle_for, run_audit
from verification.auditing._errors import AuditSpecError
from verification.auditing._hvp import draw_direction
from verification.auditing._report import AuditReport, function_name
from verification.compare import compare_trees

__all__ = ["audit_double_backward"]


def _is_torch_function(fn: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(fn, type) and issubclass(fn, torch.autograd.Function)


def _chosen(grads: Any, n: int, argnums: tuple[int, ...]) -> list[Any]:
    """The gradients at ``argnums`` from a backward's result (one per input, or one per
    position in ``argnums``, or one array alone)."""
    result = list(grads) if isinstance(grads, (tuple, list)) else [grads]
    if len(result) == n and len(argnums) < n:
        result = [result[i] for i in argnums]
    return result


def _runner(
    backward: Any, forward: Callable[..., Any] | None, argnums: tuple[int, ...]
) -> Callable[..., tuple[list[Any], tuple[Any, ...]]]:
    """``run(dout, w, *inputs) -> (first order g as numpy, second order as the engine wants:
    one like dout, then one gradient per position in argnums)``, all by torch's autograd."""

    def run(*args: Any) -> tuple[list[Any], tuple[Any, ...]]:
        import torch

        dout, w, *inputs = args
        xs = [torch.tensor(np.asarray(a)) for a in inputs]
        for i in argnums:
            xs[i].requires_grad_(True)
        dout_leaves, dout_def = tree_util.tree_flatten(dout)
        douts = [torch.tensor(np.asarray(d), requires_grad=True) for d in dout_leaves]
        if _is_torch_function(backward):
            out = backward.apply(*xs)
            outs = out if isinstance(out, tuple) else (out,)
            grads: Any = torch.autograd.grad(
                outs, [xs[i] for i in argnums], douts, create_graph=True, allow_unused=True
            )
        elif forward is not None:
            grads = backward(tree_util.tree_unflatten(dout_def, douts), forward(*xs)[1])
        else:
            grads = backward(tree_util.tree_unflatten(dout_def, douts), *xs)
        g = _chosen(grads, len(xs), argnums)
        ws = tree_util.tree_leaves(w if len(argnums) > 1 else (w,))
        terms = [
            (gi * torch.as_tensor(np.asarray(wi))).sum()
            for gi, wi in zip(g, ws, strict=True)
            if gi is not None and gi.requires_grad
        ]
        targets = [xs[i] for i in argnums] + douts
        second: list[Any] = [None] * len(targets)
        if terms:
            second = list(torch.autograd.grad(sum(terms), targets, allow_unused=True))
        arrays = [
            np.zeros(tuple(t.shape), dtype=np.asarray(src).dtype)
            if s is None
            else s.detach().numpy()
            for s, t, src in zip(
                second, targets, [inputs[i] for i in argnums] + dout_leaves, strict=True
            )
        ]
        first = [None if gi is None else gi.detach().numpy() for gi in g]
        by_position = arrays[: len(argnums)]
        return first, (tree_util.tree_unflatten(dout_def, arrays[len(argnums) :]), *by_position)

    return run


@functools.cache
def _second_pairing(
    forward_ref: Callable[..., Any], argnums: tuple[int, ...]
) -> Callable[..., Any]:
    """<vjp(forward_ref)(dout)[argnums], w> as a JAX scalar of ``(dout, w, *inputs)``."""

    def pairing(*args: Any) -> Any:
        dout, w, *inputs = args

        def moved(*xs: Any) -> Any:
            full = list(inputs)
            for i, x in zip(argnums, xs, strict=True):
                full[i] = x
            return forward_ref(*full)

        _, pullback = jax.vjp(moved, *(inputs[i] for i in argnums))
        grads = pullback(dout)
        ws = tree_util.tree_leaves(w if len(argnums) > 1 else (w,))
        return sum(jnp.sum(g * wi) for g, wi in zip(tree_util.tree_leaves(grads), ws, strict=True))

    pairing.__qualname__ = f"<vjp of {function_name(forward_ref)}, w>"
    return pairing


def _stage(
    run: Callable[..., tuple[list[Any], tuple[Any, ...]]],
    forward_ref: Callable[..., Any],
    report: AuditReport,
    argnums: tuple[int, ...],
    names: Sequence[str],
) -> tuple[str, bool]:
    """(the stage that broke at the counterexample, whether the second order is wrong with
    respect to an input), measured against ``jax.vjp`` and the engine's oracle."""
    args = report.counterexample or ()
    dout, _, *inputs = args
    rtol, atol = report.rtol or 0.0, report.atol or 0.0
    first, second = run(*args)
    inputs64 = [
        np.asarray(a, np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating) else a
        for a in inputs
    ]
    dout64 = tree_util.tree_map(lambda d: np.asarray(d, np.float64), dout)
    _, pullback = jax.vjp(lambda *xs: forward_ref(*xs), *inputs64)
    expected_first = [np.asarray(pullback(dout64)[i]) for i in argnums]
    first_ok = all(
        f is not None and compare_trees(f, e, rtol=max(rtol, 1e-12), atol=atol).passed
        for f, e in zip(first, expected_first, strict=True)
    )
    engine_argnums = _engine_argnums(argnums)
    _, ref = oracle_for(_second_pairing(forward_ref, argnums), engine_argnums).gradient(args)
    got = tree_util.tree_leaves(second)
    wrong = [
        k for k, (g, r) in enumerate(zip(got, ref, strict=True))
        if not compare_trees(g, r, rtol=rtol, atol=atol).passed
    ]  # fmt: skip
    n_dout = len(got) - len(argnums)
    labels = ["cotangent"] * n_dout + [names[i] for i in argnums]
    wrong_names = sorted({labels[k] for k in wrong}, key=labels.index)
    right_names = sorted(set(labels) - set(wrong_names), key=labels.index)
    head = (
        "first order right (the backward agrees with jax.vjp here)"
        if first_ok
        else "first order already wrong (the backward differs from jax.vjp here)"
    )
    text = f"{head}; second order wrong with respect to {', '.join(wrong_names) or 'nothing'}"
    if right_names:
        text += f", right with respect to {', '.join(right_names)}"
    return text, first_ok and any(k >= n_dout for k in wrong)


def _engine_argnums(argnums: tuple[int, ...]) -> tuple[int, ...]:
    """The engine differentiates dout (position 0) and the inputs at ``argnums`` (shifted by
    the two arguments in front, dout and w)."""
    return (0, *(i + 2 for i in argnums))


def _saved_intermediates(function: Any, inputs: Sequence[Any]) -> list[tuple[int, ...]]:
    """Shapes of the tensors ``function.forward`` saved that are neither an input nor an
    output (compared by storage), measured on one call."""
    import torch

    xs = [torch.tensor(np.asarray(a), requires_grad=True) for a in inputs]
    out = function.apply(*xs)
    outs = out if isinstance(out, tuple) else (out,)
    node = outs[0].grad_fn
    try:
        saved = list(node.saved_tensors)
    except (AttributeError, RuntimeError):
        return []
    known = {t.untyped_storage().data_ptr() for t in [*xs, *outs]}
    return [tuple(t.shape) for t in saved if t.untyped_storage().data_ptr() not in known]


def audit_double_backward(
    backward: Any,
    forward_ref: Callable[..., Any],
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    *,
    forward: Callable[..., Any] | None = None,
    argnums: int | Sequence[int] = 0,
    cotangent: Any = None,
    max_examples: int = 200,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = None,
    arg_names: Sequence[str] | None = None,
) -> AuditReport:
    """``audit_vjp(..., order=2)``: search for inputs, dout and w where the gradient of
    <backward(dout, inputs), w> with respect to the inputs and dout is not JAX's.

    Arguments as for ``audit_vjp``, which has validated them and dispatches here; ``backward``
    must be differentiable in torch (module docstring). With a concrete ``args`` tuple,
    ``cotangent`` is the pair (dout, w) (default: both drawn from ``seed``). Kinks and stages of intermediates are first-order options, not
    taken here. Returns the engine's ``AuditReport``, whose counterexample is
    (cotangent, w, *inputs); on a failure its ``stage`` names the stage that broke.
    """
    if cotangent is not None and not (isinstance(cotangent, tuple) and len(cotangent) == 2):
        raise AuditSpecError("with order=2, cotangent must be the pair (dout, w)")
    argnums_t = check_options(args, argnums, max_examples, rtol, atol)
    full = with_drawn(
        args,
        lambda inputs, s: (
            draw_cotangent(forward_ref, inputs, s),
            draw_direction(inputs, argnums_t, s + 1),
        ),
        given=cotangent,
        seed=seed,
        front=True,
        seeds=2,
    )
    run = _runner(backward, forward, argnums_t)

    def second_order(*a: Any) -> tuple[Any, ...]:
        return run(*a)[1]

    second_order.__qualname__ = function_name(backward).split(":")[-1]
    names = list(arg_names) if arg_names is not None else None
    report = run_audit(
        second_order,
        _second_pairing(forward_ref, argnums_t),
        full,
        argnums=_engine_argnums(argnums_t),
        max_examples=max_examples,
        seed=seed,
        arg_names=["cotangent", "w", *(names or [])],
        policy=Policy(rtol=rtol, atol=atol),
        argnums_shown=argnums if isinstance(argnums, int) else argnums_t,
    )
    report.grad_fn = function_name(backward)
    report.loss_fn = function_name(forward_ref)
    report.title = (
        f"double-backward audit of {report.grad_fn} against jax.vjp of {report.loss_fn} "
        f"(argnums={report.argnums!r}: the gradient of <backward(cotangent, inputs), w> with "
        "respect to the inputs and the cotangent, both drawn at random)"
    )
    if report.kind == "mismatch" and report.counterexample is not None:
        n = len(report.counterexample) - 2
        shown = names or [f"args[{i}]" for i in range(n)]
        report.stage, input_wrong = _stage(run, forward_ref, report, argnums_t, shown)
        if input_wrong and _is_torch_function(backward):
            saved = _saved_intermediates(backward, report.counterexample[2:])
            if saved:
                words = (
                    f"forward saved {len(saved)} tensor(s) that are neither an input nor an "
                    f"output (shape {saved[0]}): computed without autograd recording, they are "
                    "constants to double backward, so the second derivative loses their "
                    "dependence on the inputs (the pattern of pytorch#76185); save the inputs "
                    "(or outputs) and recompute the intermediate inside backward"
                )
                report.diagnosis = f"{report.diagnosis}; {words}" if report.diagnosis else words
    report.reproducer_calls = [
        "from verification import audit_vjp",
        "print(audit_vjp(grad_fn, loss_fn, args[2:], cotangent=(args[0], args[1]), "
        f"argnums={report.argnums!r}, order=2))",
    ]
    return report
