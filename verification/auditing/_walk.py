"""The walk back from the wrong output leaf through the candidate's dataflow (``_locate``).

Each step is decided by evaluating a statement again with one value it read replaced by a
reference quantity (or by the local derivative of a reference step):

* if putting quantity q in place of the value read as ``a`` makes the statement produce what
  it should, ``a`` is where the error is: the walk continues at the statement that made ``a``,
  which should equal q (or, when ``a`` equals another reference quantity p, the line that
  bound ``a`` holds p where q belongs: "equals dL/da1, not dL/dz1");
* if no single replacement repairs it, the statement itself is where the error enters.

A value *is* a reference quantity when it agrees with it, within the float64 tolerance, at
both inputs (a transpose and size-1 axes allowed).
"""

from __future__ import annotations

import dataclasses
import linecache
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verification.auditing._containers import split_name
from verification.auditing._refquant import Quantity
from verification.auditing._rerun import (
    agrees,
    aligned,
    likeness,
    rerun,
    shaped,
    some_value_repairs,
)
from verification.auditing._source import only_fetches
from verification.auditing._trace import Node, Trace
from verification.auditing._where import NotLocated, Target, Where, how_wrong, step_between

__all__ = ["Locator", "Run", "target_of"]


@dataclass(frozen=True)
class Run:
    """One input: the candidate's trace and the reference's quantities."""

    trace: Trace
    quantities: dict[tuple[Any, ...], Quantity]
    nodes: dict[tuple[str, int, str, int], Node]
    terms: int
    axes: list[tuple[str, int]]


def target_of(runs: Sequence[Run], key: tuple[Any, ...]) -> Target | None:
    found = [run.quantities.get(key) for run in runs]
    if any(q is None for q in found):
        return None
    qa, qb = found
    assert qa is not None
    assert qb is not None
    return Target(qa.name, qa.where, (qa.value, qb.value), qa)


class Locator:
    def __init__(self, runs: Sequence[Run]) -> None:
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
                if qb is None or aligned(a.value, qa.value.shape) is None:
                    continue
                if agrees(a.value, qa.value, self.runs[0].terms) and agrees(
                    b.value, qb.value, self.runs[1].terms
                ):
                    found.append(qa)
        self.matches_memo[node.key] = found
        return found

    def produces(self, node: Node, replace: Sequence[dict[str, Any]], target: Target) -> bool:
        """Whether the node's statement, re-run at both inputs with ``replace``, gives
        ``target``."""
        pair = self.pair(node)
        if pair is None:
            return False
        for run, n, rep, want in zip(self.runs, pair, replace, target.values, strict=True):
            got = rerun(n, run.trace, rep)
            if got is None or not agrees(got, np.asarray(want), run.terms):
                return False
        return True

    def candidates(self, node: Node) -> list[Target]:
        """Values that could stand where ``node`` was read: the reference quantities of a
        shape it can take, and local derivatives of elementwise reference steps."""
        out: list[Target] = []
        mine = {q.key for q in self.matches(node)}
        for key, q in self.runs[0].quantities.items():
            if key in mine or aligned(q.value, node.value.shape) is None:
                continue
            t = target_of(self.runs, key)
            if t is not None:
                out.append(t)
        return out + self.derivatives(node)

    def derivatives(self, node: Node) -> list[Target]:
        """Local derivatives of the reference's elementwise steps, of ``node``'s shape."""
        out: list[Target] = []
        for key, qa in self.runs[0].quantities.items():
            qb = self.runs[1].quantities.get(key)
            if qb is None or qa.step is None:
                continue
            for position, da in qa.derivatives.items():
                db = qb.derivatives.get(position)
                if db is None or aligned(node.value, da.shape) is None:
                    continue
                source = self.runs[0].quantities.get(qa.step.input_keys[position] or ())
                of = source.name if source is not None else "its input"
                out.append(
                    Target(f"the derivative of {qa.name} with respect to {of}", qa.where, (da, db))
                )
        return out

    def fix(self, node: Node, target: Target) -> list[tuple[str, Node, Target]]:
        """The reads of ``node`` that, replaced by a reference value, make it ``target``."""
        pair = self.pair(node)
        if pair is None:
            return []
        fixes: list[tuple[str, Node, Target]] = []
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
                if aligned(cand.values[1], other.value.shape) is None:
                    continue
                replace = [
                    {read.name: shaped(cand.values[0], read_node.value)},
                    {read.name: shaped(cand.values[1], other.value)},
                ]
                if self.produces(node, replace, target):
                    found.append(cand)
            if found:  # the one most like the value it replaces (a factor, a sign, a mask off)
                best = max(found, key=lambda c: _preference(other.value, c))
                fixes.append((read.name, read_node, best))
        return fixes

    def walk(self, start: Node, target: Target) -> Where | NotLocated:
        node = start
        for _ in range(200):
            if not any(r.name for r in node.reads) and not node.line:
                return NotLocated("the wrong value is an argument of the candidate")
            rerun = self.produces(node, [{}, {}], Target("", "", self.values_of(node)))
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

    def replay_fix(self, node: Node, target: Target) -> tuple[Any, Node, Target] | None:
        """A value ``node`` depends on, through more than one path, whose replacement by a
        reference quantity (with every statement after it run again) makes ``node`` right:
        (the read under which ``node``'s frame bound it, its node, the quantity)."""
        pair = self.pair(node)
        if pair is None:
            return None
        ancestors = self.ancestors(node)
        found: list[tuple[float, Any, Node, Target]] = []
        for index in sorted(ancestors, reverse=True):
            x = self.runs[0].trace.nodes[index]
            other = self.runs[1].nodes.get(x.key)
            if other is None or x.index == node.index:
                continue
            for cand in self.candidates(x):
                if cand.quantity is None or cand.quantity.kind != "gradient":
                    continue
                if aligned(cand.values[1], other.value.shape) is None:
                    continue
                ok = True
                for run, (xn, end) in enumerate(((x, pair[0]), (other, pair[1]))):
                    value = shaped(cand.values[run], xn.value)
                    got = self.replayed(run, xn, value, end)
                    if got is None or not agrees(
                        got, np.asarray(target.values[run]), self.runs[run].terms
                    ):
                        ok = False
                        break
                if ok:
                    read = ancestors[index]
                    found.append((likeness(other.value, cand.values[1]), read, x, cand))
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
            got = rerun(n, trace, {r.name: changed[r.node] for r in hit})
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
        should: Target,
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
        words += _cited(role)
        words += f", not {should.name}"
        step = step_between(role, should.quantity, self.runs[0].quantities)
        if step:
            words += f": the step through {step} is missing"
        return self.where_at(node, line, should, words, read_node)

    def returned_instead(self, node: Node, trace: Trace, role: Quantity, target: Target) -> Where:
        """The result is a reference gradient, not the one it should be: the ``return`` that
        passed it on (or the line that computed it, when it returned it)."""
        file, line, function = trace.passed_on.get(
            node.index, (node.file, node.line, node.function)
        )
        words = f"returns {role.name}"
        words += _cited(role)
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

    def blame(self, node: Node, target: Target) -> Where | NotLocated:
        """``node``'s line, unless a value it read from another line that no reference
        quantity checks could be what is wrong (``could_fix``)."""
        if not node.in_place and only_fetches(
            node.file, node.line, tuple(split_name(node.name)[1])
        ):
            return NotLocated(
                f"line {node.line} only reads the wrong value from where the tracer does not "
                "look (an object that is not a tuple, list, dict or of a class in the user's "
                "files); it does not compute it"
            )
        computed = [n for n in self.runs[0].trace.nodes if n.line]
        if all(n.index == node.index for n in computed):
            return NotLocated(
                f"the candidate computes it in one line ({node.function}, line {node.line}) "
                "from its arguments: there is no narrower line to point at"
            )
        words = how_wrong(self.values_of(node), target, [run.axes for run in self.runs])
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

    def could_fix(self, node: Node, name: str, read_node: Node, target: Target) -> bool:
        """Whether some value of ``name`` makes the line produce ``target`` at the second
        input (``some_value_repairs``); True where that cannot be measured."""
        pair, other = self.pair(node), self.runs[1].nodes.get(read_node.key)
        if pair is None or other is None:
            return True
        return some_value_repairs(pair[1], self.runs[1].trace, name, other.value, target.values[1])

    def where_at(
        self, node: Node, line: int, target: Target, words: str, read_node: Node | None
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


def _cited(role: Quantity) -> str:
    """ " (reference line 11, `a1 = jnp.tanh(z1)`)" after a quantity's name; only the source
    where the name already gives the line ("the dot_general on reference line 11")."""
    if not role.where:
        return ""
    if f"reference line {role.line}" in role.name:
        return f" (`{role.source}`)"
    return f" ({role.where})"


def _preference(value: np.ndarray[Any, Any], candidate: Target) -> tuple[float, bool, bool]:
    """Which of several repairing quantities a value stands for: the one most like it, then
    one the reference names (dL/dz1 over the gradient of an unnamed step)."""
    named = " on reference line " not in candidate.name
    return round(likeness(value, candidate.values[1]), 9), named, candidate.name.startswith("dL/d")
