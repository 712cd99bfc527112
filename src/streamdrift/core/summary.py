"""What a monitor knows of its model at one point of the stream, as one typed, frozen value.

`ModelMonitor.summary` makes it; the public API (`Monitor.summary`), the
Prometheus exporter and ``/status`` read it. ``/status`` and ``streamdrift
status --json`` publish `MonitorSummary.as_dict`, whose keys are the JSON
contract (``predictions_total``, ``performance.window``...), so renaming an
attribute here never changes what a dashboard or script reads.

Examples
--------
>>> from streamdrift.core.config import MonitorSettings
>>> from streamdrift.core.monitor import ModelMonitor
>>> s = ModelMonitor("m", MonitorSettings()).summary()
>>> s.predictions, s.last_drift, s.top_features, s.window_metrics
(0, None, (), {})
>>> d = s.as_dict()
>>> d["predictions_total"], d["performance"], d["last_drift"]
(0, {'window': {}, 'cumulative': {}}, None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from streamdrift.core.metrics.classification import label_metrics
from streamdrift.core.metrics.report_small import SMALL_CLASSES, label_metrics_small

TOP_FEATURES = 10  # features a summary ranks, and a drift event's top_features
# What a summary shows and how each figure is computed, as a number: a state cache keeps each model's summary
# as it was when written (``stored_summary``) and shows it until the model's first event, so a summary made
# by other code must not be shown as this code's. Bump it with any change to what ``summary()`` shows for the
# same state (a field added, removed, or computed otherwise); tests/unit/test_state_cache.py pins it.
SUMMARY_VERSION = 1


@dataclass(frozen=True, slots=True)
class LastDrift:
    """The latest drift event: its kind, id, and the event time of the event that triggered it, as written."""

    kind: str
    alert_id: str
    detected_at: float | str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "alert_id": self.alert_id, "detected_at": self.detected_at}


@dataclass(frozen=True, slots=True)
class FeatureScore:
    """A feature and its PSI, latest window against the reference."""

    feature: str
    psi: float


@dataclass(frozen=True, slots=True)
class MonitorSummary:
    """What a monitor knows of its model, at one point of the stream.

    Attributes
    ----------
    model_id
        The model watched.
    predictions, feedback
        Events of each kind monitored (rejected ones aside).
    labelled, errors
        Predictions graded by feedback (joined, or carried by the feedback), and the wrong ones.
    rejected
        Events the public API's `Monitor` rejected (another model's, or breaking the contract); 0 in a
        worker, whose rejected records go to the dead-letter topic and are counted there.
    reference_ready, reference_source
        Whether the reference is complete, and what it is: ``"profile"`` or ``"warm-up"``.
    task
        ``"classification"``, ``"regression"``, or None until the first graded prediction.
    drift_events
        Drift events raised, by kind.
    last_drift
        The latest drift event, or None.
    feature_scores, output_scores, label_scores
        The latest window's PSI per feature, per model output (prediction, score) and of the labels.
    type_mismatches
        Feature values of the wrong type, per feature.
    quality
        The latest window's data-quality rates: feature -> rate name -> rate.
    concept_statistic
        The concept-drift detector's statistic on the error stream.
    window_performance, cumulative_performance
        The performance reports of the latest full window and since the start (empty before the first
        graded predictions): accuracy, f1, roc_auc, ..., the confusion matrix; or mae, rmse, ...
    estimated_accuracy
        Accuracy estimated from the scores (CBPE) over the latest window, None without scores.
    reference_accuracy
        The accuracy degradation is measured against (classification), None before it is known.
    join
        The feedback join's counters: pending, expired, evicted and duplicate records per side.
    versions
        The version comparison over the window (classification): each version's rows and accuracy.
    segments
        Metrics per segment and the fairness gaps, with ``segment_attributes``.
    last_event_time
        The latest event time seen, epoch seconds.
    drift_active
        Windowed kinds of drift whose condition is ongoing: fired and not yet resolved (a
        ``drift_resolved`` event ends it). Never concept_drift, whose detector restarts at each detection.
    drift_active_features
        Per kind whose alarms are per feature (data_drift), the features whose condition is ongoing, by name.
    retrain_budget_remaining
        ``retrain`` actions the model's retrain budget still allows in the period that ends at its latest
        event time; None without a budget.
    business
        Cost and value of graded predictions (``core/metrics/cost.py``): ``window`` and ``cumulative``
        reports (rows, costed, cost, cost_sum, valued, value, value_sum, per version), ``expected_cost``
        (from scores, latest window) and ``reference_cost`` (what the cost test compares against); None
        for a model that declares no cost and has had no value yet.
    attribution_scores
        The latest window's PSI per feature of its predictions' absolute attributions (attribution_drift).
    score_impact, score_change
        The latest features' window: the change in the mean score each feature's shift explains, and the
        observed change (None: not known), as a prediction_drift event's ``drift_impact`` has them.
    """

    model_id: str
    predictions: int
    feedback: int
    labelled: int
    errors: int
    rejected: int
    reference_ready: bool
    reference_source: str
    task: str | None
    drift_events: dict[str, int]
    last_drift: LastDrift | None
    feature_scores: dict[str, float]
    output_scores: dict[str, float]
    label_scores: dict[str, float]
    type_mismatches: dict[str, int]
    quality: dict[str, dict[str, float]]
    concept_statistic: float
    window_performance: dict[str, Any]
    cumulative_performance: dict[str, Any]
    estimated_accuracy: float | None
    reference_accuracy: float | None
    join: dict[str, int]
    versions: dict[str, Any]
    segments: dict[str, Any]
    last_event_time: float
    drift_active: frozenset[str] = frozenset()
    drift_active_features: dict[str, list[str]] = field(default_factory=dict)
    retrain_budget_remaining: int | None = None
    business: dict[str, Any] | None = None
    score_impact: dict[str, float] = field(default_factory=dict)
    attribution_scores: dict[str, float] = field(default_factory=dict)
    score_change: float | None = None

    @property
    def top_features(self) -> tuple[FeatureScore, ...]:
        """The most drifted features of the latest window (at most 10), by PSI, highest first."""
        ranked = sorted(self.feature_scores.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_FEATURES]
        return tuple(FeatureScore(name, psi) for name, psi in ranked)

    @property
    def window_metrics(self) -> dict[str, float]:
        """The latest full window's metrics with a number as value (accuracy, f1, roc_auc, ... or mae,
        rmse, ...); empty before the first window of graded predictions."""
        return {k: v for k, v in self.window_performance.items() if type(v) in (int, float)}

    def as_dict(self) -> dict[str, Any]:
        """The summary as ``/status`` publishes it per model (the model id is its key there; ``rejected``
        is the public API's alone)."""
        return {
            "predictions_total": self.predictions,
            "feedback_total": self.feedback,
            "labelled_total": self.labelled,
            "errors_total": self.errors,
            "reference_ready": self.reference_ready,
            "reference_source": self.reference_source,
            "drift_events": dict(self.drift_events),
            "last_drift": self.last_drift.as_dict() if self.last_drift is not None else None,
            "feature_scores": self.feature_scores,
            "output_scores": self.output_scores,
            "label_scores": self.label_scores,
            "type_mismatches": self.type_mismatches,
            "quality": self.quality,
            "concept_statistic": self.concept_statistic,
            "task": self.task,
            "performance": {"window": self.window_performance, "cumulative": self.cumulative_performance},
            "estimated_accuracy": self.estimated_accuracy,
            "reference_accuracy": self.reference_accuracy,
            "join": self.join,
            "versions": self.versions,
            "segments": self.segments,
            "last_event_time": self.last_event_time,
            "drift_active": sorted(self.drift_active),
            "drift_active_features": self.drift_active_features,
            "retrain_budget_remaining": self.retrain_budget_remaining,
            "business": self.business,
            "score_impact": self.score_impact,
            "attribution_scores": self.attribution_scores,
            "score_change": self.score_change,
        }


def stored_summary(summary: MonitorSummary) -> bytes | None:
    """``summary`` as bytes that `summary_from_stored` gives back equal, or None where JSON cannot carry it
    exactly (a NaN or an infinity, which JSON has no number for; a tuple; a key that is not a string): a
    model whose summary cannot be stored is built at restore rather than shown with a different summary.
    Keys sorted, as a state-topic record's header has them (``summary_doc``): the same summary, the same bytes."""
    doc = _doc(summary)
    try:
        data = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return data if summary_from_stored(data) == summary else None


def summary_doc(summary: MonitorSummary) -> dict[str, Any] | None:
    """``summary`` as a JSON object (plain JSON values) that `summary_from_doc` gives back equal, or None where
    JSON cannot carry it exactly (as `stored_summary`): what a state-topic record's header carries."""
    try:
        doc: dict[str, Any] = orjson.loads(orjson.dumps(_doc(summary)))
    except orjson.JSONEncodeError:
        return None
    return doc if summary_from_doc(doc) == summary else None


def _doc(summary: MonitorSummary) -> dict[str, Any]:
    d = summary.as_dict()
    d["performance"] = {scope: _stored_report(report) for scope, report in d["performance"].items()}
    return {
        **d,
        "model_id": summary.model_id,
        "rejected": summary.rejected,
        "summary_version": SUMMARY_VERSION,
    }


def _derived(report: dict[str, Any]) -> dict[str, Any] | None:
    """What a classification report derives from its confusion matrix (``metrics.classification.report``):
    its rows, accuracy, precision, recall, F1 and their macro and per-class forms; None for another report."""
    confusion = report.get("confusion")
    if not isinstance(confusion, dict):
        return None
    labels = confusion["labels"]
    try:  # read from a store: a matrix that is not one is another code's summary (a ValueError, as its fields)
        matrix = np.array(confusion["matrix"], dtype=np.int64)
    except OverflowError:
        raise ValueError("a stored confusion matrix has counts past int64") from None
    if not isinstance(labels, list) or matrix.shape != (len(labels), len(labels)):
        raise ValueError("a stored confusion matrix is not square over its labels")
    positive_label = report.get("positive_label")
    positive = labels.index(positive_label) if positive_label in labels else None
    # as ``report`` makes them: in plain Python for a few classes (the same numbers), with numpy past those
    figures = (
        label_metrics_small(matrix.tolist(), labels, positive)
        if len(labels) <= SMALL_CLASSES
        else label_metrics(matrix, labels, positive)
    )
    return {"rows": int(matrix.sum()), **figures}


def _stored_report(report: dict[str, Any]) -> dict[str, Any]:
    """A performance report as a stored summary carries it: without the figures it derives from its confusion
    matrix, 17-digit floats that were a tenth of a warm-up model's state-topic record (issue 16), where they are
    those (`_read_report` derives them again; `summary_doc` checks the summary read back is the same)."""
    derived = _derived(report)
    if derived is None or any(report.get(k) != v for k, v in derived.items()):
        return report
    return {k: v for k, v in report.items() if k not in derived}


def _read_report(stored: dict[str, Any]) -> dict[str, Any]:
    """The report `_stored_report` stored, its derived figures made again, in the report's order."""
    if not isinstance(stored, dict):  # not a report of ours: shown as it was stored, as before
        return stored
    derived = _derived(stored) if "rows" not in stored else None
    if derived is None:
        return stored
    return {"scope": stored["scope"], **derived, **{k: v for k, v in stored.items() if k != "scope"}}


def summary_from_stored(data: bytes) -> MonitorSummary:
    """The summary `stored_summary` wrote (JSON; nothing executed). ``ValueError`` where it was written by code
    whose summaries differ (another ``SUMMARY_VERSION``, or none: before there was one)."""
    return summary_from_doc(orjson.loads(data))


def summary_from_doc(d: Any) -> MonitorSummary:
    """The summary of a JSON object `summary_doc` made (or `stored_summary` wrote, parsed). ``ValueError`` where
    it was written by code whose summaries differ (another ``SUMMARY_VERSION``, or none); ``KeyError`` or
    ``TypeError`` where it has other fields."""
    if d.get("summary_version") != SUMMARY_VERSION:
        raise ValueError(f"a summary of version {d.get('summary_version')!r}; this streamdrift shows {SUMMARY_VERSION}")
    last = d["last_drift"]
    return MonitorSummary(
        model_id=d["model_id"],
        predictions=d["predictions_total"],
        feedback=d["feedback_total"],
        labelled=d["labelled_total"],
        errors=d["errors_total"],
        rejected=d["rejected"],
        reference_ready=d["reference_ready"],
        reference_source=d["reference_source"],
        task=d["task"],
        drift_events=d["drift_events"],
        last_drift=LastDrift(last["kind"], last["alert_id"], last["detected_at"]) if last is not None else None,
        feature_scores=d["feature_scores"],
        output_scores=d["output_scores"],
        label_scores=d["label_scores"],
        type_mismatches=d["type_mismatches"],
        quality=d["quality"],
        concept_statistic=d["concept_statistic"],
        window_performance=_read_report(d["performance"]["window"]),
        cumulative_performance=_read_report(d["performance"]["cumulative"]),
        estimated_accuracy=d["estimated_accuracy"],
        reference_accuracy=d["reference_accuracy"],
        join=d["join"],
        versions=d["versions"],
        segments=d["segments"],
        last_event_time=d["last_event_time"],
        drift_active=frozenset(d["drift_active"]),
        drift_active_features=d["drift_active_features"],
        retrain_budget_remaining=d["retrain_budget_remaining"],
        business=d["business"],
        score_impact=d["score_impact"],
        attribution_scores=d["attribution_scores"],
        score_change=d["score_change"],
    )
