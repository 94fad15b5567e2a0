"""The reference's quantities: every intermediate value of a JAX loss and its gradient.

``reference_quantities(loss_fn, args, argnums)`` walks the loss's jaxpr (inlining ``jit``
calls; a ``custom_jvp``/``custom_vjp`` function such as ``jax.nn.relu`` stays one step, so its
own derivative convention holds) and returns, for every equation's output v:

* its value (a ``Quantity`` of kind ``"value"``), and
* for a float v, dL/dv, the cotangent of the loss with respect to v (kind ``"gradient"``).

The gradients come from one reverse pass: the jaxpr is evaluated with a zero added to every
float intermediate, L(eps) = loss with v_i + eps_i, and dL/d eps_i at eps = 0 is dL/dv_i.
The arguments are quantities too (kind ``"input"``), and the gradients of ``args[argnums]``
(kind ``"gradient"``) are the audited leaves' references. Each quantity carries the
reference's own source line (JAX's source info): where an equation was traced inside a
library, the line of the user's code that called it.

For a vector-Jacobian product audit the loss is <forward(inputs), cotangent> and the same
walk yields forward's intermediates and their cotangents; nothing here is specific to it.

Ground truth only: nothing here imports or shares code with what it checks.
"""

from __future__ import annotations

import ast
import linecache
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util
from jax._src import source_info_util
from jax.extend.core import Literal

import verification.reference  # noqa: F401  (64-bit JAX)
from verification.auditing._oracle import PRECISION

__all__ = ["Quantity", "Step", "local_derivative", "reference_quantities"]

_INLINED = frozenset({"jit", "pjit", "closed_call", "core_call"})


@dataclass(frozen=True)
class Step:
    """One equation of the reference: ``outputs = primitive(inputs)``, for local derivatives.

    eqn : the jaxpr equation; inputs : its input values (numpy or scalars); input_keys : the
    key of the value quantity of each input (None for a literal or a constant).
    """

    eqn: Any
    inputs: tuple[Any, ...]
    input_keys: tuple[tuple[Any, ...] | None, ...]


@dataclass(frozen=True)
class Quantity:
    """A value of the reference: an intermediate, an input, or the gradient of either.

    key : (kind, file, line, primitive, output index, occurrence) of the equation; the same
        at another input of other sizes as long as the reference runs the same code.
    kind : "input", "value" or "gradient".
    value : a float64 (or integer/bool) numpy array.
    name : how a report names it: "a1" (the name the reference's line assigns), "the tanh",
        "args[0].W1"; a gradient is "dL/d" + the name.
    file, line, source : the reference's source line (``line`` 0 where unknown).
    step : the equation that computes it (for a value), or None.
    of : for a gradient, the key of the value it is the gradient of.
    """

    key: tuple[Any, ...]
    kind: str
    value: np.ndarray[Any, Any]
    name: str
    file: str = ""
    line: int = 0
    source: str = ""
    step: Step | None = field(default=None, compare=False)
    of: tuple[Any, ...] | None = None

    @property
    def where(self) -> str:
        """ "reference line 11, `a1 = jnp.tanh(z1)`" (or "" where the line is unknown)."""
        if not self.line:
            return ""
        return f"reference line {self.line}, `{self.source}`"


def _frame(eqn: Any, outer: tuple[str, int, str]) -> tuple[str, int, str]:
    """(file, line, function) of the user's code that traced ``eqn`` (``outer`` if none)."""
    frame = source_info_util.user_frame(eqn.source_info.traceback)
    if frame is None:
        return outer
    return frame.file_name, frame.start_line, frame.function_name


def _assigned_name(file: str, line: int) -> str | None:
    """The name a simple ``name = ...`` statement on that line assigns, if it is one."""
    text = linecache.getline(file, line).strip()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign):
        targets = tree.body[0].targets
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            return targets[0].id
    return None


class _Walk:
    """Evaluates a jaxpr equation by equation, recording each output with its source line."""

    def __init__(self) -> None:
        self.values: list[tuple[tuple[Any, ...], Any, str, tuple[str, int, str], Step]] = []
        self.seen: dict[tuple[Any, ...], int] = {}
        self.var_keys: dict[int, tuple[Any, ...]] = {}

    def run(
        self,
        jaxpr: Any,
        consts: Sequence[Any],
        args: Sequence[Any],
        eps: list[Any] | None,
        outer: tuple[str, int, str],
    ) -> list[Any]:
        env: dict[Any, Any] = {}
        for v, x in zip(jaxpr.constvars, consts, strict=True):
            env[v] = x
        for v, x in zip(jaxpr.invars, args, strict=True):
            env[v] = x

        def read(v: Any) -> Any:
            return v.val if isinstance(v, Literal) else env[v]

        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            where = _frame(eqn, outer)
            name = eqn.primitive.name
            if name in _INLINED:
                inner = eqn.params["jaxpr"]
                outs = self.run(inner.jaxpr, inner.consts, invals, eps, where)
            else:
                out = _bind(eqn, invals)
                outs = list(out) if eqn.primitive.multiple_results else [out]
                input_keys = tuple(
                    None if isinstance(v, Literal) else self.var_keys.get(id(v)) for v in eqn.invars
                )
                step = Step(eqn, tuple(invals), input_keys)
                for i, (var, value) in enumerate(zip(eqn.outvars, outs, strict=True)):
                    base = (where[0], where[1], name, i)
                    count = self.seen.get(base, 0)
                    self.seen[base] = count + 1
                    key = (*base, count)
                    self.var_keys[id(var)] = ("value", *key)
                    if eps is not None and jnp.issubdtype(jnp.result_type(value), jnp.floating):
                        value = value + eps[len(self.values)]
                        outs[i] = value
                    self.values.append((key, value, name, where, step))
            for var, value in zip(eqn.outvars, outs, strict=True):
                env[var] = value
        return [read(v) for v in jaxpr.outvars]


def _bind(eqn: Any, invals: Sequence[Any]) -> Any:
    """``eqn``'s primitive applied to ``invals`` (as ``jax.core.eval_jaxpr`` does; older JAX
    returns (subfunctions, params) from ``get_bind_params``)."""
    got = eqn.primitive.get_bind_params(eqn.params)
    subfuns, params = got if isinstance(got, tuple) else ([], got)
    with source_info_util.user_context(eqn.source_info.traceback), eqn.ctx.manager:
        return eqn.primitive.bind(*subfuns, *invals, **params)


def _float(x: Any) -> bool:
    return bool(jnp.issubdtype(jnp.result_type(x), jnp.floating))


def reference_quantities(
    loss_fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
) -> list[Quantity]:
    """Every intermediate of ``loss_fn(*args)``, its gradient, the inputs and their gradients.

    Shapes: each quantity has its own shape (an intermediate's gradient has the intermediate's);
    values are float64 numpy arrays (inputs of another float dtype are converted to float64
    first, as the oracle does). Raises whatever the loss raises.
    """
    args64 = tree_util.tree_map(
        lambda a: np.asarray(a, np.float64) if _float(a) else np.asarray(a), args
    )
    with jax.default_matmul_precision(PRECISION):
        closed = jax.make_jaxpr(loss_fn)(*args64)
        flat, _ = tree_util.tree_flatten(args64)
        probe = _Walk()
        probe.run(closed.jaxpr, closed.consts, flat, None, ("", 0, ""))
        shapes = [
            jnp.zeros(jnp.shape(v), jnp.result_type(v)) if _float(v) else None
            for _, v, *_ in probe.values
        ]

        def loss_with(eps: list[Any], flat_in: list[Any]) -> Any:
            walk = _Walk()
            (out,) = walk.run(closed.jaxpr, closed.consts, flat_in, eps, ("", 0, ""))
            return out, walk.values

        grad_fn = jax.grad(loss_with, argnums=(0, 1), has_aux=True)
        (g_eps, g_in), _ = grad_fn(shapes, flat)
    values = probe.values  # concrete values and steps (the gradient's walk holds tracers)
    quantities: list[Quantity] = []
    paths = tree_util.tree_flatten_with_path(tuple(args64))[0]
    differentiated = {
        i for i, (path, _) in enumerate(paths) if path and getattr(path[0], "idx", -1) in argnums
    }
    for i, ((path, leaf), g) in enumerate(zip(paths, g_in, strict=True)):
        index = getattr(path[0], "idx", 0)
        label = f"{arg_names[index]}{tree_util.keystr(path[1:])}" if path else "args"
        key = ("input", i)
        quantities.append(Quantity(key, "input", np.asarray(leaf), label))
        if i in differentiated and _float(leaf):
            quantities.append(
                Quantity(("gradient", *key), "gradient", np.asarray(g), _gradient_name(label), of=key)
            )
    for (key, value, prim, (file, line, _), step), g in zip(values, g_eps, strict=True):
        source = linecache.getline(file, line).strip() if line else ""
        assigned = _assigned_name(file, line) if line else None
        last_of_line = assigned is not None and _last_on_line(values, key)
        name = assigned if last_of_line and assigned else f"the {prim} on reference line {line}"
        common = {"file": file, "line": line, "source": source}
        quantities.append(
            Quantity(("value", *key), "value", np.asarray(value), name, step=step, **common)
        )
        if g is not None and _float(value):
            quantities.append(
                Quantity(
                    ("gradient", *key),
                    "gradient",
                    np.asarray(g),
                    _gradient_name(name),
                    of=("value", *key),
                    **common,
                )
            )
    return quantities


def _gradient_name(name: str) -> str:
    """ "dL/da1", or "the gradient of the tanh on reference line 7"."""
    return f"dL/d{name}" if " " not in name else f"the gradient of {name}"


def _last_on_line(values: list[Any], key: tuple[Any, ...]) -> bool:
    """Whether the equation ``key`` is the last one traced from its source line (the value
    the line's assignment binds)."""
    same_line = [k for k, *_ in values if k[:2] == key[:2]]
    return bool(same_line) and same_line[-1] == key


_ELEMENTWISE = frozenset(
    "abs add atan2 convert_element_type cos div exp exp2 expm1 integer_pow log log1p logistic "
    "max min mul neg pow rsqrt select_n sign sin sqrt square sub tan tanh erf".split()
)


def _elementwise(eqn: Any) -> bool:
    """Whether ``eqn`` acts element by element (a library function made of such steps, like
    ``jax.nn.relu``, counts)."""
    name = eqn.primitive.name
    if name in _ELEMENTWISE:
        return True
    inner = eqn.params.get("call_jaxpr") or eqn.params.get("jaxpr")
    if inner is None or name not in ("custom_jvp_call", "custom_vjp_call", *_INLINED):
        return False
    jaxpr = getattr(inner, "jaxpr", inner)
    return all(_elementwise(e) or e.primitive.name == "stop_gradient" for e in jaxpr.eqns)


def local_derivative(step: Step, position: int) -> np.ndarray[Any, Any] | None:
    """d output / d input ``position`` of an elementwise equation (output and that input of one
    shape), by forward mode with a tangent of ones; None for any other equation."""
    eqn = step.eqn
    if eqn.primitive.multiple_results or len(eqn.outvars) != 1:
        return None
    x = step.inputs[position]
    if not _float(x) or jnp.shape(x) != tuple(eqn.outvars[0].aval.shape):
        return None
    if not _elementwise(eqn):
        return None

    def f(v: Any) -> Any:
        ins = list(step.inputs)
        ins[position] = v
        return _bind(eqn, ins)

    with jax.default_matmul_precision(PRECISION):
        _, tangent = jax.jvp(f, (jnp.asarray(x),), (jnp.ones_like(x),))
    return np.asarray(tangent)
