"""The store of compiled references (``verification._programs``, used by ``_xla.SizedJit``).

A stored program must be the program the call would compile: the same results bit for bit,
never one made for another signature, configuration or source, and never an error where an
entry cannot be read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import numpy as np
import pytest

from manual_bp.network import MLPParams
from verification import _cache, _programs, reference
from verification._xla import SizedJit

ROOT = Path(__file__).resolve().parent.parent

needs_store = pytest.mark.skipif(
    not _programs.loadable(),
    reason="this JAX does not run a loaded program as its own (_programs.loadable): "
    "nothing is stored, as test_where_a_loaded_program_cannot_run_nothing_is_stored checks",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """The persistent cache in a folder of this test's own; the folder of its programs."""
    before = _cache.directory()
    _cache.configure(tmp_path)
    try:
        yield tmp_path / _programs.FOLDER
    finally:
        _cache.configure(before)


class _NoTracing:
    """Stands for ``SizedJit.full``: any attempt to trace or lower fails the test."""

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the program was traced and lowered again")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the program was run through jax.jit, not the store")


def _new_process_view(stored: SizedJit) -> SizedJit:
    """The same reference as a new process sees it: nothing compiled in memory yet."""
    fresh = SizedJit(stored.fn, name=stored.program)
    fresh.full = _NoTracing()  # type: ignore[assignment]
    return fresh


def _problem() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(5, 4)) * 3, np.eye(4)[rng.integers(0, 4, 5)]


@needs_store
def test_a_stored_reference_runs_in_a_new_process_without_being_traced(store: Path) -> None:
    z, y = _problem()
    first = np.asarray(reference.softmax_cross_entropy_grad(z, y))
    assert len(list(store.glob("*.bin"))) >= 1
    again = _new_process_view(reference.softmax_cross_entropy_grad)
    second = np.asarray(again(z, y))
    assert second.dtype == first.dtype == np.float64
    np.testing.assert_array_equal(second, first)  # bit for bit: the same program


@needs_store
def test_a_program_is_looked_up_in_the_store_once_and_then_kept_for_its_signature(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    z, y = _problem()
    fresh = SizedJit(
        reference.softmax_cross_entropy_grad.fn, reference.softmax_cross_entropy_grad.program
    )
    expected = np.asarray(reference.softmax_cross_entropy_grad(z, y))  # (before counting)
    loads: list[str] = []
    load = _programs.load
    monkeypatch.setattr(_programs, "load", lambda f, e: loads.append(e) or load(f, e))
    first = np.asarray(fresh(z, y))
    second = np.asarray(fresh(z * 2, y))  # another call, the same signature
    assert len(loads) == 1  # the second call ran the kept program: no store, no tracing
    np.testing.assert_array_equal(first, expected)
    assert not np.array_equal(second, first)
    fresh(z[:3], y[:3])  # another signature: looked up in its turn
    assert len(loads) == 2


@needs_store
def test_a_stored_network_gradient_keeps_its_params_type_and_values(store: Path) -> None:
    rng = np.random.default_rng(4)
    params = MLPParams(rng.normal(size=(3, 5)), np.zeros(5), rng.normal(size=(5, 2)), np.zeros(2))
    x, y = rng.normal(size=(4, 3)), np.eye(2)[[0, 1, 1, 0]]
    loss, grads = reference.mlp_loss_and_grads(params, x, y)
    again = _new_process_view(reference._mlp_value_and_grad)
    loss2, grads2 = again(params, x, y)
    assert type(grads2) is type(grads) is MLPParams
    assert float(loss2) == float(loss)
    for a, b in zip(grads2, grads, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_store
def test_a_call_with_another_signature_is_compiled_for_it_not_served_another_program(
    store: Path,
) -> None:
    z, y = _problem()
    grad = SizedJit(
        reference.softmax_cross_entropy_grad.fn, name=reference.softmax_cross_entropy_grad.program
    )
    grad(z, y)  # float64, (5, 4): stored
    got32 = grad(z.astype(np.float32), y.astype(np.float32))
    assert np.asarray(got32).dtype == np.float32
    np.testing.assert_allclose(got32, grad(z, y), rtol=1e-6, atol=1e-7)
    assert np.shape(grad(z[:3], y[:3])) == (3, 4)
    # A Python number is weakly typed, a numpy one is not: two programs.
    stored = reference.relu_grad
    assert isinstance(stored, SizedJit)
    relu_grad = SizedJit(stored.fn, name=stored.program)
    weak, strong = relu_grad(1.5), relu_grad(np.float64(1.5))
    assert np.asarray(weak).dtype == np.asarray(strong).dtype == np.float64
    assert len(list(store.glob("*.bin"))) == 5


@needs_store
def test_an_unreadable_store_entry_is_compiled_again_without_an_error(store: Path) -> None:
    z, y = _problem()
    expected = np.asarray(reference.softmax_cross_entropy_grad(z, y))
    for entry in store.glob("*.bin"):
        entry.write_bytes(b"not a program")
    fresh = SizedJit(
        reference.softmax_cross_entropy_grad.fn,
        name=reference.softmax_cross_entropy_grad.program,
    )
    np.testing.assert_array_equal(np.asarray(fresh(z, y)), expected)
    # ... and the entry was written again, readable this time.
    assert all(_programs.load(store, p.stem) is not None for p in store.glob("*.bin"))


def test_a_function_made_around_values_of_the_run_is_never_stored(store: Path) -> None:
    scale = 3.0

    def scaled(x: Any) -> Any:
        return x * scale

    assert _programs.program_name(scaled) is None
    assert _programs.program_name(lambda x: x) is None
    jitted = SizedJit(scaled)
    assert float(jitted(np.float64(2.0))) == 6.0
    assert not store.exists() or not any(store.iterdir())


def test_the_key_changes_with_the_signature_the_configuration_and_the_options() -> None:
    sig = _programs.signature((np.zeros((2, 3)),), {})
    assert sig is not None
    base = _programs.key("verification.reference.f", sig, {})
    other_shape = _programs.signature((np.zeros((3, 2)),), {})
    other_dtype = _programs.signature((np.zeros((2, 3), np.float32),), {})
    assert other_shape is not None
    assert other_dtype is not None
    assert _programs.key("verification.reference.f", other_shape, {}) != base
    assert _programs.key("verification.reference.f", other_dtype, {}) != base
    assert _programs.key("verification.reference.g", sig, {}) != base
    assert (
        _programs.key("verification.reference.f", sig, {"xla_backend_optimization_level": 0})
        != base
    )
    with jax.default_matmul_precision("float32"):
        assert _programs.key("verification.reference.f", sig, {}) != base
    assert _programs.key("verification.reference.f", sig, {}) == base
    assert _programs.signature((object(),), {}) is None  # not an array: not kept


def test_the_source_behind_a_reference_is_every_module_it_reaches_and_no_other() -> None:
    reached = _programs.modules_reached("verification.reference")
    # How it is compiled and kept, and where: part of every reference's program.
    assert {"verification.reference", "verification._xla", "verification._programs"} <= set(reached)
    assert "verification._cache" in reached
    # The audit and the command line are not: editing them keeps the stored references.
    assert not any(name.startswith("verification.auditing") for name in reached)
    assert "verification.cli.report" not in reached
    assert _programs.defining_module("verification.reference.relu_grad") == (
        "verification.reference"
    )


def test_the_fingerprint_changes_with_the_source_of_every_module_reached_also_by_a_deferred_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper, deferred = tmp_path / "helper.py", tmp_path / "deferred.py"
    helper.write_text("x = 1\n")
    deferred.write_text("z = 1\n")
    module = ModuleType("verification._fingerprint_probe")
    module.__file__ = str(tmp_path / "probe.py")
    # Imported inside a function only: no module-level name leads to it.
    (tmp_path / "probe.py").write_text(
        "def f():\n    import verification._fingerprint_deferred\n    return 1\n"
    )
    reached = ModuleType("verification._fingerprint_helper")
    reached.__file__ = str(helper)
    later = ModuleType("verification._fingerprint_deferred")
    later.__file__ = str(deferred)
    module.helper = reached  # type: ignore[attr-defined]
    for m in (module, reached, later):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    assert _programs.modules_reached(module.__name__) == sorted(
        [module.__name__, reached.__name__, later.__name__]
    )
    _programs.fingerprint.cache_clear()
    try:
        before = _programs.fingerprint(module.__name__)
        helper.write_text("x = 2\n")  # a module-level name's module changes, not the probe
        _programs.fingerprint.cache_clear()
        middle = _programs.fingerprint(module.__name__)
        deferred.write_text("z = 2\n")  # a module imported inside a function changes
        _programs.fingerprint.cache_clear()
        assert len({before, middle, _programs.fingerprint(module.__name__)}) == 3
    finally:
        _programs.fingerprint.cache_clear()


def test_with_the_cache_off_a_reference_runs_through_jax_jit_and_keeps_no_program() -> None:
    before = _cache.directory()
    _cache.configure(None)
    try:
        z, y = _problem()
        fresh = SizedJit(
            reference.softmax_cross_entropy_grad.fn,
            name=reference.softmax_cross_entropy_grad.program,
        )
        np.testing.assert_array_equal(
            np.asarray(fresh(z, y)), np.asarray(reference.softmax_cross_entropy_grad(z, y))
        )
        assert not fresh._compiled
    finally:
        _cache.configure(before)


@needs_store
def test_under_disable_jit_a_reference_is_not_served_a_compiled_program(store: Path) -> None:
    z, y = _problem()
    reference.softmax_cross_entropy_grad(z, y)
    fresh = SizedJit(
        reference.softmax_cross_entropy_grad.fn, name=reference.softmax_cross_entropy_grad.program
    )
    with jax.disable_jit():
        fresh(z, y)
    assert not fresh._compiled


class _LoadsButCannotRun:
    """A store entry that loads but fails when run (as one written from an executable JAX had
    loaded from its own cache did: its kernels were missing in the next process)."""

    def __init__(self, in_tree: Any) -> None:
        self.in_tree = in_tree

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise jax.errors.JaxRuntimeError("NOT_FOUND: Function reduce_max.7_kernel not found")


@needs_store
def test_an_entry_that_loads_but_cannot_run_is_compiled_again_and_replaced(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    z, y = _problem()
    expected = np.asarray(reference.softmax_cross_entropy_grad(z, y))
    sig = _programs.signature((z, y), {})
    assert sig is not None
    monkeypatch.setattr(_programs, "load", lambda folder, entry: _LoadsButCannotRun(sig[0]))
    fresh = SizedJit(
        reference.softmax_cross_entropy_grad.fn, name=reference.softmax_cross_entropy_grad.program
    )
    np.testing.assert_array_equal(np.asarray(fresh(z, y)), expected)
    monkeypatch.undo()
    # The entry now on disk is a program that runs.
    again = _new_process_view(reference.softmax_cross_entropy_grad)
    np.testing.assert_array_equal(np.asarray(again(z, y)), expected)


_SOFTMAX_RUN = """
import numpy as np
from verification import reference
print(np.asarray(reference.softmax(np.zeros((1, 3)))).tolist())
"""


@needs_store
def test_a_program_stored_where_jax_s_cache_held_it_runs_in_the_next_process(
    tmp_path: Path,
) -> None:
    env = {**os.environ, _cache.ENV_VAR: str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _SOFTMAX_RUN],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    third = "[[0.3333333333333333, 0.3333333333333333, 0.3333333333333333]]"
    assert run() == third  # compiles: JAX's cache and the store both written
    shutil.rmtree(tmp_path / _programs.FOLDER)
    assert run() == third  # JAX's cache holds it: the store's entry is compiled afresh
    assert run() == third  # loaded from the store, and it runs


def test_where_a_loaded_program_cannot_run_nothing_is_stored(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_programs, "loadable", lambda: False)
    z, y = _problem()
    fresh = SizedJit(
        reference.softmax_cross_entropy_grad.fn, name=reference.softmax_cross_entropy_grad.program
    )
    np.testing.assert_array_equal(
        np.asarray(fresh(z, y)), np.asarray(reference.softmax_cross_entropy_grad.full(z, y))
    )
    assert not fresh._compiled
    assert not store.exists() or not any(store.iterdir())


def test_the_probe_of_loaded_programs_agrees_with_a_loaded_reference_under_differentiation(
    store: Path,
) -> None:
    # Where the probe says loaded programs run as JAX's own, a reference loaded from the
    # store feeds jax.grad through a nested jit (what failed on jax 0.12).
    if not _programs.loadable():
        pytest.skip("nothing is loaded on this JAX")
    x, w, b = np.zeros((1, 1)), np.zeros((1, 1)), np.ones(1)
    reference.linear(x, w, b)  # stored
    again = SizedJit(reference.linear.fn, name=reference.linear.program)
    out = again(x, w, b)
    grad = jax.grad(lambda a: reference.linear.full(a, w, b).sum())(out)
    np.testing.assert_array_equal(np.asarray(grad), np.zeros((1, 1)))
