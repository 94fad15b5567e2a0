"""The audit's ground truth: ``jax.grad`` in float64 at the highest matrix-product precision.

Every example needs only the loss and ``jax.value_and_grad`` in float64, jitted once per
combination of argument shapes (compiled code cached for the life of the process, across
audits: compiling costs 0.2 to 1 s per shape on this machine, a call 0.3 ms). Where the
candidate fails the first, strict comparison, ``second_opinion`` (compiled per shape on first
need) adds in one call:

* ``jax.jvp`` along a random unit direction v (forward mode: a second opinion on the
  reverse-mode reference, compared with <grad, v>);
* the same gradient computed in float32, and in float64 at the input perturbed by a relative
  2^-26 (used by the tolerance rule: how much rounding this input amplifies, see
  ``_tolerance``);
* the loss at x +- s v (a secant slope: the scale of the gradient near x).

Where the candidate still fails, float64 finite differences along the direction of the
disagreement (``one_sided_slopes``) decide whether the reference is confirmed.

The oracle refuses to run (``OracleRefusedError``) rather than give a verdict from a reference that
is not a float64 computation: JAX's 64-bit mode off, a program that ``_program`` (which checks
and compiles each one) refuses, or a result that does not come back as float64.
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
from verification.auditing._cancellation import summed_terms
from verification.auditing._finite_differences import FiniteDifferences, quotients, step_for
from verification.auditing._profile import phase
from verification.auditing._program import (
    OracleRefusedError,
    Static,
    compile_program,
    float64_environment,
    is_large,
    program_args,
    same_args,
    shape_key,
)

__all__ = ["FiniteDifferences", "Oracle", "SecondOpinion"]

_PROGRAMS = {
    "_grad_fn": "reference runs",
    "_second_fn": "second opinion",
    "_losses_fn": "finite differences",
}
"""The profile's phase (``_profile``) for each program the oracle compiles."""

PERTURBATION = 2.0**-26
"""Relative size of the input perturbation behind ``SecondOpinion.grad_perturbed``."""


@dataclass(frozen=True)
class SecondOpinion:
    """What the oracle adds where the candidate fails the first comparison.

    grad32 : the gradient computed in float32 at the same input.
    grad_perturbed : the float64 gradient at the input with every float element multiplied by
        (1 + r) or by (1 - r), |r| <= PERTURBATION, per leaf the one farther from the gradient:
        how much the gradient moves when the input does.
    grad_dot_v, jvp : reverse mode and forward mode along the unit direction v.
    secant : the largest of |L(x +- s v) - L(x)| / s (s = max(1, |x|)) and the slopes
        |L(x) - L(t x)| / ((1 - t) |x|) towards the origin (t = 0, 1/2), over the
        differentiated arguments x: the size of the gradient "around here".
    summed : the largest term the reference's backward pass sums (``_cancellation``): what
        cancels where the gradient is a small difference of large terms.
    """

    grad32: list[np.ndarray[Any, np.dtype[np.float64]]]
    grad_perturbed: list[np.ndarray[Any, np.dtype[np.float64]]]
    grad_dot_v: float
    jvp: float
    secant: float
    summed: float = 0.0


def spread(g: np.ndarray[Any, Any], other: np.ndarray[Any, Any] | None) -> float:
    """max |other - g| over the finite differences (0 if ``other`` is None)."""
    if other is None:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        distance = np.abs(np.asarray(other, np.float64) - np.asarray(g, np.float64))
    distance = distance[np.isfinite(distance)]
    return float(distance.max()) if distance.size else 0.0


def _farther(
    grad: Sequence[np.ndarray[Any, Any]], *others: Sequence[Any]
) -> list[np.ndarray[Any, np.dtype[np.float64]]]:
    """Per leaf, the one of ``others`` farthest from ``grad`` (by ``spread``)."""
    return [
        max((np.asarray(other[i], np.float64) for other in others), key=lambda o: spread(g, o))
        for i, g in enumerate(grad)
    ]


def _to32(leaf: jax.Array) -> jax.Array:
    return leaf.astype(jnp.float32) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf


def _perturb(leaf: jax.Array, noise: jax.Array) -> jax.Array:
    if jnp.issubdtype(leaf.dtype, jnp.floating):
        return leaf * (1 + noise)
    return leaf


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
        self.env = float64_environment()
        self.loss_fn = loss_fn
        self.argnums = argnums
        self._grads: dict[Any, Any] = {}
        self._seconds: dict[Any, Any] = {}
        self.compile_seconds = 0.0
        self.run_seconds = 0.0
        self.forward_mode = True
        self.compilations = 0
        self._losses: dict[Any, Any] = {}
        self._last_value: tuple[tuple[Any, ...], float] | None = None

    # -- building blocks traced by JAX ---------------------------------------------------
    def _loss_at(self, args: tuple[Any, ...], diff: tuple[Any, ...]) -> jax.Array:
        full = [a.value if isinstance(a, Static) else a for a in args]
        for i, value in zip(self.argnums, diff, strict=True):
            full[i] = value
        return jnp.asarray(self.loss_fn(*full))

    def _grad_fn(self, args: tuple[Any, ...]) -> tuple[jax.Array, Any]:
        diff = tuple(args[i] for i in self.argnums)
        return jax.value_and_grad(lambda d: self._loss_at(args, d))(diff)

    def _grad_at(self, args: tuple[Any, ...]) -> Any:
        diff = tuple(args[i] for i in self.argnums)
        return jax.grad(lambda d: self._loss_at(args, d))(diff)

    def _second_fn(
        self, args: tuple[Any, ...], v: tuple[Any, ...], steps: jax.Array, noise: tuple[Any, ...]
    ) -> tuple[Any, ...]:
        """(loss, jvp along v, float32 gradient, gradients at args * (1 +- noise), losses at
        x + h v for h in steps and -steps, losses at 0 x and x / 2, the largest term the
        backward pass sums)."""
        return self._second(args, v, steps, noise, forward=True)

    def _second_fn_reverse(
        self, args: tuple[Any, ...], v: tuple[Any, ...], steps: jax.Array, noise: tuple[Any, ...]
    ) -> tuple[Any, ...]:
        """``_second_fn`` without forward mode (jvp NaN), for a loss with custom_vjp rules: a
        function of its own, since ``jax.jit`` caches its trace per function object."""
        return self._second(args, v, steps, noise, forward=False)

    def _second(
        self,
        args: tuple[Any, ...],
        v: tuple[Any, ...],
        steps: jax.Array,
        noise: tuple[Any, ...],
        *,
        forward: bool,
    ) -> tuple[Any, ...]:
        diff = tuple(args[i] for i in self.argnums)

        def loss(d: tuple[Any, ...]) -> jax.Array:
            return self._loss_at(args, d)

        if forward:
            value, jvp = jax.jvp(loss, (diff,), (v,))
        else:  # a loss with custom_vjp rules has no forward mode: no opinion from it
            value, jvp = loss(diff), jnp.asarray(jnp.nan)
        args32 = tree_util.tree_map(_to32, args)
        diff32 = tuple(args32[i] for i in self.argnums)
        grad32 = jax.grad(lambda d: self._loss_at(args32, d))(diff32)
        # At +noise and at -noise: a quantity that cancels to 0 within rounding (a ReLU
        # pre-activation) moves to one side of 0 under one sign and to the other under the other.
        grad_shaken = tuple(
            self._grad_at(tree_util.tree_map(_perturb, args, signed))
            for signed in (noise, tree_util.tree_map(jnp.negative, noise))
        )

        def at(h: jax.Array) -> jax.Array:
            return loss(tree_util.tree_map(lambda a, b: a + h * b, diff, v))

        moved = jax.lax.map(at, jnp.concatenate([steps, -steps]))
        toward_origin = jnp.stack(
            [loss(tree_util.tree_map(lambda a, t=t: t * a, diff)) for t in (0.0, 0.5)]
        )
        summed = summed_terms(loss, diff)
        return value, jvp, grad32, grad_shaken, moved, toward_origin, summed

    def _losses_fn(self, args: tuple[Any, ...], v: tuple[Any, ...], steps: jax.Array) -> jax.Array:
        """The loss at x + h v for each h in ``steps`` (forward passes only: the finite
        differences need no gradient, so they cost a few forward passes, not a second opinion)."""
        diff = tuple(args[i] for i in self.argnums)

        def at(h: jax.Array) -> jax.Array:
            return self._loss_at(args, tree_util.tree_map(lambda a, b: a + h * b, diff, v))

        return jax.lax.map(at, steps)

    # -- compilation -------------------------------------------------------------------
    def _compile(self, fn: Callable[..., Any], *example: Any) -> Any:
        program = getattr(fn, "__name__", "program")
        compiled, seconds = compile_program(fn, *example, name=_PROGRAMS.get(program, program))
        self.compile_seconds += seconds
        self.compilations += 1
        return compiled

    # -- public ------------------------------------------------------------------------
    def prepare(self, args: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(args as float64 numpy leaves, the differentiated part of them): ``program_args``."""
        return program_args(args, self.argnums)

    def _run(self, cache: dict[Any, Any], fn: Callable[..., Any], *example: Any) -> Any:
        key = shape_key(example)
        compiled = cache.get(key)
        if compiled is None:
            compiled = cache[key] = self._compile(fn, *example)
        start = time.perf_counter()
        with phase(_PROGRAMS.get(getattr(fn, "__name__", ""), "reference runs"), run=True):
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
        self._last_value = (args64, float(value))
        leaves = [np.asarray(g) for g in tree_util.tree_leaves(grad)]
        if any(g.dtype != np.float64 for g in leaves):
            found = sorted({str(g.dtype) for g in leaves})
            raise OracleRefusedError(f"the reference gradient came back as {found}, not float64")
        return float(value), leaves

    def _along(
        self,
        args: tuple[Any, ...],
        v: Sequence[np.ndarray[Any, Any]],
        fd_step: float | None,
        rng: np.random.Generator | None = None,
    ) -> tuple[Any, ...]:
        """The compiled second-opinion function at ``args`` along ``v``, with the steps s (for
        the secant, s = max(1, |x|)), then h and 2h (finite differences, h = ``fd_step``; none
        for None: ``second_opinion`` needs the secant only)."""
        args64, diff = self.prepare(args)
        diff_leaves, diff_def = tree_util.tree_flatten(diff)
        v_tree = tree_util.tree_unflatten(diff_def, [np.asarray(x, np.float64) for x in v])
        scale = max([1.0] + [float(np.max(np.abs(x), initial=0.0)) for x in diff_leaves])
        steps = np.array([scale] if fd_step is None else [scale, fd_step, 2 * fd_step])
        noise = tree_util.tree_map(
            lambda a: (
                np.zeros(np.shape(a))
                if rng is None
                else PERTURBATION * rng.uniform(-1.0, 1.0, np.shape(a))
            ),
            args64,
        )
        try:
            value, jvp, grad32, shaken, moved, toward_origin, summed = self._run(
                self._seconds,
                self._second_fn if self.forward_mode else self._second_fn_reverse,
                args64,
                v_tree,
                steps,
                noise,
            )
        except TypeError:
            if not self.forward_mode:
                raise
            self.forward_mode = False
            self._seconds.clear()
            value, jvp, grad32, shaken, moved, toward_origin, summed = self._run(
                self._seconds, self._second_fn_reverse, args64, v_tree, steps, noise
            )
        n = steps.size
        norm = math.sqrt(sum(float(np.vdot(x, x)) for x in diff_leaves))
        origin_slopes = [
            abs(float(x) - float(value)) / (norm * t)
            for x, t in zip(toward_origin, (1.0, 0.5), strict=True)
            if norm > 0.0
        ]
        return (
            float(value),
            float(jvp),
            grad32,
            shaken,
            moved[:n],
            moved[n:],
            steps,
            origin_slopes,
            float(summed),
        )

    def second_opinion(
        self,
        args: tuple[Any, ...],
        grad: Sequence[np.ndarray[Any, Any]],
        v: Sequence[np.ndarray[Any, Any]],
        rng: np.random.Generator,
    ) -> SecondOpinion:
        """Forward mode along the unit direction ``v``, the float32 gradient, the gradient at a
        randomly perturbed input (``rng``) and secant slopes (see ``SecondOpinion``)."""
        # A small problem shares one program with ``one_sided_slopes`` (the same three steps); a
        # large one evaluates the secant step alone (its finite differences have their own).
        fd_step = None if is_large(args) else 1e-6
        value, jvp, grad32, shaken, plus, minus, steps, origin, summed = self._along(
            args, v, fd_step, rng
        )
        secants = [abs(float(x[0]) - value) / steps[0] for x in (plus, minus)] + origin
        return SecondOpinion(
            grad32=[np.asarray(g, dtype=np.float64) for g in tree_util.tree_leaves(grad32)],
            grad_perturbed=_farther(grad, *(tree_util.tree_leaves(g) for g in shaken)),
            grad_dot_v=float(sum(np.vdot(g, d) for g, d in zip(grad, v, strict=True))),
            jvp=jvp,
            secant=max([s for s in secants if math.isfinite(s)], default=0.0),
            summed=summed if math.isfinite(summed) else 0.0,
        )

    def one_sided_slopes(
        self,
        args: tuple[Any, ...],
        d: Sequence[np.ndarray[Any, Any]],
        resolution: float,
        *,
        step: float | None = None,
    ) -> FiniteDifferences:
        """Forward and backward difference quotients of the loss along the unit direction ``d``
        (``_finite_differences``). ``resolution`` is the smallest slope difference that matters
        (e.g. |candidate - reference| along d): the step is ``step_for``'s, or ``step`` (e.g.
        eps^(1/3) max(1, |x|), the usual step for an accurate central difference). Forward and
        backward quotients side with the reference and the candidate respectively where a kink
        lies within the step.
        """
        if not (math.isfinite(resolution) and resolution > 0):
            resolution = 1e-6
        args64, diff = self.prepare(args)
        scale = max(
            [1.0] + [float(np.max(np.abs(x), initial=0.0)) for x in tree_util.tree_leaves(diff)]
        )
        if step is None:
            with phase("finite differences"):
                value = self._value_at(args64)
            step = step_for(float(value), resolution, scale)
        h = float(step)
        with phase("finite differences"):  # whichever program runs them
            if is_large(args64):  # forward passes only, L(x) among them unless known
                known = self._known_value(args64)
                steps = [h, 2 * h, -h, -2 * h] if known is not None else [0.0, h, 2 * h, -h, -2 * h]
                losses = self.losses_along(args, d, steps)
                value = known if known is not None else losses.pop(0)
                plus1, plus2, minus1, minus2 = losses
                return quotients(
                    float(value), np.array([plus1, plus2]), np.array([minus1, minus2]), h, 2 * h
                )
            # the second opinion's program, already compiled for this shape
            value, _, _, _, plus, minus, steps, _, _ = self._along(args, d, h)
        return quotients(value, plus[1:], minus[1:], float(steps[1]), float(steps[2]))

    def _loss_value(self, args64: tuple[Any, ...]) -> float:
        value, _ = self._run(self._grads, self._grad_fn, args64)
        return float(value)

    def _known_value(self, args64: tuple[Any, ...]) -> float | None:
        """The last ``gradient``'s loss when it was computed at ``args64`` (the check's own
        reference run), else None."""
        last = self._last_value
        return last[1] if last is not None and same_args(last[0], args64) else None

    def _value_at(self, args64: tuple[Any, ...]) -> float:
        """The loss at ``args64``: ``_known_value``, else one reference run."""
        known = self._known_value(args64)
        return self._loss_value(args64) if known is None else known

    def losses_along(
        self, args: tuple[Any, ...], v: Sequence[np.ndarray[Any, Any]], steps: Sequence[float]
    ) -> list[float]:
        """The float64 loss at x + h v for each h in ``steps`` (x the differentiated arguments,
        ``v`` one array per leaf of them): one compiled program of forward passes per shape and
        number of steps."""
        args64, diff = self.prepare(args)
        diff_def = tree_util.tree_structure(diff)
        v_tree = tree_util.tree_unflatten(diff_def, [np.asarray(x, np.float64) for x in v])
        losses = self._run(self._losses, self._losses_fn, args64, v_tree, np.asarray(steps))
        return [float(x) for x in losses]
