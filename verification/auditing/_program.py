"""A reference program the audit can trust as float64: its arguments, its checks, its compilation.

``compile_program`` traces a JAX function at the highest matrix-product precision, refuses it
(``OracleRefusedError``) rather than give a verdict from a reference that is not a float64
computation, and compiles it with the XLA options that suit its size (``OPTIMISE_ABOVE``).
Refused: JAX's 64-bit mode off (everything would be float32, and on a GPU TF32 by default;
``float64_environment``), a loss function that computes in bfloat16 or float16, or asks for a
lower matrix-product precision explicitly, on a GPU/TPU. ``program_args`` gives the arguments
as the programs take them: float leaves in float64, fixed numbers (``Static``) part of the
program, never traced. Which programs run, and what they compute, is ``_oracle``'s (one
compiled program per ``shape_key``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax import tree_util

from verification import _xla
from verification.auditing._lowprec import is_float
from verification.auditing._profile import COMPILATION, TRACING, phase, record_program

__all__ = [
    "OPTIMISE_ABOVE",
    "PRECISION",
    "Environment",
    "OracleRefusedError",
    "Static",
    "compile_program",
    "environment",
    "float64_environment",
    "is_fixed",
    "is_large",
    "program_args",
    "same_args",
    "shape_key",
]

PRECISION = "highest"
_LOW_FLOATS = frozenset({"bfloat16", "float16"})
OPTIMISE_ABOVE = _xla.OPTIMISE_ABOVE
"""Elements (over all arguments) from which a problem is large (``verification._xla``): its
programs are compiled with XLA's full optimisation instead of ``_xla.fast_compile_options``,
and its finite differences run a forward-only program of their own instead of the second
opinion's (a program costs a fixed few tenths of a second to lower and load, which a small
problem's runs never win back)."""


class OracleRefusedError(RuntimeError):
    """The reference cannot be trusted as a float64 computation here, so no verdict is given."""


@dataclass(frozen=True)
class Environment:
    """What the reference ran on: recorded in every report."""

    jax_version: str
    backend: str
    x64: bool
    matmul_precision: str

    def __str__(self) -> str:
        x64 = "on" if self.x64 else "OFF"
        return (
            f"jax {self.jax_version}, backend {self.backend}, x64 {x64}, "
            f"matmul precision {self.matmul_precision}"
        )


def environment() -> Environment:
    """The current JAX environment, as the oracle would use it."""
    x64 = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]
    return Environment(jax.__version__, jax.default_backend(), x64, PRECISION)


def float64_environment() -> Environment:
    """``environment()``, where a float64 reference can run there.

    Raises
    ------
    OracleRefusedError : JAX's 64-bit mode is off.
    """
    env = environment()
    if not env.x64:
        raise OracleRefusedError(
            "JAX's 64-bit mode is off, so the reference would run in float32 (in TF32 on a "
            "GPU by default): `import verification` turns it on, or set "
            'jax.config.update("jax_enable_x64", True)'
        )
    return env


@tree_util.register_pytree_node_class
class Static:
    """A fixed non-array argument (a Python number): part of the compiled function's structure
    (compiled once per value), never traced, so the loss may use it as a shape or a stride."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def tree_flatten(self) -> tuple[tuple[()], Any]:
        return (), self.value

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> Static:
        return cls(aux)


def is_fixed(arg: Any) -> bool:
    """Whether ``arg`` is a fixed non-array argument (a Python int, float or bool)."""
    return isinstance(arg, (int, float, bool)) and not isinstance(arg, np.generic)


def _is_float(leaf: Any) -> bool:
    return is_float(np.asarray(leaf).dtype)


def _to64(leaf: Any) -> np.ndarray[Any, Any]:
    a = np.asarray(leaf)
    return a.astype(np.float64) if is_float(a.dtype) else a


def program_args(
    args: tuple[Any, ...], argnums: tuple[int, ...]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(``args`` as a program takes them: float leaves as float64 numpy arrays, fixed numbers
    as ``Static``; the differentiated part of them, at ``argnums``).

    Raises
    ------
    TypeError : a differentiated argument that does not hold float arrays only.
    """
    args64 = tuple(Static(a) if is_fixed(a) else tree_util.tree_map(_to64, a) for a in args)
    diff = tuple(args64[i] for i in argnums)
    for i, d in zip(argnums, diff, strict=True):
        leaves = tree_util.tree_leaves(d)
        if not leaves or not all(_is_float(leaf) for leaf in leaves):
            raise TypeError(f"argument {i} is differentiated, so it must hold float arrays")
    return args64, diff


def shape_key(tree: Any) -> Any:
    """What a compiled program is cached under: the tree's structure, its leaves' shapes and
    dtypes (a ``Static``'s value is part of the structure)."""
    leaves, treedef = tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(x), np.asarray(x).dtype.str) for x in leaves)


def same_args(a: Any, b: Any) -> bool:
    """Whether two argument trees have the same structure, shapes, dtypes and values."""
    leaves_a, def_a = tree_util.tree_flatten(a)
    leaves_b, def_b = tree_util.tree_flatten(b)
    return bool(def_a == def_b) and all(  # type: ignore[operator]
        np.shape(x) == np.shape(y)
        and np.asarray(x).dtype == np.asarray(y).dtype
        and np.array_equal(x, y)
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def is_large(args64: Any) -> bool:
    """Whether a problem has ``OPTIMISE_ABOVE`` elements or more (see there)."""
    return _xla.elements(args64) >= OPTIMISE_ABOVE


def _walk_jaxpr(jaxpr: Any) -> list[str]:
    """Reasons to distrust a float64 reference found in a jaxpr (recursing into sub-jaxprs)."""
    problems: list[str] = []
    accelerator = jax.default_backend() != "cpu"
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            dtype = getattr(getattr(var, "aval", None), "dtype", None)
            if dtype is not None and str(dtype) in _LOW_FLOATS:
                problems.append(f"{eqn.primitive} computes in {dtype}")
        if eqn.primitive.name == "dot_general" and accelerator:
            precision = eqn.params.get("precision")
            if precision is not None and "HIGHEST" not in str(precision):
                problems.append(f"dot_general asks for precision {precision}")
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    problems += _walk_jaxpr(inner)
    return problems


def compile_program(fn: Callable[..., Any], *example: Any, name: str) -> tuple[Any, float]:
    """(``jax.jit(fn)`` compiled for the shapes of ``example``, the seconds it took), traced at
    ``PRECISION``; recorded in the profile as the program ``name`` (``_profile``).

    Raises
    ------
    OracleRefusedError : the traced program computes in a low-precision float, or asks for a
        lower matrix-product precision on an accelerator.
    """
    start = time.perf_counter()
    # A persistent compilation cache that cannot be read or written (another process
    # evicted the entry) changes nothing about the result: not a reason to fail.
    with warnings.catch_warnings(), jax.default_matmul_precision(PRECISION):
        warnings.filterwarnings(
            "ignore", "Error (reading|writing) persistent compilation cache", UserWarning
        )
        if jax.config.jax_default_matmul_precision != PRECISION:  # type: ignore[attr-defined]  # pragma: no cover
            raise OracleRefusedError("could not set the matmul precision to 'highest'")
        with phase(TRACING):
            traced = jax.jit(fn).trace(*example)
            problems = _walk_jaxpr(traced.jaxpr.jaxpr)
            if problems:
                raise OracleRefusedError(
                    "the reference is not a float64 computation: " + "; ".join(problems[:3])
                )
            lowered = traced.lower()
        traced_at = time.perf_counter()
        # Small arrays: optimising the machine code costs more than it saves; large ones:
        # the optimised program runs up to twice as fast (``OPTIMISE_ABOVE``).
        options = {} if is_large(example[0]) else _xla.fast_compile_options()
        with phase(COMPILATION):
            try:
                compiled = lowered.compile(compiler_options=options)
            except Exception:  # pragma: no cover  (a backend without these options)
                compiled = lowered.compile()
    end = time.perf_counter()
    record_program(name, example[0], traced_at - start, end - traced_at)
    return compiled, end - start
