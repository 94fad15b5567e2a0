"""Load the user's code named on a command line or in a configuration: ``MODULE:FUNCTION``,
MODULE a module name or a ``.py`` path (shared by the command lines, the audits declared in
pyproject.toml and the pytest plugin)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["lookup", "resolve"]


def resolve(target: str) -> Callable[..., Any]:
    """The function named by ``MODULE:NAME`` (MODULE a module name or a ``.py`` path).

    Raises
    ------
    ValueError : no ``:`` in ``target`` (with the ``MODULE:NAME`` meant, for a
        ``MODULE.NAME``), or the module has no callable of that name.
    ImportError : the module cannot be imported (also for an error while importing it); a
        module not found names the current directory and how to put it on the path.
    """
    fn = lookup(target)
    if not callable(fn):
        raise ValueError(f"{target} is not callable")
    return fn


def lookup(target: str) -> Any:
    """The object named by ``MODULE:NAME`` (see ``resolve``), callable or not."""
    module_name, sep, name = target.rpartition(":")
    if not sep or not module_name or not name:
        head, dot, tail = target.removesuffix(".py").rpartition(".")
        hint = f" (did you mean {head}:{tail}?)" if dot and head and tail else ""
        raise ValueError(f"expected MODULE:FUNCTION, got {target!r}{hint}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ImportError(f"cannot load {path}: no such Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module  # so that the report's reproducer can import it
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not (module_name + ".").startswith(error.name + "."):
            raise  # the user's module imports something missing: its own message
        raise ImportError(
            f"no module named {module_name!r} in the current directory ({Path.cwd()}) or on "
            "the Python path: run from the folder that holds it, give its path "
            f"(path/to/{module_name.replace('.', '/')}.py:{name}), or add its folder to "
            "PYTHONPATH"
        ) from None
    except ImportError:
        raise
    except Exception as error:  # the user's module raised while importing
        first = str(error).splitlines()[0] if str(error) else ""
        raise ImportError(
            f"importing {module_name} raised {type(error).__name__}: {first}"
        ) from None
    fn = module
    for part in name.split("."):
        fn = getattr(fn, part, None)  # type: ignore[assignment]
        if fn is None:
            raise ValueError(f"{module_name} has no attribute {name!r}")
    return fn
