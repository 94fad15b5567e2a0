"""Watch a candidate run: the values each line of the user's own code binds, and what it read.

``trace_call(fn, args)`` calls ``fn(*args)`` under a line tracer (``sys.monitoring`` on Python
3.12+, ``sys.settrace`` before) that is active only in the user's source files: not the
standard library, site-packages, numpy, jax, torch, or this project's ``verification``
package. For every executed statement it records the arrays and scalars the statement binds
(locals that are new, rebound, or changed in place: numpy arrays, torch tensors, Python and
NumPy floats, and the arrays held in a tuple, list, dict or object of the user's class under
their path, ``grads['W1']``, ``self.dW``: ``_containers``), copied as numpy arrays, as
``Node``s; the return values of the user's helper
functions are nodes of the ``return`` line inside the helper. Each node lists what its
statement read (``Read``: the names in the statement's AST, each with the node it was bound
to at the time, and the helper results computed on that line): the candidate's dataflow graph.
A value that is only passed on (``dz = da``, a cache unpacked, an argument of a helper) is the
node it came from; the line that bound the name is kept with the read.

The candidate's behaviour does not change: what is recorded is copied, the tracer that was
installed before is restored, also when the candidate raises.
"""

from __future__ import annotations

import linecache
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np

from verification.auditing._containers import contents_id, is_container, leaves, under
from verification.auditing._hooks import TooLongError, with_monitoring, with_settrace
from verification.auditing._source import names_read, statement_at

__all__ = ["MAX_HELD", "MAX_STATEMENTS", "Node", "Read", "Trace", "trace_call"]

MAX_STATEMENTS = 20_000
"""Statements executed before the tracer stops recording (the trace is then incomplete)."""


MAX_HELD = 1 << 22
"""Elements of an array held in a container (``_containers``) from which the tracer passes it
by: a training set kept on an object is not copied at every statement."""


@dataclass(frozen=True)
class Read:
    """A value a statement read: the ``name`` it read it under, the ``node`` (index) that
    made it, and ``bound_at``, the line that bound the name in that frame (0 for an argument)."""

    name: str
    node: int
    bound_at: int


@dataclass
class Node:
    """A value the candidate computed: where, under which name, from what.

    file, line, function : the statement (its first line) that produced the value; line 0 and
        file "" for the candidate's arguments.
    name : the local it was bound to, or "return"/"return[i]" for a helper's result.
    value : a numpy copy of it (float or bool).
    reads : what the statement read.
    occurrence : how many values of this (file, line, name) came before it in the run.
    in_place : the statement changed an existing array instead of binding a new one.
    namespace, globals : the frame's locals before the statement, and its globals (to
        evaluate the statement again with other values).
    """

    index: int
    file: str
    line: int
    function: str
    name: str
    value: np.ndarray[Any, Any]
    reads: tuple[Read, ...] = ()
    occurrence: int = 0
    in_place: bool = False
    namespace: dict[str, Any] = field(default_factory=dict, repr=False)
    globals: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> tuple[str, int, str, int]:
        """Where and when it was made: the same at another input if the code path is."""
        return (self.file, self.line, self.name, self.occurrence)

    @property
    def source(self) -> str:
        """The text of its statement's first line."""
        return linecache.getline(self.file, self.line).strip() if self.line else ""


@dataclass
class Trace:
    """A traced call: its nodes, result (or error), and whether recording was cut short."""

    nodes: list[Node]
    result: Any
    error: BaseException | None
    complete: bool
    by_id: dict[int, tuple[int, Any]] = field(default_factory=dict, repr=False)
    passed_on: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    """node index -> (file, line, function) of the last ``return`` that passed it on unchanged."""

    def node_of(self, obj: Any) -> Node | None:
        """The node whose value is the object ``obj`` (by identity), or the last node equal
        to it (a copy made outside the user's code), or None."""
        found = self.by_id.get(id(obj))
        if found is not None and found[1] is obj:
            return self.nodes[found[0]]
        value = as_array(obj)
        if value is None:
            return None
        for node in reversed(self.nodes):
            same = node.line and node.value.shape == value.shape
            if same and np.array_equal(node.value, value, equal_nan=True):
                return node
        return None


def _elements(obj: Any) -> int:
    """Elements of a numpy array or torch tensor (1 for anything else)."""
    if isinstance(obj, np.ndarray):
        return int(obj.size)
    numel = getattr(obj, "numel", None)
    return int(numel()) if callable(numel) and type(obj).__module__.startswith("torch") else 1


def as_array(obj: Any) -> np.ndarray[Any, Any] | None:
    """A numpy copy of a float/bool array, tensor or float scalar; None for anything else."""
    if isinstance(obj, np.ndarray):
        return obj.copy() if obj.dtype.kind in "fb" else None
    if isinstance(obj, (float, np.floating)) and not isinstance(obj, bool):
        return np.array(obj)
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and isinstance(obj, torch.Tensor)
        and (obj.dtype.is_floating_point or obj.dtype == torch.bool)
    ):
        return np.array(obj.detach().cpu().numpy(), copy=True)
    return None


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


@dataclass
class _Frame:
    """What the recorder knows about one running frame of user code."""

    file: str
    function: str
    line: int = 0
    lasti: int = -1
    names: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """name -> (node index, id of the object, line that bound it)."""
    calls: list[int] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=dict)
    containers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """name -> ``_containers.contents_id`` of the container it was bound to when last seen."""


class _Recorder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.by_id: dict[int, tuple[int, Any]] = {}
        self.frames: dict[int, _Frame] = {}
        self.counts: dict[tuple[str, int, str], int] = {}
        self.statements = 0
        self.complete = True
        self.passed_on: dict[int, tuple[str, int, str]] = {}

    def add(
        self, fs: _Frame | None, name: str, obj: Any, value: np.ndarray[Any, Any], **kw: Any
    ) -> int:
        file, line = (fs.file, fs.line) if fs is not None else ("", 0)
        base = (file, line, name)
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        node = Node(
            len(self.nodes),
            file,
            line,
            fs.function if fs is not None else "",
            name,
            value,
            occurrence=count,
            **kw,
        )
        self.nodes.append(node)
        self.by_id[id(obj)] = (node.index, obj)  # the object is kept alive: ids stay unique
        return node.index

    def known(self, obj: Any) -> int | None:
        found = self.by_id.get(id(obj))
        return found[0] if found is not None and found[1] is obj else None

    def start(self, frame: FrameType) -> None:
        fs = _Frame(
            frame.f_code.co_filename,
            frame.f_code.co_qualname
            if hasattr(frame.f_code, "co_qualname")
            else frame.f_code.co_name,
        )
        self.frames[id(frame)] = fs
        for name, obj in frame.f_locals.items():  # the arguments
            if is_container(obj):  # arrays inside are read as name[...], name.attr
                fs.containers[name] = contents_id(obj)
                for suffix, leaf in leaves(obj):
                    known = self.known(leaf) if suffix else None
                    if known is not None:
                        fs.names[name + suffix] = (known, id(leaf), 0)
                continue
            index = self.known(obj)
            if index is not None:
                fs.names[name] = (index, id(obj), 0)
            else:
                value = as_array(obj)
                if value is None:
                    continue
                caller = self.frames.get(id(frame.f_back)) if frame.f_back else None
                if caller is not None and caller.line:  # computed inline in the call
                    made = self.add(caller, name, obj, value, reads=self.reads(caller))
                    fs.names[name] = (made, id(obj), 0)
                else:
                    fs.names[name] = (self.add(None, name, obj, value), id(obj), 0)

    def reads(self, fs: _Frame) -> tuple[Read, ...]:
        out = []
        for name in names_read(fs.file, fs.line):  # a container's arrays under name[...]
            for key, (index, _, line) in fs.names.items():
                if under(key, name):
                    out.append(Read(key, index, line))
        out += [Read("", index, fs.line) for index in fs.calls]
        return tuple(out)

    def finish(self, frame: FrameType, fs: _Frame) -> None:
        """Record what the statement that just ran in ``frame`` bound or changed."""
        if not fs.line:
            return
        reads: tuple[Read, ...] | None = None
        containers = []
        for name, obj in frame.f_locals.items():
            value = as_array(obj)
            if value is None:
                fs.names.pop(name, None)
                if is_container(obj):
                    containers.append((name, obj))
                continue
            before = fs.names.get(name)
            if before is not None and before[1] == id(obj):
                old = self.nodes[before[0]].value
                if old.shape == value.shape and np.array_equal(old, value, equal_nan=True):
                    continue
                in_place = True
            else:
                index = self.known(obj)
                if index is not None:  # passed on, not computed here
                    fs.names[name] = (index, id(obj), fs.line)
                    continue
                in_place = False
            if reads is None:
                reads = self.reads(fs)
            index = self.add(
                fs,
                name,
                obj,
                value,
                reads=reads,
                in_place=in_place,
                namespace=fs.namespace,
                globals=frame.f_globals,
            )
            fs.names[name] = (index, id(obj), fs.line)
        for name, obj in containers:  # after the plain locals: an item may be one of them
            reads = reads if reads is not None else self.reads(fs)
            self.contents(frame, fs, name, obj, reads)

    def contents(
        self, frame: FrameType, fs: _Frame, name: str, obj: Any, reads: tuple[Read, ...]
    ) -> None:
        """The arrays a statement put into a container (``_containers``: a tuple, list, dict or
        an object of the user's class), or changed in place inside one (``grads = Net(x.T @
        dz, ...)``, ``grads["W1"] = x.T @ dz``, ``grads["W1"] += reg * W1``, ``self.dW =
        x.T @ dout``), as values ``name[i]``, ``name['W1']``, ``self.dW`` of that statement;
        every array it holds is readable under that path (``reads``)."""
        seen = contents_id(obj)
        if fs.containers.get(name) != seen:  # new, or items replaced: forget the old items
            fs.containers[name] = seen
            for key in [k for k in fs.names if k != name and under(k, name)]:
                del fs.names[key]
        for suffix, leaf in leaves(obj):
            held = suffix and _elements(leaf) <= MAX_HELD  # a dataset kept on self: passed by
            value = as_array(leaf) if held else None
            if value is None:
                continue
            key = name + suffix
            before = fs.names.get(key)
            index = self.known(leaf)
            if index is None or not _same(self.nodes[index].value, value):
                changed = () if index is None else (Read(key, index, before[2] if before else 0),)
                index = self.add(
                    fs,
                    key,
                    leaf,
                    value,
                    reads=reads + changed,
                    in_place=bool(changed),
                    namespace=fs.namespace,
                    globals=frame.f_globals,
                )
                fs.names[key] = (index, id(leaf), fs.line)
            elif before is None or before[:2] != (index, id(leaf)):
                fs.names[key] = (index, id(leaf), fs.line)

    def line(self, frame: FrameType, lineno: int) -> None:
        fs = self.frames.get(id(frame))
        if fs is None:
            return
        stmt = statement_at(fs.file, lineno)
        same = stmt is not None and stmt is statement_at(fs.file, fs.line)
        if same and frame.f_lasti > fs.lasti:  # the next line of a statement that spans lines
            fs.lasti = frame.f_lasti
            return
        self.finish(frame, fs)
        self.statements += 1
        if self.statements > MAX_STATEMENTS:
            self.complete = False
            raise TooLongError
        fs.line = stmt.lineno if stmt is not None else lineno
        fs.lasti = frame.f_lasti
        fs.calls = []
        fs.namespace = dict(frame.f_locals)

    def leave(self, frame: FrameType, result: Any) -> None:
        fs = self.frames.pop(id(frame), None)
        if fs is None:
            return
        self.finish(frame, fs)
        caller = self.frames.get(id(frame.f_back)) if frame.f_back is not None else None
        reads: tuple[Read, ...] | None = None
        made: list[int] = []
        for suffix, leaf in leaves(result):
            index = self.known(leaf)
            if index is not None:
                self.passed_on[index] = (fs.file, fs.line, fs.function)
            if index is None:
                value = as_array(leaf)
                if value is None:
                    continue
                if reads is None:
                    reads = self.reads(fs)
                index = self.add(
                    fs,
                    "return" + suffix,
                    leaf,
                    value,
                    reads=reads,
                    namespace=fs.namespace,
                    globals=frame.f_globals,
                )
            made.append(index)
        if caller is not None:
            caller.calls.extend(made)


def trace_call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    arg_names: list[tuple[str, Any]] | None = None,
    *,
    monitoring: bool | None = None,
) -> Trace:
    """Call ``fn(*args)`` under the line tracer and return what the user's code computed.

    arg_names : (name, leaf) for the argument leaves, recorded first as input nodes (line 0)
        so that the user's code reading them reads known values.
    monitoring : use ``sys.monitoring`` (default: where the interpreter has it, 3.12+).
    The result or the exception is in the ``Trace``; nothing is raised.
    """
    recorder = _Recorder()
    for name, leaf in arg_names or []:
        value = as_array(leaf)
        if value is not None and recorder.known(leaf) is None:
            recorder.add(None, name, leaf, value)
    use = hasattr(sys, "monitoring") if monitoring is None else monitoring
    runner = with_monitoring if use else with_settrace
    result: Any = None
    error: BaseException | None = None
    try:
        # as in the audit's own call of the candidate (``_guards.run_candidate``), a warning is
        # not an error, whatever the filters of the process (``pytest -W error``) say
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = runner(recorder, lambda: fn(*args))
    except TooLongError:
        error = None
    except Exception as caught:
        error = caught
    return Trace(
        recorder.nodes, result, error, recorder.complete, recorder.by_id, recorder.passed_on
    )
