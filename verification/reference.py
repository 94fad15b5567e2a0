"""JAX ground truth: the counterpart of every forward function of ``manual_bp``.

Each function here is built from library code (``jax.nn``, ``jax.numpy``, ``jax.scipy.special``)
and never from the manual formulas; its derivatives come from JAX's automatic differentiation
(``jax.grad``, ``jax.vjp``, ``jax.jacobian``), so they share no code with the hand derivations they
check.

Importing this module turns on 64-bit JAX (``jax_enable_x64``) and the "highest" matrix-product
precision, so a float64 reference is a true float64 computation on every backend (at the default
precision a GPU reference can be off by close to 1%, see BASELINES.md).

Conventions are those of ``manual_bp``: samples are rows, X is (m, n), labels Y are (m, k), a loss
is the mean over the m samples (a sum over all elements divided by m = ``shape[0]``), and
relu'(0) = 0 (as ``jax.nn.relu``).

Every function here is jitted at module level (``verification._xla.sized_jit``): JAX compiles
each once per input shape and dtype and reuses the compiled code afterwards (about 50 ms per new
shape on this machine), which is why the strategies draw shapes from small fixed sets; a small
problem is compiled for compilation speed (XLA -O0), one of more than 2 million elements with
XLA's optimisation. Importing this module also turns on
JAX's persistent compilation cache (``verification._cache``): a later process loads the
compiled code from disk instead of compiling it again. Feed them float64 arrays to get a
float64 ground truth (a float32 input is computed in float32).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax

jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
jax.config.update("jax_default_matmul_precision", "highest")  # type: ignore[no-untyped-call]

from verification import _cache  # noqa: E402
from verification._xla import sized_jit  # noqa: E402

_cache.configure(_cache.from_environment())  # compiled references persist across processes

import jax.numpy as jnp  # noqa: E402  (after the x64 switch on purpose)
from jax.scipy.special import xlog1py, xlogy  # noqa: E402

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "linear",
    "linear_backward",
    "logreg_gnvp",
    "logreg_hvp",
    "logreg_logits",
    "logreg_loss",
    "logreg_loss_and_grads",
    "mlp_forward",
    "mlp_gnvp",
    "mlp_hvp",
    "mlp_logits",
    "mlp_loss",
    "mlp_loss_and_grads",
    "param",
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_binary_cross_entropy",
    "sigmoid_binary_cross_entropy_grad",
    "sigmoid_grad",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "softmax_jacobian",
    "softmax_vjp",
]

Array = jax.Array
ArrayLike = Any  # numpy arrays, JAX arrays, Python scalars


class _MLPLike(Protocol):
    """Anything with the fields of ``manual_bp.MLPParams`` (the NamedTuple itself)."""

    @property
    def W1(self) -> ArrayLike: ...  # noqa: N802
    @property
    def b1(self) -> ArrayLike: ...
    @property
    def W2(self) -> ArrayLike: ...  # noqa: N802
    @property
    def b2(self) -> ArrayLike: ...


class _LogRegLike(Protocol):
    """Anything with the fields of ``manual_bp.LogRegParams`` (the NamedTuple itself)."""

    @property
    def w(self) -> ArrayLike: ...
    @property
    def b(self) -> ArrayLike: ...


_MLPParams = _MLPLike | Mapping[str, ArrayLike]
_LogRegParams = _LogRegLike | Mapping[str, ArrayLike]


def param(params: Any, name: str) -> ArrayLike:
    """The parameter ``name`` of ``params``: a field (``manual_bp.MLPParams``, ``LogRegParams``)
    or a key (a dict, as the audit's ``--shapes`` grammar makes of ``params.W1=n,h``).

    >>> param({"W1": 1.0}, "W1"), param(type("P", (), {"W1": 2.0})(), "W1")
    (1.0, 2.0)
    """
    return params[name] if isinstance(params, Mapping) else getattr(params, name)


def _batch_size(x: ArrayLike) -> int:
    """m, the number of samples: the leading dimension (1 for a 0-d array)."""
    shape = jnp.shape(x)
    return int(shape[0]) if shape else 1


# --------------------------------------------------------------------------------------------
# Forward functions
# --------------------------------------------------------------------------------------------


@sized_jit
def relu(z: ArrayLike) -> Array:
    """max(z, 0) elementwise via ``jax.nn.relu`` (whose derivative at 0 is 0). Any shape."""
    return jax.nn.relu(z)


@sized_jit
def sigmoid(z: ArrayLike) -> Array:
    """1 / (1 + exp(-z)) elementwise via ``jax.nn.sigmoid``. Any shape."""
    return jax.nn.sigmoid(z)


@sized_jit
def softmax(z: ArrayLike) -> Array:
    """exp(z_i) / sum_j exp(z_j) over the last axis via ``jax.nn.softmax``. (..., k) -> (..., k)."""
    return jax.nn.softmax(z, axis=-1)


@sized_jit
def cross_entropy(p: ArrayLike, y: ArrayLike) -> Array:
    """J = -(1/m) sum_ic y_ic log p_ic on probabilities p and labels y, both (m, k).

    ``xlogy`` gives 0 where y == 0 (even at p == 0). Where y == 0 the term is identically zero
    as a function of p, so p is replaced by 1 there before the log: that keeps the derivative
    at p == 0, y == 0 at its true value 0 (``xlogy``'s own derivative there is 0/0 = NaN).
    """
    y = jnp.asarray(y)
    safe_p = jnp.where(y == 0, 1, p)
    return -jnp.sum(xlogy(y, safe_p)) / _batch_size(p)


@sized_jit
def softmax_cross_entropy(z: ArrayLike, y: ArrayLike) -> Array:
    """J = -(1/m) sum_ic y_ic log softmax(z)_ic from logits z (m, k), labels y (m, k).

    Uses ``jax.nn.log_softmax`` (log-sum-exp), so it is finite for any finite logits. Its
    gradient from ``jax.grad`` is the general (P * rowsum(Y) - Y) / m.
    """
    return -jnp.sum(jnp.asarray(y) * jax.nn.log_softmax(z, axis=-1)) / _batch_size(z)


@sized_jit
def binary_cross_entropy(p: ArrayLike, y: ArrayLike) -> Array:
    """J = -(1/m) sum [y log p + (1 - y) log(1 - p)] on probabilities; p, y (m,) or (m, k).

    ``xlogy(y, p)`` and ``xlog1py(1 - y, -p)`` give 0 for the terms whose weight is 0; as in
    ``cross_entropy``, p is replaced by a harmless constant where a term's weight is exactly 0,
    so that the derivative of that (identically zero) term is 0 rather than NaN.
    """
    y = jnp.asarray(y)
    p_for_y = jnp.where(y == 0, 1, p)
    p_for_not_y = jnp.where(y == 1, 0, p)
    total = xlogy(y, p_for_y) + xlog1py(1 - y, -p_for_not_y)
    return -jnp.sum(total) / _batch_size(p)


@sized_jit
def sigmoid_binary_cross_entropy(z: ArrayLike, y: ArrayLike) -> Array:
    """J = -(1/m) sum [y log s(z) + (1 - y) log(1 - s(z))] from logits; z, y (m,) or (m, k).

    ``jax.nn.log_sigmoid`` gives log s(z) and, since 1 - s(z) = s(-z), log(1 - s(z)) too,
    finite for any finite z.
    """
    y = jnp.asarray(y)
    total = y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-jnp.asarray(z))
    return -jnp.sum(total) / _batch_size(z)


@sized_jit
def linear(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> Array:
    """z = x @ w + b: x (m, n), w (n, k), b (k,) -> (m, k)."""
    return jnp.add(jnp.matmul(x, w), b)


@sized_jit
def mlp_forward(params: _MLPParams, x: ArrayLike) -> Array:
    """The network's class probabilities softmax(relu(x W1 + b1) W2 + b2): x (m, n) -> (m, k)."""
    p: Array = softmax(mlp_logits(params, x))
    return p


@sized_jit
def mlp_loss(params: _MLPParams, x: ArrayLike, y: ArrayLike) -> Array:
    """The network's loss: softmax cross-entropy of relu(x W1 + b1) W2 + b2 against y.

    params: W1 (n, h), b1 (h,), W2 (h, k), b2 (k,), as fields or keys (``param``); x (m, n);
    y (m, k). Returns a scalar.
    """
    loss: Array = softmax_cross_entropy(mlp_logits(params, x), y)
    return loss


@sized_jit
def logreg_loss(params: _LogRegParams, x: ArrayLike, y: ArrayLike) -> Array:
    """Logistic regression's loss: sigmoid binary cross-entropy of x w + b against y.

    params: w (n,), b (), as fields or keys (``param``); x (m, n); y (m,) in [0, 1]. Returns a
    scalar.
    """
    loss: Array = sigmoid_binary_cross_entropy(logreg_logits(params, x), y)
    return loss


# --------------------------------------------------------------------------------------------
# Derivatives, by automatic differentiation, jitted once per shape
# --------------------------------------------------------------------------------------------


def _elementwise_derivative(f: Callable[[Array], Array], name: str) -> Callable[[ArrayLike], Array]:
    """f'(z) for a scalar function f applied elementwise: ``jax.grad`` of f on each element.

    Differentiating each element on its own (``jnp.vectorize``) rather than taking the gradient
    of ``sum(f(z))`` does not presuppose that the Jacobian is diagonal.
    """
    return sized_jit(jnp.vectorize(jax.grad(f)), name=f"{__name__}.{name}")


relu_grad = _elementwise_derivative(jax.nn.relu, "relu_grad")
relu_grad.__doc__ = "relu'(z) elementwise by ``jax.grad`` of ``jax.nn.relu`` (0 at z == 0)."

sigmoid_grad = _elementwise_derivative(jax.nn.sigmoid, "sigmoid_grad")
sigmoid_grad.__doc__ = "sigmoid'(z) elementwise by ``jax.grad`` of ``jax.nn.sigmoid``."


@sized_jit
def softmax_jacobian(z: ArrayLike) -> Array:
    """dp_i/dz_j of p = softmax(z) per row by ``jax.jacobian``: (..., k) -> (..., k, k)."""
    jacobian: Array = jnp.vectorize(jax.jacobian(softmax), signature="(k)->(k,k)")(z)
    return jacobian


@sized_jit
def softmax_vjp(z: ArrayLike, g: ArrayLike) -> Array:
    """g^T J per row, J the softmax Jacobian at z, by ``jax.vjp``: z, g (..., k) -> (..., k)."""
    _, pullback = jax.vjp(softmax, jnp.asarray(z))
    out: Array = pullback(jnp.asarray(g))[0]
    return out


cross_entropy_grad = sized_jit(jax.grad(cross_entropy), name=f"{__name__}.cross_entropy_grad")
cross_entropy_grad.__doc__ = "dJ/dp of ``cross_entropy`` by ``jax.grad``: (m, k) -> (m, k)."

softmax_cross_entropy_grad = sized_jit(
    jax.grad(softmax_cross_entropy), name=f"{__name__}.softmax_cross_entropy_grad"
)
softmax_cross_entropy_grad.__doc__ = (
    "dJ/dz of ``softmax_cross_entropy`` by ``jax.grad``: (m, k) -> (m, k)."
)

binary_cross_entropy_grad = sized_jit(
    jax.grad(binary_cross_entropy), name=f"{__name__}.binary_cross_entropy_grad"
)
binary_cross_entropy_grad.__doc__ = "dJ/dp of ``binary_cross_entropy`` by ``jax.grad``."

sigmoid_binary_cross_entropy_grad = sized_jit(
    jax.grad(sigmoid_binary_cross_entropy), name=f"{__name__}.sigmoid_binary_cross_entropy_grad"
)
sigmoid_binary_cross_entropy_grad.__doc__ = (
    "dJ/dz of ``sigmoid_binary_cross_entropy`` by ``jax.grad``."
)


@sized_jit
def linear_backward(dz: ArrayLike, x: ArrayLike, w: ArrayLike) -> tuple[Array, Array, Array]:
    """(dx, dw, db): the pullback of ``linear`` at (x, w, b) applied to dz, by ``jax.vjp``.

    dz (m, k), x (m, n), w (n, k) -> dx (m, n), dw (n, k), db (k,). The pullback does not
    depend on b, so b is taken as zeros of shape (k,).
    """
    w = jnp.asarray(w)
    b = jnp.zeros(w.shape[-1], dtype=w.dtype)
    _, pullback = jax.vjp(linear, jnp.asarray(x), w, b)
    dx, dw, db = pullback(jnp.asarray(dz))
    return dx, dw, db


_mlp_value_and_grad = sized_jit(
    jax.value_and_grad(mlp_loss), name=f"{__name__}._mlp_value_and_grad"
)
_logreg_value_and_grad = sized_jit(
    jax.value_and_grad(logreg_loss), name=f"{__name__}._logreg_value_and_grad"
)


def mlp_loss_and_grads(params: Any, x: ArrayLike, y: ArrayLike) -> tuple[Array, Any]:
    """(loss, grads) of ``mlp_loss`` by ``jax.value_and_grad``, jitted.

    ``grads`` has the pytree type of ``params`` (an ``MLPParams`` in, an ``MLPParams`` of JAX
    arrays out) and the same leaf shapes.
    """
    loss, grads = _mlp_value_and_grad(params, x, y)
    return loss, grads


def logreg_loss_and_grads(params: Any, x: ArrayLike, y: ArrayLike) -> tuple[Array, Any]:
    """(loss, grads) of ``logreg_loss`` by ``jax.value_and_grad``, jitted; grads like params."""
    loss, grads = _logreg_value_and_grad(params, x, y)
    return loss, grads


# --------------------------------------------------------------------------------------------
# Second order: forward over reverse (jax.jvp of jax.grad), jitted once per shape
# --------------------------------------------------------------------------------------------


def _hvp(loss: Callable[..., Array], name: str) -> Callable[..., Any]:
    """(params, x, y, v) -> H v of ``loss`` in ``params``: ``jax.jvp`` of ``jax.grad``."""

    def hvp(params: Any, x: ArrayLike, y: ArrayLike, v: Any) -> Any:
        return jax.jvp(lambda p: jax.grad(loss)(p, x, y), (params,), (v,))[1]

    return sized_jit(hvp, name=f"{__name__}.{name}")


def _gnvp(
    logits: Callable[..., Array], loss_of_logits: Callable[..., Array], name: str
) -> Callable[..., Any]:
    """(params, x, y, v) -> J^T H_z J v: ``jax.jvp`` of the model for J v, ``jax.jvp`` of
    ``jax.grad`` of the loss in the logits for H_z, ``jax.vjp`` of the model for J^T."""

    def gnvp(params: Any, x: ArrayLike, y: ArrayLike, v: Any) -> Any:
        z, jv = jax.jvp(lambda p: logits(p, x), (params,), (v,))
        hjv = jax.jvp(lambda t: jax.grad(loss_of_logits)(t, y), (z,), (jv,))[1]
        return jax.vjp(lambda p: logits(p, x), params)[1](hjv)[0]

    return sized_jit(gnvp, name=f"{__name__}.{name}")


def mlp_logits(params: _MLPParams, x: ArrayLike) -> Array:
    """The network's logits relu(x W1 + b1) W2 + b2: x (m, n) -> (m, k)."""
    a1 = relu(linear(x, param(params, "W1"), param(params, "b1")))
    return linear(a1, param(params, "W2"), param(params, "b2"))


def logreg_logits(params: _LogRegParams, x: ArrayLike) -> Array:
    """Logistic regression's logits x w + b: x (m, n) -> (m,)."""
    return jnp.add(jnp.matmul(x, param(params, "w")), param(params, "b"))


mlp_hvp = _hvp(mlp_loss, "mlp_hvp")
mlp_hvp.__doc__ = "H v of ``mlp_loss`` in params, by ``jax.jvp(jax.grad(mlp_loss))``."
logreg_hvp = _hvp(logreg_loss, "logreg_hvp")
logreg_hvp.__doc__ = "H v of ``logreg_loss`` in params, by ``jax.jvp(jax.grad(logreg_loss))``."
mlp_gnvp = _gnvp(mlp_logits, softmax_cross_entropy, "mlp_gnvp")
mlp_gnvp.__doc__ = "Gauss-Newton G v of ``mlp_loss`` (logits ``mlp_logits``), by jvp/vjp."
logreg_gnvp = _gnvp(logreg_logits, sigmoid_binary_cross_entropy, "logreg_gnvp")
logreg_gnvp.__doc__ = "Gauss-Newton G v of ``logreg_loss`` (logits ``logreg_logits``)."
