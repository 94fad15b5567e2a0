"""PNG figures of the three sections (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

__all__ = [
    "gradient_cost_figure",
    "save_figure",
    "sgd_step_figure",
    "verification_speed_figure",
]

COLORS = {
    "manual_bp": "#1f77b4",
    "manual_bp fused": "#17becf",
    "manual_bp fused, 1 BLAS thread": "#9467bd",
    "jax.jit": "#ff7f0e",
    "torch": "#d62728",
    "5 matmuls": "#7f7f7f",
}


def save_figure(fig: Any, path: Path, *, laid_out: bool = False) -> Path:
    """Write ``fig`` to ``path`` as a 110 dpi PNG (its folder made) and close it; returns
    ``path``. ``laid_out``: ``tight_layout`` first and the whole canvas saved, else the saved
    area cropped to what is drawn (``bbox_inches="tight"``)."""
    if laid_out:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches=None if laid_out else "tight")
    plt.close(fig)
    return path


def sgd_step_figure(payload: dict[str, Any], path: Path) -> Path:
    """Left: step time relative to jax.jit per size and dtype. Right: % of matmul peak."""
    results = payload["results"]
    impls = [i for i in COLORS if any(i in r["timings"] for r in results)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    x = np.arange(len(results))
    others = [i for i in impls if i != "jax.jit"]
    width = 0.8 / len(others)
    for i, impl in enumerate(others):
        values = [r.get("vs_jax", {}).get(impl, np.nan) for r in results]
        offset = (i - (len(others) - 1) / 2) * width
        left.bar(x + offset, values, width, color=COLORS[impl])
    left.axhline(1.0, color=COLORS["jax.jit"], lw=2)
    left.set_yscale("log")
    left.set_xticks(x, [f"{r['size']}\n{r['dtype']}" for r in results])
    left.set_ylabel("step time / jax.jit step time (log; orange line: jax.jit)")
    left.set_title("One SGD step, time relative to jax.jit (below 1: faster)")
    left.grid(axis="y", which="both", alpha=0.3)

    shown = [r for r in results if r["size"] != "tiny"]
    xs = np.arange(len(shown))
    width = 0.8 / len(impls)
    top = 100.0
    for i, impl in enumerate(impls):
        values = [r["pct_peak"].get(impl, np.nan) for r in shown]
        top = max(top, *(v for v in values if np.isfinite(v)))
        offset = (i - (len(impls) - 1) / 2) * width
        right.bar(xs + offset, values, width, color=COLORS[impl])
    right.axhline(80, color="black", ls="--", lw=1)
    right.text(xs[-1] + 0.45, 81, "target 80% (large)", ha="right", va="bottom", fontsize=8)
    right.set_xticks(xs, [f"{r['size']}\n{r['dtype']}" for r in shown])
    right.set_ylabel("% of matmul peak (2048 x 2048, same run)")
    right.set_ylim(0, top * 1.08)
    right.set_title("GFLOP/s of the five matmuls' flops, as % of peak")
    right.grid(axis="y", alpha=0.3)
    handles = [Patch(color=COLORS[i]) for i in impls]
    fig.legend(handles, impls, loc="lower center", ncol=len(impls), fontsize=9, frameon=False)
    fig.subplots_adjust(bottom=0.2, wspace=0.25)
    return save_figure(fig, path)


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
    return save_figure(fig, path)


def verification_speed_figure(payload: dict[str, Any], path: Path) -> Path:
    """Horizontal bars: examples/s of each measurement, generation rates in grey."""
    rows = [
        r for r in payload["rows"] if r["examples_per_s"] is not None and r["fraction"] is not None
    ]
    target = float(payload.get("target", 0.5))
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    colors = [
        "#bbbbbb" if r["fraction"] == 1.0 else ("#2ca02c" if r["fraction"] >= target else "#d62728")
        for r in rows
    ]
    ax.barh(y, [r["examples_per_s"] for r in rows], color=colors)
    for yi, r in zip(y, rows, strict=True):
        note = "" if r["fraction"] == 1.0 else f"  {r['fraction']:.2f} of generation"
        ax.text(r["examples_per_s"], yi, f" {r['examples_per_s']:.0f}/s{note}", va="center")
    ax.set_yticks(y, [_wrap(r["what"]) for r in rows], fontsize=8)
    ax.set_xlabel("examples per second; grey: generating the problems alone")
    ax.set_title(f"Verification throughput (green: at least {target} of the generation rate)")
    ax.set_xlim(0, max(r["examples_per_s"] for r in rows) * 1.5)
    ax.grid(axis="x", which="both", alpha=0.3)
    return save_figure(fig, path)


def _wrap(text: str, width: int = 60) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])
