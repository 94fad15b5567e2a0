"""The ``verify`` extra (JAX, hypothesis) is there, or the one line that says how to install it.

Imported first by :mod:`verification`. Without the extra, ``import verification`` raises
``ModuleNotFoundError`` whose message is the install command for a clone, and
``python -m verification ...`` prints that line alone and exits 1 (no traceback).
"""

import sys

from manual_bp._cli import install_hint

__all__: list[str] = []

try:
    import hypothesis as _hypothesis
    import jax as _jax
except ModuleNotFoundError as _error:
    _message = (
        f"verification needs the `verify` extra (no module named {_error.name!r}); "
        f"install it with: {install_hint('verify')}"
    )
    # While `python -m verification ...` locates its module, sys.argv[0] is "-m".
    if sys.argv[:1] == ["-m"]:
        print(f"python -m verification: error: {_message}", file=sys.stderr)
        raise SystemExit(1) from None
    raise ModuleNotFoundError(_message, name=_error.name) from None
del _hypothesis, _jax
