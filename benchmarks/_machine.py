"""What the benchmarks ran on: CPU, cores, BLAS kernel, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import numpy as np

__all__ = ["machine_info", "machine_line"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _blas() -> list[dict[str, Any]]:
    """numpy's BLAS as threadpoolctl sees it: library, version, kernel ("architecture"), threads."""
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return [{"note": "threadpoolctl not installed; see numpy.show_config()"}]
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info() if lib["user_api"] == "blas"]


def machine_info() -> dict[str, Any]:
    """A JSON-ready description of this machine and the software the benchmarks use."""
    flags = _cpu_flags()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "avx512f": "avx512f" in flags,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "torch": _version("torch"),
        "hypothesis": _version("hypothesis"),
        "numpy_blas": _blas(),
        # Set on some processors for old OpenBLAS builds; it forces a slower kernel on a
        # current numpy. Benchmarks report it rather than change it.
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line for the top of a printed table."""
    blas = ", ".join(
        f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} kernel, "
        f"{b.get('num_threads')} threads"
        for b in info["numpy_blas"]
        if "internal_api" in b
    )
    coretype = info["OPENBLAS_CORETYPE"]
    env = f"; OPENBLAS_CORETYPE={coretype}" if coretype else ""
    return (
        f"{info['cpu']}, {info['cores']} cores{' (AVX-512)' if info['avx512f'] else ''}; "
        f"numpy {info['numpy']} ({blas or 'BLAS unknown'}){env}; jax {info['jax']}; "
        f"torch {info['torch'] or 'not installed'}; Python {info['python']}"
    )
