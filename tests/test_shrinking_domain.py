"""The shrunk counterexample stays inside the declared domain (issue 21, item 8).

Hypothesis shrinks inside the strategy's domain; the audit's own last pass (``_simplify``)
used to set elements to 0 whatever the kind, so a ``positive`` argument came back holding
zeros and a ``distinct`` one holding ties. bfloat16 draws rounded float32 values, which could
land on an open end or make two values equal.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from verification.auditing import audit, audit_vjp, named_arrays
from verification.auditing._grammar import parse_kinds
from verification.auditing._lowprec import BFLOAT16
from verification.auditing._simplify import simplest

Array = Any


def square_loss(x: Array) -> Array:
    return jnp.sum(x**2)


def grad_off_by_one(x: Array) -> Array:
    """Bug: 2x + 1, wrong at every input (also at 0, so zeros would keep it failing)."""
    return 2 * x + 1


def _inside(x: np.ndarray[Any, Any], kind: str) -> bool:
    value = parse_kinds([kind])
    if value.kind == "positive":
        return bool(np.all(x > 0))
    if value.kind == "away":
        return bool(np.all(np.abs(x) >= value.low))
    low_ok = x > value.low if value.open_low else x >= value.low
    high_ok = x < value.high if value.open_high else x <= value.high
    return bool(np.all(low_ok & high_ok))


@pytest.mark.parametrize("kind", ["positive", "[0.5,2]", "(1,3]", "|x|>=0.5", "[-4,-2)"])
def test_simplified_counterexample_stays_in_the_declared_interval(kind: str) -> None:
    shapes = named_arrays({"x": f"m,n:{kind}"}, dims={"m": [2], "n": [3]})
    report = audit(grad_off_by_one, square_loss, shapes, max_examples=20, seed=0)
    assert not report.passed
    (x,) = report.counterexample
    assert _inside(x, kind), f"{kind}: {x}"
    value = parse_kinds([kind])  # and simplified: each element is its kind's simplest value
    assert all(float(v) == simplest(value, float(v)) for v in x.ravel()), x


def test_simplified_counterexample_of_a_distinct_argument_has_no_ties() -> None:
    shapes = named_arrays({"x": "m,n:[-1,1]:distinct"}, dims={"m": [2], "n": [3]})
    report = audit(grad_off_by_one, square_loss, shapes, max_examples=20, seed=0)
    assert not report.passed
    (x,) = report.counterexample
    assert np.unique(x).size == x.size, x
    assert np.count_nonzero(x == 0) == 1, x  # one element simplified to 0, the others kept


def test_vjp_counterexample_stays_in_the_declared_domain() -> None:
    shapes = named_arrays({"z": "m,n:positive"}, dims={"m": [2], "n": [2]})
    report = audit_vjp(
        lambda dout, z: 2 * dout * z + 1.0, jnp.square, shapes, max_examples=20, seed=0
    )
    assert not report.passed
    z = report.counterexample[0]
    assert np.all(z == 1), z


def test_counterexample_without_a_declared_domain_is_still_zeroed() -> None:
    shapes = st.tuples(hnp.arrays(np.float64, (2, 3), elements=st.floats(0.5, 2.0)))
    report = audit(grad_off_by_one, square_loss, shapes, max_examples=20, seed=0)
    assert np.all(report.counterexample[0] == 0)


@pytest.mark.parametrize("kind", ["(0,1)", "[-1,1]:distinct", "positive"])
def test_bfloat16_draws_stay_in_the_declared_domain(kind: str) -> None:
    strategy = named_arrays({"x": f"m,n:{kind}"}, dtype=BFLOAT16, dims={"m": [4], "n": [8]})

    @settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def drawn_inside(args: tuple[Any, ...]) -> None:
        x = args[0].astype(np.float64)
        assert args[0].dtype == BFLOAT16
        if "distinct" in kind:
            assert np.unique(x).size == x.size, x
        else:
            assert _inside(x, kind), x

    drawn_inside()


def test_simplest_value_of_each_kind() -> None:
    cases = {
        ("real", 2.5): 0.0,
        ("positive", 0.25): 1.0,
        ("[0.5,2]", 1.7): 1.0,
        ("(1,3]", 2.2): 2.0,
        ("[1.5,1.75]", 1.6): None,
        ("[-4,-2)", -3.5): -3.0,
        ("(-inf,0)", -0.5): -1.0,
        ("|x|>=0.5", -2.0): -1.0,
        ("|x|>=2.5", 7.0): 3.0,
        ("ints[2,5]", 4.0): 2.0,
        ("binary", 1.0): 0.0,
        ("pm1", -1.0): None,
        ("onehot", 1.0): None,
    }
    for (kind, x), expected in cases.items():
        assert simplest(parse_kinds([kind]), x) == expected, kind
