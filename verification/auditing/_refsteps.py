"""The reference's steps one at a time: the local derivatives of its elementwise steps, and
the part of a value's gradient through each of its uses.

``reference_quantities(loss_fn, args, argnums, arg_names)`` is every quantity the locator
matches: those ``_refquant`` walked, and what single
steps say: for each elementwise step its local derivatives (``Quantity.derivatives``), and for
a value used by more than one step the vector-Jacobian product of each use (kind
``"gradient"``: the part of dL/dw through a penalty w**2, next to the part through x @ w).

Ground truth only: nothing here imports or shares code with what it checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from verification.auditing._program import PRECISION
from verification.auditing._refquant import (
    INLINED,
    Quantity,
    Step,
    bind,
    gradient_name,
    is_float,
    walked_quantities,
)

__all__ = ["contributions", "elementwise", "reference_quantities"]


def reference_quantities(
    loss_fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
) -> list[Quantity]:
    """Every intermediate of ``loss_fn(*args)``, its gradient, the inputs and their gradients
    (``walked_quantities``), with each elementwise step's local derivatives and the part of a
    value's gradient through each of its uses (``contributions``).

    Shapes: each quantity has its own shape; values are float64 numpy arrays (inputs of
    another float dtype are converted to float64 first, as the oracle does). Raises whatever
    the loss raises.
    """
    quantities = walked_quantities(loss_fn, args, argnums, arg_names)
    return quantities + contributions(quantities)


_ELEMENTWISE = frozenset(
    [
        "abs",
        "add",
        "and",
        "atan2",
        "ceil",
        "clamp",
        "convert_element_type",
        "cos",
        "div",
        "eq",
        "erf",
        "exp",
        "exp2",
        "expm1",
        "floor",
        "ge",
        "gt",
        "integer_pow",
        "is_finite",
        "le",
        "log",
        "log1p",
        "logistic",
        "lt",
        "max",
        "min",
        "mul",
        "ne",
        "neg",
        "nextafter",
        "not",
        "or",
        "pow",
        "round",
        "rsqrt",
        "select_n",
        "sign",
        "sin",
        "sqrt",
        "square",
        "stop_gradient",
        "sub",
        "tan",
        "tanh",
    ]
)


def elementwise(eqn: Any) -> bool:
    """Whether ``eqn`` acts element by element (a library function made of such steps, like
    ``jax.nn.relu``, counts)."""
    name = eqn.primitive.name
    if name in _ELEMENTWISE:
        return True
    if name == "broadcast_in_dim":  # a scalar made into an array, as inside jnp.where
        return not eqn.invars[0].aval.shape
    inner = eqn.params.get("call_jaxpr") or eqn.params.get("jaxpr")
    if inner is None or name not in ("custom_jvp_call", "custom_vjp_call", *INLINED):
        return False
    jaxpr = getattr(inner, "jaxpr", inner)
    return all(elementwise(e) for e in jaxpr.eqns)


def contributions(quantities: list[Quantity]) -> list[Quantity]:
    """For a value used by more than one step, the part of its gradient through each use:
    the step's vector-Jacobian product of its output's gradient (kind "gradient"; e.g. the
    part of dL/dw through a penalty w**2, next to the part through x @ w). And, for each
    elementwise step, its local derivatives (``Quantity.derivatives``). One compiled call."""
    by_key = {q.key: q for q in quantities}
    uses: dict[tuple[Any, ...], list[tuple[Quantity, int]]] = {}
    for q in quantities:
        if q.kind == "value" and q.step is not None:
            for position, in_key in enumerate(q.step.input_keys):
                if in_key is not None and is_float(q.step.inputs[position]):
                    uses.setdefault(in_key, []).append((q, position))
    jobs: list[tuple[Step, int, Any]] = []
    made: list[tuple[str, Quantity, int, tuple[Any, ...]]] = []
    for in_key, used in uses.items():
        for q, position in used:
            assert q.step is not None
            smooth = elementwise(q.step.eqn) and is_float(q.value)  # not a comparison's bool
            if smooth and np.shape(q.step.inputs[position]) == q.value.shape:
                jobs.append((q.step, position, None))
                made.append(("derivative", q, position, in_key))
            source = by_key.get(in_key)
            cot = by_key.get(("gradient", *q.key[1:]))
            if source is None or cot is None or len({id(u.step) for u, _ in used}) < 2:
                continue
            if q.step.eqn.primitive.multiple_results:
                continue
            jobs.append((q.step, position, cot.value))
            made.append(("part", q, position, in_key))
    results = _pullbacks(jobs)
    out: list[Quantity] = []
    for (kind, q, position, in_key), result in zip(made, results, strict=True):
        if result is None:
            continue
        if kind == "derivative":
            q.derivatives[position] = result
            continue
        source = by_key[in_key]
        key = ("gradient", "part", in_key, q.key, position)
        name = f"the part of {gradient_name(source.name)} through {q.name}"
        out.append(Quantity(key, "gradient", result, name, q.file, q.line, q.source, of=in_key))
    return out


def _pullbacks(jobs: list[tuple[Step, int, Any]]) -> list[np.ndarray[Any, Any] | None]:
    """For each (step, position, cotangent): the step's vector-Jacobian product with respect
    to input ``position`` at ``cotangent``, or (cotangent None) its forward-mode derivative
    along ones; all in one compiled call (None where JAX cannot)."""
    if not jobs:
        return []
    arrays = [[np.asarray(x) if is_float(x) else x for x in step.inputs] for step, _, _ in jobs]
    cots = [c for _, _, c in jobs]

    def one(step: Step, position: int, ins: list[Any], cot: Any) -> Any:
        def f(v: Any) -> Any:
            return bind(step.eqn, [*ins[:position], v, *ins[position + 1 :]])

        if cot is None:
            return jax.jvp(f, (ins[position],), (jnp.ones_like(ins[position]),))[1]
        return jax.vjp(f, ins[position])[1](cot)[0]

    def all_of(arrays_in: list[list[Any]], cots_in: list[Any]) -> list[Any]:
        return [
            one(step, position, ins, cot)
            for (step, position, _), ins, cot in zip(jobs, arrays_in, cots_in, strict=True)
        ]

    with jax.default_matmul_precision(PRECISION):
        try:
            results = jax.jit(all_of)(arrays, cots)
        except Exception:
            return [None] * len(jobs)
    return [np.asarray(r) for r in results]
