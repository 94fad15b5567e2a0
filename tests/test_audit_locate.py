"""The audit's ``where:``: the tracer, the reference's quantities, and the line named."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.typing import NDArray

from verification.auditing import MLP_STAGES, audit, audit_vjp, named_arrays
from verification.auditing._locate import NotLocated, Where, locate
from verification.auditing._refsteps import reference_quantities
from verification.auditing._second import sub_batches
from verification.auditing._source import names_read, statement_at, user_file
from verification.auditing._trace import trace_call

Array = NDArray[Any]
MONITORING = pytest.mark.skipif(not hasattr(sys, "monitoring"), reason="sys.monitoring is 3.12+")
DIMS = {"m": [1, 2, 5], "n": [1, 3, 4], "h": [1, 2, 6], "k": [1, 3, 7]}


def _line_of(fn: Any, text: str) -> int:
    """The line number of the first line of ``fn``'s source containing ``text``."""
    import inspect

    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


# -- candidates --------------------------------------------------------------------------------


def tanh_loss(x: Any, w1: Any, w2: Any, y: Any) -> Any:
    z1 = x @ w1
    a1 = jnp.tanh(z1)
    z2 = a1 @ w2
    return jnp.sum((z2 - y) ** 2) / (2 * x.shape[0])


def tanh_problems() -> Any:
    spec = {"x": ("m", "n"), "w1": ("n", "h"), "w2": ("h", "k"), "y": ("m", "k")}
    return named_arrays(spec, dims=DIMS, bounds=(2.0,))


def tanh_grads(x: Array, w1: Array, w2: Array, y: Array) -> Array:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / m
    da1 = dz2 @ w2.T
    dz1 = da1 * (1 - a1**2)
    out: Array = x.T @ dz1
    return out


def tanh_no_m(x: Array, w1: Array, w2: Array, y: Array) -> Array:
    a1 = np.tanh(x @ w1)
    dz2 = a1 @ w2 - y
    da1 = dz2 @ w2.T
    dz1 = da1 * (1 - a1**2)
    out: Array = x.T @ dz1
    return out


def tanh_step_skipped(x: Array, w1: Array, w2: Array, y: Array) -> Array:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / m
    da1 = dz2 @ w2.T
    dz1 = da1
    out: Array = x.T @ dz1
    return out


def tanh_one_line(x: Array, w1: Array, w2: Array, y: Array) -> Array:
    return x.T @ ((np.tanh(x @ w1) @ w2 - y) @ w2.T * (1 - np.tanh(x @ w1)))  # type: ignore[no-any-return]


def relu_loss(x: Any, w: Any) -> Any:
    return jnp.sum(jax.nn.relu(x @ w) ** 2) / 2


def relu_mask_line(x: Array, w: Array) -> Array:
    z = x @ w
    a = np.maximum(z, 0)
    mask = z < 0
    dz = a * mask
    out: Array = x.T @ dz
    return out


# -- the tracer ------------------------------------------------------------------------------


def _helper(a: Array) -> Array:
    out: Array = 1 - a**2
    return out


def traced(x: Array) -> Array:
    a = np.tanh(x)
    d = _helper(a)
    d *= 2.0
    return a * d


def raises(x: Array) -> Array:
    a = x * 2
    raise RuntimeError(f"boom {a.shape}")


def test_tracer_records_each_bound_value_with_the_values_its_line_read() -> None:
    x = np.array([[0.5, -1.0]])
    trace = trace_call(traced, (x,), [("x", x)])
    by_name = {(n.name, n.line): n for n in trace.nodes}
    a = by_name["a", _line_of(traced, "a = np.tanh")]
    np.testing.assert_array_equal(a.value, np.tanh(x))
    assert [r.name for r in a.reads] == ["x"]
    helper_value = by_name["out", _line_of(_helper, "out: Array")]
    assert helper_value.function == "_helper"
    assert trace.passed_on[helper_value.index][1] == _line_of(_helper, "return out")
    doubled = by_name["d", _line_of(traced, "d *= 2.0")]
    assert doubled.in_place
    np.testing.assert_array_equal(doubled.value, 2 * (1 - np.tanh(x) ** 2))
    np.testing.assert_array_equal(trace.result, traced(x))


def test_tracer_copies_values_so_a_later_in_place_change_leaves_them() -> None:
    x = np.array([0.25, 0.5])
    trace = trace_call(traced, (x,), [("x", x)])
    first = next(n for n in trace.nodes if n.name == "out")
    np.testing.assert_array_equal(first.value, 1 - np.tanh(x) ** 2)  # before d *= 2.0


def test_tracer_is_removed_after_the_candidate_raises_and_restores_the_one_before() -> None:
    calls: list[str] = []

    def previous(frame: Any, event: str, arg: Any) -> Any:
        calls.append(event)
        return None

    before = sys.gettrace()
    sys.settrace(previous)
    try:
        trace = trace_call(raises, (np.ones(2),), monitoring=False)
        assert sys.gettrace() is previous
    finally:
        sys.settrace(before)
    assert isinstance(trace.error, RuntimeError)
    assert [n.name for n in trace.nodes if n.line] == ["a"]


def _divides_by_zero(x: Array) -> Array:
    inverse = 1.0 / x  # numpy warns: divide by zero
    return inverse * 0.0


@pytest.mark.parametrize("monitoring", [False, pytest.param(True, marks=MONITORING)])
def test_a_warning_of_the_candidate_is_not_an_error_under_the_tracer_whatever_the_filters(
    monitoring: bool,
) -> None:
    """As in the audit's own call of the candidate: inside ``pytest -W error`` (a strict
    suite's ``filterwarnings = error``) the locator follows the candidate all the same."""
    x = np.array([0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = trace_call(_divides_by_zero, (x,), [("x", x)], monitoring=monitoring)
        with pytest.raises(RuntimeWarning):
            _divides_by_zero(x)  # the filter is still in force after the trace
    assert trace.error is None
    assert [n.name for n in trace.nodes if n.line] == ["inverse", "return"]


@pytest.mark.skipif(not hasattr(sys, "monitoring"), reason="sys.monitoring is Python 3.12+")
def test_monitoring_records_what_settrace_records() -> None:  # pragma: no cover
    x = np.array([[0.5, -1.0]])
    one = trace_call(traced, (x,), [("x", x)], monitoring=True)
    two = trace_call(traced, (x,), [("x", x)], monitoring=False)
    assert [n.key for n in one.nodes] == [n.key for n in two.nodes]
    assert sys.monitoring.get_tool(sys.monitoring.DEBUGGER_ID) is None


def test_the_names_a_statement_reads_come_from_its_source() -> None:
    file = __file__
    line = _line_of(tanh_grads, "dz1 = da1 * (1 - a1**2)")
    assert names_read(file, line) == ("da1", "a1")
    header = _line_of(_loop_body, "for i in range(len(xs)):")
    assert names_read(file, header) == ("range", "len", "xs")  # the loop's target is written
    assert set(names_read(file, header + 1)) == {"xs", "i", "total"}  # += reads its target
    assert statement_at(file, header + 1) is not statement_at(file, header)  # the body's own
    assert user_file(file)
    assert not user_file(np.__file__)  # a library
    assert not user_file(jax.__file__)
    assert not user_file("<stdin>")


def _loop_body(xs: list[float]) -> float:
    total = 0.0
    for i in range(len(xs)):
        total += xs[i]
    return total


# -- the reference's quantities ----------------------------------------------------------------


def test_reference_quantities_hold_each_intermediate_and_its_gradient() -> None:
    rng = np.random.default_rng(0)
    args = (rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.normal(size=(5, 2)))
    args = (*args, rng.normal(size=(3, 2)))
    quantities = reference_quantities(tanh_loss, args, (1,), ["x", "w1", "w2", "y"])
    by_name = {q.name: q for q in quantities}
    a1 = np.tanh(args[0] @ args[1])
    np.testing.assert_allclose(by_name["a1"].value, a1, rtol=1e-14)
    dz2 = (a1 @ args[2] - args[3]) / 3
    np.testing.assert_allclose(by_name["dL/da1"].value, dz2 @ args[2].T, rtol=1e-12)
    np.testing.assert_allclose(by_name["dL/dz1"].value, dz2 @ args[2].T * (1 - a1**2), rtol=1e-12)
    np.testing.assert_allclose(by_name["dL/dw1"].value, jax.grad(tanh_loss, 1)(*args), rtol=1e-12)
    assert by_name["a1"].line == _line_of(tanh_loss, "a1 = jnp.tanh(z1)")


def penalised(x: Any, w: Any) -> Any:
    return jnp.sum(jnp.tanh(x @ w)) + 0.5 * jnp.sum(w**2)


def test_the_parts_of_a_gradient_through_each_use_sum_to_it() -> None:
    rng = np.random.default_rng(1)
    args = (rng.normal(size=(3, 4)), rng.normal(size=(4, 2)))
    quantities = reference_quantities(penalised, args, (1,), ["x", "w"])
    parts = [
        q for q in quantities if q.key[:2] == ("gradient", "part") and q.key[2] == ("input", 1)
    ]
    assert len(parts) == 2
    total = next(q for q in quantities if q.name == "dL/dw")
    np.testing.assert_allclose(sum(p.value for p in parts), total.value, rtol=1e-12)


@jax.custom_jvp
def _rows_softmax(s: Any) -> Any:
    """A softmax with its own derivative rule, as jax.nn.softmax is in newer JAX."""
    e = jnp.exp(s - jnp.max(s, axis=1, keepdims=True))
    return e / jnp.sum(e, axis=1, keepdims=True)


@_rows_softmax.defjvp
def _rows_softmax_jvp(primals: Any, tangents: Any) -> Any:
    (s,), (ds,) = primals, tangents
    p = _rows_softmax(s)
    return p, p * (ds - jnp.sum(p * ds, axis=1, keepdims=True))


def attention_ref(q: Any, k: Any, v: Any) -> Any:
    scores = q @ k.T / jnp.sqrt(q.shape[-1])
    weights = _rows_softmax(scores)
    return weights @ v


def _softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def attention_dv_unscaled(dout: Array, q: Array, k: Array, v: Array) -> Array:
    a = _softmax(q @ k.T)  # the scale 1/sqrt(d) left out of the forward recomputation
    out: Array = a.T @ dout
    return out


def test_values_inside_a_function_with_its_own_derivative_rule_are_values_without_gradient() -> (
    None
):
    rng = np.random.default_rng(2)
    args = (rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2)))
    quantities = reference_quantities(
        lambda q, k, v: jnp.sum(attention_ref(q, k, v)), args, (2,), ["q", "k", "v"]
    )
    inside = [q for q in quantities if "inside" in q.key]
    scores = args[0] @ args[1].T / 2.0
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    exp = [q for q in inside if q.name.startswith("the exp inside")]
    assert len(exp) == 1
    np.testing.assert_allclose(exp[0].value, e, rtol=1e-14)
    assert exp[0].kind == "value"
    assert not any(q.of == exp[0].key for q in quantities)  # its rule, not a chain through it
    # the reference's own line: inside the function where it is the user's, else the call
    assert exp[0].line == _line_of(_rows_softmax.fun, "e = jnp.exp(")
    # the function's output is the step's own quantity, not repeated from inside
    softmax = e / e.sum(axis=1, keepdims=True)
    repeats = [
        q for q in quantities if q.value.shape == softmax.shape and np.allclose(q.value, softmax)
    ]
    assert len(repeats) == 1
    assert "inside" not in repeats[0].key
    assert len({q.key for q in quantities}) == len(quantities)


@jax.custom_jvp
def _softplus(x: Any) -> Any:
    """log(1 + e^x), NaN passed through (a comparison inside), with its own rule."""
    return jnp.where(x != x, x, jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x))))


@_softplus.defjvp
def _softplus_jvp(primals: Any, tangents: Any) -> Any:
    (x,), (dx,) = primals, tangents
    return _softplus(x), jax.nn.sigmoid(x) * dx


def test_a_comparison_inside_a_function_with_its_own_rule_has_no_local_derivative() -> None:
    x = np.array([-1.5, 0.25, 2.0])
    quantities = reference_quantities(lambda x: jnp.sum(_softplus(x)), (x,), (0,), ["x"])
    inside = [q for q in quantities if "inside" in q.key]
    assert any(q.value.dtype == bool for q in inside)  # the x != x
    for q in quantities:
        for derivative in q.derivatives.values():
            assert derivative.dtype.kind == "f", q.name  # never JAX's float0
    assert not any(q.derivatives for q in inside if q.value.dtype == bool)


def test_a_step_left_out_before_a_helper_is_named_at_the_call_not_inside_the_helper() -> None:
    rng = np.random.default_rng(3)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    q2, k2, v2 = rng.normal(size=(2, 6)), rng.normal(size=(4, 6)), rng.normal(size=(4, 3))
    dout, dout2 = rng.normal(size=(3, 2)), rng.normal(size=(2, 3))

    def loss(q: Any, k: Any, v: Any, dout: Any) -> Any:
        return jnp.sum(attention_ref(q, k, v) * dout)

    def grad(q: Array, k: Array, v: Array, dout: Array) -> Array:
        return attention_dv_unscaled(dout, q, k, v)

    where = locate(
        grad,
        loss,
        [(q, k, v, dout), (q2, k2, v2, dout2)],
        argnums=(2,),
        arg_names=["q", "k", "v", "dout"],
        leaf=0,
    )
    assert isinstance(where, Where), where
    assert where.line == _line_of(attention_dv_unscaled, "a = _softmax(q @ k.T)")
    assert "not scores" in where.words


# -- the line named -----------------------------------------------------------------------------


def test_a_missing_one_over_m_is_named_on_its_line_with_the_size() -> None:
    report = audit(tanh_no_m, tanh_loss, tanh_problems(), argnums=1, max_examples=30, seed=0)
    assert isinstance(report.where, Where), report.where
    assert report.where.line == _line_of(tanh_no_m, "dz2 = a1 @ w2 - y")
    assert report.where.function == "tanh_no_m"
    assert "shape[0] times" in report.where.words
    assert report.where.should_equal is not None
    assert "where: the error enters at" in str(report)


def wide_loss(w: Any, x: Any, y: Any) -> Any:
    a = jnp.tanh(x @ w)
    return jnp.sum((a - y) ** 2) / (2 * x.shape[0])


def wide_grad_no_m(w: Array, x: Array, y: Array) -> Array:
    a = np.tanh(x @ w)
    da = a - y
    dz = da * (1 - a**2)
    out: Array = x.T @ dz
    return out


def test_a_large_input_is_located_on_two_sub_batches_and_says_so() -> None:
    rng = np.random.default_rng(4)
    m, n, h = 5000, 24, 3  # x alone has 120,000 elements: more than the audit's LARGE
    args = (rng.normal(size=(n, h)), rng.normal(size=(m, n)), rng.normal(size=(m, h)))
    report = audit(wide_grad_no_m, wide_loss, args, argnums=0, seed=0)
    assert isinstance(report.where, Where), report.where
    assert report.where.line == _line_of(wide_grad_no_m, "da = a - y")
    assert "shape[0] times" in report.where.words  # 8 and 6 rows: the factor follows m
    assert report.where.located_on == "on sub-batches of the input: rows 0-7 and 8-13 of its 5000"
    assert "located on sub-batches" in str(report)
    assert report.to_dict()["where"]["located_on"] == report.where.located_on
    small = (args[0], args[1][:50], args[2][:50])
    assert sub_batches(small, (0,), ["w", "x", "y"]) is None  # small inputs: as drawn


def tanh_wrong_local_derivative(x: Array, w1: Array, w2: Array, y: Array) -> Array:
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / x.shape[0]
    local = 1 - a1  # BUG: tanh' is 1 - a1**2
    dz1 = (dz2 @ w2.T) * local
    out: Array = x.T @ dz1
    return out


def test_a_wrong_local_derivative_is_named_with_the_quantities_it_relates() -> None:
    report = audit(
        tanh_wrong_local_derivative, tanh_loss, tanh_problems(), argnums=1, max_examples=30, seed=0
    )
    assert isinstance(report.where, Where), report.where
    assert report.where.line == _line_of(tanh_wrong_local_derivative, "local = 1 - a1")
    assert report.where.should_equal == "the derivative of a1 with respect to z1"


def tanh_no_m_bound_by_with(x: Array, w1: Array, w2: Array, y: Array) -> Array:
    with contextlib.nullcontext(np.tanh(x @ w1)) as a1:
        dz2 = a1 @ w2 - y
    dz1 = (dz2 @ w2.T) * (1 - a1**2)
    out: Array = x.T @ dz1
    return out


def test_a_value_bound_by_a_with_statement_is_followed_like_an_assignment() -> None:
    report = audit(
        tanh_no_m_bound_by_with, tanh_loss, tanh_problems(), argnums=1, max_examples=30, seed=0
    )
    assert isinstance(report.where, Where), report.where
    assert report.where.line == _line_of(tanh_no_m_bound_by_with, "dz2 = a1 @ w2 - y")


def test_a_skipped_step_is_named_where_the_gradient_is_passed_on() -> None:
    report = audit(
        tanh_step_skipped, tanh_loss, tanh_problems(), argnums=1, max_examples=30, seed=0
    )
    assert isinstance(report.where, Where), report.where
    assert report.where.line == _line_of(tanh_step_skipped, "dz1 = da1")
    assert "equals dL/da1" in report.where.words
    assert "step through tanh is missing" in report.where.words


def test_a_wrong_mask_is_named_on_the_mask_line_not_where_it_is_used() -> None:
    problems = named_arrays(
        {"x": ("m", "n"), "w": ("n", "h")},
        dims={d: DIMS[d] for d in ("m", "n", "h")},
        bounds=(2.0,),
    )
    report = audit(relu_mask_line, relu_loss, problems, argnums=1, max_examples=40, seed=0)
    assert not report.passed
    if isinstance(report.where, Where):
        assert report.where.line == _line_of(relu_mask_line, "mask = z < 0")


def test_a_correct_candidate_has_no_where() -> None:
    report = audit(tanh_grads, tanh_loss, tanh_problems(), argnums=1, max_examples=20, seed=0)
    assert report.passed
    assert report.where is None
    assert report.to_dict()["where"] is None


def test_a_candidate_in_one_line_is_not_located() -> None:
    report = audit(tanh_one_line, tanh_loss, tanh_problems(), argnums=1, max_examples=30, seed=0)
    assert isinstance(report.where, NotLocated), report.where
    assert "one line" in report.where.reason
    assert "where: not located (" in str(report)


def test_code_outside_the_users_files_is_not_located() -> None:
    namespace: dict[str, Any] = {"np": np}
    exec(  # a candidate with no source file, as compiled code would be
        "def hidden(x, w1, w2, y):\n"
        "    dz2 = np.tanh(x @ w1) @ w2 - y\n"
        "    return x.T @ ((dz2 @ w2.T) * (1 - np.tanh(x @ w1) ** 2))\n",
        namespace,
    )
    rng = np.random.default_rng(2)
    inputs = [tuple(rng.normal(size=s) for s in ((5, 3), (3, 6), (6, 7), (5, 7))) for _ in range(2)]
    where = locate(
        namespace["hidden"],
        tanh_loss,
        inputs,
        argnums=(1,),
        arg_names=["x", "w1", "w2", "y"],
        leaf=0,
    )
    assert isinstance(where, NotLocated)
    assert "not computed by a line of Python in the user's files" in where.reason


def test_locate_false_skips_it_and_the_json_form_has_the_fields() -> None:
    skipped = audit(
        tanh_no_m, tanh_loss, tanh_problems(), argnums=1, max_examples=30, seed=0, locate=False
    )
    assert skipped.where is None
    report = audit(tanh_no_m, tanh_loss, tanh_problems(), argnums=1, max_examples=30, seed=0)
    where = json.loads(json.dumps(report.to_dict()))["where"]
    assert set(where) >= {"file", "line", "function", "source", "should_equal", "reference_line"}
    assert where["line"] == _line_of(tanh_no_m, "dz2 = a1 @ w2 - y")


# -- vjp audits ---------------------------------------------------------------------------------


def sigmoid_layer(x: Any, w: Any) -> Any:
    return jax.nn.sigmoid(x @ w)


def sigmoid_forward(x: Array, w: Array) -> tuple[Array, Any]:
    s = 1 / (1 + np.exp(-(x @ w)))
    return s, (x, w, s)


def sigmoid_backward_wrong(dout: Array, cache: Any) -> tuple[Array, Array]:
    x, w, s = cache
    local = s * (1 + s)
    dz = dout * local
    return dz @ w.T, x.T @ dz


def test_a_layers_backward_with_a_cache_is_located_in_the_backward() -> None:
    problems = named_arrays(
        {"x": ("m", "n"), "w": ("n", "h")},
        dims={d: DIMS[d] for d in ("m", "n", "h")},
        bounds=(2.0,),
    )
    report = audit_vjp(
        sigmoid_backward_wrong,
        sigmoid_layer,
        problems,
        forward=sigmoid_forward,
        argnums=1,
        max_examples=30,
        seed=0,
    )
    assert isinstance(report.where, Where), report.where
    assert report.where.line == _line_of(sigmoid_backward_wrong, "local = s * (1 + s)")
    assert "derivative" in (report.where.should_equal or "")


# -- agreement with stages= ----------------------------------------------------------------------


def _mlp_backward(params: Any, x: Array, y: Array) -> tuple[Any, dict[str, Array]]:
    w1, b1, w2, b2 = params
    m = x.shape[0]
    z1 = x @ w1 + b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ w2 + b2
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    dz2 = (p - y) / m
    da1 = dz2 @ w2.T
    dz1 = da1 * (z1 >= 1)
    grads = type(params)(x.T @ dz1, dz1.sum(axis=0), a1.T @ dz2, dz2.sum(axis=0))
    return grads, {"Z2": dz2, "A1": da1, "Z1": dz1}


def mlp_wrong_mask(params: Any, x: Array, y: Array) -> Any:
    return _mlp_backward(params, x, y)[0]


def mlp_wrong_mask_intermediates(params: Any, x: Array, y: Array) -> Any:
    return _mlp_backward(params, x, y)[1]


def test_where_agrees_with_the_stage_that_breaks() -> None:
    from manual_bp import MLPParams
    from verification import reference

    spec = {
        "W1": ("n", "h"),
        "b1": ("h",),
        "W2": ("h", "k"),
        "b2": ("k",),
        "x": ("m", "n"),
        "y": ("m", "k"),
    }
    flat = named_arrays(spec, dims=DIMS, kinds={"y": "onehot"}, bounds=(2.0,))
    problems = flat.map(lambda a: (MLPParams(*a[:4]), a[4], a[5]))
    report = audit(
        mlp_wrong_mask,
        reference.mlp_loss,
        problems,
        max_examples=40,
        seed=0,
        stages={"Z2": "Z2", "A1": "A1", "Z1": "Z1"},
        intermediates=mlp_wrong_mask_intermediates,
    )
    assert not report.passed
    assert report.stage is not None
    assert "Z1 differs" in report.stage
    assert isinstance(report.where, Where), report.where
    assert report.where.line == _line_of(_mlp_backward, "dz1 = da1 * (z1 >= 1)")
    assert MLP_STAGES  # the stage map the names above refer to


# -- the command line -----------------------------------------------------------------------------


def test_the_command_line_shows_where_and_no_locate_skips_it(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from verification.cli.audit import main

    module = tmp_path / "cli_candidate.py"
    module.write_text(
        "import numpy as np\n"
        "import jax.numpy as jnp\n"
        "def loss(x, w):\n"
        "    return jnp.sum(jnp.tanh(x @ w)) / x.shape[0]\n"
        "def grad(x, w):\n"
        "    a = np.tanh(x @ w)\n"
        "    dz = 1 - a**2\n"
        "    return x.T @ dz\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        argv = ["cli_candidate:grad", "--loss", "cli_candidate:loss", "--argnums", "1"]
        argv += ["--shapes", "x=m,n w=n,h", "--dims", "m=1,2,5 n=1,3,4 h=1,2,6"]
        argv += ["--max-examples", "30", "--seed", "0", "--bounds", "2"]
        assert main([*argv, "--json", str(tmp_path / "r.json")]) == 1
        shown = capsys.readouterr().out
        assert "where: the error enters at" in shown
        assert "dz = 1 - a**2" in shown
        data = json.loads((tmp_path / "r.json").read_text())
        assert data["where"]["line"] == 7
        assert main([*argv, "--no-locate"]) == 1
        assert "where:" not in capsys.readouterr().out
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cli_candidate", None)


def _locate_dw1(candidate: Callable[..., Array]) -> Any:
    """``locate`` of the tanh network's dW1 at two inputs (x, w1, w2, y) of distinct sizes."""
    rng = np.random.default_rng(5)
    inputs = [
        tuple(rng.normal(size=shape) for shape in ((m, n), (n, h), (h, k), (m, k)))
        for m, n, h, k in ((2, 3, 2, 3), (5, 4, 6, 7))
    ]
    return locate(
        candidate, tanh_loss, inputs, argnums=(1,), arg_names=["x", "w1", "w2", "y"], leaf=0
    )


def test_the_value_in_the_wrong_role_is_not_also_cited_as_the_last_agreeing_one() -> None:
    # dz1 = da1 passes dL/da1 on where dL/dz1 belongs: the words name that value ("dz1 equals
    # dL/da1"); "last agreeing" is for a value before the error, not that value named again.
    where = _locate_dw1(tanh_step_skipped)
    assert isinstance(where, Where), where
    assert where.line == _line_of(tanh_step_skipped, "dz1 = da1")
    assert "dz1 equals dL/da1" in where.words
    misplaced = f"line {_line_of(tanh_step_skipped, 'da1 = dz2 @ w2.T')},"
    assert misplaced not in (where.agreeing or "")


def tanh_sign_slip(x: Array, w1: Array, w2: Array, y: Array) -> Array:
    m = x.shape[0]
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / m
    t = a1**2
    s = 1 + t  # should be 1 - t: wrong here, or t (no reference quantity) is what is wrong
    dz1 = (dz2 @ w2.T) * s
    out: Array = x.T @ dz1
    return out


def test_a_line_made_right_by_some_value_of_an_unchecked_read_is_not_singled_out() -> None:
    where = _locate_dw1(tanh_sign_slip)
    assert isinstance(where, NotLocated), where
    s_line = _line_of(tanh_sign_slip, "s = 1 + t")
    t_line = _line_of(tanh_sign_slip, "t = a1**2")
    assert where.reason == (
        f"line {s_line} reads t from line {t_line}, which matches no reference quantity, and "
        "some value of it would make the line right: either line may hold the error"
    )


def test_a_select_with_a_scalar_branch_is_elementwise_and_a_broadcast_of_an_array_is_not() -> None:
    # jnp.where(x > 0, x, 0.0) broadcasts the scalar 0.0 inside: still one element in, one
    # out, so the reference's local derivatives can be taken through it.
    from verification.auditing._refsteps import elementwise

    x = np.ones(3)
    select = jax.make_jaxpr(lambda x: jnp.where(x > 0, x, 0.0))(x).jaxpr.eqns
    assert [elementwise(e) for e in select] == [True, True]
    (spread,) = jax.make_jaxpr(lambda x: jnp.broadcast_to(x, (2, 3)))(x).jaxpr.eqns
    assert not elementwise(spread)


# -- gradients kept in a dict (the cs231n style, a params dict from the --shapes grammar) --------


def dict_loss(params: Any, x: Any, y: Any) -> Any:
    a1 = jnp.tanh(x @ params["w1"])
    return jnp.sum((a1 @ params["w2"] - y) ** 2) / (2 * x.shape[0])


def dict_problems() -> Any:
    spec = {"params": {"w1": ("n", "h"), "w2": ("h", "k")}, "x": ("m", "n"), "y": ("m", "k")}
    return named_arrays(spec, dims=DIMS, bounds=(2.0,))


def _dict_forward(params: Any, x: Array, y: Array) -> tuple[Array, Array]:
    a1 = np.tanh(x @ params["w1"])
    return a1, (a1 @ params["w2"] - y) / x.shape[0]


def dict_display(params: Any, x: Array, y: Array) -> Any:
    a1, dz2 = _dict_forward(params, x, y)
    dz1 = (dz2 @ params["w2"].T) * (1 - a1**2)
    grads = {"w1": x.T @ dz1, "w2": 2 * a1.T @ dz2}
    return grads  # noqa: RET504  (the style under test: a dict display bound, then returned)


def dict_subscript(params: Any, x: Array, y: Array) -> Any:
    a1, dz2 = _dict_forward(params, x, y)
    grads = {}
    grads["w2"] = a1.T @ dz2
    dz1 = (dz2 @ params["w2"].T) * (1 + a1**2)
    grads["w1"] = x.T @ dz1
    return grads


def dict_in_place(params: Any, x: Array, y: Array) -> Any:
    a1, dz2 = _dict_forward(params, x, y)
    dz1 = (dz2 @ params["w2"].T) * (1 - a1**2)
    grads = {"w1": x.T @ dz1, "w2": a1.T @ dz2}
    grads["w2"] += a1.T @ dz2
    return grads


def dict_returned(params: Any, x: Array, y: Array) -> Any:
    a1, dz2 = _dict_forward(params, x, y)
    dz1 = (dz2 @ params["w2"].T) * (1 - a1**2)
    return {"w1": x.T @ dz1, "w2": 2 * a1.T @ dz2}


@pytest.mark.parametrize(
    ("candidate", "line"),
    [
        (dict_display, "grads = {"),
        (dict_subscript, "* (1 + a1**2)"),
        (dict_in_place, 'grads["w2"] += '),
        (dict_returned, "return {"),
    ],
)
def test_a_gradient_kept_in_a_dict_is_located_at_the_line_that_makes_it(
    candidate: Callable[..., Any], line: str
) -> None:
    report = audit(candidate, dict_loss, dict_problems(), max_examples=30, seed=0)
    assert isinstance(report.where, Where), report.where
    assert (report.where.function, report.where.line) == (
        candidate.__name__,
        _line_of(candidate, line),
    ), str(report)


def test_running_a_statement_again_leaves_the_candidates_dict_as_it_returned_it() -> None:
    params = {"w1": np.array([[0.5, -1.0]]), "w2": np.array([[1.5], [2.0]])}
    x, y = np.array([[1.0], [-0.5]]), np.array([[0.25], [1.0]])
    expected = dict_in_place(params, x, y)
    trace = trace_call(dict_in_place, (params, x, y), [("x", x)])
    from verification.auditing._rerun import rerun

    again = {n.name: rerun(n, trace, {}) for n in trace.nodes if n.line}
    np.testing.assert_array_equal(again["grads['w2']"], expected["w2"])  # the += once
    for key in expected:  # the candidate's own dict: untouched by the reruns
        np.testing.assert_array_equal(trace.result[key], expected[key])
    for key in expected:
        np.testing.assert_array_equal(trace.result[key], expected[key])


# -- gradients kept on layer objects (self.dW = ...), and objects the tracer does not follow --


class _Linear:
    def __init__(self, w: Array) -> None:
        self.w = w

    def forward(self, x: Array) -> Array:
        self.x = x
        return x @ self.w

    def backward(self, dout: Array) -> Array:
        self.dw = self.x.T @ dout * (1 + (self.x.shape[0] > 0))
        return dout @ self.w.T


class _Tanh:
    def forward(self, z: Array) -> Array:
        self.out = np.tanh(z)
        return self.out

    def backward(self, dout: Array) -> Array:
        return dout * (1 - self.out**2)


def layer_objects(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    first, act, second = _Linear(w1), _Tanh(), _Linear(w2)
    z2 = second.forward(act.forward(first.forward(x)))
    first.backward(act.backward(second.backward((z2 - y) / x.shape[0])))
    return first.dw, second.dw


class _Opaque:  # stands for an object the tracer does not look into (no __dict__)
    __slots__ = ("dw",)


def opaque_box(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    a1 = np.tanh(x @ w1)
    dz2 = (a1 @ w2 - y) / x.shape[0]
    dz1 = (dz2 @ w2.T) * (1 - a1**2)
    box = _Opaque()
    box.dw = 2 * x.T @ dz1
    return box.dw, a1.T @ dz2


def test_a_gradient_kept_on_a_layer_object_is_located_in_the_layers_backward() -> None:
    report = audit(layer_objects, tanh_loss, tanh_problems(), argnums=(1, 2), max_examples=30)
    assert isinstance(report.where, Where), report.where
    assert report.where.function == "_Linear.backward"
    assert report.where.line == _line_of(_Linear.backward, "self.dw = ")


def test_a_gradient_only_fetched_on_a_line_is_not_blamed_on_that_line() -> None:
    report = audit(opaque_box, tanh_loss, tanh_problems(), argnums=(1, 2), max_examples=30)
    assert not report.passed
    assert isinstance(report.where, NotLocated), report.where
    assert "only reads the wrong value" in report.where.reason


class _Holder:
    def __init__(self) -> None:
        self.data = np.zeros(4)  # above the (lowered) bound: passed by


def _keeps_on_self(x: Array) -> Array:
    holder = _Holder()
    holder.grad = 2 * x
    return holder.grad


def test_an_array_held_on_an_object_above_the_bound_is_not_copied_at_every_statement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import verification.auditing._trace as trace_module

    monkeypatch.setattr(trace_module, "MAX_HELD", 3)
    x = np.array([1.0, -2.0])
    names = {n.name for n in trace_call(_keeps_on_self, (x,), [("x", x)]).nodes}
    assert "holder.grad" in names
    assert not any(name.endswith(".data") for name in names)


def opaque_midway(x: Array, w1: Array, w2: Array, y: Array) -> tuple[Array, Array]:
    a1 = np.tanh(x @ w1)
    box = _Opaque()
    box.dw = 1 - a1  # the wrong local derivative, kept where the tracer does not look
    dz2 = (a1 @ w2 - y) / x.shape[0]
    local = box.dw
    dz1 = (dz2 @ w2.T) * local
    return x.T @ dz1, a1.T @ dz2


def test_a_wrong_value_fetched_midway_from_an_unfollowed_object_is_not_blamed_on_the_fetch() -> (
    None
):
    report = audit(opaque_midway, tanh_loss, tanh_problems(), argnums=(1, 2), max_examples=30)
    assert not report.passed
    assert isinstance(report.where, NotLocated), report.where
    assert f"line {_line_of(opaque_midway, 'local = box.dw')} only reads" in report.where.reason


def test_the_reduced_reads_tried_for_a_repair_broadcast_along_all_axes_but_one_or_one_alone() -> (
    None
):
    # A read smaller than the line's (2, 3, 4) value may be a row, a column or a slab of it:
    # both families of shapes are tried, and the read's own shape.
    from verification.auditing._rerun import _shapes_to_try

    shapes = _shapes_to_try((4,), (2, 3, 4), 24)
    assert {(1, 3, 4), (2, 1, 4), (2, 3, 1)} <= shapes  # all axes but one
    assert {(2, 1, 1), (1, 3, 1), (1, 1, 4)} <= shapes  # one axis alone
    assert (4,) in shapes
    assert _shapes_to_try((2, 3, 4), (2, 3, 4), 24) == {(2, 3, 4)}  # not smaller: itself only


def test_values_alike_relative_to_their_size_are_spread_over_half_to_one_and_a_half_times() -> None:
    # A second input for the locator: values all within 0.02% of 5.0 would give a second run
    # that repeats the first; they are redrawn over [2.5, 7.5] instead.
    from verification.auditing._second import _spread

    alike = np.linspace(5.0, 5.001, 50)
    (out,) = _spread((alike,), np.random.default_rng(0))
    assert out.min() >= 2.5
    assert out.max() <= 7.5
    assert out.max() - out.min() > 1.0  # not redrawn within the 0.001 they spanned
    distinct = np.linspace(5.0, 6.0, 50)
    (kept,) = _spread((distinct,), np.random.default_rng(0))
    assert kept.min() >= 5.0
    assert kept.max() <= 6.0  # a real range is kept
