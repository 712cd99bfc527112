"""What a retrain listener with ``--require-approval`` holds, commits and replays (``retrain/holding.py``), without a
consumer. What the consumer does with it (pause at the cap, rewind, resume, restart from the commit) is pinned on a
real broker in ``tests/integration/test_retrain_approval.py``."""

from __future__ import annotations

from streamdrift.retrain.approvals import decision_record, parse_decision, record_bytes
from streamdrift.retrain.holding import (
    HELD,
    REJECTED,
    TRIGGER,
    WAIT,
    Holding,
    approval_verdict,
    timeout_decision,
)

AT = "2026-12-05T00:00:00.000Z"
PUBLISHED = 1_790_000_000.0  # epoch seconds: the alert records' Kafka timestamps


def event(n: int) -> dict:
    return {"alert_id": f"a{n}", "model_id": f"m{n}", "action": "retrain", "kind": "concept_drift", "detected_at": n}


def decided(n: int, decision: str) -> dict:
    return decision_record(event(n), decision, "alice", None, AT)


def test_past_the_cap_an_undecided_event_is_refused_until_a_release_makes_room():
    holding = Holding(max_held=2)
    assert [holding.admit(event(n), n, PUBLISHED, None) for n in range(3)] == [HELD, HELD, WAIT]
    assert sorted(holding.held) == [0, 1] and holding.full
    assert holding.admit(event(2), 2, PUBLISHED, None) == WAIT  # read again before any decision: still refused

    released = holding.release(1)
    assert (released.offset, released.event, holding.full) == (1, event(1), False)
    # read again after the release: the refused event takes the room, the next one is refused in turn
    assert [holding.admit(event(n), n, PUBLISHED, None) for n in (2, 3)] == [HELD, WAIT]
    assert sorted(holding.held) == [0, 2] and holding.full
    # handled up to 3 (the refused a3 is read again): the first held event, and a2 held after it
    assert holding.commit_point(3) == (0, '{"format":1,"to":3,"held":[2]}')


def test_a_decision_read_before_its_event_acts_at_once_and_holds_nothing():
    holding = Holding(max_held=1)
    assert holding.admit(event(0), 0, PUBLISHED, decided(0, "approve")) == TRIGGER
    assert holding.admit(event(1), 1, PUBLISHED, decided(1, "reject")) == REJECTED
    assert holding.held == {} and not holding.full
    assert holding.admit(event(2), 2, PUBLISHED, None) == HELD
    # the cap is on undecided events: a decided one is acted on whatever is held
    assert holding.admit(event(3), 3, PUBLISHED, decided(3, "approve")) == TRIGGER and not holding.full
    assert [approval_verdict(d) for d in (decided(0, "approve"), decided(1, "reject"), None)] == [
        TRIGGER,
        REJECTED,
        HELD,
    ]


def test_a_restart_replays_what_was_handled_beyond_the_commit_and_holds_the_held_events_again():
    first = Holding()
    # a0 undecided, a1 approved, a2 not a retrain event (never admitted), a3 rejected, a4 undecided
    verdicts = [first.admit(event(n), n, PUBLISHED, d) for n, d in ((0, None), (1, decided(1, "approve")))]
    verdicts += [first.admit(event(n), n, PUBLISHED, d) for n, d in ((3, decided(3, "reject")), (4, None))]
    assert verdicts == [HELD, TRIGGER, REJECTED, HELD]
    committed, metadata = first.commit_point(5)
    assert (committed, metadata) == (0, '{"format":1,"to":5,"held":[4]}')

    restarted = Holding()
    restarted.restore(committed, metadata)
    assert [restarted.handled_before(offset) for offset in range(7)] == [False, True, True, True, False, False, False]
    # what it reads again: a0 still undecided, a4 approved meanwhile
    assert restarted.admit(event(0), 0, PUBLISHED, None) == HELD
    assert restarted.admit(event(4), 4, PUBLISHED, decided(4, "approve")) == TRIGGER
    assert restarted.commit_point(5) == (0, '{"format":1,"to":5,"held":[]}')

    # a commit by a listener that held nothing (or ran without --require-approval): nothing handled beyond it
    plain = Holding()
    plain.restore(5, "")
    assert [plain.handled_before(offset) for offset in range(3, 8)] == [True, True, False, False, False]


def test_a_persons_decision_comes_before_the_timeout_and_only_undecided_events_past_it_time_out():
    holding = Holding()
    for n, published in ((0, PUBLISHED), (1, PUBLISHED), (2, PUBLISHED + 50), (3, PUBLISHED + 50)):
        assert holding.admit(event(n), n, published, None) == HELD
    decisions = {"a1": decided(1, "reject"), "a3": decided(3, "approve")}

    def due(now: float, timeout_s: float | None) -> list[tuple[int, str | None]]:
        return [
            (held.offset, None if d is None else d["decision"])
            for held, d in holding.due(decisions.get, now, timeout_s)
        ]

    assert due(PUBLISHED + 60, None) == [(1, "reject"), (3, "approve")]  # no timeout: only decisions
    assert due(PUBLISHED + 59.999, 60.0) == [(1, "reject"), (3, "approve")]
    assert due(PUBLISHED + 60, 60.0) == [(0, None), (1, "reject"), (3, "approve")]  # a0 timed out, a1 decided
    assert due(PUBLISHED + 110, 60.0) == [(0, None), (1, "reject"), (2, None), (3, "approve")]


def test_the_timeout_decides_as_a_person_would_and_says_so():
    record = timeout_decision(event(0), "approve", 3600.0, AT)
    assert record == {
        "format": 1,
        "alert_id": "a0",
        "model_id": "m0",
        "kind": "concept_drift",
        "action": "retrain",
        "decision": "approve",
        "by": "streamdrift (timeout)",
        "reason": "no decision within 3600 s of its publication",
        "decided_at": AT,
        "source": "timeout",
    }
    assert parse_decision(record_bytes(record)) == record  # a decision like any other on the trail
    assert approval_verdict(timeout_decision(event(0), "reject", 1.5, AT)) == REJECTED
