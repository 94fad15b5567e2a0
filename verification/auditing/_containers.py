"""What the line tracer looks into: tuples, lists, dicts and the user's own objects, and the
paths to the arrays they hold.

A backward pass keeps its gradients in many places besides locals: a tuple or NamedTuple it
returns, a dict (``grads["W1"] = x.T @ dz``, the params dict of the ``--shapes`` grammar), an
attribute of a layer object (``self.dW = self.x.T @ dout``). ``_trace`` records the arrays
held there under their path from a local (``grads['W1']``, ``self.dW``, ``self.params['W']``),
and ``_rerun`` runs a statement again with a value set at such a path, on copies.

Looked into: tuples, lists and dicts of at most ``MAX_CONTAINER`` items, ``SimpleNamespace``s
and objects of a class defined in the user's own files (``_source.user_file``: not numpy's,
torch's or a library's), two levels deep.
"""

from __future__ import annotations

import ast
import copy
import re
import sys
import types
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np

from verification.auditing._source import user_file

__all__ = [
    "MAX_CONTAINER",
    "contents_id",
    "copied",
    "get_path",
    "is_container",
    "leaves",
    "split_name",
    "under",
    "with_path",
]

MAX_CONTAINER = 64
"""Items of a tuple, list, dict or object that the tracer looks into for arrays (a larger one
is passed by: nothing in it is recorded)."""

_NOT_OBJECTS = (type, types.ModuleType, types.FunctionType, types.MethodType, np.ndarray)
_STEP = re.compile(r"\[(-?\d+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]|\.([A-Za-z_]\w*)")
"""One step of a path: ``[0]``, ``['W1']`` (an item) or ``.dW`` (an attribute)."""


@cache
def _user_module(name: str) -> bool:
    """Whether the module ``name`` (of an object's class) is one of the user's files."""
    file = getattr(sys.modules.get(name), "__file__", None)
    return bool(file) and user_file(str(file))


def _user_object(obj: Any) -> bool:
    if isinstance(obj, types.SimpleNamespace):
        return True
    return (
        not isinstance(obj, _NOT_OBJECTS)
        and isinstance(getattr(obj, "__dict__", None), dict)
        and _user_module(type(obj).__module__)
    )


def is_container(obj: Any) -> bool:
    """Whether the tracer looks into ``obj`` (module docstring)."""
    return isinstance(obj, (tuple, list, dict)) or _user_object(obj)


def _items(obj: Any) -> list[tuple[str, Any]]:
    """(step, value) of what ``obj`` holds; [] for a container too large to look into."""
    if isinstance(obj, dict):
        pairs = [(f"[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (tuple, list)):
        pairs = [(f"[{i}]", v) for i, v in enumerate(obj)]
    elif _user_object(obj):
        pairs = [(f".{k}", v) for k, v in vars(obj).items() if k.isidentifier()]
    else:
        return []
    return pairs if len(pairs) <= MAX_CONTAINER else []


def leaves(obj: Any, depth: int = 2) -> Iterator[tuple[str, Any]]:
    """("", obj) for anything not looked into, else (path, value) of what it holds, nested
    ``depth`` deep: ``("[0]", a)``, ``("['W1']", w)``, ``(".dW", d)``.

    >>> [p for p, _ in leaves({"W1": 1.0, "b": (2.0, 3.0)})]
    ["['W1']", "['b'][0]", "['b'][1]"]
    """
    pairs = _items(obj) if depth > 0 and is_container(obj) else []
    if not pairs:
        yield "", obj
        return
    for step, item in pairs:
        for suffix, leaf in leaves(item, depth - 1):
            yield step + suffix, leaf


def contents_id(obj: Any) -> tuple[int, ...]:
    """Identifies a container and the items it holds now: a list, dict or object changed in
    place (``grads["W1"] = ...``, ``self.dW = ...``) gets a new one."""
    return (id(obj), *(id(item) for _, item in _items(obj)))


def under(key: str, name: str) -> bool:
    """Whether the recorded ``key`` is the local ``name`` or a path below it."""
    return key == name or key.startswith((name + "[", name + "."))


def split_name(name: str) -> tuple[str, list[str]]:
    """A recorded name as (local, steps): ``"self.params['W']"`` -> ``("self", [".params",
    "['W']"])``."""
    local = re.match(r"\w*", name)
    head = local.group(0) if local else ""
    return head, [m.group(0) for m in _STEP.finditer(name, len(head))]


def _step_key(step: str) -> tuple[bool, Any]:
    """(is an attribute, the key or attribute name) of one step."""
    if step.startswith("."):
        return True, step[1:]
    return False, ast.literal_eval(step[1:-1])


def get_path(obj: Any, steps: list[str]) -> Any:
    """The value at ``steps`` below ``obj``; raises LookupError, AttributeError, TypeError."""
    for step in steps:
        attribute, key = _step_key(step)
        obj = getattr(obj, key) if attribute else obj[key]
    return obj


def with_path(obj: Any, steps: list[str], value: Any, like: Callable[[Any, Any], Any]) -> Any:
    """``obj`` with the value at ``steps`` set to ``like(old, value)``; the containers and
    objects on the way are new ones (copies: a NamedTuple stays one), never ``obj`` itself."""
    if not steps:
        return like(obj, value)
    attribute, key = _step_key(steps[0])
    inner = with_path(getattr(obj, key) if attribute else obj[key], steps[1:], value, like)
    if attribute:
        new = copy.copy(obj)
        setattr(new, key, inner)
        return new
    if isinstance(obj, dict):
        return {**obj, key: inner}
    items = list(obj)
    items[key] = inner
    if isinstance(obj, list):
        return items
    return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)


def copied(value: Any) -> Any:
    """A list, dict or user object of a frame copied, the arrays it holds too, so that
    running a statement again (``grads["W1"] = ...``, ``self.dW += ...``) cannot change the
    candidate's own. Raises what ``copy.copy`` raises for an object that cannot be copied."""

    def fresh(v: Any) -> Any:
        return np.array(v, copy=True) if isinstance(v, np.ndarray) else v

    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fresh(v) for v in value]
    if _user_object(value):
        new = copy.copy(value)
        for k, v in list(vars(new).items()):
            if isinstance(v, (np.ndarray, dict, list)):
                setattr(new, k, fresh(v) if isinstance(v, np.ndarray) else copied(v))
        return new
    return value
