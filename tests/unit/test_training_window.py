"""The training window of retrain events (issue 23, item 2): from the change's estimated start to the
event, without the stretches where a data_quality condition was active; and the reference's events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from streamdrift.core import state as snapshot
from streamdrift.core.config import ModelSettings, MonitorSettings, RetrainBudget
from streamdrift.core.decode import decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.policy import rfc3339
from streamdrift.core.records import RawMessage

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "drift_event.schema.json").read_text())
# a reference of 100 events, windows of 40 closing every 10: a data_quality condition fires and resolves quickly
SETTINGS = MonitorSettings(reference_size=100, window_size=40, subwindows=4, cooldown_events=0)


def predictions(n: int, start: int = 0) -> list[RawMessage]:
    """One prediction a second from T0; feature x is missing for events 150 to 199 (data quality, and the
    missing values shift x's distribution: data drift)."""
    out = []
    for i in range(start, n):
        x = None if 150 <= i < 200 else (i * 7919) % 13
        value = {"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "features": {"x": x}, "prediction": i % 2}
        out.append(RawMessage("predictions", 0, i, b"m", orjson.dumps(value)))
    return out


def observe(monitor: ModelMonitor, messages: list[RawMessage], batch_size: int = 50) -> list[dict]:
    events = []
    for i in range(0, len(messages), batch_size):
        batches, rejected = decode_predictions(messages[i : i + batch_size])
        assert not rejected
        events += monitor.observe_predictions(batches[0])
    return events


def at(seconds: float) -> str:
    """T0 + seconds as drift events write times."""
    return rfc3339(T0 + seconds)


def kinds(events: list[dict]) -> list[tuple]:
    return [(e["kind"], e["detector"], e["action"], e["window"]["start_time"], e["window"]["end_time"]) for e in events]


def test_a_scheduled_retrain_trains_since_the_previous_one_without_the_data_quality_stretch():
    monitor = ModelMonitor("m", SETTINGS, ModelSettings(retrain_every_s=300.0))
    events = observe(monitor, predictions(320))
    assert kinds(events) == [
        ("data_quality", "missing_rate", "investigate", at(120), at(159)),
        ("data_drift", "chi2", "investigate", at(130), at(169)),
        ("drift_resolved", "chi2", "none", at(220), at(259)),
        ("drift_resolved", "data_quality", "none", at(230), at(269)),
        ("scheduled_retrain", "schedule", "retrain", at(0), at(300)),
    ]
    retrain = events[-1]
    # the condition: from its data_quality event's window start to its drift_resolved's window end
    assert retrain["training_window"] == {
        "start_time": at(0),
        "end_time": at(300),
        "exclude": [{"start_time": at(120), "end_time": at(269), "reason": "data_quality: missing_rate of x"}],
    }
    # the warm-up: the first 100 predictions
    assert retrain["reference_window"] == {"source": "warm-up", "start_time": at(0), "end_time": at(99)}
    assert not any("training_window" in e or "reference_window" in e for e in events[:-1])  # retrain events only


def test_a_drift_retrain_trains_from_change_started_at_and_an_active_condition_is_clipped_to_the_event():
    monitor = ModelMonitor("m", SETTINGS, ModelSettings(important_features=["x"]))
    events = observe(monitor, predictions(180))
    drift = next(e for e in events if e["kind"] == "data_drift")
    assert (drift["action"], drift["change_started_at"], drift["detected_at"]) == ("retrain", at(130), T0 + 169)
    # the data_quality condition (from 120) is still active at the event: all of the window is left out
    assert drift["training_window"] == {
        "start_time": at(130),
        "end_time": at(169),
        "exclude": [{"start_time": at(130), "end_time": at(169), "reason": "data_quality: missing_rate of x"}],
    }


def test_a_rebaseline_moves_the_reference_window_and_a_profile_is_named():
    model = ModelSettings(retrain_every_s=300.0, rebaseline=True)
    events = observe(ModelMonitor("m", SETTINGS, model), predictions(320))
    rebaselined = [
        e for e in events if e["kind"] == "rebaselined" and e["details"]["rebaselines"]["kind"] == "data_drift"
    ]
    retrain = events[-1]
    assert retrain["kind"] == "scheduled_retrain" and rebaselined
    assert retrain["reference_window"] == {
        "source": "rebaseline",
        "start_time": rebaselined[-1]["window"]["start_time"],
        "end_time": rebaselined[-1]["window"]["end_time"],
    }


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batches_and_a_snapshot_midway_give_the_same_windows(batch_size):
    model = ModelSettings(retrain_every_s=300.0, important_features=["x"])
    whole = observe(ModelMonitor("m", SETTINGS, model), predictions(320))
    first = ModelMonitor("m", SETTINGS, model)
    events = observe(first, predictions(160), batch_size)
    restored = ModelMonitor.from_state("m", SETTINGS, snapshot.loads(snapshot.dumps(first.state())), model)
    events += observe(restored, predictions(320, start=160), batch_size)
    assert events == whole
    assert sum("training_window" in e for e in whole) == 2


def test_an_old_snapshot_loads_with_no_stretches_and_an_unknown_reference():
    model = ModelSettings(retrain_every_s=300.0)
    first = ModelMonitor("m", SETTINGS, model)
    observe(first, predictions(250))
    old = dict(snapshot.loads(snapshot.dumps(first.state())))
    del old["quality_stretches"], old["reference_times"]
    events = observe(ModelMonitor.from_state("m", SETTINGS, old, model), predictions(320, start=250))
    retrain = events[-1]
    assert retrain["training_window"]["exclude"] == [] and retrain["reference_window"] == {"source": "unknown"}


def test_a_retrain_over_budget_has_no_training_window():
    budget = RetrainBudget(max_retrains=1, period_s=10_000.0)
    model = ModelSettings(retrain_every_s=300.0, important_features=["x"], retrain_budget=budget)
    events = observe(ModelMonitor("m", SETTINGS, model), predictions(320))
    retrains = [e for e in events if e["kind"] in ("data_drift", "scheduled_retrain")]
    assert [(e["kind"], e["action"], "training_window" in e, "budget" in e) for e in retrains] == [
        ("data_drift", "retrain", True, False),
        ("scheduled_retrain", "investigate", False, True),
    ]


def test_retrain_events_validate_against_the_schema_and_a_broken_window_does_not():
    model = ModelSettings(retrain_every_s=300.0, important_features=["x"])
    events = observe(ModelMonitor("m", SETTINGS, model), predictions(320))
    for event in events:
        jsonschema.validate({**event, "emitted_at": "2026-01-01T00:00:00.000Z"}, SCHEMA)
    retrain = {**events[-1], "emitted_at": "2026-01-01T00:00:00.000Z"}
    window = retrain["training_window"]
    for broken in (
        {**retrain, "training_window": {**window, "exclude": [{"start_time": at(1), "end_time": at(2)}]}},
        {**retrain, "training_window": {**window, "start_time": T0}},  # RFC 3339 only
        {**retrain, "reference_window": {"source": "warm-up", "start_time": at(0)}},
        {**retrain, "reference_window": {"source": "somewhere"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


@pytest.mark.parametrize("batch_size", [1, 50, 1000])
def test_the_reference_window_is_the_warm_up_from_the_row_that_completes_it_whatever_the_batches(batch_size):
    # retrained every 33 s: at 33 and 66 the warm-up (the first 100 predictions, to 99 s) is not complete;
    # the event at 99 s is raised by the row that completes it
    events = observe(ModelMonitor("m", SETTINGS, ModelSettings(retrain_every_s=33.0)), predictions(133), batch_size)
    assert [(e["detected_at"] - T0, e["reference_window"]) for e in events if e["kind"] == "scheduled_retrain"] == [
        (33.0, {"source": "none"}),
        (66.0, {"source": "none"}),
        (99.0, {"source": "warm-up", "start_time": at(0), "end_time": at(99)}),
        (132.0, {"source": "warm-up", "start_time": at(0), "end_time": at(99)}),
    ]
