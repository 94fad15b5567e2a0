"""Counterexamples kept in the repository (``verification.auditing._store``) and replayed before
any search (``replay=`` of ``audit``): the round trip of every argument form, a regression
failing on its first example, stale entries reported and removed only under the update flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from manual_bp.network import MLPParams
from verification.auditing import audit, audit_vjp, named_arrays
from verification.auditing._store import folder_name, load_entries, run_kept, save_entry


def loss(z: Any, y: Any) -> Any:
    return -jnp.sum(y * jax.nn.log_softmax(z, axis=1)) / z.shape[0]


def _softmax(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def good(z: Any, y: Any) -> Any:
    return (_softmax(z) - y) / z.shape[0]


def no_mean(z: Any, y: Any) -> Any:
    return _softmax(z) - y


SHAPES = named_arrays({"z": "m,k", "y": "m,k:onehot"})
FOUND = (np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]))
"""Where ``no_mean`` is wrong (two samples: the missing 1/m doubles the gradient)."""


def test_entries_round_trip_every_argument_form(tmp_path: Path) -> None:
    params = MLPParams(np.ones((2, 3)), np.zeros(3), np.full((3, 2), 0.5), np.zeros(2))
    args = (
        params,
        {"W": np.arange(6.0).reshape(2, 3), "b": np.array([1.0, 2.0, 3.0], np.float32)},
        [np.array([1, 0, 2]), 0.01],
        np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16),
        3,
    )
    path = save_entry(tmp_path, args, {"audit": "forms"}, {"verdict": "FAILED"})
    (entry,), unreadable = load_entries(tmp_path)
    assert unreadable == []
    assert entry.path == path
    got = entry.args
    assert isinstance(got[0], MLPParams)
    assert isinstance(got[2], list)
    assert got[2][1] == 0.01
    assert got[4] == 3
    for a, b in zip(jax.tree_util.tree_leaves(args), jax.tree_util.tree_leaves(got), strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))
    document = json.loads(path.with_suffix(".json").read_text())
    assert document["spec"] == {"audit": "forms"}
    assert document["report"] == {"verdict": "FAILED"}


def test_an_entry_that_cannot_be_rebuilt_is_reported_not_raised(tmp_path: Path) -> None:
    path = save_entry(tmp_path, FOUND, {}, {})
    path.with_suffix(".json").write_text("{not json")
    entries, unreadable = load_entries(tmp_path)
    assert entries == []
    assert len(unreadable) == 1
    assert unreadable[0].startswith(path.name + ": JSONDecodeError")


def test_a_replayed_counterexample_fails_on_the_first_example() -> None:
    report = audit(no_mean, loss, SHAPES, max_examples=50, seed=0, replay=[FOUND])
    assert report.kind == "mismatch"
    assert (report.examples, report.shrink_steps) == (1, 0)
    assert (report.replayed, report.replay_failed) == (1, 0)
    assert "stored counterexample 1 of 1, replayed before any search, fails again" in str(report)
    np.testing.assert_array_equal(report.counterexample[1], FOUND[1])  # type: ignore[index]


def test_the_second_of_two_replayed_counterexamples_is_named_when_it_fails() -> None:
    one_sample = (np.zeros((1, 2)), np.array([[1.0, 0.0]]))  # m = 1: the missing 1/m is invisible
    report = audit(no_mean, loss, SHAPES, max_examples=50, seed=0, replay=[one_sample, FOUND])
    assert (report.examples, report.replay_failed) == (2, 1)


def test_replayed_counterexamples_that_pass_come_before_the_search() -> None:
    report = audit(good, loss, SHAPES, max_examples=10, seed=0, replay=[FOUND])
    assert report.passed
    assert (report.replayed, report.replay_failed, report.examples) == (1, None, 11)
    assert "the 1 stored counterexample(s) replayed first pass" in str(report)


def test_audit_vjp_replays_inputs_with_their_cotangent() -> None:
    z = np.array([[1.0, -1.0]])
    cotangent = np.array([[1.0, 1.0]])
    report = audit_vjp(
        lambda dout, z: dout * (1 - np.tanh(z)),
        jnp.tanh,
        named_arrays({"z": "m,h"}),
        seed=0,
        replay=[(z, cotangent)],
    )
    assert (report.kind, report.examples, report.replay_failed) == ("mismatch", 1, 0)


def test_kept_counterexamples_cycle_saved_replayed_stale_removed(tmp_path: Path) -> None:
    folder = tmp_path / "gradient-audits" / folder_name("softmax")

    def with_candidate(candidate: Any) -> Any:
        return lambda replay: audit(candidate, loss, SHAPES, max_examples=50, seed=1, replay=replay)

    first = run_kept(with_candidate(no_mean), folder, {"audit": "softmax"}, update=False)
    assert not first.report.passed
    assert first.saved is not None
    assert first.replayed == []
    (entry,), _ = load_entries(folder)
    assert entry.path == first.saved

    again = run_kept(with_candidate(no_mean), folder, {}, update=False)
    assert (again.failed_again, again.saved, again.stale) == (first.saved, None, [])
    assert again.report.examples == 1
    assert again.lines(tmp_path / "gradient-audits", "--update")[0].startswith(
        "replayed the stored counterexample gradient-audits/softmax/counterexample-"
    )

    fixed = run_kept(with_candidate(good), folder, {}, update=False)
    assert fixed.report.passed
    assert fixed.stale == [first.saved]
    assert not fixed.removed
    assert first.saved.exists()
    assert fixed.lines(tmp_path / "gradient-audits", "--update")[-1].endswith(
        "passes now (--update removes it)"
    )

    updated = run_kept(with_candidate(good), folder, {}, update=True)
    assert updated.removed
    assert not first.saved.exists()
    assert not folder.exists()


@pytest.mark.parametrize(
    ("key", "folder"),
    [
        ("output-weights", "output-weights"),
        ("t.py::test_a[x-1]", "t.py--test_a-x-1"),
        ("::", "audit"),
    ],
)
def test_folder_names_are_safe_and_keep_the_name(key: str, folder: str) -> None:
    assert folder_name(key) == folder
