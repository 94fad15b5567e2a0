"""Where the error enters: the line of the candidate whose value first goes wrong.

On a failing audit, the candidate runs again under the line tracer (``_trace``) at two inputs:
the shrunk counterexample and a second failing input whose sizes are all distinct and > 1 (so
that shapes cannot coincide by accident). Every value it computed is compared with every
quantity of the reference (``_refquant``: the intermediates of the loss, their gradients, the
inputs): a value *is* a reference quantity when it agrees with it, within the float64
tolerance, at both inputs (a transpose and size-1 axes allowed).

From the wrong output leaf the walk goes back through the candidate's dataflow, deciding each
step by evaluating the statement again with one value it read replaced by a reference
quantity (or by the local derivative of a reference step):

* if putting quantity q in place of the value read as ``a`` makes the statement produce what
  it should, ``a`` is where the error is: the walk continues at the statement that made ``a``,
  which should equal q (or, when ``a`` equals another reference quantity p, the line that
  bound ``a`` holds p where q belongs: "equals dL/da1, not dL/dz1");
* if no single replacement repairs it, the statement itself is where the error enters.

Nothing is claimed that was not measured at both inputs: a line is named only when its
statement, re-run with the right values, was shown to be wrong (or right), and the walk says
``not located (<reason>)`` when it cannot single one out: no line of user code computed the
wrong value (compiled or vectorised away), the two inputs take different paths, two reads
repair it, a wrong value read that no reference quantity checks.
"""

from __future__ import annotations

import ast
import dataclasses
import linecache
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._refquant import Quantity, reference_quantities, step_name
from verification.auditing._trace import Node, Trace, statement_at, trace_call
from verification.auditing._trees import none_leaf
from verification.compare import tolerance

__all__ = ["NotLocated", "Where", "locate"]


@dataclass(frozen=True)
class Where:
    """The line where the error enters, and what it should equal.

    file, line, function, source : the candidate's statement.
    should_equal : the reference quantity its value should equal (e.g. "dL/dz1"), or None.
    reference_line : that quantity's line in the reference ("reference.py:11 `a1 = ...`").
    words : what is wrong on it, where the evidence shows it.
    agreeing : the last value before it that agrees with the reference (line, text, quantity).
    """

    file: str
    line: int
    function: str
    source: str
    should_equal: str | None
    reference_line: str | None
    words: str
    agreeing: str | None = None

    def lines(self) -> list[str]:
        """The report's ``where:`` section."""
        out = [
            f"where: the error enters at {_shown(self.file)}:{self.line}, in {self.function}",
            f"  {self.line} | {self.source}",
            f"  {self.words}",
        ]
        if self.agreeing:
            out.append(f"  last agreeing: {self.agreeing}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: file, line, function, source, should_equal, reference_line (and
        the words)."""
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "source": self.source,
            "should_equal": self.should_equal,
            "reference_line": self.reference_line,
            "words": self.words,
        }


def _shown(file: str) -> str:
    """``file`` relative to the working directory when it lies under it."""
    try:
        relative = os.path.relpath(file)
    except ValueError:
        return file
    return file if relative.startswith("..") else relative


@dataclass(frozen=True)
class NotLocated:
    """No single line can be singled out, and why."""

    reason: str

    def lines(self) -> list[str]:
        return [f"where: not located ({self.reason})"]


# -- agreement ------------------------------------------------------------------------------


def _aligned(c: np.ndarray[Any, Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any] | None:
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


def _agrees(c: np.ndarray[Any, Any], r: np.ndarray[Any, Any], terms: int) -> bool:
    """``c`` equals ``r`` within the tolerance of ``c``'s precision (float64 for bool)."""
    a = _aligned(c, r.shape)
    if a is None or r.dtype.kind not in "fb":
        return False
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    a64, r64 = a.astype(np.float64), r.astype(np.float64)
    scale = float(np.max(np.abs(r64), initial=0.0))
    rtol, atol = tolerance(dtype, scale=scale, terms=terms)
    with np.errstate(all="ignore"):
        ok = np.abs(a64 - r64) <= 16 * (atol + rtol * np.abs(r64))
        return bool(np.all(ok | (a64 == r64)))


@dataclass(frozen=True)
class _Run:
    """One input: the candidate's trace and the reference's quantities."""

    trace: Trace
    quantities: dict[tuple[Any, ...], Quantity]
    nodes: dict[tuple[str, int, str, int], Node]
    terms: int
    axes: list[tuple[str, int]]


@dataclass(frozen=True)
class _Target:
    """What a value should equal: a reference quantity, or a local derivative of a step."""

    name: str
    where: str
    values: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
    quantity: Quantity | None = None


def _target(runs: Sequence[_Run], key: tuple[Any, ...]) -> _Target | None:
    found = [run.quantities.get(key) for run in runs]
    if any(q is None for q in found):
        return None
    qa, qb = found
    assert qa is not None
    assert qb is not None
    return _Target(qa.name, qa.where, (qa.value, qb.value), qa)


# -- evaluating a statement again ------------------------------------------------------------


def _like(original: Any, value: np.ndarray[Any, Any]) -> Any:
    """``value`` in the type of ``original`` (a torch tensor stays one; a Python float too)."""
    import sys

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


def _rerun(
    node: Node, trace: Trace, replace: dict[str, np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any] | None:
    """The node's value with its statement run again on the values it read (copies), some of
    them replaced; None where that cannot be done."""
    code = _program(node)
    if code is None:
        return None
    namespace = dict(node.namespace)
    for read in node.reads:
        if read.name and read.name in namespace:
            given = replace.get(read.name, trace.nodes[read.node].value)
            namespace[read.name] = _like(namespace[read.name], np.array(given, copy=True))
    try:
        with np.errstate(all="ignore"):
            exec(code, dict(node.globals), namespace)
    except Exception:
        return None
    name, _, index = node.name.partition("[")
    value: Any = namespace.get("__result__" if name == "return" else name)
    if index:
        for part in ("[" + index).strip("[]").split("]["):
            try:
                value = value[int(part)]
            except Exception:
                return None
    from verification.auditing._trace import as_array

    return as_array(value)


# -- the walk -------------------------------------------------------------------------------


class _Locator:
    def __init__(self, runs: Sequence[_Run]) -> None:
        self.runs = runs
        self.matches_memo: dict[tuple[str, int, str, int], list[Quantity]] = {}

    def pair(self, node: Node) -> tuple[Node, Node] | None:
        other = self.runs[1].nodes.get(node.key)
        return None if other is None else (node, other)

    def matches(self, node: Node) -> list[Quantity]:
        """The reference quantities ``node`` equals at both inputs (a scalar the candidate
        computed matches none: one number agrees with some reference number too easily)."""
        if node.key in self.matches_memo:
            return self.matches_memo[node.key]
        pair = self.pair(node)
        found: list[Quantity] = []
        if pair is not None and (pair[1].value.size > 1 or not pair[1].line):
            a, b = pair
            for key, qa in self.runs[0].quantities.items():
                qb = self.runs[1].quantities.get(key)
                if qb is None or _aligned(a.value, qa.value.shape) is None:
                    continue
                if _agrees(a.value, qa.value, self.runs[0].terms) and _agrees(
                    b.value, qb.value, self.runs[1].terms
                ):
                    found.append(qa)
        self.matches_memo[node.key] = found
        return found

    def produces(self, node: Node, replace: Sequence[dict[str, Any]], target: _Target) -> bool:
        """Whether the node's statement, re-run at both inputs with ``replace``, gives
        ``target``."""
        pair = self.pair(node)
        if pair is None:
            return False
        for run, n, rep, want in zip(self.runs, pair, replace, target.values, strict=True):
            got = _rerun(n, run.trace, rep)
            if got is None or not _agrees(got, np.asarray(want), run.terms):
                return False
        return True

    def candidates(self, node: Node) -> list[_Target]:
        """Values that could stand where ``node`` was read: the reference quantities of a
        shape it can take, and local derivatives of elementwise reference steps."""
        out: list[_Target] = []
        mine = {q.key for q in self.matches(node)}
        for key, q in self.runs[0].quantities.items():
            if key in mine or _aligned(q.value, node.value.shape) is None:
                continue
            t = _target(self.runs, key)
            if t is not None:
                out.append(t)
        return out + self.derivatives(node)

    def derivatives(self, node: Node) -> list[_Target]:
        """Local derivatives of the reference's elementwise steps, of ``node``'s shape."""
        out: list[_Target] = []
        for key, qa in self.runs[0].quantities.items():
            qb = self.runs[1].quantities.get(key)
            if qb is None or qa.step is None:
                continue
            for position, da in qa.derivatives.items():
                db = qb.derivatives.get(position)
                if db is None or _aligned(node.value, da.shape) is None:
                    continue
                source = self.runs[0].quantities.get(qa.step.input_keys[position] or ())
                of = source.name if source is not None else "its input"
                out.append(
                    _Target(f"the derivative of {qa.name} with respect to {of}", qa.where, (da, db))
                )
        return out

    def fix(self, node: Node, target: _Target) -> list[tuple[str, Node, _Target]]:
        """The reads of ``node`` that, replaced by a reference value, make it ``target``."""
        pair = self.pair(node)
        if pair is None:
            return []
        fixes: list[tuple[str, Node, _Target]] = []
        seen: set[str] = set()
        for read in node.reads:
            if not read.name or read.name in seen:
                continue
            seen.add(read.name)
            read_node = self.runs[0].trace.nodes[read.node]
            other = self.runs[1].nodes.get(read_node.key)
            if other is None:
                continue
            found = []
            for cand in self.candidates(read_node):
                if _aligned(cand.values[1], other.value.shape) is None:
                    continue
                replace = [
                    {read.name: _shaped(cand.values[0], read_node.value)},
                    {read.name: _shaped(cand.values[1], other.value)},
                ]
                if self.produces(node, replace, target):
                    found.append(cand)
            if found:  # the one most like the value it replaces (a factor, a sign, a mask off)
                best = max(found, key=lambda c: _preference(other.value, c))
                fixes.append((read.name, read_node, best))
        return fixes

    def walk(self, start: Node, target: _Target) -> Where | NotLocated:
        node = start
        for _ in range(200):
            if not any(r.name for r in node.reads) and not node.line:
                return NotLocated("the wrong value is an argument of the candidate")
            rerun = self.produces(node, [{}, {}], _Target("", "", self.values_of(node)))
            if not rerun:
                return NotLocated(
                    f"line {node.line} of {node.function} cannot be evaluated on its own "
                    "(a loop header, or a value changed through something it does not name)"
                )
            fixes = self.fix(node, target)
            names = {name for name, _, _ in fixes}
            if len(names) > 1:
                return NotLocated(
                    f"at line {node.line}, replacing either of {', '.join(sorted(names))} by "
                    "the reference's value repairs it: no single line can be singled out"
                )
            upstream: Any = None
            if not fixes:  # no single read repairs it: a value it depends on by two paths?
                found = self.replay_fix(node, target)
                if found is None:
                    return self.blame(node, target)
                upstream, read_node, cand = found
                fixes = [(upstream.name, read_node, cand)]
            name, read_node, cand = fixes[0]
            read = next((r for r in node.reads if r.name == name), None) or upstream
            roles_all = self.matches(read_node)[0] if self.matches(read_node) else None
            roles = [q for q in self.matches(read_node) if q.kind == "gradient"]
            if roles_all is not None and not roles:  # a right forward value
                gradient = cand.quantity is not None and cand.quantity.kind == "gradient"
                if gradient and read_node.line:  # made where a gradient belongs: its line
                    return self.blame(read_node, cand)
                if read_node.line and self.consumers(read_node) == 1:  # made for this use
                    return self.wrong_role(node, read.bound_at, name, read_node, roles_all, cand)
                return self.blame(node, target)  # used here where another value belongs
            if roles:  # a right gradient in the wrong place
                return self.wrong_role(node, read.bound_at, name, read_node, roles[0], cand)
            if node.in_place and read_node.name == node.name and read_node.line == node.line:
                return NotLocated(
                    f"{node.name} is built in place at line {node.line} (through subscripts, "
                    "in a loop): its partial values cannot be checked"
                )
            if not read_node.line:
                return NotLocated("the wrong value is an argument of the candidate")
            node, target = read_node, cand
        return NotLocated("the dataflow is too long to follow")

    def replay_fix(self, node: Node, target: _Target) -> tuple[Any, Node, _Target] | None:
        """A value ``node`` depends on, through more than one path, whose replacement by a
        reference quantity (with every statement after it run again) makes ``node`` right:
        (the read under which ``node``'s frame bound it, its node, the quantity)."""
        pair = self.pair(node)
        if pair is None:
            return None
        ancestors = self.ancestors(node)
        found: list[tuple[float, Any, Node, _Target]] = []
        for index in sorted(ancestors, reverse=True):
            x = self.runs[0].trace.nodes[index]
            other = self.runs[1].nodes.get(x.key)
            if other is None or x.index == node.index:
                continue
            for cand in self.candidates(x):
                if cand.quantity is None or cand.quantity.kind != "gradient":
                    continue
                if _aligned(cand.values[1], other.value.shape) is None:
                    continue
                ok = True
                for run, (xn, end) in enumerate(((x, pair[0]), (other, pair[1]))):
                    value = _shaped(cand.values[run], xn.value)
                    got = self.replayed(run, xn, value, end)
                    if got is None or not _agrees(
                        got, np.asarray(target.values[run]), self.runs[run].terms
                    ):
                        ok = False
                        break
                if ok:
                    read = ancestors[index]
                    found.append((_likeness(other.value, cand.values[1]), read, x, cand))
        if not found:
            return None
        _, read, x, cand = max(found, key=lambda f: f[0])
        return read, x, cand

    def replayed(
        self, run: int, start: Node, value: np.ndarray[Any, Any], end: Node
    ) -> np.ndarray[Any, Any] | None:
        """``end``'s value (at input ``run``) had ``start`` been ``value`` (see ``replay``)."""
        trace = self.runs[run].trace
        changed: dict[int, np.ndarray[Any, Any]] = {start.index: value}
        for n in trace.nodes[start.index + 1 : end.index + 1]:
            hit = [r for r in n.reads if r.node in changed]
            if not hit:
                continue
            if any(not r.name for r in hit):
                return None
            got = _rerun(n, trace, {r.name: changed[r.node] for r in hit})
            if got is None:
                return None
            changed[n.index] = got
        return changed.get(end.index)

    def ancestors(self, node: Node) -> dict[int, Any]:
        """The values ``node`` depends on in its own frame, each with the read (name, line
        that bound it) under which a statement read it first."""
        nodes = self.runs[0].trace.nodes
        out: dict[int, Any] = {}
        todo = [node.index]
        while todo:
            n = nodes[todo.pop()]
            for r in n.reads:
                if r.name and r.node not in out and nodes[r.node].function in ("", n.function):
                    out[r.node] = r
                    todo.append(r.node)
        return out

    def values_of(self, node: Node) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        pair = self.pair(node)
        assert pair is not None
        return pair[0].value, pair[1].value

    def wrong_role(
        self,
        node: Node,
        bound_at: int,
        name: str,
        read_node: Node,
        role: Quantity,
        should: _Target,
    ) -> Where:
        """``name``, read by ``node``, equals the reference's ``role`` where ``should`` belongs:
        the line that bound the name (a rename) or, for a value made for this use alone, the
        line that made it; else the line that reads it."""
        if bound_at and bound_at != read_node.line:
            line = bound_at  # a right value passed on under the wrong name
        elif role.kind != "gradient" and read_node.line:
            line = read_node.line
            node = read_node
        else:
            line = node.line
        words = f"{name} equals {role.name}"
        if role.where:
            words += f" ({role.where})"
        words += f", not {should.name}"
        step = _step_between(role, should.quantity, self.runs[0].quantities)
        if step:
            words += f": the step through {step} is missing"
        return self.where_at(node, line, should, words, read_node)

    def returned_instead(self, node: Node, trace: Trace, role: Quantity, target: _Target) -> Where:
        """The result is a reference gradient, not the one it should be: the ``return`` that
        passed it on (or the line that computed it, when it returned it)."""
        file, line, function = trace.passed_on.get(
            node.index, (node.file, node.line, node.function)
        )
        words = f"returns {role.name}"
        if role.where:
            words += f" ({role.where})"
        words += f", not {target.name}"
        where = self.where_at(node, node.line, target, words, None)
        source = linecache.getline(file, line).strip()
        return dataclasses.replace(where, file=file, line=line, function=function, source=source)

    def consumers(self, node: Node) -> int:
        """How many values of the run read ``node``."""
        return sum(any(r.node == node.index for r in n.reads) for n in self.runs[0].trace.nodes)

    def gradient_side(self, node: Node) -> bool:
        """Whether ``node`` is, or was computed from, a value equal to a reference gradient."""
        nodes, todo, seen = self.runs[0].trace.nodes, [node.index], set()
        while todo:
            n = nodes[todo.pop()]
            if n.index in seen:
                continue
            seen.add(n.index)
            if any(q.kind == "gradient" for q in self.matches(n)):
                return True
            todo += [r.node for r in n.reads]
        return False

    def blame(self, node: Node, target: _Target) -> Where | NotLocated:
        """``node``'s line, unless a value it read from another line that no reference
        quantity checks could be what is wrong (``could_fix``)."""
        computed = [n for n in self.runs[0].trace.nodes if n.line]
        if all(n.index == node.index for n in computed):
            return NotLocated(
                f"the candidate computes it in one line ({node.function}, line {node.line}) "
                "from its arguments: there is no narrower line to point at"
            )
        words = _how_wrong(self.values_of(node), target, [run.axes for run in self.runs])
        clean = not words.startswith("should")  # a factor or a size: this line's own doing
        for read in node.reads:
            r = self.runs[0].trace.nodes[read.node]
            if read.name == "" and not self.matches(r):
                return NotLocated(
                    f"line {node.line} calls a helper whose result matches no reference "
                    "quantity and cannot be replaced on its own"
                )
            if not read.name or not r.line or r.index == node.index or self.matches(r):
                continue
            if r.name == node.name and node.in_place:
                return NotLocated(
                    f"{node.name} is built in place at line {node.line} (through subscripts "
                    "or an accumulation): its partial values cannot be checked"
                )
            if not clean and self.could_fix(node, read.name, r, target):
                return NotLocated(
                    f"line {node.line} reads {read.name} from line {r.line}, which matches no "
                    "reference quantity, and some value of it would make the line right: "
                    "either line may hold the error"
                )
        return self.where_at(node, node.line, target, words, None)

    def could_fix(self, node: Node, name: str, read_node: Node, target: _Target) -> bool:
        """Whether some value of ``name`` (of its shape, or of a smaller shape that
        broadcasts to the line's) makes the line produce ``target`` at the second input.
        Measured by running the line with the read replaced (it must be affine in it);
        True where that cannot be measured."""
        pair, other = self.pair(node), self.runs[1].nodes.get(read_node.key)
        if pair is None or other is None:
            return True
        line_b, run_b = pair[1], self.runs[1]
        want = _aligned(np.asarray(target.values[1], np.float64), line_b.value.shape)
        if want is None:
            return True
        shapes = {other.value.shape}
        if other.value.size < line_b.value.size:
            full = line_b.value.shape
            shapes |= {
                tuple(1 if j == i else n for j, n in enumerate(full)) for i in range(len(full))
            }
            shapes |= {
                tuple(n if j == i else 1 for j, n in enumerate(full)) for i in range(len(full))
            }
        for shape in shapes:
            size = math.prod(shape)
            if size > 128 or size >= line_b.value.size:
                if shape == other.value.shape and size <= 128:
                    pass
                else:
                    continue
            start = (
                np.zeros(shape) if shape != other.value.shape else other.value.astype(np.float64)
            )

            def f(v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
                got = _rerun(line_b, run_b.trace, {name: v})
                return None if got is None else got.astype(np.float64).ravel()

            base = f(start)
            if base is None or base.size != want.size:
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
            scale = float(np.max(np.abs(want), initial=0.0)) or 1.0
            if out is None or not np.allclose(out, base + a @ probe, atol=1e-8 * scale):
                return True  # not affine in it: cannot be ruled out
            step, *_ = np.linalg.lstsq(a, want.ravel() - base, rcond=None)
            residual = float(np.max(np.abs(a @ step + base - want.ravel()), initial=0.0))
            if residual <= 1e-8 * scale:
                return True
        return False

    def where_at(
        self, node: Node, line: int, target: _Target, words: str, read_node: Node | None
    ) -> Where:
        source = linecache.getline(node.file, line).strip()
        reference = None
        q = target.quantity
        if q is not None and q.line:
            reference = f"{q.file}:{q.line} `{q.source}`"
        elif target.where:
            reference = target.where
        agreeing = None
        for read in sorted(node.reads, key=lambda r: -r.node):
            r = self.runs[0].trace.nodes[read.node]
            roles = [m for m in self.matches(r) if m.kind == "gradient"]
            if r.line and roles and r is not read_node:
                agreeing = f"line {r.line}, `{r.source}` ({r.name} = {roles[0].name})"
                break
        return Where(
            node.file,
            line,
            node.function,
            source,
            target.name or None,
            reference,
            words,
            agreeing,
        )


def _preference(value: np.ndarray[Any, Any], candidate: _Target) -> tuple[float, bool, bool]:
    """Which of several repairing quantities a value stands for: the one most like it, then
    one the reference names (dL/dz1 over the gradient of an unnamed step)."""
    named = " on reference line " not in candidate.name
    return round(_likeness(value, candidate.values[1]), 9), named, candidate.name.startswith("dL/d")


def _likeness(value: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> float:
    """|cosine| between ``value`` and ``want`` (aligned): 1 for a constant multiple."""
    a = _aligned(value, np.shape(want))
    if a is None:
        return 0.0
    x, y = a.astype(np.float64).ravel(), np.asarray(want, np.float64).ravel()
    with np.errstate(all="ignore"):
        c = abs(float(np.vdot(x, y))) / (float(np.linalg.norm(x) * np.linalg.norm(y)) or 1.0)
    return c if math.isfinite(c) else 0.0


def _shaped(value: np.ndarray[Any, Any], like: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``value`` arranged as ``like`` (transposed or reshaped), in ``like``'s float dtype."""
    a = _aligned(value, like.shape)
    out = value if a is None else a
    dtype = like.dtype if like.dtype.kind == "f" else np.float64
    return np.asarray(out, dtype=dtype)


def _step_between(
    role: Quantity, should: Quantity | None, quantities: dict[tuple[Any, ...], Quantity]
) -> str | None:
    """The reference step from ``should``'s value to ``role``'s (e.g. "a1 = jnp.tanh(z1)",
    reference line 11), when one step links them."""
    if should is None or role.of is None or should.of is None:
        return None
    value = quantities.get(role.of)
    if value is None or value.step is None or should.of not in value.step.input_keys:
        return None
    return step_name(value.step)


def _axes(args: tuple[Any, ...], arg_names: Sequence[str]) -> list[tuple[str, int]]:
    """(name, size) of every axis of every array argument: "x.shape[0]"."""
    out = []
    for i, arg in enumerate(args):
        for path, leaf in tree_util.tree_flatten_with_path(arg)[0]:
            for axis, size in enumerate(np.shape(leaf)):
                out.append((f"{arg_names[i]}{tree_util.keystr(path)}.shape[{axis}]", size))
    return out


def _factor(values: Sequence[np.ndarray[Any, Any]], wants: Sequence[Any]) -> list[float] | None:
    """The constant c with value = c * want at each input, if there is one."""
    factors = []
    for got, want in zip(values, wants, strict=True):
        w = np.asarray(want, np.float64)
        a = _aligned(got, w.shape)
        if a is None or not np.any(w):
            return None
        a = a.astype(np.float64)
        c = float(np.vdot(a, w) / np.vdot(w, w))
        if c == 0 or not np.allclose(a, c * w, rtol=1e-9, atol=1e-12 * np.max(np.abs(w))):
            return None
        factors.append(c)
    return factors


def _how_wrong(
    values: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    target: _Target,
    axes: Sequence[Sequence[tuple[str, int]]],
) -> str:
    """ "is -1 times dL/dz2" or "is 1/x.shape[0] times dL/dz2" where a constant or a size
    explains it at both inputs (of different sizes), else "should equal dL/dz2"."""
    factors = _factor(values, target.values)
    plain = f"should equal {target.name}"
    if factors is None:
        return plain
    ca, cb = factors
    if math.isclose(ca, cb, rel_tol=1e-9):
        return f"is {ca:.6g} times {target.name}, not equal to it"
    for (name, sa), (_, sb) in zip(*axes, strict=False):
        for sign in (1.0, -1.0):
            for power, text in ((1, name), (-1, f"1/{name}")):
                fa, fb = sign * float(sa) ** power, sign * float(sb) ** power
                if math.isclose(ca, fa, rel_tol=1e-9) and math.isclose(cb, fb, rel_tol=1e-9):
                    spelled = text if sign > 0 else f"-{text}"
                    return f"is {spelled} times {target.name}, not equal to it"
    return plain


# -- entry point -------------------------------------------------------------------------------


def _run(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
) -> _Run | NotLocated:
    quantities = reference_quantities(loss_fn, args, argnums, arg_names)
    labelled = []
    for i, arg in enumerate(args):
        for path, leaf in tree_util.tree_flatten_with_path(arg)[0]:
            labelled.append((f"{arg_names[i]}{tree_util.keystr(path)}", leaf))
    trace = trace_call(grad_fn, args, labelled)
    if not trace.complete:
        return NotLocated("the candidate ran too many statements to follow")
    if trace.error is not None:
        return NotLocated(f"the candidate raised {type(trace.error).__name__} under the tracer")
    terms = max([int(np.size(x)) for x in tree_util.tree_leaves(args)], default=1)
    return _Run(
        trace,
        {q.key: q for q in quantities},
        {n.key: n for n in trace.nodes},
        terms,
        _axes(args, arg_names),
    )


def _leaf_key(args: tuple[Any, ...], argnums: tuple[int, ...], leaf: int) -> tuple[Any, ...]:
    """The key of the reference gradient of the ``leaf``-th differentiated leaf."""
    flat = tree_util.tree_flatten_with_path(tuple(args))[0]
    order = [
        i
        for argnum in argnums
        for i, (path, _) in enumerate(flat)
        if getattr(path[0], "idx", -1) == argnum
    ]
    return ("gradient", "input", order[leaf])


def locate(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    inputs: Sequence[tuple[Any, ...]],
    *,
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
    leaf: int,
) -> Where | NotLocated:
    """The line of ``grad_fn`` where the error in its ``leaf``-th gradient leaf enters.

    inputs : two failing inputs, the shrunk counterexample and one with all sizes distinct
        and > 1. argnums, arg_names : as the audit's. Returns a ``Where``, or ``NotLocated``
        with the reason; never raises for what the candidate does.
    """
    if len(inputs) != 2:
        return NotLocated("a second failing input with distinct sizes could not be drawn")
    runs: list[_Run] = []
    for args in inputs:
        try:
            run = _run(grad_fn, loss_fn, args, argnums, arg_names)
        except Exception as error:  # the reference's walk: not the candidate's fault
            return NotLocated(f"the reference's quantities could not be computed ({error})")
        if isinstance(run, NotLocated):
            return run
        runs.append(run)
    out_nodes = []
    for run in runs:
        leaves = tree_util.tree_leaves(run.trace.result, is_leaf=none_leaf)
        if leaf >= len(leaves):
            return NotLocated("the candidate's result has another structure under the tracer")
        node = run.trace.node_of(leaves[leaf])
        if node is None or not node.line:
            return NotLocated(
                "the wrong gradient was not computed by a line of Python in the user's files "
                "(compiled, or built outside them)"
            )
        out_nodes.append(node)
    if out_nodes[0].key != out_nodes[1].key:
        return NotLocated("the two inputs take different paths through the code")
    locator = _Locator(runs)
    target = _target(runs, _leaf_key(inputs[0], argnums, leaf))
    if target is None:
        return NotLocated("the reference has no gradient for the failing leaf")
    matched = locator.matches(out_nodes[0])
    if target.quantity in matched:
        return NotLocated("the failing leaf agrees with the reference under the tracer")
    roles = [q for q in matched if q.kind == "gradient"]
    if roles:  # a right gradient returned where another belongs
        return locator.returned_instead(out_nodes[0], runs[0].trace, roles[0], target)
    return locator.walk(out_nodes[0], target)


# -- from the engine ------------------------------------------------------------------------


def _distinctness(
    args: tuple[Any, ...], first: tuple[Any, ...]
) -> tuple[int, int, int, int] | None:
    """How well the sizes of ``args`` keep shapes apart: None if an axis has size 1 (or there
    is no array), else (arrays whose axes all differ, axes whose size differs from the same
    axis of ``first``, distinct sizes, -total size); higher is better. Every array's axes
    distinct is what a transpose needs to be told apart; sizes other than the first input's
    tell a size (m) from a constant factor."""
    shapes = [np.shape(leaf) for leaf in tree_util.tree_leaves(args)]
    arrays = [s for s in shapes if len(s)]
    if not arrays or any(n < 2 for s in arrays for n in s):
        return None
    own = sum(len(set(s)) == len(s) for s in arrays)
    before = [np.shape(leaf) for leaf in tree_util.tree_leaves(first)]
    moved = sum(
        a != b
        for s, t in zip(shapes, before, strict=False)
        if len(s) == len(t)
        for a, b in zip(s, t, strict=True)
    )
    sizes = len({n for s in arrays for n in s})
    return own, moved, sizes, -sum(math.prod(s) for s in arrays)


def _spread(args: tuple[Any, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    """``args`` with every float array that is not made of 0s and 1s, both present (labels,
    one-hot rows),
    redrawn uniformly within the range of its own values (symmetric when it has a negative
    value; [-1, 1] where they are all alike): distinct values, in the same domain as far as
    the range shows it. A drawn example
    repeats values (0s, 1s) that make different reference quantities coincide."""

    def spread(leaf: Any) -> Any:
        a = np.asarray(leaf)
        labels = np.all((a == 0) | (a == 1)) and np.any(a == 0) and np.any(a == 1)
        if a.dtype.kind != "f" or a.ndim == 0 or labels:
            return leaf
        lo, hi = float(np.min(a)), float(np.max(a))
        if lo < 0:  # a signed array: both signs, up to its largest magnitude
            top = max(-lo, hi)
            lo, hi = -top, top
        if hi - lo < 1e-3 * max(1.0, abs(hi)):
            lo, hi = (0.5 * lo, 1.5 * lo) if lo > 0 else (-1.0, 1.0)
        return rng.uniform(lo, hi, a.shape).astype(a.dtype)

    out: tuple[Any, ...] = tree_util.tree_map(spread, args)
    return out


def _fails_at(check: Callable[[tuple[Any, ...]], Any], args: tuple[Any, ...], leaf: int) -> bool:
    """Whether the audit's check fails on ``args`` with leaf ``leaf`` wrong."""
    try:
        outcome = check(args)
    except Exception:
        return False
    if outcome.kind != "mismatch" or outcome.got is None or outcome.grad is None:
        return False
    got, want = np.asarray(outcome.got[leaf]), np.asarray(outcome.grad[leaf])
    terms = max([int(np.size(x)) for x in tree_util.tree_leaves(args)], default=1)
    return not _agrees(got, want, terms)


def second_input(
    check: Callable[[tuple[Any, ...]], Any],
    drawn: Any,
    first: tuple[Any, ...],
    leaf: int,
    seed: int,
) -> tuple[Any, ...] | None:
    """A failing input (leaf ``leaf`` wrong) whose sizes are all distinct and > 1: drawn from
    the audit's strategy (generation only, no shrinking: a shrunk input is made of 0s and 1s),
    or, for a concrete input, random values at its shapes when they qualify. None if none."""
    from hypothesis import HealthCheck, Phase, find, settings, strategies as st

    from verification.pinned import pinned_generation

    best: list[tuple[tuple[int, int, int, int], tuple[Any, ...]]] = []
    checks = [0]

    rng = np.random.default_rng(seed)

    def wanted(drawn_args: tuple[Any, ...]) -> bool:
        score = _distinctness(drawn_args, first)
        if score is None or (best and score <= best[0][0]):
            return False
        args = _spread(drawn_args, rng)
        if checks[0] >= 5:
            return False
        checks[0] += 1
        if not _fails_at(check, args, leaf):
            return False
        best[:] = [(score, args)]
        axes = [n for x in tree_util.tree_leaves(args) for n in np.shape(x)]
        arrays = [x for x in tree_util.tree_leaves(args) if np.ndim(x)]
        return score[0] == len(arrays) and score[1] == len(axes)  # the best there is

    if isinstance(drawn, st.SearchStrategy):
        quiet = settings(
            database=None,
            max_examples=60,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        try:
            with pinned_generation():
                find(drawn, wanted, settings=quiet)
        except Exception:
            pass
        return best[0][1] if best else None
    for _ in range(3):
        wanted(first)
    return best[0][1] if best else None


def leaf_index(location: str | None, names: Sequence[str]) -> int | None:
    """The index of the leaf that ``location`` ("W2[0, 1]", "params.W2") names."""
    if location is None:
        return None
    for i, name in enumerate(names):
        if location == name or location.startswith(name + "["):
            return i
    return None


def locate_failure(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    check: Callable[[tuple[Any, ...]], Any],
    drawn: Any,
    counterexample: tuple[Any, ...],
    *,
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
    leaf: int,
    seed: int,
) -> Where | NotLocated:
    """``locate`` at the counterexample and a second failing input (``second_input``)."""
    other = second_input(check, drawn, counterexample, leaf, seed)
    if other is None:
        return NotLocated(
            "no second failing input with all sizes > 1 could be drawn, so no value can be "
            "matched to the reference with confidence"
        )
    return locate(
        grad_fn, loss_fn, [counterexample, other], argnums=argnums, arg_names=arg_names, leaf=leaf
    )
