"""The one grammar of audit inputs, for ``named_arrays`` and the command line's ``--shapes``.

``GRAMMAR`` (printed by ``--help``) is the reference.
In Python the same strings are the values of ``named_arrays``'s spec (``{"x": "m,n:[0,1]"}``),
next to tuples of dimensions (``{"x": ("m", "n")}``), nested dicts, lists, tuples or
NamedTuples of them (pytree arguments), and numbers (fixed arguments). Expressions are parsed
by a small recursive-descent parser (never ``eval``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GRAMMAR",
    "ArraySpec",
    "Fixed",
    "Size",
    "Value",
    "parse_item",
    "parse_kinds",
    "parse_size",
    "parse_spec_text",
    "size_names",
    "size_value",
]

Size = int | str | tuple[Any, ...]
"""A parsed SIZE: an int, a name, or (operator, left, right) with operator + - * //."""

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*()]))")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf)"
_INTERVAL = re.compile(rf"^([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])$")
_INTS = re.compile(rf"^ints\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]$")
_AWAY = re.compile(rf"^\|x\|>=({_NUMBER})$")
_CLASSES = re.compile(r"^classes\((.+)\)$")
_IGNORE = re.compile(r"^ignore\(\s*([-+]?\d+)\s*\)$")
GRAMMAR = """\
    SPEC   := ITEM (" " ITEM)*
    ITEM   := PATH "=" DIMS (":" KIND)*    an array argument (or a leaf of one)
            | PATH ":=" NUMBER             a fixed non-array argument: lam:=0.01, stride:=2
    PATH   := NAME ("." KEY)*              params.W1=n,h  -> params is a dict, key 'W1';
                                           layers.0.W=n,h -> layers is a list (keys 0, 1, ...)
    DIMS   := "" | SIZE ("," SIZE)*        empty: a 0-d array
    SIZE   := an integer (3), a dimension name (m), or an expression of names, integers,
              + - * // and parentheses: 2*h, h+1, d1*d2, (H+2*p-f)//s+1. Names are drawn
              (shared by every argument that uses them); a fixed int argument may be used by
              name (stride:=2 ... (H-f)//stride+1). Sizes must come out >= 1.
    KIND   := real            uniform in [-b, b], b drawn from the bounds (default 3, 1000)
            | [lo,hi] (lo,hi) [lo,hi) (lo,hi]   an interval; ( ) leave the end out
            | prob            [0,1]
            | positive        (0, b]
            | |x|>=d          |x| in [d, b], either sign (bounded away from zero)
            | ints[lo,hi]     integer values lo..hi (small integers), in the float dtype
            | binary          values in {0, 1};  pm1: values in {-1, +1}
            | onehot          one-hot rows over the last axis (every class reachable)
            | soft            rows of probabilities over the last axis (soft labels)
            | classes(K)      int64 class indices in [0, K), K a SIZE (y=m:classes(k))
            | distinct        no two values equal (no ties; combine: x=m,n:[-1,1]:distinct)
            | ignore(V)       with classes(K): some labels are the integer V, a label the
                              loss skips (y=m:classes(k):ignore(-1), also classes(k)|ignore(-1))
"""
"""The grammar, as ``python -m verification audit --help`` prints it."""

_SIMPLE = ("real", "prob", "positive", "binary", "pm1", "onehot", "soft")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot read size {text!r} at {text[pos:]!r}")
        out.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return out


def parse_size(text: str) -> Size:
    """A SIZE of the grammar: ``"3"`` -> 3, ``"m"`` -> "m", ``"2*h"`` -> ("*", 2, "h").

    >>> parse_size("(H+2*p-f)//s+1")
    ('+', ('//', ('-', ('+', 'H', ('*', 2, 'p')), 'f'), 's'), 1)

    Raises ValueError for anything else (an empty size, other operators, unbalanced parentheses).
    """
    tokens = _tokens(text)
    if not tokens:
        raise ValueError("empty size")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def atom() -> Size:
        token = peek()
        if token is None:
            raise ValueError(f"size {text!r} ends early")
        take()
        if token == "(":
            inner = expression()
            if peek() != ")":
                raise ValueError(f"unbalanced parentheses in size {text!r}")
            take()
            return inner
        if token.isdigit():
            return int(token)
        if _NAME.match(token):
            return token
        raise ValueError(f"unexpected {token!r} in size {text!r}")

    def term() -> Size:
        left = atom()
        while peek() in ("*", "//"):
            op = take()
            left = (op, left, atom())
        return left

    def expression() -> Size:
        left = term()
        while peek() in ("+", "-"):
            op = take()
            left = (op, left, term())
        return left

    result = expression()
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position]!r} in size {text!r}")
    return result


def size_names(size: Size) -> list[str]:
    """The names a SIZE uses, in order of appearance."""
    if isinstance(size, int):
        return []
    if isinstance(size, str):
        return [size]
    return [n for part in size[1:] for n in size_names(part) if n]


def size_value(size: Size, values: Mapping[str, int]) -> int:
    """The SIZE's value for the named sizes ``values``.

    >>> size_value(parse_size("(H+2*p-f)//s+1"), {"H": 5, "p": 1, "f": 3, "s": 2})
    3
    """
    if isinstance(size, int):
        return size
    if isinstance(size, str):
        return int(values[size])
    op, left, right = size
    a, b = size_value(left, values), size_value(right, values)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a // b if b > 0 else -1


@dataclass(frozen=True)
class Value:
    """What the elements of an array are: ``kind`` with its parameters, and ``distinct``."""

    kind: str = "real"
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    classes: Size | None = None
    distinct: bool = False
    ignore: int | None = None


@dataclass(frozen=True)
class ArraySpec:
    """An array argument: its dimensions (parsed SIZEs) and its values."""

    dims: tuple[Size, ...]
    value: Value = Value()


@dataclass(frozen=True)
class Fixed:
    """A fixed non-array argument (a regularisation strength, an epsilon, a stride)."""

    value: int | float


def _number(text: str) -> float:
    return float(text)


def _closed(text: str) -> str:
    """``text`` with its unclosed brackets closed, innermost first."""
    pending = []
    for ch in text:
        if ch in "[(":
            pending.append("]" if ch == "[" else ")")
        elif ch in "])" and pending and pending[-1] == ch:
            pending.pop()
    return text + "".join(reversed(pending))


def _kind_hint(text: str) -> str:
    """ "; did you mean ...?" for an unknown KIND one repair away from a valid one (an unclosed
    bracket, a misspelt name), checked by parsing the repair; "" otherwise.

    >>> _kind_hint("ints[1,2"), _kind_hint("classe(k)"), _kind_hint("banana")
    ('; did you mean ints[1,2] (a bracket is not closed)?', '; did you mean classes(k)?', '')
    """
    repairs = []
    if _closed(text) != text:
        repairs.append((_closed(text), " (a bracket is not closed)"))
    name = re.sub(r"[^A-Za-z_].*$", "", text, flags=re.S)
    rest = text[len(name) :]
    names = [*_SIMPLE, "ints", "classes", "distinct"]
    for near in difflib.get_close_matches(name, names, n=1, cutoff=0.75) if name else []:
        repairs.append((near + _closed(rest), ""))
    for repair, why in repairs:
        try:
            _parse_kinds([repair], hint=False)
        except ValueError:
            continue
        return f"; did you mean {repair}{why}?"
    return ""


def parse_kinds(texts: list[str]) -> Value:
    """The ``Value`` of a list of KINDs (at most one besides ``distinct``).

    >>> parse_kinds(["(0,1)"])
    Value(kind='interval', low=0.0, high=1.0, open_low=True, open_high=True, classes=None, distinct=False, ignore=None)
    """
    return _parse_kinds(texts, hint=True)


def _parse_kinds(texts: list[str], *, hint: bool) -> Value:
    """``parse_kinds``; ``hint``: an unknown KIND's error suggests a repair (``_kind_hint``)."""
    value = Value()
    chosen: str | None = None
    split = [part for t in texts for part in t.replace("|ignore(", ":ignore(").split(":")]
    for text in (t.strip() for t in split):
        if text == "distinct":
            value = Value(**{**value.__dict__, "distinct": True})
            continue
        ignore = _IGNORE.match(text)
        if ignore:
            value = Value(**{**value.__dict__, "ignore": int(ignore[1])})
            continue
        if chosen is not None:
            raise ValueError(f"two kinds {chosen!r} and {text!r}: give one (plus distinct)")
        chosen = text
        interval = _INTERVAL.match(text)
        ints = _INTS.match(text)
        away = _AWAY.match(text)
        classes = _CLASSES.match(text)
        fields: dict[str, Any]
        if text in _SIMPLE:
            fields = {"kind": text}
            if text == "prob":
                fields = {"kind": "interval", "low": 0.0, "high": 1.0}
        elif interval:
            low, high = _number(interval[2]), _number(interval[3])
            if not low < high:
                raise ValueError(f"interval {text!r} is empty: expected lo < hi")
            fields = {
                "kind": "interval",
                "low": low,
                "high": high,
                "open_low": interval[1] == "(",
                "open_high": interval[4] == ")",
            }
        elif ints:
            low, high = _number(ints[1]), _number(ints[2])
            if not (low == int(low) and high == int(high) and low <= high):
                raise ValueError(f"{text!r}: expected ints[lo,hi] with integers lo <= hi")
            fields = {"kind": "ints", "low": low, "high": high}
        elif away:
            d = _number(away[1])
            if not d > 0:
                raise ValueError(f"{text!r}: the distance from zero must be > 0")
            fields = {"kind": "away", "low": d}
        elif classes:
            fields = {"kind": "classes", "classes": parse_size(classes[1])}
        else:
            raise ValueError(
                f"unknown kind {text!r}: expected real, [lo,hi], (lo,hi), prob, positive, "
                "|x|>=d, ints[lo,hi], binary, pm1, onehot, soft, classes(K), distinct or "
                f"ignore(V){_kind_hint(text) if hint else ''}"
            )
        value = Value(**{**value.__dict__, **fields})
    if value.ignore is not None and value.kind != "classes":
        raise ValueError(f"ignore({value.ignore}) goes with classes(K), not with {value.kind}")
    return value


def parse_item(text: str) -> tuple[list[str], ArraySpec | Fixed]:
    """One ITEM: (its PATH as a list of names, what it is).

    >>> parse_item("params.W1=n,h")
    (['params', 'W1'], ArraySpec(dims=('n', 'h'), value=Value(kind='real', low=-inf, high=inf, open_low=False, open_high=False, classes=None, distinct=False, ignore=None)))
    >>> parse_item("stride:=2")
    (['stride'], Fixed(value=2))
    """
    if ":=" in text.split("=", 1)[0] + "=":
        path_text, _, number = text.partition(":=")
        try:
            fixed: int | float = int(number) if re.fullmatch(r"[-+]?\d+", number) else float(number)
        except ValueError:
            raise ValueError(f"expected NAME:=NUMBER, got {text!r}") from None
        return _path(path_text, text), Fixed(fixed)
    path_text, sep, rest = text.partition("=")
    if not sep:
        raise ValueError(f"expected name=dim,dim (or name:=number) in the spec, got {text!r}")
    return _path(path_text, text), parse_array(rest)


def parse_array(text: str) -> ArraySpec:
    """The right-hand side of an array ITEM: ``DIMS (":" KIND)*``.

    >>> parse_array("m:classes(k)").value.kind
    'classes'
    """
    dims_text, *kinds = _split_kinds(text)
    dims = tuple(parse_size(d) for d in _split_commas(dims_text) if d.strip())
    return ArraySpec(dims, parse_kinds(kinds))


def _split_kinds(text: str) -> list[str]:
    """Split at ``:`` outside brackets and parentheses."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in "[(" and 1) or 0
        depth -= (ch in "])" and 1) or 0
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def _split_commas(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(" and 1) or 0
        depth -= (ch == ")" and 1) or 0
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def _path(path_text: str, item: str) -> list[str]:
    path = path_text.strip().split(".")
    if not _NAME.match(path[0]) or any(not (_NAME.match(k) or k.isdigit()) for k in path[1:]):
        raise ValueError(f"{path_text!r} in {item!r} is not NAME or NAME.KEY")
    return path


def parse_spec_text(text: str) -> dict[str, Any]:
    """A whole ``--shapes`` SPEC as ``named_arrays``'s spec: name -> ArraySpec, Fixed, or a
    dict/list of them for a dotted PATH.

    >>> spec = parse_spec_text("x=m,n params.W=n,h params.b=h lam:=0.1")
    >>> list(spec), sorted(spec["params"])
    (['x', 'params', 'lam'], ['W', 'b'])
    """
    spec: dict[str, Any] = {}
    for item in text.split():
        path, what = parse_item(item)
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"{'.'.join(path)} is inside {key!r}, which is not a tree")
        if path[-1] in node:
            raise ValueError(f"{'.'.join(path)} appears twice in the spec {text!r}")
        node[path[-1]] = what
    return {name: _lists(node) for name, node in spec.items()}


def _lists(node: Any) -> Any:
    """Dicts whose keys are 0, 1, ..., n-1 become lists."""
    if not isinstance(node, dict):
        return node
    children = {k: _lists(v) for k, v in node.items()}
    if all(k.isdigit() for k in children) and sorted(int(k) for k in children) == list(
        range(len(children))
    ):
        return [children[str(i)] for i in range(len(children))]
    return children
