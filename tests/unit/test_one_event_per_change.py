"""One event per change (issue 22, item 3): a change that persists is one drift event, the kind stays
active until a ``drift_resolved`` event, and only then can the same kind fire again.

The policy is pinned on hand-made statistics; the monitor on seeded streams at default settings
(window 1,000 in 5 sub-windows, cooldown 5,000): a label rate 0.30 -> 0.40 gave 18 label_drift
events over 200,000 events before (its statistic dips under the re-arm level and rises again), one now.
"""

from __future__ import annotations

import collections
import functools
import json
from pathlib import Path

import jsonschema
import numpy as np

from streamdrift import ModelSettings, Monitor, MonitorSettings
from streamdrift.core import state as snapshot
from streamdrift.core.config import MonitorSettings as CoreSettings
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.policy import AlertPolicy, action_for
from streamdrift.retrain.listener import AlertFilter

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "drift_event.schema.json").read_text())
T0 = 1_700_000_000


def test_dips_under_the_rearm_level_do_not_fire_again_and_a_full_calm_run_resolves() -> None:
    policy = AlertPolicy(cooldown_events=100, rearm_ratio=0.8, resolve_after=3)
    assert policy.watch("label_drift", 1.2, 1.0, 10) == "fire"
    # dips (0.5 < 0.8) between rises: the condition goes on, no new event, the calm count restarts
    assert [policy.watch("label_drift", s, 1.0, p) for s, p in [(0.5, 200), (1.5, 210), (0.5, 220), (0.5, 230)]] == [
        None
    ] * 4
    assert policy.active_kinds() == {"label_drift"}
    assert policy.watch("label_drift", 0.79, 1.0, 240) == "resolve"  # third close in a row under 0.8
    assert policy.active_kinds() == set()
    assert policy.watch("label_drift", 1.01, 1.0, 250) == "fire"  # armed again


def test_a_calm_run_resolves_only_once_the_cooldown_is_over_and_at_the_rearm_level_is_not_calm() -> None:
    policy = AlertPolicy(cooldown_events=100, rearm_ratio=0.8, resolve_after=2)
    assert policy.watch("data_drift", 2.0, 1.0, 0) == "fire"
    assert policy.watch("data_drift", 0.8, 1.0, 10) is None  # at the level: not below it
    assert policy.watch("data_drift", 0.1, 1.0, 20) is None
    assert policy.watch("data_drift", 0.1, 1.0, 30) is None  # two calm closes, but quiet until 100
    assert policy.watch("data_drift", 0.1, 1.0, 99) is None
    assert policy.watch("data_drift", 0.1, 1.0, 100) == "resolve"


def test_the_alert_a_condition_opened_is_kept_for_its_resolution_and_kinds_are_separate() -> None:
    policy = AlertPolicy(cooldown_events=0, resolve_after=1)
    assert policy.watch("version_comparison", 1.0, 0.99, 5) == "fire"
    policy.fired_alert("version_comparison", "a" * 32)
    assert policy.firing_alert("version_comparison") == "a" * 32
    assert policy.active_kinds() == {"performance_degradation"}  # named by the kind of its events
    assert policy.watch("data_drift", 0.1, 1.0, 6) is None
    assert policy.firing_alert("data_drift") is None


def test_an_alarm_from_a_snapshot_before_resolution_stays_active_and_resolves_without_its_alert_id() -> None:
    policy = AlertPolicy(cooldown_events=100, resolve_after=2)
    old_alarms = {"label_drift": [False, 150], "data_drift": [True, 0], "concept_drift": [False, 90]}  # two fields
    policy.load_state({"alarms": old_alarms})
    assert policy.active_kinds() == {"label_drift"}  # concept drift no longer has an alarm that re-arms
    assert policy.watch("label_drift", 0.1, 1.0, 140) is None
    assert policy.firing_alert("label_drift") is None
    assert policy.watch("label_drift", 0.1, 1.0, 150) == "resolve"
    assert policy.watch("data_drift", 1.5, 1.0, 150) == "fire"


def test_drift_resolved_is_informational_and_the_retrain_listener_never_triggers_on_it() -> None:
    assert action_for("drift_resolved", None) == "none"
    accept_all = AlertFilter({"retrain", "investigate", "none"}, debounce_s=0, remember=10)
    event = {"alert_id": "b" * 32, "model_id": "m", "kind": "drift_resolved", "action": "none", "detected_at": 1.0}
    assert accept_all.decide(event) == "ignored"


def _stream(
    n: int,
    seed: int,
    x_shift: tuple[int, int, float],
    label_rate: tuple[int, float, float],
    model: ModelSettings | None = None,
    poll: int = 10_000,
) -> list[dict]:
    """Drift events of ``n`` predictions and their labels, in polls of 10,000 of each (default settings).
    ``x_shift``: feature x moves by the last value over rows [first, second); ``label_rate``: the
    positive rate goes from the second value to the third at the first."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    start, stop, shift = x_shift
    x = rng.normal(0, 1, n) + shift * ((rows >= start) & (rows < stop))
    at, before, after = label_rate
    labels = rng.random(n) < np.where(rows >= at, after, before)
    monitor = Monitor("m", MonitorSettings(), model)
    events = []
    for a in range(0, n, poll):
        batch = range(a, min(n, a + poll))
        polls = [{"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "features": {"x": round(float(x[i]), 4)},
                  "prediction": 0} for i in batch]  # fmt: skip
        polls += [{"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "label": int(labels[i])} for i in batch]
        events += monitor.observe(polls)
    for event in events:
        jsonschema.validate({**event, "emitted_at": "2024-01-01T00:00:00Z"}, SCHEMA)
    return events


@functools.cache
def _persistent() -> list[dict]:
    return _stream(200_000, 1, (20_000, 200_000, 0.5), (20_000, 0.30, 0.40))


def test_one_persistent_shift_in_a_feature_and_in_the_label_rate_is_one_event_each_over_200000_events() -> None:
    events = _persistent()
    kinds = collections.Counter(e["kind"] for e in events)
    assert kinds["data_drift"] == 1 and kinds["label_drift"] == 1  # 1 and 18 before
    assert not [
        e
        for e in events
        if e["kind"] == "drift_resolved" and e["details"]["resolves"]["kind"] in ("data_drift", "label_drift")
    ]
    (data,) = [e for e in events if e["kind"] == "data_drift"]
    assert data["feature"] == "x" and data["window"]["end_offset"] == 20_599


def test_a_shift_that_goes_away_is_resolved_once_naming_the_alert_it_opened() -> None:
    events = _stream(60_000, 2, (10_000, 30_000, 0.5), (0, 0.3, 0.3))
    data = [e for e in events if e["kind"] == "data_drift"]
    resolved = [e for e in events if e["kind"] == "drift_resolved" and e["details"]["resolves"]["kind"] == "data_drift"]
    assert len(data) == 1 and len(resolved) == 1
    (fired,), (gone,) = data, resolved
    assert gone["details"]["resolves"]["alert_id"] == fired["alert_id"]
    # data drift's conditions are per feature: the resolution names x (None when the alarm was per kind)
    assert (gone["action"], gone["severity"], gone["feature"], gone["detector"]) == ("none", "info", "x", "chi2")
    assert gone["details"]["resolves"]["feature"] == "x"
    # the window scored at each close ends 5,000 rows (25 closes of 200) after the shift's last row left it
    assert 31_000 <= gone["window"]["end_offset"] < 40_000
    assert gone["window"]["end_offset"] % 200 == 199


def test_the_summary_says_which_kinds_are_active_and_a_snapshot_keeps_it() -> None:
    settings = CoreSettings(reference_size=300, window_size=200, subwindows=4, cooldown_events=400)
    monitor = ModelMonitor("m", settings)
    monitor.policy.watch("label_drift", 10.0, 1.0, 0)
    assert monitor.summary().drift_active == frozenset({"label_drift"})
    assert monitor.summary().as_dict()["drift_active"] == ["label_drift"]
    restored = ModelMonitor.from_state("m", settings, snapshot.loads(snapshot.dumps(monitor.state())))
    assert restored.summary().drift_active == frozenset({"label_drift"})
    assert monitor.resolve_after == 8  # max(window 200, cooldown 400) rows of 50-row sub-windows


def test_with_rebaseline_the_data_after_a_drift_event_becomes_the_reference_whatever_the_polls() -> None:
    """rebaseline = true: after the drift event, the next reference_size (2,000) events of that stream are the
    new reference, a rebaselined event says so at the last of them, and the kind is armed again."""
    model = ModelSettings(rebaseline=True)
    events = _stream(60_000, 2, (10_000, 60_000, 0.5), (10_000, 0.3, 0.4), model, poll=10_000)
    other_polls = _stream(60_000, 2, (10_000, 60_000, 0.5), (10_000, 0.3, 0.4), model, poll=777)
    for stream in ("predictions", "feedback"):  # the polls interleave the two streams otherwise: compare each
        sketches = ("data_drift", "prediction_drift", "label_drift", "rebaselined")
        assert [e for e in other_polls if e["details"]["window_stream"] == stream and e["kind"] in sketches] == [
            e for e in events if e["details"]["window_stream"] == stream and e["kind"] in sketches
        ]
    for kind in ("data_drift", "label_drift"):
        (fired,) = [e for e in events if e["kind"] == kind]
        (news,) = [e for e in events if e["kind"] == "rebaselined" and e["details"]["rebaselines"]["kind"] == kind]
        assert news["details"]["rebaselines"]["alert_id"] == fired["alert_id"]
        start, end = fired["window"]["end_offset"] + 1, fired["window"]["end_offset"] + 2000
        assert (news["window"]["start_offset"], news["window"]["end_offset"], news["window"]["count"]) == (
            start,
            end,
            2000,
        )
        assert (news["action"], news["severity"]) == ("none", "info")
    assert not [e for e in events if e["kind"] == "drift_resolved"]


def test_a_drop_in_accuracy_that_recovers_is_one_performance_degradation_then_its_resolution() -> None:
    """Error rate 0.1 -> 0.2 over rows [10,000, 20,000) of 60,000 (default settings): one event, resolved
    once the windows have been back under the re-arm level (p > ~0.2) for 5,000 rows; before, the alarm
    re-armed silently and said nothing of the recovery."""
    rng = np.random.default_rng(1)
    n, rows = 60_000, np.arange(60_000)
    labels = (rng.random(n) < 0.5).astype(int)
    wrong = rng.random(n) < np.where((rows >= 10_000) & (rows < 20_000), 0.2, 0.1)
    predictions = np.where(wrong, 1 - labels, labels)
    monitor, events = Monitor("m", MonitorSettings()), []
    for a in range(0, n, 10_000):
        batch = range(a, a + 10_000)
        polls = [{"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "features": {"x": 1.0},
                  "prediction": int(predictions[i])} for i in batch]  # fmt: skip
        polls += [{"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "label": int(labels[i])} for i in batch]
        events += monitor.observe(polls)
    about = [(e["kind"], e["window"]["end_offset"]) for e in events if e["kind"] != "concept_drift"]
    assert about == [("performance_degradation", 10_999), ("drift_resolved", 25_199)]
    assert monitor.summary().drift_active == frozenset()
