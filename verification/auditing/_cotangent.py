"""The random arguments a derived audit draws next to the inputs.

``draw_cotangent``: a cotangent for a layer's output, standard normal, shaped and typed like
``forward_ref(*inputs)`` (found by ``jax.eval_shape``, never by running it); zeros for an output
that is not a float. Shared by the first- and second-order layer audits (``_vjp``, ``_vjp2``).

``with_drawn``: the engine's arguments, the inputs and the drawn ones (a cotangent, a direction,
both), from a strategy of inputs or one concrete tuple; shared by ``_vjp``, ``_vjp2``, ``_hvp``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from hypothesis import strategies as st
from jax import tree_util

from verification.auditing._lowprec import is_float
from verification.auditing._program import is_fixed

__all__ = ["draw_cotangent", "is_float_leaf", "with_drawn"]


@functools.cache
def _output_shapes(forward_ref: Callable[..., Any], key: Any) -> Any:
    shapes, treedef, fixed = key
    arrays = tree_util.tree_unflatten(
        treedef,
        [jax.ShapeDtypeStruct(s, np.dtype(d)) for s, d in shapes],  # type: ignore[no-untyped-call]
    )
    values = {i: value for i, _, value in fixed}

    def apply(*traced: Any) -> Any:  # fixed numbers stay Python numbers: shapes, strides
        return forward_ref(*(values.get(i, a) for i, a in enumerate(traced)))

    return jax.eval_shape(apply, *arrays)


def is_float_leaf(leaf: Any) -> bool:
    return is_float(np.dtype(leaf.dtype))


def draw_cotangent(forward_ref: Callable[..., Any], inputs: tuple[Any, ...], seed: int) -> Any:
    """A standard normal cotangent shaped (and typed) like ``forward_ref(*inputs)``; zeros for
    an output that is not a float (an index, a count: it has no derivative). Fixed numbers
    among ``inputs`` (``pad:=1``) are passed as they are, never traced."""
    fixed = tuple((i, type(a).__name__, a) for i, a in enumerate(inputs) if is_fixed(a))
    arrays = tuple(None if is_fixed(a) else a for a in inputs)
    leaves, treedef = tree_util.tree_flatten(arrays)
    key = (tuple((np.shape(x), np.asarray(x).dtype.str) for x in leaves), treedef, fixed)
    out = _output_shapes(forward_ref, key)
    rng = np.random.default_rng(seed)
    return tree_util.tree_map(
        lambda s: (
            rng.standard_normal(s.shape).astype(s.dtype)
            if is_float_leaf(s)
            else np.zeros(s.shape, s.dtype)
        ),
        out,
    )


def with_drawn(
    args: st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...],
    draw: Callable[[tuple[Any, ...], int], tuple[Any, ...]],
    *,
    given: tuple[Any, ...] | None = None,
    seed: int | None = None,
    front: bool = False,
    seeds: int = 1,
) -> st.SearchStrategy[tuple[Any, ...]] | tuple[Any, ...]:
    """The inputs and the arguments ``draw(inputs, s)`` draws from them, in one tuple: drawn
    ones after the inputs (``(*inputs, *drawn)``), or in front with ``front``.

    From a strategy of input tuples: a strategy that draws the inputs and a seed s in
    [0, 2**32 - ``seeds``] (``draw`` may use s to s + ``seeds`` - 1). From one concrete tuple:
    that tuple with ``given`` (the drawn arguments as the user gave them), or, where None,
    ``draw(args, seed or 0)``.
    """

    def joined(inputs: tuple[Any, ...], drawn: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*drawn, *inputs) if front else (*inputs, *drawn)

    if isinstance(args, st.SearchStrategy):
        return st.tuples(args, st.integers(0, 2**32 - seeds)).map(
            lambda t: joined(t[0], draw(t[0], t[1]))
        )
    return joined(args, given if given is not None else draw(args, seed or 0))
