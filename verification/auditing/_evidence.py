"""Evidence from inputs other than the counterexample: the probe that evaluates candidate and
reference there, the inputs near a counterexample (``variants``), a mask's pattern seen at two
inputs, and a wrong shape or dtype whose values are right elsewhere. ``_factor`` names a
constant factor's cause from the same inputs.

A shrunk counterexample is made of 0s and 1s, where coincidences abound, so a signature seen
on it is re-checked at other inputs before any cause is named. A mask's pattern (the
candidate wrong only where the reference is exactly 0, right at one informative element at
least) is called a missing mask only if it is seen at two of these inputs at least.

A counterexample of more than ``LARGE`` elements (a user's own input at production size, never
shrunk to 0s and 1s) costs a reference run and a candidate call per re-check: there the
evidence is proportional to what it can add, one mild and one strong perturbation instead of
six, and no doubled inputs.

"Equal" means equal up to the probe's ``Slack`` as well: the rounding the verdict allows the
candidate's dtype (see ``_diagnose``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._diagnose import Slack, mask_pattern

__all__ = [
    "LARGE",
    "Pair",
    "Probe",
    "mask_words",
    "perturbed",
    "values_right_elsewhere",
    "variants",
]

Pair = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], Slack]
Probe = Callable[[tuple[Any, ...]], Pair | None]
"""args -> (candidate leaf, reference leaf, the slack the verdict allows the candidate there)
at those args, or None if either cannot be had (the candidate raises or returns another
structure, the reference is not finite)."""

LARGE = 100_000
"""Elements of a counterexample above which the re-checks are the cheap ones (module docstring)."""


def mask_words(
    here: bool,
    probe: Probe,
    args: tuple[Any, ...],
    argnums: Sequence[int],
    rng: np.random.Generator,
    others: Sequence[tuple[Any, ...]] = (),
    *,
    large: bool = False,
) -> str | None:
    """The words ", the pattern of a missing mask ..." when a mask's pattern (wrong only where the
    reference is exactly 0, right at one informative element at least) is seen at two inputs:
    the counterexample (``here``) and the other inputs (``variants``, ``others``); or at one
    of the others when the counterexample's reference is 0 at every element (wrong only
    there, consistent with a mask but too small to show one); else None."""
    seen = 0
    inputs = [*variants(args, argnums, rng, bigger=True, large=large), *others]
    for other in inputs:
        pair = probe(other)
        if pair is not None and np.shape(pair[0]) == np.shape(pair[1]):
            seen += bool(mask_pattern(pair[0], pair[1], pair[2]))
    seen += here
    if seen < 2 - (not here):
        return None
    where = "this one and inputs near it" + (", and the first failing example" if others else "")
    return (
        f": the pattern of a missing mask (e.g. ReLU's), seen at {seen} of {len(inputs) + 1} "
        f"inputs ({where})"
    )


def perturbed(
    args: tuple[Any, ...], argnums: Sequence[int], rng: np.random.Generator, strong: bool
) -> tuple[Any, ...]:
    """The differentiated float arrays moved at random: mildly (each element times 1 +- 25%,
    zeros to +-25% of the largest), or strongly (random signs as well, and +-50% of the
    largest added: crossing kinks and branches)."""

    def shake(leaf: Any) -> Any:
        if not isinstance(leaf, np.ndarray) or not np.issubdtype(leaf.dtype, np.floating):
            return leaf
        a = leaf
        u = rng.uniform(-1.0, 1.0, a.shape)
        top = max(float(np.max(np.abs(a), initial=0.0)), 1.0)
        if strong:
            signs = rng.choice([-1.0, 1.0], a.shape)
            moved = signs * a * (1 + 0.5 * u) + 0.5 * top * rng.uniform(-1.0, 1.0, a.shape)
        else:
            moved = np.where(a != 0, a * (1 + 0.25 * u), 0.25 * top * u)
        return moved.astype(a.dtype)

    return tuple(tree_util.tree_map(shake, a) if i in argnums else a for i, a in enumerate(args))


def variants(
    args: tuple[Any, ...],
    argnums: Sequence[int],
    rng: np.random.Generator,
    *,
    bigger: bool,
    large: bool = False,
) -> list[tuple[Any, ...]]:
    """Other inputs to re-check a signature at: one mild and five strong perturbations of the
    counterexample first, then (``bigger``) eight strong perturbations of it with every axis
    doubled (more elements, so that a pattern has room to show). For a ``large`` counterexample
    (module docstring): one mild and one strong perturbation, nothing doubled."""
    if large:
        return [perturbed(args, argnums, rng, strong=s) for s in (False, True)]
    leaves, treedef = tree_util.tree_flatten(args)
    tiled = [
        np.tile(x, (2,) * x.ndim) if isinstance(x, np.ndarray) and x.ndim else x for x in leaves
    ]
    doubled: tuple[Any, ...] = tree_util.tree_unflatten(treedef, tiled)
    same_size = [
        perturbed(args, argnums, rng, strong=False),
        *(perturbed(args, argnums, rng, strong=True) for _ in range(5)),
    ]
    if not bigger:
        return same_size
    # Eight: a pattern that each shows with probability 1/2 (a column of mixed signs) is
    # missed with probability 1/256, not 1/16.
    return [*same_size, *(perturbed(doubled, argnums, rng, strong=True) for _ in range(8))]


def values_right_elsewhere(
    probe: Probe,
    args: tuple[Any, ...],
    argnums: Sequence[int],
    rng: np.random.Generator,
    others: Sequence[tuple[Any, ...]] = (),
    *,
    large: bool = False,
) -> int:
    """At how many inputs near ``args`` (same shapes, reference not all 0) the candidate's leaf
    holds the reference's values (as floats, reshaped, or transposed for a reversed 2-d
    shape); 0 if it is wrong at any of them."""
    right = 0
    for other in [*variants(args, argnums, rng, bigger=False, large=large), *others]:
        pair = probe(other)
        if pair is None:
            continue
        got, ref, (rtol, atol) = np.asarray(pair[0]), pair[1], pair[2]
        scale = float(np.max(np.abs(ref), initial=0.0))
        if scale == 0 or got.size != ref.size or not np.issubdtype(got.dtype, np.number):
            continue
        flipped = got.ndim == 2 and got.shape != ref.shape and got.shape == ref.shape[::-1]
        as_ref = got.T if flipped else got
        close = np.abs(as_ref.reshape(ref.shape).astype(np.float64) - ref) <= 1e-6 * (
            scale + np.abs(ref)
        ) + (atol + rtol * np.abs(ref))
        if not close.all():
            return 0
        right += 1
    return right
