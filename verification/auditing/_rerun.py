"""Agreement with a reference value, and a statement of the candidate run again.

``agrees`` is the test of "is a reference quantity": within the float64 tolerance of the
candidate's precision, a transpose and size-1 axes allowed (``aligned``). ``rerun`` runs one
recorded statement of the candidate again, on copies of the values it read, some of them
replaced: the experiment behind every step of the walk in ``_locate``.
"""

from __future__ import annotations

import ast
import math
import sys
from typing import Any

import numpy as np

from verification.auditing._containers import copied, get_path, split_name, with_path
from verification.auditing._source import names_read, statement_at
from verification.auditing._trace import Node, Trace, as_array
from verification.compare import tolerance

__all__ = ["agrees", "aligned", "likeness", "rerun", "shaped", "some_value_repairs"]


def aligned(c: np.ndarray[Any, Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any] | None:
    """``c`` as an array of ``shape``: itself, its transpose, or without size-1 axes."""
    if c.shape == shape:
        return c
    if c.ndim == 2 and c.T.shape == shape:
        return c.T
    if c.size == math.prod(shape) and [s for s in c.shape if s != 1] == [
        s for s in shape if s != 1
    ]:
        return c.reshape(shape)
    return None


def agrees(c: np.ndarray[Any, Any], r: np.ndarray[Any, Any], terms: int) -> bool:
    """``c`` equals ``r`` within the tolerance of ``c``'s precision (float64 for bool)."""
    a = aligned(c, r.shape)
    if a is None or r.dtype.kind not in "fb":
        return False
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    a64, r64 = a.astype(np.float64), r.astype(np.float64)
    scale = float(np.max(np.abs(r64), initial=0.0))
    rtol, atol = tolerance(dtype, scale=scale, terms=terms)
    with np.errstate(all="ignore"):
        ok = np.abs(a64 - r64) <= 16 * (atol + rtol * np.abs(r64))
        return bool(np.all(ok | (a64 == r64)))


def _like(original: Any, value: np.ndarray[Any, Any]) -> Any:
    """``value`` in the type of ``original`` (a torch tensor stays one; a Python float too)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(original, torch.Tensor):
        return torch.from_numpy(np.array(value, dtype=original.detach().numpy().dtype))
    if isinstance(original, np.ndarray):
        return np.array(value, dtype=original.dtype).reshape(value.shape)
    if isinstance(original, (float, np.floating)) and np.size(value) == 1:
        return type(original)(np.asarray(value).item())
    return value


def _program(node: Node) -> Any:
    """The node's statement compiled to run on its own (a ``return`` assigns ``__result__``)."""
    stmt = statement_at(node.file, node.line)
    if stmt is None or isinstance(stmt, (ast.For, ast.While, ast.If, ast.With, ast.Try)):
        return None
    if isinstance(stmt, ast.Return):
        if stmt.value is None:
            return None
        target = ast.copy_location(ast.Name("__result__", ast.Store()), stmt)
        stmt = ast.copy_location(ast.Assign([target], stmt.value), stmt)
    module = ast.fix_missing_locations(ast.Module([stmt], type_ignores=[]))
    try:
        return compile(module, node.file, "exec")
    except (SyntaxError, ValueError):
        return None


def rerun(
    node: Node, trace: Trace, replace: dict[str, np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any] | None:
    """The node's value with its statement run again on the values it read (copies), some of
    them replaced; None where that cannot be done."""
    code = _program(node)
    if code is None:
        return None
    touched = set(names_read(node.file, node.line))  # what the statement can change in place
    try:
        namespace = {k: copied(v) if k in touched else v for k, v in node.namespace.items()}
    except Exception:  # an object of the user's that cannot be copied: not run again
        return None
    for read in node.reads:
        local, steps = split_name(read.name)
        if local and local in namespace:
            given = np.array(replace.get(read.name, trace.nodes[read.node].value), copy=True)
            try:
                namespace[local] = with_path(namespace[local], steps, given, _like)
            except Exception:
                return None
    try:
        with np.errstate(all="ignore"):
            exec(code, dict(node.globals), namespace)
    except Exception:
        return None
    name, steps = split_name(node.name)
    try:
        value = get_path(namespace.get("__result__" if name == "return" else name), steps)
    except Exception:
        return None
    return as_array(value)


def likeness(value: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> float:
    """|cosine| between ``value`` and ``want`` (aligned): 1 for a constant multiple."""
    a = aligned(value, np.shape(want))
    if a is None:
        return 0.0
    x, y = a.astype(np.float64).ravel(), np.asarray(want, np.float64).ravel()
    with np.errstate(all="ignore"):
        c = abs(float(np.vdot(x, y))) / (float(np.linalg.norm(x) * np.linalg.norm(y)) or 1.0)
    return c if math.isfinite(c) else 0.0


def shaped(value: np.ndarray[Any, Any], like: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``value`` arranged as ``like`` (transposed or reshaped), in ``like``'s float dtype."""
    a = aligned(value, like.shape)
    out = value if a is None else a
    dtype = like.dtype if like.dtype.kind == "f" else np.float64
    return np.asarray(out, dtype=dtype)


def _shapes_to_try(read: tuple[int, ...], line: tuple[int, ...], line_size: int) -> set[Any]:
    """The read's own shape and, for a read smaller than the line's value, the shapes that
    broadcast to the line's along all axes but one, or along one axis alone."""
    shapes: set[Any] = {read}
    if math.prod(read) < line_size:
        shapes |= {tuple(1 if j == i else n for j, n in enumerate(line)) for i in range(len(line))}
        shapes |= {tuple(n if j == i else 1 for j, n in enumerate(line)) for i in range(len(line))}
    return shapes


def some_value_repairs(
    line: Node, trace: Trace, name: str, read: np.ndarray[Any, Any], want: Any
) -> bool:
    """Whether some value of ``name`` (of ``read``'s shape, or of a smaller shape that
    broadcasts to the line's) makes ``line``'s statement produce ``want``.

    Measured by running the statement with the read replaced: the statement must be affine
    in it (checked at a random probe), and then a least-squares solve says whether ``want``
    is reachable. True where that cannot be measured (not affine, a failing re-run, a read
    of more than 128 elements), so that the caller does not claim what it did not measure.
    """
    target = aligned(np.asarray(want, np.float64), line.value.shape)
    if target is None:
        return True
    for shape in _shapes_to_try(read.shape, line.value.shape, line.value.size):
        size = math.prod(shape)
        if size > 128 or (size >= line.value.size and shape != read.shape):
            continue
        start = np.zeros(shape) if shape != read.shape else read.astype(np.float64)

        def f(v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
            got = rerun(line, trace, {name: v})
            return None if got is None else got.astype(np.float64).ravel()

        base = f(start)
        if base is None or base.size != target.size:
            return True
        columns = []
        for i in range(size):
            e = np.zeros(size)
            e[i] = 1.0
            out = f(start + e.reshape(shape))
            if out is None:
                return True
            columns.append(out - base)
        a = np.stack(columns, axis=1)
        probe = np.random.default_rng(0).standard_normal(size)
        out = f(start + probe.reshape(shape))
        scale = float(np.max(np.abs(target), initial=0.0)) or 1.0
        if out is None or not np.allclose(out, base + a @ probe, atol=1e-8 * scale):
            return True  # not affine in it: cannot be ruled out
        step, *_ = np.linalg.lstsq(a, target.ravel() - base, rcond=None)
        if float(np.max(np.abs(a @ step + base - target.ravel()), initial=0.0)) <= 1e-8 * scale:
            return True
    return False
