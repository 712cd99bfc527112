"""Issue 17, findings 1, 2, 7 and 8 (decoder side): bounded numbers, strings and event times, redacted reasons.

Each rule is checked on both decoding paths: the C reader's (a poll of at least
``decode._FAST_MIN`` messages) and the reference one (``_speedups`` set to None).
"""

from __future__ import annotations

import orjson
import pytest

from streamdrift.core import state
from streamdrift.core.config import InputBounds, MonitorSettings
from streamdrift.core.decode import category_hash, decode_feedback, decode_predictions
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage

NOW_MS = 1_700_000_000_000
YEAR_9999 = 253_402_200_000


def _prediction(i: int, **fields) -> dict:
    return {
        "event_id": f"e{i}",
        "model_id": "m",
        "timestamp": NOW_MS / 1000 + i,
        "features": {"x": float(i), "c": "a"},
        "prediction": 1.0,
        **fields,
    }


def _poll(events: list[dict], topic: str = "predictions", timestamp_ms: int = NOW_MS) -> list[RawMessage]:
    return [RawMessage(topic, 0, i, None, orjson.dumps(e), timestamp_ms) for i, e in enumerate(events)]


def _rejected(result) -> dict[int, str]:
    return {r.message.offset: r.reason for r in result[1]}


def _counted(result) -> int:
    return sum(len(b) for b in result[0])


def test_a_huge_label_is_rejected_naming_the_field_and_the_rule_not_the_value(path) -> None:
    feedback = [{"event_id": f"e{i}", "model_id": "m", "timestamp": 1_700_000_000, "label": 1.5} for i in range(10)]
    feedback[3]["label"] = 1e155
    result = decode_feedback(_poll(feedback, "feedback"))
    assert _rejected(result) == {3: "field 'label' must be a number of magnitude at most 1e+15, got number"}
    assert _counted(result) == 9


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prediction": -2e15}, "field 'prediction' must be a number of magnitude at most 1e+15, got number"),
        ({"features": {"x": 1e300}}, "field 'features.x' must be a number of magnitude at most 1e+15, got number"),
        ({"features": {"n": 10**17}}, "field 'features.n' must be a number of magnitude at most 1e+15, got number"),
        (
            {"features": {"s": "9" * 1025}},
            "field 'features.s' must be a string of at most 1024 characters, got 1025 characters",
        ),
        (
            {"prediction": "p" * 2000},
            "field 'prediction' must be a string of at most 1024 characters, got 2000 characters",
        ),
    ],
)
def test_values_beyond_the_bounds_are_rejected(path, fields: dict, reason: str) -> None:
    events = [_prediction(i) for i in range(10)]
    events[5] = _prediction(5, **fields)
    result = decode_predictions(_poll(events))
    assert _rejected(result) == {5: reason}
    assert _counted(result) == 9


def test_the_bounds_are_inclusive(path) -> None:
    events = [_prediction(i, features={"x": 1e15, "y": -1e15, "s": "a" * 1024}, prediction=-1e15) for i in range(10)]
    assert _counted(decode_predictions(_poll(events))) == 10


def test_an_event_time_far_ahead_of_the_kafka_timestamp_is_rejected(path) -> None:
    events = [_prediction(i) for i in range(10)]
    events[2] = _prediction(2, timestamp=YEAR_9999)
    events[4] = _prediction(4, timestamp="9999-12-31T23:59:59Z")
    events[6] = _prediction(6, timestamp=NOW_MS / 1000 + 86_400)  # exactly the bound: accepted
    events[7] = _prediction(7, timestamp=NOW_MS / 1000 + 86_401)
    result = decode_predictions(_poll(events))
    rule = "field 'timestamp' must be at most 86400 s ahead of the record's Kafka timestamp"
    assert _rejected(result) == {2: rule, 4: rule, 7: rule}
    # far in the past is no clock poison: late data is the join's and the windows' business
    assert _counted(decode_predictions(_poll([_prediction(i, timestamp=1) for i in range(10)]))) == 10


def test_without_require_record_time_a_record_lacking_a_kafka_timestamp_is_not_judged(path) -> None:
    """Replay files and the Python API have no Kafka timestamps (replay stamps each record with its own event time)."""
    events = [_prediction(i, timestamp=YEAR_9999) for i in range(10)]
    for unknown in (0, -1):
        assert _counted(decode_predictions(_poll(events, timestamp_ms=unknown))) == 10
    assert _counted(decode_predictions(_poll(events, timestamp_ms=YEAR_9999 * 1000))) == 10


NO_RECORD_TIME = "record has no Kafka timestamp (0 or less): its field 'timestamp' cannot be bounded"


@pytest.mark.parametrize("unknown", [0, -1])
def test_with_require_record_time_a_record_lacking_a_kafka_timestamp_is_rejected(path, unknown: int) -> None:
    """Issue 17 review, hole 1: the skew bound was skipped for such a record, whatever its event time."""
    messages = _poll([_prediction(i) for i in range(10)])
    for i in (3, 8):
        messages[i].timestamp_ms = unknown
    batches, rejected = decode_predictions(messages, require_record_time=True)
    assert {r.message.offset: r.reason for r in rejected} == {3: NO_RECORD_TIME, 8: NO_RECORD_TIME}
    assert _counted((batches, rejected)) == 8
    feedback = [{"event_id": f"e{i}", "model_id": "m", "timestamp": 1_700_000_000, "label": 1} for i in range(10)]
    result = decode_feedback(_poll(feedback, "feedback", timestamp_ms=unknown), require_record_time=True)
    assert _counted(result) == 0 and set(_rejected(result).values()) == {NO_RECORD_TIME}


@pytest.mark.parametrize("unknown", [0, -1])
def test_a_far_future_record_without_a_kafka_timestamp_cannot_evict_the_models(path, unknown: int) -> None:
    """Issue 17 review, hole 1: one such record moved the partition's event clock to the year 9999, and the
    idle TTL then evicted every model. The engine (the worker's) dead-letters it instead."""
    engine = PartitionEngine(
        0, "predictions", "feedback", monitor_factory(MonitorSettings()), epoch_ms=1000, model_idle_ttl_s=86400
    )
    events = [_prediction(i, model_id=f"m{i % 3}") for i in range(30)]
    events.insert(15, _prediction(99, model_id="intruder", timestamp=YEAR_9999))
    messages = [RawMessage("predictions", 0, i, None, orjson.dumps(e), NOW_MS + i) for i, e in enumerate(events)]
    messages[15].timestamp_ms = unknown
    engine.add("predictions", messages)
    out = engine.release(ended={"predictions", "feedback"})
    assert [(r.message.offset, r.reason) for r in out.rejected] == [(15, NO_RECORD_TIME)]
    assert engine.evicted_models == 0 and sorted(engine.monitors) == ["m0", "m1", "m2"]
    assert engine.event_clock == NOW_MS / 1000 + 29


def test_the_skew_bound_is_a_setting(path) -> None:
    events = [_prediction(i, timestamp=NOW_MS / 1000 + 120) for i in range(10)]
    assert _counted(decode_predictions(_poll(events), InputBounds(max_event_time_skew_s=60))) == 0
    assert _counted(decode_predictions(_poll(events), InputBounds(max_event_time_skew_s=600))) == 10


def test_reasons_quote_values_only_when_asked(path) -> None:
    secret = "123-45-6789"
    events = [_prediction(i) for i in range(10)]
    events[1] = _prediction(1, score=secret)
    events[2] = {**_prediction(2), "model_id": f"ssn {secret}"}
    events[3] = _prediction(3, features={"x": [secret]})
    messages = _poll(events)
    messages[4] = RawMessage("predictions", 0, 4, secret.encode(), orjson.dumps(_prediction(4)), NOW_MS)
    redacted = _rejected(decode_predictions(messages))
    assert len(redacted) == 4 and not any(secret in reason for reason in redacted.values()), redacted
    assert redacted[1] == "field 'score' must be a number in [0, 1], got string"
    assert redacted[4] == "key does not match model_id 'm'"
    clear = _rejected(decode_predictions(messages, InputBounds(redact_values=False)))
    assert all(secret in reason for reason in clear.values()), clear


def test_long_category_values_are_tracked_as_hashes(path) -> None:
    long_value = "x" * 65
    events = [_prediction(i, features={"c": long_value if i % 2 else "short", "n": 1.0}) for i in range(10)]
    (batch,), _ = decode_predictions(_poll(events))
    assert batch.features["c"] == [category_hash(long_value) if i % 2 else "short" for i in range(10)]
    assert list(batch.features["n"]) == [1.0] * 10  # numbers are never hashed
    (batch,), _ = decode_predictions(_poll(events), InputBounds(hash_categories=True))
    assert batch.features["c"] == [category_hash(long_value if i % 2 else "short") for i in range(10)]
    assert category_hash(long_value) != category_hash(long_value + "y")  # distinct values stay distinct


def test_class_names_and_segment_names_and_values_are_bounded_and_never_quoted(path) -> None:
    """Issue 17 review, hole 4: `scores` class names and `segment` names had no length bound, and reasons
    quoted them (``field 'scores.<class>'``): they name the field and the rule, the value only when asked."""
    secret = "123-45-6789"
    events = [_prediction(i, scores={"a": 0.5}, segment={"country": "FR"}) for i in range(10)]
    events[1]["scores"] = {secret: 1.5}
    events[2]["scores"] = {"c" * 1025: 0.5}
    events[3]["segment"] = {secret: None}
    events[4]["segment"] = {"s" * 1025: "FR"}
    events[5]["segment"] = {"country": secret * 100}
    redacted = _rejected(decode_predictions(_poll(events)))
    assert redacted == {
        1: "field 'scores' must map each class to a number in [0, 1], got number",
        2: "field 'scores' has a class name of 1025 characters, at most 1024 allowed",
        3: "field 'segment' must map each name to a string, number or boolean, got null",
        4: "field 'segment' has a name of 1025 characters, at most 1024 allowed",
        5: "field 'segment' must map each name to a string of at most 1024 characters, got 1100 characters",
    }
    clear = _rejected(decode_predictions(_poll(events), InputBounds(redact_values=False)))
    assert clear[1] == f"field 'scores.{secret}' must be a number in [0, 1], got 1.5"
    assert clear[3] == f"field 'segment.{secret}' must be a string, number or boolean, got null"
    assert secret in clear[5]
    assert _counted(decode_predictions(_poll(events[6:] * 2))) == 8


def test_a_hash_salt_keys_the_category_hashes(path) -> None:
    """Issue 17 review, hole 7: an unsalted SHA-256 of a low-entropy value (an SSN: 10^9 candidates) is
    found by hashing every candidate; under a per-deployment secret it is not."""
    ssn = "123-45-6789"
    events = [_prediction(i, features={"x": 1.0, "id": ssn}) for i in range(10)]
    (plain,), _ = decode_predictions(_poll(events), InputBounds(hash_categories=True))
    (salted,), _ = decode_predictions(_poll(events), InputBounds(hash_categories=True, hash_salt="s3cret"))
    (other,), _ = decode_predictions(_poll(events), InputBounds(hash_categories=True, hash_salt="other"))
    assert plain.features["id"] == [category_hash(ssn)] * 10
    assert salted.features["id"] == [category_hash(ssn, "s3cret")] * 10
    assert len({plain.features["id"][0], salted.features["id"][0], other.features["id"][0]}) == 3
    assert salted.features["id"][0].startswith("#") and len(salted.features["id"][0]) == 17
    assert "s3cret" not in repr(InputBounds(hash_salt="s3cret")) and "hash_salt" not in InputBounds().model_dump()


def _new_names_each(n: int, names: int, model: str = "m") -> list[dict]:
    """Events whose feature names are all new (a producer that puts an id in its feature names)."""
    return [_prediction(i, model_id=model, features={f"f{i}_{j}": 1.0 for j in range(names)}) for i in range(n)]


def test_a_batch_never_holds_more_feature_names_than_an_event_may(path) -> None:
    """A batch is a column per feature name and a value per row, so events whose names are all new made it
    rows x names: 1,000 events of 100 new names each (1.3 MB) cost 11 s of decoding and 1 GiB. The decoder
    cuts a model's rows into consecutive batches of at most ``MAX_FEATURES`` names instead: linear cost, the
    same rows in the same order (a monitor's state does not depend on the cuts: test_batch_split)."""
    batches, rejected = decode_predictions(_poll(_new_names_each(12, 300)))
    assert not rejected
    assert [b.offsets.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert all(len(b.features) == 900 and b.model_id == "m" for b in batches)


def test_the_engine_gives_the_state_of_one_row_at_a_time_when_a_model_brings_new_names_each_event(path) -> None:
    """Its batches cut where their feature or attribution names reach the bound: the state of one row at a time."""
    settings = MonitorSettings(reference_size=50, window_size=20, subwindows=2, max_features=50)
    events = _new_names_each(40, 300)
    for i in range(0, 40, 3):
        events[i] = _prediction(i)  # the usual features now and then
    for i in range(1, 40, 4):
        events[i]["model_id"] = "other"  # another model's events between them
    for i in range(2, 40, 5):
        events[i]["attributions"] = {f"a{i}_{j}": 0.5 for j in range(400)}  # and attribution names as new
    messages = _poll(events)

    def snapshot_after(batch_size: int) -> bytes:
        engine = PartitionEngine(
            0, "predictions", "feedback", monitor_factory(settings), epoch_ms=1000, batch_size=batch_size
        )
        for at in range(0, len(messages), batch_size):
            engine.add("predictions", messages[at : at + batch_size])
            out = engine.release(ended={"predictions", "feedback"})
            assert not out.rejected
        return state.dumps({m: engine.monitor(m).state() for m in sorted(engine.monitors)})

    assert snapshot_after(1000) == snapshot_after(1)


def test_a_batch_never_holds_more_attribution_names_than_an_event_may(path) -> None:
    """The same for attributions, whose names are an event's own (up to ``MAX_ATTRIBUTIONS``, besides its
    features): the monitor makes a column per name of the batch (1,000 events of 100 new names: 17.7 s, 1 GiB)."""
    events = [_prediction(i, attributions={f"a{i}_{j}": 0.5 for j in range(300)}) for i in range(12)]
    batches, rejected = decode_predictions(_poll(events))
    assert not rejected
    assert [b.offsets.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert all(b.attributions is not None and len(set().union(*b.attributions)) == 900 for b in batches)


@pytest.mark.parametrize(
    "timestamp",
    [
        "9999-12-31T23:59:59.9999999Z",  # the fraction rounds the float up to the first instant of year 10000
        "9999-12-31T23:30:00-01:00",  # 00:30 on 1 January 10000 in UTC
        "1970-01-01T00:30:00+01:00",  # 23:30 on 31 December 1969 in UTC (review helper-89)
    ],
)
def test_an_rfc3339_time_outside_1970_to_9999_in_utc_is_rejected_not_a_quarantine(path, timestamp: str) -> None:
    """Review helper-88: such a time passed the decoder, and a drift event at its row (a scheduled retrain, any
    `retrain` action's training window) could not format it (datetime's years end at 9999): the model was
    quarantined for an event the decoder had accepted. Replay, and a worker whose input topics let such record
    times through, took it. Epoch seconds have had this bound all along."""
    events = [_prediction(i, timestamp=YEAR_9999) for i in range(10)]
    events[3] = _prediction(3, timestamp=timestamp)
    events[4] = _prediction(4, timestamp="9999-12-31T23:59:59.999Z")  # the last millisecond: accepted
    events[5] = _prediction(5, timestamp="1970-01-01T01:00:00+01:00")  # the first second: accepted
    result = decode_predictions(_poll(events, timestamp_ms=0))  # as replay: no Kafka timestamp to bound them by
    rule = "field 'timestamp' must be an RFC 3339 date-time with a time zone, year 1970 to 9999, got string"
    assert _rejected(result) == {3: rule}
    assert _counted(result) == 9
