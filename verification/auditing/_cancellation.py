"""The size of the terms that cancel inside the reference's backward pass.

A gradient that comes out small (or exactly 0) may still be the difference of large terms: a
batch norm at batch size 1 computes dx = (g / sigma) (dxhat - mean(dxhat) - ...) with
terms near g / sqrt(eps), 835 for g = 2.6 and eps = 1e-5, whose exact difference is 0. A
correct implementation that forms the same terms in another order leaves a few ulp of 835
(1e-13), while a tolerance made from the size of the result (0) allows nothing. What rounding
can do depends on the size of what is added, not of the sum.

``summed_terms`` measures that size on the reference's own computation: the backward pass of
the loss (``jax.vjp``'s function, as a jaxpr), evaluated equation by equation, with the largest
|operand| of every sum it forms (``add``, ``sub``, ``add_any``, ``reduce_sum``, ``cumsum``) and
max|a| max|b| for a ``dot_general`` (a bound on its products). Sub-jaxprs of calls (``jit``,
``pjit``, ``closed_call``) are entered; other higher-order primitives (loops, conditionals) are
evaluated as they are, unmeasured. The forward pass is not measured: its values (logits of
1000 before a log-sum-exp) are residuals of the backward pass, not terms it sums.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

__all__ = ["summed_terms"]

_SUMS = frozenset({"add", "sub", "add_any", "reduce_sum", "cumsum", "dot_general"})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})


def _largest(x: Any) -> jax.Array:
    return jnp.max(jnp.abs(x), initial=0.0).astype(jnp.float64)


def _size_of_terms(name: str, operands: Sequence[Any]) -> jax.Array | None:
    floats = [x for x in operands if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
    if not floats:
        return None
    if name == "dot_general" and len(floats) == 2:
        return _largest(floats[0]) * _largest(floats[1])
    return jnp.max(jnp.stack([_largest(x) for x in floats]))


def _evaluate(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> tuple[list[Any], Any]:
    """(outputs of ``jaxpr``, the largest term it sums), by the rules of the module docstring."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    largest = jnp.zeros((), jnp.float64)
    for eqn in jaxpr.eqns:
        operands = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        sub = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
        if name in _CALLS and isinstance(sub, ClosedJaxpr):
            outs, inner = _evaluate(sub.jaxpr, sub.consts, operands)
            largest = jnp.maximum(largest, inner)
        else:
            result = eqn.primitive.bind(*operands, **eqn.params)  # type: ignore[no-untyped-call]
            outs = list(result) if eqn.primitive.multiple_results else [result]
        if name in _SUMS:
            size = _size_of_terms(name, operands)
            if size is not None:
                largest = jnp.maximum(largest, size)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars], largest


def summed_terms(loss: Callable[[Any], jax.Array], diff: Any) -> jax.Array:
    """The largest |term| summed in the backward pass of the scalar ``loss`` at ``diff``
    (module docstring): a float64 scalar, traceable (call it inside ``jax.jit``).

    >>> import numpy as np
    >>> x = np.array([[0.3, -1.2]])  # a batch of one: x - mean(x) is exactly 0
    >>> def bn(x):
    ...     return jnp.sum(2.6 * (x - x.mean(0)) / jnp.sqrt(x.var(0) + 1e-5))
    >>> float(jax.grad(bn)(x).max()), round(float(summed_terms(bn, x)))
    (0.0, 822)
    """
    value, vjp_fn = jax.vjp(loss, diff)
    closed = jax.make_jaxpr(vjp_fn)(jnp.ones_like(value))
    _, largest = _evaluate(closed.jaxpr, closed.consts, [jnp.ones_like(value)])
    return largest
