"""Section 2: what the full gradient costs as the network grows, backprop against the alternatives.

The source document's claim: backprop "calculate[s] the local gradients only once as compared
to calculating the same gradients for all different combinations of weights". Measured here on
the network at fixed m, n, k and hidden size h from 4 to 1024 (P = n h + h + h k + k parameters),
float64:

* ``forward``: one forward pass and the loss, ``cross_entropy(mlp_forward(params, x)[0], y)``;
* ``backprop``: ``mlp_loss_and_grads`` (one forward and one backward pass);
* ``finite differences``: central differences (J(t + d) - J(t - d)) / 2d, two forward passes
  per parameter, d = eps^(1/3) max(1, |t|), with the same forward as above; swept in ten
  chunks, seconds per parameter the median over chunks. Where a full sweep would take too long
  (``fd_cap``), a subset of parameters spread over all four arrays is swept and the time scaled
  by P / subset: those rows say "extrapolated";
* forward-mode JAX: ``jax.jit(jax.jacfwd(mlp_loss))``, one tangent per parameter, all at once.
  Its tangents need about P m h 16 bytes; where that passes ``JACFWD_BYTES``, the same
  Jacobian-vector products run one per basis direction (``jax.jvp`` under ``jax.lax.map`` in
  chunks) for a subset of directions (``fm_cap``), scaled by P / subset: "extrapolated".

numpy's BLAS runs on one thread in this section (``threadpoolctl``): the section is about how
costs scale, and a single thread keeps the small products from the thread hand-off costs that
dominate them on a shared 2-core machine. (Section 1 times with numpy's default threads.)

Both the finite-difference and the forward-mode gradients are compared with backprop's (max
relative error to the largest |gradient|), so the timings are of computations that work; central
differences err where a step of d crosses a ReLU kink of some sample. Slopes are least-squares
fits of log time on log P.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

import manual_bp as mb
from benchmarks._report import Section, fmt, fmt_time, markdown_table
from benchmarks._timing import interleaved, paired_ratio

__all__ = ["HIDDEN", "fit_slope", "run"]

M, N, K = 128, 64, 10
HIDDEN = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
JACFWD_BYTES = 1024**3
CHUNK_BYTES = 512 * 1024**2


def n_params(h: int) -> int:
    return N * h + h + h * K + K


def fit_slope(sizes: list[float], times: list[float]) -> float:
    """Least-squares slope of log(time) against log(size): time ~ size ** slope."""
    if len(sizes) < 2:
        return math.nan
    slope, _ = np.polyfit(np.log(sizes), np.log(times), 1)
    return float(slope)


def _problem(h: int) -> tuple[mb.MLPParams, NDArray[Any], NDArray[Any]]:
    rng = np.random.default_rng(h)
    params = mb.init_mlp(rng, N, h, K)
    params = params._replace(b1=0.1 * rng.standard_normal(h), b2=0.1 * rng.standard_normal(K))
    x = rng.standard_normal((M, N))
    y = mb.one_hot(rng.integers(0, K, M), K)
    return params, x, y


def _loss(params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any]) -> float:
    return float(mb.cross_entropy(mb.mlp_forward(params, x)[0], y))


def finite_difference_gradient(
    params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any], indices: NDArray[np.intp]
) -> NDArray[np.float64]:
    """Central differences of the loss at the given flat parameter indices (W1, b1, W2, b2
    raveled and concatenated); two forward passes per index."""
    arrays = [np.array(a, dtype=np.float64) for a in params]  # copies, perturbed in place
    flats = [a.reshape(-1) for a in arrays]
    starts = np.cumsum([0] + [f.size for f in flats])
    trial = mb.MLPParams(*arrays)
    out = np.empty(len(indices))
    eps = np.finfo(np.float64).eps ** (1 / 3)
    for j, i in enumerate(indices):
        a = int(np.searchsorted(starts, i, side="right")) - 1
        flat, pos = flats[a], int(i - starts[a])
        value = flat[pos]
        d = eps * max(1.0, abs(value))
        flat[pos] = value + d
        up = _loss(trial, x, y)
        flat[pos] = value - d
        down = _loss(trial, x, y)
        flat[pos] = value
        out[j] = (up - down) / (2 * d)
    return out


def _timed_finite_differences(
    params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any], indices: NDArray[np.intp]
) -> tuple[NDArray[np.float64], float]:
    """The finite-difference gradient at ``indices`` and its median seconds per parameter.

    The indices are swept in ten chunks, each timed; the median over chunks of seconds per
    parameter resists the load spikes of a shared machine as the other medians here do.
    """
    values, per_param = [], []
    for chunk in np.array_split(indices, min(10, len(indices))):
        start = time.perf_counter()
        values.append(finite_difference_gradient(params, x, y, chunk))
        per_param.append((time.perf_counter() - start) / len(chunk))
    return np.concatenate(values), float(np.median(per_param))


def _cheap_fns(
    params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any]
) -> dict[str, Callable[[], object]]:
    return {
        "forward": lambda: _loss(params, x, y),
        "backprop": lambda: mb.mlp_loss_and_grads(params, x, y),
    }


def _forward_mode(
    params: mb.MLPParams, x: NDArray[Any], y: NDArray[Any], cap: int
) -> tuple[Callable[[], Any], NDArray[np.intp], str]:
    """The forward-mode gradient and the flat indices it computes.

    ``jax.jit(jax.jacfwd(mlp_loss))`` (all P directions at once) when its tangents fit in
    ``JACFWD_BYTES``; otherwise one Jacobian-vector product per basis direction
    for ``cap`` directions spread over the parameters, in chunks (``jax.lax.map``), whose time
    the caller scales by P / cap.
    """
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from benchmarks._jax import mlp_loss

    jparams = jax.tree.map(jnp.asarray, params)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    h = params.W1.shape[1]
    p = n_params(h)
    if p * M * h * 16 <= JACFWD_BYTES:
        jac = jax.jit(jax.jacfwd(mlp_loss))

        def full() -> Any:
            grads = jax.block_until_ready(jac(jparams, jx, jy))  # type: ignore[no-untyped-call]
            return np.concatenate([np.asarray(g).reshape(-1) for g in grads])

        return full, np.arange(p), "jax.jacfwd"

    flat, unravel = ravel_pytree(jparams)
    indices = _spread(p, cap)
    batch = max(1, min(len(indices), int(CHUNK_BYTES // (M * h * 16 + p * 8))))

    def loss_flat(v: Any) -> Any:
        return mlp_loss(unravel(v), jx, jy)

    @jax.jit
    def directional(v: Any, idx: Any) -> Any:
        def one(i: Any) -> Any:
            return jax.jvp(loss_flat, (v,), (jnp.zeros_like(v).at[i].set(1.0),))[1]

        return jax.lax.map(one, idx, batch_size=batch)

    jidx = jnp.asarray(indices)
    return (
        (lambda: np.asarray(directional(flat, jidx).block_until_ready())),
        indices,
        f"jax.jvp per direction, chunks of {batch}",
    )


def _spread(p: int, count: int) -> NDArray[np.intp]:
    """``min(p, count)`` flat indices spread evenly over 0..p-1 (all four parameter arrays)."""
    return np.unique(np.linspace(0, p - 1, min(p, count)).round().astype(np.intp))


def _max_rel_error(approx: NDArray[Any], exact: NDArray[Any]) -> float:
    return float(np.max(np.abs(approx - exact)) / max(float(np.max(np.abs(exact))), 1e-300))


def run(*, quick: bool = False) -> Section:
    """Time forward, backprop, finite differences and forward-mode JAX at every hidden size."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]

    with threadpool_limits(limits=1, user_api="blas"):
        return _run(quick)


def _run(quick: bool) -> Section:
    repeats, sample_s = (3, 0.02) if quick else (7, 0.05)
    fd_cap, fm_cap = (1_000, 1_024) if quick else (4_000, 2_048)
    hidden = HIDDEN[:-1] if quick else HIDDEN
    rows: list[dict[str, Any]] = []
    for h in hidden:
        params, x, y = _problem(h)
        p = n_params(h)
        _, grads = mb.mlp_loss_and_grads(params, x, y)
        exact = np.concatenate([g.reshape(-1) for g in grads])

        cheap = interleaved(_cheap_fns(params, x, y), repeats=repeats, sample_s=sample_s)
        fm_fn, fm_indices, fm_method = _forward_mode(params, x, y, fm_cap)
        fm_error = _max_rel_error(fm_fn(), exact[fm_indices])  # also compiles
        fm = interleaved({"forward mode": fm_fn}, repeats=3, warmup=0)
        fm_time = fm["forward mode"].median * p / len(fm_indices)

        fd_indices = _spread(p, fd_cap)
        fd, fd_per_param = _timed_finite_differences(params, x, y, fd_indices)
        fd_time = fd_per_param * p
        fwd = cheap["forward"].median
        rows.append(
            {
                "h": h,
                "params": p,
                "forward_s": fwd,
                "backprop_s": cheap["backprop"].median,
                "backprop_over_forward": paired_ratio(cheap["backprop"], cheap["forward"]),
                "fd_s": fd_time,
                "fd_params_timed": len(fd_indices),
                "fd_over_forward": fd_time / fwd,
                "fd_max_rel_error": _max_rel_error(fd, exact[fd_indices]),
                "forward_mode_s": fm_time,
                "forward_mode_method": fm_method,
                "forward_mode_params_timed": len(fm_indices),
                "forward_mode_over_forward": fm_time / fwd,
                "forward_mode_max_rel_error": fm_error,
            }
        )
    slopes = _slopes(rows)
    payload = {
        "m": M,
        "n": N,
        "k": K,
        "dtype": "float64",
        "numpy_blas_threads": 1,
        "rows": rows,
        "slopes": slopes,
    }
    return Section("gradient_cost", "2. Cost vs parameter count", payload, _markdown(rows, slopes))


def _slopes(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    series = {
        "forward": "forward_s",
        "backprop": "backprop_s",
        "finite differences": "fd_s",
        "forward-mode JAX": "forward_mode_s",
        "backprop / forward": "backprop_over_forward",
        "finite differences / forward": "fd_over_forward",
        "forward-mode JAX / forward": "forward_mode_over_forward",
    }
    wide = [r for r in rows if r["h"] >= 64]
    return {
        name: {
            "all": fit_slope([r["params"] for r in rows], [r[key] for r in rows]),
            "h>=64": fit_slope([r["params"] for r in wide], [r[key] for r in wide]),
        }
        for name, key in series.items()
    }


def _extrapolated(timed: int, total: int) -> str:
    return "" if timed >= total else f" **extrapolated** from {timed} of {total}"


def _markdown(rows: list[dict[str, Any]], slopes: dict[str, dict[str, float]]) -> str:
    table = markdown_table(
        [
            "h",
            "params P",
            "forward",
            "backprop",
            "backprop / forward",
            "finite differences",
            "FD / forward",
            "FD max rel err",
            "forward-mode JAX",
            "FM / forward",
            "forward-mode method",
        ],
        [
            [
                str(r["h"]),
                str(r["params"]),
                fmt_time(r["forward_s"]),
                fmt_time(r["backprop_s"]),
                fmt(r["backprop_over_forward"]),
                fmt_time(r["fd_s"]) + _extrapolated(r["fd_params_timed"], r["params"]),
                fmt(r["fd_over_forward"], 0),
                f"{r['fd_max_rel_error']:.0e}",
                fmt_time(r["forward_mode_s"])
                + _extrapolated(r["forward_mode_params_timed"], r["params"]),
                fmt(r["forward_mode_over_forward"], 0),
                r["forward_mode_method"],
            ]
            for r in rows
        ],
    )
    slope_table = markdown_table(
        ["method", "slope, all h", "slope, h >= 64"],
        [[name, fmt(s["all"]), fmt(s["h>=64"])] for name, s in slopes.items()],
    )
    return "\n\n".join(
        [
            f"Full gradient at m = {M}, n = {N}, k = {K}, float64, numpy BLAS on 1 thread "
            "(medians; finite differences: median over ten chunks of the parameters swept)",
            table,
            "Fitted slopes of log time (and of log cost in forward passes) on log P: 0 is "
            "constant, 1 linear in P, 2 quadratic",
            slope_table,
        ]
    )
