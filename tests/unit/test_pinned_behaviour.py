"""What users rely on, pinned exactly: each test here fails under a small plausible change of the
rule it names (checked by planting the change by hand: issue 18's list of surviving mutants).

Severity levels, the reported chi-square threshold against scipy, the false-alarm budget's
arithmetic (monitor.py, "Calibration"), the inputs of ``alert_id``, the cooldown's boundary,
the join's expiry at exact equality and its eviction counters.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from streamdrift.core.config import MonitorSettings
from streamdrift.core.join import FeedbackJoin
from streamdrift.core.monitor import FAMILIES, ModelMonitor
from streamdrift.core.policy import AlertPolicy, alert_id, severity
from streamdrift.core.records import PredictionBatch

T0 = 1_700_000_000.0


# -- severity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statistic, threshold, expected",
    [
        (2.0, 1.0, "critical"),  # twice the threshold: critical, boundary included
        (1.999, 1.0, "warning"),
        (1.5, 1.0, "warning"),
        (1.0001, 1.0, "warning"),
        (30.0, 10.0, "critical"),
        (19.99, 10.0, "warning"),
    ],
)
def test_severity_is_critical_from_twice_the_threshold(statistic: float, threshold: float, expected: str) -> None:
    assert severity(statistic, threshold) == expected


# -- the false-alarm budget -------------------------------------------------------------


def test_p_threshold_shares_the_budget_by_families_then_columns_exactly() -> None:
    """slot / (ARL x families x columns): 200 / (1e6 x 4 x 7) with the defaults and seven features."""
    monitor = ModelMonitor("m", MonitorSettings())
    assert FAMILIES == 4
    assert monitor.p_threshold(7) == 200 / (1_000_000 * 4 * 7)
    assert monitor.p_threshold(1) == 200 / 4_000_000
    assert monitor.p_threshold(0) == monitor.p_threshold(1)  # no column: the family's whole share
    small = ModelMonitor("m", MonitorSettings(window_size=400, subwindows=8, false_alarm_run_length=20_000))
    assert small.p_threshold(3) == 50 / (20_000 * 4 * 3)


def test_the_cusum_gets_a_run_length_of_arl_times_families() -> None:
    monitor = ModelMonitor("m", MonitorSettings(false_alarm_run_length=50_000))
    assert monitor.concept.run_length == 200_000
    # its threshold before the reference error rate is known: Wald's ln(run length)
    assert monitor.concept_threshold == pytest.approx(np.log(200_000), rel=1e-12)


# -- a data-drift event: threshold against scipy, alert_id inputs ------------------------


def _drifting_batch(n: int, shift_at: int, seed: int = 5) -> PredictionBatch:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, shift_at), rng.normal(1.5, 1, n - shift_at)]).round(4)
    offsets = np.arange(100, 100 + n, dtype=np.int64)
    times = T0 + np.arange(n, dtype=np.float64)
    return PredictionBatch(
        model_id="m",
        partition=3,
        offsets=offsets,
        event_ids=[f"e{i}" for i in range(n)],
        model_versions=["v1"] * n,
        timestamps=times,
        timestamp_values=times.tolist(),
        features={"x": x.tolist(), "y": rng.normal(0, 1, n).round(4).tolist()},
        predictions=[0] * n,
        scores=np.full(n, np.nan),
        class_scores=[None] * n,
        segments=[None] * n,
    )


@pytest.fixture(scope="module")
def data_drift() -> tuple[dict, MonitorSettings]:
    settings = MonitorSettings(reference_size=400, window_size=200, subwindows=4, bins=10)
    monitor = ModelMonitor("m", settings)
    events = [e for e in monitor.observe_predictions(_drifting_batch(1200, 800)) if e["kind"] == "data_drift"]
    assert len(events) == 1
    return events[0], settings


def test_the_reported_threshold_is_scipys_chi_square_critical_value_at_the_tests_degrees_of_freedom(
    data_drift,
) -> None:
    event, settings = data_drift
    p_threshold = event["details"]["p_threshold"]
    assert p_threshold == 50 / (1_000_000 * 4 * 2)  # two features
    # the degrees of freedom the reported p-value was computed with, found independently
    dfs = [
        df
        for df in range(1, 60)
        if stats.chi2.sf(event["statistic"], df) == pytest.approx(event["p_value"], rel=1e-6, abs=0)
    ]
    assert dfs == [settings.bins - 1]  # ten quantile bins: nine degrees of freedom
    assert event["threshold"] == pytest.approx(stats.chi2.isf(p_threshold, dfs[0]), rel=1e-9)
    assert event["statistic"] > event["threshold"] and event["p_value"] < p_threshold


def test_alert_id_is_built_from_the_windows_end_offset(data_drift) -> None:
    event, settings = data_drift
    window = event["window"]
    assert window["end_offset"] - window["start_offset"] == settings.window_size - 1
    inputs = ("m", "data_drift", "chi2", event["feature"], "predictions", 3)
    assert event["alert_id"] == alert_id(*inputs, window["end_offset"])
    assert event["alert_id"] != alert_id(*inputs, window["start_offset"])


def test_alert_id_depends_on_each_of_its_inputs() -> None:
    base = ("m", "data_drift", "chi2", "age", "predictions", 0, 41)
    ids = {alert_id(*base)}
    for i, other in enumerate(("m2", "label_drift", "psi", "income", "feedback", 1, 42)):
        ids.add(alert_id(*base[:i], other, *base[i + 1 :]))
    assert len(ids) == 8
    assert alert_id("m", "concept_drift", "cusum", None, "feedback", 0, 7) == alert_id(
        "m", "concept_drift", "cusum", "", "feedback", 0, 7
    )


# -- cooldown ---------------------------------------------------------------------------


def test_cooldown_ends_exactly_cooldown_events_after_the_drift_event() -> None:
    policy = AlertPolicy(cooldown_events=100)
    assert policy.watch("data_drift", 0.3, 0.25, 10) == "fire"  # quiet until position 110
    assert policy.watch("data_drift", 0.1, 0.25, 109) is None  # low, but still in the cooldown: stays active
    assert policy.watch("data_drift", 0.3, 0.25, 109) is None  # active: no second event
    assert policy.watch("data_drift", 0.1, 0.25, 110) == "resolve"  # at 110 exactly: resolved, armed again
    assert policy.watch("data_drift", 0.3, 0.25, 111) == "fire"


# -- join: expiry at equality, evictions ------------------------------------------------------


def _feedback(join: FeedbackJoin, ids: list[str], times: list[float]) -> int:
    n = len(ids)
    return len(join.add_feedback(ids, np.array(times), [1] * n, [None] * n, np.full(n, np.nan), [None] * n))


def _predictions(join: FeedbackJoin, ids: list[str], times: list[float]) -> int:
    n = len(ids)
    return len(join.add_predictions(ids, np.array(times), [1] * n, np.full(n, np.nan), ["v1"] * n, [None] * n))


@pytest.mark.parametrize("crowd", [0, 30], ids=["alone", "in-a-batch"])
def test_a_label_exactly_ttl_after_its_prediction_still_joins(crowd: int) -> None:
    """A row expires once the watermark passes its time + ttl, strictly; ``crowd`` other rows
    send the batch through the whole-batch path rather than the loop."""
    for delay, joined in ((60.0, 1), (60.001, 0)):
        join = FeedbackJoin(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
        assert _predictions(join, ["a", "b"], [T0, T0]) == 0
        others = [f"o{i}" for i in range(crowd)]
        assert _feedback(join, [*others, "a"], [T0 + delay] * (crowd + 1)) == joined
        counters = join.counters()
        assert counters["joined"] == joined
        # "b", unlabelled, waits as long: still there at the watermark T0 + 60, expired past it
        assert counters["pending_predictions"] == joined and counters["expired_predictions"] == 2 - 2 * joined


def test_feedback_exactly_ttl_before_its_prediction_still_joins() -> None:
    for delay, joined in ((60.0, 1), (60.5, 0)):
        join = FeedbackJoin(ttl_s=60.0, max_pending=1000, max_pending_bytes=1 << 20)
        assert _feedback(join, ["a"], [T0]) == 0
        assert _predictions(join, ["a"], [T0 + delay]) == joined
        assert join.counters()["expired_feedback"] == 1 - joined


def test_evicted_count_counts_both_sides() -> None:
    join = FeedbackJoin(ttl_s=1e6, max_pending=10, max_pending_bytes=1 << 20)
    _feedback(join, [f"f{i}" for i in range(15)], [T0 + i for i in range(15)])  # early labels: 5 too many
    _predictions(join, [f"p{i}" for i in range(12)], [T0 + 20 + i for i in range(12)])  # 2 too many
    counters = join.counters()
    assert (counters["evicted_feedback"], counters["evicted_predictions"]) == (5, 2)
    assert counters["evicted_count"] == 7
    assert counters["evicted_bytes"] > 0
    assert (counters["pending_feedback"], counters["pending_predictions"]) == (10, 10)
