"""The compile options of the references: fast below OPTIMISE_ABOVE elements, XLA's defaults
from there on, and only options this jaxlib accepts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import verification.reference  # noqa: F401  (64-bit JAX)
from verification import _xla


@pytest.fixture
def fresh_options() -> Iterator[None]:
    _xla.fast_compile_options.cache_clear()
    yield
    _xla.fast_compile_options.cache_clear()


def test_small_arguments_use_the_fast_program_and_large_ones_the_optimised_one() -> None:
    f = _xla.sized_jit(lambda x: jnp.sum(jnp.tanh(x)))
    small = np.linspace(-1.0, 1.0, 12)
    large = np.linspace(-1.0, 1.0, _xla.OPTIMISE_ABOVE)
    assert float(f(small)) == pytest.approx(float(np.sum(np.tanh(small))), rel=1e-14)
    assert (f.fast._cache_size(), f.full._cache_size()) == (1, 0)
    assert float(f(large)) == pytest.approx(float(np.sum(np.tanh(large))), abs=1e-9)
    assert (f.fast._cache_size(), f.full._cache_size()) == (1, 1)


def test_the_fast_program_gives_the_optimised_programs_results_to_the_last_places() -> None:
    x = np.random.default_rng(0).standard_normal((64, 33))

    def loss(w: Any) -> Any:
        return jnp.mean(jnp.log1p(jnp.exp(x @ w)))

    w = np.linspace(-0.5, 0.5, 33)
    fast = _xla.sized_jit(jax.grad(loss))
    np.testing.assert_allclose(fast(w), fast.full(w), rtol=1e-13, atol=1e-16)


def test_an_option_this_xla_does_not_know_is_dropped_and_the_others_kept(
    fresh_options: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_xla.FAST_COMPILE, "xla_no_such_option_anywhere", True)
    options = _xla.fast_compile_options()
    assert "xla_no_such_option_anywhere" not in options
    assert options["xla_backend_optimization_level"] == 0


def test_elements_count_every_leaf_and_scalars_as_one() -> None:
    assert _xla.elements(({"a": np.zeros((2, 3))}, [np.zeros(4), 1.5])) == 11


def test_a_sized_function_inside_another_transformation_is_part_of_the_outer_program() -> None:
    f = _xla.sized_jit(lambda x: jnp.sum(x**3))
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(jax.jit(jax.grad(f))(x), 3 * x**2)
    assert f.fast._cache_size() == 0  # no compile options on a nested jit


def test_a_sized_function_is_a_routine_as_a_jitted_one_is() -> None:
    import inspect

    f = _xla.sized_jit(lambda x: x + 1.0)

    class Holder:
        add = f

    assert inspect.isroutine(f)  # documentation tools show it as a function
    assert Holder.add is f
    assert inspect.signature(_xla.sized_jit(jnp.sin)) == inspect.signature(jnp.sin)
