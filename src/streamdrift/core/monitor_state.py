"""A ``ModelMonitor``'s state as plain data, and back: what a snapshot of one model holds (``capture``) and how
one loads, older ones included (``restore``: what each older snapshot lacks, and what stands in for it).

The keys name the monitor's own attributes; the parts with a state of their own (sketches, concept detector,
policy, join, metrics, retrain fields, business metrics) write and load theirs. The sketches are restored
by the monitor's constructor (``ModelMonitor(..., state=...)``), which lays them out from it; ``restore``
loads the rest. ``core/state.py`` encodes the result: keys sorted, arrays raw, so equal states are equal bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from streamdrift.core.sketch import NO_VERSION, OTHER_VERSION

if TYPE_CHECKING:
    from streamdrift.core.monitor import ModelMonitor

# the counters and marks a snapshot holds as they are
PLAIN = (
    "predictions_total",
    "feedback_total",
    "labelled_total",
    "errors_total",
    "last_version",
    "last_event_time",
    "schedule_from",
    "last_drift",
)


def capture(monitor: ModelMonitor) -> dict[str, Any]:
    """The monitor's state: numbers, names and numpy arrays of numbers, nothing to execute on load."""
    m = monitor
    return {
        "quarantined": m.quarantined,
        "predictions_total": m.predictions_total,
        "feedback_total": m.feedback_total,
        "labelled_total": m.labelled_total,
        "errors_total": m.errors_total,
        "last_version": m.last_version,
        "last_event_time": m.last_event_time,
        "schedule_from": m.schedule_from,
        "last_drift": m.last_drift,
        "subwindow_marks": m.subwindow_marks,
        "concept_from": m.concept_from,
        "concept_versions": m.concept_versions,
        "relearning": m.relearning,
        "versions_served": m.versions_served,
        "versions_graded": m.versions_graded,
        "outputs_version": m.outputs_version,
        "change_from": m.change_from,
        "drift_events": m.drift_events,
        "quality": m.quality_rates.copy(),
        "features": m.features.state(),
        "outputs": m.outputs.state(),
        "attributions": m.attributions.state(),
        "attribution_means": m.attribution_means.state(),
        "labels": m.labels.state(),
        "multivariate": m.multivariate.state() if m.multivariate is not None else None,
        "concept": m.concept.state(),
        "policy": m.policy.state(),
        "task": m.task,
        "join": m.join.state(),
        "performance": m.performance.state() if m.performance else None,
        "performance_report": orjson.Fragment(m.performance_report_json),
        "cbpe": m.cbpe.state(),
        "versions": m.versions.state(),
        "degradation": m.degradation.state(),
        "segments": m.segments.state() if m.segments is not None else None,
        **m.retraining.state(),
        **m.business.state(),
    }


def restore(monitor: ModelMonitor, state: Mapping[str, Any]) -> None:
    """Load ``state`` (``capture``'s, of this version or an older one) into a monitor made from it."""
    m = monitor
    for key in PLAIN:
        setattr(m, key, state[key])
    m.drift_events = dict(state["drift_events"])
    m.quarantined = state.get("quarantined")  # snapshots written before quarantines have none
    # snapshots written before windows named their labelled events have none of these
    m.subwindow_marks = [list(mark) for mark in state.get("subwindow_marks", [])]
    m.concept_from = list(state["concept_from"]) if state.get("concept_from") else None
    m.concept_versions = dict(state.get("concept_versions", {}))
    m.relearning = {k: list(v) if v else None for k, v in state.get("relearning", {}).items()}
    m.change_from = list(state.get("change_from", []))  # none before issue 22: the window's start
    if "versions_served" in state:
        m.versions_served = list(state["versions_served"])
        m.versions_graded = list(state["versions_graded"])
        m.outputs_version = state["outputs_version"]
    else:  # a snapshot from before new versions had references of their own: the versions it knows of
        known = [v for v in m.concept_versions if v not in (NO_VERSION, OTHER_VERSION)]
        last = [m.last_version] if m.last_version is not None else []
        m.versions_served = [v for v in sorted(known) if v not in last] + last
        m.versions_graded = sorted(set(known + last))
    m.retraining.load_state(state, reference_ready=m.features.ready)
    rates = len(m.quality_rates)  # one row per rate, a column per feature
    m.quality_rates = np.array(state["quality"], dtype=np.float64).reshape(rates, -1)
    if m.multivariate is not None and state.get("multivariate") is not None:
        m.multivariate.load_state(state["multivariate"])  # none: turned on since, it learns from here
    m.concept.load_state(state["concept"])
    m.policy.load_state(state["policy"])
    m.task = state["task"]
    m.join.load_state(state["join"])
    if state["performance"] is not None:
        m.start_performance([], []).load_state(state["performance"])
    m.performance_report = state["performance_report"]  # encoded once here, not at each checkpoint
    m.cbpe.load_state(state["cbpe"])
    m.versions.load_state(state["versions"])
    m.degradation = m.degradation_test()
    m.degradation.load_state(state["degradation"])
    if m.segments is not None and state["segments"] is not None:
        m.segments.load_state(state["segments"])
    m.business.load_state(state)
