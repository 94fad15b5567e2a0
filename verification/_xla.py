"""How XLA compiles the references: fast for small problems, optimised for large ones.

A reference here is small (tens to thousands of elements): compiling it with XLA's default
options costs a tenth to a third of a second, hundreds of times its run. ``FAST_COMPILE``
asks for LLVM -O0 without the expensive passes and, where this XLA has them, the older CPU
fusion emitters (jaxlib 0.10: 0.17 s -> 0.06 s for the MLP's gradient at 256 x 784 x 128 x 10,
runs as fast); the results are the same IEEE arithmetic, rounded in the last place
differently at most. From ``OPTIMISE_ABOVE`` elements a run costs more than compiling, and the
default (optimising) options are used.

``fast_compile_options`` keeps the options this jaxlib and backend accept (they come and go
between releases: jaxlib 0.12 has no ``xla_cpu_use_fusion_emitters``), and ``sized_jit`` is
``jax.jit`` with the options chosen by the size of each call's arguments.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from verification import _cache, _programs

__all__ = ["FAST_COMPILE", "OPTIMISE_ABOVE", "SizedJit", "fast_compile_options", "sized_jit"]

FAST_COMPILE: dict[str, Any] = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
    # One LLVM module, not several compiled in parallel: for a small program the split costs
    # more than it saves (0.108 -> 0.094 s for the MLP's gradient at 4 x 3 x 5 x 2), and each
    # part is loaded as objects of their own, three memory maps each (34 -> 16 maps per
    # program with jaxlib 0.10; jaxlib 0.12 makes 42 either way): a process that compiles
    # thousands of shapes (the mutation session's one test process) otherwise reaches
    # Linux's limit of 65,530 maps, and XLA then crashes (SIGSEGV).
    "xla_cpu_parallel_codegen_split_count": 1,
}
"""XLA options that cut compilation time for small programs (module docstring)."""

OPTIMISE_ABOVE = 1 << 21
"""Elements (over all arguments) from which a problem is large: its programs are compiled with
XLA's full optimisation instead of ``FAST_COMPILE`` (at about 2 million elements, a batch of
2048 inputs of 784 pixels, one run of the -O0 gradient costs about as much again as the
optimised one, and a run costs more than the optimisation saves in compilation time)."""

_UNKNOWN = re.compile(r"No such compile option: '([^']+)'")


@functools.cache
def fast_compile_options() -> dict[str, Any]:
    """The part of ``FAST_COMPILE`` that this jaxlib and default backend accept.

    Found once per process by compiling a one-operation program, dropping each option XLA
    names as unknown; {} (XLA's defaults) if it fails for any other reason.
    """
    options = dict(FAST_COMPILE)
    lowered = jax.jit(lambda x: x + 1).lower(np.zeros(2))
    while True:
        try:
            lowered.compile(compiler_options=options)
            return options
        except Exception as error:
            unknown = _UNKNOWN.search(str(error))
            if unknown is None or unknown.group(1) not in options:
                return {}
            del options[unknown.group(1)]


def elements(args: Any) -> int:
    """The number of elements over all leaves of ``args`` (a pytree; a scalar counts 1)."""
    return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(args))


class SizedJit:
    """``jax.jit(fn)`` compiled with ``fast_compile_options`` below ``OPTIMISE_ABOVE``
    elements of arguments and with XLA's defaults from there on: two jitted functions, each
    compiling once per shape (``fast`` and ``full``). Called inside another transformation
    (traced arguments), it is ``full``, a plain ``jax.jit``, part of the outer program.

    With a ``name`` (``_programs.program_name(fn)`` by default: a top-level function of this
    package) and the persistent cache on, a call on concrete arguments runs the program
    compiled for its signature, kept in this object once made and in the cache's
    ``programs`` folder (``verification._programs``): a new process loads it from there
    without tracing or lowering ``fn``."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        functools.update_wrapper(self, fn, updated=())  # name and docstring, not attributes
        self.fn = fn
        self.full = jax.jit(fn)
        self.program = name if name is not None else _programs.program_name(fn)
        self._compiled: dict[Any, Any] = {}  # (signature, large) -> jax.stages.Compiled

    @functools.cached_property
    def fast(self) -> Any:
        """``jax.jit(fn)`` with ``fast_compile_options`` (built on the first small call)."""
        return jax.jit(self.fn, compiler_options=fast_compile_options())

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """Bound like a function when it is a class attribute (as ``jax.jit``'s functions are);
        a routine to ``inspect``, so documentation tools show it as a function."""
        return self if instance is None else functools.partial(self, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        # Inside another transformation (jax.grad of a reference) the outer program is the one
        # compiled: JAX takes compile options at the top level only.
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)
        large = elements(leaves) >= OPTIMISE_ABOVE
        folder = None if traced or self.program is None else _cache.directory()
        disabled = jax.config.jax_disable_jit  # type: ignore[attr-defined]
        if folder is not None and not disabled and _programs.loadable():
            sig = _programs.signature_of(leaves, tree)  # (args, kwargs) flattened once
            if sig is not None:
                compiled = self._compiled.get((sig, large))
                if compiled is not None:  # (the common case, kept cheap: a few microseconds)
                    return compiled(*args, **kwargs)
                return self._run_stored(sig, large, folder, args, kwargs)
        return (self.full if traced or large else self.fast)(*args, **kwargs)

    def _run_stored(
        self,
        sig: _programs.Signature,
        large: bool,
        folder: Path,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run the program for ``sig``, not yet kept here: loaded from the store (its first run
        proves it: an entry that loads but cannot run is compiled again), else compiled
        afresh and stored; kept here either way."""
        memo, options = (sig, large), ({} if large else fast_compile_options())
        assert self.program is not None
        store, entry = folder / _programs.FOLDER, _programs.key(self.program, sig, options)
        loaded = _programs.load(store, entry)
        if loaded is not None and loaded.in_tree == sig[0]:  # (not a namesake tree type)
            try:
                out = loaded(*args, **kwargs)
            except jax.errors.JaxRuntimeError:  # an entry that loads but cannot run
                pass
            else:
                jax.monitoring.record_event(_programs.HIT_EVENT)
                self._compiled[memo] = loaded
                return out
        with _cache.bypassed():  # (an executable JAX loaded from its cache cannot be stored)
            compiled = self.full.lower(*args, **kwargs).compile(compiler_options=options)
        _programs.save(store, entry, compiled)
        jax.monitoring.record_event(_programs.MISS_EVENT)
        self._compiled[memo] = compiled
        return compiled(*args, **kwargs)


def sized_jit(fn: Callable[..., Any], name: str | None = None) -> SizedJit:
    """``SizedJit(fn, name)``: use as a decorator where ``jax.jit`` would be; ``name``
    (``module.attribute``) where the program is fixed by this package's source but ``fn`` is
    not a plain top-level function (``sized_jit(jax.grad(loss), name=...)``)."""
    return SizedJit(fn, name)
