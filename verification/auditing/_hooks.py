"""How the line tracer of ``_trace`` hooks into the interpreter: ``sys.settrace`` (Python
3.11) or ``sys.monitoring`` (3.12+), active only in the user's own files (``_source.user_file``).

Both call a recorder's ``start(frame)`` when a frame of user code starts, ``line(frame,
lineno)`` before each of its lines and ``leave(frame, result)`` when it returns or unwinds, and
both leave the interpreter's tracing as they found it, also when the call raises.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, Protocol

from verification.auditing._source import user_file

__all__ = ["Recorder", "TooLongError", "with_monitoring", "with_settrace"]


class Recorder(Protocol):
    """What the hooks call (``_trace._Recorder``)."""

    def start(self, frame: FrameType) -> None: ...
    def line(self, frame: FrameType, lineno: int) -> None: ...
    def leave(self, frame: FrameType, result: Any) -> None: ...


class TooLongError(Exception):
    """Raised by a recorder inside the tracer when the run executes more than
    ``_trace.MAX_STATEMENTS`` statements: it ends the candidate's call."""


def _user_code(code: CodeType) -> bool:
    return user_file(code.co_filename)


def with_settrace(recorder: Recorder, call: Callable[[], Any]) -> Any:
    """``call()`` under ``sys.settrace``, reporting the user's frames to ``recorder``."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            recorder.line(frame, frame.f_lineno)
        elif event == "return":
            recorder.leave(frame, arg)
        return local

    def global_(frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call" or not _user_code(frame.f_code):
            return None
        recorder.start(frame)
        return local

    previous = sys.gettrace()
    sys.settrace(global_)
    try:
        return call()
    finally:
        sys.settrace(previous)


def with_monitoring(recorder: Recorder, call: Callable[[], Any]) -> Any:  # pragma: no cover
    """``call()`` under ``sys.monitoring`` (3.12+; ``with_settrace`` when no tool id is free),
    reporting the user's frames to ``recorder``."""
    mon = sys.monitoring  # type: ignore[attr-defined]
    tool = next((t for t in range(6) if mon.get_tool(t) is None), None)
    if tool is None:
        return with_settrace(recorder, call)
    events = mon.events
    wanted = events.PY_START | events.LINE | events.PY_RETURN | events.PY_UNWIND

    def start(code: CodeType, offset: int) -> Any:
        if not _user_code(code):
            return mon.DISABLE
        recorder.start(sys._getframe(1))
        return None

    def line(code: CodeType, lineno: int) -> Any:
        if not _user_code(code):
            return mon.DISABLE
        recorder.line(sys._getframe(1), lineno)
        return None

    def returned(code: CodeType, offset: int, value: Any) -> Any:
        if not _user_code(code):
            return mon.DISABLE
        recorder.leave(sys._getframe(1), value)
        return None

    def unwound(code: CodeType, offset: int, error: BaseException) -> Any:
        if _user_code(code):
            recorder.leave(sys._getframe(1), None)
        return None

    mon.use_tool_id(tool, "manual-bp locate")
    try:
        mon.register_callback(tool, events.PY_START, start)
        mon.register_callback(tool, events.LINE, line)
        mon.register_callback(tool, events.PY_RETURN, returned)
        mon.register_callback(tool, events.PY_UNWIND, unwound)
        mon.set_events(tool, wanted)
        return call()
    finally:
        mon.set_events(tool, events.NO_EVENTS)
        for event in (events.PY_START, events.LINE, events.PY_RETURN, events.PY_UNWIND):
            mon.register_callback(tool, event, None)
        mon.free_tool_id(tool)
        mon.restart_events()
