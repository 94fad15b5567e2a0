"""The network's loss in JAX as a JAX user would write it, for timing (not a test oracle).

The benchmarks time JAX at its defaults (full XLA optimisation), so they do not use the
references of ``verification.reference``, whose compile options are tuned for checking many
small shapes quickly. 64-bit JAX is switched on here, as float64 steps need it.
"""

from __future__ import annotations

from typing import Any

import jax

jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call, unused-ignore]

import jax.numpy as jnp  # noqa: E402  (after the x64 switch on purpose)

__all__ = ["mlp_loss"]


def mlp_loss(params: Any, x: Any, y: Any) -> Any:
    """-(1/m) sum Y log softmax(relu(X W1 + b1) W2 + b2), with params W1, b1, W2, b2."""
    a1 = jax.nn.relu(x @ params.W1 + params.b1)
    log_p = jax.nn.log_softmax(a1 @ params.W2 + params.b2, axis=-1)
    return -jnp.sum(y * log_p) / x.shape[0]
