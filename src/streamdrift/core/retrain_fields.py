"""What a model's ``retrain`` events carry beyond the test (issue 23): the retrain budget they spend, the data a
retrain should learn from (``training_window``) and where the features' reference came from (``reference_window``).

``RetrainFields.fill`` is one pass over a batch's drift events in stream order: it notes where ``data_quality``
conditions begin and end (the latest ``MAX_QUALITY_STRETCHES``) and where the features' reference came from
(the warm-up, noted row by row as it comes, or a rebaseline), spends the budget (``policy.RetrainLedger``) at
the event time of the row that raised each ``retrain`` event, and gives every ``retrain`` event left its
windows. Being one pass in stream order, none of it depends on where batches end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from streamdrift.core.decode import event_seconds
from streamdrift.core.policy import REBASELINED, RESOLVED, RetrainLedger, rfc3339
from streamdrift.core.records import FeedbackBatch, PredictionBatch

MAX_QUALITY_STRETCHES = 16  # data_quality conditions a model remembers for its retrain events' training windows


class RetrainFields:
    """A model's retrain budget and what its ``retrain`` events' windows are made from.

    Parameters
    ----------
    ledger
        The model's retrain budget; None: no budget, every ``retrain`` stands.
    profile
        Whether the features' reference is a profile's (from outside the stream).
    """

    def __init__(self, ledger: RetrainLedger | None, profile: bool) -> None:
        self.ledger = ledger
        self.profile = profile
        # [start, end or None while active, reason] of the latest data_quality conditions (event-time seconds)
        self.quality_stretches: list[list[Any]] = []
        self.reference_times: list[Any] | None = None  # [first, last, "warm-up" | "rebaseline"]
        self.warmup_times: list[float] | None = None  # the event-time range of the warm-up's rows so far
        # set by a batch that completes the warm-up, for the stream-order pass: (its last row's offset, range)
        self._reference_at: tuple[int, list[Any]] | None = None

    def note_warmup(self, batch: PredictionBatch, rows: int) -> None:
        """The batch's first ``rows`` rows are rows of the features' warm-up: note their event-time range, and
        where the reference is complete if it is at one of them (retrain events from that row on name it)."""
        times = batch.timestamps[:rows]
        low, high = float(np.minimum.reduce(times)), float(np.maximum.reduce(times))
        known = self.warmup_times or [low, high]
        self.warmup_times = [min(known[0], low), max(known[1], high)]
        if rows <= len(batch):
            self._reference_at = (int(batch.offsets[rows - 1]), [*self.warmup_times, "warm-up"])

    def fill(self, events: list[dict[str, Any]], batch: PredictionBatch | FeedbackBatch) -> list[dict[str, Any]]:
        """A batch's events in stream order (so where the batches end never matters): note where data_quality
        conditions begin and end and where the features' reference came from; spend the retrain budget on
        ``retrain`` events at the event time of the row that raised each (one over it keeps its kind and
        statistics but becomes ``investigate``, with a ``budget`` field); give every ``retrain`` event left
        its ``training_window`` and ``reference_window``."""
        for event in events:
            kind = event["kind"]
            if self._reference_at is not None and event["window"]["end_offset"] >= self._reference_at[0]:
                self.reference_times, self._reference_at = self._reference_at[1], None
            if kind == "data_quality":
                reason = f"data_quality: {event['detector']} of {event['feature']}"
                self.quality_stretches.append([event_seconds(event["window"]["start_time"]), None, reason])
                del self.quality_stretches[:-MAX_QUALITY_STRETCHES]
            elif kind == RESOLVED and event["details"]["resolves"]["kind"] == "data_quality":
                for stretch in self.quality_stretches:
                    if stretch[1] is None:
                        stretch[1] = event_seconds(event["window"]["end_time"])
            elif kind == REBASELINED and event["details"]["rebaselines"]["kind"] == "data_drift":
                window = event["window"]
                first, last = event_seconds(window["start_time"]), event_seconds(window["end_time"])
                self.reference_times = [first, last, "rebaseline"]
            if event["action"] != "retrain":
                continue
            row = int(np.searchsorted(batch.offsets, event["window"]["end_offset"]))  # the raising row
            at = float(batch.timestamps[row])
            over = self.ledger.spend(at) if self.ledger is not None else None
            if over is not None:
                event["action"] = "investigate"
                event["budget"] = {**over, "next_allowed_at": rfc3339(over["next_allowed_at"])}
                continue
            event["training_window"] = self.training_window(event, at)
            event["reference_window"] = self.reference_window()
        if self._reference_at is not None:
            self.reference_times, self._reference_at = self._reference_at[1], None
        return events

    def training_window(self, event: Mapping[str, Any], end: float) -> dict[str, Any]:
        """The data a retrain should learn from: from the change's estimated start (``change_started_at``,
        else the window's start) to the event, without the stretches where a data_quality condition was
        active (from its event's window start to its ``drift_resolved``, or the event if still active)."""
        start = min(event_seconds(event.get("change_started_at", event["window"]["start_time"])), end)
        exclude = []
        for first, last, reason in self.quality_stretches:
            first, last = max(first, start), min(end if last is None else last, end)
            if first <= last:
                exclude.append({"start_time": rfc3339(first), "end_time": rfc3339(last), "reason": reason})
        return {"start_time": rfc3339(start), "end_time": rfc3339(end), "exclude": exclude}

    def reference_window(self) -> dict[str, Any]:
        """The events the features' current reference came from: ``source`` warm-up or rebaseline, with their
        event-time range; ``profile`` (from outside the stream), ``none`` (the warm-up is not complete) or
        ``unknown`` (a snapshot from before they were noted), without."""
        if self.reference_times is None:
            return {"source": "profile" if self.profile else "none"}
        first, last, source = self.reference_times
        if first is None:
            return {"source": source}
        return {"source": source, "start_time": rfc3339(first), "end_time": rfc3339(last)}

    def state(self) -> dict[str, Any]:
        """Its part of the monitor's state (keys of the monitor's own, as before it was a class of its own)."""
        return {
            "quality_stretches": self.quality_stretches,
            "reference_times": self.reference_times,
            "warmup_times": self.warmup_times,
            "retrain_budget": self.ledger.state() if self.ledger is not None else None,
        }

    def load_state(self, state: Mapping[str, Any], reference_ready: bool) -> None:
        """Load its part of a monitor's ``state``; ``reference_ready``: the features' reference is complete."""
        # none before issue 23: no data_quality stretch known, the reference's events unknown
        self.quality_stretches = [list(q) for q in state.get("quality_stretches", [])]
        self.reference_times = list(state["reference_times"]) if state.get("reference_times") else None
        if "reference_times" not in state and reference_ready and not self.profile:
            self.reference_times = [None, None, "unknown"]  # a warm-up reference whose events were not noted
        self.warmup_times = list(state["warmup_times"]) if state.get("warmup_times") else None
        if self.ledger is not None and state.get("retrain_budget"):  # none before budgets: empty
            self.ledger.load_state(state["retrain_budget"])
