"""A zoo for the audit's ``where:``: backward functions with one wrong line, and correct twins.

Each buggy candidate is a multi-line backward function (or a layer's backward, a torch
Function, a forward/backward pair with a cache, a helper it calls) in which exactly one line is
wrong; that line carries the comment ``# BUG``. The audit must name that line, or say
``not located``; naming another line is the worst outcome. Correct look-alikes must pass (and
so have no ``where:``). The kinds follow the issue: the source document's network (ReLU),
a tanh network, logistic regression with a penalty, layer norm and batch norm, softmax and
attention-style rows, an unrolled RNN, a convolution via im2col, a torch Function, a cached
layer pair, helpers called from the backward; the wrong line sits at the first gradient line,
in a helper, in a forward recomputation (a mask, a derivative, a recomputed value) and at the
last line.

    python tests/locate_zoo.py     # prints the table, precision and recall of the named line
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from verification import reference
from verification.auditing import audit, audit_vjp, named_arrays

Array = NDArray[Any]
EPS = 1e-5


class Net(NamedTuple):
    """The network's parameters (W1 (n, h), b1 (h,), W2 (h, k), b2 (k,))."""

    W1: Any
    b1: Any
    W2: Any
    b2: Any


DIMS = {"m": [1, 2, 5], "n": [1, 3, 4], "h": [1, 2, 6], "k": [1, 3, 7]}


def _arrays(spec: dict[str, Any], **kw: Any) -> Any:
    """``named_arrays`` with the sizes of ``DIMS`` that the spec uses (naming others is an
    error)."""
    shapes = [s for v in spec.values() for s in (v.values() if isinstance(v, dict) else [v])]
    used = {
        d
        for shape in shapes
        if isinstance(shape, tuple | str)  # a fixed number (lam: 0.1) names no size
        for d in (shape if isinstance(shape, tuple) else shape.split(":")[0].split(","))
    }
    return named_arrays(spec, dims={d: s for d, s in DIMS.items() if d in used}, **kw)


"""Sizes per named dimension: 1 first (shrinking goes there), then sizes that let the second
input of the localisation have every size distinct (the default size profiles repeat sizes)."""


# -- the source document's network: relu, softmax cross-entropy ----------------------------


def net_problems() -> Any:
    spec = {
        "W1": ("n", "h"),
        "b1": ("h",),
        "W2": ("h", "k"),
        "b2": ("k",),
        "x": ("m", "n"),
        "y": ("m", "k"),
    }
    flat = _arrays(spec, kinds={"y": "onehot"}, bounds=(2.0,))
    return flat.map(lambda a: (Net(*a[:4]), a[4], a[5]))


def net_loss(params: Any, x: Any, y: Any) -> Any:
    return reference.mlp_loss(params, x, y)


def _softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def net_good(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = (p - y) / m
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ params.W2.T
    dz1 = da1 * (z1 > 0)
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return Net(dW1, db1, dW2, db2)


def net_no_m(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = p - y  # BUG
    dW2 = a1.T @ dz2 / m
    db2 = dz2.sum(axis=0) / m
    da1 = dz2 @ params.W2.T
    dz1 = da1 * (z1 > 0)
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return Net(dW1, db1, dW2, db2)


def net_sign(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = (y - p) / m  # BUG
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ params.W2.T
    dz1 = da1 * (z1 > 0)
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return Net(dW1, db1, dW2, db2)


def net_mask_without_bias(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    a1 = np.maximum(x @ params.W1 + params.b1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = (p - y) / m
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ params.W2.T
    z1 = x @ params.W1  # BUG
    mask = z1 > 0
    dz1 = da1 * mask
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return Net(dW1, db1, dW2, db2)


def net_mask_from_z2(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = (p - y) / m
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ params.W2.T
    dz1 = da1 * (a1 > 1)  # BUG
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return Net(dW1, db1, dW2, db2)


def net_dw1_from_a1(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = (p - y) / m
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ params.W2.T
    dz1 = da1 * (z1 > 0)
    dW1 = x.T @ da1  # BUG
    db1 = dz1.sum(axis=0)
    return Net(dW1, db1, dW2, db2)


def net_db1_mean(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = (p - y) / m
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ params.W2.T
    dz1 = da1 * (z1 > 0)
    dW1 = x.T @ dz1
    db1 = dz1.mean(axis=0)  # BUG
    return Net(dW1, db1, dW2, db2)


def net_da1_without_w2(params: Net, x: Array, y: Array) -> Net:
    m = x.shape[0]
    z1 = x @ params.W1 + params.b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ params.W2 + params.b2
    p = _softmax(z2)
    dz2 = (p - y) / m
    dW2 = a1.T @ dz2
    db2 = dz2.sum(axis=0)
    da1 = dz2 @ params.W2.T * 2.0  # BUG
    dz1 = da1 * (z1 > 0)
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return Net(dW1, db1, dW2, db2)


# -- a tanh network with a squared error (one hidden layer, no biases) -----------------------


def tanh_problems() -> Any:
    spec = {"x": ("m", "n"), "w1": ("n", "h"), "w2": ("h", "k"), "y": ("m", "k")}
    return _arrays(spec, bounds=(2.0,))


def tanh_loss(x: Any, w1: Any, w2: Any, y: Any) -> Any:
    z1 = x @ w1
    a1 = jnp.tanh(z1)
    z2 = a1 @ w2
    return jnp.sum((z2 - y) ** 2) / (2 * x.shape[0])


def tanh_good(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    z2 = a1 @ w2
    dz2 = (z2 - y) / m
    dw2 = a1.T @ dz2
    da1 = dz2 @ w2.T
    dz1 = da1 * (1 - a1**2)
    dw1 = x.T @ dz1
    return dw1, dw2


def tanh_step_skipped(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    z2 = a1 @ w2
    dz2 = (z2 - y) / m
    dw2 = a1.T @ dz2
    da1 = dz2 @ w2.T
    dz1 = da1  # BUG
    dw1 = x.T @ dz1
    return dw1, dw2


def tanh_wrong_derivative(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    z2 = a1 @ w2
    dz2 = (z2 - y) / m
    dw2 = a1.T @ dz2
    da1 = dz2 @ w2.T
    local = 1 - a1  # BUG
    dz1 = da1 * local
    dw1 = x.T @ dz1
    return dw1, dw2


def tanh_derivative_of_z(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    z1 = x @ w1
    a1 = np.tanh(z1)
    z2 = a1 @ w2
    dz2 = (z2 - y) / m
    dw2 = a1.T @ dz2
    da1 = dz2 @ w2.T
    dz1 = da1 * (1 - z1**2)  # BUG
    dw1 = x.T @ dz1
    return dw1, dw2


def tanh_dw2_last(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    z2 = a1 @ w2
    dz2 = (z2 - y) / m
    da1 = dz2 @ w2.T
    dz1 = da1 * (1 - a1**2)
    dw1 = x.T @ dz1
    dw2 = a1.T @ dz2 / m  # BUG
    return dw1, dw2


def _tanh_local(a: Array) -> Array:
    out: Array = 1 - a**2
    return out


def _tanh_local_wrong(a: Array) -> Array:
    out: Array = 1 - a**3  # BUG
    return out


def tanh_helper_good(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / m
    dz1 = (dz2 @ w2.T) * _tanh_local(a1)
    return x.T @ dz1, a1.T @ dz2


def tanh_helper_wrong(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / m
    local = _tanh_local_wrong(a1)
    dz1 = (dz2 @ w2.T) * local
    return x.T @ dz1, a1.T @ dz2


def _linear_backward(dz: Array, x: Array, w: Array) -> tuple[Array, Array]:
    return dz @ w.T, x.T @ dz


def _linear_backward_wrong(dz: Array, x: Array, w: Array) -> tuple[Array, Array]:
    dx = dz @ w.T
    dw = x.T @ dz * 0.5  # BUG
    return dx, dw


def tanh_layer_helpers(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / m
    da1, dw2 = _linear_backward(dz2, a1, w2)
    dz1 = da1 * (1 - a1**2)
    _, dw1 = _linear_backward_wrong(dz1, x, w1)
    return dw1, dw2


# -- logistic regression with an L2 penalty ------------------------------------------------


def logreg_problems() -> Any:
    spec = {"x": ("m", "n"), "w": ("n",), "b": (), "y": "m:(0,1)", "lam": 0.1}
    return _arrays(spec, bounds=(2.0,))


def logreg_loss(x: Any, w: Any, b: Any, y: Any, lam: Any) -> Any:
    z = x @ w + b
    return reference.sigmoid_binary_cross_entropy(z, y) + lam * jnp.sum(w**2)


def logreg_good(x: Array, w: Array, b: Array, y: Array, lam: float) -> tuple[Array, Array]:
    m = x.shape[0]
    p = 1 / (1 + np.exp(-(x @ w + b)))
    dz = (p - y) / m
    dw = x.T @ dz
    penalty = 2 * lam * w
    return dw + penalty, dz.sum()


def logreg_penalty_half(x: Array, w: Array, b: Array, y: Array, lam: float) -> tuple[Array, Array]:
    m = x.shape[0]
    p = 1 / (1 + np.exp(-(x @ w + b)))
    dz = (p - y) / m
    dw = x.T @ dz
    penalty = lam * w  # BUG
    return dw + penalty, dz.sum()


def logreg_no_m(x: Array, w: Array, b: Array, y: Array, lam: float) -> tuple[Array, Array]:
    p = 1 / (1 + np.exp(-(x @ w + b)))
    dz = p - y  # BUG
    dw = x.T @ dz
    penalty = 2 * lam * w
    return dw + penalty, dz.sum()


def logreg_sigmoid_sign(x: Array, w: Array, b: Array, y: Array, lam: float) -> tuple[Array, Array]:
    m = x.shape[0]
    p = 1 / (1 + np.exp(x @ w + b))  # BUG
    dz = (p - y) / m
    dw = x.T @ dz
    penalty = 2 * lam * w
    return dw + penalty, dz.sum()


def logreg_penalty_dropped(
    x: Array, w: Array, b: Array, y: Array, lam: float
) -> tuple[Array, Array]:
    m = x.shape[0]
    p = 1 / (1 + np.exp(-(x @ w + b)))
    dz = (p - y) / m
    dw = x.T @ dz
    return dw, dz.sum()  # BUG


# -- the network with params and gradients in dicts, an L2 penalty added in place ------------


def dict_net_problems() -> Any:
    spec = {
        "params": {"W1": ("n", "h"), "b1": ("h",), "W2": ("h", "k"), "b2": ("k",)},
        "x": ("m", "n"),
        "y": ("m", "k"),
        "reg": 0.1,
    }
    return _arrays(spec, kinds={"y": "onehot"}, bounds=(2.0,))


def dict_net_loss(params: Any, x: Any, y: Any, reg: Any) -> Any:
    penalty = jnp.sum(params["W1"] ** 2) + jnp.sum(params["W2"] ** 2)
    return reference.mlp_loss(params, x, y) + 0.5 * reg * penalty


def dict_net_good(params: dict[str, Array], x: Array, y: Array, reg: float) -> dict[str, Array]:
    h = np.maximum(x @ params["W1"] + params["b1"], 0)
    scores = _softmax(h @ params["W2"] + params["b2"])
    dscores = (scores - y) / x.shape[0]
    grads = {"W2": h.T @ dscores, "b2": dscores.sum(axis=0)}
    dhidden = dscores @ params["W2"].T
    dz = dhidden * (h > 0)
    grads["W1"] = x.T @ dz
    grads["b1"] = dz.sum(axis=0)
    grads["W1"] += reg * params["W1"]
    grads["W2"] += reg * params["W2"]
    return grads


def dict_net_penalty_twice(
    params: dict[str, Array], x: Array, y: Array, reg: float
) -> dict[str, Array]:
    h = np.maximum(x @ params["W1"] + params["b1"], 0)
    scores = _softmax(h @ params["W2"] + params["b2"])
    dscores = (scores - y) / x.shape[0]
    grads = {"W2": h.T @ dscores, "b2": dscores.sum(axis=0)}
    dhidden = dscores @ params["W2"].T
    dz = dhidden * (h > 0)
    grads["W1"] = x.T @ dz
    grads["b1"] = dz.sum(axis=0)
    grads["W1"] += reg * params["W1"]
    grads["W2"] += 2 * reg * params["W2"]  # BUG
    return grads


def dict_net_unmasked(params: dict[str, Array], x: Array, y: Array, reg: float) -> dict[str, Array]:
    h = np.maximum(x @ params["W1"] + params["b1"], 0)
    scores = _softmax(h @ params["W2"] + params["b2"])
    dscores = (scores - y) / x.shape[0]
    grads = {"W2": h.T @ dscores, "b2": dscores.sum(axis=0)}
    dhidden = dscores @ params["W2"].T
    dz = dhidden * (h > 0)
    grads["W1"] = x.T @ dhidden  # BUG
    grads["b1"] = dz.sum(axis=0)
    grads["W1"] += reg * params["W1"]
    grads["W2"] += reg * params["W2"]
    return grads


def dict_net_scores_sign(
    params: dict[str, Array], x: Array, y: Array, reg: float
) -> dict[str, Array]:
    h = np.maximum(x @ params["W1"] + params["b1"], 0)
    scores = _softmax(h @ params["W2"] + params["b2"])
    dscores = (y - scores) / x.shape[0]  # BUG
    grads = {"W2": h.T @ dscores, "b2": dscores.sum(axis=0)}
    dhidden = dscores @ params["W2"].T
    dz = dhidden * (h > 0)
    grads["W1"] = x.T @ dz
    grads["b1"] = dz.sum(axis=0)
    grads["W1"] += reg * params["W1"]
    grads["W2"] += reg * params["W2"]
    return grads


# -- layers as objects: each keeps its input and its gradients on itself (self.dW = ...) ------


class _Affine:
    def __init__(self, w: Array, b: Array) -> None:
        self.w, self.b = w, b

    def forward(self, x: Array) -> Array:
        self.x = x
        return x @ self.w + self.b

    def backward(self, dout: Array) -> Array:
        self.dw = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.w.T


class _AffineWrong(_Affine):
    def backward(self, dout: Array) -> Array:
        self.dw = self.x.T @ dout
        self.db = dout.mean(axis=0)  # BUG
        return dout @ self.w.T


class _Relu:
    def forward(self, z: Array) -> Array:
        self.mask = z > 0
        return z * self.mask

    def backward(self, dout: Array) -> Array:
        return dout * self.mask


def _objects_net(first: _Affine, params: Net, x: Array, y: Array) -> Net:
    act, second = _Relu(), _Affine(params.W2, params.b2)
    p = _softmax(second.forward(act.forward(first.forward(x))))
    first.backward(act.backward(second.backward((p - y) / x.shape[0])))
    return Net(first.dw, first.db, second.dw, second.db)


def objects_good(params: Net, x: Array, y: Array) -> Net:
    return _objects_net(_Affine(params.W1, params.b1), params, x, y)


def objects_db_mean(params: Net, x: Array, y: Array) -> Net:
    return _objects_net(_AffineWrong(params.W1, params.b1), params, x, y)


# -- layer norm and batch norm (vjp audits, with a forward that returns a cache) ------------


def norm_problems() -> Any:
    return _arrays({"x": ("m", "n"), "g": ("n",), "b": ("n",)}, bounds=(2.0,))


def layer_norm_ref(x: Any, g: Any, b: Any) -> Any:
    mu = jnp.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    var = jnp.mean(xc**2, axis=-1, keepdims=True)
    xhat = xc / jnp.sqrt(var + EPS)
    return xhat * g + b


def layer_norm_forward(x: Array, g: Array, b: Array) -> tuple[Array, Any]:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc**2).mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt(var + EPS)
    xhat = xc * inv
    return xhat * g + b, (xhat, inv, g)


def layer_norm_forward_no_eps(x: Array, g: Array, b: Array) -> tuple[Array, Any]:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc**2).mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt(var + 1.0)  # BUG
    xhat = xc * inv
    return xhat * g + b, (xhat, inv, g)


def layer_norm_backward(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    xhat, inv, g = cache
    n = xhat.shape[-1]
    dxhat = dout * g
    total = dxhat.sum(axis=-1, keepdims=True)
    along = (dxhat * xhat).sum(axis=-1, keepdims=True)
    dx = inv / n * (n * dxhat - total - xhat * along)
    dg = (dout * xhat).sum(axis=0)
    db = dout.sum(axis=0)
    return dx, dg, db


def layer_norm_backward_no_variance(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    xhat, inv, g = cache
    n = xhat.shape[-1]
    dxhat = dout * g
    total = dxhat.sum(axis=-1, keepdims=True)
    dx = inv / n * (n * dxhat - total)  # BUG
    dg = (dout * xhat).sum(axis=0)
    db = dout.sum(axis=0)
    return dx, dg, db


def layer_norm_backward_dxhat(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    xhat, inv, _g = cache
    n = xhat.shape[-1]
    dxhat = dout  # BUG
    total = dxhat.sum(axis=-1, keepdims=True)
    along = (dxhat * xhat).sum(axis=-1, keepdims=True)
    dx = inv / n * (n * dxhat - total - xhat * along)
    dg = (dout * xhat).sum(axis=0)
    db = dout.sum(axis=0)
    return dx, dg, db


def layer_norm_backward_dg(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    xhat, inv, g = cache
    n = xhat.shape[-1]
    dxhat = dout * g
    total = dxhat.sum(axis=-1, keepdims=True)
    along = (dxhat * xhat).sum(axis=-1, keepdims=True)
    dx = inv / n * (n * dxhat - total - xhat * along)
    dg = (dout * xhat * g).sum(axis=0)  # BUG
    db = dout.sum(axis=0)
    return dx, dg, db


def batch_norm_ref(x: Any, g: Any, b: Any) -> Any:
    mu = jnp.mean(x, axis=0)
    xc = x - mu
    var = jnp.mean(xc**2, axis=0)
    xhat = xc / jnp.sqrt(var + EPS)
    return xhat * g + b


def batch_norm_forward(x: Array, g: Array, b: Array) -> tuple[Array, Any]:
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc**2).mean(axis=0)
    inv = 1 / np.sqrt(var + EPS)
    xhat = xc * inv
    return xhat * g + b, (xhat, inv, g)


def batch_norm_backward(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    xhat, inv, g = cache
    m = xhat.shape[0]
    dxhat = dout * g
    dx = inv / m * (m * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batch_norm_backward_wrong_axis(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    xhat, inv, g = cache
    m = xhat.shape[0]
    dxhat = dout * g
    centred = dxhat - dxhat.mean(axis=0)
    dx = inv * (centred - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))  # BUG
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0) + 0 * m


def batch_norm_backward_db(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    xhat, inv, g = cache
    m = xhat.shape[0]
    dxhat = dout * g
    dx = inv / m * (m * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    db = dout.mean(axis=0)  # BUG
    return dx, (dout * xhat).sum(axis=0), db


# -- softmax and attention-style rows (vjp audits) ------------------------------------------


def rows_problems() -> Any:
    return _arrays({"z": ("m", "k")}, bounds=(2.0,))


def softmax_ref(z: Any) -> Any:
    return jax.nn.softmax(z, axis=-1)


def softmax_backward(dout: Array, z: Array) -> Array:
    p = _softmax(z)
    inner = (dout * p).sum(axis=-1, keepdims=True)
    dz: Array = p * (dout - inner)
    return dz


def softmax_backward_total(dout: Array, z: Array) -> Array:
    p = _softmax(z)
    inner = (dout * p).sum()  # BUG
    dz: Array = p * (dout - inner)
    return dz


def softmax_backward_no_p(dout: Array, z: Array) -> Array:
    p = _softmax(z)
    inner = (dout * p).sum(axis=-1, keepdims=True)
    dz: Array = dout - inner  # BUG
    return dz


def attention_problems() -> Any:
    dims = {"t": [1, 2, 5], "d": [1, 3, 4], "s": [1, 2, 6], "e": [1, 3, 7]}
    return named_arrays(
        {"q": ("t", "d"), "k": ("s", "d"), "v": ("s", "e")}, dims=dims, bounds=(1.5,)
    )


def attention_ref(q: Any, k: Any, v: Any) -> Any:
    scores = q @ k.T / jnp.sqrt(q.shape[-1])
    weights = jax.nn.softmax(scores, axis=-1)
    return weights @ v


def attention_backward(dout: Array, q: Array, k: Array, v: Array) -> tuple[Array, Array, Array]:
    scale = 1 / np.sqrt(q.shape[-1])
    a = _softmax(q @ k.T * scale)
    da = dout @ v.T
    ds = a * (da - (da * a).sum(axis=-1, keepdims=True))
    dq = ds @ k * scale
    dk = ds.T @ q * scale
    dv = a.T @ dout
    return dq, dk, dv


def attention_backward_no_scale(
    dout: Array, q: Array, k: Array, v: Array
) -> tuple[Array, Array, Array]:
    scale = 1 / np.sqrt(q.shape[-1])
    a = _softmax(q @ k.T * scale)
    da = dout @ v.T
    ds = a * (da - (da * a).sum(axis=-1, keepdims=True))
    dq = ds @ k  # BUG
    dk = ds.T @ q * scale
    dv = a.T @ dout
    return dq, dk, dv


def attention_backward_ds(dout: Array, q: Array, k: Array, v: Array) -> tuple[Array, Array, Array]:
    scale = 1 / np.sqrt(q.shape[-1])
    a = _softmax(q @ k.T * scale)
    da = dout @ v.T
    ds = a * da  # BUG
    dq = ds @ k * scale
    dk = ds.T @ q * scale
    dv = a.T @ dout
    return dq, dk, dv


def attention_backward_weights(
    dout: Array, q: Array, k: Array, v: Array
) -> tuple[Array, Array, Array]:
    scale = 1 / np.sqrt(q.shape[-1])
    a = _softmax(q @ k.T)  # BUG
    da = dout @ v.T
    ds = a * (da - (da * a).sum(axis=-1, keepdims=True))
    dq = ds @ k * scale
    dk = ds.T @ q * scale
    dv = a.T @ dout
    return dq, dk, dv


# -- an unrolled RNN (three steps): h_t = tanh(x_t Wx + h_{t-1} Wh) -------------------------


def rnn_problems() -> Any:
    spec = {
        "h0": ("m", "h"),
        "wx": ("n", "h"),
        "wh": ("h", "h"),
        "x1": ("m", "n"),
        "x2": ("m", "n"),
        "x3": ("m", "n"),
        "c": ("m", "h"),
    }
    return _arrays(spec, bounds=(1.0,))


def rnn_loss(h0: Any, wx: Any, wh: Any, x1: Any, x2: Any, x3: Any, c: Any) -> Any:
    h1 = jnp.tanh(x1 @ wx + h0 @ wh)
    h2 = jnp.tanh(x2 @ wx + h1 @ wh)
    h3 = jnp.tanh(x3 @ wx + h2 @ wh)
    return jnp.sum(h3 * c)


def rnn_good(h0: Array, wx: Array, wh: Array, x1: Array, x2: Array, x3: Array, c: Array) -> Array:
    h1 = np.tanh(x1 @ wx + h0 @ wh)
    h2 = np.tanh(x2 @ wx + h1 @ wh)
    h3 = np.tanh(x3 @ wx + h2 @ wh)
    dz3 = c * (1 - h3**2)
    dh2 = dz3 @ wh.T
    dz2 = dh2 * (1 - h2**2)
    dh1 = dz2 @ wh.T
    dz1 = dh1 * (1 - h1**2)
    dh0: Array = dz1 @ wh.T
    return dh0


def rnn_middle_step(
    h0: Array, wx: Array, wh: Array, x1: Array, x2: Array, x3: Array, c: Array
) -> Array:
    h1 = np.tanh(x1 @ wx + h0 @ wh)
    h2 = np.tanh(x2 @ wx + h1 @ wh)
    h3 = np.tanh(x3 @ wx + h2 @ wh)
    dz3 = c * (1 - h3**2)
    dh2 = dz3 @ wh.T
    dz2 = dh2 * (1 - h1**2)  # BUG
    dh1 = dz2 @ wh.T
    dz1 = dh1 * (1 - h1**2)
    dh0: Array = dz1 @ wh.T
    return dh0


def rnn_untransposed(
    h0: Array, wx: Array, wh: Array, x1: Array, x2: Array, x3: Array, c: Array
) -> Array:
    h1 = np.tanh(x1 @ wx + h0 @ wh)
    h2 = np.tanh(x2 @ wx + h1 @ wh)
    h3 = np.tanh(x3 @ wx + h2 @ wh)
    dz3 = c * (1 - h3**2)
    dh2 = dz3 @ wh.T
    dz2 = dh2 * (1 - h2**2)
    dh1 = dz2 @ wh  # BUG
    dz1 = dh1 * (1 - h1**2)
    dh0: Array = dz1 @ wh.T
    return dh0


def rnn_first_step(
    h0: Array, wx: Array, wh: Array, x1: Array, x2: Array, x3: Array, c: Array
) -> Array:
    h1 = np.tanh(x1 @ wx + h0 @ wh)
    h2 = np.tanh(x2 @ wx + h1 @ wh)
    h3 = np.tanh(x3 @ wx + h2 @ wh)
    dz3 = c * (1 - h3)  # BUG
    dh2 = dz3 @ wh.T
    dz2 = dh2 * (1 - h2**2)
    dh1 = dz2 @ wh.T
    dz1 = dh1 * (1 - h1**2)
    dh0: Array = dz1 @ wh.T
    return dh0


# -- a 1-D convolution via im2col (vjp audit of the weights) --------------------------------


def conv_problems() -> Any:
    return named_arrays(
        {"x": ("m", "l"), "w": ("r", "c")},
        dims={"m": [1, 2, 4], "l": [3, 5, 6], "r": [3], "c": [1, 2, 3]},
        bounds=(2.0,),
    )


def conv_ref(x: Any, w: Any) -> Any:
    windows = jnp.stack([x[:, i : i + 3] for i in range(x.shape[1] - 2)], axis=1)
    return jnp.einsum("mpk,kc->mpc", windows, w)


def _im2col(x: Array) -> Array:
    return np.stack([x[:, i : i + 3] for i in range(x.shape[1] - 2)], axis=1)


def conv_backward_w(dout: Array, x: Array, w: Array) -> Array:
    cols = _im2col(x)
    dw: Array = np.einsum("mpk,mpc->kc", cols, dout)
    return dw


def conv_backward_w_flipped(dout: Array, x: Array, w: Array) -> Array:
    cols = _im2col(x)[:, :, ::-1]  # BUG
    dw: Array = np.einsum("mpk,mpc->kc", cols, dout)
    return dw


def conv_backward_w_mean(dout: Array, x: Array, w: Array) -> Array:
    cols = _im2col(x)
    per_sample = np.einsum("mpk,mpc->mkc", cols, dout)
    dw: Array = per_sample.mean(axis=0)  # BUG
    return dw


# -- a torch Function ------------------------------------------------------------------------


def _torch_function(wrong: bool) -> Any:
    import torch

    class TanhLinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any) -> Any:
            out = torch.tanh(x @ w)
            ctx.save_for_backward(x, w, out)
            return out

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:
            x, w, out = ctx.saved_tensors
            dz = grad_out * (1 - out**2)
            return dz @ w.T, x.T @ dz

    class TanhLinearWrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any) -> Any:
            out = torch.tanh(x @ w)
            ctx.save_for_backward(x, w, out)
            return out

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:
            x, w, out = ctx.saved_tensors
            dz = grad_out * (1 - out)  # BUG
            return dz @ w.T, x.T @ dz

    return TanhLinearWrong if wrong else TanhLinear


def tanh_linear_ref(x: Any, w: Any) -> Any:
    return jnp.tanh(x @ w)


def linear_problems() -> Any:
    return _arrays({"x": ("m", "n"), "w": ("n", "h")}, bounds=(2.0,))


# -- a cached layer pair: forward(x, w, b) -> (out, cache), backward(dout, cache) -----------


def sigmoid_layer_ref(x: Any, w: Any, b: Any) -> Any:
    return jax.nn.sigmoid(x @ w + b)


def sigmoid_layer_problems() -> Any:
    spec = {"x": ("m", "n"), "w": ("n", "h"), "b": ("h",)}
    return _arrays(spec, bounds=(2.0,))


def sigmoid_layer_forward(x: Array, w: Array, b: Array) -> tuple[Array, Any]:
    s = 1 / (1 + np.exp(-(x @ w + b)))
    return s, (x, w, s)


def sigmoid_layer_backward(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    x, w, s = cache
    dz = dout * s * (1 - s)
    return dz @ w.T, x.T @ dz, dz.sum(axis=0)


def sigmoid_layer_backward_db(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    x, w, s = cache
    dz = dout * s * (1 - s)
    db = dout.sum(axis=0)  # BUG
    return dz @ w.T, x.T @ dz, db


def sigmoid_layer_backward_local(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    x, w, s = cache
    local = s * (1 + s)  # BUG
    dz = dout * local
    return dz @ w.T, x.T @ dz, dz.sum(axis=0)


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A candidate, what to audit it against, and where its wrong line is (if any).

    kind : "audit" (a gradient of a loss) or "vjp" (a layer's backward).
    bug_in : the function (or class) whose ``# BUG`` line is wrong; None for a correct case.
    """

    candidate: Any
    reference: Callable[..., Any]
    problems: Callable[[], Any]
    kind: str = "audit"
    argnums: int | tuple[int, ...] = 0
    forward: Callable[..., Any] | None = None
    bug_in: Any = None
    options: dict[str, Any] = field(default_factory=dict)


def bug_line(case: Case) -> tuple[str, int] | None:
    """(file, line) of the ``# BUG`` comment in ``case.bug_in``, or None."""
    if case.bug_in is None:
        return None
    target = case.bug_in
    lines, first = inspect.getsourcelines(target)
    for offset, text in enumerate(lines):
        if "# BUG" in text:
            return inspect.getsourcefile(target) or "", first + offset
    raise ValueError(f"{target!r} has no # BUG line")


def _case(candidate: Any, *rest: Any, bug: Any = True, **kw: Any) -> Case:
    bug_in = (candidate if bug is True else bug) if bug is not None else None
    return Case(candidate, *rest, bug_in=bug_in, **kw)


def _cases() -> dict[str, Case]:
    net = (net_loss, net_problems)
    tanh = (tanh_loss, tanh_problems)
    logreg = (logreg_loss, logreg_problems)
    rnn = (rnn_loss, rnn_problems)
    ln = (layer_norm_ref, norm_problems, "vjp")
    bn = (batch_norm_ref, norm_problems, "vjp")
    soft = (softmax_ref, rows_problems, "vjp")
    att = (attention_ref, attention_problems, "vjp")
    conv = (conv_ref, conv_problems, "vjp")
    sig = (sigmoid_layer_ref, sigmoid_layer_problems, "vjp")
    dnet = (dict_net_loss, dict_net_problems)
    cases = {
        "net: 1/m missing (first gradient line)": _case(net_no_m, *net),
        "net: sign of dz2": _case(net_sign, *net),
        "net: mask recomputed without b1": _case(net_mask_without_bias, *net),
        "net: mask of a1 > 1": _case(net_mask_from_z2, *net),
        "net: dW1 from da1": _case(net_dw1_from_a1, *net),
        "net: db1 a mean (last line)": _case(net_db1_mean, *net),
        "net: da1 doubled": _case(net_da1_without_w2, *net),
        "dict net: penalty doubled in place (+=)": _case(dict_net_penalty_twice, *dnet),
        "dict net: dW1 from the unmasked gradient": _case(dict_net_unmasked, *dnet),
        "dict net: sign of dscores": _case(dict_net_scores_sign, *dnet),
        "layer objects: db1 a mean (self.db)": _case(
            objects_db_mean, *net, bug=_AffineWrong.backward
        ),
        "tanh: step through tanh skipped": _case(tanh_step_skipped, *tanh, argnums=(1, 2)),
        "tanh: derivative 1 - a": _case(tanh_wrong_derivative, *tanh, argnums=(1, 2)),
        "tanh: derivative of z": _case(tanh_derivative_of_z, *tanh, argnums=(1, 2)),
        "tanh: dw2 divided twice (last line)": _case(tanh_dw2_last, *tanh, argnums=(1, 2)),
        "tanh: helper's derivative": _case(
            tanh_helper_wrong, *tanh, argnums=(1, 2), bug=_tanh_local_wrong
        ),
        "tanh: linear helper's dw": _case(
            tanh_layer_helpers, *tanh, argnums=(1, 2), bug=_linear_backward_wrong
        ),
        "logreg: penalty lam*w": _case(logreg_penalty_half, *logreg, argnums=(1, 2)),
        "logreg: 1/m missing": _case(logreg_no_m, *logreg, argnums=(1, 2)),
        "logreg: sigmoid of -z": _case(logreg_sigmoid_sign, *logreg, argnums=(1, 2)),
        "logreg: penalty dropped (last line)": _case(
            logreg_penalty_dropped, *logreg, argnums=(1, 2)
        ),
        "layer norm: variance term dropped": _case(
            layer_norm_backward_no_variance, *ln, forward=layer_norm_forward
        ),
        "layer norm: dxhat without g": _case(
            layer_norm_backward_dxhat, *ln, forward=layer_norm_forward
        ),
        "layer norm: dg times g": _case(
            layer_norm_backward_dg, *ln, argnums=1, forward=layer_norm_forward
        ),
        "layer norm: forward's eps": _case(
            layer_norm_backward,
            *ln,
            forward=layer_norm_forward_no_eps,
            bug=layer_norm_forward_no_eps,
        ),
        "batch norm: mean over the wrong axis": _case(
            batch_norm_backward_wrong_axis, *bn, forward=batch_norm_forward
        ),
        "batch norm: db a mean": _case(
            batch_norm_backward_db, *bn, argnums=2, forward=batch_norm_forward
        ),
        "softmax: total sum": _case(softmax_backward_total, *soft),
        "softmax: p dropped (last line)": _case(softmax_backward_no_p, *soft),
        "attention: dq unscaled": _case(attention_backward_no_scale, *att),
        "attention: ds without the row term": _case(attention_backward_ds, *att, argnums=1),
        "attention: weights recomputed unscaled": _case(
            attention_backward_weights, *att, argnums=2
        ),
        "rnn: middle step's derivative": _case(rnn_middle_step, *rnn),
        "rnn: wh not transposed": _case(rnn_untransposed, *rnn),
        "rnn: first gradient line": _case(rnn_first_step, *rnn),
        "conv: im2col window flipped": _case(conv_backward_w_flipped, *conv, argnums=1),
        "conv: dw averaged over samples": _case(conv_backward_w_mean, *conv, argnums=1),
        "cached pair: db from dout": _case(
            sigmoid_layer_backward_db, *sig, argnums=2, forward=sigmoid_layer_forward
        ),
        "cached pair: local derivative s(1+s)": _case(
            sigmoid_layer_backward_local, *sig, argnums=1, forward=sigmoid_layer_forward
        ),
    }
    correct = {
        "correct: net": _case(net_good, *net, bug=None),
        "correct: dict net": _case(dict_net_good, *dnet, bug=None),
        "correct: layer objects": _case(objects_good, *net, bug=None),
        "correct: tanh": _case(tanh_good, *tanh, argnums=(1, 2), bug=None),
        "correct: tanh with helpers": _case(tanh_helper_good, *tanh, argnums=(1, 2), bug=None),
        "correct: logreg with penalty": _case(logreg_good, *logreg, argnums=(1, 2), bug=None),
        "correct: layer norm": _case(
            layer_norm_backward, *ln, forward=layer_norm_forward, bug=None
        ),
        "correct: batch norm": _case(
            batch_norm_backward, *bn, forward=batch_norm_forward, bug=None
        ),
        "correct: softmax": _case(softmax_backward, *soft, bug=None),
        "correct: attention": _case(attention_backward, *att, argnums=(0, 1, 2), bug=None),
        "correct: rnn": _case(rnn_good, *rnn, bug=None),
        "correct: conv": _case(conv_backward_w, *conv, argnums=1, bug=None),
        "correct: cached pair": _case(
            sigmoid_layer_backward,
            *sig,
            argnums=(0, 1, 2),
            forward=sigmoid_layer_forward,
            bug=None,
        ),
    }
    try:
        import torch  # noqa: F401
    except ImportError:
        return {**cases, **correct}
    cases["torch Function: 1 - out"] = _case(
        _torch_function(True),
        tanh_linear_ref,
        linear_problems,
        "vjp",
        argnums=1,
        bug=_torch_function(True).backward,
    )
    correct["correct: torch Function"] = _case(
        _torch_function(False), tanh_linear_ref, linear_problems, "vjp", argnums=(0, 1), bug=None
    )
    return {**cases, **correct}


CASES = _cases()


_REPORTS: dict[tuple[int, int, bool], Any] = {}
"""Reports made in this process: the zoo's test and its recorded texts (tests/report_texts.py)
audit the same cases; in one pytest worker (``xdist_group("zoo-locate")``) once."""


def run(case: Case, seed: int = 0, locate: bool = True) -> Any:
    """The audit's report for ``case`` (made once a process: an audit is deterministic)."""
    key = (id(case), seed, locate)
    if key not in _REPORTS:
        _REPORTS[key] = _run(case, seed, locate)
    return _REPORTS[key]


def _run(case: Case, seed: int, locate: bool) -> Any:
    if case.kind == "vjp":
        return audit_vjp(
            case.candidate,
            case.reference,
            case.problems(),
            forward=case.forward,
            argnums=case.argnums,
            max_examples=40,
            seed=seed,
            locate=locate,
        )
    return audit(
        case.candidate,
        case.reference,
        case.problems(),
        argnums=case.argnums,
        max_examples=40,
        seed=seed,
        locate=locate,
    )


def outcome(case: Case, report: Any) -> str:
    """ "right", "wrong line", "not located", "missed" (a buggy case passed), "passed" (a correct
    case passed), "false alarm" (a correct case failed) or "where on a correct case"."""
    expected = bug_line(case)
    where: Any = getattr(report, "where", None)
    if expected is None:
        if report.passed:
            return "passed"
        return "where on a correct case" if hasattr(where, "file") else "false alarm"
    if report.passed:
        return "missed"
    if not hasattr(where, "file"):
        return "not located"
    same_file = where.file == expected[0]
    return "right" if same_file and where.line == expected[1] else "wrong line"


def score(outcomes: dict[str, str]) -> tuple[int, int, int, int]:
    """(right, wrong line, not located, buggy cases) over the buggy cases."""
    buggy = [o for n, o in outcomes.items() if CASES[n].bug_in is not None]
    return (
        buggy.count("right"),
        buggy.count("wrong line"),
        buggy.count("not located"),
        len(buggy),
    )


def main() -> None:
    outcomes: dict[str, str] = {}
    print(f"{'case':48} {'line named':>30}  outcome")
    for name, case in CASES.items():
        report = run(case)
        outcomes[name] = outcome(case, report)
        where: Any = getattr(report, "where", None)
        named = f"line {where.line}" if hasattr(where, "line") else "-"
        if where is not None and not hasattr(where, "line"):
            named = "not located"
        expected = bug_line(case)
        wanted = f" (bug at {expected[1]})" if expected else ""
        print(f"{name:48} {named + wanted:>30}  {outcomes[name]}")
        if "-v" in sys.argv and where is not None:
            print("    " + "\n    ".join(where.lines()))
    right, wrong, unlocated, total = score(outcomes)
    precision = right / (right + wrong) if right + wrong else 1.0
    print(f"\nbuggy cases {total}: right line {right}, wrong line {wrong}, not located {unlocated}")
    print(f"precision of the named line {precision:.2f}, recall {right / total:.2f}")
    correct = [o for n, o in outcomes.items() if CASES[n].bug_in is None]
    print(f"correct cases {len(correct)}: passed {correct.count('passed')}")


if __name__ == "__main__":
    main()
