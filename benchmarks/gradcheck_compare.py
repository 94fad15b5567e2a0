"""Side by side: this audit, ``torch.autograd.gradcheck`` and ``jax.test_util.check_grads``.

Each checker judges the same hand-written gradients of the seed network (linear, ReLU, linear,
softmax, cross-entropy; the differentiated arguments are the four parameters) on one concrete
input per size (``benchmarks.sgd_step.SIZES``: tiny, mnist, large):

(a) correct (``manual_bp``, float64): must pass;
(b) the 1/m of the mean missing (every gradient m times too large);
(c) one wrong element: dW1[0, 0] off by 10% of dW1's largest element (one among the 100,352
    of dW1 at mnist size);
(d) one wrong row: the last row of dW1 zero (a loop that stops one row short);
(e) correct in float32 (``manual_bp`` on float32 inputs): must pass;
(f) correct in bfloat16 (torch autograd on bfloat16 tensors): must pass.

The audit runs ``verification.audit`` on the concrete input (``argnums=0``). The others see the
candidate through the hook each library has for a custom gradient: a ``torch.autograd.Function``
whose backward returns the candidate's gradient (gradcheck with its defaults, and with
``fast_mode=True``), and a ``jax.custom_jvp`` whose tangent is <candidate gradient, tangent>
(check_grads with ``modes=("fwd",)`` and ``modes=("rev",)``, order 1). Every checker gets the
inputs in the candidate's own dtype. A check still running after the time cap (60 s) is stopped
(``did not finish in N s``); when that happens on a correct candidate, the same checker is not
run on the rest of that size (it costs the same there). gradcheck's fast mode, on a failure,
recomputes the full Jacobian for its error message, so it can run past the cap on a bug it
caught. Times are wall-clock on the shared machine; "steps" divides by the candidate's own time
for one gradient at that size (the fastest of three calls).

The audit runs in a fresh process per cell (``--audit-child``) on a compilation cache that one
process per size filled first: **cold from cache** is its first audit there (what a user sees
from the second run on: JAX still traces and lowers every program, then loads it from disk),
**warm** the same audit again in that process (nothing left to compile), **quick, warm** the
same audit with ``quick=True`` then (the verdict and the offending elements, the evidence for
the verdict kept, the explanation left out: what the peers give). The peers run in this
process. "fastest right peer" is the quickest of the other checkers whose verdict was right, and
the last column divides the audit's time (each of its three runs) by it.

    python -m benchmarks --only gradcheck_compare [--quick]
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from numpy.typing import NDArray

import manual_bp as mb
from benchmarks._report import Section, fmt_time, markdown_table
from benchmarks.sgd_step import SIZES

__all__ = ["CANDIDATES", "CHECKERS", "draw_problem", "gradcheck_compare_figure", "problem", "run"]

Array = NDArray[Any]
Grad = Callable[[mb.MLPParams, Array, Array], mb.MLPParams]
BF16 = np.dtype(ml_dtypes.bfloat16)


def _correct(params: mb.MLPParams, x: Array, y: Array) -> mb.MLPParams:
    return mb.mlp_loss_and_grads(params, x, y)[1]


def _missing_mean(params: mb.MLPParams, x: Array, y: Array) -> mb.MLPParams:
    m = x.shape[0]
    return mb.MLPParams(*(g * g.dtype.type(m) for g in _correct(params, x, y)))


def _one_element(params: mb.MLPParams, x: Array, y: Array) -> mb.MLPParams:
    g = _correct(params, x, y)
    dW1 = g.W1.copy()
    dW1[0, 0] += 0.1 * np.max(np.abs(dW1))
    return g._replace(W1=dW1)


def _one_row(params: mb.MLPParams, x: Array, y: Array) -> mb.MLPParams:
    g = _correct(params, x, y)
    dW1 = g.W1.copy()
    dW1[-1] = 0.0
    return g._replace(W1=dW1)


def _torch(a: Array) -> Any:
    import torch

    if a.dtype == BF16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def _numpy(t: Any) -> Array:
    import torch

    if t.dtype == torch.bfloat16:
        out: Array = t.detach().contiguous().view(torch.int16).numpy().view(BF16)
        return out
    return np.asarray(t.detach().numpy())


def _torch_loss(leaves: Sequence[Any], x: Any, y: Any) -> Any:
    import torch

    W1, b1, W2, b2 = leaves
    logits = torch.relu(x @ W1 + b1) @ W2 + b2
    return -(y * torch.log_softmax(logits, dim=1)).sum() / x.shape[0]


def _bfloat16_torch(params: mb.MLPParams, x: Array, y: Array) -> mb.MLPParams:
    """torch autograd of the network on bfloat16 tensors (CPU: float32 accumulation)."""
    import torch

    leaves = [_torch(p).requires_grad_(True) for p in params]
    loss = _torch_loss(leaves, _torch(x), _torch(y))
    return mb.MLPParams(*(_numpy(g) for g in torch.autograd.grad(loss, leaves)))


CANDIDATES: dict[str, tuple[Grad, Any, bool]] = {
    "(a) correct": (_correct, np.float64, True),
    "(b) missing 1/m": (_missing_mean, np.float64, False),
    "(c) one wrong element": (_one_element, np.float64, False),
    "(d) one wrong row": (_one_row, np.float64, False),
    "(e) correct float32": (_correct, np.float32, True),
    "(f) correct bfloat16": (_bfloat16_torch, BF16, True),
}
"""name -> (gradient function, dtype of its inputs, whether it is correct)."""


def draw_problem(
    rng: np.random.Generator, size: tuple[int, int, int, int]
) -> tuple[mb.MLPParams, Array, Array]:
    """The seed network's parameters (biases drawn in [-0.1, 0.1]), standard normal inputs and
    one-hot labels at ``size`` (m, n, h, k), in float64, drawn from ``rng`` in that order."""
    m, n, h, k = size
    params = mb.init_mlp(rng, n, h, k)
    params = params._replace(b1=rng.uniform(-0.1, 0.1, h), b2=rng.uniform(-0.1, 0.1, k))
    x = rng.standard_normal((m, n))
    y = np.eye(k)[rng.integers(0, k, m)]
    return params, x, y


def problem(size: tuple[int, int, int, int], dtype: Any) -> tuple[mb.MLPParams, Array, Array]:
    """``draw_problem`` from seed 0, in ``dtype``."""
    params, x, y = draw_problem(np.random.default_rng(0), size)
    cast = mb.MLPParams(*(np.asarray(p).astype(dtype) for p in params))
    return cast, x.astype(dtype), y.astype(dtype)


# --- the checkers: each returns True when it passes the candidate ----------------------------


def _audit(grad: Grad, problem: tuple[mb.MLPParams, Array, Array], quick: bool = False) -> bool:
    from verification import audit, reference

    return audit(grad, reference.mlp_loss, problem, argnums=0, seed=0, quick=quick).passed


def _torch_function(grad: Grad, x: Array, y: Array) -> Any:
    import torch

    class Candidate(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *leaves: Any) -> Any:
            ctx.save_for_backward(*leaves)
            return _torch_loss(leaves, _torch(x), _torch(y))

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            params = mb.MLPParams(*(_numpy(t) for t in ctx.saved_tensors))
            return tuple(_torch(g) * grad_output for g in grad(params, x, y))

    return Candidate.apply


def _gradcheck(fast: bool) -> Callable[[Grad, tuple[mb.MLPParams, Array, Array]], bool]:
    def check(grad: Grad, problem: tuple[mb.MLPParams, Array, Array]) -> bool:
        import torch

        params, x, y = problem
        leaves = tuple(_torch(p).requires_grad_(True) for p in params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not double precision" for (e) and (f)
            return bool(
                torch.autograd.gradcheck(
                    _torch_function(grad, x, y), leaves, raise_exception=False, fast_mode=fast
                )
            )

    return check


def _check_grads(mode: str) -> Callable[[Grad, tuple[mb.MLPParams, Array, Array]], bool]:
    def check(grad: Grad, problem: tuple[mb.MLPParams, Array, Array]) -> bool:
        import jax
        import jax.numpy as jnp
        from jax.test_util import check_grads

        from verification import reference

        params, x, y = problem
        shapes = tuple(
            jax.ShapeDtypeStruct(p.shape, p.dtype)  # type: ignore[no-untyped-call]
            for p in params
        )

        def numpy_grad(*leaves: Any) -> tuple[Array, ...]:
            out = grad(mb.MLPParams(*(np.asarray(v) for v in leaves)), x, y)
            return tuple(np.asarray(g) for g in out)

        @jax.custom_jvp
        def loss(*leaves: Any) -> Any:
            return reference.mlp_loss(mb.MLPParams(*leaves), x, y)

        @loss.defjvp
        def loss_jvp(primals: Any, tangents: Any) -> Any:
            g = jax.pure_callback(numpy_grad, shapes, *primals)
            return loss(*primals), sum(jnp.vdot(a, t) for a, t in zip(g, tangents, strict=True))

        try:
            check_grads(  # type: ignore[no-untyped-call]
                loss, tuple(jnp.asarray(p) for p in params), order=1, modes=(mode,)
            )
        except AssertionError:
            return False
        return True

    return check


CHECKERS: dict[str, Callable[[Grad, tuple[mb.MLPParams, Array, Array]], bool]] = {
    "this audit": _audit,
    "gradcheck": _gradcheck(fast=False),
    "gradcheck fast_mode": _gradcheck(fast=True),
    "check_grads fwd": _check_grads("fwd"),
    "check_grads rev": _check_grads("rev"),
}


class _TimeUpError(BaseException):
    """The time cap: a BaseException, so that no checker's ``except Exception`` (the audit's
    guard around the candidate, say) takes it for the candidate's own error."""


@contextmanager
def _time_cap(seconds: float) -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise _TimeUpError

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _step_seconds(grad: Grad, problem: tuple[mb.MLPParams, Array, Array]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        grad(*problem)
        times.append(time.perf_counter() - start)
    return min(times)


def _one(
    checker: Callable[[Grad, tuple[mb.MLPParams, Array, Array]], bool],
    grad: Grad,
    problem: tuple[mb.MLPParams, Array, Array],
    cap: float,
) -> tuple[str, float]:
    start = time.perf_counter()
    try:
        with _time_cap(cap), np.errstate(all="ignore"):
            outcome = "pass" if checker(grad, problem) else "FAIL"
    except _TimeUpError:
        outcome = "timeout"
    except Exception as error:  # a checker that cannot take this input at all
        outcome = f"error: {type(error).__name__}"
    return outcome, time.perf_counter() - start


ROOT = Path(__file__).resolve().parent.parent
PEERS = [name for name in CHECKERS if name != "this audit"]
AUDIT_RUNS = {"cold": "cold from cache", "warm": "warm", "quick": "quick, warm"}
"""The audit's runs per cell (``_audit_child``) and their labels: column "this audit, LABEL"."""


def _audit_child(size_name: str, candidates: list[str], cap: float) -> dict[str, Any]:
    """In a fresh process: each candidate's audit twice (cold from cache, then warm), then
    with ``quick=True`` (warm)."""
    out: dict[str, Any] = {}
    problems: dict[Any, tuple[mb.MLPParams, Array, Array]] = {}
    for cand in candidates:
        grad, dtype, _ = CANDIDATES[cand]
        if np.dtype(dtype) not in problems:
            problems[np.dtype(dtype)] = problem(SIZES[size_name], dtype)
        args = problems[np.dtype(dtype)]
        cold = _one(_audit, grad, args, cap)
        warm = _one(_audit, grad, args, cap)
        quick = _one(functools.partial(_audit, quick=True), grad, args, cap)
        out[cand] = {"cold": cold, "warm": warm, "quick": quick, "step": _step_seconds(grad, args)}
    return out


def _spawn_audit(cache: str, size_name: str, candidates: list[str], cap: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.gradcheck_compare", "--audit-child"]
    done = subprocess.run(
        [*command, size_name, str(cap), *candidates],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MANUAL_BP_JAX_CACHE": cache},
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _row(
    size_name: str, checker: str, cand: str, outcome: str, seconds: float, step: float
) -> dict[str, Any]:
    correct = CANDIDATES[cand][2]
    return {
        "size": size_name,
        "shape": list(SIZES[size_name]),
        "checker": checker,
        "candidate": cand,
        "correct": correct,
        "outcome": outcome,
        "right": outcome == ("pass" if correct else "FAIL"),
        "seconds": seconds,
        "candidate_step_s": step,
        "steps": seconds / step,
    }


def run(*, quick: bool = False) -> Section:
    """Every checker on every candidate at every size; the markdown table and the payload."""
    cap = 10.0 if quick else 60.0
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gradcheck-compare-cache-") as cache:
        for size_name, size in SIZES.items():
            _spawn_audit(cache, size_name, list(CANDIDATES), cap)  # fills the cache
            for cand in CANDIDATES:
                got = _spawn_audit(cache, size_name, [cand], cap)[cand]
                for run_name, label in AUDIT_RUNS.items():
                    outcome, seconds = got[run_name]
                    column = f"this audit, {label}"
                    rows.append(_row(size_name, column, cand, outcome, seconds, got["step"]))
                    print(f"  {size_name} {column} {cand}: {outcome} {seconds:.2f} s", flush=True)
            problems = {np.dtype(dt): problem(size, dt) for dt in (np.float64, np.float32, BF16)}
            for checker_name in PEERS:
                checker = CHECKERS[checker_name]
                stopped = False
                for cand_name, (grad, dtype, correct) in CANDIDATES.items():
                    args = problems[np.dtype(dtype)]
                    step = _step_seconds(grad, args)
                    if stopped:
                        outcome, seconds = "not run", float("nan")
                    else:
                        outcome, seconds = _one(checker, grad, args, cap)
                        stopped = outcome == "timeout" and correct  # as slow on the others
                    rows.append(_row(size_name, checker_name, cand_name, outcome, seconds, step))
                    print(
                        f"  {size_name} {checker_name} {cand_name}: {outcome} {seconds:.2f} s",
                        flush=True,
                    )
    payload = {
        "cap_s": cap,
        "rows": rows,
        "sizes": {k: list(v) for k, v in SIZES.items()},
        "versus_fastest_right_peer": _versus(rows),
    }
    return Section("gradcheck_compare", _TITLE, payload, _markdown(rows, cap))


def _fastest_right_peer(rows: list[dict[str, Any]], size: str, cand: str) -> dict[str, Any] | None:
    right = [
        r
        for r in rows
        if r["size"] == size and r["candidate"] == cand and r["checker"] in PEERS and r["right"]
    ]
    return min(right, key=lambda r: r["seconds"], default=None)


def _labels(rows: list[dict[str, Any]]) -> list[str]:
    """The audit's runs that ``rows`` hold (``AUDIT_RUNS``' labels, in its order)."""
    found = {r["checker"] for r in rows}
    return [label for label in AUDIT_RUNS.values() if f"this audit, {label}" in found]


def _versus(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell (size, candidate): the audit's verdict and times against the fastest right peer."""
    out = []
    labels = _labels(rows)
    for size in dict.fromkeys(r["size"] for r in rows):
        for cand in CANDIDATES:
            peer = _fastest_right_peer(rows, size, cand)
            cell: dict[str, Any] = {"size": size, "candidate": cand}
            cell["peer"] = None if peer is None else peer["checker"]
            cell["peer_s"] = None if peer is None else peer["seconds"]
            for label in labels:
                audit = next(
                    r
                    for r in rows
                    if r["size"] == size
                    and r["candidate"] == cand
                    and r["checker"] == f"this audit, {label}"
                )
                cell[f"audit_{label}_s"] = audit["seconds"]
                cell[f"audit_{label}_right"] = audit["right"]
                cell[f"audit_{label}_not_slower"] = audit["right"] and (
                    peer is None or audit["seconds"] <= peer["seconds"]
                )
            out.append(cell)
    return out


_TITLE = "This audit against torch.autograd.gradcheck and jax.test_util.check_grads"


def _cell(row: dict[str, Any], cap: float) -> str:
    outcome = row["outcome"]
    if outcome == "timeout":
        return f"did not finish in {cap:.0f} s"
    if outcome == "not run":
        return "not run (cap)"
    mark = "right" if row["right"] else "WRONG"
    return f"{outcome} ({mark}), {fmt_time(row['seconds'])}, {row['steps']:.0f} steps"


def _markdown(rows: list[dict[str, Any]], cap: float) -> str:
    parts = []
    checkers = list(dict.fromkeys(r["checker"] for r in rows))
    versus = _versus(rows)
    labels = _labels(rows)
    for size_name in dict.fromkeys(r["size"] for r in rows):
        these = [r for r in rows if r["size"] == size_name]
        ratio_head = f"audit / peer ({', '.join(labels)})"
        header = ["candidate", *checkers, "fastest right peer", ratio_head]
        table = []
        for cand in CANDIDATES:
            cells = [
                _cell(next(r for r in these if r["checker"] == c and r["candidate"] == cand), cap)
                for c in checkers
            ]
            cell = next(v for v in versus if v["size"] == size_name and v["candidate"] == cand)
            peer = "none" if cell["peer"] is None else f"{cell['peer']}, {fmt_time(cell['peer_s'])}"
            ratio = "-"
            if cell["peer_s"]:
                ratio = ", ".join(
                    f"{cell[f'audit_{label}_s'] / cell['peer_s']:.2g}" for label in labels
                )
            table.append([cand, *cells, peer, ratio])
        shape = "x".join(str(s) for s in SIZES[size_name])
        parts.append(f"**{size_name}** (m, n, h, k = {shape})\n\n" + markdown_table(header, table))
    for label in labels:
        right = sum(v[f"audit_{label}_right"] for v in versus)
        fast = sum(v[f"audit_{label}_not_slower"] for v in versus)
        parts.append(
            f"The audit ({label}): right on {right} of {len(versus)} cells, right and at most "
            f"as slow as the fastest right peer on {fast} of {len(versus)}."
        )
    return "\n\n".join(parts)


def gradcheck_compare_figure(payload: dict[str, Any], path: Path) -> Path:
    """Per size and candidate: the audit's time (each of its runs in the payload: cold from
    cache, warm, quick and warm) against the fastest right peer's (log scale); a cross where the
    audit's verdict was wrong or did not come."""
    import matplotlib.pyplot as plt

    from benchmarks._figures import save_figure  # (selects the Agg backend)

    versus = payload["versus_fastest_right_peer"]
    sizes = list(dict.fromkeys(v["size"] for v in versus))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.4), sharey=True)
    series: list[tuple[str, str | None, str]] = [
        (f"audit_{label}_s", f"audit_{label}_right", f"this audit, {label}")
        for label in AUDIT_RUNS.values()
        if f"audit_{label}_s" in versus[0]
    ]
    series.append(("peer_s", None, "fastest right peer"))
    width = 0.8 / len(series)
    for ax, size_name in zip(np.atleast_1d(axes), sizes, strict=True):
        cells = [v for v in versus if v["size"] == size_name]
        x = np.arange(len(cells))
        for j, (key, right_key, label) in enumerate(series):
            seconds = [c[key] if c[key] is not None else np.nan for c in cells]
            ok = [True if right_key is None else c[right_key] for c in cells]
            xs = x + (j - (len(series) - 1) / 2) * width
            color = "C7" if right_key is None else f"C{j}"  # the peer grey: red marks wrong
            ax.bar(xs, seconds, width=width, label=label, color=color)
            for xi, s, good in zip(xs, seconds, ok, strict=True):
                if not good:
                    ax.scatter(xi, s if np.isfinite(s) else payload["cap_s"], marker="x", c="r")
        names = [c["candidate"].split(") ")[0] + ")" for c in cells]
        ax.set_xticks(x, names)
        ax.set_yscale("log")
        ax.axhline(payload["cap_s"], color="grey", lw=0.8, ls="--")
        ax.set_title(f"{size_name} {tuple(payload['sizes'][size_name])}", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("seconds (dashed: cap; red x: wrong or no verdict)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("The audit against the fastest right peer, candidates (a)-(f)", fontsize=10)
    return save_figure(fig, path, laid_out=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--audit-child":
        print(json.dumps(_audit_child(sys.argv[2], sys.argv[4:], float(sys.argv[3]))))
    else:
        print(run(quick="--quick" in sys.argv[1:]).markdown)
