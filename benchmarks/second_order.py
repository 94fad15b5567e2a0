"""Second order: checkers of Hessian-vector products side by side, and what an HVP costs.

Part 1, verdicts. Each checker judges three Hessian-vector products of the source network
(the parameters are differentiated; one concrete input and one direction v per size, from
``benchmarks.sgd_step.SIZES``, tiny and mnist):

(a) correct: ``manual_bp.mlp_hvp``;
(b) Gauss-Newton returned for H: ``manual_bp.mlp_gnvp`` (right where the network's own curvature
    vanishes, wrong elsewhere);
(c) a cross term on one side only: H v's W2 and b2 blocks, but the W1 and b1 blocks of G v (the
    curvature between the layers reaches W2 and not W1: an operator that is not symmetric).

Checkers: ``verification.audit_hvp`` on the input and v; ``torch.autograd.gradgradcheck``
(default and ``fast_mode=True``) and ``jax.test_util.check_grads(order=2, modes=("fwd",))``, each
through the hook its library has for a hand-written second derivative: in torch, a loss Function
whose backward is a gradient Function whose own backward is the candidate (the VJP of the
gradient is H times the cotangent, H being symmetric); in JAX, a ``custom_jvp`` loss whose
tangent is <gradient, t>, the gradient a ``custom_jvp`` whose tangent is the candidate (forward
mode only: a ``pure_callback`` cannot be transposed). A check still running after the cap is
stopped. "steps" divides by one gradient step of ``manual_bp`` at that size.

Part 2, cost. The hand HVP and GNVP beside one gradient (forward and backward,
``mlp_loss_and_grads``) and JAX's forward-over-reverse HVP (``jax.jit`` of ``jax.jvp`` of
``jax.grad``) at every size of ``SIZES``, in float64 and float32, timed in turns
(``benchmarks._timing.interleaved``, median of the rounds; ratios paired within rounds).

    python -m benchmarks --only second_order [--quick]
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import manual_bp as mb
from benchmarks._report import Section, fmt, fmt_time, markdown_table
from benchmarks._timing import interleaved, paired_ratio
from benchmarks.gradcheck_compare import _one, draw_problem
from benchmarks.sgd_step import SIZES

__all__ = ["CANDIDATES", "CHECKERS", "run", "second_order_figure"]

Array = NDArray[Any]
Problem = tuple[mb.MLPParams, Array, Array, mb.MLPParams]
Hvp = Callable[[mb.MLPParams, Array, Array, mb.MLPParams], mb.MLPParams]
CHECK_SIZES = ("tiny", "mnist")


def _one_sided(params: mb.MLPParams, x: Array, y: Array, v: mb.MLPParams) -> mb.MLPParams:
    h, g = mb.mlp_hvp(params, x, y, v), mb.mlp_gnvp(params, x, y, v)
    return mb.MLPParams(g.W1, g.b1, h.W2, h.b2)


CANDIDATES: dict[str, tuple[Hvp, bool]] = {
    "(a) correct": (mb.mlp_hvp, True),
    "(b) Gauss-Newton for H": (mb.mlp_gnvp, False),
    "(c) cross term one side": (_one_sided, False),
}
"""name -> (Hessian-vector product, whether it is correct)."""


def _problem(size: tuple[int, int, int, int], dtype: Any = np.float64) -> Problem:
    rng = np.random.default_rng(0)
    params, x, y = draw_problem(rng, size)  # then v, from the same stream
    v = mb.MLPParams(*(rng.standard_normal(np.shape(p)) for p in params))
    cast = [mb.MLPParams(*(np.asarray(a).astype(dtype) for a in t)) for t in (params, v)]
    return cast[0], x.astype(dtype), y.astype(dtype), cast[1]


# --- the checkers: each returns True when it passes the candidate ----------------------------


def _audit(hvp: Hvp, problem: Problem) -> bool:
    from verification import audit_hvp, reference

    params, x, y, v = problem
    return audit_hvp(hvp, reference.mlp_loss, (params, x, y), direction=v, seed=0).passed


def _torch_loss(hvp: Hvp, x: Array, y: Array) -> Any:
    """A torch loss of the four parameters whose gradient is manual_bp's and whose second
    derivative is ``hvp``."""
    import torch

    def params_of(tensors: Any) -> mb.MLPParams:
        return mb.MLPParams(*(t.detach().numpy() for t in tensors))

    class Gradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *leaves: Any) -> Any:
            ctx.save_for_backward(*leaves)
            grads = mb.mlp_loss_and_grads(params_of(leaves), x, y)[1]
            return tuple(torch.from_numpy(np.ascontiguousarray(g)) for g in grads)

        @staticmethod
        def backward(ctx: Any, *cotangents: Any) -> Any:
            v = params_of(cotangents)
            return tuple(
                torch.from_numpy(np.ascontiguousarray(r))
                for r in hvp(params_of(ctx.saved_tensors), x, y, v)
            )

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *leaves: Any) -> Any:
            ctx.save_for_backward(*leaves)
            return torch.tensor(
                float(mb.mlp_loss_and_grads(params_of(leaves), x, y)[0]), dtype=leaves[0].dtype
            )

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            return tuple(g * grad_output for g in Gradient.apply(*ctx.saved_tensors))  # type: ignore[no-untyped-call]

    return Loss.apply


def _gradgradcheck(fast: bool) -> Callable[[Hvp, Problem], bool]:
    def check(hvp: Hvp, problem: Problem) -> bool:
        import torch

        params, x, y, _ = problem
        leaves = tuple(torch.from_numpy(np.array(p)).requires_grad_(True) for p in params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(
                torch.autograd.gradgradcheck(
                    _torch_loss(hvp, x, y), leaves, raise_exception=False, fast_mode=fast
                )
            )

    return check


def _check_grads(hvp: Hvp, problem: Problem) -> bool:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    params, x, y, _ = problem
    shapes = tuple(
        jax.ShapeDtypeStruct(p.shape, p.dtype)  # type: ignore[no-untyped-call]
        for p in params
    )

    def numpy_grad(*leaves: Any) -> tuple[Array, ...]:
        grads = mb.mlp_loss_and_grads(mb.MLPParams(*(np.asarray(a) for a in leaves)), x, y)[1]
        return tuple(np.asarray(g) for g in grads)

    def numpy_hvp(*leaves_and_tangents: Any) -> tuple[Array, ...]:
        half = len(leaves_and_tangents) // 2
        p, t = (mb.MLPParams(*(np.asarray(a) for a in part)) for part in
                (leaves_and_tangents[:half], leaves_and_tangents[half:]))  # fmt: skip
        return tuple(np.asarray(r) for r in hvp(p, x, y, t))

    @jax.custom_jvp
    def gradient(*leaves: Any) -> Any:
        return jax.pure_callback(numpy_grad, shapes, *leaves)

    @gradient.defjvp
    def gradient_jvp(primals: Any, tangents: Any) -> Any:
        return gradient(*primals), jax.pure_callback(numpy_hvp, shapes, *primals, *tangents)

    @jax.custom_jvp
    def loss(*leaves: Any) -> Any:
        from verification import reference

        return reference.mlp_loss(mb.MLPParams(*leaves), x, y)

    @loss.defjvp
    def loss_jvp(primals: Any, tangents: Any) -> Any:
        g = gradient(*primals)
        return loss(*primals), sum(jnp.vdot(a, t) for a, t in zip(g, tangents, strict=True))

    try:
        check_grads(  # type: ignore[no-untyped-call]
            loss, tuple(jnp.asarray(p) for p in params), order=2, modes=("fwd",)
        )
    except AssertionError:
        return False
    return True


CHECKERS: dict[str, Callable[[Hvp, Problem], bool]] = {
    "audit_hvp": _audit,
    "gradgradcheck": _gradgradcheck(fast=False),
    "gradgradcheck fast_mode": _gradgradcheck(fast=True),
    "check_grads order=2 fwd": _check_grads,
}


def _gradient_step(problem: Problem) -> float:
    params, x, y, _ = problem
    times = []
    for _ in range(3):
        start = time.perf_counter()
        mb.mlp_loss_and_grads(params, x, y)
        times.append(time.perf_counter() - start)
    return min(times)


def _verdicts(cap: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size_name in CHECK_SIZES:
        problem = _problem(SIZES[size_name])
        step = _gradient_step(problem)
        for checker_name, checker in CHECKERS.items():
            stopped = False
            for cand_name, (hvp, correct) in CANDIDATES.items():
                if stopped:
                    outcome, seconds = "not run", float("nan")
                else:
                    outcome, seconds = _one(checker, hvp, problem, cap)  # type: ignore[arg-type]
                    stopped = outcome == "timeout" and correct  # as slow on the others
                rows.append(
                    {
                        "size": size_name,
                        "checker": checker_name,
                        "candidate": cand_name,
                        "correct": correct,
                        "outcome": outcome,
                        "right": outcome == ("pass" if correct else "FAIL"),
                        "seconds": seconds,
                        "gradient_step_s": step,
                        "steps": seconds / step,
                    }
                )
                print(
                    f"  {size_name} {checker_name} {cand_name}: {outcome} {seconds:.2f} s",
                    flush=True,
                )
    return rows


def _jax_hvp(problem: Problem) -> Callable[[], object]:
    import jax
    import jax.numpy as jnp

    from benchmarks._jax import mlp_loss

    @jax.jit
    def hvp(p: Any, x: Any, y: Any, v: Any) -> Any:
        return jax.jvp(lambda q: jax.grad(mlp_loss)(q, x, y), (p,), (v,))[1]

    params, x, y, v = (jax.tree.map(jnp.asarray, a) for a in problem)

    def run() -> None:
        jax.block_until_ready(hvp(params, x, y, v))  # type: ignore[no-untyped-call]

    return run


def _costs(repeats: int, sample_s: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for dtype in (np.float64, np.float32):
        for size_name, size in SIZES.items():
            params, x, y, v = problem = _problem(size, dtype)
            fns: dict[str, Callable[[], object]] = {
                "gradient": functools.partial(mb.mlp_loss_and_grads, params, x, y),
                "hand HVP": functools.partial(mb.mlp_hvp, params, x, y, v),
                "hand GNVP": functools.partial(mb.mlp_gnvp, params, x, y, v),
                "jax HVP": _jax_hvp(problem),
            }
            timings = interleaved(fns, repeats=repeats, sample_s=sample_s)
            base = timings["gradient"]
            for name, t in timings.items():
                rows.append(
                    {
                        "dtype": np.dtype(dtype).name,
                        "size": size_name,
                        "what": name,
                        **t.as_dict(),
                        "gradient_steps": paired_ratio(t, base),
                        "vs_jax_hvp": paired_ratio(t, timings["jax HVP"]),
                    }
                )
            print(f"  cost {size_name} {np.dtype(dtype).name}: done", flush=True)
    return rows


def run(*, quick: bool = False) -> Section:
    """Both parts; the markdown tables and the payload."""
    import jax.test_util  # noqa: F401  (imported before any time cap: an import cut short by
    import torch  # noqa: F401  the cap leaves a half-initialised module behind)

    cap = 10.0 if quick else 30.0
    verdicts = _verdicts(cap)
    costs = _costs(repeats=3 if quick else 7, sample_s=0.02 if quick else 0.05)
    payload = {"cap_s": cap, "verdicts": verdicts, "costs": costs,
               "sizes": {k: list(v) for k, v in SIZES.items()}}  # fmt: skip
    return Section("second_order", _TITLE, payload, _markdown(verdicts, costs, cap))


_TITLE = "Second order: audit_hvp against gradgradcheck and check_grads(order=2); HVP cost"


def _cell(row: dict[str, Any], cap: float) -> str:
    if row["outcome"] == "timeout":
        return f"did not finish in {cap:.0f} s"
    if row["outcome"] == "not run":
        return "not run (cap)"
    mark = "right" if row["right"] else "WRONG"
    return f"{row['outcome']} ({mark}), {fmt_time(row['seconds'])}, {row['steps']:.0f} steps"


def _markdown(verdicts: list[dict[str, Any]], costs: list[dict[str, Any]], cap: float) -> str:
    parts = []
    for size_name in CHECK_SIZES:
        these = [r for r in verdicts if r["size"] == size_name]
        table = [
            [cand, *(_cell(next(r for r in these if r["checker"] == c and r["candidate"] == cand), cap)
                     for c in CHECKERS)]
            for cand in CANDIDATES
        ]  # fmt: skip
        shape = "x".join(str(s) for s in SIZES[size_name])
        parts.append(
            f"**{size_name}** (m, n, h, k = {shape}); steps = seconds / one gradient step\n\n"
            + markdown_table(["candidate", *CHECKERS], table)
        )
    header = ["dtype", "size", "gradient", "hand HVP", "hand GNVP", "jax HVP",
              "hand HVP / gradient", "hand HVP / jax HVP"]  # fmt: skip
    rows = []
    for dtype in ("float64", "float32"):
        for size_name in SIZES:
            by = {r["what"]: r for r in costs if r["dtype"] == dtype and r["size"] == size_name}
            rows.append([
                dtype, size_name, *(fmt_time(by[w]["median_s"]) for w in
                                    ("gradient", "hand HVP", "hand GNVP", "jax HVP")),
                fmt(by["hand HVP"]["gradient_steps"]), fmt(by["hand HVP"]["vs_jax_hvp"]),
            ])  # fmt: skip
    parts.append("**Cost** (median per call, timed in turns)\n\n" + markdown_table(header, rows))
    return "\n\n".join(parts)


def second_order_figure(payload: dict[str, Any], path: Path) -> Path:
    """The hand HVP, GNVP and JAX's HVP in gradient steps, per size and dtype."""
    import matplotlib.pyplot as plt

    from benchmarks._figures import save_figure  # (selects the Agg backend)

    costs = payload["costs"]
    sizes = list(payload["sizes"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, dtype in zip(axes, ("float64", "float32"), strict=True):
        for j, what in enumerate(("hand HVP", "hand GNVP", "jax HVP")):
            values = [next(r["gradient_steps"] for r in costs if r["dtype"] == dtype
                           and r["size"] == s and r["what"] == what) for s in sizes]  # fmt: skip
            ax.bar(np.arange(len(sizes)) + (j - 1) * 0.27, values, width=0.27, label=what)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_title(dtype, fontsize=9)
    axes[0].set_ylabel("time / one gradient step (dashed: 1)")
    axes[0].legend(fontsize=8)
    return save_figure(fig, path, laid_out=True)
