"""The Prometheus collector: per-model series with a bounded label set."""

from __future__ import annotations

import errno
import socket
from dataclasses import replace

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamdrift.core.config import MonitorSettings
from streamdrift.runtime.exporter import OTHER, Health, ModelCollector, StatusView, serve, status_json
from streams import demo_messages, run_monitors


def scrape(monitors, cap: int) -> dict[str, list]:
    registry = CollectorRegistry()
    registry.register(ModelCollector(lambda: {m: x.summary() for m, x in monitors.items()}, cap))
    return {f.name: f.samples for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_models_over_the_cap_are_summed_under_other_and_counted():
    monitors, _ = run_monitors(demo_messages(12_000, seed=7, drift_at=1000), 1000, MonitorSettings())
    metrics = scrape(monitors, cap=2)
    events = {
        (s.labels["model_id"], s.labels["stream"]): s.value
        for s in metrics["streamdrift_events"]
        if s.name == "streamdrift_events_total"
    }
    # sorted ids: churn and credit-risk keep their label, fraud is summed under __other__
    assert events == {
        ("churn", "predictions"): 4000,
        ("churn", "feedback"): monitors["churn"].feedback_total,
        ("credit-risk", "predictions"): 4000,
        ("credit-risk", "feedback"): monitors["credit-risk"].feedback_total,
        (OTHER, "predictions"): 4000,
        (OTHER, "feedback"): monitors["fraud"].feedback_total,
    }
    assert sum(v for (_, stream), v in events.items() if stream == "predictions") == 12_000
    assert {s.labels["model_id"] for s in metrics["streamdrift_drift_score"]} == {"churn", "credit-risk"}
    assert metrics["streamdrift_models_unlabelled"][0].value == 1
    assert metrics["streamdrift_models"][0].value == 3
    quality = {(s.labels["feature"], s.labels["check"]) for s in metrics["streamdrift_data_quality_rate"]}
    assert ("income", "missing_rate") in quality and ("region", "new_category_rate") in quality
    # drift_impact's series: per feature, as the latest window explains the scores (labelled models only)
    impact = {(s.labels["model_id"], s.labels["feature"]): s.value for s in metrics["streamdrift_score_impact"]}
    assert {model for model, _ in impact} == {"churn", "credit-risk"}
    assert impact[("credit-risk", "debt_ratio")] == monitors["credit-risk"].features.last_impact["debt_ratio"]
    change = {s.labels["model_id"]: s.value for s in metrics["streamdrift_score_change"]}
    assert change["credit-risk"] == monitors["credit-risk"].features.last_score_change


def test_performance_metrics_match_an_offline_computation_over_the_same_graded_predictions():
    from sklearn.metrics import accuracy_score, f1_score

    from streamdrift.core.synthetic import generate

    monitors, _ = run_monitors(demo_messages(12_000, seed=7, drift_at=10**9), 1000, MonitorSettings())
    metrics = scrape(monitors, cap=10)
    cumulative = {
        (s.labels["model_id"], s.labels["metric"]): s.value
        for s in metrics["streamdrift_model_metric"]
        if s.labels["scope"] == "cumulative"
    }
    # offline: join every churn feedback to its prediction by event_id
    events = list(generate(12_000, seed=7, drift_at=10**9))
    predicted = {e["event_id"]: e["prediction"] for kind, e in events if kind == "prediction"}
    graded = [
        (e["label"], predicted[e["event_id"]]) for kind, e in events if kind == "feedback" and e["model_id"] == "churn"
    ]
    labels, predictions = zip(*graded)
    assert cumulative[("churn", "accuracy")] == accuracy_score(labels, predictions)
    assert abs(cumulative[("churn", "f1")] - f1_score(labels, predictions, zero_division=0)) < 1e-12
    pending = {(s.labels["model_id"], s.labels["side"]): s.value for s in metrics["streamdrift_join_pending"]}
    assert pending[("churn", "feedback")] == 0  # feedback follows its prediction: it never waits
    assert pending[("churn", "predictions")] == 4000 - len(graded)  # the unlabelled half waits (TTL: 7 days)


def test_the_collectors_own_text_is_what_prometheus_client_writes_byte_for_byte():
    """/metrics writes the per-model series itself (``exposition``, prefixes kept between scrapes):
    the same bytes as generate_latest over the same families, label values escaped alike."""
    monitors, _ = run_monitors(demo_messages(12_000, seed=7, drift_at=1000), 1000, MonitorSettings())
    odd = 'a "quoted"\\back\nslash é'  # a feature name may hold anything a JSON key can
    summaries = {m: x.summary() for m, x in monitors.items()}
    s = summaries["churn"]
    s.feature_scores[odd] = float("nan")
    s.quality[odd] = dict.fromkeys(
        ("missing_rate", "invalid_rate", "out_of_range_rate", "new_category_rate"), float("inf")
    )
    s.type_mismatches[odd] = 3
    collector = ModelCollector(lambda: summaries, 2)
    registry = CollectorRegistry()
    registry.register(collector)
    expected = generate_latest(registry)
    assert collector.exposition() == expected
    summaries["churn"] = replace(s, predictions=s.predictions + 1)  # a second scrape, from the kept prefixes
    assert collector.exposition() == generate_latest(registry) != expected
    parsed = {f.name: f.samples for f in text_string_to_metric_families(collector.exposition().decode())}
    assert any(x.labels.get("feature") == odd for x in parsed["streamdrift_type_mismatches"])


STATUS_KEYS = [  # a model's /status summary, as dashboards and `streamdrift status` read it
    "attribution_scores",
    "business",  # issue 23 item 4: cost and value; null for a model without them
    "concept_statistic",
    "drift_active",
    "drift_active_features",  # issue 22: per kind whose alarms are per feature, the features active
    "drift_events",
    "errors_total",
    "estimated_accuracy",
    "feature_scores",
    "feedback_total",
    "join",
    "label_scores",
    "labelled_total",
    "last_drift",
    "last_event_time",
    "output_scores",
    "performance",
    "predictions_total",
    "quality",
    "reference_accuracy",
    "reference_ready",
    "reference_source",
    "retrain_budget_remaining",
    "score_change",
    "score_impact",
    "segments",
    "task",
    "type_mismatches",
    "versions",
]


def test_status_json_writes_each_summary_as_the_dict_it_always_was():
    """/status serialises each model's typed summary through ``as_dict``: the same keys and values as the
    summary's attributes, keys sorted."""
    monitors, _ = run_monitors(demo_messages(12_000, seed=7, drift_at=1000), 1000, MonitorSettings())
    s = next(m.summary() for m in monitors.values() if m.last_drift is not None)
    body = orjson.loads(status_json({"ready": True, "partitions": {"0": {"models": {s.model_id: s}}}}))
    d = body["partitions"]["0"]["models"][s.model_id]
    assert sorted(d) == STATUS_KEYS
    assert (d["predictions_total"], d["feedback_total"], d["labelled_total"], d["errors_total"]) == (
        s.predictions,
        s.feedback,
        s.labelled,
        s.errors,
    )
    assert s.last_drift is not None
    assert d["last_drift"] == {
        "kind": s.last_drift.kind,
        "alert_id": s.last_drift.alert_id,
        "detected_at": s.last_drift.detected_at,
    }
    assert d["performance"]["window"]["accuracy"] == s.window_performance["accuracy"] == s.window_metrics["accuracy"]
    assert sorted(d["performance"]) == ["cumulative", "window"]
    assert d["drift_events"] == s.drift_events and d["join"] == s.join
    with pytest.raises(TypeError, match="not JSON serializable"):
        status_json({"x": object()})


def test_status_body_is_the_status_document_serialised_and_follows_each_publication():
    """``StatusView.status_body`` (what the worker serves) is ``status_json(status())`` byte for byte,
    before and after a publication, with ``ready`` and ``misrouted`` as they are at the request."""
    from types import SimpleNamespace

    monitors, _ = run_monitors(demo_messages(3_000, seed=7, drift_at=1000), 1000, MonitorSettings())
    health = Health()
    view = StatusView(health, min_interval_s=0.0)
    assert view.status_body() == status_json(view.status())
    engine = SimpleNamespace(offsets={"predictions": 3000}, monitors=dict(monitors))
    view.publish({0: SimpleNamespace(engine=engine), 3: SimpleNamespace(engine=engine)})
    first = view.status_body()
    assert first == status_json(view.status()) and len(orjson.loads(first)["partitions"]["3"]["models"]) == len(
        monitors
    )
    health.ready, view.misrouted = True, {"predictions": 2}  # read at the request, not cached
    assert view.status_body() == status_json(view.status()) != first
    engine.offsets = {"predictions": 3001}
    view.publish({0: SimpleNamespace(engine=engine)})
    assert view.status_body() == status_json(view.status())
    assert list(orjson.loads(view.status_body())["partitions"]) == ["0"]


def test_drift_active_is_one_per_model_and_kind_while_its_condition_lasts():
    """streamdrift_drift_active (issue 22): 1 from a windowed kind's drift event to its drift_resolved."""
    monitors, _ = run_monitors(demo_messages(12_000, seed=7, drift_at=1000), 1000, MonitorSettings())
    active = {
        (s.labels["model_id"], s.labels["kind"]): s.value for s in scrape(monitors, cap=10)["streamdrift_drift_active"]
    }
    expected = {(m, k): float(k in monitors[m].summary().drift_active) for m, k in active}
    assert active == expected and len(active) == 3 * 9  # every model, every kind (attribution_drift too), from 0
    assert 1.0 in active.values() and ("churn", "concept_drift") in active


def test_cost_and_value_are_model_metrics_and_per_version_metrics() -> None:
    """Issue 23 item 4: streamdrift_model_metric{metric="cost"|"value"|...} from the summary's business
    figures, and the window's means per version; a model without them exports none of these series."""
    from streamdrift.core.api import Monitor
    from streamdrift.core.config import ModelSettings

    settings = MonitorSettings(reference_size=100, window_size=100, subwindows=2)
    model = ModelSettings(cost_matrix={"0": {"0": 0.0, "1": 1.0}, "1": {"0": 4.0, "1": 0.0}}, cost_tolerance=1.0)
    monitor = Monitor("m", settings, model)
    events = []
    for i in range(300):
        label, prediction = i % 2, (i % 2 if i % 5 else 1 - i % 2)  # one in five wrong
        common = {"event_id": f"e{i}", "model_id": "m", "timestamp": 1_700_000_000 + i}
        events.append(
            {**common, "model_version": f"v{i % 2}", "features": {"x": i}, "prediction": prediction, "score": 0.5}
        )
        events.append({**common, "label": label, "value": float(i % 4)})
    monitor.observe(events)
    plain = Monitor("p", settings)
    plain.observe([{**e, "model_id": "p"} for e in events if "label" not in e])
    summaries = {"m": monitor.summary(), "p": plain.summary()}
    registry = CollectorRegistry()
    registry.register(ModelCollector(lambda: summaries, 10))
    metrics = {f.name: f.samples for f in text_string_to_metric_families(generate_latest(registry).decode())}
    got = {
        (s.labels["metric"], s.labels["scope"]): s.value
        for s in metrics["streamdrift_model_metric"]
        if s.labels["model_id"] == "m"
    }
    business = summaries["m"].business
    assert business is not None
    # rows 0..299, one in five wrong: i % 5 == 0, half of them missed positives (cost 4), half false alarms (1)
    assert got[("cost", "cumulative")] == (30 * 4 + 30 * 1) / 300 == business["cumulative"]["cost"]
    assert got[("cost_sum", "cumulative")] == 150 and got[("value_sum", "cumulative")] == 75 * (0 + 1 + 2 + 3)
    assert got[("value", "window")] == business["window"]["value"] == 1.5
    assert got[("expected_cost", "window")] == business["expected_cost"] and got[("reference_cost", "window")] == 0.5
    versions = {(s.labels["version"], s.labels["metric"]): s.value for s in metrics["streamdrift_version_metric"]}
    assert set(versions) == {("v0", "cost"), ("v0", "value"), ("v1", "cost"), ("v1", "value")}
    assert all(s.labels["model_id"] == "m" for s in metrics["streamdrift_version_metric"])
    assert not [s for s in metrics["streamdrift_model_metric"] if s.labels["model_id"] == "p"]


def test_a_port_in_use_is_the_bind_error_the_worker_reports_naming_metrics_port() -> None:
    """Binding a port another socket listens on raises the bind's OSError (the worker turns it into a ConfigError
    naming ``metrics_port``). Before, the server's cleanup of the failed bind raised an AttributeError instead
    (its threads' fields were set only after the bind), and the worker stopped on an "unexpected error"."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        with pytest.raises(OSError) as raised:
            serve("127.0.0.1", held.getsockname()[1], CollectorRegistry(), Health(), dict)
    assert raised.value.errno == errno.EADDRINUSE
