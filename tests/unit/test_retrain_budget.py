"""The retrain budget (issue 23, item 1): at most ``max_retrains`` retrain actions per ``period_s`` of
event time and ``min_interval_s`` between two; a retrain over it becomes ``investigate`` with a
``budget`` field. Driven by scheduled retraining, whose events come at exact event times."""

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

T0 = 1_700_000_000.0
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "drift_event.schema.json").read_text())


def predictions(n: int, step_s: float = 1.0, start: int = 0) -> list[RawMessage]:
    """``n`` predictions of model m, one every ``step_s`` seconds of event time from T0."""
    out = []
    for i in range(start, start + n):
        value = {"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i * step_s, "features": {"x": i % 7}}
        out.append(RawMessage("predictions", 0, i, b"m", orjson.dumps({**value, "prediction": i % 2})))
    return out


def observe(monitor: ModelMonitor, messages: list[RawMessage], batch_size: int = 1000) -> list[dict]:
    events = []
    for i in range(0, len(messages), batch_size):
        batches, rejected = decode_predictions(messages[i : i + batch_size])
        assert not rejected
        for batch in batches:
            events += monitor.observe_predictions(batch)
    return events


def scheduled(budget: RetrainBudget | None, n: int = 101, batch_size: int = 1000, on_monitor: bool = False):
    """A model retrained every 10 s of event time; its budget set per model, or in [monitor]."""
    settings = MonitorSettings(retrain_budget=budget) if on_monitor else MonitorSettings()
    model = ModelSettings(retrain_every_s=10.0, retrain_budget=None if on_monitor else budget)
    monitor = ModelMonitor("m", settings, model)
    return monitor, observe(monitor, predictions(n), batch_size)


def decisions(events: list[dict]) -> list[tuple]:
    return [
        (
            e["detected_at"] - T0,
            e["action"],
            (e["budget"]["used"], e["budget"]["next_allowed_at"]) if "budget" in e else None,
        )
        for e in events
        if e["kind"] == "scheduled_retrain"
    ]


def test_without_a_budget_every_scheduled_retraining_is_a_retrain():
    _, events = scheduled(None)
    assert [(t, a) for t, a, _ in decisions(events)] == [(10.0 * k, "retrain") for k in range(1, 11)]
    assert not any("budget" in e for e in events)


def test_a_budget_exhausted_turns_retrain_into_investigate_until_the_period_rolls_over_in_event_time():
    # 2 per 35 s: retrains at 10 and 20; 30 and 40 are over (the 10 s one leaves the period at 45);
    # 50 is allowed (only 20 is within 35 s), 60 too (50), 70 is over until 50 + 35 = 85; 80 too; 90 allowed
    budget = RetrainBudget(max_retrains=2, period_s=35.0)
    monitor, events = scheduled(budget)
    assert decisions(events) == [
        (10.0, "retrain", None),
        (20.0, "retrain", None),
        (30.0, "investigate", (2, rfc3339(T0 + 45.0))),
        (40.0, "investigate", (2, rfc3339(T0 + 45.0))),
        (50.0, "retrain", None),
        (60.0, "retrain", None),
        (70.0, "investigate", (2, rfc3339(T0 + 85.0))),
        (80.0, "investigate", (2, rfc3339(T0 + 85.0))),
        (90.0, "retrain", None),
        (100.0, "retrain", None),
    ]
    over = next(e for e in events if "budget" in e)
    # the event keeps its kind and statistics; the budget says what the limit is and when it frees
    assert (over["kind"], over["detector"], over["statistic"], over["threshold"]) == (
        "scheduled_retrain",
        "schedule",
        10.0,
        10.0,
    )
    assert over["budget"] == {"used": 2, "limit": 2, "period_s": 35.0, "next_allowed_at": "2023-11-14T22:14:05.000Z"}
    # at the last event (t = 100 s) the period (65, 100] holds the retrains at 90 and 100
    assert monitor.summary().retrain_budget_remaining == 0
    assert monitor.summary().as_dict()["retrain_budget_remaining"] == 0


def test_min_interval_between_two_retrains():
    # plenty per period, but 25 s between two: 10 retrains; 20, 30 wait for 35; 40 retrains; 50, 60 wait for 65
    budget = RetrainBudget(max_retrains=10, period_s=1000.0, min_interval_s=25.0)
    _, events = scheduled(budget, n=71)
    assert decisions(events) == [
        (10.0, "retrain", None),
        (20.0, "investigate", (1, rfc3339(T0 + 35.0))),
        (30.0, "investigate", (1, rfc3339(T0 + 35.0))),
        (40.0, "retrain", None),
        (50.0, "investigate", (2, rfc3339(T0 + 65.0))),
        (60.0, "investigate", (2, rfc3339(T0 + 65.0))),
        (70.0, "retrain", None),
    ]


def test_the_monitor_default_applies_and_a_model_budget_replaces_it():
    default = RetrainBudget(max_retrains=1, period_s=1000.0)
    _, events = scheduled(default, n=31, on_monitor=True)
    assert [a for _, a, _ in decisions(events)] == ["retrain", "investigate", "investigate"]
    settings = MonitorSettings(retrain_budget=default)
    own = ModelSettings(retrain_every_s=10.0, retrain_budget=RetrainBudget(max_retrains=2, period_s=1000.0))
    events = observe(ModelMonitor("m", settings, own), predictions(31))
    assert [a for _, a, _ in decisions(events)] == ["retrain", "retrain", "investigate"]


def test_no_budget_leaves_the_settings_hash_and_dumps_as_before():
    """Off by default, and unset it is not dumped: snapshots sealed before budgets existed still load."""
    assert "retrain_budget" not in MonitorSettings().model_dump()
    assert "retrain_budget" not in ModelSettings().model_dump(mode="json")
    assert (
        MonitorSettings().fingerprint() == MonitorSettings.model_validate(MonitorSettings().model_dump()).fingerprint()
    )
    assert MonitorSettings(retrain_budget=RetrainBudget(max_retrains=1, period_s=1.0)).fingerprint() != (
        MonitorSettings().fingerprint()
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"max_retrains": 0, "period_s": 10},
        {"max_retrains": 1, "period_s": 0},
        # review helper-89: an infinite next allowed time could not be written, and quarantined the model
        {"max_retrains": 1, "period_s": float("inf")},
        {"max_retrains": 1, "period_s": 10, "min_interval_s": float("inf")},
        {"max_retrains": 1, "period_s": 10, "min_interval_s": float("nan")},
    ],
)
def test_a_bad_budget_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="retrain_budget"):
        ModelSettings(retrain_budget=bad)


@pytest.mark.parametrize("batch_size", [1, 7, 33])
def test_batches_and_a_snapshot_midway_give_the_same_decisions(batch_size):
    budget = RetrainBudget(max_retrains=2, period_s=35.0, min_interval_s=5.0)
    _, whole = scheduled(budget)
    model = ModelSettings(retrain_every_s=10.0, retrain_budget=budget)
    first = ModelMonitor("m", MonitorSettings(), model)
    events = observe(first, predictions(55), batch_size)
    restored = ModelMonitor.from_state("m", MonitorSettings(), snapshot.loads(snapshot.dumps(first.state())), model)
    events += observe(restored, predictions(46, start=55), batch_size)
    assert events == whole
    assert restored.retrain_budget is not None and len(restored.retrain_budget.times) <= 2  # bounded history


def test_an_old_snapshot_without_a_budget_history_loads_with_an_empty_one():
    model = ModelSettings(retrain_every_s=10.0, retrain_budget=RetrainBudget(max_retrains=1, period_s=1000.0))
    before = ModelMonitor("m", MonitorSettings(), ModelSettings(retrain_every_s=10.0))
    observe(before, predictions(25))  # retrained at 10 and 20 without a budget
    old = dict(snapshot.loads(snapshot.dumps(before.state())))
    del old["retrain_budget"]
    monitor = ModelMonitor.from_state("m", MonitorSettings(), old, model)
    events = observe(monitor, predictions(21, start=25))
    assert [a for _, a, _ in decisions(events)] == ["retrain", "investigate"]


def test_events_over_budget_validate_against_the_schema():
    _, events = scheduled(RetrainBudget(max_retrains=1, period_s=1000.0), n=21)
    over = [e for e in events if "budget" in e]
    assert len(over) == 1
    for event in events:
        jsonschema.validate({**event, "emitted_at": "2026-01-01T00:00:00.000Z"}, SCHEMA)
    broken = {**over[0], "emitted_at": "2026-01-01T00:00:00.000Z", "budget": {**over[0]["budget"], "used": -1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_the_remaining_budget_is_exported_for_models_with_a_budget_only():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from streamdrift.runtime.exporter import ModelCollector

    budgeted, _ = scheduled(RetrainBudget(max_retrains=3, period_s=25.0), n=46)  # retrains at 30 and 40: 1 left
    unbudgeted, _ = scheduled(None, n=46)
    monitors = {"budgeted": budgeted, "free": unbudgeted}
    registry = CollectorRegistry()
    registry.register(ModelCollector(lambda: {m: x.summary() for m, x in monitors.items()}, 10))
    metrics = {f.name: f.samples for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert [(s.labels, s.value) for s in metrics["streamdrift_retrain_budget_remaining"]] == [
        ({"model_id": "budgeted"}, 1.0)
    ]


def test_a_next_allowed_time_past_year_9999_is_written_as_its_last_millisecond():
    """Review helper-89: an event an hour before year 10000 (epoch seconds the decoder accepts) over a budget of a
    day had its next allowed time in year 10000, which ``rfc3339`` could not write: the model was quarantined.
    Such a time is written as the last millisecond of 9999 (JSON date-times end there), the event as usual."""
    assert rfc3339(253_402_300_800 + 86_400) == "9999-12-31T23:59:59.999Z"
    assert rfc3339(253_402_300_799.999) == "9999-12-31T23:59:59.999Z"
    start = 253_402_300_799 - 3600 - T0  # predictions from an hour before the end of 9999, every 10 s
    monitor = ModelMonitor(
        "m",
        MonitorSettings(),
        ModelSettings(retrain_every_s=60.0, retrain_budget={"max_retrains": 1, "period_s": 86_400}),
    )
    messages = predictions(40, step_s=10.0)
    for m in messages:
        event = orjson.loads(m.value)
        m.value = orjson.dumps({**event, "timestamp": event["timestamp"] + start})
    events = [e for e in observe(monitor, messages) if e["kind"] == "scheduled_retrain"]
    assert monitor.quarantined is None and [e["action"] for e in events][:2] == ["retrain", "investigate"]
    assert events[1]["budget"]["next_allowed_at"] == "9999-12-31T23:59:59.999Z"
    jsonschema.validate({**events[1], "emitted_at": "2026-01-01T00:00:00.000Z"}, SCHEMA)


def test_a_budget_of_any_finite_length_works_as_before():
    """A finite period past 9999 from now ("once, ever") worked before eca7a08 and is part of the settings' seal:
    refusing it would stop such a deployment, and changing it would refuse its snapshots (review helper-90)."""
    _, events = scheduled(RetrainBudget(max_retrains=1, period_s=1e12), n=21)
    over = [e for e in events if "budget" in e]
    assert over and {e["budget"]["next_allowed_at"] for e in over} == {"9999-12-31T23:59:59.999Z"}
