"""Issue 22, item 3: a new model version starts its own reference. A retrained model's outputs and errors
legitimately differ from the old version's: its prediction drift and concept drift are measured against its
own first predictions, its inputs and labels against the reference they had (the world's, not the model's)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from streamdrift import Monitor, MonitorSettings
from streamdrift.core import state as codec
from streamdrift.core.monitor import ModelMonitor

SETTINGS = MonitorSettings(reference_size=500, window_size=200, subwindows=4, concept_warmup=500)
T0 = 1_700_000_000
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "drift_event.schema.json").read_text())


BLOCK = 100  # predictions, then their labels


def served(n: int, switch_at: int | None, seed: int, v2_scores: bool = True, v2_rise_at: int | None = None) -> list:
    """``n`` predictions, each block of 100 followed by their labels; prediction i and its label at offset i of
    their streams. The world keeps one distribution: an input ``x`` and a label, each 0 or 1 half the time. v1
    is wrong 30 % of the time and scores 0.6 ± 0.1 what it predicts; from ``switch_at`` on, v2 (a retrained
    model) is wrong 10 % of the time (from ``v2_rise_at`` on, 25 %) and, with ``v2_scores``, more sure of
    itself: 0.85 ± 0.1. The predictions stay 1 half the time whatever the version."""
    rng = np.random.default_rng(seed)
    predictions, labels = [], []
    for i in range(n):
        x, label = float(rng.random()), int(rng.random() < 0.5)
        v2 = switch_at is not None and i >= switch_at
        wrong = rng.random() < (0.25 if v2_rise_at is not None and i >= v2_rise_at else 0.1 if v2 else 0.3)
        prediction = label ^ int(wrong)
        sure = round((0.85 if v2 and v2_scores else 0.6) + 0.1 * float(rng.random() - 0.5) * 2, 4)
        score = sure if prediction else round(1 - sure, 4)
        common = {"event_id": f"e{i}", "model_id": "m", "model_version": "v2" if v2 else "v1", "timestamp": T0 + i}
        predictions.append({**common, "features": {"x": x}, "prediction": prediction, "score": score})
        labels.append({**common, "label": label})
    return [e for at in range(0, n, BLOCK) for e in predictions[at : at + BLOCK] + labels[at : at + BLOCK]]


def predictions_of(stream: list[dict]) -> list[dict]:
    return [e for e in stream if "label" not in e]


def kinds(events: list[dict]) -> list[tuple]:
    """Each drift event's kind, raising offset and version; not the version comparison's (both versions served
    in a window, v1 surely worse: a rollback event, tests/unit/test_window_versions.py)."""
    return [
        (e["kind"], e["window"]["end_offset"], e["model_version"])
        for e in events
        if e["detector"] != "version_comparison"
    ]


def test_a_new_version_is_compared_with_its_own_first_predictions_not_with_the_old_version() -> None:
    """v1 serves 3,000 predictions, v2 (other scores, the same inputs) the next 3,000. The outputs' sketch learns
    its reference again from v2's first 500 predictions (offsets 3,000 to 3,499 of the predictions): a
    rebaselined event at 3,499 names v2, and no prediction_drift fires, where against v1's reference it did."""
    events = Monitor("m", SETTINGS).observe(served(6000, 3000, seed=1))
    assert kinds(events) == [("rebaselined", 3499, "v2")]
    (news,) = [e for e in events if e["kind"] == "rebaselined"]
    assert news["details"]["rebaselines"] == {"kind": "prediction_drift", "alert_id": None, "model_version": "v2"}
    assert (news["window"]["start_offset"], news["window"]["count"]) == (3000, 500)
    jsonschema.validate({**news, "emitted_at": "2024-01-01T00:00:00Z"}, SCHEMA)
    # against v1's reference (as if v2 had been served before), v2's other scores are prediction drift
    before = Monitor("m", SETTINGS)
    before._monitor.versions_served = ["v2"]
    before._monitor.versions_graded = ["v2"]
    assert [k for k, _, _ in kinds(before.observe(served(6000, 3000, seed=1)))] == ["prediction_drift"]


def test_the_new_versions_reference_then_sees_its_own_drift() -> None:
    """After v2's reference, v2's own scores moving is prediction drift again, against v2's reference."""
    stream = served(6000, 3000, seed=2)
    for event in predictions_of(stream)[4500:]:  # v2 from its 1,500th prediction on: less sure, as v1 was
        event["score"] = round(0.5 + (event["score"] - 0.5) * 0.6 / 0.85, 4)
    assert kinds(Monitor("m", SETTINGS).observe(stream)) == [
        ("rebaselined", 3499, "v2"),
        ("prediction_drift", 4549, "v2"),
    ]


def test_the_concept_detector_learns_the_new_versions_error_rate_from_its_first_graded_prediction() -> None:
    """v1 is wrong 30 % of the time, v2 10 %, then 25 % from its 1,000th prediction: against v1's reference
    (30 %) that rise is invisible; against v2's own (learnt from its first 500 graded predictions) it is
    concept drift, whose window starts where v2's reference was set."""
    stream = served(8000, 3000, seed=3, v2_rise_at=4000)
    events = Monitor("m", SETTINGS).observe(stream)
    concept = [e for e in events if e["kind"] == "concept_drift"]
    assert [(e["window"]["start_offset"], e["window"]["end_offset"], e["model_version"]) for e in concept] == [
        (3500, 4423, "v2")  # v2's reference error rate set at its 500th graded prediction, the rise found 423 later
    ]
    assert concept[0]["details"]["reference_error_rate"] == 0.098
    # the same stream against v1's error rate (as if v2 had been served before): nothing to see
    before = Monitor("m", SETTINGS)
    before._monitor.versions_served = ["v2"]
    before._monitor.versions_graded = ["v2"]
    assert [e for e in before.observe(stream) if e["kind"] == "concept_drift"] == []


@pytest.mark.parametrize("batch", [1, 97])
def test_a_new_versions_references_are_a_function_of_the_stream_whatever_the_batches_and_restores(
    batch: int,
) -> None:
    """The same drift events and the same state bytes as one call over the whole stream for events fed one or
    97 at a time (batches of one row, and runs cut anywhere), with a save and restore in the middle of v2's
    reference."""
    stream = served(3000, 1500, seed=4, v2_rise_at=2000)
    whole = Monitor("m", SETTINGS)
    expected = whole.observe(stream)
    assert [k for k, _, _ in kinds(expected)] == ["rebaselined", "concept_drift"]
    monitor, got = Monitor("m", SETTINGS), []
    for at in range(0, len(stream), batch):
        if at <= 2 * 1700 < at + batch:  # in the middle of v2's reference (its predictions 1,500 to 1,999)
            monitor = Monitor.restore(monitor.save())
        got += monitor.observe(stream[at : at + batch])
    assert got == expected
    assert monitor.save() == whole.save()


def test_versions_of_the_first_reference_and_versions_served_before_start_nothing() -> None:
    """An A/B test from the start (v1 and v2 alternate from the first prediction): both are in the first
    reference, no new one. A rollback to v1 after v2 took over: v1 was served before, no new reference."""
    stream = served(4000, None, seed=5)
    for event in stream:
        event["model_version"] = ("v1", "v2")[int(event["event_id"][1:]) % 2]
    assert kinds(Monitor("m", SETTINGS).observe(stream)) == []
    rollback = served(6000, 2000, seed=6, v2_scores=False)
    for event in rollback:
        if int(event["event_id"][1:]) >= 4000:
            event["model_version"] = "v1"
    assert kinds(Monitor("m", SETTINGS).observe(rollback)) == [("rebaselined", 2499, "v2")]


def test_a_snapshot_from_before_versions_had_references_knows_the_version_it_served() -> None:
    """A state without ``versions_served`` (written before) takes the versions it knows of, so its next
    prediction of the version it served starts nothing."""
    first = Monitor("m", SETTINGS)
    first.observe(served(1000, None, seed=7))
    tree = codec.loads(first.save())
    for key in ("versions_served", "versions_graded", "outputs_version"):
        del tree["state"][key]
    monitor = ModelMonitor.from_state("m", SETTINGS, tree["state"])
    assert monitor.versions_served == ["v1"] and monitor.versions_graded == ["v1"]
