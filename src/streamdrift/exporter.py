"""Prometheus exposition and the worker's HTTP endpoints.

Per-model series are read from the monitors' own state at scrape time, so a
counter equals what the snapshot holds (it survives restarts), and the series
of a partition that moved to another worker disappear with it.

Label sets are bounded: the first ``max_models`` model ids (in sorted order)
get their own ``model_id`` label; the rest are summed under
``model_id="__other__"``, and their number is exported. Per-feature scores are
exported only for the labelled models.

Endpoints: ``/metrics`` (Prometheus text format), ``/healthz`` (the consume
loop is alive), ``/readyz`` (partitions assigned and restored), ``/status``
(a JSON summary per model).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamdrift.policy import KINDS

OTHER = "__other__"
QUALITY_CHECKS = ("missing_rate", "invalid_rate", "out_of_range_rate", "new_category_rate")
PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1", "macro_f1", "log_loss", "brier", "roc_auc", "ece",
                       "mae", "rmse", "r2", "mape")


class ModelCollector:
    """Collects per-model series from ``summaries()``: model_id -> ModelMonitor.summary()."""

    def __init__(self, summaries: Callable[[], dict[str, dict]], max_models: int):
        self.summaries = summaries
        self.max_models = max_models

    def collect(self) -> Iterable:
        models = self.summaries()
        ids = sorted(models)
        own_label, overflow = ids[: self.max_models], ids[self.max_models:]
        events = CounterMetricFamily("streamdrift_events", "Events consumed per model and stream",
                                     labels=["model_id", "stream"])
        drift = CounterMetricFamily("streamdrift_drift_events", "Drift events raised per model and kind",
                                    labels=["model_id", "kind"])
        scores = GaugeMetricFamily("streamdrift_drift_score", "Latest drift statistic (PSI) per feature",
                                   labels=["model_id", "kind", "feature"])
        mismatches = CounterMetricFamily("streamdrift_type_mismatches", "Feature values of the wrong type",
                                         labels=["model_id", "feature"])
        ready = GaugeMetricFamily("streamdrift_reference_ready", "1 once the model's reference is built",
                                  labels=["model_id"])
        last = GaugeMetricFamily("streamdrift_last_event_timestamp_seconds", "Latest event time seen per model",
                                 labels=["model_id"])
        quality = GaugeMetricFamily("streamdrift_data_quality_rate",
                                    "Share of the latest window's events per data-quality check and feature",
                                    labels=["model_id", "feature", "check"])
        labelled = CounterMetricFamily("streamdrift_labelled_events", "Feedback events that graded a prediction",
                                       labels=["model_id"])
        errors = CounterMetricFamily("streamdrift_prediction_errors", "Graded predictions that were wrong",
                                     labels=["model_id"])
        perf = GaugeMetricFamily("streamdrift_model_metric",
                                 "Performance of graded predictions over the sliding window or since start",
                                 labels=["model_id", "metric", "scope"])
        estimated = GaugeMetricFamily("streamdrift_estimated_accuracy",
                                      "Label-free accuracy estimate from scores (CBPE), latest window",
                                      labels=["model_id"])
        reference_acc = GaugeMetricFamily("streamdrift_reference_accuracy",
                                          "Accuracy the degradation test compares against", labels=["model_id"])
        join_pending = GaugeMetricFamily("streamdrift_join_pending", "Predictions or feedback waiting in the join",
                                         labels=["model_id", "side"])
        join_lost = CounterMetricFamily("streamdrift_join_unmatched",
                                        "Join records dropped: expired, evicted at a bound, or duplicates",
                                        labels=["model_id", "side", "reason"])
        version_acc = GaugeMetricFamily("streamdrift_version_accuracy", "Windowed accuracy per model version",
                                        labels=["model_id", "version"])
        fairness = GaugeMetricFamily("streamdrift_fairness_gap", "Gap between segments of the sensitive attribute",
                                     labels=["model_id", "attribute", "gap"])
        concept = GaugeMetricFamily("streamdrift_concept_statistic",
                                    "Concept-drift detector statistic on the error stream (CUSUM, in nats)",
                                    labels=["model_id"])
        other = {"predictions": 0, "feedback": 0}
        other_drift: dict[str, int] = {}
        for model_id in own_label:
            s = models[model_id]
            events.add_metric([model_id, "predictions"], s["predictions_total"])
            events.add_metric([model_id, "feedback"], s["feedback_total"])
            # every kind from 0, so the first drift event is an increase Prometheus can see
            for kind in KINDS:
                drift.add_metric([model_id, kind], s["drift_events"].get(kind, 0))
            for kind, key in (("data_drift", "feature_scores"), ("prediction_drift", "output_scores"),
                              ("label_drift", "label_scores")):
                for feature, value in sorted(s[key].items()):
                    scores.add_metric([model_id, kind, feature], value)
            for feature, n in sorted(s["type_mismatches"].items()):
                mismatches.add_metric([model_id, feature], n)
            ready.add_metric([model_id], float(s["reference_ready"]))
            last.add_metric([model_id], s["last_event_time"])
            for feature, rates in sorted(s["quality"].items()):
                for check in QUALITY_CHECKS:
                    quality.add_metric([model_id, feature, check], rates[check])
            labelled.add_metric([model_id], s["labelled_total"])
            errors.add_metric([model_id], s["errors_total"])
            concept.add_metric([model_id], s["concept_statistic"])
            for scope, report in s["performance"].items():
                for metric in PERFORMANCE_METRICS:
                    if report.get(metric) is not None:
                        perf.add_metric([model_id, metric, scope], report[metric])
            if s["estimated_accuracy"] is not None:
                estimated.add_metric([model_id], s["estimated_accuracy"])
            if s["reference_accuracy"] is not None:
                reference_acc.add_metric([model_id], s["reference_accuracy"])
            j = s["join"]
            for side in ("predictions", "feedback"):
                join_pending.add_metric([model_id, side], j[f"pending_{side}"])
                for reason in ("expired", "evicted", "duplicate"):
                    join_lost.add_metric([model_id, side, reason], j[f"{reason}_{side}"])
            for version, v in sorted(s["versions"].get("versions", {}).items()):
                if v.get("value") is not None:
                    version_acc.add_metric([model_id, version], v["value"])
            gaps = s["segments"].get("fairness") or {}
            for gap in ("demographic_parity_difference", "equal_opportunity_difference"):
                if gaps.get(gap) is not None:
                    fairness.add_metric([model_id, gaps["attribute"], gap], gaps[gap])
        for model_id in overflow:
            s = models[model_id]
            other["predictions"] += s["predictions_total"]
            other["feedback"] += s["feedback_total"]
            for kind, n in s["drift_events"].items():
                other_drift[kind] = other_drift.get(kind, 0) + n
        if overflow:
            for stream, n in other.items():
                events.add_metric([OTHER, stream], n)
            for kind, n in sorted(other_drift.items()):
                drift.add_metric([OTHER, kind], n)
        yield from (events, drift, scores, mismatches, ready, last, quality, labelled, errors, concept, perf,
                    estimated, reference_acc, join_pending, join_lost, version_acc, fairness)
        yield GaugeMetricFamily("streamdrift_models", "Models monitored by this worker", value=len(ids))
        yield GaugeMetricFamily("streamdrift_models_unlabelled",
                                f"Models aggregated under model_id={OTHER!r} (over metrics_max_models)",
                                value=len(overflow))


class Health:
    """What /healthz and /readyz answer. Wall-clock here is fine: it never touches state."""

    def __init__(self, stale_after_s: float = 60.0):
        self.stale_after_s = stale_after_s
        self.ready = False
        self.last_loop = time.monotonic()

    def beat(self) -> None:
        self.last_loop = time.monotonic()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_loop < self.stale_after_s


def serve(host: str, port: int, registry: CollectorRegistry, health: Health,
          status: Callable[[], dict]) -> ThreadingHTTPServer:
    """Start the HTTP server on a daemon thread; ``server.server_address`` has the bound port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200 if health.alive else 503, b"ok\n" if health.alive else b"stalled\n")
            elif path == "/readyz":
                self._send(200 if health.ready else 503, b"ready\n" if health.ready else b"not ready\n")
            elif path == "/status":
                self._send(200, orjson.dumps(status(), option=orjson.OPT_SORT_KEYS), "application/json")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes are not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
