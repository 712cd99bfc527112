"""One event per change per (kind, feature) (issue 22, item 3, left open): a feature's data drift is its own
condition, so a second feature that drifts while the first one's condition goes on is reported, and each one
resolves on its own, with its own ``drift_resolved``.

Before, the alarm was per kind: feature y's shift 40,000 events after x's, while x stayed shifted, raised
nothing, and x's return raised nothing either (the kind stayed active on y's statistic).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from streamdrift import ModelSettings, Monitor, MonitorSettings
from streamdrift.core.config import MonitorSettings as CoreSettings
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.policy import AlertPolicy
from streamdrift.core.summary import stored_summary, summary_from_stored

T0 = 1_700_000_000
N = 160_000
X_SHIFT = (20_000, 100_000)  # x moves by 0.5 sd over these rows
Y_SHIFT = (60_000, N)  # y moves by 0.5 sd from 60,000 to the end


def _polls(a: int, b: int, x: np.ndarray, y: np.ndarray) -> list[dict]:
    return [{"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "prediction": 0,
             "features": {"x": round(float(x[i]), 4), "y": round(float(y[i]), 4)}} for i in range(a, b)]  # fmt: skip


@functools.cache
def _run() -> tuple[list[dict], dict, dict, list[dict]]:
    """The stream's events in polls of 10,000 predictions (default settings), the summaries' active features
    at 80,000 (both shifted) and at the end, and the events of a monitor restored at 80,000 from there on."""
    rng = np.random.default_rng(3)
    rows = np.arange(N)
    x = rng.normal(0, 1, N) + 0.5 * ((rows >= X_SHIFT[0]) & (rows < X_SHIFT[1]))
    y = rng.normal(0, 1, N) + 0.5 * (rows >= Y_SHIFT[0])
    monitor, events, restored_events = Monitor("m", MonitorSettings()), [], []
    restored = None
    for a in range(0, N, 10_000):
        polls = _polls(a, a + 10_000, x, y)
        events += monitor.observe(polls)
        if restored is not None:
            restored_events += restored.observe(polls)
        if a + 10_000 == 80_000:
            middle = monitor.summary()
            restored = Monitor.restore(monitor.save())
    assert restored is not None
    middle_state = {"active": middle.drift_active, "features": middle.drift_active_features}
    end = monitor.summary()
    return events, middle_state, {"active": end.drift_active, "features": end.drift_active_features}, restored_events


def test_a_second_feature_drifting_while_the_first_stays_drifted_is_its_own_event() -> None:
    events, middle, _, _ = _run()
    fired = [(e["feature"], e["window"]["end_offset"]) for e in events if e["kind"] == "data_drift"]
    assert fired == [("x", 20_599), ("y", 60_599)]  # [("x", 20_599)] before: y's change was never reported
    assert middle == {"active": frozenset({"data_drift"}), "features": {"data_drift": ["x", "y"]}}


def test_the_first_feature_going_back_resolves_its_condition_alone_while_the_second_goes_on() -> None:
    events, _, end, _ = _run()
    x_event = next(e for e in events if e["kind"] == "data_drift" and e["feature"] == "x")
    resolved = [e for e in events if e["kind"] == "drift_resolved"]
    assert [(e["feature"], e["details"]["resolves"]) for e in resolved] == [
        ("x", {"kind": "data_drift", "alert_id": x_event["alert_id"], "feature": "x"})
    ]
    (gone,) = resolved
    # 25 closes in a row under the re-arm level (max(window, cooldown) = 5,000 rows of 200-row sub-windows): the
    # first at 100,799, whose window (99,800 to 100,799) still held x's last 200 shifted rows
    assert gone["window"]["end_offset"] == 105_599
    assert (gone["action"], gone["severity"], gone["detector"]) == ("none", "info", "chi2")
    # y's condition goes on: the kind stays active, and the summary says which feature
    assert end == {"active": frozenset({"data_drift"}), "features": {"data_drift": ["y"]}}


def test_a_restored_monitor_keeps_each_features_condition() -> None:
    events, _, _, restored_events = _run()
    assert restored_events == [e for e in events if e["window"]["end_offset"] >= 80_000]
    assert [e["kind"] for e in restored_events] == ["drift_resolved"]


def test_the_policy_keeps_an_alarm_per_feature_under_its_kind() -> None:
    policy = AlertPolicy(cooldown_events=100, resolve_after=1)
    assert policy.watch("data_drift/x", 2.0, 1.0, 10) == "fire"
    assert policy.watch("data_drift/y", 2.0, 1.0, 50) == "fire"  # x's condition does not mask y's
    assert policy.active_kinds() == {"data_drift"}
    assert policy.active_features() == {"data_drift": ["x", "y"]}
    assert policy.watch("data_drift/x", 0.1, 1.0, 110) == "resolve"
    assert policy.active_features() == {"data_drift": ["y"]} and policy.active_kinds() == {"data_drift"}
    policy.fired_alert("data_drift/y", "c" * 32)
    assert policy.firing_alerts("data_drift") == ["c" * 32]
    policy.clear("data_drift")  # a rebaseline: every feature's condition is the new reference
    assert policy.active_kinds() == set() and policy.active_features() == {}


def test_a_kind_wide_data_drift_alarm_of_an_older_snapshot_becomes_the_alarm_of_the_feature_that_drifts_most() -> None:
    """A snapshot from before alarms per feature holds one active data_drift alarm: it is taken as the alarm of
    the feature with the smallest p-value at the next close, so that feature does not page again."""
    settings = CoreSettings(reference_size=400, window_size=200, subwindows=4, cooldown_events=0)
    monitor = ModelMonitor("m", settings)
    monitor.policy.load_state({"alarms": {"data_drift": [False, 0, 0, "d" * 32]}})
    p = np.array([1e-30, 0.5])  # x far over the threshold, y calm
    stats = {"p_value": p, "chi2": np.array([200.0, 1.0]), "df": np.array([9, 9]), "psi": np.array([1.0, 0.0])}
    for name in ("js", "ks", "wasserstein"):
        stats[name] = np.zeros(2)
    window = {"start_time": 0.0, "end_time": 1.0, "count": 200, "start_offset": 0, "end_offset": 0}
    scored = {"names": ["x", "y"], "stats": stats, "position": 600, "window": window, "versions": None}
    # no event (the batch is not even read): the condition the old alarm stood for goes on, now as x's
    assert monitor._drift("data_drift", scored, None) == []  # type: ignore[arg-type]
    assert monitor.policy.alarms == {"data_drift/x": [False, 0, 0, "d" * 32]}


def test_features_that_one_change_moves_are_one_event_and_one_resolution() -> None:
    """x moves by 0.5 sd and y by 0.3 sd over rows [10,000, 30,000): y's test crosses the threshold later than
    x's, within a window of x's event, so it joins x's change; the change resolves once both have (y's
    condition went a close before x's, which the change's drift_resolved names)."""
    rng = np.random.default_rng(4)
    n, rows = 60_000, np.arange(60_000)
    moved = (rows >= 10_000) & (rows < 30_000)
    x, y = rng.normal(0, 1, n) + 0.5 * moved, rng.normal(0, 1, n) + 0.3 * moved
    monitor, events, active = Monitor("m", MonitorSettings()), [], []
    for a in range(0, n, 10_000):
        events += monitor.observe(_polls(a, a + 10_000, x, y))
        active.append(monitor.summary().drift_active_features)
    about = [(e["kind"], e["feature"], e["window"]["end_offset"]) for e in events]
    assert about == [("data_drift", "x", 10_599), ("drift_resolved", "x", 35_599)]
    fired, gone = events
    assert gone["details"]["resolves"] == {"kind": "data_drift", "alert_id": fired["alert_id"], "feature": "x"}
    assert active == [{}] + [{"data_drift": ["x", "y"]}] * 2 + [{}] * 3


def test_a_summary_with_active_features_is_stored_exactly_for_the_state_cache() -> None:
    """The state cache keeps each model's summary as JSON (summary.stored_summary) and shows it without decoding
    the model; a summary it cannot give back equal is not stored, and the model is decoded at load instead."""
    monitor = ModelMonitor("m", CoreSettings(reference_size=400, window_size=200, subwindows=4))
    monitor.policy.watch("data_drift/x", 2.0, 1.0, 10)
    summary = monitor.summary()
    assert summary.drift_active_features == {"data_drift": ["x"]}
    data = stored_summary(summary)
    assert data is not None and summary_from_stored(data) == summary  # None before: the features were not read back


@pytest.mark.parametrize(
    ("y_shift", "expected"),
    [
        # y crosses at x's close: it opens the change (important features first), x joins it: one event, retrain
        (0.3, [("data_drift", "y", "retrain", 10_599), ("drift_resolved", "x", "none", 35_599)]),
        # y crosses 400 rows after x's event: joining x's change (investigate) would lose its retrain
        (
            0.2,
            [
                ("data_drift", "x", "investigate", 10_599),
                ("data_drift", "y", "retrain", 10_999),
                ("drift_resolved", "y", "none", 35_399),
                ("drift_resolved", "x", "none", 35_599),
            ],
        ),
    ],
)
def test_an_important_feature_that_moves_with_a_change_still_asks_for_its_retrain(
    y_shift: float, expected: list[tuple]
) -> None:
    """The stream of the test above with y important (data drift on it: action retrain). Before, x's event at
    10,599 (investigate) was the only one: y's retrain was lost in x's condition."""
    rng = np.random.default_rng(4)
    n, rows = 60_000, np.arange(60_000)
    moved = (rows >= 10_000) & (rows < 30_000)
    x, y = rng.normal(0, 1, n) + 0.5 * moved, rng.normal(0, 1, n) + y_shift * moved
    monitor, events = Monitor("m", MonitorSettings(), ModelSettings(important_features=["y"])), []
    for a in range(0, n, 10_000):
        events += monitor.observe(_polls(a, a + 10_000, x, y))
    assert [(e["kind"], e["feature"], e["action"], e["window"]["end_offset"]) for e in events] == expected
