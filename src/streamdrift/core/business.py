"""A model's business metrics and their tests: what its predictions cost and earn, and whether that got worse.

With ``[models.<id>]`` ``cost_matrix`` (classification) or ``cost_per_unit_error`` (regression), or at the first
business ``value`` a feedback carries, the cost and value of the graded predictions are counted per window and
version (``metrics.cost.CostMetrics``), in the metrics' windows; with a cost matrix, the expected cost of the
scored predictions, before labels come (``ExpectedCost``). With ``cost_tolerance``, a one-sided degradation
test on each (detectors ``cost`` and ``expected_cost``) says at each window's close whether it is surely worse
than the first window by more than the tolerance: a ``Watched`` finding the monitor hands to the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.finding import Watched, degradation_watch
from streamdrift.core.join import Joined
from streamdrift.core.metrics.cost import CostMetrics, ExpectedCost, expected_costs
from streamdrift.core.metrics.degradation import DegradationTest
from streamdrift.core.metrics.labels import label_keys
from streamdrift.core.records import PredictionBatch

# the window of a metric window's drift event and the stream of its first event (``ModelMonitor._labelled_window``)
LabelledWindow = Callable[[Mapping[str, Any], int], tuple[dict[str, Any], str]]


class BusinessMetrics:
    """A model's cost and value, its expected cost from scores, and their degradation tests.

    Parameters
    ----------
    settings
        The monitor's settings: windows, versions, ``degradation_alpha``.
    model
        The model's settings: ``cost_matrix``, ``cost_per_unit_error``, ``cost_tolerance``, ``positive_label``.
    """

    def __init__(self, settings: MonitorSettings, model: ModelSettings) -> None:
        self.settings = settings
        self.model = model
        s = settings
        self.cost: CostMetrics | None = None  # made when the model declares a cost, or at the first value
        matrix, tolerance = model.cost_matrix, model.cost_tolerance
        self.expected_cost = ExpectedCost(s.window_size, s.subwindows) if matrix is not None else None
        self.cost_degradation = self._test() if tolerance is not None else None
        # the same test on the expected cost from scores, and where its sub-windows began: [position, offset, time]
        self.expected_degradation = self._test() if tolerance is not None and matrix is not None else None
        self.expected_marks: list[list[Any]] = []

    def _test(self) -> DegradationTest:
        tolerance = self.model.cost_tolerance
        assert tolerance is not None
        return DegradationTest(tolerance, self.settings.degradation_alpha, higher_is_better=False, proportion=False)

    def expect(self, batch: PredictionBatch) -> list[Watched]:
        """Count the expected cost of the batch's scored predictions (the window's estimate before labels
        come); with ``cost_tolerance``, its test at each window's close."""
        matrix, expected = self.model.cost_matrix, self.expected_cost
        assert expected is not None and matrix is not None  # made for models with a cost matrix
        positive = str(label_keys([self.model.positive_label])[0])
        costs = expected_costs(matrix, label_keys(batch.predictions), batch.scores, batch.class_scores, positive)
        scored = np.flatnonzero(~np.isnan(costs))
        for j in range((-expected.rows) % expected.slot_size, len(scored), expected.slot_size):
            row = int(scored[j])  # the first scored prediction of a sub-window
            self.expected_marks.append([expected.rows + j, int(batch.offsets[row]), float(batch.timestamps[row])])
        watched = []
        for w in expected.update(costs):
            watched += self._expected_cost_check(w, batch)
        del self.expected_marks[: -(self.settings.subwindows + 1)]  # the next window's start is among these
        return watched

    def _expected_cost_check(self, window: Mapping[str, Any], batch: PredictionBatch) -> list[Watched]:
        """The test of the window's expected cost from scores against the first window's: the cost test in
        CBPE terms, before the labels come. An estimate, which holds only as far as the scores are
        calibrated: its action is ``investigate``, never a retrain."""
        test = self.expected_degradation
        if test is None or window["std_error"] is None:
            return []
        verdict = test.check(window["estimate"], window["rows"], window["std_error"])
        if verdict is None:
            return []
        row = window["row"]
        start = next((m[1:] for m in self.expected_marks if m[0] == window["position"] - window["rows"]), None)
        start_offset, start_time = (
            start if start is not None else (int(batch.offsets[row]), float(batch.timestamps[row]))
        )
        at = {
            "start_time": start_time,
            "end_time": float(batch.timestamps[row]),
            "count": window["rows"],
            "start_offset": start_offset,
            "end_offset": int(batch.offsets[row]),
        }
        details = {
            "metric": "expected_cost",
            "reference": verdict.reference,
            "confidence_bound": verdict.bound,
            "tolerance": self.model.cost_tolerance,
        }
        alpha = self.settings.degradation_alpha
        return [
            degradation_watch(
                verdict,
                alarm="expected_cost",
                detector="expected_cost",
                alpha=alpha,
                position=window["position"],
                window=at,
                row=row,
                details=details,
                action="investigate",
            )
        ]

    def regression_costs(self, graded: Joined, counted: NDArray[np.int64]) -> NDArray[np.float64]:
        """``cost_per_unit_error`` times the absolute error of the counted pairs (numbers both); NaN without it."""
        per_unit = self.model.cost_per_unit_error
        if per_unit is None:
            return np.full(len(counted), np.nan)
        picked = counted.tolist()
        truth = np.array([graded.labels[i] for i in picked], dtype=np.float64)
        predicted = np.array([graded.predictions[i] for i in picked], dtype=np.float64)
        result: NDArray[np.float64] = per_unit * np.abs(truth - predicted)
        return result

    def grade(
        self,
        graded: Joined,
        counted: NDArray[np.int64],
        costs: NDArray[np.float64],
        rows: NDArray[np.int64],
        metric_rows: int,
        labelled_window: LabelledWindow,
    ) -> list[Watched]:
        """Count the cost and value of the graded pairs the metrics count (``counted``, their indices; ``costs``
        theirs, NaN where none; ``rows``, the batch rows of all graded pairs), before the metrics count them
        (``metric_rows`` so far): so their windows close at the same rows. A model that declares no cost starts
        counting at its first value, as if from the start (no value before). With ``cost_tolerance``, the cost
        test at each window's close."""
        values = graded.values[counted] if len(graded.values) else np.full(len(counted), np.nan)
        if self.cost is None:
            declared = self.model.cost_matrix is not None or self.model.cost_per_unit_error is not None
            if not declared and bool(np.isnan(values).all()):
                return []
            s = self.settings
            self.cost = CostMetrics(s.window_size, s.subwindows, s.max_versions)
            self.cost.rows = metric_rows  # aligned with the metrics' windows
        versions = [graded.versions[i] for i in counted.tolist()]
        watched = []
        for w in self.cost.update(versions, costs, values):
            watched += self._cost_check(w, int(rows[counted[w["row"]]]), labelled_window)
        return watched

    def _cost_check(self, window: Mapping[str, Any], row: int, labelled_window: LabelledWindow) -> list[Watched]:
        """The test of the window's mean cost against the reference's (the first window's): the accuracy test,
        one-sided, on the mean cost with its standard error."""
        report = window["report"]
        if self.cost_degradation is None or report["cost"] is None or report["cost_se"] is None:
            return []
        verdict = self.cost_degradation.check(report["cost"], report["costed"], report["cost_se"])
        if verdict is None:  # the first window sets the reference
            return []
        at, start_stream = labelled_window(window, row)
        versions = {v: r["rows"] for v, r in report["versions"].items()}  # as of the closing row
        details = {
            "metric": "cost",
            "reference": verdict.reference,
            "confidence_bound": verdict.bound,
            "tolerance": self.model.cost_tolerance,
            "costed": report["costed"],
            "cost_per_version": {v: r["cost"] for v, r in report["versions"].items() if r["cost"] is not None},
        }
        if self.expected_cost is not None:
            details["expected_cost"] = self.expected_cost.estimate("window")  # of the latest predictions
        alpha = self.settings.degradation_alpha
        return [
            degradation_watch(
                verdict,
                alarm="cost",
                detector="cost",
                alpha=alpha,
                position=window["position"],
                window=at,
                row=row,
                details=details,
                versions=versions,
                start_stream=start_stream,
            )
        ]

    def summary(self) -> dict[str, Any] | None:
        """Cost and value, windowed and cumulative; the expected cost from scores; the cost test's reference."""
        if self.cost is None and self.expected_cost is None:
            return None
        return {
            "window": self.cost.report("window") if self.cost is not None else {},
            "cumulative": self.cost.report("cumulative") if self.cost is not None else {},
            "expected_cost": self.expected_cost.estimate("window") if self.expected_cost is not None else None,
            "reference_cost": self.cost_degradation.reference_value if self.cost_degradation is not None else None,
        }

    def state(self) -> dict[str, Any]:
        """Its part of the monitor's state, under ``cost``; nothing for a model without business metrics, whose
        snapshot is then the same bytes as before they existed."""
        parts = {
            "metrics": self.cost.state() if self.cost is not None else None,
            "expected": self.expected_cost.state() if self.expected_cost is not None else None,
            "degradation": self.cost_degradation.state() if self.cost_degradation is not None else None,
            "expected_degradation": (
                self.expected_degradation.state() if self.expected_degradation is not None else None
            ),
            "expected_marks": self.expected_marks if self.expected_cost is not None else None,
        }
        return {"cost": parts} if any(part is not None for part in parts.values()) else {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Load its part of a monitor's ``state`` (none before business metrics, or for a model without them)."""
        business = state.get("cost") or {}
        if business.get("metrics") is not None:
            s = self.settings
            self.cost = CostMetrics(s.window_size, s.subwindows, s.max_versions)
            self.cost.load_state(business["metrics"])
        if self.expected_cost is not None and business.get("expected") is not None:
            self.expected_cost.load_state(business["expected"])
        if self.cost_degradation is not None and business.get("degradation") is not None:
            self.cost_degradation.load_state(business["degradation"])
        if self.expected_degradation is not None and business.get("expected_degradation") is not None:
            self.expected_degradation.load_state(business["expected_degradation"])
        self.expected_marks = [list(m) for m in business.get("expected_marks") or []]
