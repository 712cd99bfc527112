"""A prediction waits in the join with the segment attributes its model's metrics read, no others.

The join held each prediction's whole ``segment`` until its label came, and wrote it in the model's state, though
only a model's ``segment_attributes`` are read (by its segment metrics, when it has some): a producer's other
attributes cost memory (32 of them per prediction, up to ``join_max_pending`` predictions per model: review
helper-88) and put users' values in snapshots and the state topic for nothing.
"""

from __future__ import annotations

import orjson

from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage

P, F = "predictions", "feedback"
SETTINGS = MonitorSettings(reference_size=50, window_size=100, subwindows=5)
SEGMENT = {"region": "eu", "ssn": "078-05-1120", **{f"extra{i}": f"value-{i}" for i in range(30)}}


def _engine() -> PartitionEngine:
    models = {"segmented": ModelSettings(segment_attributes=["region"], sensitive_attribute="region")}
    return PartitionEngine(0, P, F, monitor_factory(SETTINGS, models), epoch_ms=1000)


def _records(topic: str, model: str, n: int) -> list[RawMessage]:
    out = []
    for i in range(n):
        event = {"event_id": f"{model}-{i}", "model_id": model, "timestamp": 1_700_000_000 + i}
        if topic == P:
            event |= {"features": {"x": float(i)}, "prediction": i % 2, "segment": SEGMENT}
        else:
            event |= {"label": (i // 2) % 2}
        out.append(RawMessage(topic, 0, i, None, orjson.dumps(event), (1_700_000_000 + i) * 1000))
    return out


def _state_text(engine: PartitionEngine, model: str) -> bytes:
    return orjson.dumps(engine.monitor(model).state(), option=orjson.OPT_SERIALIZE_NUMPY)


def test_a_waiting_prediction_holds_only_the_segment_attributes_its_model_reads() -> None:
    engine = _engine()
    for model in ("plain", "segmented"):
        engine.add(P, _records(P, model, 40))
    engine.release(ended={P, F})
    plain, segmented = _state_text(engine, "plain"), _state_text(engine, "segmented")
    for model in ("plain", "segmented"):  # waiting for their labels
        assert engine.monitor(model).join.counters()["pending_predictions"] == 40
    assert b"078-05-1120" not in plain and b"value-1" not in plain and b'"eu"' not in plain
    assert b"078-05-1120" not in segmented and b"value-1" not in segmented and b'"eu"' in segmented
    # and the bytes the join counts against join_max_pending_bytes are those it holds
    assert engine.monitor("plain").join.counters()["pending_prediction_bytes"] < 40 * 200


def test_the_segment_metrics_count_the_region_as_before() -> None:
    engine = _engine()
    engine.add(P, _records(P, "segmented", 120))
    engine.add(F, _records(F, "segmented", 120))
    engine.release(ended={P, F})
    report = engine.monitor("segmented").segments.report("window")["segments"]
    assert list(report) == ["region"] and list(report["region"]) == ["eu"]
    assert report["region"]["eu"]["rows"] == 100  # the window's labelled pairs, all of region eu
