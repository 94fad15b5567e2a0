"""``audit_vjp``: audit a layer's backward function (a vector-Jacobian product) against ``jax.vjp``.

Layer code is written as ``backward(dout, cache) -> grads`` or ``backward(dout, *inputs)``: it
maps the cotangent of the layer's output to the gradients of its inputs, which is the
vector-Jacobian product of the forward function. ``jax.vjp(f, *inputs)[1](c)`` is exactly the
gradient of the scalar <f(inputs), c> with respect to the inputs, so this audit is ``audit`` of
that scalar, with the cotangent c drawn as one more argument: the same engine (search,
shrinking, guards, tolerance, diagnosis, report), nothing re-implemented.

The cotangent is drawn at random (standard normal from a drawn seed, in the output's dtype),
never a vector of ones: the sum of a layer's outputs hides every error whose columns cancel
(the softmax Jacobian's columns sum to zero, so sum(softmax(z)) has gradient 0 whatever the
backward does). The counterexample holds the cotangent as its last argument.

A ``torch.autograd.Function`` subclass can be given as ``backward``: it is applied to the
inputs as tensors and its backward run by ``torch.autograd.grad`` with the drawn cotangent, for
its differentiable float outputs only (an integer output, a support size, gets none; an output
of the reference that is not a float gets a zero cotangent and no term). Fixed numbers among
the inputs (``pad:=1 stride:=2``) stay Python numbers everywhere, the output's shape included.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import tree_util

from verification.auditing._audit import audit
from verification.auditing._cotangent import draw_cotangent, is_float_leaf, with_drawn
from verification.auditing._errors import AuditSpecError
from verification.auditing._kinks import Kinks, source
from verification.auditing._lowprec import is_float
from verification.auditing._report import AuditReport, _import_line, function_name
from verification.auditing._simplify import declare_domain, domain_of
from verification.auditing._stages import Stage

__all__ = ["audit_vjp"]


def _is_torch_function(fn: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(fn, type) and issubclass(fn, torch.autograd.Function)


def _differentiable(torch: Any, out: Any) -> bool:
    return isinstance(out, torch.Tensor) and out.is_floating_point() and out.requires_grad


def _torch_pairs(
    torch: Any, outs: Sequence[Any], cots: Sequence[Any]
) -> tuple[list[Any], list[Any]]:
    """The torch outputs that get a cotangent and their cotangents: by position where the
    reference has as many outputs, else the differentiable float outputs in order against the
    reference's float outputs. Outputs that are not float tensors requiring grad (an int
    count, an index tensor) have no derivative and get none.

    Raises
    ------
    AuditSpecError : the two cannot be paired (the audit's adapter, not the candidate, fails).
    """
    if len(outs) == len(cots):
        kept = [
            (o, torch.as_tensor(c))
            for o, c in zip(outs, cots, strict=True)
            if _differentiable(torch, o) and is_float(np.asarray(c).dtype)
        ]
        return [o for o, _ in kept], [c for _, c in kept]
    floats = [o for o in outs if _differentiable(torch, o)]
    float_cots = [torch.as_tensor(c) for c in cots if is_float(np.asarray(c).dtype)]
    if len(floats) != len(float_cots):
        raise AuditSpecError(
            f"the torch Function returned {len(outs)} output(s), {len(floats)} of them float "
            f"tensors requiring grad, but forward_ref returns {len(cots)} output(s), "
            f"{len(float_cots)} of them float: give forward_ref the same outputs"
        )
    return floats, float_cots


def _torch_vjp(function: Any, argnums: tuple[int, ...]) -> Callable[..., Any]:
    """``grad_fn(*inputs, cotangent)`` running ``function.apply`` and its ``backward``; only
    its differentiable float outputs get cotangents (``_torch_pairs``)."""
    import torch

    def grad_fn(*args: Any) -> tuple[Any, ...]:
        *inputs, cotangent = args
        tensors = [torch.tensor(np.asarray(x)) for x in inputs]
        for i in argnums:
            tensors[i].requires_grad_(True)
        out = function.apply(*tensors)  # the candidate's forward
        outs, cots = _torch_pairs(
            torch,
            out if isinstance(out, (tuple, list)) else (out,),
            tree_util.tree_leaves(cotangent),
        )
        grads = torch.autograd.grad(  # the candidate's backward
            outs, [tensors[i] for i in argnums], grad_outputs=cots, allow_unused=True
        )
        return tuple(None if g is None else g.detach().numpy() for g in grads)

    return grad_fn


def _candidate(
    backward: Any, forward: Callable[..., Any] | None, argnums: tuple[int, ...]
) -> Callable[..., Any]:
    """The candidate as the engine calls it: ``grad_fn(*inputs, cotangent)`` -> the gradients
    of ``inputs[argnums]`` (one array for one position, else a tuple)."""
    if _is_torch_function(backward):
        raw = _torch_vjp(backward, argnums)
    elif forward is not None:

        def raw(*args: Any) -> Any:
            _, cache = forward(*args[:-1])
            return backward(args[-1], cache)

    else:

        def raw(*args: Any) -> Any:
            return backward(args[-1], *args[:-1])

    def grad_fn(*args: Any) -> Any:
        result = raw(*args)
        n = len(args) - 1
        if isinstance(result, (tuple, list)) and len(result) == n and len(argnums) < n:
            result = tuple(result[i] for i in argnums)  # one gradient per input: keep argnums'
        if isinstance(result, (tuple, list)) and len(result) == 1 and len(argnums) == 1:
            return result[0]
        return result

    return grad_fn


@functools.cache
def _pairing(forward_ref: Callable[..., Any]) -> Callable[..., Any]:
    """<forward_ref(*inputs), cotangent> as a JAX scalar of ``(*inputs, cotangent)`` (one
    function object per reference, so the engine's compiled oracle is reused)."""

    def pairing(*args: Any) -> Any:
        out = tree_util.tree_leaves(forward_ref(*args[:-1]))
        cot = tree_util.tree_leaves(args[-1])
        # Outputs that are not floats (an index, a count) have no derivative: no term.
        pairs = [(o, c) for o, c in zip(out, cot, strict=True) if is_float_leaf(jnp.asarray(o))]
        return sum((jnp.sum(o * c) for o, c in pairs), start=0.0)

    pairing.__qualname__ = f"<{function_name(forward_ref)}, cotangent>"
    return pairing


def _argnums_words(argnums: int | Sequence[int], inputs: int) -> str:
    return (
        f"argnums {argnums!r} is out of range for the {inputs} inputs given (the cotangent is "
        "not one of them): count from 0"
    )


def audit_vjp(
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
    kinks: Kinks | None = None,
    stages: Mapping[str, Stage | str] | None = None,
    intermediates: Callable[..., Any] | None = None,
    replay: Sequence[tuple[Any, ...]] = (),
    order: int = 1,
    profile: bool = False,
    quick: bool = False,
    locate: bool = True,
) -> AuditReport:
    """Search for inputs and a cotangent where a layer's ``backward`` is not ``jax.vjp`` of
    ``forward_ref``.

    Checks ``backward`` = (c -> c^T J(inputs)) for the Jacobian J of ``forward_ref``, i.e. the
    gradient of <forward_ref(*inputs), c> with respect to ``inputs[argnums]``, by ``audit``'s
    engine, with c drawn at random.

    Parameters
    ----------
    backward : the candidate, one of
        ``backward(cotangent, *inputs) -> grads``;
        ``backward(cotangent, cache) -> grads`` with ``forward`` given (``forward(*inputs) ->
        (out, cache)``, the layer's own forward pass);
        a ``torch.autograd.Function`` subclass (its ``apply(*inputs)``, then its ``backward``
        through ``torch.autograd.grad``).
        ``grads``: one array per position in ``argnums`` (one array alone for one position), or
        one per input, of which those at ``argnums`` are checked.
    forward_ref : the ground truth, a JAX function ``forward_ref(*inputs)`` -> an array or a
        pytree of arrays (the cotangent has its shapes and dtypes).
    args : a hypothesis strategy of input tuples (e.g. ``named_arrays``), or one concrete tuple.
    forward : the candidate's forward pass returning ``(out, cache)`` (see ``backward``).
    argnums : the position(s) of the inputs whose gradients are checked (default 0).
    cotangent : with a concrete ``args`` tuple, the cotangent to use (default: drawn from
        ``seed``).
    max_examples, rtol, atol, seed, profile, quick : as for ``audit``.
    arg_names : names of the inputs for the report (the cotangent is named "cotangent").
    kinks : a ``Kinks`` declaration: my convention at these kinks is the reference's; inputs
        are aimed at them and disagreements there fail (see ``verification.auditing._kinks``).
    stages, intermediates : ``intermediates(*inputs, cotangent)`` -> the candidate's
        intermediate gradients by name, and ``stages``: name -> ``Stage`` (or a name of
        ``MLP_STAGES``), in backward order; on a failure the report names the stage that broke.
    replay : (``*inputs``, cotangent) tuples (earlier counterexamples) checked before any
        search, as for ``audit``.

    order : 2 audits the double backward instead: the gradient of <backward(c, inputs), w>
        with respect to the inputs and c, by torch's autograd (``backward`` differentiable in
        torch; ``verification.auditing._vjp2``; ``cotangent`` is then the pair (c, w)).
    locate : on a mismatch, name the line of ``backward`` (or of the helpers it calls) where
        the error enters (as ``audit``'s).

    Returns
    -------
    AuditReport : as ``audit``'s; the counterexample's last element is the cotangent.

    Raises
    ------
    OracleRefusedError : the reference is not a float64 computation.
    AuditSpecError : malformed arguments (before any example is run).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from verification.auditing import named_arrays
    >>> def tanh_backward(dout, z):
    ...     return dout * (1 - np.tanh(z) ** 2)
    >>> shapes = named_arrays({"z": ("m", "h")}, bounds=(3.0,))
    >>> audit_vjp(tanh_backward, jnp.tanh, shapes, max_examples=20, seed=0).passed
    True
    >>> report = audit_vjp(lambda dout, z: dout * (1 - np.tanh(z)), jnp.tanh, shapes, seed=0)
    >>> report.passed, report.kind
    (False, 'mismatch')
    """
    if not callable(forward_ref):
        raise AuditSpecError(
            f"forward_ref must be a JAX function, got {type(forward_ref).__name__}"
        )
    if not (callable(backward) or _is_torch_function(backward)):
        raise AuditSpecError(f"backward must be callable, got {type(backward).__name__}")
    if isinstance(args, st.SearchStrategy) and cotangent is not None:
        raise AuditSpecError("cotangent can be given only with a concrete args tuple")
    if not isinstance(args, (st.SearchStrategy, tuple)):
        raise AuditSpecError(
            f"args must be a hypothesis strategy or a tuple, got {type(args).__name__}"
        )
    if order == 2 and kinks is None and stages is None and intermediates is None:
        from verification.auditing._vjp2 import audit_double_backward

        return audit_double_backward(
            backward, forward_ref, args, forward=forward, argnums=argnums, cotangent=cotangent,
            max_examples=max_examples, rtol=rtol, atol=atol, seed=seed, arg_names=arg_names,
        )  # fmt: skip
    if order == 2:
        raise AuditSpecError("order=2 takes no kinks, stages or intermediates (first order only)")
    if order != 1:
        raise AuditSpecError(f"order must be 1 or 2, got {order!r}")
    argnums_t = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    domain = domain_of(args) if isinstance(args, st.SearchStrategy) else None
    inputs = len(args) if isinstance(args, tuple) else None if domain is None else len(domain)
    if inputs is not None and argnums_t and max(argnums_t, default=0) >= inputs:
        raise AuditSpecError(_argnums_words(argnums, inputs))
    grad_fn = _candidate(backward, forward, argnums_t)

    def drawn_cotangent(inputs: tuple[Any, ...], cot_seed: int) -> tuple[Any, ...]:
        if max(argnums_t, default=0) >= len(inputs):  # a strategy without a declared domain
            raise AuditSpecError(_argnums_words(argnums, len(inputs)))
        return (draw_cotangent(forward_ref, inputs, cot_seed),)

    full = with_drawn(
        args, drawn_cotangent, given=None if cotangent is None else (cotangent,), seed=seed
    )
    if isinstance(full, st.SearchStrategy):
        full = declare_domain(full, None if domain is None else (*domain, None))
    names = None if arg_names is None else [*arg_names, "cotangent"]
    report = audit(
        grad_fn,
        _pairing(forward_ref),
        full,
        argnums=argnums,
        max_examples=max_examples,
        rtol=rtol,
        atol=atol,
        seed=seed,
        arg_names=names,
        kinks=kinks,
        stages=stages,
        intermediates=intermediates,
        replay=replay,
        profile=profile,
        quick=quick,
        locate=locate,
    )
    report.grad_fn = function_name(backward)
    report.loss_fn = function_name(forward_ref)
    report.title = (
        f"vjp audit of {report.grad_fn} against jax.vjp of {report.loss_fn} "
        f"(argnums={report.argnums!r}, random cotangent)"
    )
    calls = ["from verification import audit_vjp"]
    options = report.call_options(report.arg_names[:-1])
    if kinks is not None:
        line, name = source(kinks)
        calls.append(line)
        options += f", kinks={name}"
    forward_arg = ""
    if forward is not None:
        calls.append(_import_line(function_name(forward), "forward"))
        forward_arg = ", forward=forward"
    call_args = (
        "fresh[-1], *fresh[:-1]" if forward is None else "fresh[-1], forward(*fresh[:-1])[1]"
    )
    if not _is_torch_function(backward):  # on a copy: it may change its input
        calls += ["fresh = copy.deepcopy(args)", f"print(grad_fn({call_args}))"]
    calls.append(
        f"print(audit_vjp(grad_fn, loss_fn, args[:-1], cotangent=args[-1]{forward_arg}{options}))"
    )
    report.reproducer_calls = calls
    return report
