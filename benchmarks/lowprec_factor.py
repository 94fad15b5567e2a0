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
from manual_bp import MLPParams, init_mlp, mlp_loss_and_grads
from verification import reference
from verification.auditing._lowprec import (
    FACTOR,
    nudged,
    reference_errors,
    tolerances,
    unit_roundoff,
)

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
    return _test_module("lowprec_kernels")


def _test_module(name: str) -> Any:
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


def _float32_rule(args: Any, candidate: Any, seed: int) -> bool:
    """Whether ``candidate`` passes the low-precision rule applied to float32 inputs (a float32
    reference; x' moves half of the parameters by one float32 ulp)."""
    f32 = np.dtype(np.float32)
    rng = np.random.default_rng(seed)
    moved = MLPParams(
        *(
            (p * (1 + 2.0**-23 * rng.choice([-1, 0, 1], p.shape))).astype(np.float32)
            for p in args[0]
        )
    )
    other = (moved, args[1], args[2])
    grad = _g64(args)
    errors = reference_errors(f32, grad, _glow(args), _g64(other), _glow(other))
    if not all(np.isfinite(errors)):
        return True  # outside float32's range: not counted
    got = [np.asarray(g, np.float64) for g in candidate(*args)]
    return all(
        bool(np.all(np.abs(c - g) <= a + r * np.abs(g)))
        for c, g, (r, a) in zip(got, grad, tolerances(f32, errors), strict=True)
    )


def _one_element(relative: float) -> Any:
    def candidate(params: MLPParams, x: Any, y: Any) -> MLPParams:
        g = mb_grads(params, x, y)
        dW1 = g.W1.copy()
        dW1[7, 3] += relative * np.max(np.abs(dW1))
        return g._replace(W1=dW1)

    return candidate


def mb_grads(params: MLPParams, x: Any, y: Any) -> MLPParams:
    """manual_bp's gradient (float32 in, float32 out for float32 inputs)."""
    return mlp_loss_and_grads(params, x, y)[1]


def float32_comparison(quick: bool) -> tuple[list[list[str]], list[list[str]]]:
    """Today's float rule (``audit``) against the low-precision rule on float32 inputs: one
    dW1 element off by a fraction of dW1's scale; and false alarms of correct float32 code."""
    from verification import audit

    rows = []
    for size in [(64, 32, 16, 10), (256, 784, 128, 10)]:
        rng = np.random.default_rng(0)
        params = init_mlp(rng, *size[1:], dtype=np.float32)
        x = rng.standard_normal((size[0], size[1])).astype(np.float32)
        y = np.eye(size[3], dtype=np.float32)[rng.integers(0, size[3], size[0])]
        args = (params, x, y)
        for relative in (0.0, 1e-2, 1e-3, 1e-4, 1e-5):
            candidate = _one_element(relative) if relative else mb_grads
            today = audit(candidate, reference.mlp_loss, args, argnums=0, seed=0).passed
            new = _float32_rule(args, candidate, 0)
            what = "correct" if not relative else f"dW1[7, 3] off by {relative:g} of dW1's scale"
            verdicts = ["pass" if ok else "FAIL" for ok in (today, new)]
            rows.append(["x".join(map(str, size)), what, *verdicts])
    zoo = kernels_zoo()
    correct = {
        "bug_zoo matrix form": zoo.mlp_grads,
        "bug_zoo per-sample loop": zoo.mlp_grads_per_sample,
        "bug_zoo log-softmax einsum": zoo.mlp_grads_log_softmax,
        "manual_bp": mb_grads,
    }
    count = 60 if quick else 300
    alarms = dict.fromkeys(correct, 0)
    rng = np.random.default_rng(7)
    for i in range(count):
        args = _draw(rng, np.dtype(np.float32), SHAPES[i % len(SHAPES)])
        for name, fn in correct.items():
            with np.errstate(all="ignore"):
                alarms[name] += not _float32_rule(args, fn, i)
    alarm_rows = [[name, str(count), str(n)] for name, n in alarms.items()]
    return rows, alarm_rows


def kernels_zoo() -> Any:
    """tests/bug_zoo.py as a module."""
    return _test_module("bug_zoo")


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
            at_m = _production(dtype, m, careful)
            payload["production"][f"{dname} m={m}"] = at_m
            prod_rows.append([dname, str(m), *(f"{at_m[k]:.3g}" for k in careful)])
    headers = ["dtype", "candidate", "median", "99th pct", "max", f"> {FACTOR:g}", "factor"]
    text = (
        f"Ratio (|candidate - g| - u|g|) / E over {count} random inputs per dtype "
        "(largest over the four leaves):\n\n"
        + markdown_table(headers, rows)
        + "\n\nAt production sizes (n = 784, h = 128, k = 10; He/Glorot weights, normal x):\n\n"
        + markdown_table(["dtype", "m", *careful], prod_rows)
    )
    f32_rows, alarm_rows = float32_comparison(quick)
    payload["float32"] = {"one_element": f32_rows, "false_alarms": alarm_rows}
    text += (
        "\n\nfloat32 inputs: today's float rule (the audit) against this rule with a float32 "
        "reference:\n\n"
        + markdown_table(["m x n x h x k", "candidate", "float rule", "this rule"], f32_rows)
        + "\n\n"
        + markdown_table(["correct float32 code", "random inputs", "false alarms"], alarm_rows)
    )
    return Section("lowprec_factor", "Low precision: the factor of the rule", payload, text)


def lowprec_factor_figure(payload: dict[str, Any], path: Path) -> Path:
    """Sorted ratios per candidate (log scale) with the factor as a line, one panel per dtype."""
    import matplotlib.pyplot as plt

    from benchmarks._figures import save_figure  # (selects the Agg backend)

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
    return save_figure(fig, path, laid_out=True)
