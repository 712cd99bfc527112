"""core/policy.py pinned exactly: the tests that kill the mutants `make mutation` found surviving there.

Each test states a behaviour users rely on (when an alarm fires and re-arms, which action a drift event
asks for, what goes into ``alert_id``, the published event's fields); docs/mutation.md lists the mutants
left alive and why.
"""

from __future__ import annotations

import hashlib

import pytest

from streamdrift.core.policy import (
    KINDS,
    RETRAIN_KINDS,
    AlertPolicy,
    RetrainLedger,
    action_for,
    alert_id,
    drift_event,
    rfc3339,
)

# -- AlertPolicy: fire, cooldown, hysteresis ---------------------------------------------


def test_a_fresh_alarm_is_armed_and_fires_only_strictly_above_the_threshold() -> None:
    policy = AlertPolicy(cooldown_events=100)
    assert policy.active_kinds() == set()
    assert policy.watch("data_drift", 0.25, 0.25, 10) is None  # equal is not above
    assert policy.alarms == {"data_drift": [True, 0]}
    assert policy.watch("data_drift", 0.2501, 0.25, 11) == "fire"
    assert policy.alarms == {"data_drift": [False, 111, 0, None]}
    assert policy.active_kinds() == {"data_drift"}


def test_an_active_alarm_resolves_from_the_end_of_its_cooldown_once_below_the_rearm_ratio() -> None:
    policy = AlertPolicy(cooldown_events=100, rearm_ratio=0.8)
    assert policy.watch("label_drift", 1.0, 0.5, 50) == "fire"  # fired at 50: quiet until 150
    assert policy.watch("label_drift", 0.1, 0.5, 149) is None  # low, but one row too early
    assert policy.alarms["label_drift"] == [False, 150, 1, None]
    assert policy.watch("label_drift", 0.4, 0.5, 150) is None  # in time, but 0.4 is not below 0.8 x 0.5
    assert policy.alarms["label_drift"] == [False, 150, 0, None]  # and the calm count starts again
    assert policy.watch("label_drift", 0.39, 0.5, 150) == "resolve"  # at the cooldown's end and below
    assert policy.alarms["label_drift"] == [True, 150]
    assert policy.active_kinds() == set()
    assert policy.watch("label_drift", 0.6, 0.5, 151) == "fire"


def test_resolving_and_firing_are_never_the_same_close() -> None:
    """With a ratio above 1 a statistic can be both under the re-arm level and over the threshold: that
    close resolves the active condition, and the next one over the threshold opens a new one."""
    policy = AlertPolicy(cooldown_events=10, rearm_ratio=2.0)
    assert policy.watch("data_quality", 1.5, 1.0, 0) == "fire"
    assert policy.watch("data_quality", 1.9, 1.0, 10) == "resolve"
    assert policy.watch("data_quality", 1.9, 1.0, 11) == "fire"


def test_kinds_have_separate_alarms() -> None:
    policy = AlertPolicy(cooldown_events=1000)
    assert policy.watch("data_drift", 2.0, 1.0, 5) == "fire"
    assert policy.watch("prediction_drift", 2.0, 1.0, 6) == "fire"
    assert policy.alarms == {"data_drift": [False, 1005, 0, None], "prediction_drift": [False, 1006, 0, None]}
    assert policy.active_kinds() == {"data_drift", "prediction_drift"}


def test_state_round_trips_into_a_policy_that_decides_the_same() -> None:
    policy = AlertPolicy(cooldown_events=100)
    policy.watch("data_drift", 2.0, 1.0, 7)
    policy.fired_alert("data_drift", "a1")
    policy.watch("label_drift", 0.5, 1.0, 8)
    state = policy.state()
    assert state == {"alarms": {"data_drift": [False, 107, 0, "a1"], "label_drift": [True, 0]}, "changes": {}}
    restored = AlertPolicy(cooldown_events=100)
    restored.load_state({"alarms": {k: tuple(v) for k, v in state["alarms"].items()}})  # as decoded: any sequence
    assert restored.alarms == policy.alarms and all(type(v) is list for v in restored.alarms.values())
    assert restored.firing_alert("data_drift") == "a1"
    assert restored.watch("data_drift", 0.0, 1.0, 107) == "resolve"
    assert restored.alarms["data_drift"] == [True, 107]


def test_an_alarm_fired_before_watch_existed_counts_its_calm_closes_from_zero() -> None:
    """A snapshot written before ``watch`` holds a fired alarm as two fields, [False, cooldown end]."""
    policy = AlertPolicy(cooldown_events=100, resolve_after=2)
    policy.load_state({"alarms": {"data_drift": [False, 150]}})
    assert policy.firing_alert("data_drift") is None and policy.active_kinds() == {"data_drift"}
    assert policy.watch("data_drift", 0.1, 1.0, 150) is None  # one calm close of the two
    assert policy.alarms["data_drift"] == [False, 150, 1, None]
    assert policy.watch("data_drift", 0.1, 1.0, 151) == "resolve"


def test_clear_arms_the_alarm_without_a_resolution_keeping_its_cooldown_end() -> None:
    policy = AlertPolicy(cooldown_events=100)
    assert policy.watch("data_drift", 2.0, 1.0, 10) == "fire"
    policy.clear("data_drift")
    policy.clear("label_drift")  # never seen: nothing to clear
    assert policy.alarms == {"data_drift": [True, 110]} and policy.active_kinds() == set()
    assert policy.watch("data_drift", 2.0, 1.0, 11) == "fire"  # the new reference's first change


# -- the retrain budget -------------------------------------------------------------------


def test_a_retrain_is_allowed_exactly_min_interval_after_the_last_and_without_one_at_the_same_time() -> None:
    ledger = RetrainLedger(max_retrains=3, period_s=100.0, min_interval_s=10.0)
    assert ledger.spend(0.0) is None
    assert ledger.spend(9.5) == {"used": 1, "limit": 3, "period_s": 100.0, "next_allowed_at": 10.0}
    assert ledger.spend(10.0) is None  # at the end of the interval, not after it
    back_to_back = RetrainLedger(max_retrains=2, period_s=100.0)
    assert back_to_back.spend(5.0) is None and back_to_back.spend(5.0) is None
    assert back_to_back.spend(5.0) == {"used": 2, "limit": 2, "period_s": 100.0, "next_allowed_at": 105.0}


def test_a_restored_ledger_keeps_its_retrains_and_its_clock() -> None:
    fresh = RetrainLedger(max_retrains=3, period_s=100.0)
    assert fresh.state() == {"times": [], "clock": None}
    restored = RetrainLedger(max_retrains=3, period_s=100.0)
    restored.load_state(fresh.state())
    assert restored.spend(-5.0) is None and restored.state() == {"times": [-5.0], "clock": -5.0}
    ledger = RetrainLedger(max_retrains=3, period_s=100.0)
    assert ledger.spend(30.0) is None and ledger.spend(50.0) is None
    assert ledger.state() == {"times": [30.0, 50.0], "clock": 50.0}
    restored = RetrainLedger(max_retrains=3, period_s=100.0)
    restored.load_state(ledger.state())
    assert restored.spend(10.0) is None and restored.times == [30.0, 50.0, 50.0]  # an earlier stamp: at the clock


# -- action, alert_id, timestamps, the event ---------------------------------------------


def test_the_action_is_retrain_for_the_retrain_kinds_and_important_features_else_investigate() -> None:
    assert RETRAIN_KINDS == {"concept_drift", "performance_degradation", "scheduled_retrain"}
    for kind in KINDS:
        expected = "retrain" if kind in RETRAIN_KINDS else "investigate"
        assert action_for(kind, None) == expected
        assert action_for(kind, "income") == expected
    important = frozenset({"income"})
    assert action_for("data_drift", "income", important) == "retrain"
    assert action_for("data_drift", "age", important) == "investigate"
    assert action_for("data_quality", "income", important) == "investigate"  # only data drift is promoted
    assert action_for("prediction_drift", "income", important) == "investigate"


def test_alert_id_is_the_sha256_of_its_inputs_joined_by_the_unit_separator() -> None:
    key = "m\x1fdata_drift\x1fchi2\x1fage\x1fpredictions\x1f3\x1f41"
    assert (
        alert_id("m", "data_drift", "chi2", "age", "predictions", 3, 41)
        == hashlib.sha256(key.encode()).hexdigest()[:32]
    )
    no_feature = "m\x1fconcept_drift\x1fcusum\x1f\x1ffeedback\x1f0\x1f7"
    assert (
        alert_id("m", "concept_drift", "cusum", None, "feedback", 0, 7)
        == hashlib.sha256(no_feature.encode()).hexdigest()[:32]
    )


def test_rfc3339_is_utc_with_milliseconds_and_a_z() -> None:
    assert rfc3339(1_700_000_000.0) == "2023-11-14T22:13:20.000Z"
    assert rfc3339(1_700_000_000.1239) == "2023-11-14T22:13:20.123Z"  # truncated, as isoformat does


def test_a_drift_event_carries_every_input_and_ids_its_window_end() -> None:
    window = {"start_offset": 10, "end_offset": 99, "count": 90}
    top = [{"feature": "age", "score": 3.0}]
    event = drift_event(
        model_id="m",
        model_version="v2",
        kind="data_drift",
        detector="chi2",
        feature="age",
        statistic=3.0,
        threshold=1.5,
        p_value=0.001,
        window=window,
        stream="predictions",
        partition=4,
        top_features=top,
        action="investigate",
        detected_at=12.5,
    )
    assert event == {
        "schema_version": 1,
        "alert_id": alert_id("m", "data_drift", "chi2", "age", "predictions", 4, 99),
        "model_id": "m",
        "model_version": "v2",
        "kind": "data_drift",
        "severity": "critical",  # 3.0 >= 2 x 1.5
        "detector": "chi2",
        "feature": "age",
        "statistic": 3.0,
        "threshold": 1.5,
        "p_value": 0.001,
        "window": {"start_offset": 10, "end_offset": 99, "count": 90, "partition": 4},
        "top_features": top,
        "action": "investigate",
        "detected_at": 12.5,
    }
    assert window == {"start_offset": 10, "end_offset": 99, "count": 90}  # the caller's dict is not changed


@pytest.mark.parametrize(("statistic", "expected"), [(2.9999, "warning"), (3.0, "critical")])
def test_the_event_severity_is_critical_from_twice_the_threshold(statistic: float, expected: str) -> None:
    window = {"end_offset": 1}
    event = drift_event(
        model_id="m",
        model_version=None,
        kind="label_drift",
        detector="chi2",
        feature=None,
        statistic=statistic,
        threshold=1.5,
        p_value=None,
        window=window,
        stream="feedback",
        partition=0,
        top_features=[],
        action="investigate",
        detected_at="2023-11-14T22:13:20Z",
    )
    assert event["severity"] == expected


@pytest.mark.parametrize("field", ["statistic", "threshold", "p_value"])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_non_finite_statistic_is_refused_naming_the_event_and_the_field(field: str, bad: float) -> None:
    """The engine quarantines the model with this message as its reason: it must say which number broke."""
    numbers = {"statistic": 3.0, "threshold": 1.5, "p_value": 0.01, field: bad}
    with pytest.raises(ValueError, match=f"^drift event data_quality/missing_rate: {field} is not finite$"):
        drift_event(
            model_id="m",
            model_version=None,
            kind="data_quality",
            detector="missing_rate",
            feature="age",
            window={"end_offset": 1},
            stream="predictions",
            partition=0,
            top_features=[],
            action="investigate",
            detected_at=1.0,
            **numbers,
        )


def test_news_about_two_kinds_at_one_row_are_two_alerts() -> None:
    """``subject`` (the kind a drift_resolved event is about) is part of its ``alert_id``."""
    ids = []
    for subject in ("data_drift", "label_drift", None):
        event = drift_event(
            model_id="m",
            model_version=None,
            kind="drift_resolved",
            detector="psi",
            feature=None,
            statistic=0.1,
            threshold=1.0,
            p_value=None,
            window={"end_offset": 42},
            stream="predictions",
            partition=1,
            top_features=[],
            action="none",
            detected_at=1.0,
            subject=subject,
        )
        ids.append(event["alert_id"])
    kinds = ("drift_resolved/data_drift", "drift_resolved/label_drift", "drift_resolved")
    assert ids == [alert_id("m", kind, "psi", None, "predictions", 1, 42) for kind in kinds]
