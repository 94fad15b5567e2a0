"""Strategies for a user's function from named dimensions: ``{"x": ("m", "n"), "w": ("n", "h")}``.

The shapes of several arguments usually share dimensions (x is (m, n) and w is (n, h): n must
agree). ``named_arrays`` draws one size per dimension name and every array from those sizes, so
auditing a simple function needs no hand-written composite strategy.

Sizes come from a few joint *profiles* rather than independently per dimension: JAX compiles
the reference once per combination of shapes (about 160 ms each), and independent draws over
four dimensions would compile dozens of times. The profiles still hold the cases where classic
bugs hide: every size 1 (m = 1, k = 1), one dimension at 2 and the others at 1 (so a bug that
needs two samples or two classes shrinks to a tiny example), every size equal (square
matrices: a transposed gradient has the right shape there) and two rectangular mixes.
Hypothesis shrinks towards the first profile, all ones. Pass ``dims`` to choose sizes yourself
(then each dimension is drawn independently from its own set).

Values: each array draws its own bound from ``bounds`` (default 3 and 1000) and its elements
uniformly in [-bound, bound], no subnormals, NaN or inf. The large bound makes logits overflow a
naive exp (exp(709.8) overflows float64, exp(88.7) float32). Arguments of kind "onehot" are
one-hot label rows (every class reachable), "prob" draws values in [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import DTypeLike, NDArray

from verification.auditing._lowprec import BFLOAT16, default_bounds

__all__ = ["ArgKind", "ShapeSpec", "named_arrays", "parse_shapes", "size_profiles"]

ArgKind = Literal["real", "onehot", "prob"]
ShapeSpec = Mapping[str, tuple[str, ...]]

DEFAULT_BOUNDS: tuple[float, ...] = (3.0, 1000.0)
"""Per-array bounds on |element|: ordinary values, and values whose products overflow exp."""

_KINDS: dict[str, ArgKind] = {"real": "real", "onehot": "onehot", "prob": "prob"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def _bad_kind(name: str, kind: str) -> ArgKind:
    raise ValueError(f"kind of {name!r} must be onehot, prob or real, got {kind!r}")


def _dims_in(spec: ShapeSpec) -> list[str]:
    names: list[str] = []
    for dims in spec.values():
        names += [d for d in dims if d not in names and not d.isdigit()]
    return names


def _check_spec(spec: ShapeSpec, kinds: Mapping[str, ArgKind]) -> None:
    if not spec:
        raise ValueError("spec must name at least one argument, got an empty mapping")
    for arg, dims in spec.items():
        if not _NAME.match(arg):
            raise ValueError(f"argument name {arg!r} is not an identifier")
        for d in dims:
            if not (_NAME.match(d) or d.isdigit()):
                raise ValueError(f"dimension {d!r} of {arg!r} is neither a name nor a size")
    for arg, kind in kinds.items():
        if arg not in spec:
            raise ValueError(f"kinds names {arg!r}, which is not in spec {list(spec)}")
        if kind not in ("real", "onehot", "prob"):
            raise ValueError(f"kind of {arg!r} must be real, onehot or prob, got {kind!r}")
        if kind == "onehot" and not spec[arg]:
            raise ValueError(f"onehot argument {arg!r} needs at least one dimension (classes)")


def _elements(dtype: np.dtype[Any], low: float, high: float) -> st.SearchStrategy[float]:
    if dtype == np.float16:
        return st.floats(low, high, width=16, allow_subnormal=False)
    if dtype in (np.float32, BFLOAT16):  # bfloat16: float32 values, rounded when cast
        return st.floats(low, high, width=32, allow_subnormal=False)
    return st.floats(low, high, width=64, allow_subnormal=False)


def _one_array(
    draw: st.DrawFn, dtype: np.dtype[Any], shape: tuple[int, ...], kind: ArgKind, bound: float
) -> NDArray[Any]:
    if kind == "onehot":
        k = shape[-1]
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        classes = draw(st.lists(st.integers(0, k - 1), min_size=rows, max_size=rows))
        return np.eye(k, dtype=dtype)[classes].reshape(shape)
    drawn = np.float32 if dtype == BFLOAT16 else dtype  # hypothesis cannot draw bfloat16
    low = 0.0 if kind == "prob" else -bound
    high = 1.0 if kind == "prob" else bound
    out: NDArray[Any] = draw(hnp.arrays(drawn, shape, elements=_elements(dtype, low, high)))
    return out.astype(dtype)


def named_arrays(
    spec: ShapeSpec,
    *,
    dims: Mapping[str, Sequence[int]] | None = None,
    dtype: DTypeLike = np.float64,
    kinds: Mapping[str, ArgKind] | None = None,
    bounds: Sequence[float] | None = None,
) -> st.SearchStrategy[tuple[NDArray[Any], ...]]:
    """A strategy for a tuple of arrays, one per entry of ``spec``, with consistent shapes.

    Parameters
    ----------
    spec : argument name -> dimension names (or literal sizes such as ``"3"``), in the order of
        the function's arguments, e.g. ``{"x": ("m", "n"), "w": ("n", "h"), "b": ("h",)}``.
        An empty tuple is a scalar (shape ``()``).
    dims : dimension name -> sizes to draw from, independently per dimension. Default: the
        joint profiles of ``size_profiles`` (few shapes, so few JAX compilations).
    dtype : float64 (default), float32, float16 or bfloat16 (``ml_dtypes.bfloat16``; the
        audit then judges by ``_lowprec``'s rule).
    kinds : argument name -> "real" (default), "onehot" (label rows over the last axis) or
        "prob" (values in [0, 1]).
    bounds : each real array draws its bound on |element| from these (shrinking towards the
        first). Default (3, 1000); (3, 8) for float16, whose range ends at 65504.

    Returns
    -------
    A strategy of ``tuple`` of numpy arrays, in the order of ``spec``.

    Raises
    ------
    ValueError : a malformed spec, a kind for an unknown argument, sizes missing from ``dims``
        or a size < 1, a dtype other than float64/float32/float16/bfloat16, or no bounds.

    Examples
    --------
    >>> from hypothesis import find
    >>> s = named_arrays({"x": ("m", "n"), "w": ("n", "h")}, dims={"m": [2], "n": [3], "h": [1]})
    >>> x, w = find(s, lambda args: True)
    >>> x.shape, w.shape, x.dtype
    ((2, 3), (3, 1), dtype('float64'))
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BFLOAT16):
        raise ValueError(f"dtype must be float32 or float64 (or float16, bfloat16), got {dt}")
    if bounds is None:
        bounds = default_bounds(dt) or DEFAULT_BOUNDS
    kinds = dict(kinds or {})
    _check_spec(spec, kinds)
    if not bounds or any(not (b > 0 and np.isfinite(b)) for b in bounds):
        raise ValueError(f"bounds must be positive finite numbers, got {list(bounds)}")
    names = _dims_in(spec)
    sizes: st.SearchStrategy[dict[str, int]]
    if dims is None:
        sizes = st.sampled_from(size_profiles(names))
    else:
        missing = [n for n in names if n not in dims]
        if missing:
            raise ValueError(f"dims gives no sizes for {missing} (spec uses {names})")
        for name in names:
            if not dims[name] or min(dims[name]) < 1:
                raise ValueError(f"sizes of {name!r} must be >= 1, got {list(dims[name])}")
        sizes = st.fixed_dictionaries({n: st.sampled_from(list(dims[n])) for n in names})
    frozen_spec = {arg: tuple(d) for arg, d in spec.items()}
    bound_choice = st.sampled_from(list(bounds))

    @st.composite
    def draw_args(draw: st.DrawFn) -> tuple[NDArray[Any], ...]:
        size = draw(sizes)
        out = []
        for arg, arg_dims in frozen_spec.items():
            shape = tuple(int(d) if d.isdigit() else size[d] for d in arg_dims)
            kind = kinds.get(arg, "real")
            bound = draw(bound_choice) if kind == "real" else 1.0
            out.append(_one_array(draw, dt, shape, kind, bound))
        return tuple(out)

    return draw_args()


def parse_shapes(text: str) -> tuple[dict[str, tuple[str, ...]], dict[str, ArgKind]]:
    """Parse the command line's shape spec ``"x=m,n w=n,h y=m,k:onehot s="``.

    Arguments are separated by spaces; ``name=dim,dim`` (empty after ``=`` for a scalar) with
    an optional ``:onehot`` or ``:prob`` kind.

    >>> parse_shapes("x=m,n w=n,h y=m,k:onehot")
    ({'x': ('m', 'n'), 'w': ('n', 'h'), 'y': ('m', 'k')}, {'y': 'onehot'})
    """
    spec: dict[str, tuple[str, ...]] = {}
    kinds: dict[str, ArgKind] = {}
    for item in text.split():
        name, sep, rest = item.partition("=")
        if not sep:
            raise ValueError(f"expected name=dim,dim in --shapes, got {item!r}")
        dims_text, _, kind = rest.partition(":")
        if name in spec:
            raise ValueError(f"argument {name!r} appears twice in --shapes {text!r}")
        spec[name] = tuple(d for d in dims_text.split(",") if d)
        if kind:
            kinds[name] = _KINDS.get(kind) or _bad_kind(name, kind)
    _check_spec(spec, kinds)
    return spec, kinds
