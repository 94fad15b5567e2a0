"""Strategies for a user's function from named dimensions and the input grammar of ``_grammar``.

The shapes of several arguments usually share dimensions (x is (m, n) and w is (n, h): n must
agree). ``named_arrays`` draws one size per dimension name, derives the sizes written as
expressions (``(H+2*p-f)//s+1``), and draws every argument from those sizes and its value kind
(``_grammar``: intervals, positive, bounded away from zero, small integers, labels of every
form, all-distinct values), pytree arguments (dicts, lists, tuples, NamedTuples of arrays) and
fixed non-array arguments.

Sizes come from a few joint *profiles* rather than independently per dimension: JAX compiles
the reference once per combination of shapes (about 160 ms each), and independent draws over
four dimensions would compile dozens of times. The profiles still hold the cases where classic
bugs hide: every size 1 (m = 1, k = 1), one dimension at 2 and the others at 1 (so a bug that
needs two samples or two classes shrinks to a tiny example), every size equal (square
matrices: a transposed gradient has the right shape there) and two rectangular mixes; profiles
where a derived size would be < 1 are left out. Hypothesis shrinks towards the first profile,
all ones. Pass ``dims`` to choose sizes yourself for some dimensions or all (each named one is
then drawn independently; the others keep their profiles).

Values of kind "real" draw a bound per array from ``bounds`` (default 3 and 1000) and elements
uniformly in [-bound, bound], no subnormals, NaN or inf. The large bound makes logits overflow a
naive exp (exp(709.8) overflows float64, exp(88.7) float32).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import DTypeLike, NDArray

from verification.auditing._elements import drawn_dtype, elements, label_rows
from verification.auditing._grammar import (
    ArraySpec,
    Fixed,
    Size,
    parse_array,
    parse_kinds,
    parse_size,
    parse_spec_text,
    size_names,
    size_value,
)
from verification.auditing._lowprec import BFLOAT16, default_bounds
from verification.auditing._simplify import declare_domain

__all__ = ["ArgKind", "ShapeSpec", "named_arrays", "parse_shapes", "size_profiles"]

ArgKind = Literal["real", "onehot", "prob"]
ShapeSpec = Mapping[str, Any]
"""name -> a tuple of SIZEs, a grammar string ("m,n:[0,1]"), a number (fixed), or a dict,
list, tuple or NamedTuple of those (a pytree argument)."""

DEFAULT_BOUNDS: tuple[float, ...] = (3.0, 1000.0)
"""Per-array bounds on |element|: ordinary values, and values whose products overflow exp."""


def size_profiles(names: Sequence[str]) -> list[dict[str, int]]:
    """The joint size profiles drawn by default for dimension ``names`` (first = all ones).

    All ones; each dimension alone at 2; all 2; all 3 (square); two rectangular mixes of 2, 3
    and 4. Duplicates (for one or two names) are dropped.

    >>> size_profiles(["m", "n"])[:4]
    [{'m': 1, 'n': 1}, {'m': 2, 'n': 1}, {'m': 1, 'n': 2}, {'m': 2, 'n': 2}]
    """
    profiles: list[dict[str, int]] = [dict.fromkeys(names, 1)]
    for name in names:
        profiles.append({other: 2 if other == name else 1 for other in names})
    profiles.append(dict.fromkeys(names, 2))
    profiles.append(dict.fromkeys(names, 3))
    for offset in (0, 1):
        profiles.append({name: (2, 3, 4)[(i + offset) % 3] for i, name in enumerate(names)})
    unique: list[dict[str, int]] = []
    for profile in profiles:
        if profile not in unique:
            unique.append(profile)
    return unique


def _node(value: Any, where: str) -> Any:
    """One spec entry as ArraySpec / Fixed / a container of them."""
    if isinstance(value, (ArraySpec, Fixed)):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str, tuple, list, dict)):
        raise ValueError(f"spec entry {where} must be dims, a spec string, a number or a tree")
    if isinstance(value, (int, float)):
        return Fixed(value)
    if isinstance(value, str):
        try:
            return parse_array(value)
        except ValueError as error:
            raise ValueError(f"spec entry {where}: {error}") from None
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        if all(isinstance(d, str) for d in value):
            try:  # a tuple of SIZEs is one array's dimensions ...
                return ArraySpec(tuple(parse_size(d) for d in value))
            except ValueError:  # ... a tuple of spec strings ("m,n", "m:pm1") is a tuple pytree
                if not any("," in d or ":" in d for d in value):
                    bad = next(d for d in value if not _is_size(d))
                    raise ValueError(
                        f"dimension {bad!r} of {where} is neither a name nor a size"
                    ) from None
        return tuple(_node(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, tuple):  # a NamedTuple of specs
        fields: tuple[str, ...] = getattr(value, "_fields")  # noqa: B009
        return type(value)(*(_node(v, f"{where}.{f}") for f, v in zip(fields, value, strict=True)))
    if isinstance(value, list):
        return [_node(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return {k: _node(v, f"{where}[{k!r}]") for k, v in value.items()}


def _is_size(text: str) -> bool:
    try:
        parse_size(text)
    except ValueError:
        return False
    return True


def _arrays_in(node: Any) -> list[ArraySpec]:
    if isinstance(node, ArraySpec):
        return [node]
    if isinstance(node, Fixed):
        return []
    children = node.values() if isinstance(node, dict) else node
    return [a for child in children for a in _arrays_in(child)]


def _normalise(spec: ShapeSpec, kinds: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, int]]:
    """(name -> node with kinds applied, fixed ints usable in size expressions)."""
    if not spec:
        raise ValueError("spec must name at least one argument, got an empty mapping")
    nodes = {}
    for name, value in spec.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"argument name {name!r} is not an identifier")
        nodes[name] = _node(value, repr(name))
    for name, kind in kinds.items():
        if name not in nodes:
            raise ValueError(f"kinds names {name!r}, which is not in spec {list(spec)}")
        node = nodes[name]
        if not isinstance(node, ArraySpec):
            raise ValueError(f"kinds gives {name!r} a kind, but it is not one array")
        nodes[name] = ArraySpec(node.dims, parse_kinds([kind]))
    fixed = {
        n: v.value for n, v in nodes.items() if isinstance(v, Fixed) and isinstance(v.value, int)
    }
    _check_class_counts(nodes, fixed)
    for array in (a for node in nodes.values() for a in _arrays_in(node)):
        value = array.value
        if value.kind in ("onehot", "soft") and not array.dims:
            raise ValueError(f"a {value.kind} argument needs at least one dimension (classes)")
        if value.distinct and value.kind in ("binary", "pm1", "onehot", "soft", "classes"):
            raise ValueError(f"distinct values cannot be drawn for kind {value.kind}")
    return nodes, fixed


def _check_class_counts(nodes: Mapping[str, Any], fixed: Mapping[str, int]) -> None:
    """A class count ``classes(K)`` must name a dimension some array has (or a fixed int): a
    name that appears once only is a typo (``classes(q)`` for ``classes(k)``), and labels
    drawn below it would not fit the logits."""
    arrays = [a for node in nodes.values() for a in _arrays_in(node)]
    used = [n for a in arrays for d in a.dims for n in size_names(d)]
    for array in arrays:
        if array.value.classes is None:
            continue
        for name in size_names(array.value.classes):
            if name in used or name in fixed:
                continue
            # the labels' own axes (their batch) are no class count
            own = {n for d in array.dims for n in size_names(d)}
            others = [n for n in dict.fromkeys(used) if n not in own]
            once = [n for n in others if used.count(n) == 1]
            close = difflib.get_close_matches(name, others, 1) or once[:1]
            hint = (
                f"; did you mean classes({close[0]})?"
                if close
                else f"; give an array that axis (e.g. scores=m,{name}) or fix it ({name}:=10)"
            )
            raise ValueError(
                f"classes({name}): {name!r} appears once only (no argument has a dimension "
                f"{name!r}), so the labels' range is tied to no array{hint}"
            )


def _all_sizes(nodes: Mapping[str, Any]) -> list[Size]:
    sizes: list[Size] = []
    for array in (a for node in nodes.values() for a in _arrays_in(node)):
        sizes += list(array.dims)
        if array.value.classes is not None:
            sizes.append(array.value.classes)
    return sizes


def _fits(sizes: Sequence[Size], values: Mapping[str, int]) -> bool:
    return all(size_value(s, values) >= 1 for s in sizes)


def _one_array(
    draw: st.DrawFn,
    dtype: np.dtype[Any],
    array: ArraySpec,
    sizes: Mapping[str, int],
    bounds: st.SearchStrategy[float],
) -> NDArray[Any]:
    shape = tuple(size_value(d, sizes) for d in array.dims)
    value = array.value
    if value.kind in ("onehot", "soft"):
        return label_rows(draw, dtype, shape, value.kind == "soft")
    if value.kind == "classes":
        k = size_value(value.classes if value.classes is not None else 1, sizes)
        labels = st.integers(0, k - 1)
        if value.ignore is not None:  # shrinks towards real labels
            labels = st.one_of(labels, st.just(value.ignore))
        return draw(hnp.arrays(np.int64, shape, elements=labels))
    bound = draw(bounds) if value.kind in ("real", "positive", "away", "interval") else 1.0
    drawn = elements(value, dtype, bound)
    out = draw(hnp.arrays(drawn_dtype(dtype), shape, elements=drawn, unique=value.distinct))
    return out if out.dtype == dtype else out.astype(dtype)


def _draw_node(
    draw: st.DrawFn,
    node: Any,
    dtype: np.dtype[Any],
    sizes: Mapping[str, int],
    bounds: st.SearchStrategy[float],
) -> Any:
    if isinstance(node, ArraySpec):
        return _one_array(draw, dtype, node, sizes, bounds)
    if isinstance(node, Fixed):
        return node.value
    if isinstance(node, dict):
        return {k: _draw_node(draw, v, dtype, sizes, bounds) for k, v in node.items()}
    children = [_draw_node(draw, v, dtype, sizes, bounds) for v in node]
    if isinstance(node, list):
        return children
    return type(node)(*children) if hasattr(node, "_fields") else tuple(children)


def named_arrays(
    spec: ShapeSpec,
    *,
    dims: Mapping[str, Sequence[int]] | None = None,
    dtype: DTypeLike = np.float64,
    kinds: Mapping[str, str] | None = None,
    bounds: Sequence[float] | None = None,
) -> st.SearchStrategy[tuple[Any, ...]]:
    """A strategy for the argument tuple described by ``spec``, with consistent shapes.

    Parameters
    ----------
    spec : argument name -> its description, in the order of the function's arguments:
        a tuple of SIZEs (``("m", "n")``, ``("2*h",)``, ``()`` for a 0-d array), a string of
        the grammar (``"m,n:[0,1]"``, ``"m:classes(k)"``, see ``_grammar``), a number (a
        fixed argument: ``0.01``, a stride ``2``), or a dict, list, tuple or NamedTuple of
        those (a pytree argument).
    dims : dimension name -> sizes to draw from, independently per dimension; the names it
        does not give keep the default, the joint profiles of ``size_profiles`` (few shapes,
        so few JAX compilations).
    dtype : float64 (default), float32, float16 or bfloat16 (``ml_dtypes.bfloat16``), the
        dtype of every float array (the audit judges float16 and bfloat16 by ``_lowprec``).
    kinds : argument name -> a KIND of the grammar for that (array) argument, e.g. "onehot",
        "prob" (kept from the first version of this function; the spec string can say it).
    bounds : each "real" array draws its bound on |element| from these (shrinking towards the
        first); also the upper end of "positive" and "|x|>=d". Default (3, 1000); (3, 8) for
        float16, whose range ends at 65504.

    Returns
    -------
    A strategy of ``tuple`` of arguments, in the order of ``spec``.

    Raises
    ------
    ValueError : a malformed spec, a kind for an unknown argument, a name in ``dims`` that no
        size uses, or a size < 1, no size profile where every derived size is >= 1, a dtype other than
        float32/float64 (or float16, bfloat16), or no bounds.

    Examples
    --------
    >>> from hypothesis import find
    >>> s = named_arrays({"x": ("m", "n"), "w": ("n", "h")}, dims={"m": [2], "n": [3], "h": [1]})
    >>> x, w = find(s, lambda args: True)
    >>> x.shape, w.shape, x.dtype
    ((2, 3), (3, 1), dtype('float64'))
    >>> conv = {"x": "m,c,H", "w": "k,c,f", "out": "m,k,(H-f)//2+1:(0,1)"}
    >>> sizes = {"m": [1], "c": [1], "k": [1], "H": [5], "f": [3]}
    >>> x, w, out = find(named_arrays(conv, dims=sizes), lambda a: True)
    >>> out.shape
    (1, 1, 2)
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BFLOAT16):
        raise ValueError(f"dtype must be float32 or float64 (or float16, bfloat16), got {dt}")
    if bounds is None:
        bounds = default_bounds(dt) or DEFAULT_BOUNDS
    if not bounds or any(not (b > 0 and np.isfinite(b)) for b in bounds):
        raise ValueError(f"bounds must be positive finite numbers, got {list(bounds)}")
    nodes, fixed = _normalise(spec, dict(kinds or {}))
    all_sizes = _all_sizes(nodes)
    names = [n for s in all_sizes for n in size_names(s) if n not in fixed]
    names = list(dict.fromkeys(names))
    sizes: st.SearchStrategy[dict[str, int]]
    if dims is None:
        profiles = [p for p in size_profiles(names) if _fits(all_sizes, {**p, **fixed})]
        if not profiles:
            raise ValueError(
                "no size profile makes every derived size >= 1: pass dims= with sizes that do"
            )
        sizes = st.sampled_from(profiles)
    else:
        unused = [n for n in dims if n not in names]
        if unused:
            close = {n: difflib.get_close_matches(n, names, 1) for n in unused}
            hint = "".join(f"; did you mean {c[0]!r} for {n!r}?" for n, c in close.items() if c)
            raise ValueError(
                f"dims gives sizes for {unused}, a name no size of the spec uses (spec uses "
                f"{names}){hint}"
            )
        for name in dims:
            if not dims[name] or min(dims[name]) < 1:
                raise ValueError(f"sizes of {name!r} must be >= 1, got {list(dims[name])}")
        # The names dims gives are drawn from its sizes, the others from the default profiles.
        rest = [n for n in names if n not in dims]
        sizes = st.tuples(
            st.fixed_dictionaries({n: st.sampled_from(list(dims[n])) for n in dims}),
            st.sampled_from(size_profiles(rest)),
        ).map(lambda pair: {**pair[0], **pair[1]})
        sizes = sizes.filter(lambda p: _fits(all_sizes, {**p, **fixed}))
    bound_choice = st.sampled_from(list(bounds))

    @st.composite
    def draw_args(draw: st.DrawFn) -> tuple[Any, ...]:
        size = {**draw(sizes), **fixed}
        return tuple(_draw_node(draw, node, dt, size, bound_choice) for node in nodes.values())

    return declare_domain(draw_args(), tuple(nodes.values()))


def parse_shapes(text: str) -> dict[str, Any]:
    """The command line's ``--shapes`` SPEC as ``named_arrays``'s spec (grammar: ``_grammar``).

    >>> spec = parse_shapes("x=m,k y=m:classes(k) lam:=0.1")
    >>> spec["x"].dims, spec["y"].value.kind, spec["lam"].value
    (('m', 'k'), 'classes', 0.1)
    """
    spec = parse_spec_text(text)
    _normalise(spec, {})
    return spec
