"""The public Python API: the same detection as the lower-level path, rejections, save and restore."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import streamdrift
from streamdrift import Monitor, MonitorSettings, MonitorSummary, SnapshotError
from streamdrift.core import api
from streamdrift.core.synthetic import generate
from streams import demo_messages, run_monitors, state_bytes

SETTINGS = MonitorSettings()
N_EVENTS, DRIFT_AT = 24_000, 6000  # predictions over 3 models round-robin: 8,000 of credit-risk, drifting at 6,000


@pytest.fixture(scope="module")
def events():
    return [event for _, event in generate(N_EVENTS, seed=7, drift_at=DRIFT_AT)]


@pytest.fixture(scope="module")
def lower_level():
    """The same stream as Kafka records, through decode and ModelMonitor in polls of 1,000 (tests/streams.py)."""
    return run_monitors(demo_messages(N_EVENTS, seed=7, drift_at=DRIFT_AT), 1000, SETTINGS)


@pytest.fixture(scope="module")
def monitored(events):
    monitor = Monitor("credit-risk", SETTINGS)
    return monitor, monitor.observe(events)


def test_the_public_names_are_exported():
    assert set(streamdrift.__all__) >= {"Monitor", "MonitorSummary", "MonitorSettings", "ModelSettings", "__version__"}
    for name in streamdrift.__all__:
        assert getattr(streamdrift, name) is not None


def test_a_shift_raises_data_drift_one_subwindow_after_it(monitored):
    _, drift = monitored
    assert [(e["kind"], e["feature"]) for e in drift] == [
        ("data_drift", "debt_ratio"),
        ("prediction_drift", "prediction"),
        ("label_drift", "label"),
        ("concept_drift", None),
    ]
    data = drift[0]
    # positions count every prediction given, other models' included (as offsets on one partition would):
    # credit-risk's prediction #n is the stream's prediction #3n; the window that fails ends at #6199
    assert data["window"]["start_offset"] == 5200 * 3 and data["window"]["end_offset"] == 6199 * 3
    assert data["window"]["count"] == 1000
    assert [f["feature"] for f in data["top_features"][:3]] == ["debt_ratio", "income", "employment"]
    assert data["detected_at"] == 1_700_000_018.597  # the triggering event's timestamp, as written
    assert "emitted_at" not in data  # the publisher's wall clock: not the core's


def test_drift_events_are_those_of_the_lower_level_path(monitored, lower_level):
    monitor, drift = monitored
    monitors, lower_events = lower_level
    assert drift == [e for e in lower_events if e["model_id"] == "credit-risk"]
    assert state_bytes({"credit-risk": monitor._monitor}) == state_bytes({"credit-risk": monitors["credit-risk"]})


def test_events_of_other_models_are_rejected_with_their_position(monitored, events):
    monitor, _ = monitored
    others = [e for e in events if e["model_id"] != "credit-risk"]
    summary = monitor.summary()
    assert summary.rejected == len(others)
    assert len(monitor.rejected) == api.MAX_REJECTIONS  # the latest ones; all are counted
    last = monitor.rejected[-1]
    assert last.reason == f"model_id {others[-1]['model_id']!r} is not this monitor's model ('credit-risk')"
    kind = "feedback" if "label" in others[-1] else "prediction"
    position = events.index(others[-1])
    assert last.kind == kind
    assert last.offset == sum(("label" in e) == (kind == "feedback") for e in events[:position])


def test_contract_breaches_are_rejected_by_the_decoder_and_take_their_position():
    monitor = Monitor("m1")
    good = {"event_id": "e1", "model_id": "m1", "timestamp": 1_700_000_000, "features": {"x": 1.0}, "prediction": 1}
    drift = monitor.observe(
        [
            good,
            {**good, "event_id": "e2", "score": 1.5},
            {"event_id": "e1", "model_id": "m1", "timestamp": 1_700_000_001, "label": [1]},
            ["not", "a", "dict"],
            {**good, "event_id": "e3", "features": {"x": object()}},
            {**good, "event_id": "e4", "model_id": 7},
            {**good, "event_id": "e5", "features": {"x": np.float32(2.5)}},  # numpy scalars are numbers
        ]
    )
    assert drift == []
    assert [(r.kind, r.offset) for r in monitor.rejected] == [
        ("prediction", 1),
        ("feedback", 0),
        ("prediction", 2),
        ("prediction", 3),
        ("prediction", 4),
    ]
    reasons = [r.reason for r in monitor.rejected]
    assert reasons[0] == "field 'score' must be a number in [0, 1], got number"
    assert reasons[1].startswith("field 'label' must be")
    assert reasons[2] == "an event must be a dict, got list"
    assert reasons[3].startswith("not JSON: ")
    assert reasons[4].startswith("field 'model_id' must be")
    summary = monitor.summary()
    assert (summary.predictions, summary.feedback, summary.rejected) == (2, 0, 5)


def test_state_does_not_depend_on_how_events_are_split_between_calls(events, monitored):
    whole, whole_drift = monitored
    split = Monitor("credit-risk", SETTINGS)
    drift = []
    for start, end in ((0, 1), (1, 2500), (2500, 2501), (2501, 20_000), (20_000, len(events))):
        drift += split.observe(iter(events[start:end]))
    assert drift == whole_drift
    assert split.save() == whole.save()


def test_a_restored_monitor_continues_as_one_never_saved(events, monitored):
    whole, whole_drift = monitored
    cut = 28_500  # after data and prediction drift (raised by event 27,800), before label drift (29,131)
    first = Monitor("credit-risk", SETTINGS)
    first_drift = first.observe(events[:cut])
    saved = first.save()
    restored = Monitor.restore(saved)
    assert restored.save() == saved
    assert restored.summary() == first.summary()
    rest_drift = restored.observe(events[cut:])
    assert len(first_drift) == 2 and len(rest_drift) == 2
    assert first_drift + rest_drift == whole_drift
    assert restored.save() == whole.save()
    assert restored.summary() == whole.summary()


def test_restore_refuses_other_settings_and_foreign_bytes():
    monitor = Monitor("m1", MonitorSettings(window_size=500))
    saved = monitor.save()
    assert Monitor.restore(saved).settings == MonitorSettings(window_size=500)
    assert Monitor.restore(saved, MonitorSettings(window_size=500)).save() == saved
    with pytest.raises(SnapshotError, match="other detection settings"):
        Monitor.restore(saved, MonitorSettings())
    for foreign in (b"", b"garbage", saved[:20], saved.replace(b"streamdrift-monitor", b"streamdrift-monitos")):
        with pytest.raises(SnapshotError, match="start a new Monitor"):
            Monitor.restore(foreign)


@pytest.mark.parametrize("model_id", ["a b", "__other__"])
def test_a_model_id_no_event_could_carry_is_refused(model_id):
    """ "__other__" is the model id the exporter sums the models over metrics_max_models under: no event carries it."""
    with pytest.raises(ValueError, match=f"model_id '{model_id}'"):
        Monitor(model_id)


def test_the_summary_is_typed_and_frozen(monitored, lower_level):
    monitor, drift = monitored
    summary = monitor.summary()
    assert isinstance(summary, MonitorSummary)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.predictions = 0  # type: ignore[misc]
    lower = lower_level[0]["credit-risk"].summary()
    assert isinstance(lower, MonitorSummary)  # one type for the API, the worker's monitors and the exporter
    assert summary == dataclasses.replace(lower, rejected=summary.rejected)  # what the worker knows, and rejections
    assert (summary.predictions, summary.feedback, summary.labelled, summary.errors) == (
        8000,
        lower.feedback,
        lower.labelled,
        lower.errors,
    )
    assert summary.drift_events == {"data_drift": 1, "prediction_drift": 1, "label_drift": 1, "concept_drift": 1}
    assert summary.last_drift is not None
    assert (summary.last_drift.kind, summary.last_drift.alert_id) == ("concept_drift", drift[-1]["alert_id"])
    assert [f.feature for f in summary.top_features[:2]] == ["debt_ratio", "income"]
    assert summary.top_features[0].psi == lower.feature_scores["debt_ratio"]
    assert summary.window_metrics["accuracy"] == lower.window_performance["accuracy"]
    assert summary.task == "classification" and summary.reference_source == "warm-up"


def test_a_summary_changed_by_its_reader_changes_no_later_summary(events):
    """A summary's dicts are the caller's: changing them changes neither the monitor nor the next summary (the
    monitor shares one summary between its readers until its next batch, and its scores with its sketches)."""
    monitor = Monitor("credit-risk", SETTINGS)
    monitor.observe(events[:9000])
    first = monitor.summary()
    before = dataclasses.astuple(first)
    for field in dataclasses.fields(first):
        value = getattr(first, field.name)
        if isinstance(value, dict):
            for key in list(value):
                value[key] = "changed by the reader"
            value["added by the reader"] = 1
    assert dataclasses.astuple(monitor.summary()) == before
