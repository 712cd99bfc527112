"""core/join.py's expiry pinned exactly: the tests that kill the mutants `make mutation` found surviving there.

docs/mutation.md lists the mutants left alive and why.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core.join import FeedbackJoin
from streamdrift.core.join_bulk import BulkFeedbackJoin

T0 = 1_700_000_000.0


def _predictions(join: FeedbackJoin, ids: list[str], times: list[float]) -> None:
    n = len(ids)
    join.add_predictions(ids, np.array(times), [1] * n, np.full(n, np.nan), ["v1"] * n, [None] * n)


def _feedback(join: FeedbackJoin, ids: list[str], times: list[float]) -> None:
    n = len(ids)
    join.add_feedback(ids, np.array(times), [1] * n, [None] * n, np.full(n, np.nan), [None] * n)


@pytest.mark.parametrize("kind", [FeedbackJoin, BulkFeedbackJoin])
def test_expired_rows_leave_the_pending_bytes(kind: type[FeedbackJoin]) -> None:
    """The join's pending bytes (in /status) and its byte bound count what still waits, not what expired."""
    join = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
    _predictions(join, ["a", "b"], [T0, T0])
    _feedback(join, ["x"], [T0])
    _predictions(join, ["c"], [T0 + 100])  # the watermark passes T0 + 60: a, b and x expire
    alone = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
    _predictions(alone, ["c"], [T0 + 100])
    counters = join.counters()
    assert (counters["expired_predictions"], counters["expired_feedback"]) == (2, 1)
    assert counters["pending_prediction_bytes"] == alone.counters()["pending_prediction_bytes"] > 0
    assert counters["pending_feedback_bytes"] == 0


@pytest.mark.parametrize("kind", [FeedbackJoin, BulkFeedbackJoin])
def test_a_row_expires_by_its_own_deadline_not_with_an_older_one(kind: type[FeedbackJoin]) -> None:
    join = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
    _predictions(join, ["a", "c"], [T0, T0 + 50])
    _predictions(join, ["d"], [T0 + 100])  # past a's deadline (T0 + 60), not c's (T0 + 110)
    assert join.counters()["expired_predictions"] == 1
    assert len(join.add_feedback(["c"], np.array([T0 + 101]), [1], [None], np.full(1, np.nan), [None])) == 1


@pytest.mark.parametrize("kind", [FeedbackJoin, BulkFeedbackJoin])
def test_a_joined_pair_is_forgotten_ttl_after_it_so_a_late_second_label_waits(kind: type[FeedbackJoin]) -> None:
    """A label for a pair joined within the last ttl is a duplicate; one past it waits for a new prediction,
    even when nothing else is pending (the pair alone sets when the join looks again)."""
    join = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
    _predictions(join, ["a"], [T0])
    _feedback(join, ["a"], [T0 + 1])
    _feedback(join, ["a"], [T0 + 30])
    assert join.counters()["duplicate_feedback"] == 1
    _feedback(join, ["a"], [T0 + 100])
    counters = join.counters()
    assert (counters["duplicate_feedback"], counters["pending_feedback"], counters["joined"]) == (1, 1, 1)


# -- the row loop (FeedbackJoin), run by `make mutation MUTATION_MODULES=join` ----------------------------


def test_approx_bytes_is_exact_for_every_json_value() -> None:
    """The byte bound of the join's buffers and the pending bytes in /status: numbers, booleans and null 8,
    a string its length, a list 16 plus its items, an object 16 plus its keys and values, nested; any
    other value (a numpy scalar) 8."""
    from streamdrift.core.join import approx_bytes

    assert [approx_bytes(v) for v in (0, 2.5, True, None, "", "abc", np.float64(1.5))] == [8, 8, 8, 8, 0, 3, 8]
    assert approx_bytes([]) == approx_bytes(()) == approx_bytes({}) == 16
    assert approx_bytes([1, "ab", None]) == 16 + 8 + 2 + 8
    assert approx_bytes(("ab", 3)) == 16 + 2 + 8
    assert approx_bytes({"region": "eu", "n": 3}) == 16 + (6 + 2) + (1 + 8)
    assert approx_bytes({"g": ["a", "bb"], "m": {"k": False}}) == 16 + (1 + 16 + 1 + 2) + (1 + 16 + 1 + 8)


@pytest.mark.parametrize("kind", [FeedbackJoin, BulkFeedbackJoin])
def test_waiting_rows_are_stored_with_their_deadline_time_size_and_values(kind: type[FeedbackJoin]) -> None:
    """A waiting row's entry in the state: deadline, event time, approximate bytes (64 + the id, the
    values' approx_bytes, 8 for the score, 8 for a feedback value), then its values; a prediction
    without a score holds None, a side that saw no row has ``newest`` None, as has a fresh join's watermark."""
    join = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
    fresh = join.state()
    assert fresh["watermark"] is None and join.counters()["watermark"] is None
    assert fresh["predictions"]["newest"] is None and fresh["feedback"]["newest"] is None
    segment = {"region": "eu", "tier": ["a", "bb"]}
    join.add_predictions(
        ["p1", "p22"], np.array([T0, T0 + 1]), ["yes", 1], np.array([np.nan, 0.25]), ["v1", None], [segment, None]
    )
    state = join.state()
    assert state["predictions"]["entries"] == [
        ["p1", T0 + 60, T0, 64 + 2 + 3 + 8 + 2 + (16 + (6 + 2) + (4 + 16 + 1 + 2)), "yes", None, "v1", segment],
        ["p22", T0 + 61, T0 + 1, 64 + 3 + 8 + 8 + 8 + 8, 1, 0.25, None, None],
    ]
    assert state["watermark"] == join.counters()["watermark"] == T0 + 1
    assert state["predictions"]["newest"] == T0 + 1 and state["feedback"]["newest"] is None
    assert join.pending_scores().tolist() == [pytest.approx(np.nan, nan_ok=True), 0.25]
    join.add_feedback(
        ["f1", "f2"], np.array([T0, T0]), ["no", 0], [None, None], np.full(2, np.nan), None, np.array([np.nan, 2.5])
    )
    assert join.state()["feedback"]["entries"] == [
        ["f1", T0 + 60, T0, 64 + 2 + 2, "no"],
        ["f2", T0 + 60, T0, 64 + 2 + 8 + 8, 0, 2.5],
    ]
    assert join.state()["feedback"]["bytes"] == join.counters()["pending_feedback_bytes"] == 68 + 82


@pytest.mark.parametrize("kind", [FeedbackJoin, BulkFeedbackJoin])
def test_a_late_row_whose_deadline_is_the_watermark_waits_and_one_past_it_expires_on_arrival(
    kind: type[FeedbackJoin],
) -> None:
    """A row older than the watermark (set by the other side) waits while its own side's newest time + ttl
    is at or after the watermark, strictly expired past it, on either side."""
    for late, waits in ((T0, True), (T0 - 0.5, False)):
        join = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
        _predictions(join, ["p"], [T0 + 60])
        _feedback(join, ["a"], [late])
        counters = join.counters()
        assert (counters["pending_feedback"], counters["expired_feedback"]) == ((1, 0) if waits else (0, 1))
        join = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
        _feedback(join, ["f"], [T0 + 60])
        _predictions(join, ["a"], [late])
        counters = join.counters()
        assert (counters["pending_predictions"], counters["expired_predictions"]) == ((1, 0) if waits else (0, 1))


@pytest.mark.parametrize("kind", [FeedbackJoin, BulkFeedbackJoin])
def test_a_restored_join_whose_side_saw_nothing_expires_that_sides_rows_as_the_uninterrupted_one(
    kind: type[FeedbackJoin],
) -> None:
    """``newest`` and the watermark stored as None (never seen) come back as minus infinity: a fresh
    join restored joins and expires as a fresh one, and a side that saw nothing gives its first rows
    their own deadline, not an infinite one."""
    settings = {"ttl_s": 10.0, "max_pending": 1000, "max_pending_bytes": 1 << 20}
    whole, restored = kind(**settings), kind(**settings)
    restored.load_state(kind(**settings).state())
    assert restored.watermark == -np.inf and restored.counters()["watermark"] is None
    for join in (whole, restored):
        _predictions(join, ["a"], [T0])
    first = kind(**settings)
    first.load_state(restored.state())
    for join in (whole, first):
        _feedback(join, ["x"], [T0 + 5])  # its side saw nothing before: deadline T0 + 15
        _predictions(join, ["b"], [T0 + 20])  # past a's and x's deadlines
    assert first.counters() == whole.counters()
    assert (whole.counters()["expired_predictions"], whole.counters()["expired_feedback"]) == (1, 1)
    assert first.state() == whole.state()


@pytest.mark.parametrize("kind", [FeedbackJoin, BulkFeedbackJoin])
def test_feedback_carrying_its_prediction_without_scores_or_values_gives_nan(kind: type[FeedbackJoin]) -> None:
    """Carried predictions with no scores array (empty: none carried) and values all NaN: the pairs' scores
    and values are NaN, and feedback that waits is stored without a value."""
    join = kind(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
    done = join.add_feedback(
        ["a", "b", "w"], np.array([T0, T0, T0]), [1, 0, 1], [1, 1, None], np.empty(0), None, np.full(3, np.nan)
    )
    assert done.event_ids == ["a", "b"] and done.predictions == [1, 1] and done.carried.tolist() == [True, True]
    assert np.isnan(done.scores).all() and np.isnan(done.values).all() and done.versions == [None, None]
    assert join.state()["feedback"]["entries"] == [["w", T0 + 60, T0, 64 + 1 + 8, 1]]
