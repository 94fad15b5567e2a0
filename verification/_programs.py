"""Compiled references kept on disk under what determines them, so a new process neither traces
nor lowers them.

JAX's persistent cache (``verification._cache``) saves XLA's compilation, but its key is a hash
of the lowered program: every new process still traces each reference and lowers it to find
that key. For the main job's 162 programs that is about 3.5 s of a 20 s run (tracing 1.6 s,
lowering 2.0 s, loading 0.7 s; jaxlib 0.10, this machine), most of what a second run costs
beyond generating its examples.

A reference of this package is a function of its source alone, so its compiled program can be
found without tracing it, under

    key = sha256(program name, argument structure, (shape, dtype, weak type) of every leaf,
                 XLA options, every JAX configuration value, the versions of Python, jax,
                 jaxlib and numpy, the backend, and the source of every module of this
                 package the program's module reaches through its module-level names
                 and its import statements, transitively)

and loaded with ``jax.experimental.serialize_executable`` (about 2 ms). An edit of that
source, another JAX, another configuration or another argument signature is another key: a
stale program is never run, at worst a new one is compiled. Only programs with a name that
fixes what they compute are kept (``SizedJit``'s ``name``: a function defined at the top level
of a ``verification`` module, with no closure, or a name given where it is built); a user's
function, or one built at run time around other values, is traced as before.

Only where this JAX runs a loaded program as it runs its own (``loadable``, probed once per
process: jax 0.10 does; jax 0.12's loaded programs give outputs that its differentiation
rejects, so there nothing is stored and JAX's own cache serves as before).
The stored programs are compiled afresh, past JAX's cache (``_cache.bypassed``): an executable
that JAX loaded from its cache serialises without its kernels. A loaded program is proved by
its first run: one that loads but cannot run is compiled again; one whose argument structure is
not the call's (a namesake tree type) too. Nothing is kept while ``jax.disable_jit`` is on.
The entries live in the ``programs`` folder of the cache directory and are read back with
``pickle`` (the cache is trusted code, as JAX's own: keep it where only you can write). An
entry that cannot be read or written is skipped: the program is compiled, never an error.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import numpy as np

__all__ = [
    "FOLDER",
    "HIT_EVENT",
    "MISS_EVENT",
    "fingerprint",
    "key",
    "load",
    "loadable",
    "program_name",
    "save",
    "signature",
    "signature_of",
]

FOLDER = "programs"
"""The subfolder of the cache directory that holds the entries."""

HIT_EVENT = "/manual_bp/programs/store_hits"
MISS_EVENT = "/manual_bp/programs/store_misses"
"""``jax.monitoring`` events recorded by ``SizedJit`` when a program comes from the store and
when it is compiled for the store (count them with ``jax.monitoring.register_event_listener``)."""

_PACKAGE = __name__.split(".")[0]

Signature = tuple[Any, tuple[tuple[tuple[int, ...], np.dtype[Any], bool], ...]]
"""(argument tree structure, (shape, dtype, weak type) per leaf)."""


def program_name(fn: Callable[..., Any]) -> str | None:
    """``module.qualname`` of a function whose program is fixed by this package's source: a
    plain function defined at the top level of a ``verification`` module, closing over no
    value; else None (its program depends on values made at run time)."""
    if not inspect.isfunction(fn) or fn.__closure__ or "<locals>" in fn.__qualname__:
        return None
    module = fn.__module__ or ""
    return f"{module}.{fn.__qualname__}" if module.split(".")[0] == _PACKAGE else None


def modules_reached(module: str) -> list[str]:
    """``module`` and every module of this package its code can reach, transitively: through
    its module-level names (an imported module, or a function, class or object defined in
    one) and through its import statements, also those inside functions. The source a
    program defined in ``module`` can depend on. Sorted."""
    seen: set[str] = set()
    stack = [module]
    while stack:
        name = stack.pop()
        found = sys.modules.get(name)
        if name in seen or found is None:
            continue
        seen.add(name)
        owners = [v.__name__ if isinstance(v, ModuleType) else None for v in vars(found).values()]
        owners += [getattr(v, "__module__", None) for v in vars(found).values()]
        owners += _imported(getattr(found, "__file__", None))
        stack += [o for o in owners if isinstance(o, str) and o.split(".")[0] == _PACKAGE]
    return sorted(seen)


def _is_module(name: str) -> bool:
    """Whether the dotted ``name`` of this package is a module or a package (a file)."""
    root = Path(__file__).resolve().parents[len(__name__.split(".")) - 1]
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported(source: str | None) -> list[str]:
    """The modules an absolute import statement of the file ``source`` names, anywhere in it
    (``from pkg import name`` names ``pkg.name`` where that is a module, else ``pkg``)."""
    if not source or not source.endswith(".py"):
        return []
    names: list[str] = []
    for node in ast.walk(ast.parse(Path(source).read_bytes())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != _PACKAGE:
                continue
            for alias in node.names:
                inner = f"{node.module}.{alias.name}"
                names.append(inner if _is_module(inner) else node.module)
    return names


@functools.cache
def fingerprint(module: str) -> str:
    """sha256 of the source files of ``modules_reached(module)`` (name and bytes), the
    versions of Python, jax, jaxlib and numpy, and the default backend's platform and
    version."""
    digest = hashlib.sha256()
    for name in modules_reached(module):
        source = getattr(sys.modules[name], "__file__", None)
        digest.update(name.encode())
        digest.update(Path(source).read_bytes() if source else b"")
    backend = jax.devices()[0].client
    versions = [sys.version, jax.__version__, _jaxlib_version(), np.__version__, backend.platform]
    digest.update(repr([*versions, backend.platform_version]).encode())
    return digest.hexdigest()


def defining_module(name: str) -> str:
    """The module of a program ``name`` (``module.qualname``): its longest prefix that is an
    imported module.

    >>> defining_module("verification._programs.defining_module")
    'verification._programs'
    """
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:end]) in sys.modules:
            return ".".join(parts[:end])
    return name


def _jaxlib_version() -> str:
    from importlib.metadata import version

    return version("jaxlib")


def signature(args: Sequence[Any], kwargs: dict[str, Any]) -> Signature | None:
    """The abstract signature a jitted call compiles for: the tree structure of (args,
    kwargs) and each leaf's (shape, dtype, weak type); None where a leaf is neither an array
    nor a Python or numpy number (the program is then not kept)."""
    return signature_of(*jax.tree_util.tree_flatten((tuple(args), kwargs)))


def signature_of(leaves: Sequence[Any], tree: Any) -> Signature | None:
    """``signature`` from the flattened (args, kwargs): their leaves and tree structure."""
    abstract = []
    for leaf in leaves:
        # numpy first: np.float64 is also a Python float, but not weakly typed in JAX.
        if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
            weak = bool(getattr(leaf, "weak_type", False))
            abstract.append((tuple(np.shape(leaf)), np.dtype(leaf.dtype), weak))
        elif isinstance(leaf, (bool, int, float, complex)):  # weakly typed in JAX
            dtype = jax.dtypes.canonicalize_dtype(np.result_type(type(leaf)))
            abstract.append(((), np.dtype(dtype), True))
        else:
            return None
    return tree, tuple(abstract)


def key(name: str, sig: Signature, options: dict[str, Any]) -> str:
    """The entry's name: sha256 of the module docstring's inputs (hex)."""
    config = sorted(
        (k, repr(v)) for k, v in jax.config.values.items() if k != "jax_compilation_cache_dir"
    )
    tree, leaves = sig
    source = fingerprint(defining_module(name))
    text = repr([source, name, str(tree), leaves, sorted(options.items()), config])
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def loadable() -> bool:
    """Whether this JAX runs a loaded program as it runs its own: once per process, a small
    program is compiled, serialised, loaded, and its output differentiated through a nested
    ``jax.jit``. jax 0.12 fails that (its loaded programs' outputs carry types that its
    differentiation does not match with its own: "Expected cotangent type float64[1,1] but got
    float64[1,1]"); there nothing is stored or loaded, and JAX's own cache serves as before."""
    from jax.experimental.serialize_executable import deserialize_and_load, serialize

    from verification import _cache

    try:
        x = np.ones((1, 1))
        with _cache.bypassed():
            compiled = jax.jit(lambda a: a * 2.0).lower(x).compile()
        loaded = deserialize_and_load(*pickle.loads(pickle.dumps(serialize(compiled))))
        out = loaded(x)
        grad = jax.grad(lambda a: jax.jit(lambda b: (b * b).sum())(a))(out)
        return bool(np.allclose(np.asarray(grad), 4.0))
    except Exception:  # any failure: not usable here
        return False


def load(folder: Path, entry: str) -> Any | None:
    """The compiled program stored as ``entry`` in ``folder``, or None (absent, unreadable, or
    not loadable by this jaxlib)."""
    from jax.experimental.serialize_executable import deserialize_and_load

    try:
        serialized, in_tree, out_tree = pickle.loads((folder / f"{entry}.bin").read_bytes())
        return deserialize_and_load(serialized, in_tree, out_tree)
    except Exception:  # a missing, truncated or foreign entry: compile instead
        return None


def save(folder: Path, entry: str, compiled: Any) -> None:
    """Store ``compiled`` (a ``jax.stages.Compiled``) as ``entry`` in ``folder``: written to
    a temporary file and renamed, so a reader never sees half an entry; skipped on failure."""
    from jax.experimental.serialize_executable import serialize

    temporary = None
    try:
        data = pickle.dumps(serialize(compiled))
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, folder / f"{entry}.bin")
    except Exception:  # a full disk, a read-only folder, a program XLA cannot serialise
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
