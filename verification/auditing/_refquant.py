"""The reference's quantities: every intermediate value of a JAX loss and its gradient.

``walked_quantities(loss_fn, args, argnums)`` walks the loss's jaxpr (inlining ``jit``
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
from verification.auditing._program import PRECISION

__all__ = [
    "Quantity",
    "Step",
    "bind",
    "gradient_name",
    "is_float",
    "step_name",
    "walked_quantities",
]

INLINED = frozenset({"jit", "pjit", "closed_call", "core_call"})


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
    derivatives: dict[int, np.ndarray[Any, Any]] = field(default_factory=dict, compare=False)
    """For a value of an elementwise step: d value / d input, per input position."""

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
    """Evaluates a jaxpr equation by equation (inlining ``jit`` calls), recording each output
    with its source line, and for each equation where its inputs come from."""

    def __init__(self, n_inputs: int) -> None:
        self.records: list[
            tuple[tuple[Any, ...], str, tuple[str, int, str], Any, tuple[Any, ...], tuple[Any, ...]]
        ] = []
        """(key, primitive, (file, line, function), eqn, input sources, input keys)."""
        self.outs: list[Any] = []
        self.seen: dict[tuple[Any, ...], int] = {}
        self.keys: dict[int, tuple[Any, ...]] = {}
        self.sources: dict[int, tuple[Any, ...]] = {}
        self.n_inputs = n_inputs

    def source(self, v: Any) -> tuple[Any, ...]:
        return ("literal", v.val) if isinstance(v, Literal) else self.sources[id(v)]

    def run(
        self,
        jaxpr: Any,
        consts: Sequence[Any],
        args: Sequence[Any],
        sources: Sequence[tuple[Any, ...]],
        keys: Sequence[tuple[Any, ...] | None],
        eps: Sequence[Any] | None,
        outer: tuple[str, int, str],
    ) -> list[Any]:
        env: dict[Any, Any] = {}
        for v, x in zip(jaxpr.constvars, consts, strict=True):
            env[v] = x
            self.sources[id(v)] = ("const", x)
        for v, x, src, key in zip(jaxpr.invars, args, sources, keys, strict=True):
            env[v] = x
            self.sources[id(v)] = src
            if key is not None:
                self.keys[id(v)] = key

        def read(v: Any) -> Any:
            return v.val if isinstance(v, Literal) else env[v]

        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            srcs = [self.source(v) for v in eqn.invars]
            in_keys = tuple(
                None if isinstance(v, Literal) else self.keys.get(id(v)) for v in eqn.invars
            )
            where = _frame(eqn, outer)
            name = eqn.primitive.name
            if name in INLINED:
                inner = eqn.params["jaxpr"]
                outs = self.run(inner.jaxpr, inner.consts, invals, srcs, in_keys, eps, where)
                for v_in, v_out in zip(inner.jaxpr.outvars, eqn.outvars, strict=True):
                    self.sources[id(v_out)] = self.source(v_in)
                    if not isinstance(v_in, Literal) and id(v_in) in self.keys:
                        self.keys[id(v_out)] = self.keys[id(v_in)]
            else:
                out = bind(eqn, invals)
                outs = list(out) if eqn.primitive.multiple_results else [out]
                for i, (var, value) in enumerate(zip(eqn.outvars, outs, strict=True)):
                    base = (where[0], where[1], name, i)
                    count = self.seen.get(base, 0)
                    self.seen[base] = count + 1
                    key = (*base, count)
                    self.keys[id(var)] = ("value", *key)
                    self.sources[id(var)] = ("value", len(self.outs))
                    if eps is not None and is_float(value):
                        value = value + eps[self.n_inputs + len(self.outs)]
                        outs[i] = value
                    self.records.append((key, _shown(eqn), where, eqn, tuple(srcs), in_keys))
                    self.outs.append(value)
            for var, value in zip(eqn.outvars, outs, strict=True):
                env[var] = value
        return [read(v) for v in jaxpr.outvars]


def step_name(step: Step) -> str:
    """The name of a reference step in words ("tanh", "relu", "dot_general")."""
    return _shown(step.eqn)


def _shown(eqn: Any) -> str:
    """How a report names an equation: its primitive ("tanh", "dot_general"), or for a library
    function with its own derivative rule, the function ("relu", "logaddexp")."""
    name: str = eqn.primitive.name
    inner = eqn.params.get("call_jaxpr")
    info = getattr(getattr(inner, "jaxpr", inner), "debug_info", None)
    source = getattr(info, "func_src_info", None)
    if name.startswith("custom_") and isinstance(source, str) and source.split():
        return source.split()[0]
    return name


def bind(eqn: Any, invals: Sequence[Any]) -> Any:
    """``eqn``'s primitive applied to ``invals`` (as ``jax.core.eval_jaxpr`` does; older JAX
    returns (subfunctions, params) from ``get_bind_params``)."""
    got = eqn.primitive.get_bind_params(eqn.params)
    subfuns, params = got if isinstance(got, tuple) else ([], got)
    with source_info_util.user_context(eqn.source_info.traceback), eqn.ctx.manager:
        return eqn.primitive.bind(*subfuns, *invals, **params)


def is_float(x: Any) -> bool:
    return bool(jnp.issubdtype(jnp.result_type(x), jnp.floating))


def walked_quantities(
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
        lambda a: np.asarray(a, np.float64) if is_float(a) else np.asarray(a), args
    )
    flat, _ = tree_util.tree_flatten(args64)
    n = len(flat)
    walks: list[_Walk] = []

    def evaluate(eps: list[Any] | None, flat_in: list[Any]) -> Any:
        walk = _Walk(n)
        walks.append(walk)
        if eps is not None:
            flat_in = [x + e if e is not None else x for x, e in zip(flat_in, eps[:n], strict=True)]
        keys = [("input", i) for i in range(n)]
        sources = [("input", i) for i in range(n)]
        (out,) = walk.run(closed.jaxpr, closed.consts, flat_in, sources, keys, eps, ("", 0, ""))
        return out, walk.outs

    with jax.default_matmul_precision(PRECISION):
        closed = jax.make_jaxpr(loss_fn)(*args64)
        _, avals = jax.eval_shape(lambda f: evaluate(None, f), flat)
        zeros = [
            jnp.zeros(a.shape, a.dtype) if is_float(a) else None
            for a in [
                *(np.asarray(x) for x in flat),
                *avals,
            ]
        ]
        grads, outs = jax.jit(jax.grad(evaluate, has_aux=True))(zeros, flat)
    walk = walks[-1]
    g_in, g_eps = grads[:n], grads[n:]
    outs = [np.asarray(v) for v in outs]

    def resolve(src: tuple[Any, ...]) -> Any:
        kind, what = src
        if kind == "value":
            return outs[what]
        if kind == "input":
            return flat[what]
        return np.asarray(what) if kind == "const" else what

    values = [
        (key, outs[i], prim, where, Step(eqn, tuple(resolve(s) for s in srcs), in_keys))
        for i, (key, prim, where, eqn, srcs, in_keys) in enumerate(walk.records)
    ]
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
        if i in differentiated and is_float(leaf):
            quantities.append(
                Quantity(
                    ("gradient", *key), "gradient", np.asarray(g), gradient_name(label), of=key
                )
            )
    for (key, value, prim, (file, line, function), step), g in zip(values, g_eps, strict=True):
        source = linecache.getline(file, line).strip() if line else ""
        assigned = _assigned_name(file, line) if line else None
        last = bool(line) and _last_on_line(values, key)
        if last and assigned:
            name = assigned
        elif last and source.startswith("return ") and function:
            again = any(k[:2] == key[:2] and k[-1] > 0 for k, *_ in values)
            name = f"the result of {function}" + (f" (call {key[-1] + 1})" if again else "")
        else:
            name = f"the {prim} on reference line {line}"
        quantities.append(
            Quantity(
                ("value", *key), "value", np.asarray(value), name, file, line, source, step=step
            )
        )
        if g is not None and is_float(value):
            quantities.append(
                Quantity(
                    ("gradient", *key),
                    "gradient",
                    np.asarray(g),
                    gradient_name(name),
                    file,
                    line,
                    source,
                    of=("value", *key),
                )
            )
    return quantities + _inside([(k, step, w) for k, _, _, w, step in values])


_CUSTOM = frozenset({"custom_jvp_call", "custom_vjp_call"})


def _rekeyed(key: Any, inner: set[Any], outer: tuple[Any, ...]) -> Any:
    """An inner equation's key, made unique by the key of the step it runs inside."""
    return (*key, "inside", *outer) if key in inner else key


def _inside(
    steps: Sequence[tuple[tuple[Any, ...], Step, tuple[str, int, str]]],
) -> list[Quantity]:
    """The values a library function with its own derivative rule computes inside (the exp
    and the row sums of ``jax.nn.softmax`` where JAX makes it a ``custom_jvp``), evaluated on
    the concrete inputs of each such step: kind "value" only, for their gradient is the
    function's rule, not a chain through these steps. Their keys carry the step's key, so
    they never collide with the caller's; the function's own output is not repeated.
    ``steps``: (key, step, (file, line, function)) of the walked equations."""
    out: list[Quantity] = []
    for outer_key, step, where in steps:
        eqn = step.eqn
        inner = eqn.params.get("call_jaxpr") if eqn.primitive.name in _CUSTOM else None
        jaxpr = getattr(inner, "jaxpr", inner)
        if jaxpr is None or not hasattr(jaxpr, "eqns"):
            continue
        walk = _Walk(0)
        sources = [("const", x) for x in step.inputs]
        with jax.default_matmul_precision(PRECISION):
            walk.run(
                jaxpr,
                getattr(inner, "consts", []),
                list(step.inputs),
                sources,
                list(step.input_keys),
                None,
                where,
            )
        finals = {id(v) for v in jaxpr.outvars}
        mine = {("value", *record[0]) for record in walk.records}
        function = _shown(eqn).lstrip("_")

        inner_steps = []
        for (key, prim, (file, line, _), e, srcs, in_keys), value in zip(
            walk.records, walk.outs, strict=True
        ):
            inputs = tuple(walk.outs[w] if kind == "value" else w for kind, w in srcs)
            inner_step = Step(
                e,
                tuple(np.asarray(x) for x in inputs),
                tuple(_rekeyed(k, mine, outer_key) for k in in_keys),
            )
            inner_steps.append(((*key, "inside", *outer_key), inner_step, (file, line, "")))
            if any(id(v) in finals for v in e.outvars):
                continue
            source = linecache.getline(file, line).strip() if line else ""
            name = f"the {prim} inside {function} on reference line {line}"
            out.append(
                Quantity(
                    _rekeyed(("value", *key), mine, outer_key),
                    "value",
                    np.asarray(value),
                    name,
                    file,
                    line,
                    source,
                    step=inner_step,
                )
            )
        out += _inside(inner_steps)
    return out


def gradient_name(name: str) -> str:
    """ "dL/da1", or "the gradient of the tanh on reference line 7"."""
    return f"dL/d{name}" if " " not in name else f"the gradient of {name}"


def _last_on_line(values: list[Any], key: tuple[Any, ...]) -> bool:
    """Whether the equation ``key`` is the last one traced from its source line in its call
    (the n-th call of a function traces the n-th equation of each kind on each line): the
    value the line's statement binds or returns."""
    same_call = [k for k, *_ in values if k[:2] == key[:2] and k[-1] == key[-1]]
    return bool(same_call) and same_call[-1] == key
