"""ModelMonitor: everything streamdrift knows about one model.

How a batch becomes drift events: each detector (a sketch's windows, the degradation, cost and version
tests, the concept detector, the schedule) says what it found as a ``finding.Finding``, a windowed test's
going through the policy first (``_decide``: fire, resolve or nothing; then ``_publish``), and ``_event`` is
the one place a finding becomes a drift event. One pass over the batch's events in stream order
(``retrain_fields.RetrainFields``) then spends the retrain budget and gives ``retrain`` events their training
and reference windows. The business metrics and their tests (``business.BusinessMetrics``) and the
monitor's state codec (``monitor_state``) are modules of their own, so this one holds the model's detectors
and the glue from batches to findings.

A monitor consumes whole columnar batches (``records.PredictionBatch`` and
``records.FeedbackBatch``) and returns drift events. It holds

- three binned sketches against a reference (``sketch``): the features (data
  drift and data quality), the model's outputs (prediction drift) and the
  labels (label drift);
- the feedback join (``join``) and, for the graded predictions it yields,
  windowed and cumulative performance metrics, the degradation test, the
  version comparison (``performance``) and a concept-drift detector on the
  error stream (``concept``);
- the business metrics (``business``), event counters and the alert policy (``policy``).

Its state is plain data and numpy arrays of numbers (``state()``, ``monitor_state``), so
restoring a snapshot executes nothing.

Calibration
-----------
``false_alarm_run_length`` (ARL) is the expected number of events between
false alarms for the whole model. It is shared equally by the test families
(data, prediction, label and concept drift), then, within a family, by its
columns (Bonferroni). A family tests every ``window_size / subwindows``
events, so a column's chi-square p-value must fall below
``slot / (ARL × families × columns)``. Overlapping windows make successive
tests positively correlated, which only makes the bound more conservative.
The CUSUM gets a run length of ARL × families.

A new model version
-------------------
A retrained model scores differently, and that is no drift: what the model
itself produces starts its references again with a version it has not
produced before. The outputs' sketch (prediction drift) learns its reference
from the first prediction of such a version and the next
``reference_size - 1`` (then a ``rebaselined`` event names the version); the
concept detector learns its reference error rate again from the first graded
prediction of such a version. "Not before": not among the latest
``max_versions`` versions of that stream (predictions, graded predictions),
and not within its first reference (``reference_size`` predictions,
``concept_warmup`` graded ones), which every version in it is part of (an A/B
test from the start). The inputs and labels keep their references: they are
the world's, not the model's, and a retrained model is expected to meet the
same world. Going back to a version served before starts nothing.

Multivariate drift (``multivariate``, off by default) tests the same input rows
as data drift, so it takes half of the data family's share: the marginal
tests' p-values must then fall below ``slot / (ARL × families × 2 × columns)``
and each pair's below ``slot / (ARL × families × 2 × pairs)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import orjson
from numpy.typing import NDArray

from streamdrift.core import monitor_state, reference
from streamdrift.core.attribution import AbsoluteMeans
from streamdrift.core.business import BusinessMetrics
from streamdrift.core.concept import ConceptDetector, make_detector
from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.finding import Finding, Watched, degradation_watch
from streamdrift.core.join import Joined
from streamdrift.core.join_bulk import BulkFeedbackJoin
from streamdrift.core.metrics import (
    CBPE,
    ClassificationMetrics,
    DegradationTest,
    RegressionMetrics,
    SegmentMetrics,
    VersionComparison,
    infer_task,
    label_keys,
)
from streamdrift.core.metrics.cost import matrix_costs
from streamdrift.core.metrics.regression import counted_rows
from streamdrift.core.multivariate import CorrelationDrift, WindowScore
from streamdrift.core.policy import (
    ALARM_KIND,
    FEATURED,
    NEWS,
    REBASELINED,
    RESOLVED,
    AlertPolicy,
    RetrainLedger,
    action_for,
    alarm_key,
    alarm_of,
    drift_event,
    rfc3339,
)
from streamdrift.core.records import FeatureColumn, FeedbackBatch, PredictionBatch
from streamdrift.core.retrain_fields import RetrainFields
from streamdrift.core.sketch import NO_VERSION, OTHER_VERSION, StreamSketch
from streamdrift.core.stats import chi2_critical, normal_critical
from streamdrift.core.summary import TOP_FEATURES, LastDrift, MonitorSummary
from streamdrift.core.warmup import WarmupColumn

FAMILIES = 4  # data, prediction, label and concept drift share the false-alarm budget
MULTIVARIATE = "multivariate_drift"
TOP_PAIRS = 5  # pairs a multivariate_drift event details
STAT_NAMES = ("psi", "js", "chi2", "p_value", "ks", "wasserstein")
QUALITY_RATES = ("missing_rate", "missing_rate_ref", "invalid_rate", "out_of_range_rate", "new_category_rate")
QUALITY_CHECKS = (  # (detector name, rate key, settings bound, subtract the reference's rate)
    ("missing_rate", "missing_rate", "max_missing_rate_increase", True),
    ("invalid_rate", "invalid_rate", "max_invalid_rate", False),
    ("out_of_range_rate", "out_of_range_rate", "max_out_of_range_rate", False),
    ("new_category_rate", "new_category_rate", "max_new_category_rate", False),
)


class Decision(NamedTuple):
    """The policy's decision on a windowed alarm: ``verdict`` ``"fire"`` or ``"resolve"``; ``firing``, the
    alert_id of the event that opened the alarm's active condition (None if unknown)."""

    verdict: str
    alarm: str
    firing: str | None


def _round(x: float) -> float | None:
    return None if x != x else float(f"{x:.6g}")


def _stream(batch: PredictionBatch | FeedbackBatch) -> str:
    """The stream a batch came from, as drift events name it (``details.window_stream``)."""
    return "predictions" if isinstance(batch, PredictionBatch) else "feedback"


def _version_key(version: str | None) -> str:
    """A model version as windows count it: a prediction without one is counted as ``__none__``."""
    return NO_VERSION if version is None else str(version)


def _first_of_new(
    versions: list, seen: list[str], before: int, settings: MonitorSettings, first_reference: int | None = None
) -> list[tuple[int, str]]:
    """(index, version) of each row of ``versions`` whose version is not in ``seen`` (the latest ``max_versions``
    of a stream, oldest first), which this notes as seen; only those past the stream's first reference
    (``first_reference`` rows, ``reference_size`` by default; ``before``: the stream's rows before these) start
    a new one. Rows without a version are of none."""
    distinct = set(versions)
    distinct.discard(None)
    if distinct.issubset(seen):
        return []  # the usual batch: versions seen before, or none
    first = settings.reference_size if first_reference is None else first_reference
    found = []
    for row, version in enumerate(versions):
        if version is None or version in seen:
            continue
        seen.append(version)
        del seen[: -settings.max_versions]
        if before + row >= first:
            found.append((row, version))
    return found


def _in_stream_order(events: list[dict]) -> list[dict]:
    """A batch's drift events in the order of the rows that raised them, as batches of one row give
    them (the sort is stable: one row's events keep the order of the checks), not grouped by check."""
    if len(events) > 1:
        events.sort(key=lambda event: event["window"]["end_offset"])  # the raising row's offset
    return events


class ModelMonitor:
    """Per-model state: sketches, concept-drift detector, counters and alert policy.

    Parameters
    ----------
    model_id
        The model watched.
    settings
        Detection settings shared by all models.
    model
        This model's own settings (``[models.<id>]``): important features, task,
        positive class, segments, retraining schedule.
    profile
        A reference profile (``reference.load_profile``); without one, the first
        ``reference_size`` events form the reference.
    """

    def __init__(
        self,
        model_id: str,
        settings: MonitorSettings,
        model: ModelSettings | None = None,
        profile: dict | None = None,
        state: dict | None = None,
    ):
        self.model_id = model_id
        self.settings = settings
        self.model = model or ModelSettings()
        self.profile = profile
        self._reset(state)

    def _sketch(self, max_columns: int, state: dict | None, scored: bool = False) -> StreamSketch:
        s = self.settings
        return StreamSketch(
            s.reference_size,
            s.window_size,
            s.subwindows,
            s.bins,
            s.max_categories,
            max_columns,
            state,
            s.max_versions,
            scored,
        )

    def _reset(self, state: dict | None = None) -> None:
        """A fresh monitor; its sketches restored from ``state`` if given (``from_state`` loads the rest)."""
        s = self.settings
        self.predictions_total = 0
        self.feedback_total = 0
        self.labelled_total = 0  # predictions graded by feedback (joined or carried)
        self.errors_total = 0
        self.task = self.model.task  # inferred from the first graded predictions when unset
        self.last_version: str | None = None
        self.last_event_time = 0.0
        self.schedule_from: list | None = None  # [event time, offset] the retraining schedule counts from
        self.drift_events: dict[str, int] = {}
        self.last_drift: dict | None = None  # kind, alert_id, detected_at of the latest drift event
        # set when processing raised (engine.PartitionEngine): error, where, topic; the state is then frozen
        self.quarantined: dict | None = None
        # where the latest metric sub-windows began: [metric row, stream, offset, event time] each
        self.subwindow_marks: list[list] = []
        self.concept_from: list | None = None  # [stream, offset, event time] of the concept window's first event
        self.concept_versions: dict[str, int] = {}  # labelled events per version since the concept reference
        # rebaseline: kind -> [offset, event time] of the first row of the reference being learnt (None: to come)
        self.relearning: dict[str, list | None] = {}
        # a new model version: the versions of the model's predictions and of its graded predictions (the latest
        # max_versions of each, oldest first), and the one whose first predictions the outputs' reference is
        # being learnt from (None: no version's)
        self.versions_served: list[str] = []
        self.versions_graded: list[str] = []
        self.outputs_version: str | None = None
        self.change_from: list = []  # per concept chart: event time (as written) its current excursion began
        self.quality_rates = np.zeros((len(QUALITY_RATES), 0))  # the latest window's rates, per feature column
        self._summary: MonitorSummary | None = None  # the summary of the batches observed so far (see summary)
        # the features' sketch keeps the model's scores per bin: a prediction_drift event's drift_impact
        self.features = self._sketch(s.max_features, state and state["features"], scored=True)
        # the explained changes of the features' windows scored in the batch being observed, by position
        # (not state: a prediction_drift event takes the one of the features' window ending at its own row)
        self._impacts: dict[int, tuple[list[str], dict]] = {}
        self.outputs = self._sketch(2, state and state["outputs"])
        # the absolute attributions of the predictions that carry them (issue 23, item 7): attribution_drift;
        # none in snapshots from before them
        self.attributions = self._sketch(s.max_features, state and state.get("attributions"))
        self.attribution_means = AbsoluteMeans(
            s.reference_size, s.window_size // s.subwindows, s.subwindows, s.max_features
        )
        if state is not None and state.get("attribution_means"):
            self.attribution_means.load_state(state["attribution_means"])
        self.labels = self._sketch(1, state and state["labels"])
        multivariate = self.model.multivariate if self.model.multivariate is not None else s.multivariate
        self.multivariate = (
            CorrelationDrift(s.reference_size, s.window_size, s.subwindows, s.multivariate_max_features)
            if multivariate
            else None
        )
        self.concept = self._concept_detector()
        self.policy = AlertPolicy(s.cooldown_events, resolve_after=self.resolve_after)
        budget = self.model.retrain_budget or s.retrain_budget
        ledger = (
            RetrainLedger(budget.max_retrains, budget.period_s, budget.min_interval_s) if budget is not None else None
        )
        # the retrain budget, and what retrain events' training and reference windows are made from
        self.retraining = RetrainFields(ledger, profile=self.profile is not None)
        self.join = BulkFeedbackJoin(s.join_ttl_s, s.join_max_pending, s.join_max_pending_bytes)
        self.performance: ClassificationMetrics | RegressionMetrics | None = None
        self.cbpe = CBPE(s.window_size, s.subwindows)
        self.business = BusinessMetrics(s, self.model)  # cost and value, expected cost, and their tests
        self.versions = VersionComparison(s.window_size, s.subwindows, s.max_versions, alpha=s.degradation_alpha)
        self.segments = (
            SegmentMetrics(
                self.model.segment_attributes,
                s.window_size,
                s.subwindows,
                s.max_segments,
                self.model.positive_label,
                self.model.sensitive_attribute,
            )
            if self.model.segment_attributes
            else None
        )
        self.degradation = self.degradation_test()
        self.performance_report_json = b"{}"  # the latest window's report, encoded (see performance_report)
        if self.profile is not None and state is None:
            for sketch, part in ((self.features, "features"), (self.outputs, "outputs"), (self.labels, "labels")):
                if self.profile[part]:
                    scores = reference.column_scores(self.profile, part) if part == "features" else None
                    sketch.set_reference(reference.columns(self.profile, part), scores)

    def _concept_detector(self) -> ConceptDetector:
        """A concept detector that learns its reference from the next labelled events."""
        s = self.settings
        return make_detector(
            s.concept_detector,
            s.false_alarm_run_length * FAMILIES,
            s.concept_ratio,
            s.concept_warmup,
            s.concept_history,
            s.budget_confidence,
        )

    @property
    def resolve_after(self) -> int:
        """Sub-window closes in a row below the re-arm level that resolve a windowed condition: those of
        ``max(window_size, cooldown_events)`` rows. One window's worth is too few for a change near the
        detection limit, whose statistic hovers about the threshold (measured: a label rate 0.30 -> 0.40 at
        default settings gave 6 label_drift events over 180,000 rows with one window, 1 with 5,000 rows)."""
        s = self.settings
        slot = s.window_size // s.subwindows
        return max(s.subwindows, -(-s.cooldown_events // slot))

    def degradation_test(self) -> DegradationTest:
        """Accuracy (or MAE) against the profile's value, or the first window's."""
        s = self.settings
        if self.task == "regression":
            return DegradationTest(
                s.degradation_tolerance, s.degradation_alpha, higher_is_better=False, proportion=False
            )
        metrics = self.profile.get("metrics") if self.profile is not None else None
        reference = 1 - metrics["error_rate"] if metrics else None
        return DegradationTest(s.degradation_tolerance, s.degradation_alpha, reference=reference)

    def start_performance(self, labels: list, predictions: list) -> ClassificationMetrics | RegressionMetrics:
        """Metrics for the task: configured, or inferred from the first graded predictions."""
        if self.task is None:
            self.task = infer_task(labels, predictions)
            self.degradation = self.degradation_test()
        s = self.settings
        self.performance = (
            ClassificationMetrics(s.window_size, s.subwindows, s.score_bins, positive_label=self.model.positive_label)
            if self.task == "classification"
            else RegressionMetrics(s.window_size, s.subwindows)
        )
        return self.performance

    @property
    def performance_report(self) -> dict:
        """The latest window's performance report. Kept encoded: it changes once a window and is
        read by every checkpoint and every scrape of /status, and bytes are a third of the dict's memory."""
        return orjson.loads(self.performance_report_json)

    @performance_report.setter
    def performance_report(self, report: dict) -> None:
        # a copy: orjson's own result keeps its whole 4-8 KiB output buffer allocated
        self.performance_report_json = bytes(memoryview(orjson.dumps(report, option=orjson.OPT_SORT_KEYS)))

    @property
    def retrain_budget(self) -> RetrainLedger | None:
        return self.retraining.ledger

    @property
    def reference_source(self) -> str:
        return "profile" if self.profile is not None else "warm-up"

    # -- input --------------------------------------------------------------

    # the ufuncs' reduce rather than the array methods sum, any, all and max, which call it through a
    # Python function of numpy's: the same results, and that layer costs as much as a small batch's reduction

    def observe_predictions(self, batch: PredictionBatch) -> list[dict]:
        self._summary = None  # what a summary shows changes from here on
        new_versions = self._new_versions(batch)
        self.predictions_total += len(batch)
        self.last_version = batch.model_versions[-1]
        self.last_event_time = max(self.last_event_time, float(np.maximum.reduce(batch.timestamps)))
        warmup = self.settings.reference_size - (self.predictions_total - len(batch))
        if self.profile is None and warmup > 0:  # rows of the features' warm-up
            self.retraining.note_warmup(batch, warmup)
        events = []
        self._impacts = {}
        if self.multivariate is not None:  # before the features' sketch: it may take the counts of its warm-up
            counted = self.features.warmup
            features = None if counted is None else (counted, self.features.warmup_rows)
            joint = self._joint_events(batch, features)
        events += self._sketch_events("data_drift", self.features, batch.features, batch, batch.numeric_features)
        if self.multivariate is not None:
            events += joint
        outputs = {"prediction": batch.predictions}
        unscored = np.isnan(batch.scores)
        some_unscored = np.logical_or.reduce(unscored)  # usually not: then all() need not be asked
        if not some_unscored or not np.logical_and.reduce(unscored):
            outputs["score"] = batch.scores.tolist()  # NaN bins as missing
        events += self._sketch_events("prediction_drift", self.outputs, outputs, batch, new_versions=new_versions)
        if batch.attributions is not None:
            events += self._attribution_events(batch)
        scored_rows = batch.scores[~unscored] if some_unscored else batch.scores
        if len(scored_rows):
            self.cbpe.update(scored_rows)
        if self.business.expected_cost is not None:
            for watched in self.business.expect(batch):
                events += self._watched(watched, batch)
        graded = self.join.add_predictions(
            batch.event_ids,
            batch.timestamps,
            batch.predictions,
            batch.scores,
            batch.model_versions,
            self._join_segments(batch),
        )
        events += self._graded(graded, batch)
        if self.model.retrain_every_s is not None:
            events += self._schedule(batch)
        return self._latest(self.retraining.fill(_in_stream_order(events), batch))

    def _join_segments(self, batch: PredictionBatch) -> list[dict | None]:
        """The segments the batch's predictions wait in the join with: the attributes the segment metrics read
        (``segment_attributes``), none without them. A producer's other attributes would cost the join's
        memory and put users' values in the state for nothing."""
        if self.segments is None:
            return [None] * len(batch)
        names = self.model.segment_attributes
        return [None if seg is None else {k: seg[k] for k in names if k in seg} for seg in batch.segments]

    def _new_versions(self, batch: PredictionBatch) -> list[tuple[int, str]]:
        """The rows of ``batch`` where a version the model has not served before comes, with it: those that
        start the outputs' reference again (see *A new model version*)."""
        return _first_of_new(batch.model_versions, self.versions_served, self.predictions_total, self.settings)

    def _sketch_events(
        self,
        kind: str,
        sketch: StreamSketch,
        columns: Mapping[str, FeatureColumn],
        batch: PredictionBatch | FeedbackBatch,
        numeric: frozenset[str] | None = None,
        new_versions: list[tuple[int, str]] | None = None,
    ) -> list[dict]:
        """Feed ``sketch`` the batch's ``columns`` and turn the windows it scores into ``kind`` events (and
        data_quality ones for the features).

        With ``rebaseline``, in steps that end where the sketch reports (a window scored, a reference
        complete): a drift event makes the sketch learn a new reference from the row after it, whatever
        the batches, and the row that completes it raises a ``rebaselined`` event. ``new_versions`` (row,
        version): the sketch learns a new reference from each of these rows on the same way.
        """
        scores = batch.scores if sketch.scored else None
        starts = list(new_versions or [])
        if not self.model.rebaseline and not starts and kind not in self.relearning:
            return self._scored_events(
                kind,
                sketch.update(columns, batch.offsets, batch.timestamps, numeric, batch.model_versions, scores),
                batch,
            )
        events: list[dict] = []
        start, n = 0, len(batch)
        while start < n:
            if starts and starts[0][0] == start:  # a new model version: its own reference, from this row
                self.outputs_version = starts.pop(0)[1]
                sketch.rebaseline()
                self.relearning[kind] = None
            stop = min(n, start + sketch.rows_to_next_step(), starts[0][0] if starts else n)
            part = {name: values[start:stop] for name, values in columns.items()}
            versions = batch.model_versions[start:stop]
            scored = sketch.update(
                part,
                batch.offsets[start:stop],
                batch.timestamps[start:stop],
                numeric,
                versions,
                None if scores is None else scores[start:stop],
            )
            if kind in self.relearning:
                if self.relearning[kind] is None:  # the new reference's first row
                    self.relearning[kind] = [int(batch.offsets[start]), float(batch.timestamps[start])]
                if sketch.ready:
                    events.append(self._rebaselined(kind, batch, stop - 1))
            found = self._scored_events(kind, scored, batch)
            if self.model.rebaseline and any(event["kind"] == kind for event in found):
                sketch.rebaseline()
                self.relearning[kind] = None
            events += found
            start = stop
        return events

    def _attribution_events(self, batch: PredictionBatch) -> list[dict]:
        """Feed the attributions' sketch the absolute attributions of the rows that carry them (its rows are
        those predictions, in order, however the batches cut them) and turn its windows into
        ``attribution_drift`` events: the features whose influence on the model's outputs moved."""
        attributions = batch.attributions
        assert attributions is not None
        rows = [i for i, a in enumerate(attributions) if a is not None]
        carried = [a for a in attributions if a is not None]
        names = sorted(set[str]().union(*carried))
        columns: dict[str, NDArray[np.float64]] = {
            name: np.array([abs(a.get(name, math.nan)) for a in carried], dtype=np.float64) for name in names
        }
        at = np.array(rows, dtype=np.int64)
        offsets, times = batch.offsets[at], batch.timestamps[at]
        versions = [batch.model_versions[i] for i in rows]
        events: list[dict] = []
        start = 0
        while start < len(rows):  # in steps that end where the sketch reports: the means are then its window's
            stop = min(len(rows), start + self.attributions.rows_to_next_step())
            part = {name: column[start:stop] for name, column in columns.items()}
            self.attribution_means.update(part, stop - start)
            scored = self.attributions.update(
                part, offsets[start:stop], times[start:stop], frozenset(names), versions[start:stop]
            )
            for event in self._scored_events("attribution_drift", scored, batch):
                if event["kind"] == "attribution_drift":
                    self._rank_by_influence(event)
                events.append(event)
            start = stop
        return events

    def _rank_by_influence(self, event: dict) -> None:
        """An attribution_drift event's top_features: the features whose mean absolute attribution changed most
        from the reference to the window, relative to the reference's (``score``), with both means in details.
        Only the window that just closed is asked: the means are those of the sketch's window."""
        means = self.attribution_means.window()
        change = {
            name: abs(window - reference) / reference
            for name, (reference, window) in means.items()
            if reference and window is not None
        }
        ranked = sorted(change, key=lambda name: (-change[name], name))[:TOP_FEATURES]
        event["top_features"] = [{"feature": name, "score": change[name]} for name in ranked]
        event["details"]["mean_abs_attribution"] = {
            name: {"reference": _round(means[name][0] or 0.0), "window": _round(means[name][1] or 0.0)}
            for name in ranked
        }

    def _scored_events(self, kind: str, windows: list[dict], batch: PredictionBatch | FeedbackBatch) -> list[dict]:
        events = []
        for scored in windows:
            if "impact" in scored:
                self._impacts[scored["position"]] = (scored["names"], scored["impact"])
            events += self._drift(kind, scored, batch)
            if isinstance(batch, PredictionBatch) and kind == "data_drift":
                events += self._data_quality(scored, batch)
        return events

    def _rebaselined(self, kind: str, batch: PredictionBatch | FeedbackBatch, row: int) -> dict:
        """A ``rebaselined`` event: ``kind``'s sketch has learnt its new reference, whose last row is ``row``;
        the condition that fired is the new normal, so the alarm is armed again without a resolution."""
        first = self.relearning.pop(kind)
        assert first is not None  # set by the step that fed the reference's first row
        start_offset, start_time = first
        size = self.settings.reference_size
        window = {
            "start_time": start_time,
            "end_time": float(batch.timestamps[row]),
            "count": size,
            "start_offset": start_offset,
            "end_offset": int(batch.offsets[row]),
        }
        firing = self.policy.firing_alerts(kind)  # one: the drift event after which the reference is learnt
        self.policy.clear(kind)
        details: dict = {"rebaselines": {"kind": kind, "alert_id": firing[0] if firing else None}}
        if kind == "prediction_drift" and self.outputs_version is not None:  # a new version's own reference
            details["rebaselines"]["model_version"] = self.outputs_version
            self.outputs_version = None
        found = Finding(
            kind=REBASELINED,
            detector="reference",
            statistic=float(size),
            threshold=float(size),
            p_value=None,
            window=window,
            row=row,
            details=details,
            subject=kind,
        )
        return self._event(found, batch)

    def _schedule(self, batch: PredictionBatch) -> list[dict]:
        """Scheduled retraining in event time: the first event past each interval triggers it."""
        if self.schedule_from is None:
            self.schedule_from = [float(batch.timestamps[0]), int(batch.offsets[0])]
        every = self.model.retrain_every_s
        assert every is not None  # only models with a schedule are scheduled
        events: list[dict] = []
        while True:
            since, since_offset = self.schedule_from
            rows = np.flatnonzero(batch.timestamps >= since + every)
            if not len(rows):
                return events
            row = int(rows[0])
            t, offset = float(batch.timestamps[row]), int(batch.offsets[row])
            window = {
                "start_time": since,
                "end_time": t,
                "count": 0,
                "start_offset": since_offset,
                "end_offset": offset,
            }
            found = Finding(
                kind="scheduled_retrain",
                detector="schedule",
                statistic=t - since,
                threshold=every,
                p_value=None,
                window=window,
                row=row,
            )
            events.append(self._event(found, batch))
            self.schedule_from = [t, offset]

    def observe_feedback(self, batch: FeedbackBatch) -> list[dict]:
        self._summary = None  # what a summary shows changes from here on
        self.feedback_total += len(batch)
        self.last_event_time = max(self.last_event_time, float(np.maximum.reduce(batch.timestamps)))
        events = []
        events += self._sketch_events("label_drift", self.labels, {"label": batch.labels}, batch)
        graded = self.join.add_feedback(
            batch.event_ids,
            batch.timestamps,
            batch.labels,
            batch.predictions,
            batch.scores,
            batch.model_versions,
            batch.values,
        )
        events += self._graded(graded, batch)
        return self._latest(self.retraining.fill(_in_stream_order(events), batch))

    def _graded(self, graded: Joined, batch: PredictionBatch | FeedbackBatch) -> list[dict]:
        """Predictions that met their labels in this batch: metrics, degradation, the error stream."""
        if not len(graded):
            return []
        rows = graded.rows  # the batch row that completed each pair, for offsets and event times of drift events
        performance = self.performance or self.start_performance(graded.labels, graded.predictions)
        events: list[dict] = []
        if isinstance(performance, ClassificationMetrics):
            truth, predicted = label_keys(graded.labels), label_keys(graded.predictions)  # once, for all below
            correct = truth == predicted
            everyone = np.arange(len(graded))
            self._mark_subwindows(performance, everyone, batch, rows)
            matrix = self.model.cost_matrix
            costs = matrix_costs(matrix, truth, predicted) if matrix is not None else np.full(len(graded), np.nan)
            events += self._business(graded, everyone, costs, batch, rows)
            windows = performance.update(truth, predicted, graded.scores)
            if self.segments is not None:
                self.segments.update(truth, predicted, [seg or {} for seg in graded.segments])
            # versions close their windows at the same rows as the metrics: feed them up to each close,
            # so what a window reports never depends on where the batch ends
            done = 0
            for w in windows:
                self.versions.update(graded.versions[done : w["row"] + 1], correct[done : w["row"] + 1])
                done = w["row"] + 1
                events += self._degradation(w, batch, int(rows[w["row"]]))
                events += self._version_check(w, batch, int(rows[w["row"]]))
            self.versions.update(graded.versions[done:], correct[done:])
            events += self.observe_errors(~correct, batch, rows, graded.versions)
        else:
            counted = counted_rows(graded.labels, graded.predictions)
            self._mark_subwindows(performance, counted, batch, rows)
            events += self._business(graded, counted, self.business.regression_costs(graded, counted), batch, rows)
            versions = [graded.versions[i] for i in counted.tolist()]
            unjudged = np.zeros(len(counted), dtype=bool)  # regression: versions are counted, not compared
            done = 0
            for w in performance.update(graded.labels, graded.predictions):
                last = int(np.searchsorted(counted, w["row"])) + 1  # counted rows up to the closing one
                self.versions.update(versions[done:last], unjudged[done:last])
                done = last
                events += self._degradation(w, batch, int(rows[w["row"]]))
            self.versions.update(versions[done:], unjudged[done:])
            self.labelled_total += len(graded)
        del self.subwindow_marks[: -(self.settings.subwindows + 1)]  # the window's start is among these
        return events

    def _business(
        self,
        graded: Joined,
        counted: np.ndarray,
        costs: np.ndarray,
        batch: PredictionBatch | FeedbackBatch,
        rows: np.ndarray,
    ) -> list[dict]:
        """The business metrics count the graded pairs the metrics count (``counted``; ``costs`` theirs), before
        the metrics do, so that their windows close at the same rows; their cost test at each close."""
        assert self.performance is not None  # started by the graded pairs
        events: list[dict] = []
        for watched in self.business.grade(
            graded, counted, costs, rows, self.performance.rows, lambda w, row: self._labelled_window(w, batch, row)
        ):
            events += self._watched(watched, batch)
        return events

    def _position(self, batch: PredictionBatch | FeedbackBatch, row: int) -> list:
        """Where a batch row is: [stream, offset, event time] (a drift event's window names such places)."""
        return [_stream(batch), int(batch.offsets[row]), float(batch.timestamps[row])]

    def _mark_subwindows(
        self, performance: ClassificationMetrics | RegressionMetrics, counted: np.ndarray, batch, rows: np.ndarray
    ) -> None:
        """Note where each metric sub-window starts (its first labelled event), before the metrics count
        ``counted`` (indices of the graded pairs they count; ``rows`` their batch rows): a window's
        drift event names its first labelled event."""
        slot = performance.slot_size
        first = (-performance.rows) % slot  # the first of ``counted`` that starts a sub-window
        for j in range(first, len(counted), slot):
            self.subwindow_marks.append([performance.rows + j, *self._position(batch, int(rows[counted[j]]))])

    def _labelled_window(self, window: Mapping, batch: PredictionBatch | FeedbackBatch, row: int) -> tuple[dict, str]:
        """The window of a metric window's drift event: its first and last labelled events, and their count;
        and the stream of the first (the last is the batch's)."""
        start = window["position"] - window["report"]["rows"]
        mark = next((m[1:] for m in self.subwindow_marks if m[0] == start), None)
        end = self._position(batch, row)
        stream, start_offset, start_time = mark if mark is not None else end
        return {
            "start_time": start_time,
            "end_time": end[2],
            "count": window["report"]["rows"],
            "start_offset": start_offset,
            "end_offset": end[1],
        }, stream

    def _window_versions(self) -> dict[str, int]:
        """Graded predictions per model version over the metrics' window."""
        return {v: r["rows"] for v, r in self.versions.report("window")["versions"].items()}

    def _version_check(self, window: dict, batch: PredictionBatch | FeedbackBatch, row: int) -> list[dict]:
        """A performance_degradation event naming a version surely worse than the busiest one (A/B, shadow), or
        the busiest one surely worse than another: action ``rollback``, ``rollback_to`` the better version."""
        comparisons = [c for c in self.versions.report("window")["comparisons"] if c["p_value"] is not None]
        if not comparisons:
            return []
        worst = min(comparisons, key=lambda c: (not c["significant"], c["p_value"], c["version_a"]))
        alpha = self.settings.degradation_alpha
        # fires on a significant difference; re-arms once the versions look alike again (p > ~0.2)
        strength = 1.0 if worst["significant"] else min(1 - worst["p_value"], 1 - alpha)
        decision = self._decide("version_comparison", strength, 1 - alpha, window["position"])
        if decision is None:
            return []
        at, start_stream = self._labelled_window(window, batch, row)
        found = Finding(
            kind="performance_degradation",
            detector="version_comparison",
            statistic=worst["difference"],
            threshold=0.0,
            p_value=worst["p_value"],
            window=at,
            row=row,
            details={"comparison": worst},
            versions=self._window_versions(),
            start_stream=start_stream,
        )
        event = self._publish(decision, found, batch)
        if decision.verdict == "resolve":
            return [event]
        event["model_version"] = worst["worse"]  # the version the event is about: the worse one
        better = worst["version_b"] if worst["worse"] == worst["version_a"] else worst["version_a"]
        # both served in this window: route traffic back to the better one rather than retrain. Rows
        # without a version, or of versions past the cap, name nothing one could roll back to: retrain.
        if worst["worse"] is not None and better not in (NO_VERSION, OTHER_VERSION):
            event["action"] = "rollback"
            event["rollback_to"] = better
        return [event]

    def _degradation(self, window: dict, batch: PredictionBatch | FeedbackBatch, row: int) -> list[dict]:
        """A performance_degradation event when the window is surely worse than the reference."""
        report = window["report"]  # as of the row that closed the window, not the batch's end
        self.performance_report = report
        if self.task == "classification":
            metric, verdict = "accuracy", self.degradation.check(report["accuracy"], report["rows"])
        else:
            metric, verdict = "mae", self.degradation.check(report["mae"], report["rows"], report["mae_se"])
        if verdict is None:  # the first window sets the reference
            return []
        at, start_stream = self._labelled_window(window, batch, row)
        details = {
            "metric": metric,
            "reference": verdict.reference,
            "confidence_bound": verdict.bound,
            "tolerance": self.settings.degradation_tolerance,
        }
        if self.task == "classification":
            details["version_comparison"] = self.versions.report("window")
        watched = degradation_watch(
            verdict,
            alarm="performance_degradation",
            detector=metric,
            alpha=self.settings.degradation_alpha,
            position=window["position"],
            window=at,
            row=row,
            details=details,
            versions=self._window_versions(),
            start_stream=start_stream,
        )
        return self._watched(watched, batch)

    def observe_errors(
        self, errors: np.ndarray, batch: PredictionBatch | FeedbackBatch, rows: np.ndarray, versions: list
    ) -> list[dict]:
        """Feed the error stream (1 = wrong), one per graded prediction; ``rows`` are their rows in ``batch``,
        ``versions`` the model versions of their predictions.

        Every detection is published: the detector restarts at once after one, on the data since the
        change, so its next detection is a change against a new reference, never the same condition
        again; the cooldown, which would hide it, does not apply to concept drift (issue 22).
        """
        self.labelled_total += len(errors)
        self.errors_total += int(np.add.reduce(errors))
        events = []
        done = 0
        warmup = self.settings.concept_warmup
        graded_before = self.labelled_total - len(errors)
        restarts = [
            row for row, _ in _first_of_new(versions, self.versions_graded, graded_before, self.settings, warmup)
        ]
        while done < len(errors):
            if restarts and restarts[0] == done:  # a new model version's first graded prediction: its own reference
                restarts.pop(0)
                self.concept = self._concept_detector()
                self.concept_from, self.concept_versions, self.change_from = None, {}, []
            end = restarts[0] if restarts else len(errors)
            found = self.concept.update(errors[done:end], stop_at_detection=True)
            upto = done + found[0]["index"] + 1 if found else end
            watched = found[0]["labelled_since_reference"] if found else getattr(self.concept, "watched", None)
            self._watch(batch, rows, versions, done, upto, watched)
            change_started_at = self._mark_change(batch, rows, done, upto, found[0] if found else None)
            done = upto
            if found:
                events += self._concept_drift(found[0], batch, int(rows[done - 1]), change_started_at)
                self.concept_from, self.concept_versions = None, {}  # the detector learns a new reference
        return events

    def _mark_change(
        self, batch: PredictionBatch | FeedbackBatch, rows: np.ndarray, a: int, b: int, found: dict | None
    ) -> object:
        """The concept detector was fed graded pairs ``a`` to ``b`` of this batch: note the event time
        (as written) of each chart's current excursion's first event, where its statistic last left 0;
        with a detection, return the firing chart's (None: the detector does not say where)."""
        runs = list(getattr(self.concept, "runs", []))
        if found is not None and "since_change" in found:
            runs[found["chart"]] = found["since_change"]
        marks = self.change_from + [None] * (len(runs) - len(self.change_from))
        for chart, run in enumerate(runs):
            if run == 0:
                marks[chart] = None
            elif run <= b - a:  # the excursion began within these pairs
                marks[chart] = batch.timestamp_values[int(rows[b - run])]
        self.change_from = marks
        if found is None or "since_change" not in found:
            return None
        self.change_from = []  # the detector restarts: new charts, new excursions
        return marks[found["chart"]]

    def _watch(
        self,
        batch: PredictionBatch | FeedbackBatch,
        rows: np.ndarray,
        versions: list,
        a: int,
        b: int,
        watched: int | None,
    ) -> None:
        """The concept detector was fed graded pairs ``a`` to ``b`` of this batch and has watched ``watched``
        labelled events since its reference error rate was set (None: it does not say): note where that
        run began and count its versions, for the window of its next drift event."""
        if not watched:  # still learning the reference, or a detector that does not count
            return
        if watched <= b - a:  # the reference was set within these pairs
            first = b - watched
            self.concept_from = self._position(batch, int(rows[first]))
            self.concept_versions = {}
        else:
            first = a
        for version in versions[first:b]:
            key = _version_key(version)
            if key not in self.concept_versions and len(self.concept_versions) >= self.settings.max_versions:
                key = OTHER_VERSION
            self.concept_versions[key] = self.concept_versions.get(key, 0) + 1

    def _concept_drift(
        self, found: dict, batch: PredictionBatch | FeedbackBatch, row: int, change_started_at: object
    ) -> list[dict]:
        """The concept_drift event of a detection at ``row``; ``change_started_at``: the event time (as written)
        where the firing chart's statistic last left 0 (None: the window's start)."""
        # the window: the labelled events watched since the reference error rate was set
        end = self._position(batch, row)
        start_stream, start_offset, start_time = self.concept_from or end
        window = {
            "start_time": start_time,
            "end_time": end[2],
            "count": found["labelled_since_reference"],
            "start_offset": start_offset,
            "end_offset": end[1],
        }
        details = {k: found[k] for k in ("reference_error_rate", "error_rate_since_reference")}
        if "chart" in found:
            details.update(chart=("fast", "slow")[found["chart"]], design_error_rate=found["design_error_rate"])
        detection = Finding(
            kind="concept_drift",
            detector=self.concept.name,
            statistic=found["statistic"],
            threshold=found["threshold"],
            p_value=None,
            window=window,
            row=row,
            details=details,
            versions=dict(self.concept_versions),
            start_stream=start_stream,
            change_started_at=change_started_at,  # None: a River detector, which does not say (the window's start)
        )
        return [self._event(detection, batch)]

    @property
    def concept_threshold(self) -> float:
        return self.concept.threshold

    # -- decisions ------------------------------------------------------------

    def p_threshold(self, columns: int, kind: str = "prediction_drift") -> float:
        """The per-column (or per-pair) p-value under which a window of ``kind`` has drifted (see Calibration):
        data_drift and multivariate_drift share the data family's part of the budget when multivariate is on."""
        s = self.settings
        shares = 2 if kind in ("data_drift", MULTIVARIATE) and self.multivariate is not None else 1
        if kind == "attribution_drift" or (kind == "prediction_drift" and self.attributions.seen):
            shares = 2  # attribution and prediction drift share the prediction family's part, once attributions come
        return (s.window_size // s.subwindows) / (s.false_alarm_run_length * FAMILIES * shares * max(columns, 1))

    def _drift(self, kind: str, scored: dict, batch: PredictionBatch | FeedbackBatch) -> list[dict]:
        names, stats = scored["names"], scored["stats"]
        if not names:
            return []
        p_thr = self.p_threshold(len(names), kind)
        if kind in FEATURED:
            return self._drift_per_feature(kind, scored, batch, p_thr)
        worst = int(np.argmin(stats["p_value"]))
        p_min = float(stats["p_value"][worst])
        # the policy compares -log10(p) against -log10(threshold): larger means more drift
        strength, bar = -math.log10(max(p_min, 1e-300)), -math.log10(p_thr)
        decision = self._decide(kind, strength, bar, scored["position"])
        if decision is None:
            return []
        return [self._drift_event(kind, decision, worst, scored, batch, p_thr)]

    def _drift_per_feature(
        self, kind: str, scored: dict, batch: PredictionBatch | FeedbackBatch, p_thr: float
    ) -> list[dict]:
        """A window's events of a kind whose alarms are per feature (``policy.FEATURED``): each feature over
        the threshold, or with an active condition, goes through its own alarm, the most drifted first
        (important ones before the others). Features under the threshold with no condition (most, at most closes) ask the policy nothing.

        A feature that fires opens a change (a drift event), or joins the kind's latest change if that was
        opened less than ``window_size`` rows before: one change of the world moves several features, whose
        tests cross the threshold a sub-window or two apart, and pages once. An important feature (its event's
        action retrain) joins only a change that asked to retrain too: its retrain is never folded away. A feature whose condition has
        gone resolves alone; the change's ``drift_resolved`` comes when the last of its features has."""
        names, p_values = scored["names"], scored["stats"]["p_value"]
        strengths = -np.log10(np.maximum(p_values, 1e-300))
        bar = -math.log10(p_thr)
        self.policy.adopt(kind, names[int(np.argmin(p_values))])  # an older snapshot's alarm of the whole kind
        asked = set(np.flatnonzero(strengths > bar).tolist())
        active = self.policy.active_of(kind)
        if active:
            at = {name: i for i, name in enumerate(names)}
            asked.update(at[name] for name in active if name in at)  # a feature no longer tested stays as it is
        events = []
        important = self.model.important_features
        # the most drifted first, important features before them all: the first to fire opens the change
        for i in sorted(asked, key=lambda i: (names[i] not in important, -float(strengths[i]), names[i])):
            key, position = alarm_key(kind, names[i]), scored["position"]
            decision = self._decide(key, float(strengths[i]), bar, position)
            if decision is None:
                continue
            if decision.verdict == "fire":
                retrain = names[i] in important  # its event's action: retrain
                change = self.policy.change_within(kind, position, self.settings.window_size, retrain)
                if change is not None:  # part of a change reported within a window: its alarm names that event
                    self.policy.fired_alert(key, change)
                    continue
                event = self._drift_event(kind, decision, i, scored, batch, p_thr)
                self.policy.opened(kind, position, event["alert_id"], event["action"] == "retrain")
            else:
                self.policy.forget(key)
                if decision.firing is not None and decision.firing in self.policy.firing_alerts(kind):
                    continue  # its change goes on in other features
                event = self._drift_event(kind, decision, i, scored, batch, p_thr)
            events.append(event)
        return events

    def _drift_event(
        self,
        kind: str,
        decision: Decision,
        column: int,
        scored: dict,
        batch: PredictionBatch | FeedbackBatch,
        p_thr: float,
    ) -> dict:
        """The event of the policy's ``decision`` on a sketch's window, whose test of ``column`` is the one
        it is about: the drift event, or its ``drift_resolved``."""
        names, stats = scored["names"], scored["stats"]
        p_min = float(stats["p_value"][column])
        critical = float(chi2_critical(p_thr, stats["df"][column : column + 1])[0])
        row = int(np.searchsorted(batch.offsets, scored["window"]["end_offset"]))
        order = sorted(range(len(names)), key=lambda i: (-float(stats["psi"][i]), names[i]))
        # `feature` and the statistic are the test that fired; top_features rank by effect size (PSI)
        found = Finding(
            kind=kind,
            detector="chi2",
            statistic=float(stats["chi2"][column]),
            threshold=critical,
            p_value=p_min,
            window=scored["window"],
            row=row,
            feature=names[column],
            top_features=[{"feature": names[i], "score": float(stats["psi"][i])} for i in order[:TOP_FEATURES]],
            details={
                "p_threshold": p_thr,
                "statistics": {names[i]: {k: _round(stats[k][i]) for k in STAT_NAMES} for i in order[:TOP_FEATURES]},
            },
            versions=scored["versions"],
        )
        event = self._publish(decision, found, batch)
        if decision.verdict == "fire" and kind == "prediction_drift":
            event["drift_impact"], unavailable = self._drift_impact(scored["position"])
            if unavailable is not None:
                event["details"]["drift_impact_unavailable"] = unavailable
        return event

    def _drift_impact(self, position: int) -> tuple[dict | None, str | None]:
        """Why the scores moved over the prediction_drift window ending at row ``position``: the features'
        window ending at the same row, each feature's explained change in the mean score and the observed one
        (``core/impact.py``); or None and the reason it is not known."""
        found = self._impacts.get(position)
        if found is None:
            if not self.features.ready:
                return None, "the features' reference is being learnt"
            if not self.features.knows_scores:
                return None, "the features' reference has no score sums (a profile or snapshot from before them)"
            return (
                None,
                "the features' window does not end at this row (reference_size is not a multiple of the sub-window)",
            )
        names, impact = found
        reference_mean, window_mean = impact["reference_mean"], impact["window_mean"]
        if reference_mean is None or window_mean is None:
            return None, "no prediction of the " + (
                "reference" if reference_mean is None else "window"
            ) + " had a score"
        explained = [(name, float(x)) for name, x in zip(names, impact["explained"].tolist()) if x == x]
        explained.sort(key=lambda pair: (-abs(pair[1]), pair[0]))
        return {
            "observed_change": _round(window_mean - reference_mean),
            "reference_mean_score": _round(reference_mean),
            "window_mean_score": _round(window_mean),
            "features": [{"feature": name, "explained_change": _round(x)} for name, x in explained[:TOP_FEATURES]],
        }, None

    def _joint_events(
        self, batch: PredictionBatch, features: tuple[Mapping[str, WarmupColumn], int] | None
    ) -> list[dict]:
        """Feed the multivariate detector the batch (``features``: the features' sketch's warm-up, before it)
        and turn the windows it tests into ``multivariate_drift`` events.

        With ``rebaseline``, as ``_sketch_events`` does for a sketch: in steps that end where the detector
        reports, a drift event makes it learn everything again from the row after it, and the row that
        completes the new reference raises a ``rebaselined`` event. Only the first step can be in the
        warm-up the detector may share with the features' sketch: a step ends where the reference completes.
        """
        detector = self.multivariate
        assert detector is not None  # only models with multivariate drift on
        numeric = batch.numeric_features
        if not self.model.rebaseline and MULTIVARIATE not in self.relearning:
            scores = detector.update(batch.features, batch.offsets, batch.timestamps, numeric, features)
            return [event for scored in scores for event in self._joint_drift(scored, batch)]
        events: list[dict] = []
        start, n = 0, len(batch)
        while start < n:
            stop = min(n, start + detector.rows_to_next_step())
            part = {name: values[start:stop] for name, values in batch.features.items()}
            scores = detector.update(part, batch.offsets[start:stop], batch.timestamps[start:stop], numeric, features)
            if MULTIVARIATE in self.relearning:
                if self.relearning[MULTIVARIATE] is None:  # the new reference's first row
                    self.relearning[MULTIVARIATE] = [int(batch.offsets[start]), float(batch.timestamps[start])]
                if detector.ready:
                    events.append(self._rebaselined(MULTIVARIATE, batch, stop - 1))
            found = [event for scored in scores for event in self._joint_drift(scored, batch)]
            if self.model.rebaseline and any(event["kind"] == MULTIVARIATE for event in found):
                detector.rebaseline()
                self.relearning[MULTIVARIATE] = None
            events += found
            start = stop
        return events

    def _joint_drift(self, scored: WindowScore, batch: PredictionBatch) -> list[dict]:
        """A multivariate_drift event (or its drift_resolved) from a window's pairwise correlation tests.

        ``top_features`` rank the features by the largest difference (in standard errors) of a pair they
        are in, so a pair whose correlation changed is ranked first, both of its features; ``feature`` is
        null (the test is of pairs: ``details.pairs`` names the most changed ones)."""
        p_thr = self.p_threshold(len(scored.p_value), MULTIVARIATE)
        worst = int(np.argmin(scored.p_value))
        p_min = float(scored.p_value[worst])
        strength, bar = -math.log10(max(p_min, 1e-300)), -math.log10(p_thr)
        decision = self._decide(MULTIVARIATE, strength, bar, scored.position)
        if decision is None:
            return []
        size = np.abs(scored.z)
        names = scored.names
        by_feature = np.zeros(len(names))
        np.maximum.at(by_feature, scored.first, size)
        np.maximum.at(by_feature, scored.second, size)
        order = sorted(range(len(names)), key=lambda i: (-float(by_feature[i]), names[i]))
        top = [{"feature": names[i], "score": float(by_feature[i])} for i in order[:TOP_FEATURES]]
        pairs = sorted(range(len(size)), key=lambda k: (-float(size[k]), scored.pair_names(k)))[:TOP_PAIRS]
        details = {
            "p_threshold": p_thr,
            "features_watched": len(names),
            "rows": scored.rows,
            "reference_rows": scored.reference_rows,
            "pairs": [
                {
                    "features": list(scored.pair_names(k)),
                    "reference_correlation": _round(float(scored.reference[k])),
                    "window_correlation": _round(float(scored.window[k])),
                    "z": _round(float(scored.z[k])),
                    "p_value": _round(float(scored.p_value[k])),
                }
                for k in pairs
            ],
        }
        found = Finding(
            kind=MULTIVARIATE,
            detector="fisher_z",
            statistic=float(size[worst]),
            threshold=normal_critical(p_thr),  # the |z| whose two-sided p-value is p_thr
            p_value=p_min,
            window=scored.span,
            row=int(np.searchsorted(batch.offsets, scored.span["end_offset"])),
            top_features=top,
            details=details,
        )
        return [self._publish(decision, found, batch)]

    def _data_quality(self, scored: dict, batch: PredictionBatch) -> list[dict]:
        names, q = scored["names"], scored["quality"]
        s = self.settings
        worst: tuple[float, str, str, float, float] | None = None
        ranked: dict[str, float] = {}
        for detector, key, bound_name, relative in QUALITY_CHECKS:
            rate = q[key] - q["missing_rate_ref"] if relative else q[key]
            bound = getattr(s, bound_name)
            for i in np.flatnonzero(rate > bound):
                ratio = float(rate[i] / bound)
                ranked[names[i]] = max(ranked.get(names[i], 0.0), ratio)
                if worst is None or ratio > worst[0]:
                    worst = (ratio, detector, names[i], float(rate[i]), bound)
        self.quality_rates = np.array([q[k] for k in QUALITY_RATES], dtype=np.float64)
        strength = worst[0] if worst else 0.0
        decision = self._decide("data_quality", strength, 1.0, scored["position"])
        if decision is None:
            return []
        window, row = scored["window"], int(np.searchsorted(batch.offsets, scored["window"]["end_offset"]))
        if decision.verdict == "resolve":  # every rate has stayed under its bound: the ratio against 1
            calm = Finding(
                kind="data_quality",
                detector="data_quality",
                statistic=strength,
                threshold=1.0,
                p_value=None,
                window=window,
                row=row,
                versions=scored["versions"],
            )
            return [self._publish(decision, calm, batch)]
        assert worst is not None  # fired: some rate is over its bound
        _, detector, feature, rate, bound = worst
        most = sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_FEATURES]
        quality = self.quality
        found = Finding(
            kind="data_quality",
            detector=detector,
            statistic=rate,
            threshold=bound,
            p_value=None,
            window=window,
            row=row,
            feature=feature,
            top_features=[{"feature": f, "score": r} for f, r in most],
            details={"rates": {f: quality[f] for f, _ in most}},
            versions=scored["versions"],
        )
        return [self._publish(decision, found, batch)]

    def _decide(self, alarm: str, statistic: float, threshold: float, position: int) -> Decision | None:
        """The policy's word on ``alarm``'s windowed statistic at the sub-window close at ``position``: fire,
        resolve, or None (nothing to publish: armed and below the threshold, or active and not yet resolved)."""
        firing = self.policy.firing_alert(alarm)  # before watch: a resolution forgets it
        verdict = self.policy.watch(alarm, statistic, threshold, position)
        return None if verdict is None else Decision(verdict, alarm, firing)

    def _watched(self, watched: Watched, batch: PredictionBatch | FeedbackBatch) -> list[dict]:
        """The event the policy's decision on a ``Watched`` finding raises: one, or none."""
        decision = self._decide(watched.alarm, watched.statistic, watched.threshold, watched.position)
        if decision is None:
            return []
        event = self._publish(decision, watched.found, batch)
        if watched.action is not None and decision.verdict == "fire":
            event["action"] = watched.action
        return [event]

    def _publish(self, decision: Decision, found: Finding, batch: PredictionBatch | FeedbackBatch) -> dict:
        """The event of a decision on ``found``: the drift event (noted as the alarm's firing one, for its
        ``drift_resolved``), or the ``drift_resolved`` event that says the condition fired as
        ``decision.firing`` (its alert_id; None from an older snapshot) has gone, with the figures and the
        window of the close that resolved it."""
        if decision.verdict == "fire":
            event = self._event(found, batch)
            self.policy.fired_alert(decision.alarm, event["alert_id"])
            return event
        name, feature = alarm_of(decision.alarm)
        kind = ALARM_KIND.get(name, name)
        resolves = {"kind": kind, "alert_id": decision.firing}
        if feature is not None:  # a condition of one feature (its own alarm): the one that has gone
            resolves["feature"] = feature
        details = {"resolves": resolves, "closes_below_rearm": self.policy.resolve_after}
        calm = replace(
            found,
            kind=RESOLVED,
            feature=feature,
            top_features=[],
            details=details,
            subject=kind,
            change_started_at=None,
        )
        return self._event(calm, batch)

    def _event(self, found: Finding, batch: PredictionBatch | FeedbackBatch) -> dict:
        """The drift event of ``found``, raised at its row of ``batch``: the one place events are made.

        It names the busiest model version of ``found.versions`` (ties broken by name), or without them (a
        snapshot from before they were counted) the row's; and where the change started, the finding's
        estimate or its window's start (none for a scheduled retrain, which is no change)."""
        kind, row, details, versions = found.kind, found.row, found.details, found.versions
        self.drift_events[kind] = self.drift_events.get(kind, 0) + 1
        window = dict(found.window)
        for key in ("start_time", "end_time"):
            if not isinstance(window[key], str):
                window[key] = rfc3339(window[key])
        stream = _stream(batch)
        version = batch.model_versions[row]
        if versions:
            busiest = min(versions, key=lambda v: (-versions[v], v))
            version = None if busiest == NO_VERSION else busiest
            if len(versions) > 1:  # a window of several versions: each one's count
                details = {**details, "versions": versions}
        if found.start_stream is not None and found.start_stream != stream:
            details = {**details, "window_start_stream": found.start_stream}
        event = drift_event(
            model_id=self.model_id,
            model_version=version,
            kind=kind,
            detector=found.detector,
            feature=found.feature,
            statistic=found.statistic,
            threshold=found.threshold,
            p_value=found.p_value,
            window=window,
            stream=stream,
            partition=batch.partition,
            top_features=found.top_features,
            action=action_for(kind, found.feature, frozenset(self.model.important_features)),
            detected_at=batch.timestamp_values[row],
            subject=found.subject,
        )  # the triggering event's time, in the form it was written
        event["details"] = {**details, "window_stream": stream}  # the topic the window's offsets count in
        if kind != "scheduled_retrain":
            started = found.change_started_at
            event["change_started_at"] = window["start_time"] if started is None else started
        return event

    def _latest(self, events: list[dict]) -> list[dict]:
        """Note the last of a batch's drift events, in stream order (not the order the checks raised them,
        which depends on how the two topics' batches interleave)."""
        drifts = [e for e in events if e["kind"] not in NEWS]  # the latest drift, not the latest news
        if drifts:
            self.last_drift = {k: drifts[-1][k] for k in ("kind", "alert_id", "detected_at")}
        return events

    # -- views and state ------------------------------------------------------

    @property
    def quality(self) -> dict[str, dict[str, float]]:
        """The latest window's data-quality rates: feature -> rate name -> rate."""
        names = [c.name for c in self.features.columns][: self.quality_rates.shape[1]]
        return {n: dict(zip(QUALITY_RATES, rates)) for n, rates in zip(names, self.quality_rates.T.tolist())}

    def summary(self) -> MonitorSummary:
        """What the exporter, `status` and the public API show: counters, latest scores, data quality.

        Made once per batch observed, and shared until the next (read only, as every summary is): what it shows
        changes only when a batch is observed, never when held warm-up rows are counted (``settle``, which shows
        nothing). So the exporter's publication and a checkpoint's records of the same state make it once (a
        forked packer inherits the loop's); at 2,000 models in their warm-up a summary cost about 50 us
        (issue 19). ``tests/unit/test_summary_cache.py`` compares it with one made afresh along streams."""
        if self._summary is None:
            self._summary = self._make_summary()
        return self._summary

    def _make_summary(self) -> MonitorSummary:
        last = self.last_drift
        return MonitorSummary(
            model_id=self.model_id,
            predictions=self.predictions_total,
            feedback=self.feedback_total,
            labelled=self.labelled_total,
            errors=self.errors_total,
            rejected=0,  # a worker's rejected records are the dead-letter topic's
            reference_ready=self.features.ready,
            reference_source=self.reference_source,
            task=self.task,
            drift_events=dict(self.drift_events),
            last_drift=LastDrift(last["kind"], last["alert_id"], last["detected_at"]) if last else None,
            feature_scores=self.features.last_scores,  # replaced, never mutated: no copy needed
            output_scores=self.outputs.last_scores,
            attribution_scores=self.attributions.last_scores,
            label_scores=self.labels.last_scores,
            type_mismatches=dict(self.features.type_mismatches),
            quality=self.quality,
            concept_statistic=self.concept.statistic,
            window_performance=self.performance_report,
            cumulative_performance=self.performance.report("cumulative") if self.performance else {},
            estimated_accuracy=self.cbpe.estimate("window"),
            reference_accuracy=self.degradation.reference_value if self.task == "classification" else None,
            join=self.join.counters(),
            versions=self.versions.report("window") if self.task == "classification" else {},
            segments=self.segments.report("window") if self.segments is not None else {},
            last_event_time=self.last_event_time,
            drift_active=frozenset(self.policy.active_kinds()),
            drift_active_features=self.policy.active_features(),
            retrain_budget_remaining=(
                self.retrain_budget.remaining(self.last_event_time) if self.retrain_budget is not None else None
            ),
            business=self.business.summary(),
            score_impact=self.features.last_impact,  # replaced, never mutated: no copy needed
            score_change=self.features.last_score_change,
        )

    def quarantine(self, error: str, where: str, topic: str | None) -> None:
        """Freeze this monitor: processing a batch of ``topic`` raised ``error`` at ``where`` (``topic`` None:
        building its stored state did, when its state was asked for)."""
        self.quarantined = {"error": error, "where": where, "topic": topic}

    def state(self) -> dict:
        """The monitor's state as plain data (``monitor_state.capture``)."""
        return monitor_state.capture(self)

    def settle(self) -> None:
        """Count the rows its sketches hold (``core/held.py``) and the numbers their warm-up columns keep
        uncounted (``StreamSketch.count_pending``): ``state()`` does both itself; a worker that packs states in a
        forked copy does them first, so that the copy does not count them and the loop (or the next copy) again."""
        for sketch in (self.features, self.outputs, self.attributions, self.labels):
            sketch.settle()
            sketch.count_pending()

    @classmethod
    def from_state(
        cls,
        model_id: str,
        settings: MonitorSettings,
        state: dict,
        model: ModelSettings | None = None,
        profile: dict | None = None,
    ) -> ModelMonitor:
        """The monitor ``state`` describes (``monitor_state.restore``; its sketches are laid out from it)."""
        monitor = cls(model_id, settings, model, profile, state)
        monitor_state.restore(monitor, state)
        return monitor


def monitor_factory(
    settings: MonitorSettings, models: Mapping[str, ModelSettings] | None = None
) -> Callable[..., ModelMonitor]:
    """``(model_id, state=None) -> ModelMonitor`` with each model's configuration (profiles read once)."""
    models = dict(models or {})
    profiles = {m: reference.load_profile(c.profile) for m, c in models.items() if c.profile is not None}
    # the models without a section of their own share one (settings, read only, as a configured model's monitors
    # share its section): validating a fresh one was a tenth of making a monitor
    unconfigured = ModelSettings()

    def make(model_id: str, state: dict | None = None) -> ModelMonitor:
        config = models.get(model_id, unconfigured)
        if state is None:
            return ModelMonitor(model_id, settings, config, profiles.get(model_id))
        return ModelMonitor.from_state(model_id, settings, state, config, profiles.get(model_id))

    return make
