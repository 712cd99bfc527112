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
