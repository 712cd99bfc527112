"""The public Python API: watch one model from plain Python objects, no Kafka.

`Monitor` is a thin facade over what the worker runs. Each event (a dict
shaped like ``schemas/prediction.schema.json`` or ``schemas/feedback.schema.json``)
is encoded as JSON and goes through the real decoder (``decode``), in runs of
the same kind, then through the model's `ModelMonitor`: validation, detection
and drift events are exactly the worker's. Positions play the part of Kafka
offsets: the ``n``-th prediction given to a monitor has offset ``n - 1`` on
partition 0 of the predictions stream (feedback counts its own), rejected
events included, so drift events name the events that triggered them and
their ``alert_id`` is the one a worker fed the same records would give.

Rules
-----
- An event with a ``label`` field is feedback; any other is a prediction.
- An event of another model, or one that breaks the contract, is rejected with
  a reason (`Monitor.rejected`), counted, and takes its position all the same.
- Drift events are dicts as published on the alerts topic, without
  ``emitted_at`` (the publisher's wall clock; nothing else depends on it).
- Values are written as orjson writes them: NaN and infinities become null
  (a missing feature value; a null ``score`` is rejected), numpy scalars their
  numbers.
- State depends only on the events and their order, never on how they are
  split between calls to `Monitor.observe`. `Monitor.save` writes it with the
  snapshot codec (``state``); `Monitor.restore` continues exactly where it was.

Examples
--------
>>> from streamdrift.core.synthetic import generate
>>> settings = MonitorSettings(reference_size=500, window_size=250, subwindows=5)
>>> stream = [e for _, e in generate(3000, seed=3, drift_at=500) if e["model_id"] == "credit-risk"]
>>> monitor = Monitor("credit-risk", settings)
>>> drift = monitor.observe(stream[:1000])
>>> restored = Monitor.restore(monitor.save())
>>> drift += restored.observe(stream[1000:] + [{"model_id": "churn"}])
>>> [(e["kind"], e["feature"], e["window"]["end_offset"]) for e in drift]
[('data_drift', 'debt_ratio', 749), ('prediction_drift', 'score', 749)]
>>> restored.rejected
[Rejection(kind='prediction', offset=1000, reason="model_id 'churn' is not this monitor's model ('credit-risk')")]
>>> summary = restored.summary()
>>> summary.predictions, summary.labelled, summary.rejected, summary.drift_events
(1000, 428, 1, {'data_drift': 1, 'prediction_drift': 1})
>>> [(f.feature, round(f.psi, 2)) for f in summary.top_features[:3]]
[('debt_ratio', 1.79), ('income', 0.63), ('employment', 0.18)]
>>> summary.window_metrics["accuracy"], summary.reference_accuracy
(0.632, 0.704)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from streamdrift.core import state as codec
from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.decode import MODEL_ID, MODEL_ID_PATTERN, OTHER_MODELS, decode_feedback, decode_predictions
from streamdrift.core.errors import SnapshotError
from streamdrift.core.monitor import ModelMonitor, monitor_factory
from streamdrift.core.records import RawMessage, Rejected
from streamdrift.core.summary import FeatureScore, LastDrift, MonitorSummary

__all__ = ["FeatureScore", "LastDrift", "Monitor", "MonitorSummary", "Rejection"]

FORMAT = "streamdrift-monitor"
VERSION = 1
PREDICTIONS, FEEDBACK = "predictions", "feedback"  # the streams' names, as drift events count their offsets
RUN_SIZE = 1000  # events decoded at once: bounds memory on a long iterable; the state does not depend on it
MAX_REJECTIONS = 1000  # the latest rejections kept with their reason; all are counted

Kind = Literal["prediction", "feedback"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that was not monitored: its kind, its position among the events of that kind, and why."""

    kind: Kind
    offset: int
    reason: str


class Monitor:
    """Drift detection for one model, fed with events as Python dicts.

    Parameters
    ----------
    model_id
        The model watched; events of other models are rejected.
    settings
        Detection settings (``[monitor]`` of the worker's configuration); the defaults if None.
    model
        This model's own settings (``[models.<id>]``): reference profile, important features,
        task, positive class, segments, retraining schedule; the defaults if None.
    """

    def __init__(self, model_id: str, settings: MonitorSettings | None = None, model: ModelSettings | None = None):
        if MODEL_ID.fullmatch(model_id) is None:  # the contract's pattern: no event could ever match
            raise ValueError(f"model_id {model_id!r} must match ^{MODEL_ID_PATTERN}$ and not be {OTHER_MODELS!r}")
        self.model_id = model_id
        self.settings = settings if settings is not None else MonitorSettings()
        self.model = model if model is not None else ModelSettings()
        self._make = monitor_factory(self.settings, {model_id: self.model})  # reads the profile, if any, once
        self._monitor: ModelMonitor = self._make(model_id)
        self._offsets = {PREDICTIONS: 0, FEEDBACK: 0}  # the next position of each stream
        self._rejected_total = 0
        self.rejected: list[Rejection] = []  # the latest MAX_REJECTIONS, in the order of the events

    # -- input --------------------------------------------------------------------------------

    def observe(self, events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Monitor ``events`` in order; the drift events they raised, in the order raised."""
        drift: list[dict[str, Any]] = []
        run: list[RawMessage] = []  # consecutive accepted events of one kind, decoded together
        arrival: dict[int, int] = {}  # offset of each event of the run -> its index in ``events``
        found: list[tuple[int, Rejection]] = []  # (index, rejection) made here since the run began
        for index, event in enumerate(events):
            message = self._message(event)
            if isinstance(message, Rejection):
                found.append((index, message))
                continue
            if run and (message.topic != run[0].topic or len(run) == RUN_SIZE):
                drift += self._feed(run, arrival, found)
                run, arrival, found = [], {}, []
            run.append(message)
            arrival[message.offset] = index
        drift += self._feed(run, arrival, found)
        return drift

    def _message(self, event: Mapping[str, Any]) -> RawMessage | Rejection:
        """``event`` as the record a producer would have written, or why it is rejected before decoding."""
        topic = FEEDBACK if isinstance(event, Mapping) and "label" in event else PREDICTIONS
        offset = self._offsets[topic]
        self._offsets[topic] = offset + 1
        kind: Kind = "feedback" if topic == FEEDBACK else "prediction"
        if not isinstance(event, Mapping):
            return Rejection(kind, offset, f"an event must be a dict, got {type(event).__name__}")
        model_id = event.get("model_id")
        # a model_id that is not a string is the decoder's to name
        if isinstance(model_id, str) and model_id != self.model_id:
            return Rejection(kind, offset, f"model_id {model_id!r} is not this monitor's model ({self.model_id!r})")
        try:
            value = orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:  # orjson.JSONEncodeError: a value JSON cannot hold
            return Rejection(kind, offset, f"not JSON: {exc}")
        return RawMessage(topic, 0, offset, None, value)

    def _feed(
        self, run: list[RawMessage], arrival: dict[int, int], found: list[tuple[int, Rejection]]
    ) -> list[dict[str, Any]]:
        """Decode a run of one kind as the worker decodes a poll and monitor what passes; record the
        rejections, the decoder's and ``found``, in the order of the events."""
        drift: list[dict[str, Any]] = []
        rejected: list[Rejected] = []
        # one model's batches (other models' events were rejected before), consecutive where they bring more
        # feature names than one batch holds (``decode._runs_within_names``)
        if run and run[0].topic == PREDICTIONS:
            predictions, rejected = decode_predictions(run)
            for prediction_batch in predictions:
                drift += self._monitor.observe_predictions(prediction_batch)
        elif run:
            feedback, rejected = decode_feedback(run)
            for feedback_batch in feedback:
                drift += self._monitor.observe_feedback(feedback_batch)
        kind: Kind = "feedback" if run and run[0].topic == FEEDBACK else "prediction"
        found = found + [(arrival[r.message.offset], Rejection(kind, r.message.offset, r.reason)) for r in rejected]
        for _, rejection in sorted(found, key=lambda item: item[0]):
            self.rejected.append(rejection)
        self._rejected_total += len(found)
        del self.rejected[:-MAX_REJECTIONS]
        return drift

    # -- views ----------------------------------------------------------------------------------

    def summary(self) -> MonitorSummary:
        """Counters, drift so far, the latest window's scores and metrics: the caller's own copy (the monitor
        shares its summary between its readers until its next batch, and its scores with its sketches)."""
        return copy.deepcopy(replace(self._monitor.summary(), rejected=self._rejected_total))

    # -- state ----------------------------------------------------------------------------------

    def save(self) -> bytes:
        """The monitor's whole state as bytes (names, counts and statistics, and the join's waiting
        predictions); equal states give equal bytes. `restore` reads it back."""
        return codec.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "model_id": self.model_id,
                "settings": self.settings.model_dump(mode="json"),
                "model": self.model.model_dump(mode="json"),
                "offsets": dict(self._offsets),
                "rejected_total": self._rejected_total,
                "state": self._monitor.state(),
            }
        )

    @classmethod
    def restore(
        cls, data: bytes, settings: MonitorSettings | None = None, model: ModelSettings | None = None
    ) -> Monitor:
        """A monitor that continues exactly where the one that wrote ``data`` (`save`) was.

        ``settings`` default to the saved ones, and must equal them if given (a state does not fit
        other detection settings); ``model`` defaults to the saved model settings.
        The latest rejections are not saved, only their count.
        """
        try:
            tree = codec.loads(data)
            if (tree.get("format"), tree.get("version")) != (FORMAT, VERSION):
                raise ValueError(f"format {tree.get('format')!r} version {tree.get('version')!r}")
            saved = MonitorSettings.model_validate(tree["settings"])
            saved_model = ModelSettings.model_validate(tree["model"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SnapshotError(
                f"not a state written by Monitor.save of {FORMAT} version {VERSION} ({exc}); "
                "start a new Monitor instead"
            ) from None
        # compared as values, not by fingerprint: a default written as 1_000_000 comes back as 1000000.0
        if settings is not None and settings != saved:
            raise SnapshotError(
                "the state was saved under other detection settings and would not match them: "
                "restore it with settings=None (the saved ones), or start a new Monitor"
            )
        monitor = cls(tree["model_id"], settings or saved, model or saved_model)
        monitor._monitor = monitor._make(monitor.model_id, tree["state"])
        monitor._offsets = dict(tree["offsets"])
        monitor._rejected_total = tree["rejected_total"]
        return monitor

    def __repr__(self) -> str:
        counts = f"{self._offsets[PREDICTIONS]} predictions, {self._offsets[FEEDBACK]} feedback"
        return f"Monitor({self.model_id!r}: {counts} observed, {self._rejected_total} rejected)"
