"""The measurements behind the low-precision rule's FACTOR (``verification.auditing._lowprec``).

For random inputs of the seed network in float16 and bfloat16 (shapes 1 to 64; values up to
8 in float16, up to 1000 in bfloat16, each array drawing its own bound), every candidate's
error against the float64 oracle is divided, leaf by leaf, by E, the error of the
low-precision reference (``jax.grad`` in that dtype, at the input and at a neighbour about one
ulp away, at least the rounding of the gradient's largest element) after subtracting the
output's own rounding u |g|. The candidates are the test suite's kernels
(``tests/lowprec_kernels.py``): correct numpy and torch ones (the factor must stay above their
worst ratio) and a doubled dW1, a bias averaged twice and bfloat16-accumulated batch sums (the
factor should stay below theirs). A second table repeats this at production sizes (m = 256 and
2048, n = 784, h = 128, k = 10) for the careful kernel and the one that sums in the low dtype.

    python -m benchmarks --only lowprec_factor [--quick]
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from benchmarks._report import Section, markdown_table
from manual_bp import MLPParams, init_mlp
from verification import reference
from verification.auditing._lowprec import FACTOR, nudged, reference_errors, unit_roundoff

__all__ = ["kernels", "lowprec_factor_figure", "ratios", "run"]

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = {"float16": np.dtype(np.float16), "bfloat16": BF16}
SHAPES = [(1, 1, 1, 1), (2, 1, 1, 1), (2, 2, 2, 2), (3, 3, 3, 3), (2, 3, 4, 2), (4, 2, 3, 4)]
SHAPES += [(64, 32, 16, 10)]
CANDIDATES = {
    "numpy (float32 sums)": ("mlp_grads_lowp", True),
    "torch": ("mlp_grads_torch", True),
    "torch autograd": ("mlp_grads_torch_autograd", True),
    "sums in the low dtype": ("mlp_grads_lowp_bf16_sums", False),
    "doubled dW1": ("mlp_lowp_doubled_dw1", False),
    "bias averaged twice": ("mlp_lowp_bias_averaged_twice", False),
}

_grad64 = jax.jit(jax.grad(reference.mlp_loss))
_grad_low = jax.jit(jax.grad(reference.mlp_loss))


def kernels() -> Any:
    """tests/lowprec_kernels.py as a module (the benchmark runs from a checkout)."""
    name = "lowprec_kernels"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "tests" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # pragma: no cover
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _g64(args: Any) -> list[np.ndarray[Any, Any]]:
    params, x, y = (
        MLPParams(*(p.astype(np.float64) for p in args[0])),
        args[1].astype(np.float64),
        args[2].astype(np.float64),
    )
    return [np.asarray(g) for g in _grad64(params, x, y)]


def _glow(args: Any) -> list[np.ndarray[Any, Any]]:
    params, x, y = (MLPParams(*(jnp.asarray(p) for p in args[0])), *map(jnp.asarray, args[1:]))
    return [np.asarray(g).astype(np.float64) for g in _grad_low(params, x, y)]


def ratios(args: Any, dtype: np.dtype[Any], fns: dict[str, Any], seed: int) -> dict[str, float]:
    """Per candidate: the largest over leaves of (|candidate - g| - u |g|) / E at ``args``."""
    grad = _g64(args)
    other = nudged(args, (0,), np.random.default_rng(seed))
    errors = reference_errors(dtype, grad, _glow(args), _g64(other), _glow(other))
    u = unit_roundoff(dtype)
    out = {}
    for name, fn in fns.items():
        with np.errstate(all="ignore"):
            got = [np.asarray(g, np.float64) for g in fn(*args)]
            excess = [
                float(np.max(np.abs(c - g) - u * np.abs(g), initial=0.0))
                for c, g in zip(got, grad, strict=True)
            ]
        out[name] = max(
            (x / e if e > 0 else 0.0) if np.isfinite(x) else np.inf
            for x, e in zip(excess, errors, strict=True)
        )
    return out


def _draw(rng: np.random.Generator, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
    m, n, h, k = shape
    bounds = (3.0, 8.0) if dtype == np.float16 else (3.0, 1000.0)

    def array(s: tuple[int, ...]) -> Any:
        return rng.uniform(-1, 1, s) * bounds[rng.integers(2)]

    params = MLPParams(*(array(s).astype(dtype) for s in [(n, h), (h,), (h, k), (k,)]))
    y = np.eye(k)[rng.integers(0, k, m)].astype(dtype)
    return params, array((m, n)).astype(dtype), y


def _production(dtype: np.dtype[Any], m: int, fns: dict[str, Any]) -> dict[str, float]:
    rng = np.random.default_rng(0)
    params = MLPParams(*(p.astype(dtype) for p in init_mlp(rng, 784, 128, 10)))
    x = rng.standard_normal((m, 784)).astype(dtype)
    y = np.eye(10)[rng.integers(0, 10, m)].astype(dtype)
    return ratios((params, x, y), dtype, fns, 0)


def run(*, quick: bool = False) -> Section:
    """Ratio quantiles per dtype and candidate, and the production-size ratios."""
    module = kernels()
    fns = {name: getattr(module, fn) for name, (fn, _) in CANDIDATES.items()}
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover
        fns = {k: v for k, v in fns.items() if "torch" not in k}
    count = 140 if quick else 1400
    payload: dict[str, Any] = {"factor": FACTOR, "examples": count, "small": {}, "production": {}}
    rows = []
    for dname, dtype in DTYPES.items():
        rng = np.random.default_rng(5)
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for i in range(count):
            args = _draw(rng, dtype, SHAPES[i % len(SHAPES)])
            for name, r in ratios(args, dtype, fns, i).items():
                samples[name].append(r)
        payload["small"][dname] = samples
        for name, values in samples.items():
            v = np.asarray(values)
            q = np.quantile(v, [0.5, 0.99, 1.0])
            above = float(np.mean(v > FACTOR))
            role = "must stay below" if CANDIDATES[name][1] else "should exceed"
            rows.append([dname, name, *(f"{x:.3g}" for x in q), f"{100 * above:.1f}%", role])
    prod_rows = []
    careful = {k: fns[k] for k in ("numpy (float32 sums)", "sums in the low dtype")}
    for dname, dtype in DTYPES.items():
        for m in (256,) if quick else (256, 2048):
            r = _production(dtype, m, careful)
            payload["production"][f"{dname} m={m}"] = r
            prod_rows.append([dname, str(m), *(f"{r[k]:.3g}" for k in careful)])
    headers = ["dtype", "candidate", "median", "99th pct", "max", f"> {FACTOR:g}", "factor"]
    text = (
        f"Ratio (|candidate - g| - u|g|) / E over {count} random inputs per dtype "
        "(largest over the four leaves):\n\n"
        + markdown_table(headers, rows)
        + "\n\nAt production sizes (n = 784, h = 128, k = 10; He/Glorot weights, normal x):\n\n"
        + markdown_table(["dtype", "m", *careful], prod_rows)
    )
    return Section("lowprec_factor", "Low precision: the factor of the rule", payload, text)


def lowprec_factor_figure(payload: dict[str, Any], path: Path) -> Path:
    """Sorted ratios per candidate (log scale) with the factor as a line, one panel per dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    small = payload["small"]
    fig, axes = plt.subplots(1, len(small), figsize=(11, 4), sharey=True)
    for ax, (dname, samples) in zip(np.atleast_1d(axes), small.items(), strict=True):
        for name, values in samples.items():
            v = np.sort(np.asarray(values, dtype=np.float64))
            v = np.clip(np.nan_to_num(v, posinf=1e6), 1e-3, None)
            ax.plot(np.linspace(0, 1, v.size), v, label=name, lw=1.2)
        ax.axhline(payload["factor"], color="black", ls="--", lw=1, label="FACTOR")
        ax.set_yscale("log")
        ax.set_xlabel("fraction of inputs")
        ax.set_title(dname)
    np.atleast_1d(axes)[0].set_ylabel("error / low-precision reference's error")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
