"""The side-by-side table's "fastest right peer": the quickest other checker whose verdict was
right, and the audit's time against it (``benchmarks.gradcheck_compare``)."""

from __future__ import annotations

from typing import Any

from benchmarks.gradcheck_compare import CANDIDATES, PEERS, _markdown, _row, _versus


def _rows(peer_seconds: dict[str, tuple[str, float]], audit: tuple[str, float]) -> list[Any]:
    rows = []
    for cand in CANDIDATES:
        for label in ("cold from cache", "warm"):
            rows.append(_row("tiny", f"this audit, {label}", cand, audit[0], audit[1], 0.01))
        for peer, (outcome, seconds) in peer_seconds.items():
            rows.append(_row("tiny", peer, cand, outcome, seconds, 0.01))
    return rows


def test_the_fastest_right_peer_skips_wrong_verdicts() -> None:
    fast_but_wrong, slow_and_right = PEERS[0], PEERS[1]
    rows = _rows(
        {fast_but_wrong: ("pass", 0.1), slow_and_right: ("FAIL", 3.0)}, audit=("FAIL", 2.0)
    )
    bug = next(v for v in _versus(rows) if v["candidate"] == "(b) missing 1/m")
    assert bug["peer"] == slow_and_right
    assert bug["peer_s"] == 3.0
    assert bug["audit_warm_not_slower"]
    correct = next(v for v in _versus(rows) if v["candidate"] == "(a) correct")
    assert correct["peer"] == fast_but_wrong  # "pass" is right on a correct candidate
    assert not correct["audit_warm_right"]  # the audit said FAIL there
    assert not correct["audit_warm_not_slower"]


def test_the_table_counts_the_cells_where_the_audit_is_right_and_not_slower() -> None:
    rows = _rows({PEERS[0]: ("FAIL", 1.0)}, audit=("FAIL", 0.5))
    text = _markdown(rows, cap=60.0)
    wrong_on = sum(correct for _, _, correct in CANDIDATES.values())
    right = len(CANDIDATES) - wrong_on
    assert f"right on {right} of {len(CANDIDATES)} cells" in text
    assert f"at most as slow as the fastest right peer on {right} of {len(CANDIDATES)}" in text
    assert "fastest right peer" in text.splitlines()[2]


def test_the_quick_audit_is_a_column_of_its_own_and_is_counted_apart() -> None:
    rows = _rows({PEERS[0]: ("FAIL", 1.0)}, audit=("FAIL", 2.0))  # full: slower than the peer
    for cand in CANDIDATES:  # quick: faster, and wrong on the correct candidates as the others
        rows.append(_row("tiny", "this audit, quick, warm", cand, "FAIL", 0.5, 0.01))
    text = _markdown(rows, cap=60.0)
    header = text.splitlines()[2]
    assert "this audit, quick, warm" in header
    assert "audit / peer (cold from cache, warm, quick, warm)" in header
    right = len(CANDIDATES) - sum(correct for _, _, correct in CANDIDATES.values())
    assert (
        f"The audit (warm): right on {right} of {len(CANDIDATES)} cells, right and at most "
        f"as slow as the fastest right peer on 0 of" in text
    )
    assert (
        f"The audit (quick, warm): right on {right} of {len(CANDIDATES)} cells, right and "
        f"at most as slow as the fastest right peer on {right} of" in text
    )
    cell = next(v for v in _versus(rows) if v["candidate"] == "(b) missing 1/m")
    assert cell["audit_quick, warm_not_slower"]
    assert not cell["audit_warm_not_slower"]
