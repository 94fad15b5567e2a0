"""Naming a cause for a constant factor only where a second and a third input carry it.

A shrunk counterexample is made of 0s and 1s, where coincidences abound: an overwrite instead
of an accumulate, a strided pick instead of a block sum, sigmoid where sigmoid' belongs can all
look like "x 2" or "x 1/2" on one input. So a factor c seen on the counterexample (at least two
informative elements agreeing, see ``_diagnose.factor_fit``) is re-checked:

1. at other inputs (``_evidence.variants``: the differentiated arguments perturbed at random,
   mildly and strongly, at the same shapes and with every axis doubled). Unless the candidate
   is c times the reference at each of them where it is wrong at all, no cause is named;
2. at another size: for a factor equal to a size s of the problem (c = s or 1/s), every axis
   of that size in one group is doubled (the batch axis, axis 0 of the arguments that are not
   differentiated, first; then axis 0 of every argument; then every axis of size s) by
   repeating the data. The factor follows the dimension when it doubles with it (c -> 2c for a
   missing 1/m) or halves (c -> c/2 for a 1/m applied twice); only then is the dimension
   blamed.

A counterexample of more than ``_evidence.LARGE`` elements (a user's own input at production
size, never shrunk to 0s and 1s) costs a reference run and a candidate call per re-check, and doubling it
costs a compilation at a shape four times as large. There the evidence is proportional to what
it can add: one mild and one strong perturbation instead of six, no doubled inputs, and a factor
is re-checked on a **sub-batch** (the first ``SUB_BATCH`` indices along the axes of the size in
question; for a factor that is no size of the problem, along the batch axis): a small program,
cheap to compile and to run. The factor follows the dimension when it scales with it there
(c -> c sub/s for a missing 1/s), and stays c for a factor that is no dimension's. The words
say that the evidence came from a sub-batch.

"c times the reference" means every element within 1e-6 of the scale plus c times the probe's
``Slack`` (the rounding the verdict allows the candidate's dtype, see ``_diagnose``): a float16
kernel that is twice a correct one is twice the reference at every input although its rounding
moves each ratio by about 1e-3. The factor at each input is then known to a resolution
(``_diagnose.factor_fit``), and a value is named only where the resolution tells it from the
nearest competing one: a size s from s + 1, the doubled size's 2s from s, -1 from -2 and -1/2.
An input where the factor is known to no better than a factor of 2 is no evidence either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._diagnose import Fit, factor_fit, mask_pattern
from verification.auditing._evidence import Pair, Probe, perturbed, variants

__all__ = [
    "SUB_BATCH",
    "batch_doubled",
    "batch_group",
    "name_factor",
    "sliced",
    "sub_batch_factor",
]

_AGREE = 1e-6

SUB_BATCH = 8
"""Indices kept along an axis for the sub-batch re-check of a large counterexample."""


def _fit_at(pair: Pair | None) -> Fit | None:
    """The factor between candidate and reference in ``pair`` (``_diagnose.factor_fit``, one
    informative element at least), or None (no pair, another shape, no constant factor)."""
    if pair is None or np.shape(pair[0]) != np.shape(pair[1]):
        return None
    got, ref, slack = np.asarray(pair[0], np.float64), pair[1], pair[2]
    scale = float(np.max(np.abs(ref), initial=0.0))
    with np.errstate(all="ignore"):
        return factor_fit(got, ref, scale, at_least=1, slack=slack)


_COARSE = 0.5
"""A factor known to no better than this (relative) tells nothing: not even c from 2c."""


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
    return [perturbed(doubled, argnums, rng, strong=True) for _ in range(2)]


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
    resolution: float = _AGREE,
) -> str:
    """The words for a factor ``c`` seen on ``args``, after the re-checks of the module
    docstring (``probe`` evaluates candidate and reference at new arguments). ``others``
    (inputs of other sizes) default to ``batch_doubled``'s: from ``args`` alone. For a
    ``large`` counterexample, the factor is re-checked on a sub-batch of it
    (``sub_batch_factor``). ``resolution``: how closely ``c`` is known, relative
    (``_diagnose.factor_fit``)."""
    if large:
        return sub_batch_factor(c, probe, args, argnums, names, rng, resolution=resolution)
    here = Fit(c, resolution)
    if resolution >= _COARSE:
        return (
            f"every element is {c:.3g} (+-{resolution * abs(c):.2g}) times the reference on "
            "this input: too roughly known to name a cause"
        )
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
        got, ref, slack = np.asarray(pair[0], np.float64), pair[1], pair[2]
        if float(np.max(np.abs(ref), initial=0.0)) == 0:
            continue  # a reference of zeros: no evidence either way
        drawn = k >= len(same_size)
        if drawn and mask_pattern(got, ref, slack) is None:  # None: agrees everywhere
            continue  # another size, where the factor may be 1 (m = 1): no evidence
        there = _fit_at(pair)
        # Right where the reference is not 0 contradicts a constant factor c != 1, too.
        if there is None or (not drawn and not there.holds(c, resolution)):
            return (
                f"every element is {c:.6g} times the reference on this input, but not at "
                "another input near it: no constant factor, no cause named"
            )
        agree += not drawn and there.resolution < _COARSE
    if agree == 0:
        return f"every element is {c:.6g} times the reference on this input (not re-checked)"
    sizes = sorted({s for leaf in tree_util.tree_leaves(args) for s in np.shape(leaf) if s > 1})
    sign = "sign flipped and " if c < 0 else ""
    sign_of = -1.0 if c < 0 else 1.0
    rough = here.roughly(-1.0, 0.5)  # a value that may be the factor but cannot be told
    for size in sizes:
        grows, shrinks, unsure = _as_size(here, size)
        rough |= unsure
        if not (grows or shrinks):
            continue
        target, gap = (2 * size, size) if grows else (1 / (2 * size), 1 / (2 * size))
        for words, group in _groups(args, argnums, names, size):
            doubled = _fit_at(probe(_doubled(args, group)))
            rough |= doubled is not None and doubled.roughly(sign_of * target, gap)
            what = words.split(" (")[0]
            if grows and doubled is not None and doubled.tells(sign_of * 2 * size, size):
                return (
                    f"{sign}x {size} = {words}: the 1/{what.split(',')[0]} is missing (the "
                    "factor doubles when that dimension does)"
                )
            if (
                shrinks
                and doubled is not None
                and doubled.tells(sign_of / (2 * size), 1 / (2 * size))
            ):
                return (
                    f"{sign}x 1/{size} = 1/{words}: divided by {what.split(',')[0]} once too "
                    "often, e.g. twice where the loss averages once (the factor halves when "
                    "that dimension doubles)"
                )
    if here.tells(-1.0, 0.5):
        return "sign flipped (at this input and at another)"
    return _constant_words(here, "at another", rough)


def _as_size(here: Fit, size: int) -> tuple[bool, bool, bool]:
    """(the factor is +-``size``, it is +-1/``size``, either may be but cannot be told): each
    told from its nearest rival (``size`` + 1, 1/(``size`` + 1))."""
    sign = -1.0 if here.c < 0 else 1.0
    rivals = ((sign * size, 1.0), (sign / size, 1 / (size * (size + 1))))
    grows, shrinks = (here.tells(value, gap) for value, gap in rivals)
    return grows, shrinks, any(here.roughly(value, gap) for value, gap in rivals)


def _constant_words(here: Fit, where: str, rough: bool) -> str:
    """ "off by a constant factor c (...)": c with its resolution where that is above 1e-3, and
    whether the factor was known well enough to tell that it follows no dimension."""
    c = here.c
    value = f"{c:.6g}" if here.resolution < 1e-3 else f"{c:.3g} (+-{here.resolution * abs(c):.2g})"
    tail = (
        "known too roughly here to tell whether it follows a dimension of the problem"
        if rough
        else "it does not follow a dimension of the problem"
    )
    return f"off by a constant factor {value} (at this input and {where}; {tail})"


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
    *,
    resolution: float = _AGREE,
) -> str:
    """The words for a factor ``c`` seen on a large counterexample, re-checked on sub-batches
    (module docstring): for each size s of the problem that c equals (or 1/s), the first
    ``SUB_BATCH`` indices along those axes; the factor follows the dimension when it becomes
    c * SUB_BATCH / s there (or c * s / SUB_BATCH). Otherwise the factor must be c again on a
    sub-batch along the batch axis (or, with none, at a strong perturbation of the input)."""
    here = Fit(c, resolution)
    sizes = sorted({s for leaf in tree_util.tree_leaves(args) for s in np.shape(leaf) if s > 1})
    sign = "sign flipped and " if c < 0 else ""
    sign_of = -1.0 if c < 0 else 1.0
    rough = here.roughly(-1.0, 0.5)
    for size in sizes:
        if size < 2 * SUB_BATCH:
            continue
        grows, shrinks, unsure = _as_size(here, size)
        rough |= unsure
        if not (grows or shrinks):
            continue
        for words, group in _groups(args, argnums, names, size):
            there = _fit_at(probe(sliced(args, group, SUB_BATCH)))
            if there is not None:
                rough |= there.roughly(sign_of * SUB_BATCH, size - SUB_BATCH) and grows
                rough |= there.roughly(sign_of / SUB_BATCH, 1 / SUB_BATCH - 1 / size) and shrinks
            what = words.split(" (")[0].split(",")[0]
            checked = f"re-checked on a sub-batch of {SUB_BATCH} along it, where the factor is"
            # the competing value: the factor unchanged (s, or 1/s)
            if grows and there is not None and there.tells(sign_of * SUB_BATCH, size - SUB_BATCH):
                return (
                    f"{sign}x {size} = {words}: the 1/{what} is missing ({checked} "
                    f"{SUB_BATCH}: it follows that dimension)"
                )
            gap = 1 / SUB_BATCH - 1 / size
            if shrinks and there is not None and there.tells(sign_of / SUB_BATCH, gap):
                return (
                    f"{sign}x 1/{size} = 1/{words}: divided by {what} once too often, e.g. "
                    f"twice where the loss averages once ({checked} 1/{SUB_BATCH}: it follows "
                    "that dimension)"
                )
    batch = batch_group(args, argnums, names)
    if batch is not None:
        other, where = sliced(args, batch[1], SUB_BATCH), f"on a sub-batch of {SUB_BATCH}"
    else:
        other, where = perturbed(args, argnums, rng, strong=True), "at a perturbed input"
    there = _fit_at(probe(other))
    if there is None or not there.holds(c, resolution) or there.resolution >= _COARSE:
        return (
            f"every element is {c:.6g} times the reference on this input, but not {where}: "
            "no constant factor, no cause named"
        )
    if here.tells(-1.0, 0.5):
        return f"sign flipped (at this input and {where})"
    return _constant_words(here, where, rough)
