"""The audit's input vocabulary (issue 10): every form of the grammar draws what it says, and an
audit that uses it passes a correct candidate and fails a buggy one; a seed pins the examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from verification.auditing import audit, named_arrays, parse_shapes
from verification.auditing._grammar import parse_size, size_value

# -- the grammar ------------------------------------------------------------------------------


@given(
    st.integers(1, 9), st.integers(0, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 5)
)
def test_size_expressions_evaluate_like_python_integer_arithmetic(
    h: int, p: int, f: int, s: int, d: int
) -> None:
    values = {"H": h, "p": p, "f": f, "s": s, "d": d}
    for text, expected in [
        ("2*h", 2 * h),
        ("h+1", h + 1),
        ("d*s", d * s),
        ("(H+2*p-f)//s+1", (h + 2 * p - f) // s + 1),
    ]:
        assert size_value(parse_size(text.replace("h", "H")), values) == expected


@pytest.mark.parametrize("bad", ["", "m+", "(m", "m)", "m**2", "__import__('os')", "m;n"])
def test_size_expressions_are_parsed_never_evaluated(bad: str) -> None:
    with pytest.raises(ValueError, match=r"size|unexpected|unbalanced|ends early|cannot read"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("x=m:[1,0]", "empty"),
        ("x=m:ints[0.5,2]", "integers"),
        ("x=m:|x|>=0", "> 0"),
        ("x=m:real:positive", "two kinds"),
        ("x=m:binary:distinct", "distinct"),
        ("x=m:gauss", "unknown kind"),
        ("x:=abc", "NAME:=NUMBER"),
        ("p.W=n p.W=n", "twice"),
        ("y=:onehot", "at least one dimension"),
    ],
)
def test_the_grammar_rejects_malformed_items_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_shapes(text)


@pytest.mark.parametrize(
    ("text", "repair"),
    [
        ("x=m:ints[1,2", "did you mean ints[1,2] (a bracket is not closed)?"),
        ("x=m:[0,1", "did you mean [0,1] (a bracket is not closed)?"),
        ("x=m y=m:classes(k", "did you mean classes(k) (a bracket is not closed)?"),
        ("x=m y=m:classe(k)", "did you mean classes(k)?"),
        ("x=m:postive", "did you mean positive?"),
        ("x=m:onehto", "did you mean onehot?"),
    ],
)
def test_an_unknown_kind_one_repair_from_a_valid_one_gets_that_repair_suggested(
    text: str, repair: str
) -> None:
    with pytest.raises(ValueError, match="unknown kind") as error:
        parse_shapes(text)
    assert str(error.value).endswith(repair)


@pytest.mark.parametrize("text", ["x=m:gauss", "x=m:ints[1,x", "x=m:[1,0"])
def test_an_unknown_kind_no_repair_makes_valid_gets_no_suggestion(text: str) -> None:
    with pytest.raises(ValueError, match="unknown kind") as error:
        parse_shapes(text)
    assert "did you mean" not in str(error.value)


# -- every form draws what it says ------------------------------------------------------------


@given(named_arrays({"a": "m,n:[-2,5]", "b": "m,n:(0,1)", "c": "m,n:[0,1)", "d": "m:prob"}))
def test_intervals_are_respected_open_ends_left_out(args: tuple[Any, ...]) -> None:
    a, b, c, d = args
    assert np.all((a >= -2) & (a <= 5))
    assert np.all((b > 0) & (b < 1))
    assert np.all((c >= 0) & (c < 1))
    assert np.all((d >= 0) & (d <= 1))


@given(named_arrays({"a": "m,n:positive", "b": "m,n:|x|>=0.5", "c": "m,n:ints[-2,3]"}))
def test_positive_away_from_zero_and_small_integers(args: tuple[Any, ...]) -> None:
    a, b, c = args
    assert np.all(a > 0)
    assert np.all(np.abs(b) >= 0.5)
    assert np.all((c == np.round(c)) & (c >= -2) & (c <= 3))
    assert c.dtype == np.float64


@given(named_arrays({"y": "m:classes(k)", "z": "m,k", "s": "m:pm1", "t": "m:binary"}))
def test_labels_integer_classes_plus_minus_one_and_binary(args: tuple[Any, ...]) -> None:
    y, z, s, t = args
    assert y.dtype == np.int64
    assert y.shape == (z.shape[0],)
    assert np.all((y >= 0) & (y < z.shape[1]))
    assert set(np.unique(s)) <= {-1.0, 1.0}
    assert set(np.unique(t)) <= {0.0, 1.0}


@given(named_arrays({"y": "m,k:onehot", "q": "m,k:soft"}, dtype=np.float32))
def test_one_hot_and_soft_label_rows(args: tuple[Any, ...]) -> None:
    y, q = args
    assert np.all(y.sum(axis=1) == 1)
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(axis=1), 1, rtol=1e-6)
    assert q.dtype == np.float32


@given(named_arrays({"x": "m,n:[-1,1]:distinct"}))
def test_distinct_values_have_no_ties(args: tuple[Any, ...]) -> None:
    (x,) = args
    assert np.unique(x).size == x.size


@given(
    named_arrays(
        {
            "x": "m,c,H,W",
            "w": "k,c,f,f",
            "dout": "m,k,(H+2*p-f)//s+1,(W+2*p-f)//s+1",
            "h2": "2*h,h+1,d1*d2",
            "p": 1,
            "s": 2,
        }
    )
)
def test_derived_sizes_follow_their_expressions(args: tuple[Any, ...]) -> None:
    x, w, dout, h2, p, s = args
    m, _, height, width = x.shape
    k, _, f, _ = w.shape
    assert dout.shape == (m, k, (height + 2 * p - f) // s + 1, (width + 2 * p - f) // s + 1)
    assert h2.shape[0] == 2 * (h2.shape[1] - 1)
    assert (p, s) == (1, 2)
    assert isinstance(p, int)


class Params(NamedTuple):
    W: Any
    b: Any


@given(
    named_arrays(
        {
            "params": {"W1": ("n", "h"), "b1": "h"},
            "layers": ["n,h", "h,k"],
            "pair": ("m,n", "m,k:onehot"),
            "nt": Params("n,k", "k"),
            "lam": 0.01,
        }
    )
)
def test_pytree_arguments_keep_their_structure_and_shared_sizes(args: tuple[Any, ...]) -> None:
    params, layers, pair, nt, lam = args
    n, h = params["W1"].shape
    assert params["b1"].shape == (h,)
    assert layers[0].shape == (n, h)
    assert layers[1].shape[0] == h
    assert pair[0].shape[1] == n
    assert isinstance(nt, Params)
    assert nt.W.shape == (n, pair[1].shape[1])
    assert lam == 0.01


def test_the_command_line_spells_the_same_forms() -> None:
    spec = parse_shapes(
        "params.W1=n,h params.b1=h layers.0=n,h layers.1=h,k x=m,n y=m:classes(k) lam:=0.01 s:=2"
    )
    assert sorted(spec["params"]) == ["W1", "b1"]
    assert isinstance(spec["layers"], list)
    assert spec["y"].value.kind == "classes"
    assert (spec["lam"].value, spec["s"].value) == (0.01, 2)


# -- each form in an audit: a correct candidate passes, a buggy one fails ----------------------


def _softmax(z: Any) -> Any:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sig(x: Any) -> Any:
    return 1 / (1 + np.exp(-x))


FORMS: dict[str, tuple[Any, ...]] = {
    # name: (spec, argnums, loss, correct, buggy)
    "integer class indices": (
        {"z": "m,k", "y": "m:classes(k)"},
        0,
        lambda z, y: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], 1)),
        lambda z, y: (
            (
                np.exp(z - z.max(1, keepdims=True))
                / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
                - np.eye(z.shape[1])[y]
            )
            / z.shape[0]
        ),
        lambda z, y: (
            np.exp(z - z.max(1, keepdims=True))
            / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
            - np.eye(z.shape[1])[y]
        ),
    ),
    "+-1 labels": (
        {"w": "n", "x": "m,n", "y": "m:pm1"},
        0,
        lambda w, x, y: jnp.mean(jax.nn.softplus(-y * (x @ w))),
        lambda w, x, y: x.T @ (-y * _sig(-y * (x @ w))) / x.shape[0],
        lambda w, x, y: x.T @ (-y * _sig(y * (x @ w))) / x.shape[0],
    ),
    "binary labels": (
        {"z": "m", "t": "m:binary"},
        0,
        lambda z, t: jnp.sum(jax.nn.softplus(z) - t * z),
        lambda z, t: _sig(z) - t,
        lambda z, t: _sig(z) - t * _sig(z),
    ),
    "open (0,1) for a clipped cross-entropy": (
        {"p": "m:(0,1)", "t": "m:binary"},
        0,
        lambda p, t: -jnp.sum(t * jnp.log(p) + (1 - t) * jnp.log1p(-p)),
        lambda p, t: -t / p + (1 - t) / (1 - p),
        lambda p, t: -t / p + (1 - t) / p,
    ),
    "positive": (
        {"x": "m:positive"},
        0,
        lambda x: jnp.sum(jnp.sqrt(x)),
        lambda x: 0.5 / np.sqrt(x),
        lambda x: 0.5 * np.sqrt(x),
    ),
    "bounded away from zero": (
        {"x": "m:|x|>=0.1"},
        0,
        lambda x: jnp.sum(1 / x),
        lambda x: -1 / x**2,
        lambda x: 1 / x**2,
    ),
    "any [lo,hi]": (
        {"x": "m:[-0.9,0.9]"},
        0,
        lambda x: jnp.sum(jnp.arctanh(x)),
        lambda x: 1 / (1 - x**2),
        lambda x: 1 / (1 + x**2),
    ),
    "all-distinct for max": (
        {"x": "m,n:distinct"},
        0,
        lambda x: jnp.sum(jnp.max(x, axis=1)),
        lambda x: (x == x.max(axis=1, keepdims=True)).astype(x.dtype),
        lambda x: (x >= np.sort(x, axis=1)[:, -2:-1] if x.shape[1] > 1 else x == x).astype(x.dtype),
    ),
    "small integers": (
        {"w": "n", "c": "n:ints[0,3]"},
        0,
        lambda w, c: jnp.sum(c * w**2),
        lambda w, c: 2 * c * w,
        lambda w, c: 2 * np.maximum(c, 1) * w,
    ),
    "derived sizes (strided 1-d convolution)": (
        {"x": "m,L", "w": "f", "dout": "m,(L-f)//s+1", "s": 2},
        1,
        lambda x, w, dout, s: jnp.sum(
            dout
            * jnp.stack(
                [x[:, i * s : i * s + w.shape[0]] @ w for i in range(dout.shape[1])], axis=1
            )
        ),
        lambda x, w, dout, s: (
            sum(dout[:, i] @ x[:, i * s : i * s + w.shape[0]] for i in range(dout.shape[1])) + 0 * w
        ),
        lambda x, w, dout, s: (
            sum(dout[:, i] @ x[:, i : i + w.shape[0]] for i in range(dout.shape[1])) + 0 * w
        ),
    ),
    "pytree dict params and a fixed float": (
        {"params": {"W": "n,h", "b": "h"}, "x": "m,n", "lam": 0.1},
        0,
        lambda p, x, lam: jnp.sum(jnp.tanh(x @ p["W"] + p["b"])) + lam * jnp.sum(p["W"] ** 2),
        lambda p, x, lam: {
            "W": x.T @ (1 - np.tanh(x @ p["W"] + p["b"]) ** 2) + 2 * lam * p["W"],
            "b": (1 - np.tanh(x @ p["W"] + p["b"]) ** 2).sum(0),
        },
        lambda p, x, lam: {
            "W": x.T @ (1 - np.tanh(x @ p["W"] + p["b"]) ** 2) + lam * p["W"],
            "b": (1 - np.tanh(x @ p["W"] + p["b"]) ** 2).sum(0),
        },
    ),
    "soft labels": (
        {"z": "m,k", "q": "m,k:soft"},
        0,
        lambda z, q: -jnp.sum(q * jax.nn.log_softmax(z)),
        lambda z, q: _softmax(z) * q.sum(1, keepdims=True) - q,
        lambda z, q: _softmax(z) - np.eye(q.shape[1])[q.argmax(axis=1)],  # soft taken as hard
    ),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_each_input_form_passes_a_correct_candidate_and_fails_a_buggy_one(form: str) -> None:
    spec, argnums, loss, correct, buggy = FORMS[form]
    shapes = named_arrays(spec)
    good = audit(
        correct, loss, shapes, argnums=argnums, max_examples=40, seed=0, arg_names=list(spec)
    )
    assert good.passed, str(good)
    assert good.out_of_domain == 0, str(good)
    bad = audit(buggy, loss, shapes, argnums=argnums, max_examples=60, seed=0, arg_names=list(spec))
    assert bad.kind == "mismatch", str(bad)


def test_a_pytree_leaf_is_named_as_the_user_reads_it() -> None:
    spec, argnums, loss, _, buggy = FORMS["pytree dict params and a fixed float"]
    report = audit(
        buggy,
        loss,
        named_arrays(spec),
        argnums=argnums,
        max_examples=60,
        seed=0,
        arg_names=list(spec),
    )
    assert report.location is not None
    assert report.location.startswith("params['W']["), report.location
    assert "lam" not in (report.location or "")


# -- a seed pins the examples -----------------------------------------------------------------

_RUN = textwrap.dedent(
    """
    import json, sys
    import numpy as np, jax.numpy as jnp
    sys.path.insert(0, ".")
    if sys.argv[1] == "literals":
        import literals  # a module full of float and int literals
    from verification import audit, named_arrays

    def loss(x, w):
        return jnp.sum(jnp.tanh(x @ w)) / x.shape[0]

    def grad(x, w):
        return x.T @ (1 - np.tanh(x @ w) ** 2)

    report = audit(grad, loss, named_arrays({"x": "m,n", "w": "n,h"}), argnums=1,
                   max_examples=50, seed=3)
    data = report.to_dict()
    data.pop("timings")
    print(json.dumps(data, sort_keys=True))
    """
)


def test_the_same_seed_draws_the_same_examples_whatever_the_directory_and_modules(
    tmp_path: Path,
) -> None:
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    outputs = []
    for name, extra in (("first", "plain"), ("second", "literals")):
        where = tmp_path / name
        where.mkdir()
        (where / "run.py").write_text(_RUN)
        if extra == "literals":
            rng = np.random.default_rng(1)
            floats = ", ".join(repr(float(v)) for v in rng.uniform(-1e3, 1e3, 300).round(3))
            ints = ", ".join(str(int(v)) for v in rng.integers(-50, 50, 300))
            (where / "literals.py").write_text(f"FLOATS = [{floats}]\nINTS = [{ints}]\n")
        done = subprocess.run(
            [sys.executable, "run.py", extra],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
        assert not (where / ".hypothesis").exists()
    assert outputs[0] == outputs[1]
    assert outputs[0]["counterexample"] is not None


def test_prob_is_the_interval_from_0_to_1() -> None:
    from verification.auditing._grammar import parse_kinds

    value = parse_kinds(["prob"])
    assert (value.kind, value.low, value.high) == ("interval", 0.0, 1.0)


def test_a_namedtuple_of_specs_draws_the_namedtuple_of_arrays() -> None:
    from hypothesis import find

    from manual_bp import MLPParams

    spec = {"params": MLPParams("n,h", "h", "h,k", "k"), "x": "m,n"}
    params, x = find(named_arrays(spec), lambda args: True)
    assert type(params) is MLPParams
    n, h = params.W1.shape
    assert (params.b1.shape, params.W2.shape[0], x.shape[1]) == ((h,), h, n)
    assert params.b2.shape == (params.W2.shape[1],)


def test_an_integer_argument_to_differentiate_is_a_spec_error_naming_its_shapes() -> None:
    from verification.auditing import AuditSpecError

    def loss(a: Any) -> Any:
        return jnp.sum(jnp.asarray(a, jnp.float64))

    with pytest.raises(AuditSpecError) as info:
        audit(lambda a: a, loss, (np.array([1, 2]),), seed=0, max_examples=3)
    assert str(info.value) == (
        "argument 0 is differentiated, so it must hold float arrays (args[0]: (2,) int64): "
        "differentiate float arguments only"
    )
