"""Where the error enters: the line of the candidate whose value first goes wrong.

On a failing audit, the candidate runs again under the line tracer (``_trace``) at two inputs:
the shrunk counterexample and a second failing input whose sizes are all distinct and > 1 (so
that shapes cannot coincide by accident). Every value it computed is compared with every
quantity of the reference (``_refquant``: the intermediates of the loss, their gradients, the
inputs): a value *is* a reference quantity when it agrees with it, within the float64
tolerance, at both inputs (a transpose and size-1 axes allowed).

From the wrong output leaf the walk (``_walk``) goes back through the candidate's dataflow,
re-running statements with one value replaced by a reference quantity, until it finds the
statement where the error enters.

Nothing is claimed that was not measured at both inputs: a line is named only when its
statement, re-run with the right values, was shown to be wrong (or right), and the walk says
``not located (<reason>)`` when it cannot single one out: no line of user code computed the
wrong value (compiled or vectorised away), the two inputs take different paths, two reads
repair it, a wrong value read that no reference quantity checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import tree_util

from verification.auditing._refsteps import reference_quantities
from verification.auditing._second import leaf_index, second_input, sub_batches
from verification.auditing._trace import trace_call
from verification.auditing._trees import none_leaf
from verification.auditing._walk import Locator, Run, target_of
from verification.auditing._where import NotLocated, Where, axes

__all__ = ["NotLocated", "Where", "leaf_index", "locate", "locate_failure"]

AGREES = "the failing leaf agrees with the reference under the tracer"
"""Why ``locate`` names no line where the candidate is right at the inputs it was given
(``NotLocated.agrees``)."""


def _run(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
) -> Run | NotLocated:
    quantities = reference_quantities(loss_fn, args, argnums, arg_names)
    labelled = []
    for i, arg in enumerate(args):
        for path, leaf in tree_util.tree_flatten_with_path(arg)[0]:
            labelled.append((f"{arg_names[i]}{tree_util.keystr(path)}", leaf))
    trace = trace_call(grad_fn, args, labelled)
    if not trace.complete:
        return NotLocated("the candidate ran too many statements to follow")
    if trace.error is not None:
        return NotLocated(f"the candidate raised {type(trace.error).__name__} under the tracer")
    terms = max([int(np.size(x)) for x in tree_util.tree_leaves(args)], default=1)
    return Run(
        trace,
        {q.key: q for q in quantities},
        {n.key: n for n in trace.nodes},
        terms,
        axes(args, arg_names),
    )


def _leaf_key(args: tuple[Any, ...], argnums: tuple[int, ...], leaf: int) -> tuple[Any, ...]:
    """The key of the reference gradient of the ``leaf``-th differentiated leaf."""
    flat = tree_util.tree_flatten_with_path(tuple(args))[0]
    order = [
        i
        for argnum in argnums
        for i, (path, _) in enumerate(flat)
        if getattr(path[0], "idx", -1) == argnum
    ]
    return ("gradient", "input", order[leaf])


def locate(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    inputs: Sequence[tuple[Any, ...]],
    *,
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
    leaf: int,
) -> Where | NotLocated:
    """The line of ``grad_fn`` where the error in its ``leaf``-th gradient leaf enters.

    inputs : two failing inputs, the shrunk counterexample and one with all sizes distinct
        and > 1. argnums, arg_names : as the audit's. Returns a ``Where``, or ``NotLocated``
        with the reason; never raises for what the candidate does.
    """
    if len(inputs) != 2:
        return NotLocated("a second failing input with distinct sizes could not be drawn")
    runs: list[Run] = []
    for args in inputs:
        try:
            run = _run(grad_fn, loss_fn, args, argnums, arg_names)
        except Exception as error:  # the reference's walk: not the candidate's fault
            first = (str(error).splitlines() or [""])[0]
            return NotLocated(f"the reference's quantities could not be computed ({first})")
        if isinstance(run, NotLocated):
            return run
        runs.append(run)
    out_nodes = []
    for run in runs:
        leaves = tree_util.tree_leaves(run.trace.result, is_leaf=none_leaf)
        if leaf >= len(leaves):
            return NotLocated("the candidate's result has another structure under the tracer")
        node = run.trace.node_of(leaves[leaf])
        if node is None or not node.line:
            return NotLocated(
                "the wrong gradient was not computed by a line of Python in the user's files "
                "(compiled, or built outside them)"
            )
        out_nodes.append(node)
    if out_nodes[0].key != out_nodes[1].key:
        return NotLocated("the two inputs take different paths through the code")
    locator = Locator(runs)
    target = target_of(runs, _leaf_key(inputs[0], argnums, leaf))
    if target is None:
        return NotLocated("the reference has no gradient for the failing leaf")
    matched = locator.matches(out_nodes[0])
    if target.quantity in matched:
        return NotLocated(AGREES, agrees=True)
    roles = [q for q in matched if q.kind == "gradient"]
    if roles:  # a right gradient returned where another belongs
        return locator.returned_instead(out_nodes[0], runs[0].trace, roles[0], target)
    return locator.walk(out_nodes[0], target)


def locate_failure(
    grad_fn: Callable[..., Any],
    loss_fn: Callable[..., Any],
    check: Callable[[tuple[Any, ...]], Any],
    drawn: Any,
    counterexample: tuple[Any, ...],
    *,
    argnums: tuple[int, ...],
    arg_names: Sequence[str],
    leaf: int,
    seed: int,
) -> Where | NotLocated:
    """``locate`` at the counterexample and a second failing input (``second_input``); for a
    large counterexample with a batch axis, at two failing sub-batches of it instead
    (``sub_batches``: the report says so). The
    verdict is already made: a value the locator cannot follow (a pytree where it expects an
    array, say) ends in ``not located`` with the reason, never in an error of the audit."""
    try:
        subs = sub_batches(counterexample, argnums, arg_names)
        if subs is not None:  # a large input: programs of a few rows, not of its whole batch
            inputs, words = subs
            found = locate(
                grad_fn, loss_fn, inputs, argnums=argnums, arg_names=arg_names, leaf=leaf
            )
            if isinstance(found, Where):
                return dataclasses.replace(found, located_on=words)
            if not found.agrees:  # else the error does not show there: the whole input
                return NotLocated(f"{found.reason}; {words}")
        other = second_input(check, drawn, counterexample, leaf, seed)
        if other is None:
            return NotLocated(
                "no second failing input with all sizes > 1 could be drawn, so no value can be "
                "matched to the reference with confidence"
            )
        return locate(
            grad_fn,
            loss_fn,
            [counterexample, other],
            argnums=argnums,
            arg_names=arg_names,
            leaf=leaf,
        )
    except Exception as error:  # the locator's own limit, not the candidate's fault
        first = (str(error).splitlines() or [""])[0][:120]
        return NotLocated(
            f"the candidate's values could not be followed ({type(error).__name__}: {first})"
        )
