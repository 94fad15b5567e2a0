"""Section 1: one SGD step of the network, manual_bp against jax.jit and torch autograd.

A step is forward, backward and update: ``params <- params - lr * dJ/dparams``. Each
implementation runs the step in a loop on its own copy of the parameters (the new parameters
feed the next call), all timed in turns in one run (``benchmarks._timing.interleaved``):

* ``manual_bp``: the plain reference, ``sgd_step(params, mlp_loss_and_grads(params, x, y)[1], lr)``;
* ``manual_bp fused``: ``manual_bp.fused.mlp_sgd_step_fused`` (same formulas, fewer temporaries);
* ``jax.jit``: ``jax.value_and_grad`` of ``benchmarks._jax.mlp_loss`` (jax.nn) plus the update,
  all under one ``jax.jit``;
* ``torch``: autograd on the same network (``F.cross_entropy`` with probability targets) and
  ``torch.optim.SGD``, ``torch.set_num_threads`` equal to numpy's BLAS threads;
* ``manual_bp fused, 1 BLAS thread``: the same with numpy's BLAS limited to one thread
  (``threadpoolctl``) for the call: on a shared machine two BLAS threads wait for each other;
* ``5 matmuls``: the five matrix products of a step alone in numpy (X W1, A1 W2, A1^T dZ2,
  dZ2 W2^T, X^T dZ1), the floor an implementation could reach;
* ``forward`` / ``backward``: ``mlp_forward`` and ``mlp_backward`` alone, for their ratio.

FLOPs counted: the five matrix products, 4 m n h + 6 m h k (elementwise work is not counted).
The matmul peak is a 2048 x 2048 product in numpy and in jax.jit, timed in turns with the
large step, per dtype; % of peak = step GFLOP/s / the faster of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

import manual_bp as mb
from benchmarks._report import Section, fmt, fmt_time, markdown_table
from benchmarks._timing import Timing, interleaved, paired_ratio
from manual_bp.fused import mlp_sgd_step_fused

__all__ = ["SIZES", "run", "step_flops"]

SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (32, 8, 16, 3),
    "mnist": (256, 784, 128, 10),
    "large": (2048, 784, 1024, 10),
}
"""(m, n, h, k) of issue 5."""

DTYPES = (np.float32, np.float64)
LR = 1e-3
PEAK_N = 2048

MANUAL, FUSED, JAX, TORCH, MATMULS = "manual_bp", "manual_bp fused", "jax.jit", "torch", "5 matmuls"
FUSED_1T = "manual_bp fused, 1 BLAS thread"
FORWARD, BACKWARD = "forward", "backward"
NP_PEAK, JAX_PEAK = "numpy matmul 2048", "jax matmul 2048"


def step_flops(m: int, n: int, h: int, k: int) -> int:
    """Floating-point operations of the step's five matrix products: 4 m n h + 6 m h k."""
    return 2 * m * n * h + 2 * m * h * k + 2 * m * h * k + 2 * m * h * k + 2 * m * n * h


def _numpy_threads() -> int:
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover
        import os

        return os.cpu_count() or 1
    blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return int(blas[0]) if blas else 1


def _problem(
    size: tuple[int, int, int, int], dtype: type
) -> tuple[mb.MLPParams, NDArray[Any], NDArray[Any]]:
    m, n, h, k = size
    rng = np.random.default_rng(0)
    params = mb.init_mlp(rng, n, h, k, dtype=dtype)
    x: NDArray[Any] = rng.standard_normal((m, n)).astype(dtype)
    y = mb.one_hot(rng.integers(0, k, m), k, dtype=dtype)
    return params, x, y


def _manual_steps(
    params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any]
) -> dict[str, Callable[[], object]]:
    state = {MANUAL: params, FUSED: params}

    def plain() -> None:
        _, grads = mb.mlp_loss_and_grads(state[MANUAL], x, y)
        state[MANUAL] = mb.sgd_step(state[MANUAL], grads, LR)

    def fused() -> None:
        _, state[FUSED] = mlp_sgd_step_fused(state[FUSED], x, y, LR)

    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped, unused-ignore]

    controller = ThreadpoolController()
    state[FUSED_1T] = params

    def fused_one_thread() -> None:
        with controller.limit(limits=1, user_api="blas"):
            _, state[FUSED_1T] = mlp_sgd_step_fused(state[FUSED_1T], x, y, LR)

    W1, _, W2, _ = params

    def matmuls() -> None:
        a1 = x @ W1
        z2 = a1 @ W2
        _ = a1.T @ z2
        dz1 = z2 @ W2.T
        _ = x.T @ dz1

    _, cache = mb.mlp_forward(params, x)
    return {
        MANUAL: plain,
        FUSED: fused,
        FUSED_1T: fused_one_thread,
        MATMULS: matmuls,
        FORWARD: lambda: mb.mlp_forward(params, x),
        BACKWARD: lambda: mb.mlp_backward(params, cache, y),
    }


def _jax_step(params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any]) -> Callable[[], object]:
    import jax
    import jax.numpy as jnp

    from benchmarks._jax import mlp_loss

    @jax.jit
    def step(p: Any, x: Any, y: Any) -> tuple[Any, Any]:
        loss, grads = jax.value_and_grad(mlp_loss)(p, x, y)
        return jax.tree.map(lambda a, g: a - LR * g, p, grads), loss

    state = {"p": jax.tree.map(jnp.asarray, params)}
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def run() -> None:
        state["p"], loss = step(state["p"], jx, jy)
        jax.block_until_ready((state["p"], loss))  # type: ignore[no-untyped-call]

    return run


def _torch_step(
    params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any]
) -> Callable[[], object] | None:
    try:
        import torch
        import torch.nn.functional as tf
    except ImportError:
        return None
    torch.set_num_threads(_numpy_threads())
    tensors = [torch.tensor(a, requires_grad=True) for a in params]
    W1, b1, W2, b2 = tensors
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(tensors, lr=LR)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        z2 = torch.relu(tx @ W1 + b1) @ W2 + b2
        loss = tf.cross_entropy(z2, ty)  # probability targets: -(1/m) sum y log softmax(z2)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()

    return run


def _peak_fns(dtype: type) -> dict[str, Callable[[], object]]:
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    a: NDArray[Any] = rng.standard_normal((PEAK_N, PEAK_N)).astype(dtype)
    b: NDArray[Any] = rng.standard_normal((PEAK_N, PEAK_N)).astype(dtype)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jmatmul = jax.jit(jnp.matmul)
    return {
        NP_PEAK: lambda: a @ b,
        JAX_PEAK: lambda: jmatmul(ja, jb).block_until_ready(),
    }


def _gflops(flops: float, t: Timing) -> float:
    return flops / t.median / 1e9


def run(*, quick: bool = False) -> Section:
    """Time every implementation at every size and dtype; return tables, verdicts, figure data."""
    repeats, sample_s = (5, 0.03) if quick else (9, 0.05)
    results: list[dict[str, Any]] = []
    peaks: dict[str, dict[str, float]] = {}
    for dtype in DTYPES:
        dname = np.dtype(dtype).name
        for size_name, size in SIZES.items():
            params, x, y = _problem(size, dtype)
            fns: dict[str, Callable[[], object]] = {
                **_manual_steps(params, x, y),
                JAX: _jax_step(params, x, y),
            }
            torch_fn = _torch_step(params, x, y)
            if torch_fn is not None:
                fns[TORCH] = torch_fn
            if size_name == "large":  # the peak, in turns with the step it is compared with
                fns.update(_peak_fns(dtype))
            timings = interleaved(fns, repeats=repeats, sample_s=sample_s)
            if size_name == "large":
                peaks[dname] = {
                    name: 2 * PEAK_N**3 / timings.pop(name).median / 1e9
                    for name in (NP_PEAK, JAX_PEAK)
                }
            flops = step_flops(*size)
            results.append(
                {
                    "size": size_name,
                    "m_n_h_k": list(size),
                    "dtype": dname,
                    "flops": flops,
                    "timings": {name: t.as_dict() for name, t in timings.items()},
                    "gflops": {name: _gflops(flops, t) for name, t in timings.items()},
                    "_timings": timings,
                }
            )
    for r in results:
        peak = max(peaks[r["dtype"]].values())
        r["peak_gflops"] = peak
        r["pct_peak"] = {name: 100 * g / peak for name, g in r["gflops"].items()}
        t = r.pop("_timings")
        r["ratios"] = {
            f"{impl} / {other}": paired_ratio(t[impl], t[other])
            for impl in (MANUAL, FUSED, FUSED_1T)
            for other in (JAX, TORCH)
            if other in t
        }
        r["vs_jax"] = {name: paired_ratio(t[name], t[JAX]) for name in t if name != JAX}
        r["bwd_over_fwd"] = paired_ratio(t[BACKWARD], t[FORWARD])
        r["elementwise_share"] = {
            impl: 1 - paired_ratio(t[MATMULS], t[impl]) for impl in (MANUAL, FUSED)
        }
    verdicts = _verdicts(results)
    payload = {"results": results, "peak_gflops": peaks, "verdicts": verdicts, "lr": LR}
    return Section("sgd_step", "1. One SGD step", payload, _markdown(results, peaks, verdicts))


def _verdicts(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(
        target: str, impl: str, r: dict[str, Any], value: float, limit: float, le: bool
    ) -> None:
        ok = value <= limit if le else value >= limit
        out.append(
            {
                "target": target,
                "impl": impl,
                "size": r["size"],
                "dtype": r["dtype"],
                "value": value,
                "limit": limit,
                "met": ok,
            }
        )

    for r in results:
        for impl in (MANUAL, FUSED):
            if r["size"] == "tiny":
                add("time / jax.jit <= 1.2", impl, r, r["ratios"][f"{impl} / {JAX}"], 1.2, True)
            else:
                add("time / jax.jit <= 1.0", impl, r, r["ratios"][f"{impl} / {JAX}"], 1.0, True)
                if f"{impl} / {TORCH}" in r["ratios"]:
                    add("time / torch <= 1.0", impl, r, r["ratios"][f"{impl} / {TORCH}"], 1.0, True)
            if r["size"] == "large":
                add("% of matmul peak >= 80", impl, r, r["pct_peak"][impl], 80.0, False)
        add("backward / forward <= 2.5", MANUAL, r, r["bwd_over_fwd"], 2.5, True)
    return out


def _markdown(
    results: list[dict[str, Any]],
    peaks: dict[str, dict[str, float]],
    verdicts: list[dict[str, Any]],
) -> str:
    impls = [MANUAL, FUSED, FUSED_1T, JAX, TORCH, MATMULS]
    rows = []
    for r in results:
        for impl in impls:
            if impl not in r["timings"]:
                continue
            ratios = r["ratios"]
            rows.append(
                [
                    r["size"],
                    r["dtype"],
                    impl,
                    fmt_time(r["timings"][impl]["median_s"]),
                    fmt(r["gflops"][impl], 1),
                    fmt(r["pct_peak"][impl], 0),
                    fmt(ratios.get(f"{impl} / {JAX}")),
                    fmt(ratios.get(f"{impl} / {TORCH}")),
                ]
            )
    step_table = markdown_table(
        ["size", "dtype", "implementation", "time", "GFLOP/s", "% peak", "/ jax.jit", "/ torch"],
        rows,
    )
    peak_table = markdown_table(
        ["dtype", NP_PEAK + " GFLOP/s", JAX_PEAK + " GFLOP/s"],
        [[d, fmt(p[NP_PEAK], 1), fmt(p[JAX_PEAK], 1)] for d, p in peaks.items()],
    )
    split_rows = [
        [
            r["size"],
            r["dtype"],
            fmt_time(r["timings"][FORWARD]["median_s"]),
            fmt_time(r["timings"][BACKWARD]["median_s"]),
            fmt(r["bwd_over_fwd"]),
            fmt(100 * r["elementwise_share"][MANUAL], 0),
            fmt(100 * r["elementwise_share"][FUSED], 0),
        ]
        for r in results
    ]
    split_table = markdown_table(
        [
            "size",
            "dtype",
            "forward",
            "backward",
            "bwd / fwd",
            "% of plain step outside the 5 matmuls",
            "% of fused step outside the 5 matmuls",
        ],
        split_rows,
    )
    verdict_table = markdown_table(
        ["target", "implementation", "size", "dtype", "measured", "met"],
        [
            [
                v["target"],
                v["impl"],
                v["size"],
                v["dtype"],
                fmt(v["value"]),
                "yes" if v["met"] else "**no**",
            ]
            for v in verdicts
        ],
    )
    return "\n\n".join(
        [
            "Step time (median), achieved GFLOP/s (five matmuls' flops), % of matmul peak, "
            "time ratios (< 1: manual_bp faster)",
            step_table,
            "Matmul peak measured in the same run (in turns with the large step)",
            peak_table,
            "manual_bp forward and backward alone (mlp_forward, mlp_backward); elementwise share "
            "= 1 - time(5 matmuls) / time(step)",
            split_table,
            "Targets",
            verdict_table,
        ]
    )
