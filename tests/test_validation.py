"""Every class of bad input at every public entry point of manual_bp.

Each case asserts the error type and that the message names the argument and the shapes (or
the offending value), so that a user reading only the message can find the mistake. The
classes, from issue 2: shapes that numpy would broadcast, wrong rank, empty batch, params of
the wrong type / shapes / dtypes, non-numeric arrays, non-finite values, labels out of range,
bad learning rate, bad generator, bad k.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import manual_bp as mb

Thunk = Callable[[], object]


def _raises(exc: type[Exception], thunk: Thunk, *fragments: str) -> None:
    """``thunk()`` raises exactly ``exc`` (not a subclass) whose message holds every fragment."""
    with pytest.raises(exc) as info:
        thunk()
    assert type(info.value) is exc, type(info.value)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def _f(*shape: int, value: float = 0.5, dtype: Any = np.float64) -> np.ndarray[Any, Any]:
    return np.full(shape, value, dtype=dtype)


def _mlp(n: int = 3, h: int = 4, k: int = 2, dtype: Any = np.float64) -> mb.MLPParams:
    return mb.MLPParams(
        _f(n, h, dtype=dtype), _f(h, dtype=dtype), _f(h, k, dtype=dtype), _f(k, dtype=dtype)
    )


def _logreg(n: int = 3, dtype: Any = np.float64) -> mb.LogRegParams:
    return mb.LogRegParams(_f(n, dtype=dtype), np.array(0.0, dtype=dtype))


def _with_nan(arr: np.ndarray[Any, Any], index: tuple[int, ...], value: float = np.nan) -> Any:
    out = arr.copy()
    out[index] = value
    return out


# --------------------------------------------------------------------------------------------
# Non-numeric input: TypeError naming the argument and the dtype, at every array argument
# --------------------------------------------------------------------------------------------

ACTIVATIONS = [mb.relu, mb.relu_grad, mb.sigmoid, mb.sigmoid_grad, mb.softmax, mb.softmax_jacobian]
NON_NUMERIC = {
    "strings": np.array([["a", "b"]]),
    "objects": np.array([[1.0, None]], dtype=object),
    "complex": np.array([[1.0 + 1j, 0.0]]),
    "datetimes": np.array([[1, 2]], dtype="datetime64[s]"),
}


@pytest.mark.parametrize("fn", ACTIVATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", NON_NUMERIC)
def test_activations_reject_non_numeric(fn: Callable[[Any], Any], kind: str) -> None:
    bad = NON_NUMERIC[kind]
    _raises(TypeError, lambda: fn(bad), "z must be a real numeric array", str(bad.dtype), "(1, 2)")


LOSSES = [
    mb.cross_entropy,
    mb.cross_entropy_grad,
    mb.softmax_cross_entropy,
    mb.softmax_cross_entropy_grad,
    mb.binary_cross_entropy,
    mb.binary_cross_entropy_grad,
    mb.sigmoid_binary_cross_entropy,
    mb.sigmoid_binary_cross_entropy_grad,
]
#: The name each loss gives its first argument.
FIRST = {
    mb.cross_entropy: "p",
    mb.cross_entropy_grad: "p",
    mb.softmax_cross_entropy: "z",
    mb.softmax_cross_entropy_grad: "z",
    mb.binary_cross_entropy: "p",
    mb.binary_cross_entropy_grad: "p",
    mb.sigmoid_binary_cross_entropy: "z",
    mb.sigmoid_binary_cross_entropy_grad: "z",
}
#: Losses on probabilities: the first argument must lie in [0, 1].
ON_PROBABILITIES = [
    mb.cross_entropy,
    mb.cross_entropy_grad,
    mb.binary_cross_entropy,
    mb.binary_cross_entropy_grad,
]
#: Binary losses: targets must lie in [0, 1] and (m,) is allowed.
BINARY = [
    mb.binary_cross_entropy,
    mb.binary_cross_entropy_grad,
    mb.sigmoid_binary_cross_entropy,
    mb.sigmoid_binary_cross_entropy_grad,
]
loss_ids = [f.__name__ for f in LOSSES]


@pytest.mark.parametrize("fn", LOSSES, ids=loss_ids)
@pytest.mark.parametrize("kind", NON_NUMERIC)
@pytest.mark.parametrize("which", [0, 1])
def test_losses_reject_non_numeric(fn: Callable[..., Any], kind: str, which: int) -> None:
    args = [_f(1, 2), _f(1, 2)]
    args[which] = NON_NUMERIC[kind]
    name = FIRST[fn] if which == 0 else "y"
    _raises(TypeError, lambda: fn(*args), f"{name} must be a real numeric array", "(1, 2)")


def test_softmax_vjp_rejects_non_numeric_cotangent() -> None:
    _raises(
        TypeError,
        lambda: mb.softmax_vjp(_f(1, 2), NON_NUMERIC["complex"]),
        "g must be",
        "complex128",
    )
    _raises(TypeError, lambda: mb.softmax_vjp(NON_NUMERIC["strings"], _f(1, 2)), "z must be", "<U1")


@pytest.mark.parametrize("which", [0, 1, 2])
def test_linear_rejects_non_numeric(which: int) -> None:
    args: list[Any] = [_f(2, 3), _f(3, 4), _f(4)]
    args[which] = args[which].astype(complex)
    name = "xwb"[which]
    _raises(
        TypeError, lambda: mb.linear(*args), f"{name} must be a real numeric array", "complex128"
    )


@pytest.mark.parametrize("which", [0, 1, 2])
def test_linear_backward_rejects_non_numeric(which: int) -> None:
    args: list[Any] = [_f(2, 4), _f(2, 3), _f(3, 4)]
    args[which] = args[which].astype(object)
    name = ["dz", "x", "w"][which]
    _raises(
        TypeError,
        lambda: mb.linear_backward(*args),
        f"{name} must be a real numeric array",
        "object",
    )


# --------------------------------------------------------------------------------------------
# Activations: rank, empty class axis, shapes, non-finite values
# --------------------------------------------------------------------------------------------

SOFTMAXES = [mb.softmax, mb.softmax_jacobian]


@pytest.mark.parametrize("fn", SOFTMAXES, ids=lambda f: f.__name__)
def test_softmax_family_rejects_scalars(fn: Callable[[Any], Any]) -> None:
    _raises(ValueError, lambda: fn(np.float64(1.0)), "z must have shape (..., k)", "0-d", "()")


@pytest.mark.parametrize("fn", SOFTMAXES, ids=lambda f: f.__name__)
def test_softmax_family_rejects_empty_class_axis(fn: Callable[[Any], Any]) -> None:
    _raises(ValueError, lambda: fn(np.zeros((3, 0))), "z has shape (3, 0)", "k must be >= 1")


def test_softmax_vjp_rejects_scalars_and_empty_class_axis() -> None:
    _raises(ValueError, lambda: mb.softmax_vjp(np.float64(0), np.float64(0)), "z must have shape")
    _raises(ValueError, lambda: mb.softmax_vjp(np.zeros((2, 0)), np.zeros((2, 0))), "(2, 0)")


@pytest.mark.parametrize(
    ("z_shape", "g_shape"),
    [((2, 3), (2, 1)), ((2, 3), (3,)), ((2, 3), (1, 3)), ((2, 3), (3, 2)), ((3,), (2, 3))],
)
def test_softmax_vjp_rejects_shapes_numpy_would_broadcast(
    z_shape: tuple[int, ...], g_shape: tuple[int, ...]
) -> None:
    _raises(
        ValueError,
        lambda: mb.softmax_vjp(_f(*z_shape), _f(*g_shape)),
        f"g has shape {g_shape}",
        f"z has shape {z_shape}",
    )


@pytest.mark.parametrize(
    "fn", [mb.relu_grad, mb.sigmoid_grad, mb.softmax_jacobian], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_activation_derivatives_reject_non_finite(fn: Callable[[Any], Any], value: float) -> None:
    z = _with_nan(_f(2, 3), (1, 2), value)
    _raises(ValueError, lambda: fn(z), "z must be finite", "z[1, 2] = ", "(2, 3)")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", [0, 1])
def test_softmax_vjp_rejects_non_finite(value: float, which: int) -> None:
    args = [_f(2, 3), _f(2, 3)]
    args[which] = _with_nan(args[which], (0, 1), value)
    name = "zg"[which]
    _raises(ValueError, lambda: mb.softmax_vjp(*args), f"{name} must be finite", f"{name}[0, 1]")


def test_non_finite_message_points_at_the_first_bad_element() -> None:
    z = _f(3, 2)
    z[2, 0] = np.nan
    z[1, 1] = np.inf  # the first in row-major order
    _raises(ValueError, lambda: mb.relu_grad(z), "z[1, 1] = ", "inf", "(3, 2)")


# --------------------------------------------------------------------------------------------
# Losses: shapes, rank, empty batch, range, non-finite
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", LOSSES, ids=loss_ids)
@pytest.mark.parametrize(
    ("a_shape", "y_shape"),
    [((4, 3), (4, 1)), ((4, 3), (1, 3)), ((4, 3), (3,)), ((4, 3), (3, 4)), ((4, 1), (4, 3))],
)
def test_losses_reject_shapes_numpy_would_broadcast(
    fn: Callable[..., Any], a_shape: tuple[int, ...], y_shape: tuple[int, ...]
) -> None:
    name = FIRST[fn]
    _raises(
        ValueError,
        lambda: fn(_f(*a_shape), _f(*y_shape, value=0.0)),
        f"y has shape {y_shape}",
        f"{name} has shape {a_shape}",
    )


@pytest.mark.parametrize("fn", BINARY, ids=lambda f: f.__name__)
def test_binary_losses_reject_column_against_vector(fn: Callable[..., Any]) -> None:
    # (m,) against (m, 1) broadcasts to (m, m) in numpy: a classic silent bug
    _raises(ValueError, lambda: fn(_f(4), _f(4, 1)), "y has shape (4, 1)", "has shape (4,)")
    _raises(ValueError, lambda: fn(_f(4, 1), _f(4)), "y has shape (4,)", "has shape (4, 1)")


@pytest.mark.parametrize("fn", LOSSES, ids=loss_ids)
@pytest.mark.parametrize("shape", [(), (2, 2, 2)])
def test_losses_reject_wrong_rank(fn: Callable[..., Any], shape: tuple[int, ...]) -> None:
    name = FIRST[fn]
    _raises(
        ValueError, lambda: fn(_f(*shape), _f(*shape)), f"{name} must have shape (m", f"{shape}"
    )


@pytest.mark.parametrize(
    "fn",
    [
        mb.cross_entropy,
        mb.cross_entropy_grad,
        mb.softmax_cross_entropy,
        mb.softmax_cross_entropy_grad,
    ],
    ids=lambda f: f.__name__,
)
def test_categorical_losses_reject_vectors(fn: Callable[..., Any]) -> None:
    name = FIRST[fn]
    _raises(ValueError, lambda: fn(_f(3), _f(3)), f"{name} must have shape (m, k)", "1-d", "(3,)")


@pytest.mark.parametrize("fn", LOSSES, ids=loss_ids)
@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_losses_reject_empty_input(fn: Callable[..., Any], shape: tuple[int, ...]) -> None:
    name = FIRST[fn]
    _raises(ValueError, lambda: fn(_f(*shape), _f(*shape)), f"{name} is empty", f"(shape {shape})")


@pytest.mark.parametrize("fn", BINARY, ids=lambda f: f.__name__)
def test_binary_losses_reject_empty_vector(fn: Callable[..., Any]) -> None:
    _raises(ValueError, lambda: fn(_f(0), _f(0)), "is empty", "(0,)")


@pytest.mark.parametrize("fn", LOSSES, ids=loss_ids)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", [0, 1])
def test_losses_reject_non_finite(fn: Callable[..., Any], value: float, which: int) -> None:
    args = [_f(2, 3), _f(2, 3, value=0.0)]
    args[which] = _with_nan(args[which], (1, 0), value)
    name = FIRST[fn] if which == 0 else "y"
    _raises(ValueError, lambda: fn(*args), f"{name} must be finite", f"{name}[1, 0]", "(2, 3)")


@pytest.mark.parametrize("fn", ON_PROBABILITIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", [-1e-12, 1.0 + 1e-12, -3.0, 2.0])
def test_probability_losses_reject_p_outside_unit_interval(
    fn: Callable[..., Any], value: float
) -> None:
    p = _with_nan(_f(2, 2), (1, 1), value)
    _raises(
        ValueError,
        lambda: fn(p, _f(2, 2, value=0.0)),
        "p must lie in [0.0, 1.0]",
        "p[1, 1]",
        repr(value),
    )


@pytest.mark.parametrize("fn", LOSSES, ids=loss_ids)
def test_losses_reject_negative_labels(fn: Callable[..., Any]) -> None:
    y = _with_nan(_f(2, 2, value=0.0), (0, 1), -0.25)
    _raises(ValueError, lambda: fn(_f(2, 2), y), "y must lie in [0.0, ", "y[0, 1]", "-0.25")


@pytest.mark.parametrize("fn", BINARY, ids=lambda f: f.__name__)
def test_binary_losses_reject_targets_above_one(fn: Callable[..., Any]) -> None:
    y = _with_nan(_f(3, value=0.0), (2,), 1.5)
    _raises(ValueError, lambda: fn(_f(3), y), "y must lie in [0.0, 1.0]", "y[2]", "1.5")


@pytest.mark.parametrize(
    "fn",
    [
        mb.cross_entropy,
        mb.cross_entropy_grad,
        mb.softmax_cross_entropy,
        mb.softmax_cross_entropy_grad,
    ],
    ids=lambda f: f.__name__,
)
def test_categorical_losses_accept_label_mass_above_one(fn: Callable[..., Any]) -> None:
    # categorical labels are weights >= 0 with no upper bound (rows need not sum to 1)
    result = fn(_f(1, 2), np.array([[2.0, 0.0]]))
    assert np.all(np.isfinite(result))


# --------------------------------------------------------------------------------------------
# Linear layer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "fragments"),
    [
        (((2, 3), (3, 4), (1, 4)), ("b must have shape (h,)", "(1, 4)")),
        (((2, 3), (3, 4), (1,)), ("b has shape (1,)", "w has shape (3, 4)")),
        (((2, 3), (3, 4), (5,)), ("b has shape (5,)", "(3, 4)")),
        (
            ((2, 3), (1, 4), (4,)),
            ("x has shape (2, 3)", "w has shape (1, 4)", "x's columns (3) must equal w's rows (1)"),
        ),
        (((2, 1), (3, 4), (4,)), ("x has shape (2, 1)", "w has shape (3, 4)")),
        (((3,), (3, 4), (4,)), ("x must have shape (m, n)", "(3,)")),
        (((2, 3), (3,), (1,)), ("w must have shape (n, h)", "(3,)")),
        (((2, 3), (3, 4), ()), ("b must have shape (h,)", "()")),
        (((0, 3), (3, 4), (4,)), ("x is empty", "(0, 3)")),
        (((1, 2, 3), (3, 4), (4,)), ("x must have shape (m, n)", "(1, 2, 3)")),
    ],
)
def test_linear_rejects_inconsistent_shapes(
    shapes: tuple[tuple[int, ...], ...], fragments: tuple[str, ...]
) -> None:
    x, w, b = (_f(*s) for s in shapes)
    _raises(ValueError, lambda: mb.linear(x, w, b), *fragments)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_linear_rejects_mixed_dtypes(which: int) -> None:
    args = [_f(2, 3), _f(3, 4), _f(4)]
    args[which] = args[which].astype(np.float32)
    listing = ", ".join(f"{n} is {a.dtype}" for n, a in zip("xwb", args, strict=True))
    _raises(TypeError, lambda: mb.linear(*args), "one floating dtype", listing)


@pytest.mark.parametrize(
    ("shapes", "fragments"),
    [
        (
            ((2, 1), (2, 3), (3, 4)),
            ("dz has shape (2, 1)", "x has shape (2, 3)", "w has", "(3, 4)", "(2, 4)"),
        ),
        (((1, 4), (2, 3), (3, 4)), ("dz has shape (1, 4)", "(2, 4)")),
        (((4,), (2, 3), (3, 4)), ("dz must have shape (m, h)", "(4,)")),
        (((2, 4), (2, 2), (3, 4)), ("x has shape (2, 2)", "w has shape (3, 4)")),
        (((2, 4), (2, 3), (3,)), ("w must have shape (n, h)", "(3,)")),
        (((0, 4), (0, 3), (3, 4)), ("x is empty", "(0, 3)")),
    ],
)
def test_linear_backward_rejects_inconsistent_shapes(
    shapes: tuple[tuple[int, ...], ...], fragments: tuple[str, ...]
) -> None:
    dz, x, w = (_f(*s) for s in shapes)
    _raises(ValueError, lambda: mb.linear_backward(dz, x, w), *fragments)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_linear_backward_rejects_mixed_dtypes(which: int) -> None:
    args = [_f(2, 4), _f(2, 3), _f(3, 4)]
    args[which] = args[which].astype(np.float32)
    name = ["dz", "x", "w"][which]
    _raises(TypeError, lambda: mb.linear_backward(*args), f"{name} is float32")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_linear_backward_rejects_non_finite(value: float, which: int) -> None:
    args = [_f(2, 4), _f(2, 3), _f(3, 4)]
    args[which] = _with_nan(args[which], (1, 2), value)
    name = ["dz", "x", "w"][which]
    _raises(
        ValueError, lambda: mb.linear_backward(*args), f"{name} must be finite", f"{name}[1, 2]"
    )


# --------------------------------------------------------------------------------------------
# The network: params, x, y, cache
# --------------------------------------------------------------------------------------------

X3 = _f(2, 3)
Y2 = np.array([[1.0, 0.0], [0.0, 1.0]])


def _network_calls(params: Any, x: Any = X3, y: Any = Y2) -> list[tuple[str, Thunk]]:
    """The three entry points that take params, with x and y (backward gets a good cache)."""
    _, cache = mb.mlp_forward(_mlp(), X3)
    return [
        ("mlp_forward", lambda: mb.mlp_forward(params, x)),
        ("mlp_backward", lambda: mb.mlp_backward(params, cache, y)),
        ("mlp_loss_and_grads", lambda: mb.mlp_loss_and_grads(params, x, y)),
    ]


NETWORK_NAMES = ["mlp_forward", "mlp_backward", "mlp_loss_and_grads"]


def _call(name: str, params: Any, x: Any = X3, y: Any = Y2) -> Thunk:
    return dict(_network_calls(params, x, y))[name]


@pytest.mark.parametrize("name", NETWORK_NAMES)
@pytest.mark.parametrize(
    ("params", "type_name"),
    [
        (tuple(_mlp()), "tuple"),
        (list(_mlp()), "list"),
        (_logreg(), "LogRegParams"),
        (dict(_mlp()._asdict()), "dict"),
        (None, "NoneType"),
    ],
)
def test_network_rejects_params_of_wrong_type(name: str, params: Any, type_name: str) -> None:
    _raises(TypeError, _call(name, params), "params must be a MLPParams", f"got {type_name}")


@pytest.mark.parametrize("name", NETWORK_NAMES)
@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        (_mlp()._replace(W1=_f(3)), ("params.W1 must have shape (n, h)", "(3,)")),
        (_mlp()._replace(b1=_f(1, 4)), ("params.b1 has shape (1, 4)", "(3, 4)", "requires (4,)")),
        (_mlp()._replace(b1=_f(3)), ("params.b1 has shape (3,)", "requires (4,)")),
        (
            _mlp()._replace(W2=_f(3, 2)),
            ("params.W2 has shape (3, 2)", "params.W1 of shape (3, 4) requires (4, 2)"),
        ),
        (_mlp()._replace(W2=_f(4)), ("params.W2 must have shape (h, k)", "(4,)")),
        (_mlp()._replace(b2=_f(1, 2)), ("params.b2 has shape (1, 2)", "requires (2,)")),
        (_mlp()._replace(b2=_f(4)), ("params.b2 has shape (4,)", "(4, 2)", "requires (2,)")),
    ],
)
def test_network_rejects_params_of_wrong_shapes(
    name: str, params: Any, fragments: tuple[str, ...]
) -> None:
    _raises(ValueError, _call(name, params), *fragments)


@pytest.mark.parametrize("name", NETWORK_NAMES)
@pytest.mark.parametrize("field", ["W1", "b1", "W2", "b2"])
def test_network_rejects_mixed_or_non_float_param_dtypes(name: str, field: str) -> None:
    good = _mlp()
    mixed = good._replace(**{field: getattr(good, field).astype(np.float32)})
    # every field listed with its dtype, e.g. "W1 is float64, b1 is float32, W2 is float64, ..."
    listing = ", ".join(f"{f} is {a.dtype}" for f, a in zip(mixed._fields, mixed, strict=True))
    assert f"{field} is float32" in listing
    _raises(TypeError, _call(name, mixed), "params must have one dtype", listing)
    ints = good._replace(**{field: getattr(good, field).astype(np.int64)})
    _raises(TypeError, _call(name, ints), f"params.{field} must be a floating array", "int64")


@pytest.mark.parametrize("name", NETWORK_NAMES)
@pytest.mark.parametrize("field", ["W1", "b1", "W2", "b2"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_network_rejects_non_finite_params(name: str, field: str, value: float) -> None:
    good = _mlp()
    arr = getattr(good, field).copy()
    arr.flat[-1] = value
    _raises(
        ValueError, _call(name, good._replace(**{field: arr})), f"params.{field} must be finite"
    )


@pytest.mark.parametrize("name", ["mlp_forward", "mlp_loss_and_grads"])
@pytest.mark.parametrize(
    ("x", "exc", "fragments"),
    [
        (_f(2, 1), ValueError, ("x has shape (2, 1)", "(3, 4)", "requires (2, 3)")),
        (_f(2, 4), ValueError, ("x has shape (2, 4)", "requires (2, 3)")),
        (_f(3), ValueError, ("x must have shape (m, n)", "(3,)")),
        (_f(0, 3), ValueError, ("x is empty", "(0, 3)")),
        (
            _f(2, 3, dtype=np.float32),
            TypeError,
            ("x has dtype float32", "params have dtype float64"),
        ),
        (_with_nan(_f(2, 3), (0, 2)), ValueError, ("x must be finite", "x[0, 2]")),
        (_with_nan(_f(2, 3), (1, 0), -np.inf), ValueError, ("x must be finite", "x[1, 0]", "-inf")),
        (NON_NUMERIC["strings"], TypeError, ("x must be a real numeric array",)),
    ],
)
def test_network_rejects_bad_x(
    name: str, x: Any, exc: type[Exception], fragments: tuple[str, ...]
) -> None:
    _raises(exc, _call(name, _mlp(), x=x), *fragments)


@pytest.mark.parametrize("name", ["mlp_backward", "mlp_loss_and_grads"])
@pytest.mark.parametrize(
    ("y", "exc", "fragments"),
    [
        (_f(2, 1), ValueError, ("y has shape (2, 1)", "m = 2", "k = 2", "requires (2, 2)")),
        (_f(1, 2), ValueError, ("y has shape (1, 2)", "requires (2, 2)")),
        (_f(2), ValueError, ("y has shape (2,)", "requires (2, 2)")),
        (_f(2, 2, 1), ValueError, ("y has shape (2, 2, 1)",)),
        (_with_nan(_f(2, 2), (1, 1)), ValueError, ("y must be finite", "y[1, 1]")),
        (
            _with_nan(_f(2, 2), (0, 0), -1.0),
            ValueError,
            ("y must lie in [0.0, inf)", "y[0, 0]", "-1.0"),
        ),
        (NON_NUMERIC["objects"], TypeError, ("y must be a real numeric array", "object")),
    ],
)
def test_network_rejects_bad_y(
    name: str, y: Any, exc: type[Exception], fragments: tuple[str, ...]
) -> None:
    _raises(exc, _call(name, _mlp(), y=y), *fragments)


def test_mlp_backward_rejects_a_cache_of_wrong_type() -> None:
    _, cache = mb.mlp_forward(_mlp(), X3)
    _raises(
        TypeError,
        lambda: mb.mlp_backward(_mlp(), tuple(cache), Y2),  # type: ignore[arg-type]
        "cache must be the MLPCache",
        "tuple",
    )
    _raises(TypeError, lambda: mb.mlp_backward(_mlp(), None, Y2), "cache must be", "NoneType")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("other", "fragments"),
    [
        (_mlp(n=5), ("cache.x has shape (2, 5)", "but params.W1 requires (2, 3)")),
        (_mlp(h=6), ("cache.a1 has shape (2, 6)", "h = 4", "requires (2, 4)")),
        (_mlp(k=3), ("cache.log_p has shape (2, 3)", "k = 2", "requires (2, 2)")),
    ],
)
def test_mlp_backward_rejects_a_cache_from_other_params(
    other: mb.MLPParams, fragments: tuple[str, ...]
) -> None:
    _, cache = mb.mlp_forward(other, _f(2, other.W1.shape[0]))
    _raises(ValueError, lambda: mb.mlp_backward(_mlp(), cache, Y2), *fragments)


def test_mlp_backward_rejects_a_tampered_relu_mask() -> None:
    _, cache = mb.mlp_forward(_mlp(), X3)
    bad = cache._replace(relu_mask=cache.relu_mask[:, :3])
    _raises(
        ValueError,
        lambda: mb.mlp_backward(_mlp(), bad, Y2),
        "cache.relu_mask has shape (2, 3)",
        "(2, 4)",
    )


def test_mlp_backward_rejects_labels_for_another_batch() -> None:
    _, cache = mb.mlp_forward(_mlp(), X3)
    _raises(
        ValueError, lambda: mb.mlp_backward(_mlp(), cache, _f(3, 2)), "y has shape (3, 2)", "m = 2"
    )


# --------------------------------------------------------------------------------------------
# init_mlp: generator, sizes, dtype
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rng", "type_name"),
    [(0, "int"), (None, "NoneType"), (np.random.RandomState(0), "RandomState")],
)
def test_init_mlp_rejects_anything_but_a_generator(rng: Any, type_name: str) -> None:
    _raises(
        TypeError,
        lambda: mb.init_mlp(rng, 2, 3, 4),
        "rng must be a numpy.random.Generator",
        type_name,
    )


@pytest.mark.parametrize("which", ["n", "h", "k"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True, "3", None])
def test_init_mlp_rejects_non_positive_or_non_integer_sizes(which: str, value: Any) -> None:
    sizes: dict[str, Any] = {"n": 2, "h": 3, "k": 4, which: value}
    _raises(
        ValueError,
        lambda: mb.init_mlp(np.random.default_rng(0), **sizes),
        f"{which} must be a positive integer",
        repr(value),
    )


def test_init_mlp_accepts_numpy_integer_sizes() -> None:
    p = mb.init_mlp(np.random.default_rng(0), np.int64(2), np.int32(3), np.uint8(1))  # type: ignore[arg-type]
    assert [a.shape for a in p] == [(2, 3), (3,), (3, 1), (1,)]


@pytest.mark.parametrize("dtype", [np.int64, np.complex128, bool])
def test_init_mlp_rejects_non_floating_dtype(dtype: Any) -> None:
    _raises(
        TypeError,
        lambda: mb.init_mlp(np.random.default_rng(0), 2, 3, 4, dtype=dtype),
        "dtype must be a floating dtype",
    )


# --------------------------------------------------------------------------------------------
# Logistic regression
# --------------------------------------------------------------------------------------------

LOGREG_CALLS: dict[str, Callable[[Any, Any, Any], object]] = {
    "logreg_loss_and_grads": mb.logreg_loss_and_grads,
    "logreg_predict_proba": lambda params, x, _y: mb.logreg_predict_proba(params, x),
}


@pytest.mark.parametrize("name", LOGREG_CALLS)
@pytest.mark.parametrize(
    ("params", "x", "exc", "fragments"),
    [
        (tuple(_logreg()), X3, TypeError, ("params must be a LogRegParams", "got tuple")),
        (_mlp(), X3, TypeError, ("params must be a LogRegParams", "got MLPParams")),
        (
            _logreg()._replace(w=_f(3, 1)),
            X3,
            ValueError,
            ("params.w must have shape (n,)", "(3, 1)"),
        ),
        (
            _logreg()._replace(b=_f(1)),
            X3,
            ValueError,
            ("params.b has shape (1,)", "but a scalar bias requires ()"),
        ),
        (_logreg()._replace(b=_f(3)), X3, ValueError, ("params.b has shape (3,)",)),
        (
            _logreg()._replace(b=np.array(0.0, np.float32)),
            X3,
            TypeError,
            ("one dtype", "b is float32"),
        ),
        (
            _logreg()._replace(w=np.arange(3)),  # type: ignore[arg-type]
            X3,
            TypeError,
            ("params.w must be a floating array", "int64"),
        ),
        (
            _logreg()._replace(w=_with_nan(_f(3), (1,))),
            X3,
            ValueError,
            ("params.w must be finite", "params.w[1]"),
        ),
        (_logreg()._replace(b=np.array(np.inf)), X3, ValueError, ("params.b must be finite",)),
        (
            _logreg(),
            _f(2, 4),
            ValueError,
            ("x has shape (2, 4)", "params.w of shape (3,)", "requires (2, 3)"),
        ),
        (_logreg(), _f(2, 1), ValueError, ("x has shape (2, 1)", "requires (2, 3)")),
        (_logreg(), _f(3), ValueError, ("x must have shape (m, n)", "(3,)")),
        (_logreg(), _f(0, 3), ValueError, ("x is empty", "(0, 3)")),
        (
            _logreg(),
            _f(2, 3, dtype=np.float32),
            TypeError,
            ("x has dtype float32", "params have dtype float64"),
        ),
        (_logreg(), _with_nan(_f(2, 3), (1, 1)), ValueError, ("x must be finite", "x[1, 1]")),
        (
            _logreg(),
            NON_NUMERIC["complex"],
            TypeError,
            ("x must be a real numeric array", "complex"),
        ),
    ],
)
def test_logreg_rejects_bad_params_and_x(
    name: str, params: Any, x: Any, exc: type[Exception], fragments: tuple[str, ...]
) -> None:
    _raises(exc, lambda: LOGREG_CALLS[name](params, x, _f(2)), *fragments)


@pytest.mark.parametrize(
    ("y", "exc", "fragments"),
    [
        (_f(2, 1), ValueError, ("y has shape (2, 1)", "x of shape (2, 3)", "requires (2,)")),
        (_f(1), ValueError, ("y has shape (1,)", "requires (2,)")),
        (_f(3), ValueError, ("y has shape (3,)",)),
        (np.array([0.0, 1.5]), ValueError, ("y must lie in [0.0, 1.0]", "y[1]", "1.5")),
        (np.array([-0.5, 1.0]), ValueError, ("y must lie in [0.0, 1.0]", "y[0]", "-0.5")),
        (np.array([0.0, np.nan]), ValueError, ("y must be finite", "y[1]")),
        (np.array(["0", "1"]), TypeError, ("y must be a real numeric array",)),
    ],
)
def test_logreg_rejects_bad_targets(
    y: Any, exc: type[Exception], fragments: tuple[str, ...]
) -> None:
    _raises(exc, lambda: mb.logreg_loss_and_grads(_logreg(), X3, y), *fragments)


def test_logreg_accepts_integer_and_boolean_targets() -> None:
    loss_i, g_i = mb.logreg_loss_and_grads(_logreg(), X3, np.array([1, 0]))
    loss_b, g_b = mb.logreg_loss_and_grads(_logreg(), X3, np.array([True, False]))
    assert loss_i == loss_b
    np.testing.assert_array_equal(g_i.w, g_b.w)


# --------------------------------------------------------------------------------------------
# sgd_step: params/grads pairing, lr
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "grads", "type_names"),
    [
        (_logreg(), _mlp(), ("LogRegParams", "MLPParams")),
        (_logreg(), tuple(_logreg()), ("LogRegParams", "tuple")),
        (tuple(_logreg()), tuple(_logreg()), ("tuple", "tuple")),
        (_logreg(), None, ("LogRegParams", "NoneType")),
    ],
)
def test_sgd_step_rejects_mismatched_types(
    params: Any, grads: Any, type_names: tuple[str, str]
) -> None:
    _raises(TypeError, lambda: mb.sgd_step(params, grads, 0.1), "same NamedTuple type", *type_names)


@pytest.mark.parametrize(
    ("grads", "fragments"),
    [
        (
            _logreg()._replace(b=_f(1)),
            ("grads.b has shape (1,)", "params.b of shape ()", "requires ()"),
        ),
        (
            _logreg()._replace(w=_f(1)),
            ("grads.w has shape (1,)", "params.w of shape (3,)", "requires (3,)"),
        ),
        (_logreg()._replace(w=_f(3, 1)), ("grads.w has shape (3, 1)",)),
        (_logreg()._replace(w=_f(1, 3)), ("grads.w has shape (1, 3)",)),
    ],
)
def test_sgd_step_rejects_grads_of_wrong_shape(
    grads: mb.LogRegParams, fragments: tuple[str, ...]
) -> None:
    _raises(ValueError, lambda: mb.sgd_step(_logreg(), grads, 0.1), *fragments)


@pytest.mark.parametrize(
    ("params", "grads", "fragments"),
    [
        (_logreg(), _logreg(dtype=np.float32), ("params.w and grads.w", "float64 and float32")),
        (_logreg(dtype=np.float32), _logreg(), ("params.w and grads.w", "float32 and float64")),
        (_logreg()._replace(w=np.arange(3)), _logreg(), ("params.w and grads.w", "int64")),  # type: ignore[arg-type]
        (
            _logreg(),
            _logreg()._replace(b=np.array(1)),
            ("params.b and grads.b", "float64 and int64"),
        ),
    ],
)
def test_sgd_step_rejects_mismatched_or_non_float_dtypes(
    params: mb.LogRegParams, grads: mb.LogRegParams, fragments: tuple[str, ...]
) -> None:
    _raises(TypeError, lambda: mb.sgd_step(params, grads, 0.1), *fragments)


@pytest.mark.parametrize("lr", [0, 0.0, -0.1, np.nan, np.inf, -np.inf, np.float32(-1.0)])
def test_sgd_step_rejects_non_positive_or_non_finite_lr(lr: Any) -> None:
    _raises(
        ValueError,
        lambda: mb.sgd_step(_logreg(), _logreg(), lr),
        "lr must be finite and > 0",
        repr(lr),
    )


@pytest.mark.parametrize(
    ("lr", "type_name"),
    [
        (True, "bool"),
        ("0.1", "str"),
        (None, "NoneType"),
        (1j, "complex"),
        (np.array(0.1), "ndarray"),
    ],
)
def test_sgd_step_rejects_lr_that_is_not_a_real_number(lr: Any, type_name: str) -> None:
    _raises(
        TypeError,
        lambda: mb.sgd_step(_logreg(), _logreg(), lr),
        "lr must be a real number",
        type_name,
    )


@pytest.mark.parametrize("lr", [1, np.int64(2), np.float32(0.5), 1e-300])
def test_sgd_step_accepts_any_positive_real_lr(lr: Any) -> None:
    new = mb.sgd_step(_logreg(), _logreg(), lr)
    np.testing.assert_allclose(new.w, 0.5 - float(lr) * 0.5)


# --------------------------------------------------------------------------------------------
# one_hot
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "k", "exc", "fragments"),
    [
        (np.array([0, 3, 1]), 3, ValueError, ("labels must lie in [0, 3)", "labels[1] = 3")),
        (np.array([0, 1, -1]), 3, ValueError, ("labels must lie in [0, 3)", "labels[2] = -1")),
        (np.array([5, 7]), 3, ValueError, ("labels[0] = 5",)),
        (np.array([0.0, 1.0]), 2, TypeError, ("labels must be integers", "float64")),
        (np.array([True, False]), 2, TypeError, ("labels must be integers", "bool")),
        (np.array(["0"]), 2, TypeError, ("labels must be integers",)),
        (np.array([[0, 1]]), 2, ValueError, ("labels must have shape (m,)", "(1, 2)")),
        (np.array(1), 2, ValueError, ("labels must have shape (m,)", "()")),
        (np.array([0]), 0, ValueError, ("k must be a positive integer", "0")),
        (np.array([0]), -2, ValueError, ("k must be a positive integer", "-2")),
        (np.array([0]), 2.0, ValueError, ("k must be a positive integer", "2.0")),
        (np.array([0]), True, ValueError, ("k must be a positive integer", "True")),
        (np.array([0]), None, ValueError, ("k must be a positive integer", "None")),
    ],
)
def test_one_hot_rejects_bad_labels_and_k(
    labels: Any, k: Any, exc: type[Exception], fragments: tuple[str, ...]
) -> None:
    _raises(exc, lambda: mb.one_hot(labels, k), *fragments)


@pytest.mark.parametrize("dtype", [np.int64, bool, np.complex64])
def test_one_hot_rejects_non_floating_dtype(dtype: Any) -> None:
    _raises(
        TypeError,
        lambda: mb.one_hot(np.array([0]), 2, dtype=dtype),
        "dtype must be a floating dtype",
    )


def test_one_hot_accepts_numpy_integer_k_and_list_labels() -> None:
    np.testing.assert_array_equal(mb.one_hot([1, 0], np.int64(2)), [[0.0, 1.0], [1.0, 0.0]])  # type: ignore[arg-type]
