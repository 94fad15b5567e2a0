"""The modules every benchmark section needs are there, or one line saying how to install
them and exit status 1 (torch is optional: without it the torch columns are left out).
Imported first by ``python -m benchmarks``."""

import importlib

from manual_bp._cli import install_hint

__all__: list[str] = []

_MODULES = ("matplotlib", "jax", "hypothesis")
for _name in _MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as _error:
        raise SystemExit(
            "python -m benchmarks: error: the benchmarks need the verify, bench and train "
            f"extras (missing module {_error.name!r}); install them with: "
            f"{install_hint('verify,bench,train')}"
        ) from None
