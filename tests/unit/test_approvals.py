"""The pure parts of human approval (``retrain/approvals.py``, ``retrain/holding.py``): decision records, and where a
listener holding undecided events commits and what a restart reads back from it."""

from __future__ import annotations

import random
from pathlib import Path

import jsonschema
import orjson
import pytest

from streamdrift.retrain.approvals import DecisionError, Decisions, decision_record, parse_decision, record_bytes
from streamdrift.retrain.holding import MAX_HELD, commit_point, handled_beyond

EVENT = {"alert_id": "a" * 32, "model_id": "credit-risk", "kind": "concept_drift", "action": "retrain", "statistic": 7}
AT = "2026-12-05T00:00:00.000Z"


def test_a_decision_names_ids_author_time_and_reason_never_a_value_of_the_event():
    record = decision_record(EVENT, "reject", "carol", "a holiday,\nnot a drift", AT)
    assert record == {
        "format": 1,
        "alert_id": "a" * 32,
        "model_id": "credit-risk",
        "kind": "concept_drift",
        "action": "retrain",
        "decision": "reject",
        "by": "carol",
        "reason": "a holiday,\nnot a drift",
        "decided_at": AT,
        "source": "cli",
    }
    assert parse_decision(record_bytes(record)) == record
    assert decision_record(EVENT, "approve", "bob", "", AT)["reason"] is None


@pytest.mark.parametrize(
    "decision, by, reason, message",
    [
        ("maybe", "bob", None, "approve or reject"),
        ("approve", " ", None, "--by is empty"),
        ("approve", "b" * 129, None, "--by is longer than 128"),
        ("approve", "bob\x1b[2J", None, "--by holds a control character"),
        ("approve", "bob", "r" * 1025, "--reason is longer than 1024"),
        ("approve", "bob", "ok\x00", "--reason holds a control character"),
    ],
)
def test_a_decision_that_cannot_be_written_says_which_field_and_rule(decision, by, reason, message):
    with pytest.raises(DecisionError, match=message):
        decision_record(EVENT, decision, by, reason, AT)


@pytest.mark.parametrize(
    "value",
    [
        None,  # a tombstone
        b"{not json",
        b"[1]",
        orjson.dumps({**decision_record(EVENT, "approve", "bob", None, AT), "format": 2}),
        orjson.dumps({**decision_record(EVENT, "approve", "bob", None, AT), "decision": "maybe"}),
        orjson.dumps({**decision_record(EVENT, "approve", "bob", None, AT), "by": None}),
        orjson.dumps({**decision_record(EVENT, "approve", "bob", None, AT), "alert_id": 7}),
    ],
)
def test_records_that_are_not_decisions_are_not_read_as_ones(value):
    assert parse_decision(value) is None


def test_the_first_decision_read_is_kept_and_the_oldest_forgotten_past_the_bound():
    decisions = Decisions(remember=3)
    first = decision_record(EVENT, "approve", "bob", None, AT)
    assert decisions.add(first)
    assert not decisions.add(decision_record(EVENT, "reject", "mallory", None, AT))
    assert decisions.get(EVENT["alert_id"]) == first
    for i in range(3):
        decisions.add(decision_record({**EVENT, "alert_id": f"b{i}"}, "reject", "carol", None, AT))
    assert decisions.get(EVENT["alert_id"]) is None and len(decisions) == 3


def test_the_commit_stops_at_the_first_held_event_and_its_metadata_gives_back_what_was_handled_after_it():
    rng = random.Random(23)
    for _ in range(500):
        start = rng.randrange(0, 10**12)
        position = start + rng.randrange(0, 5000)
        held = set(rng.sample(range(start, position), min(rng.randrange(0, 20), position - start)))
        offset, metadata = commit_point(position, held)
        if not held:
            assert (offset, metadata) == (position, "")
            continue
        assert offset == min(held)  # a restart reads the first undecided event again
        done_to, read_held = handled_beyond(offset, metadata)
        assert (done_to, read_held) == (position, frozenset(held))


def test_the_metadata_of_the_most_events_held_fits_the_brokers_default_limit():
    span = 10**12  # a trillion alerts between the first event held and the last: the longest gaps
    held = [2**62 + span * i // MAX_HELD for i in range(MAX_HELD)]
    offset, metadata = commit_point(2**62 + span, held)
    assert len(metadata.encode()) <= 4096  # offset.metadata.max.bytes
    assert handled_beyond(offset, metadata) == (2**62 + span, frozenset(held))


@pytest.mark.parametrize("metadata", [None, "", "not json", '{"format": 2, "to": 3, "held": []}', '{"to": "x"}'])
def test_metadata_not_written_by_a_holding_listener_means_nothing_handled_beyond_the_commit(metadata):
    assert handled_beyond(40, metadata) == (40, frozenset())


def test_decisions_as_written_are_valid_per_the_schema_and_the_schema_refuses_what_the_writer_refuses():
    schema = orjson.loads(
        (Path(__file__).resolve().parents[2] / "schemas" / "approval_decision.schema.json").read_bytes()
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for record in (
        decision_record(EVENT, "approve", "alice", "window checked,\nincome feed fixed", AT),
        decision_record(EVENT, "reject", "streamdrift (timeout)", None, AT, source="timeout"),
    ):
        assert not list(validator.iter_errors(record))
    good = decision_record(EVENT, "approve", "alice", None, AT)
    for bad in ({"by": "bob\x1b"}, {"reason": "ok\x00"}, {"by": ""}, {"decision": "maybe"}, {"source": "ui"}):
        assert list(validator.iter_errors({**good, **bad})), bad
