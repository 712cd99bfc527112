"""ModelMonitor: everything streamdrift knows about one model.

A monitor consumes whole columnar batches (``records.PredictionBatch`` and
``records.FeedbackBatch``) and returns drift events. It holds three binned
sketches against a warm-up reference (features, model outputs, labels), event
counters, and the alert policy. Its state is plain data (``state()``), so a
snapshot is JSON and restoring one executes nothing.

The detectors here are the binned-PSI sketches of ``sketch``; calibrated
thresholds, concept-drift detectors and performance metrics plug in at
``observe_predictions`` / ``observe_feedback``.
"""

from __future__ import annotations

import numpy as np

from streamdrift.policy import AlertPolicy, action_for, drift_event, rfc3339
from streamdrift.records import FeedbackBatch, PredictionBatch
from streamdrift.settings import MonitorSettings
from streamdrift.sketch import StreamSketch

TOP_FEATURES = 10


class ModelMonitor:
    """Per-model state: sketches, counters and alert policy.

    Parameters
    ----------
    model_id
        The model watched.
    settings
        Detection settings shared by all models.
    """

    def __init__(self, model_id: str, settings: MonitorSettings):
        self.model_id = model_id
        self.settings = settings
        self._reset()

    def _sketch(self, max_columns: int) -> StreamSketch:
        s = self.settings
        return StreamSketch(s.reference_size, s.window_size, s.subwindows, s.bins, s.max_categories, max_columns)

    def _reset(self) -> None:
        self.predictions_total = 0
        self.feedback_total = 0
        self.last_version: str | None = None
        self.last_event_time = 0.0
        self.drift_events: dict[str, int] = {}
        self.features = self._sketch(self.settings.max_features)
        self.outputs = self._sketch(2)
        self.labels = self._sketch(1)
        self.policy = AlertPolicy(self.settings.cooldown_events)

    def observe_predictions(self, batch: PredictionBatch) -> list[dict]:
        self.predictions_total += len(batch)
        self.last_version = batch.model_versions[-1]
        self.last_event_time = max(self.last_event_time, float(batch.timestamps.max()))
        events = []
        for scored in self.features.update(batch.features, batch.offsets, batch.timestamps):
            events += self._judge("data_drift", scored, batch)
        outputs = {"prediction": batch.predictions}
        if not np.isnan(batch.scores).all():
            outputs["score"] = batch.scores.tolist()  # NaN bins as missing
        for scored in self.outputs.update(outputs, batch.offsets, batch.timestamps):
            events += self._judge("prediction_drift", scored, batch)
        return events

    def observe_feedback(self, batch: FeedbackBatch) -> list[dict]:
        self.feedback_total += len(batch)
        self.last_event_time = max(self.last_event_time, float(batch.timestamps.max()))
        events = []
        for scored in self.labels.update({"label": batch.labels}, batch.offsets, batch.timestamps):
            events += self._judge("label_drift", scored, batch)
        return events

    def _judge(self, kind: str, scored: dict, batch: PredictionBatch | FeedbackBatch) -> list[dict]:
        scores = scored["scores"]
        if not scores:
            return []
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        feature, statistic = ranked[0]
        threshold = self.settings.psi_threshold
        if not self.policy.decide(kind, statistic, threshold, scored["position"]):
            return []
        self.drift_events[kind] = self.drift_events.get(kind, 0) + 1
        window = dict(scored["window"])
        window["start_time"] = rfc3339(window["start_time"])
        window["end_time"] = rfc3339(window["end_time"])
        row = int(np.searchsorted(batch.offsets, window["end_offset"]))
        return [drift_event(
            model_id=self.model_id, model_version=batch.model_versions[row], kind=kind, detector="psi",
            feature=feature, statistic=statistic, threshold=threshold, p_value=None, window=window,
            partition=batch.partition,
            top_features=[{"feature": f, "score": s} for f, s in ranked[:TOP_FEATURES]],
            action=action_for(kind, feature), detected_at=window["end_time"],
        )]

    def summary(self) -> dict:
        """What the exporter and `status` show: counters and the latest scores."""
        return {
            "predictions_total": self.predictions_total,
            "feedback_total": self.feedback_total,
            "reference_ready": self.features.ready,
            "drift_events": dict(self.drift_events),
            "feature_scores": self.features.last_scores,  # replaced, never mutated: no copy needed
            "output_scores": self.outputs.last_scores,
            "label_scores": self.labels.last_scores,
            "type_mismatches": dict(self.features.type_mismatches),
            "last_event_time": self.last_event_time,
        }

    def state(self) -> dict:
        return {
            "predictions_total": self.predictions_total, "feedback_total": self.feedback_total,
            "last_version": self.last_version, "last_event_time": self.last_event_time,
            "drift_events": self.drift_events, "features": self.features.state(), "outputs": self.outputs.state(), "labels": self.labels.state(),
            "policy": self.policy.state(),
        }

    @classmethod
    def from_state(cls, model_id: str, settings: MonitorSettings, state: dict) -> "ModelMonitor":
        monitor = cls(model_id, settings)
        monitor.predictions_total = state["predictions_total"]
        monitor.feedback_total = state["feedback_total"]
        monitor.last_version = state["last_version"]
        monitor.last_event_time = state["last_event_time"]
        monitor.drift_events = dict(state["drift_events"])
        monitor.features.load_state(state["features"])
        monitor.outputs.load_state(state["outputs"])
        monitor.labels.load_state(state["labels"])
        monitor.policy.load_state(state["policy"])
        return monitor
