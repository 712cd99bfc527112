"""Business metrics (issue 23 item 4): the cost and value of graded predictions, the cost degradation test,
the expected cost from scores, and the settings that declare a cost.

Streams go through the public `Monitor` (the real decoder, then `ModelMonitor`), seeded, with exact
expectations where the arithmetic is exact. Batch-split invariance of the new state is part of
``test_batch_split.py``'s property (both of its models declare a cost, and feedback carries values).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from streamdrift.core.api import Monitor
from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.runtime.settings import ConfigError, load_settings

T0 = 1_700_000_000
SETTINGS = MonitorSettings(
    reference_size=200, window_size=200, subwindows=4, cooldown_events=400, degradation_alpha=0.01
)
MATRIX = {"0": {"0": 0.0, "1": 1.0}, "1": {"0": 5.0, "1": 0.0}}  # a missed positive costs 5, a false alarm 1


def classifier_stream(n: int, seed: int, worse_from: int | None = None) -> list[dict]:
    """Predictions, each followed by its feedback with a value; from ``worse_from`` on, positives are
    missed four times as often (accuracy barely moves, the cost does)."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        label = int(rng.random() < 0.3)
        miss = 0.4 if worse_from is not None and i >= worse_from else 0.1
        wrong = rng.random() < (miss if label else 0.05)
        prediction = 1 - label if wrong else label
        score = round(float(np.clip(rng.normal(0.8 if prediction else 0.2, 0.1), 0, 1)), 4)
        version = "v2" if i % 4 == 0 else "v1"
        events.append(
            {
                "event_id": f"e{i}",
                "model_id": "m",
                "model_version": version,
                "timestamp": T0 + i,
                "features": {"x": round(float(rng.normal()), 4)},
                "prediction": prediction,
                "score": score,
            }
        )
        events.append({"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "label": label, "value": i % 3})
    return events


def test_a_costlier_stream_raises_a_cost_degradation_and_a_stationary_one_does_not() -> None:
    model = ModelSettings(cost_matrix=MATRIX, cost_tolerance=0.2)
    calm = Monitor("m", SETTINGS, model)
    assert [e for e in calm.observe(classifier_stream(3000, seed=7)) if "cost" in e["detector"]] == []
    monitor = Monitor("m", SETTINGS, model)
    events = [e for e in monitor.observe(classifier_stream(3000, seed=7, worse_from=1500)) if e["detector"] == "cost"]
    # the mean cost goes from about 0.19 to 0.64 at feedback 1500; a 200-row window's mean has a standard
    # error of about 0.11, so the one-sided bound at alpha 0.01 clears reference + 0.2 some windows later
    assert [(e["kind"], e["window"]["end_offset"], e["action"]) for e in events] == [
        ("performance_degradation", 2299, "retrain")
    ]
    (event,) = events
    details = event["details"]
    assert details["metric"] == "cost" and details["tolerance"] == 0.2 and details["costed"] == 200
    assert event["threshold"] == pytest.approx(details["reference"] + 0.2)
    assert event["statistic"] > event["threshold"] and details["confidence_bound"] > event["threshold"]
    assert event["p_value"] < SETTINGS.degradation_alpha
    assert event["window"]["count"] == 200 and event["model_version"] == "v1"
    assert set(details["cost_per_version"]) == {"v1", "v2"} and details["expected_cost"] > 0
    assert event["alert_id"] not in {e["alert_id"] for e in monitor.observe([])}


def test_the_expected_cost_from_scores_fires_before_any_label_whatever_the_batching() -> None:
    """Scores that lose their confidence raise the expected cost of a window of predictions: a
    performance_degradation with detector expected_cost, action investigate (an estimate), with no
    feedback at all; the same events however the predictions are split between calls."""
    rng = np.random.default_rng(2)
    stream = []
    for i in range(2400):
        confident = i < 1200
        positive = rng.random() < 0.3
        p = float(rng.uniform(0.8, 1.0) if positive else rng.uniform(0.0, 0.2))
        if not confident:
            p = float(rng.uniform(0.5, 0.7) if positive else rng.uniform(0.3, 0.5))
        stream.append(
            {
                "event_id": f"e{i}",
                "model_id": "m",
                "timestamp": T0 + i,
                "features": {"x": round(float(rng.normal()), 4)},
                "prediction": int(p >= 0.5),
                "score": round(p, 4),
            }
        )
    model = ModelSettings(cost_matrix=MATRIX, cost_tolerance=0.2)
    whole = Monitor("m", SETTINGS, model)
    events = [e for e in whole.observe(stream) if e["detector"] == "expected_cost"]
    assert [(e["kind"], e["action"], e["window"]["count"], e["window"]["end_offset"]) for e in events] == [
        ("performance_degradation", "investigate", 200, 1299)
    ]
    assert events[0]["window"]["start_offset"] == 1100 and events[0]["details"]["metric"] == "expected_cost"
    assert events[0]["statistic"] > events[0]["threshold"] == pytest.approx(events[0]["details"]["reference"] + 0.2)
    split = Monitor("m", SETTINGS, model)
    cut = [e for start in range(0, 2400, 97) for e in split.observe(stream[start : start + 97])]
    assert [e for e in cut if e["detector"] == "expected_cost"] == events and split.save() == whole.save()


def test_cost_and_value_are_exact_per_model_and_version() -> None:
    """Costs from the matrix and values from the feedback, windowed (the last window_size graded
    predictions) and cumulative, against sums made here from the stream itself."""
    stream = classifier_stream(1000, seed=3)
    monitor = Monitor("m", SETTINGS, ModelSettings(cost_matrix=MATRIX))
    monitor.observe(stream)
    business = monitor.summary().business
    assert business is not None
    predictions = [e for e in stream if "label" not in e]
    feedback = [e for e in stream if "label" in e]
    costs = [MATRIX[str(f["label"])][str(p["prediction"])] for p, f in zip(predictions, feedback)]
    values = [f["value"] for f in feedback]
    cumulative = business["cumulative"]
    assert (cumulative["rows"], cumulative["costed"], cumulative["valued"]) == (1000, 1000, 1000)
    assert cumulative["cost_sum"] == sum(costs) and cumulative["value_sum"] == sum(values)
    assert cumulative["cost"] == pytest.approx(sum(costs) / 1000)
    window = business["window"]
    assert (
        window["rows"] == 200 and window["cost_sum"] == sum(costs[-200:]) and window["value_sum"] == sum(values[-200:])
    )
    v2 = [c for c, p in zip(costs, predictions) if p["model_version"] == "v2"]
    assert cumulative["versions"]["v2"]["cost"] == pytest.approx(sum(v2) / len(v2))
    assert cumulative["versions"]["v2"]["rows"] == 250
    assert business["reference_cost"] is None  # no cost_tolerance: measured, not tested
    # the expected cost from the scores: P(1) = score, the matrix's row for each prediction
    expected = [
        p["score"] * MATRIX["1"][str(p["prediction"])] + (1 - p["score"]) * MATRIX["0"][str(p["prediction"])]
        for p in predictions[-200:]
    ]
    assert business["expected_cost"] == pytest.approx(sum(expected) / 200)


def test_values_alone_are_reported_from_the_first_one_and_a_model_without_them_keeps_its_state_as_before() -> None:
    stream = [{k: v for k, v in e.items() if k != "value"} for e in classifier_stream(600, seed=5)]
    plain = Monitor("m", SETTINGS)
    plain.observe(stream)
    assert plain.summary().business is None and "cost" not in plain._monitor.state()
    with_values = Monitor("m", SETTINGS)
    with_values.observe(stream[:400] + [{**e, "value": 2.5} if "label" in e else e for e in stream[400:]])
    business = with_values.summary().business
    assert business is not None and business["cumulative"]["rows"] == 400  # counted from the first value
    assert (business["cumulative"]["valued"], business["cumulative"]["value"]) == (400, 2.5)
    assert business["window"]["rows"] == 200 and business["window"]["costed"] == 0
    assert business["window"]["cost"] is None and business["expected_cost"] is None


def test_regression_cost_is_per_unit_of_absolute_error() -> None:
    rng = np.random.default_rng(11)
    events = []
    for i in range(400):
        y = round(float(rng.normal(10, 2)), 3)
        noise = 0.5 if i < 200 else 3.0
        events.append(
            {
                "event_id": f"r{i}",
                "model_id": "r",
                "timestamp": T0 + i,
                "features": {"x": round(float(rng.normal()), 3)},
                "prediction": round(y + float(rng.normal(0, noise)), 3),
            }
        )
        events.append({"event_id": f"r{i}", "model_id": "r", "timestamp": T0 + i, "label": y})
    model = ModelSettings(task="regression", cost_per_unit_error=3.0, cost_tolerance=1.0)
    monitor = Monitor("r", SETTINGS, model)
    drift = monitor.observe(events)
    cost_events = [e for e in drift if e["detector"] == "cost"]
    assert [(e["kind"], e["window"]["end_offset"]) for e in cost_events] == [("performance_degradation", 249)]
    business = monitor.summary().business
    assert business is not None
    errors = [abs(f["label"] - p["prediction"]) for p, f in zip(events[::2], events[1::2])]
    assert business["cumulative"]["cost"] == pytest.approx(3.0 * sum(errors) / 400)
    assert business["reference_cost"] == pytest.approx(3.0 * sum(errors[:200]) / 200)


def test_the_business_state_survives_a_snapshot() -> None:
    model = ModelSettings(cost_matrix=MATRIX, cost_tolerance=0.2)
    stream = classifier_stream(2000, seed=7, worse_from=1000)
    whole = Monitor("m", SETTINGS, model)
    expected = whole.observe(stream)
    first = Monitor("m", SETTINGS, model)
    events = first.observe(stream[:1301])
    restored = Monitor.restore(first.save())
    events += restored.observe(stream[1301:])
    assert events == expected and restored.save() == whole.save()
    assert any(e["detector"] == "cost" for e in expected)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('cost_matrix = {"0" = {"0" = 0, "1" = 1}}', "needs at least two classes"),
        ('cost_matrix = {"0" = {"0" = 0, "1" = 1}, "1" = {"1" = 0}}', "must give a cost for each class"),
        ('cost_matrix = {"0" = {"0" = 0, "1" = nan}, "1" = {"0" = 5, "1" = 0}}', "must be a finite number"),
        ('cost_matrix = {"0" = {"0" = 0, "1" = "x"}, "1" = {"0" = 5, "1" = 0}}', "valid number"),
        ("cost_per_unit_error = -1", "greater than 0"),
        ("cost_tolerance = 0.5", "cost_tolerance needs cost_matrix or cost_per_unit_error"),
        (
            'task = "regression"\ncost_matrix = {"0" = {"0" = 0, "1" = 1}, "1" = {"0" = 5, "1" = 0}}',
            "cost_matrix is for",
        ),
    ],
)
def test_a_bad_cost_setting_stops_at_start_naming_it(tmp_path, toml: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[models.credit-risk]\n{toml}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert "invalid setting models.credit-risk" in str(info.value) and message in str(info.value)


def test_no_cost_setting_leaves_the_settings_hash_as_before() -> None:
    assert "cost_matrix" not in ModelSettings().model_dump()
    declared = ModelSettings(cost_matrix=MATRIX, cost_tolerance=0.5).model_dump()
    assert declared["cost_matrix"] == MATRIX and declared["cost_tolerance"] == 0.5


def test_a_pair_with_either_class_outside_the_matrix_has_no_cost_and_the_mean_cost_has_its_standard_error():
    """Mutation testing, issue 18: either class unknown (above or below every known one) is NaN, not a
    neighbour's cost; the mean cost's standard error is the population variance's over the costed rows,
    0 for equal costs, None without costs or where the squares overflow."""
    from streamdrift.core.metrics.cost import _means, matrix_costs

    m = {"0": {"0": 0.0, "1": 1.0}, "1": {"0": 5.0, "1": 0.0}}
    costs = matrix_costs(m, np.array(["1", "2", "/", "0"]), np.array(["2", "1", "0", "/"]))
    assert np.isnan(costs).all()
    costs = [1.0, 2.0, 3.0, 6.0]  # mean 3, population variance 14 / 4
    sums = np.array([5, 4, sum(costs), sum(c * c for c in costs), 0, 0.0])
    out = _means(sums)
    assert out["cost"] == 3.0 and out["cost_se"] == pytest.approx(math.sqrt(3.5 / 4), rel=1e-15)
    assert _means(np.array([4, 4, 8.0, 16.0, 0, 0.0]))["cost_se"] == 0.0  # equal costs
    assert _means(np.array([3, 0, 0.0, 0.0, 0, 0.0]))["cost_se"] is None  # no costs
    assert _means(np.array([2, 2, 2e200, math.inf, 0, 0.0]))["cost_se"] is None  # squares overflowed


def test_expected_cost_is_the_probability_weighted_cost_of_the_prediction_from_scores_or_class_scores():
    """Mutation testing, issue 18: sum over labels k of P(k) x cost(k, prediction), from the positive
    class's score in a matrix of two classes (the score wins over class scores), else from the class
    scores; NaN for an unknown prediction, class scores with a class outside the matrix, or none."""
    from streamdrift.core.metrics.cost import expected_costs

    # two classes, the positive one sorted first: the negative is the other
    m2 = {"0": {"0": 0.0, "1": 1.0}, "1": {"0": 5.0, "1": 0.0}}
    out = expected_costs(
        m2,
        np.array(["0", "1", "1", "7"]),
        np.array([0.25, 0.5, np.nan, 0.5]),
        [{"0": 0.5, "1": 0.5}, {"0": 1.0, "1": 0.0}, {"0": 0.25, "1": 0.75}, {"0": 0.5, "1": 0.5}],
        "0",
    )
    assert out[:3].tolist() == [0.25 * 0.0 + 0.75 * 5.0, 0.5 * 1.0 + 0.5 * 0.0, 0.25 * 1.0 + 0.75 * 0.0]
    assert np.isnan(out[3])  # a prediction outside the matrix, with a score
    # three classes: scores are not read, class scores are
    m3 = {"a": {"a": 0.0, "b": 2.0, "c": 3.0}, "b": {"a": 1.0, "b": 0.0, "c": 4.0}, "c": {"a": 5.0, "b": 6.0, "c": 0.0}}
    out = expected_costs(
        m3,
        np.array(["b", "c", "a", "x", "b"]),
        np.array([0.3, np.nan, np.nan, np.nan, 0.5]),
        [{"a": 0.5, "b": 0.25, "c": 0.25}, {"a": 0.25, "c": 0.75}, {"a": 0.5, "z": 0.5}, {"a": 1.0}],  # 4 of 5
        "b",
    )
    assert out[:2].tolist() == [0.5 * 2.0 + 0.25 * 0.0 + 0.25 * 6.0, 0.25 * 3.0 + 0.75 * 0.0]
    assert np.isnan(out[2:]).all()  # a class outside the matrix, an unknown prediction, no class scores


def plain_cost_report(rows: list[tuple[str, float, float]], scope: str, seen: list[str]) -> dict:
    """``CostMetrics.report`` made here from the rows themselves, (version, cost, value) with NaN where
    none: counts, means over the rows that have one, sums, the population standard error of the mean
    cost, and per version (in order of first appearance, those with rows in ``rows``) its counts and means."""

    def means(part: list[tuple[str, float, float]]) -> dict:
        costs = [c for _, c, _ in part if not math.isnan(c)]
        values = [v for _, _, v in part if not math.isnan(v)]
        mean = sum(costs) / len(costs) if costs else None
        return {
            "rows": len(part),
            "costed": len(costs),
            "cost": mean,
            "cost_sum": float(sum(costs)),
            "cost_se": math.sqrt(sum((c - mean) ** 2 for c in costs) / len(costs) / len(costs)) if costs else None,
            "valued": len(values),
            "value": sum(values) / len(values) if values else None,
            "value_sum": float(sum(values)),
        }

    per_version = {
        name: {
            k: v
            for k, v in means([r for r in rows if r[0] == name]).items()
            if k not in ("cost_sum", "cost_se", "value_sum")
        }
        for name in seen
        if any(r[0] == name for r in rows)
    }
    return {"scope": scope, **means(rows), "versions": per_version}


def test_cost_metrics_report_counts_means_and_versions_of_each_window_and_since_the_start():
    """Mutation testing, issue 18: ``CostMetrics`` against the same figures made from the rows: each window
    completed (its position, the index of the row that closed it, its report), the window and cumulative
    reports field by field, a row without a version under ``__none__``, a version with rows but no cost
    listed with cost None, and each version's first row in the state; batches that cross sub-windows."""
    from streamdrift.core.metrics.cost import CostMetrics

    nan = math.nan
    first = [("v1", 1.0, nan), (None, nan, 2.0), ("v1", 3.0, 4.0)]
    second = [("v2", 2.0, 1.0), ("v1", 0.0, nan), ("v3", nan, 6.0), (None, 5.0, 0.5), ("v1", 1.0, 3.0)]
    metrics = CostMetrics(window_size=4, subwindows=2)
    windows = []
    for batch in (first, second):
        versions, costs, values = zip(*batch)
        windows += metrics.update(list(versions), np.array(costs), np.array(values))
    rows = [("__none__" if v is None else v, c, x) for v, c, x in first + second]
    seen = ["v1", "__none__", "v2", "v3"]
    # sub-windows of 2 rows: windows of the last 4 close at rows 4, 6 and 8, by rows 0, 2 and 4 of the second batch
    assert [(w["position"], w["row"]) for w in windows] == [(4, 0), (6, 2), (8, 4)]
    for w in windows:
        expected = plain_cost_report(rows[w["position"] - 4 : w["position"]], "window", seen)
        assert w["report"] == {**expected, "cost_se": pytest.approx(expected["cost_se"], rel=1e-12)}
    expected = plain_cost_report(rows[-4:], "window", seen)
    assert metrics.report() == {**expected, "cost_se": pytest.approx(expected["cost_se"], rel=1e-12)}
    assert list(metrics.report()["versions"]) == ["v1", "__none__", "v3"]  # v2's one row has left the window
    expected = plain_cost_report(rows, "cumulative", seen)
    assert metrics.report("cumulative") == {**expected, "cost_se": pytest.approx(expected["cost_se"], rel=1e-12)}
    assert metrics.report("cumulative")["versions"]["v3"] == {
        "rows": 1,
        "costed": 0,
        "cost": None,
        "valued": 1,
        "value": 6.0,
    }
    assert metrics.state()["versions"] == {"names": seen, "since": [0, 1, 3, 5], "overflow": 0}


def test_cost_metrics_and_expected_cost_continue_from_their_state_as_if_never_stopped():
    from streamdrift.core.metrics.cost import CostMetrics, ExpectedCost

    fresh = CostMetrics(10, 5)
    assert fresh.state()["sums"].shape == (7, 0, 6)  # no version yet
    fresh.load_state(CostMetrics(10, 5).state())
    assert fresh.report("cumulative")["rows"] == 0 and fresh.report()["versions"] == {}
    rng = np.random.default_rng(4)
    versions = [["v1", "v2", None][k] for k in rng.integers(0, 3, 50)]
    costs = np.where(rng.random(50) < 0.2, np.nan, rng.integers(0, 6, 50).astype(float))
    values = np.where(rng.random(50) < 0.5, np.nan, rng.normal(0, 10, 50))
    whole, first = CostMetrics(10, 5, max_versions=2), CostMetrics(10, 5, max_versions=2)
    expected = whole.update(versions, costs, values)
    got = first.update(versions[:23], costs[:23], values[:23])
    restored = CostMetrics(10, 5, max_versions=2)
    restored.load_state(first.state())
    got += [{**w, "row": 23 + w["row"]} for w in restored.update(versions[23:], costs[23:], values[23:])]
    assert got == expected and len(expected) == 21  # positions 10, 12, ..., 50
    for scope in ("window", "cumulative"):
        assert restored.report(scope) == whole.report(scope)
    assert restored.state()["versions"] == whole.state()["versions"] and restored.rows == 50
    assert restored.state()["sums"].tolist() == whole.state()["sums"].tolist()
    e_whole, e_first = ExpectedCost(10, 5), ExpectedCost(10, 5)
    expected = e_whole.update(costs)
    got = e_first.update(costs[:23])
    e_restored = ExpectedCost(10, 5)
    e_restored.load_state(e_first.state())
    got += [{**w, "row": 23 + w["row"]} for w in e_restored.update(costs[23:])]
    assert got == expected and len(expected) > 3
    assert e_restored.state()["sums"].tolist() == e_whole.state()["sums"].tolist() and e_restored.rows == e_whole.rows


def test_expected_cost_windows_report_the_mean_and_its_standard_error_of_the_scored_predictions():
    """Mutation testing, issue 18: each window of ``window_size`` scored predictions (NaN ones skipped) as of
    its sub-window's end: its position among the scored, the index of the row that closed it, its mean and
    the population standard error of the mean; none before the first full window; 0 for equal costs, None
    where the squares overflow (the cost metrics' too), without a warning."""
    from streamdrift.core.metrics.cost import CostMetrics, ExpectedCost

    nan = math.nan
    costs = [1.0, nan, 0.5, 2.0, nan, 0.5, 4.0, 1.0, 3.0, nan, nan, 0.0]
    scored = [(i, c) for i, c in enumerate(costs) if not math.isnan(c)]
    estimator = ExpectedCost(window_size=4, subwindows=2)
    windows = estimator.update(np.array(costs[:5])) + estimator.update(np.array(costs[5:]))
    expected = []
    for position in (4, 6, 8):
        window = [c for _, c in scored[position - 4 : position]]
        mean = sum(window) / 4
        se = math.sqrt(sum((c - mean) ** 2 for c in window) / 4 / 4)
        expected.append(
            {"position": position, "row": scored[position - 1][0] - 5, "rows": 4, "estimate": mean, "std_error": se}
        )
    # all three close in the second call, at its rows 0, 2 and 6 (rows 5, 7 and 11 of the stream)
    assert [(w["position"], w["row"]) for w in windows] == [(4, 0), (6, 2), (8, 6)]
    assert windows == [{**e, "std_error": pytest.approx(e["std_error"], rel=1e-12)} for e in expected]
    assert estimator.estimate() == sum(c for _, c in scored[-4:]) / 4
    assert estimator.estimate("cumulative") == sum(c for _, c in scored) / len(scored)
    assert ExpectedCost(2, 1).estimate() is None
    (equal,) = ExpectedCost(2, 1).update(np.array([3.0, 3.0]))
    assert equal["std_error"] == 0.0 and equal["estimate"] == 3.0
    with warnings.catch_warnings():  # and without a RuntimeWarning in the worker's log
        warnings.simplefilter("error")
        (overflowed,) = ExpectedCost(2, 1).update(np.array([1e200, 3e200]))
        assert overflowed["estimate"] == 2e200 and overflowed["std_error"] is None
        costly = CostMetrics(2, 1)
        (window,) = costly.update(["v1", "v1"], np.array([1e200, 3e200]), np.array([math.nan, 1.0]))
        assert window["report"]["cost"] == 2e200 and window["report"]["cost_se"] is None
