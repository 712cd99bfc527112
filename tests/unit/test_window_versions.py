"""Issue 21: a sketch-based drift event (data, prediction, label drift, data quality) names the busiest model
version of its window, counted per sub-window as the sketch's ring is, not the version of the event that
happened to close the window."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from streamdrift.core.config import MonitorSettings
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.sketch import StreamSketch, VersionTally
from streamdrift.core.state import dumps, loads
from streams import FB, PRED, run_monitors, state_bytes

# windows of 200 rows sliding by 100: they close at rows 299, 399, ... (0-based), all of them v2's below
SETTINGS = MonitorSettings(reference_size=200, window_size=200, subwindows=2)
SKETCH_KINDS = ("data_drift", "prediction_drift", "label_drift")
SCHEMA = orjson.loads((Path(__file__).resolve().parents[2] / "schemas" / "drift_event.schema.json").read_bytes())


def _version(i: int) -> str:
    """One event in five is v2's, the rest v1's: every window is 160 v1 and 40 v2, and closes on a v2."""
    return "v2" if i % 5 == 4 else "v1"


def _stream(n: int = 1000, shift_at: int = 500) -> list[RawMessage]:
    """Predictions and their feedback (both carrying the version), interleaved; from ``shift_at`` the feature,
    the prediction and the label all move."""
    rng = np.random.default_rng(21)
    messages = []
    for i in range(n):
        shifted = i >= shift_at
        x = float(rng.normal(3.0 if shifted else 0.0, 1.0))
        label = int(rng.random() < (0.9 if shifted else 0.2))
        event = {"event_id": f"e{i}", "model_id": "m", "model_version": _version(i), "timestamp": 1_700_000_000 + i}
        prediction = {**event, "features": {"x": x}, "prediction": int(x > 1.5)}
        messages.append(RawMessage(PRED, 0, i, b"m", orjson.dumps(prediction)))
        messages.append(RawMessage(FB, 0, i, b"m", orjson.dumps({**event, "label": label})))
    return messages


def test_a_sketch_drift_event_closed_by_the_minority_version_names_the_window_s_busiest():
    _, events = run_monitors(_stream(), 50, SETTINGS)
    fired = {e["kind"]: e for e in events if e["kind"] in SKETCH_KINDS}
    assert sorted(fired) == sorted(SKETCH_KINDS)
    for event in fired.values():
        end = event["window"]["end_offset"]
        assert _version(end) == "v2"  # the event that closed the window is the minority's
        assert event["window"]["count"] == 200
        assert event["details"]["versions"] == {"v1": 160, "v2": 40}
        assert event["model_version"] == "v1"
        jsonschema.validate({**event, "emitted_at": "2026-12-04T00:00:00.000Z"}, SCHEMA)


def test_window_versions_do_not_depend_on_batches_or_a_restart():
    messages = _stream()
    whole, expected = run_monitors(messages, 2000, SETTINGS)
    assert [e["details"]["versions"] for e in expected if e["kind"] in SKETCH_KINDS]
    for batch_size in (1, 7, 333):
        monitors, events = run_monitors(messages, batch_size, SETTINGS)
        assert events == expected and state_bytes(monitors) == state_bytes(whole)
    cut = 2 * 470 + 1  # mid sub-window, a prediction without its feedback yet
    first, first_events = run_monitors(messages[:cut], 100, SETTINGS)
    restored = {m: ModelMonitor.from_state(m, SETTINGS, loads(dumps(mon.state()))) for m, mon in first.items()}
    rest, rest_events = run_monitors(messages[cut:], 100, SETTINGS, restored)
    assert first_events + rest_events == expected and state_bytes(rest) == state_bytes(whole)


def test_ties_go_to_the_first_version_by_name():
    sketch = StreamSketch(2, 4, 2, 2, 5, 1)
    sketch.update({"x": [0.0, 1.0]}, np.arange(2), np.zeros(2), versions=["b", "a"])
    (scored,) = sketch.update({"x": [0.0] * 4}, np.arange(2, 6), np.zeros(4), versions=["b", "b", "a", "a"])
    assert scored["versions"] == {"a": 2, "b": 2}
    monitor = ModelMonitor("m", SETTINGS)
    x = np.random.default_rng(3).normal(size=400) + 5 * (np.arange(400) >= 250)
    messages = [
        RawMessage(PRED, 0, i, b"m", orjson.dumps(
            {"event_id": f"e{i}", "model_id": "m", "model_version": "b" if i % 2 else "a",
             "timestamp": 1_700_000_000 + i, "features": {"x": float(x[i])}, "prediction": 0}
        ))
        for i in range(400)
    ]  # fmt: skip
    _, events = run_monitors(messages, 400, SETTINGS, {"m": monitor})
    (data,) = [e for e in events if e["kind"] == "data_drift"]
    assert data["details"]["versions"] == {"a": 100, "b": 100}
    assert data["model_version"] == "a"  # the closing event (offset 299) is b's


def test_a_stream_of_unique_versions_counts_at_most_max_versions_and_other():
    tally = VersionTally(slots=4, max_versions=3)
    for slot in range(1000):
        tally.clear(slot % 4)
        tally.add(slot % 4, [f"u{slot}-{j}" for j in range(50)])
        assert len(tally.names) <= 4
    assert tally.window() == {"__other__": 197, "u996-0": 1, "u996-1": 1, "u996-2": 1}
    # a model that moves from version to version keeps naming them once the old ones have left the window
    for slot in range(4):
        tally.clear(slot)
        tally.add(slot, ["v9"] * 10)
    assert tally.window() == {"v9": 40} and tally.names == ["v9"]


@pytest.mark.parametrize("kind", ["features", "outputs", "labels"])
def test_a_snapshot_from_before_windows_counted_versions_loads_and_counts_from_there(kind):
    messages = _stream()
    cut = 2 * 470
    first, _ = run_monitors(messages[:cut], 100, SETTINGS)
    old = first["m"].state()
    old[kind] = {k: v for k, v in old[kind].items() if k != "versions"}  # as written before this change
    restored = {"m": ModelMonitor.from_state("m", SETTINGS, loads(dumps(old)))}
    _, events = run_monitors(messages[cut:], 100, SETTINGS, restored)
    assert restored["m"].state()[kind]["versions"]["names"] == ["v1", "v2"]
    assert all(e["model_version"] == "v1" for e in events if e["kind"] in SKETCH_KINDS)
