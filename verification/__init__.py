"""verification: JAX as ground truth for every hand-derived gradient of ``manual_bp``.

Modules: ``reference`` (JAX counterparts and their derivatives by automatic differentiation),
``strategies`` (hypothesis strategies and ready problems), ``compare`` (tolerances derived from
the dtype and scale, tree comparison), ``report`` (the main job, ``python -m verification``).

Needs the ``verify`` extra (JAX, hypothesis); without it, importing this package raises
``ModuleNotFoundError`` with the install command (``verification._requires``).
"""

from verification import (
    _requires as _requires,  # first: the install hint instead of a bare "No module named 'jax'"
    reference as reference,
    strategies as strategies,
)
from verification.compare import (
    Comparison as Comparison,
    assert_trees_close as assert_trees_close,
    compare_trees as compare_trees,
    magnitude as magnitude,
    tolerance as tolerance,
)

__all__ = [
    "Comparison",
    "assert_trees_close",
    "compare_trees",
    "magnitude",
    "reference",
    "strategies",
    "tolerance",
]

# The audit of anyone's gradient (verification/auditing/): ``verification.audit`` is the function.
from verification.auditing import (
    AuditReport as AuditReport,
    AuditSpecError as AuditSpecError,
    assert_gradient_correct as assert_gradient_correct,
    audit as audit,
    audit_hvp as audit_hvp,
    audit_vjp as audit_vjp,
    named_arrays as named_arrays,
)

__all__ += [
    "AuditReport",
    "AuditSpecError",
    "assert_gradient_correct",
    "audit",
    "audit_hvp",
    "audit_vjp",
    "named_arrays",
]
