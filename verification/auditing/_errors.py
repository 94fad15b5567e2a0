"""``AuditSpecError``: what the user gave the audit cannot be used (not a verdict on the candidate).

Raised before the candidate is called on an input: a loss that cannot be evaluated there (a
wrong signature, a non-scalar result, numpy code that JAX cannot trace, an exception inside),
arguments that do not fit the loss, bad options (``argnums`` out of range, ``max_examples`` < 1,
a tolerance that is negative). The message names what is wrong and how to fix it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import tree_util

__all__ = ["AuditSpecError", "loss_error", "shapes_text"]


class AuditSpecError(ValueError):
    """The audit's inputs (loss, arguments, options) are unusable; the candidate is not blamed."""


def shapes_text(args: tuple[Any, ...], names: list[str]) -> str:
    """``x: (2, 3) float64, lam: 0.1`` for the report and the error messages."""
    parts = []
    for name, arg in zip(names, args, strict=False):
        leaves = tree_util.tree_leaves(arg)
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            parts.append(f"{name}: {arg!r}")
        elif len(leaves) == 1 and leaves[0] is arg:
            parts.append(f"{name}: {np.shape(arg)} {np.asarray(arg).dtype}")
        else:
            parts.append(f"{name}: a {type(arg).__name__} of {len(leaves)} arrays")
    return ", ".join(parts)


_NOT_TRACEABLE = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


def loss_error(
    loss_fn: Callable[..., Any], args: tuple[Any, ...], names: list[str], error: Exception
) -> AuditSpecError:
    """The ``AuditSpecError`` for ``error``, raised when the reference evaluated ``loss_fn``."""
    shapes = shapes_text(args, names)
    try:
        inspect.signature(loss_fn).bind(*args)
    except TypeError as bind_error:
        return AuditSpecError(
            f"loss_fn does not take the {len(args)} arguments the spec gives ({shapes}): "
            f"{bind_error}; make the spec list the loss's arguments in order"
        )
    except ValueError:  # pragma: no cover  (a callable without a signature: call it anyway)
        pass
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, _NOT_TRACEABLE):
        return AuditSpecError(
            "loss_fn is not JAX-traceable (it turns a traced array into a numpy array or a "
            f"Python value: {type(error).__name__}); write it with jax.numpy"
        )
    if "scalar" in first and "output" in first:
        return AuditSpecError(
            f"loss_fn must return a scalar (one number), but on ({shapes}) it does not: "
            "sum or average it; a layer? audit its backward against this function with "
            "audit_vjp (python -m verification audit-vjp)"
        )
    return AuditSpecError(
        f"loss_fn raised {type(error).__name__} on arguments ({shapes}): {first}; check that "
        "the spec's shapes and kinds fit the loss"
    )
