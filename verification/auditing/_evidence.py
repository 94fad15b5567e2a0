"""Naming a cause for a constant factor only where a second and a third input carry it.

A shrunk counterexample is made of 0s and 1s, where coincidences abound: an overwrite instead
of an accumulate, a strided pick instead of a block sum, sigmoid where sigmoid' belongs can all
look like "x 2" or "x 1/2" on one input. So a factor c seen on the counterexample (at least two
informative elements agreeing, see ``_diagnose.informative_factor``) is re-checked:

1. at other inputs (``variants``: the differentiated arguments perturbed at random, mildly
   and strongly, at the same shapes and with every axis doubled). Unless the candidate is c
   times the reference at each of them where it is wrong at all, no cause is named;
2. at another size: for a factor equal to a size s of the problem (c = s or 1/s), every axis
   of that size in one group is doubled (the batch axis, axis 0 of the arguments that are not
   differentiated, first; then axis 0 of every argument; then every axis of size s) by
   repeating the data. The factor follows the dimension when it doubles with it (c -> 2c for a
   missing 1/m) or halves (c -> c/2 for a 1/m applied twice); only then is the dimension
   blamed.

A mask's pattern (the candidate wrong only where the reference is exactly 0, right at one
informative element at least) is called a missing mask only if it is seen at two of these
inputs at least.

A counterexample of more than ``LARGE`` elements (a user's own input at production size, never
shrunk to 0s and 1s) costs a reference run and a candidate call per re-check, and doubling it
costs a compilation at a shape four times as large. There the evidence is proportional to what
it can add: one mild and one strong perturbation instead of six, no doubled inputs, and a factor
is re-checked on a **sub-batch** (the first ``SUB_BATCH`` indices along the axes of the size in
question; for a factor that is no size of the problem, along the batch axis): a small program,
cheap to compile and to run. The factor follows the dimension when it scales with it there
(c -> c sub/s for a missing 1/s), and stays c for a factor that is no dimension's. The words
say that the evidence came from a sub-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._diagnose import informative_factor, mask_pattern

__all__ = [
    "LARGE",
    "SUB_BATCH",
    "Probe",
    "batch_doubled",
    "batch_group",
    "mask_words",
    "name_factor",
    "sliced",
    "values_right_elsewhere",
    "variants",
]

Probe = Callable[[tuple[Any, ...]], tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None]
"""args -> (candidate leaf, reference leaf) at those args, or None if either cannot be had
(the candidate raises or returns another structure, the reference is not finite)."""

_AGREE = 1e-6

LARGE = 100_000
"""Elements of a counterexample above which the re-checks are the cheap ones (module docstring)."""

SUB_BATCH = 8
"""Indices kept along an axis for the sub-batch re-check of a large counterexample."""


def _factor_at(probe: Probe, args: tuple[Any, ...]) -> float | None:
    pair = probe(args)
    if pair is None:
        return None
    got, ref = pair
    if np.shape(got) != np.shape(ref):
        return None
    scale = float(np.max(np.abs(ref), initial=0.0))
    with np.errstate(all="ignore"):
        return informative_factor(np.asarray(got, np.float64), ref, scale, at_least=1)


def _same_factor(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= _AGREE * abs(b)


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
            seen += bool(mask_pattern(pair[0], pair[1]))
    seen += here
    if seen < 2 - (not here):
        return None
    where = "this one and inputs near it" + (", and the first failing example" if others else "")
    return (
        f": the pattern of a missing mask (e.g. ReLU's), seen at {seen} of {len(inputs) + 1} "
        f"inputs ({where})"
    )


def _perturbed(
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
        return [_perturbed(args, argnums, rng, strong=s) for s in (False, True)]
    leaves, treedef = tree_util.tree_flatten(args)
    tiled = [
        np.tile(x, (2,) * x.ndim) if isinstance(x, np.ndarray) and x.ndim else x for x in leaves
    ]
    doubled: tuple[Any, ...] = tree_util.tree_unflatten(treedef, tiled)
    same_size = [
        _perturbed(args, argnums, rng, strong=False),
        *(_perturbed(args, argnums, rng, strong=True) for _ in range(5)),
    ]
    if not bigger:
        return same_size
    # Eight: a pattern that each shows with probability 1/2 (a column of mixed signs) is
    # missed with probability 1/256, not 1/16.
    return [*same_size, *(_perturbed(doubled, argnums, rng, strong=True) for _ in range(8))]


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
        got, ref = np.asarray(pair[0]), pair[1]
        scale = float(np.max(np.abs(ref), initial=0.0))
        if scale == 0 or got.size != ref.size or not np.issubdtype(got.dtype, np.number):
            continue
        flipped = got.ndim == 2 and got.shape != ref.shape and got.shape == ref.shape[::-1]
        as_ref = got.T if flipped else got
        close = np.abs(as_ref.reshape(ref.shape).astype(np.float64) - ref) <= 1e-6 * (
            scale + np.abs(ref)
        )
        if not close.all():
            return 0
        right += 1
    return right


def _groups(
    args: tuple[Any, ...], argnums: Sequence[int], names: Sequence[str], size: int
) -> list[tuple[str, list[tuple[int, int]]]]:
    """(words, [(leaf index, axis)]) groups of axes of length ``size`` to double together."""
    flat = tree_util.tree_flatten_with_path(args)[0]
    leaf_names, data, first, every = [], [], [], []
    for k, (path, leaf) in enumerate(flat):
        shape = np.shape(leaf)
        name = f"{names[path[0].idx]}{tree_util.keystr(path[1:])}"
        leaf_names.append(name)
        if shape and shape[0] == size:
            first.append((k, 0))
            if path[0].idx not in argnums:
                data.append((k, 0))
        every += [(k, ax) for ax, s in enumerate(shape) if s == size]

    def words(group: list[tuple[int, int]], batch: bool) -> str:
        axes = ", ".join(f"{leaf_names[k]}.shape[{ax}]" for k, ax in group[:3])
        return f"m, the batch size ({axes})" if batch else f"the dimension of size {size} ({axes})"

    out: list[tuple[str, list[tuple[int, int]]]] = []
    for group, batch in ((data, True), (first, True), (every, False)):
        if group and all(group != g for _, g in out):
            out.append((words(group, batch), group))
    return out


def _doubled(args: tuple[Any, ...], group: list[tuple[int, int]]) -> tuple[Any, ...]:
    leaves, treedef = tree_util.tree_flatten(args)
    out = list(leaves)
    for k, axis in group:
        out[k] = np.concatenate([out[k], out[k]], axis=axis)
    rebuilt: tuple[Any, ...] = tree_util.tree_unflatten(treedef, out)
    return rebuilt


def batch_doubled(
    args: tuple[Any, ...], argnums: Sequence[int], names: Sequence[str], rng: np.random.Generator
) -> list[tuple[Any, ...]]:
    """Two strong perturbations of ``args`` with the batch doubled (axis 0 of the arguments
    that are not differentiated, and of every argument of that length, rows repeated: labels
    stay labels): inputs of another size, made from the counterexample alone, so that its
    reproducer re-checks the same ones."""
    data = [
        leaf
        for i, a in enumerate(args)
        if i not in argnums
        for leaf in tree_util.tree_leaves(a)
        if np.ndim(leaf) > 0
    ]
    if not data:
        return []
    groups = _groups(args, argnums, names, int(np.shape(data[0])[0]))
    if not groups:
        return []
    doubled = _doubled(args, groups[0][1])
    return [_perturbed(doubled, argnums, rng, strong=True) for _ in range(2)]


def name_factor(
    c: float,
    probe: Probe,
    args: tuple[Any, ...],
    argnums: Sequence[int],
    names: Sequence[str],
    rng: np.random.Generator,
    others: Sequence[tuple[Any, ...]] = (),
    *,
    large: bool = False,
) -> str:
    """The words for a factor ``c`` seen on ``args``, after the re-checks of the module
    docstring (``probe`` evaluates candidate and reference at new arguments). ``others``
    (inputs of other sizes) default to ``batch_doubled``'s: from ``args`` alone. For a
    ``large`` counterexample, the factor is re-checked on a sub-batch of it
    (``sub_batch_factor``)."""
    if large:
        return sub_batch_factor(c, probe, args, argnums, names, rng)
    agree = 0
    same_size = variants(args, argnums, rng, bigger=False)
    others = list(others) or batch_doubled(args, argnums, names, rng)
    # Near inputs at the same size must show the same factor; inputs drawn by the search
    # (``others``: other sizes, in the user's domain) must show a factor (it may follow a
    # dimension). Doubled variants are not used: tiling breaks labels (a one-hot row twice).
    for k, other in enumerate([*same_size, *others]):
        pair = probe(other)
        if pair is None or np.shape(pair[0]) != np.shape(pair[1]):
            continue  # outside the loss's domain, or the candidate failed otherwise: no evidence
        got, ref = np.asarray(pair[0], np.float64), pair[1]
        scale = float(np.max(np.abs(ref), initial=0.0))
        if scale == 0:
            continue  # a reference of zeros: no evidence either way
        drawn = k >= len(same_size)
        if drawn and np.allclose(got, ref, rtol=1e-9, atol=1e-9 * scale):
            continue  # another size, where the factor may be 1 (m = 1): no evidence
        with np.errstate(all="ignore"):
            there = informative_factor(got, ref, scale, at_least=1)
        # Right where the reference is not 0 contradicts a constant factor c != 1, too.
        if there is None or (not drawn and not _same_factor(there, c)):
            return (
                f"every element is {c:.6g} times the reference on this input, but not at "
                "another input near it: no constant factor, no cause named"
            )
        agree += not drawn
    if agree == 0:
        return f"every element is {c:.6g} times the reference on this input (not re-checked)"
    sizes = sorted({s for leaf in tree_util.tree_leaves(args) for s in np.shape(leaf) if s > 1})
    sign = "sign flipped and " if c < 0 else ""
    for size in sizes:
        grows = abs(abs(c) - size) <= _AGREE * size
        shrinks = abs(abs(c) * size - 1) <= _AGREE
        if not (grows or shrinks):
            continue
        for words, group in _groups(args, argnums, names, size):
            doubled = _factor_at(probe, _doubled(args, group))
            what = words.split(" (")[0]
            if grows and _same_factor(doubled, 2 * c):
                return (
                    f"{sign}x {size} = {words}: the 1/{what.split(',')[0]} is missing (the "
                    "factor doubles when that dimension does)"
                )
            if shrinks and _same_factor(doubled, c / 2):
                return (
                    f"{sign}x 1/{size} = 1/{words}: divided by {what.split(',')[0]} once too "
                    "often, e.g. twice where the loss averages once (the factor halves when "
                    "that dimension doubles)"
                )
    if c == -1 or abs(c + 1) <= _AGREE:
        return "sign flipped (at this input and at another)"
    return (
        f"off by a constant factor {c:.6g} (at this input and at another; it does not follow "
        "a dimension of the problem)"
    )


def sliced(
    args: tuple[Any, ...], group: list[tuple[int, int]], keep: int, start: int = 0
) -> tuple[Any, ...]:
    """``args`` with the ``keep`` indices from ``start`` kept along each (leaf, axis) of
    ``group``; the other leaves as they are."""
    leaves, treedef = tree_util.tree_flatten(args)
    out = list(leaves)
    for k, axis in group:
        out[k] = np.take(out[k], np.arange(start, start + keep), axis=axis)
    rebuilt: tuple[Any, ...] = tree_util.tree_unflatten(treedef, out)
    return rebuilt


def batch_group(
    args: tuple[Any, ...], argnums: Sequence[int], names: Sequence[str]
) -> tuple[int, list[tuple[int, int]]] | None:
    """(size, group) of the batch axis: axis 0 of the arguments that are not differentiated,
    where they share a length of at least 2 * ``SUB_BATCH``; None if there is none."""
    firsts = {
        np.shape(leaf)[0]
        for i, a in enumerate(args)
        if i not in argnums
        for leaf in tree_util.tree_leaves(a)
        if np.ndim(leaf) > 0
    }
    if len(firsts) != 1 or (size := firsts.pop()) < 2 * SUB_BATCH:
        return None
    for words, group in _groups(args, argnums, names, size):
        if words.startswith("m, the batch size"):
            return size, group
    return None  # pragma: no cover  (a shared axis 0 outside argnums is the batch group)


def sub_batch_factor(
    c: float,
    probe: Probe,
    args: tuple[Any, ...],
    argnums: Sequence[int],
    names: Sequence[str],
    rng: np.random.Generator,
) -> str:
    """The words for a factor ``c`` seen on a large counterexample, re-checked on sub-batches
    (module docstring): for each size s of the problem that c equals (or 1/s), the first
    ``SUB_BATCH`` indices along those axes; the factor follows the dimension when it becomes
    c * SUB_BATCH / s there (or c * s / SUB_BATCH). Otherwise the factor must be c again on a
    sub-batch along the batch axis (or, with none, at a strong perturbation of the input)."""
    sizes = sorted({s for leaf in tree_util.tree_leaves(args) for s in np.shape(leaf) if s > 1})
    sign = "sign flipped and " if c < 0 else ""
    for size in sizes:
        grows = abs(abs(c) - size) <= _AGREE * size
        shrinks = abs(abs(c) * size - 1) <= _AGREE
        if size < 2 * SUB_BATCH or not (grows or shrinks):
            continue
        for words, group in _groups(args, argnums, names, size):
            there = _factor_at(probe, sliced(args, group, SUB_BATCH))
            what = words.split(" (")[0].split(",")[0]
            checked = f"re-checked on a sub-batch of {SUB_BATCH} along it, where the factor is"
            if grows and _same_factor(there, c * SUB_BATCH / size):
                return (
                    f"{sign}x {size} = {words}: the 1/{what} is missing ({checked} "
                    f"{SUB_BATCH}: it follows that dimension)"
                )
            if shrinks and _same_factor(there, c * size / SUB_BATCH):
                return (
                    f"{sign}x 1/{size} = 1/{words}: divided by {what} once too often, e.g. "
                    f"twice where the loss averages once ({checked} 1/{SUB_BATCH}: it follows "
                    "that dimension)"
                )
    batch = batch_group(args, argnums, names)
    if batch is not None:
        other, where = sliced(args, batch[1], SUB_BATCH), f"on a sub-batch of {SUB_BATCH}"
    else:
        other, where = _perturbed(args, argnums, rng, strong=True), "at a perturbed input"
    there = _factor_at(probe, other)
    if not _same_factor(there, c):
        return (
            f"every element is {c:.6g} times the reference on this input, but not {where}: "
            "no constant factor, no cause named"
        )
    if abs(c + 1) <= _AGREE:
        return f"sign flipped (at this input and {where})"
    return (
        f"off by a constant factor {c:.6g} (at this input and {where}; it does not follow "
        "a dimension of the problem)"
    )
