"""Pytree helpers the audit shares: copies and comparisons of leaves, names of leaves and sizes.

A candidate's gradient and the arguments it is given are pytrees (arrays, tuples, NamedTuples
such as ``MLPParams``, dicts); the audit works on their leaves in ``jax.tree_util`` order and
names them as the user reads them (``W1``, ``params['W1']``, ``args[2]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._diagnose import Dimension
from verification.auditing._lowprec import is_low_precision

__all__ = [
    "copy_leaves",
    "dimensions",
    "is_float",
    "leaf_names",
    "none_leaf",
    "pristine",
    "same",
    "unit_direction",
]


def none_leaf(x: Any) -> bool:
    """``is_leaf`` for ``tree_util``: a ``None`` in a candidate's result counts as a leaf."""
    return x is None


def copy_leaves(tree: Any) -> list[np.ndarray[Any, Any]]:
    """Independent numpy copies of the leaves of ``tree`` (``None`` leaves included)."""
    return [np.array(x, copy=True) for x in tree_util.tree_leaves(tree, is_leaf=none_leaf)]


def pristine(tree: Any) -> Any:
    """A copy of ``tree`` with every array copied (Python numbers, immutable, kept as they are)."""
    return tree_util.tree_map(
        lambda x: x if isinstance(x, (int, float, bool)) else np.array(x, copy=True), tree
    )


def is_float(x: Any) -> bool:
    """Whether ``x`` holds floating-point (or complex) values."""
    dtype = np.asarray(x).dtype
    return bool(np.issubdtype(dtype, np.inexact)) or is_low_precision(dtype)


def same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Bitwise equality of two leaf lists (NaN equal to NaN in float leaves)."""
    return len(a) == len(b) and all(
        np.shape(x) == np.shape(y) and np.array_equal(x, y, equal_nan=is_float(x))
        for x, y in zip(a, b, strict=True)
    )


def leaf_names(
    args: tuple[Any, ...], argnums: tuple[int, ...], arg_names: Sequence[str]
) -> list[str]:
    """The names of the differentiated leaves: ``W1`` (one NamedTuple argument), else
    ``name[key]`` (``x``, ``params['W1']``, ``args[1]``)."""
    names = []
    for i in argnums:
        for path, _ in tree_util.tree_flatten_with_path(args[i])[0]:
            key = tree_util.keystr(path)
            if len(argnums) == 1 and key.startswith("."):  # a NamedTuple's field: W1
                names.append(key.lstrip("."))
            else:
                names.append(f"{arg_names[i]}{key}")
    return names


def dimensions(
    args: tuple[Any, ...], argnums: tuple[int, ...], arg_names: Sequence[str]
) -> list[Dimension]:
    """Sizes to name a constant factor by: the batch size m first, then every axis."""
    dims: list[Dimension] = []
    order = [i for i in range(len(args)) if i not in argnums] + list(argnums)
    for i in order:
        for path, leaf in tree_util.tree_flatten_with_path(args[i])[0]:
            shape = np.shape(leaf)
            name = f"{arg_names[i]}{tree_util.keystr(path)}"
            for axis, size in enumerate(shape):
                what = f"{name}.shape[{axis}]"
                if not dims and axis == 0 and len(shape) >= 1:
                    what = f"m, the batch size ({what})"
                if size > 1 and all(size != s for s, _ in dims):
                    dims.append((size, what))
    return dims


def unit_direction(
    shapes: Sequence[tuple[int, ...]], rng: np.random.Generator
) -> list[np.ndarray[Any, Any]]:
    """A random direction of unit Euclidean norm over arrays of ``shapes``."""
    v = [rng.standard_normal(s) for s in shapes]
    norm = math.sqrt(sum(float(np.vdot(x, x)) for x in v)) or 1.0
    return [x / norm for x in v]
