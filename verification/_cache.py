"""JAX's persistent compilation cache: compiled references kept on disk across processes.

JAX compiles each reference once per input shape (0.05 to 0.2 s each; the main job compiles
162 programs). With the cache on, a second process loads the compiled programs from disk
instead, so only the first run on a machine pays for compilation.

The cache is on by default, in ``$XDG_CACHE_HOME/manual-bp/jax`` (``~/.cache/manual-bp/jax``
when ``XDG_CACHE_HOME`` is unset). ``MANUAL_BP_JAX_CACHE`` chooses another directory, or turns
the cache off with ``off``; ``python -m verification --cache-dir PATH`` and ``--no-cache`` do
the same for one run. ``verification.reference`` calls ``configure(from_environment())`` when
it is imported, before anything is compiled.

The references of ``verification.reference`` are also kept by name in the ``programs``
subfolder (``verification._programs``): a later process loads them without tracing them.

JAX writes only programs that took at least 1 s to compile by default; every reference here
takes less, so the threshold is set to 0 (and the entry-size floor off), or nothing would be
cached. The cache is trusted code: keep it in a directory only you can write to.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = [
    "ENV_VAR",
    "OFF",
    "bypassed",
    "configure",
    "default_directory",
    "directory",
    "from_environment",
]

ENV_VAR = "MANUAL_BP_JAX_CACHE"
"""Environment variable: the cache directory, or ``off`` for no cache."""

OFF = "off"

# No size limit (JAX's default): JAX's least-recently-used eviction needs ``filelock`` and
# keeps an access-time file beside each entry; a cache written by a process without it (another
# virtual environment) then makes every write of an evicting process fail with a warning, and
# each write rescans the whole folder. Entries are small: the main job's take about 1 MB, and
# the whole test suite leaves some tens of MB. Delete the folder to reclaim the space.


def default_directory(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/manual-bp/jax``, or ``~/.cache/manual-bp/jax`` without XDG_CACHE_HOME.

    >>> default_directory({"XDG_CACHE_HOME": "/tmp/c"}).as_posix()
    '/tmp/c/manual-bp/jax'
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "manual-bp" / "jax"


def from_environment(environ: Mapping[str, str] | None = None) -> Path | None:
    """The directory ``MANUAL_BP_JAX_CACHE`` names (``None`` for ``off``), else the default.

    >>> from_environment({ENV_VAR: "off"}) is None
    True
    >>> from_environment({ENV_VAR: "/tmp/x"}).as_posix()
    '/tmp/x'
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR, "").strip()
    if value.lower() == OFF:
        return None
    return Path(value).expanduser() if value else default_directory(env)


def _usable(folder: Path) -> Path | None:
    """``folder``, created if need be, when this process can write there; else ``None``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def configure(path: str | os.PathLike[str] | None) -> Path | None:
    """Turn the persistent cache on in ``path`` (created if need be), or off for ``None``.

    Takes effect for the next compilation, also after earlier ones (JAX's cache object is
    reset). Returns the directory in use (absolute), or ``None``: also when ``path`` cannot be
    created or written (a read-only home directory), so that importing ``verification`` never
    fails and JAX never warns on each compilation.
    """
    compilation_cache.reset_cache()
    folder = None if path is None else _usable(Path(path).expanduser().absolute())
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)  # type: ignore[no-untyped-call]
        jax.config.update("jax_compilation_cache_dir", None)  # type: ignore[no-untyped-call]
        return None
    jax.config.update("jax_enable_compilation_cache", True)  # type: ignore[no-untyped-call]
    jax.config.update("jax_compilation_cache_dir", str(folder))  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # type: ignore[no-untyped-call]
    return folder


def directory() -> Path | None:
    """The cache directory in use now, or ``None`` when the cache is off."""
    # (read one by one: ``jax.config.values`` builds a dict of every option, about 8 us)
    folder = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    enabled = jax.config.jax_enable_compilation_cache  # type: ignore[attr-defined]
    return _path(folder) if folder and enabled else None


@functools.lru_cache(maxsize=8)
def _path(folder: str) -> Path:
    """``Path(folder)``, made once per folder (every reference call asks: 10 us saved)."""
    return Path(folder)


@contextlib.contextmanager
def bypassed() -> Iterator[None]:
    """Compile afresh inside: JAX's persistent cache is neither read nor written (then as it
    was). ``verification._programs`` stores what is compiled here: an executable that JAX
    loaded from its own cache does not serialise whole (its kernels are missing when it is
    loaded again, jaxlib 0.10 to 0.12). JAX decides once per process whether its cache is
    used, so the decision is reset on the way in and out; a compilation in another thread
    meanwhile merely skips the cache."""
    enabled = directory() is not None
    compilation_cache.reset_cache()
    jax.config.update("jax_enable_compilation_cache", False)  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)  # type: ignore[no-untyped-call]
        compilation_cache.reset_cache()
