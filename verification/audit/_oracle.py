"""The audit's ground truth: ``jax.grad`` in float64 at the highest matrix-product precision.

Every example needs only the loss and ``jax.value_and_grad`` in float64, jitted once per
combination of argument shapes (compiled code cached for the life of the process, across
audits: compiling costs 0.2 to 1 s per shape on this machine, a call 0.3 ms). Where the
candidate fails the first, strict comparison, ``second_opinion`` (compiled per shape on first
need) adds in one call:

* ``jax.jvp`` along a random unit direction v (forward mode: a second opinion on the
  reverse-mode reference, compared with <grad, v>);
* the same gradient computed in float32 (used by the tolerance rule: how much rounding this
  input amplifies, see ``_tolerance``);
* the loss at x +- s v (a secant slope: the scale of the gradient near x).

Where the candidate still fails, float64 central finite differences along the direction of the
disagreement (``directional_fd``) decide whether the reference is confirmed.

The oracle refuses to run (``OracleRefusedError``) rather than give a verdict from a reference that
is not a float64 computation: JAX's 64-bit mode off (everything would be float32, and on a GPU
TF32 by default), a result that is not float64, or a loss function that computes in bfloat16 or
float16, or asks for a lower matrix-product precision explicitly, on a GPU/TPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

import verification.reference  # noqa: F401  (turns on 64-bit JAX, as every reference needs)

__all__ = ["Environment", "Oracle", "OracleRefusedError", "SecondOpinion", "environment"]

PRECISION = "highest"
_LOW_FLOATS = frozenset({"bfloat16", "float16"})
_FD_STEPS = 12
"""Number of steps in the finite-difference ladder (h = s 4^-j, j = 0..11)."""


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


@dataclass(frozen=True)
class SecondOpinion:
    """What the oracle adds where the candidate fails the first comparison."""

    grad32: list[np.ndarray[Any, np.dtype[np.float64]]]
    grad_dot_v: float
    jvp: float
    secant: float


def _is_float(leaf: Any) -> bool:
    return bool(np.issubdtype(np.asarray(leaf).dtype, np.floating))


def _to64(leaf: Any) -> np.ndarray[Any, Any]:
    a = np.asarray(leaf)
    return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a


def _to32(leaf: jax.Array) -> jax.Array:
    return leaf.astype(jnp.float32) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf


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


class Oracle:
    """``loss_fn``'s float64 gradient with respect to ``args[argnums]``, compiled per shape.

    Parameters
    ----------
    loss_fn : a JAX-traceable function ``loss_fn(*args) -> scalar``.
    argnums : the positions of the arguments to differentiate (each a pytree of float arrays).

    Raises
    ------
    OracleRefusedError : if JAX's 64-bit mode is off.
    """

    def __init__(self, loss_fn: Callable[..., Any], argnums: tuple[int, ...]) -> None:
        env = environment()
        if not env.x64:
            raise OracleRefusedError(
                "JAX's 64-bit mode is off, so the reference would run in float32 (in TF32 on a "
                "GPU by default): `import verification` turns it on, or set "
                'jax.config.update("jax_enable_x64", True)'
            )
        self.loss_fn = loss_fn
        self.argnums = argnums
        self.env = env
        self._grads: dict[Any, Any] = {}
        self._seconds: dict[Any, Any] = {}
        self.compile_seconds = 0.0
        self.run_seconds = 0.0
        self.compilations = 0

    # -- building blocks traced by JAX ---------------------------------------------------
    def _loss_at(self, args: tuple[Any, ...], diff: tuple[Any, ...]) -> jax.Array:
        full = list(args)
        for i, value in zip(self.argnums, diff, strict=True):
            full[i] = value
        return jnp.asarray(self.loss_fn(*full))

    def _grad_fn(self, args: tuple[Any, ...]) -> tuple[jax.Array, Any]:
        diff = tuple(args[i] for i in self.argnums)
        return jax.value_and_grad(lambda d: self._loss_at(args, d))(diff)

    def _second_fn(
        self, args: tuple[Any, ...], v: tuple[Any, ...], steps: jax.Array
    ) -> tuple[Any, ...]:
        """(loss, jvp along v, float32 gradient, losses at x + h v for h in steps and -steps)."""
        diff = tuple(args[i] for i in self.argnums)

        def loss(d: tuple[Any, ...]) -> jax.Array:
            return self._loss_at(args, d)

        value, jvp = jax.jvp(loss, (diff,), (v,))
        args32 = tree_util.tree_map(_to32, args)
        diff32 = tuple(args32[i] for i in self.argnums)
        grad32 = jax.grad(lambda d: self._loss_at(args32, d))(diff32)

        def at(h: jax.Array) -> jax.Array:
            return loss(tree_util.tree_map(lambda a, b: a + h * b, diff, v))

        moved = jax.lax.map(at, jnp.concatenate([steps, -steps]))
        return value, jvp, grad32, moved

    # -- compilation -------------------------------------------------------------------
    def _compile(self, fn: Callable[..., Any], *example: Any) -> Any:
        start = time.perf_counter()
        with jax.default_matmul_precision(PRECISION):
            if jax.config.jax_default_matmul_precision != PRECISION:  # type: ignore[attr-defined]  # pragma: no cover
                raise OracleRefusedError("could not set the matmul precision to 'highest'")
            traced = jax.jit(fn).trace(*example)
            problems = _walk_jaxpr(traced.jaxpr.jaxpr)
            if problems:
                raise OracleRefusedError(
                    "the reference is not a float64 computation: " + "; ".join(problems[:3])
                )
            compiled = traced.lower().compile()
        self.compile_seconds += time.perf_counter() - start
        self.compilations += 1
        return compiled

    @staticmethod
    def _key(tree: Any) -> Any:
        leaves, treedef = tree_util.tree_flatten(tree)
        return treedef, tuple((np.shape(x), np.asarray(x).dtype.str) for x in leaves)

    # -- public ------------------------------------------------------------------------
    def prepare(self, args: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(args as float64 numpy leaves, the differentiated part of them)."""
        args64 = tree_util.tree_map(_to64, tuple(args))
        diff = tuple(args64[i] for i in self.argnums)
        for i, d in zip(self.argnums, diff, strict=True):
            if not all(_is_float(leaf) for leaf in tree_util.tree_leaves(d)):
                raise TypeError(f"argument {i} is differentiated, so it must hold float arrays")
        return args64, diff

    def _run(self, cache: dict[Any, Any], fn: Callable[..., Any], *example: Any) -> Any:
        key = self._key(example)
        compiled = cache.get(key)
        if compiled is None:
            compiled = cache[key] = self._compile(fn, *example)
        start = time.perf_counter()
        out = tree_util.tree_map(np.asarray, compiled(*example))
        self.run_seconds += time.perf_counter() - start
        return out

    def gradient(
        self, args: tuple[Any, ...]
    ) -> tuple[float, list[np.ndarray[Any, np.dtype[np.float64]]]]:
        """(loss, gradient leaves): ``jax.value_and_grad`` in float64 at ``args``.

        Raises
        ------
        OracleRefusedError : if the gradient does not come back as float64.
        """
        args64, _ = self.prepare(args)
        value, grad = self._run(self._grads, self._grad_fn, args64)
        leaves = [np.asarray(g) for g in tree_util.tree_leaves(grad)]
        if any(g.dtype != np.float64 for g in leaves):
            found = sorted({str(g.dtype) for g in leaves})
            raise OracleRefusedError(f"the reference gradient came back as {found}, not float64")
        return float(value), leaves

    def _along(
        self, args: tuple[Any, ...], v: Sequence[np.ndarray[Any, Any]]
    ) -> tuple[float, float, Any, np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The compiled second-opinion function at ``args`` along ``v``, with the steps s (for
        the secant) and then the finite-difference ladder 0.1 s 4^-j, s = max(1, |x|)."""
        args64, diff = self.prepare(args)
        diff_leaves, diff_def = tree_util.tree_flatten(diff)
        v_tree = tree_util.tree_unflatten(diff_def, [np.asarray(x, np.float64) for x in v])
        scale = max([1.0] + [float(np.max(np.abs(x), initial=0.0)) for x in diff_leaves])
        ladder = 0.1 * scale * 4.0 ** -np.arange(_FD_STEPS, dtype=np.float64)
        steps = np.concatenate([[scale], ladder])
        value, jvp, grad32, moved = self._run(self._seconds, self._second_fn, args64, v_tree, steps)
        n = steps.size
        return float(value), float(jvp), grad32, moved[:n], moved[n:], steps

    def second_opinion(
        self,
        args: tuple[Any, ...],
        grad: Sequence[np.ndarray[Any, Any]],
        v: Sequence[np.ndarray[Any, Any]],
    ) -> SecondOpinion:
        """Forward mode along the unit direction ``v``, the float32 gradient and a secant slope.

        The secant is max |L(x +- s v) - L(x)| / s with s = max(1, |x|) (finite values only).
        """
        value, jvp, grad32, plus, minus, steps = self._along(args, v)
        secants = [abs(float(x[0]) - value) / steps[0] for x in (plus, minus)]
        return SecondOpinion(
            grad32=[np.asarray(g, dtype=np.float64) for g in tree_util.tree_leaves(grad32)],
            grad_dot_v=float(sum(np.vdot(g, d) for g, d in zip(grad, v, strict=True))),
            jvp=jvp,
            secant=max([s for s in secants if math.isfinite(s)], default=0.0),
        )

    def directional_fd(
        self, args: tuple[Any, ...], d: Sequence[np.ndarray[Any, Any]]
    ) -> tuple[float, float]:
        """Central finite difference of the loss along the unit direction ``d``, in float64.

        Steps h = s 4^-j (s = 0.1 max(1, |x|), j = 0..11); the estimate is the central
        difference D(h_j) whose change from the next larger step, |D(h_j) - D(h_(j-1))|, is
        smallest (past it rounding grows, before it truncation): returns (D, that change) as
        (estimate, error estimate). NaN when the loss is not finite along d.
        """
        _, _, _, plus, minus, steps = self._along(args, d)
        central = (plus[1:] - minus[1:]) / (2 * steps[1:])
        if not np.all(np.isfinite(central)):
            return math.nan, math.nan
        changes = np.abs(np.diff(central))
        best = int(np.argmin(changes)) + 1
        return float(central[best]), float(changes[best - 1])
