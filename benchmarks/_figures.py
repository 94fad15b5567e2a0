"""PNG figures of the three sections (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["gradient_cost_figure", "sgd_step_figure", "verification_speed_figure"]

COLORS = {
    "manual_bp": "#1f77b4",
    "manual_bp fused": "#17becf",
    "manual_bp fused, 1 BLAS thread": "#9467bd",
    "jax.jit": "#ff7f0e",
    "torch": "#d62728",
    "5 matmuls": "#7f7f7f",
}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def sgd_step_figure(payload: dict[str, Any], path: Path) -> Path:
    """Left: step time relative to jax.jit per size and dtype. Right: % of matmul peak."""
    results = payload["results"]
    labels = [f"{r['size']}\n{r['dtype']}" for r in results]
    impls = ["manual_bp", "manual_bp fused", "manual_bp fused, 1 BLAS thread", "torch", "5 matmuls"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    x = np.arange(len(results))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        values = [
            r["timings"][impl]["median_s"] / r["timings"]["jax.jit"]["median_s"]
            if impl in r["timings"]
            else np.nan
            for r in results
        ]
        offset = (i - (len(impls) - 1) / 2) * width
        left.bar(x + offset, values, width, label=impl, color=COLORS[impl])
    left.axhline(1.0, color=COLORS["jax.jit"], lw=1.5, label="jax.jit = 1")
    left.set_yscale("log")
    left.set_xticks(x, labels)
    left.set_ylabel("step time / jax.jit step time (log)")
    left.set_title("One SGD step: time relative to jax.jit (lower is faster)")
    left.legend(fontsize=8, loc="upper right")
    left.grid(axis="y", which="both", alpha=0.3)

    shown = [r for r in results if r["size"] != "tiny"]
    xs = np.arange(len(shown))
    impls_peak = [*impls[:3], "jax.jit", *impls[3:]]
    width = 0.8 / len(impls_peak)
    for i, impl in enumerate(impls_peak):
        values = [r["pct_peak"].get(impl, np.nan) for r in shown]
        offset = (i - (len(impls_peak) - 1) / 2) * width
        right.bar(xs + offset, values, width, label=impl, color=COLORS[impl])
    right.axhline(80, color="black", ls="--", lw=1, label="target 80% (large)")
    right.set_xticks(xs, [f"{r['size']}\n{r['dtype']}" for r in shown])
    right.set_ylabel("% of matmul peak (2048 x 2048, same run)")
    top = max([110.0, *(v for r in shown for v in r["pct_peak"].values() if np.isfinite(v))])
    right.set_ylim(0, top * 1.08)
    right.set_title("Achieved GFLOP/s of the five matmuls' flops, % of peak")
    right.legend(fontsize=8, loc="upper left", ncol=2)
    right.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def gradient_cost_figure(payload: dict[str, Any], path: Path) -> Path:
    """Left: time of the full gradient vs P, log-log. Right: the same in forward passes."""
    rows = payload["rows"]
    p = np.array([r["params"] for r in rows], dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    series = [
        ("forward", "forward_s", None, "#7f7f7f", "o"),
        ("backprop (mlp_loss_and_grads)", "backprop_s", None, "#1f77b4", "o"),
        ("central finite differences", "fd_s", "fd_params_timed", "#d62728", "s"),
        ("forward-mode JAX", "forward_mode_s", "forward_mode_params_timed", "#ff7f0e", "^"),
    ]
    for label, key, timed, color, marker in series:
        t = np.array([r[key] for r in rows])
        left.plot(p, t, color=color, marker=marker, label=label)
        if timed is not None:
            extra = np.array([r[timed] < r["params"] for r in rows])
            if extra.any():
                left.scatter(
                    p[extra], t[extra], s=90, facecolors="white", edgecolors=color, zorder=3
                )
    left.scatter([], [], s=90, facecolors="white", edgecolors="black", label="extrapolated")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("parameters P (hidden size 4 to 1024)")
    left.set_ylabel("seconds for the full gradient (log)")
    left.set_title(f"Gradient cost, m={payload['m']}, n={payload['n']}, k={payload['k']}, float64")
    left.legend(fontsize=8)
    left.grid(which="both", alpha=0.3)

    for label, key, color, marker in [
        ("backprop / forward", "backprop_over_forward", "#1f77b4", "o"),
        ("finite differences / forward", "fd_over_forward", "#d62728", "s"),
        ("forward mode / forward", "forward_mode_over_forward", "#ff7f0e", "^"),
    ]:
        right.plot(p, [r[key] for r in rows], color=color, marker=marker, label=label)
    right.plot(p, 2 * p, color="black", ls="--", lw=1, label="2 P (two passes per parameter)")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("parameters P")
    right.set_ylabel("cost in forward passes (log)")
    right.set_title("Backprop stays a small multiple of one forward pass")
    right.legend(fontsize=8)
    right.grid(which="both", alpha=0.3)
    return _save(fig, path)


def verification_speed_figure(payload: dict[str, Any], path: Path) -> Path:
    """Horizontal bars: examples/s of each measurement, generation rates in grey."""
    rows = [
        r for r in payload["rows"] if r["examples_per_s"] is not None and r["fraction"] is not None
    ]
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    colors = [
        "#bbbbbb" if r["fraction"] == 1.0 else ("#2ca02c" if r["fraction"] >= 0.5 else "#d62728")
        for r in rows
    ]
    ax.barh(y, [r["examples_per_s"] for r in rows], color=colors)
    for yi, r in zip(y, rows, strict=True):
        note = "" if r["fraction"] == 1.0 else f"  {r['fraction']:.2f} of generation"
        ax.text(r["examples_per_s"], yi, f" {r['examples_per_s']:.0f}/s{note}", va="center")
    ax.set_yticks(y, [_wrap(r["what"]) for r in rows], fontsize=8)
    ax.set_xlabel("examples per second; grey: generating the problems alone")
    ax.set_title("Verification throughput (green: at least 0.5 of the generation rate)")
    ax.set_xlim(0, max(r["examples_per_s"] for r in rows) * 1.5)
    ax.grid(axis="x", which="both", alpha=0.3)
    return _save(fig, path)


def _wrap(text: str, width: int = 60) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])
