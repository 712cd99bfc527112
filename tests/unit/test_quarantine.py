"""Issue 17, findings 1 and 8: no model can stop the engine, and no model id can hold a slot for good.

A model whose processing raises is quarantined (frozen state, its records rejected with
``processing_error``, counted), and that survives a snapshot; ``max_models`` holds per
partition (tests/unit/test_model_budget.py: whatever else the worker owns); idle models are
evicted in event time.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.metrics.regression import RegressionMetrics
from streamdrift.core.monitor import ModelMonitor, monitor_factory
from streamdrift.core.policy import drift_event
from streamdrift.core.records import RawMessage
from streamdrift.core.state import Snapshot, decode, encode

P, F = "predictions", "feedback"
SETTINGS = MonitorSettings(reference_size=50, window_size=100, subwindows=5)


def _engine(**kwargs) -> PartitionEngine:
    return PartitionEngine(0, P, F, monitor_factory(SETTINGS), epoch_ms=1000, **kwargs)


def _prediction(offset: int, model: str, t: float, x: float = 1.0) -> RawMessage:
    value = {"event_id": f"{model}-{offset}", "model_id": model, "timestamp": t, "features": {"x": x}, "prediction": x}
    return RawMessage(P, 0, offset, None, orjson.dumps(value), int(t * 1000))


def _saved(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` as a restart reads it back (the state codec, as a store writes it)."""
    return decode(encode(snapshot, "c"), "c", "test")


def _run(engine: PartitionEngine, records: list[RawMessage]):
    engine.add(P, records)
    return engine.release(ended={P, F})


def test_regression_metrics_of_huge_values_do_not_raise() -> None:
    """The poison pill's first victim: Python floats squared raised OverflowError in ``report``."""
    metrics = RegressionMetrics(window_size=4, subwindows=2)
    metrics.update([1e155] * 5, [0.0] * 5)
    for scope in ("window", "cumulative"):
        report = metrics.report(scope)
        assert report["mae"] == 1e155 and report["rmse"] is None and report["mae_se"] is None


def test_a_drift_event_never_carries_an_infinite_statistic() -> None:
    common = dict(model_id="m", model_version=None, kind="data_drift", detector="psi", feature="x", p_value=None)
    window = {"start_time": 0.0, "end_time": 1.0, "count": 1, "start_offset": 0, "end_offset": 0}
    rest = dict(window=window, stream=P, partition=0, top_features=[], action="none", detected_at=1.0)
    assert drift_event(statistic=1.0, threshold=0.5, **common, **rest)["statistic"] == 1.0
    with pytest.raises(ValueError, match="statistic is not finite"):
        drift_event(statistic=math.inf, threshold=0.5, **common, **rest)


@pytest.fixture
def failing(monkeypatch):
    """Model 'bad' raises on the prediction of 13.0 (an accepted event: the failure stands for any bug)."""
    observe = ModelMonitor.observe_predictions

    def observe_or_fail(self, batch):
        if self.model_id == "bad" and 13.0 in batch.predictions:
            raise ZeroDivisionError("a message that may quote the value 13.0")
        return observe(self, batch)

    monkeypatch.setattr(ModelMonitor, "observe_predictions", observe_or_fail)


def test_a_model_whose_processing_raises_is_quarantined_not_the_engine(failing, caplog) -> None:
    engine = _engine(batch_size=4)
    records = [_prediction(i, "bad" if i % 2 else "good", 1000 + i, 13.0 if i == 5 else 1.0) for i in range(12)]
    out = _run(engine, records)
    rejected = {r.message.offset: r.reason for r in out.rejected}
    # the batch that raised (offsets 5 and 7 of the slice 4..7) and every later one of the model
    assert sorted(rejected) == [5, 7, 9, 11]
    assert rejected[5].startswith("processing_error: ZeroDivisionError at test_quarantine.py:")
    assert rejected[5].endswith("model 'bad' quarantined") and "13.0" not in rejected[5]
    assert rejected[9] == "processing_error: model 'bad' is quarantined"
    assert engine.processing_errors == 1 and engine.quarantined_models == 1
    assert engine.monitors["bad"].predictions_total == 0  # frozen as a fresh state (the docstring says why)
    assert engine.monitors["good"].predictions_total == 6
    assert engine.monitors["bad"].quarantined == {
        "error": "ZeroDivisionError",
        "where": engine.monitors["bad"].quarantined["where"],
        "topic": P,
    }
    assert "a message that may quote" not in caplog.text

    restored = _engine(batch_size=4)
    restored.restore(_saved(engine.snapshot()))
    assert restored.quarantined_models == 1
    out = _run(restored, [_prediction(12, "good", 1012), _prediction(13, "bad", 1013)])
    assert [(r.message.offset, r.reason) for r in out.rejected] == [
        (13, "processing_error: model 'bad' is quarantined")
    ]
    assert restored.monitors["good"].predictions_total == 7


def test_the_quarantine_depends_on_the_events_not_on_the_slicing(failing) -> None:
    records = [
        _prediction(i, "bad" if i % 3 == 0 else "good", 1000 + i, 13.0 if i == 9 else float(i)) for i in range(60)
    ]
    snapshots = []
    for batch_size in (1, 7, 1000):
        engine = _engine(batch_size=batch_size)
        _run(engine, records)
        snapshots.append(encode(engine.snapshot(), "c"))
    assert snapshots[0] != b"" and len(set(snapshots)) == 1


def test_max_models_bounds_each_engine_on_its_own() -> None:
    engines = [_engine(max_models=2), _engine(max_models=2)]
    _run(engines[0], [_prediction(i, f"a{i}", 1000 + i) for i in range(3)])
    _run(engines[1], [_prediction(i, f"b{i}", 1000 + i) for i in range(2)])
    assert (sorted(engines[0].monitors), sorted(engines[1].monitors)) == (["a0", "a1"], ["b0", "b1"])
    assert (engines[0].unmonitored_events, engines[1].unmonitored_events) == (1, 0)


def test_idle_models_are_evicted_in_event_time_and_free_their_slot() -> None:
    day = 86400.0
    engine = _engine(max_models=2, model_idle_ttl_s=day)
    burst = [_prediction(i, f"oneoff{i}", 1000 + i) for i in range(2)]
    _run(engine, burst)
    out = _run(engine, [_prediction(2, "real", 1000 + 0.5 * day)])
    assert sorted(engine.monitors) == ["oneoff0", "oneoff1"] and engine.unmonitored_events == 1
    out = _run(engine, [_prediction(3, "real", 1002 + day), _prediction(4, "real", 1003 + day)])
    assert not out.rejected and engine.unmonitored_events == 2  # at 1002 + day the clock is 1000 + 0.5 day
    # the clock passed 1001 + day before the second row: both one-offs idle, that row takes a slot
    assert engine.evicted_models == 2 and engine.monitors["real"].predictions_total == 1
    _run(engine, [_prediction(5, "real", 1004 + day)])
    assert sorted(engine.monitors) == ["real"] and engine.monitors["real"].predictions_total == 2


def test_an_idle_model_that_comes_back_starts_afresh_whatever_the_slicing() -> None:
    day = 86400.0
    records = [_prediction(0, "m", 1000), _prediction(1, "other", 1000 + 2 * day), _prediction(2, "m", 1001 + 2 * day)]
    states = []
    for batch_size in (1, 2, 3):
        engine = _engine(model_idle_ttl_s=day, batch_size=batch_size)
        _run(engine, records)
        assert engine.evicted_models == 1
        assert engine.monitors["m"].predictions_total == 1  # the event at t=1000 was forgotten with its model
        states.append(encode(engine.snapshot(), "c"))
    assert states[0] == states[1]


def test_the_event_clock_survives_a_restart_and_a_restore_evicts_again() -> None:
    day = 86400.0
    engine = _engine(model_idle_ttl_s=day)
    _run(engine, [_prediction(0, "m", 1000), _prediction(1, "other", 1000 + 0.5 * day)])
    snapshot = engine.snapshot()
    assert snapshot.merge["event_clock"] == 1000 + 0.5 * day
    restored = _engine(model_idle_ttl_s=day)
    restored.restore(_saved(snapshot))
    assert restored.event_clock == 1000 + 0.5 * day and sorted(restored.monitors) == ["m", "other"]
    _run(restored, [_prediction(2, "other", 1001 + day)])
    assert sorted(restored.monitors) == ["other"] and restored.evicted_models == 1
    stale = _saved(restored.snapshot())
    stale.models["m"] = _saved(snapshot).models["m"]  # a store that still holds the evicted model's record
    again = _engine(model_idle_ttl_s=day)
    again.restore(_saved(stale))
    assert sorted(again.monitors) == ["other"]


def test_without_a_ttl_nothing_is_evicted() -> None:
    engine = _engine()
    _run(engine, [_prediction(0, "m", 1000), _prediction(1, "other", 1000 + 1e8)])
    assert sorted(engine.monitors) == ["m", "other"] and engine.evicted_models == 0
    assert np.isfinite(engine.event_clock)


def test_a_model_whose_held_rows_raise_when_counted_is_quarantined_not_the_snapshot(monkeypatch, caplog) -> None:
    """Warm-up rows a sketch holds (``core/held.py``) are counted when a snapshot takes the model's state
    (``PartitionEngine.settle``), by the code that processing runs: where that raises (a bug), the model is
    quarantined there, as a processing error quarantines it, and the snapshot is taken."""
    from streamdrift.core.sketch import StreamSketch

    engine = _engine(batch_size=4)
    _run(engine, [_prediction(i, "bad" if i % 2 else "good", 1000.0 + i, x=float(i)) for i in range(6)])
    assert engine.monitors["bad"].features.seen == 3 and engine.monitors["bad"].features.rows == 0  # held
    add_warmup = StreamSketch._add_warmup

    def raising_for_bad(self, columns, take, numeric, fixed):
        if 5.0 in list(columns.get("x", [])):
            raise ZeroDivisionError("a message that may quote the value 5.0")
        return add_warmup(self, columns, take, numeric, fixed)

    monkeypatch.setattr(StreamSketch, "_add_warmup", raising_for_bad)
    snapshot = engine.snapshot()
    assert engine.monitors["bad"].quarantined == {
        "error": "ZeroDivisionError",
        "where": f"test_quarantine.py:{raising_for_bad.__code__.co_firstlineno + 2} (raising_for_bad)",
        "topic": None,
    }
    assert snapshot.models["bad"]["quarantined"]["error"] == "ZeroDivisionError"
    assert snapshot.models["good"]["predictions_total"] == 3 and engine.monitors["good"].quarantined is None
    assert engine.processing_errors == 1 and "5.0" not in caplog.text


def test_a_stored_state_that_cannot_be_built_at_the_restore_quarantines_its_model(caplog) -> None:
    """A state decoded at the restore (a record without a summary: a quarantined model's, or one written before
    summaries) whose body passed its checksum but cannot be built (a writer bug) stopped the worker at every
    assignment of its partition, the next owner's too. It quarantines its model, as waking such a state does."""
    engine = _engine()
    _run(engine, [_prediction(i, "bad" if i % 2 else "good", 1000.0 + i, x=float(i)) for i in range(20)])
    snapshot = _saved(engine.snapshot())
    snapshot.models["bad"]["features"] = []  # the codec gives it back as it is: only building it fails
    restored = _engine()
    restored.restore(snapshot)
    bad = restored.monitors["bad"]
    assert isinstance(bad, ModelMonitor) and bad.quarantined is not None
    assert bad.quarantined["error"] == "TypeError" and bad.quarantined["topic"] is None
    assert restored.processing_errors == 1 and restored.quarantined_models == 1
    assert restored.monitor("good").predictions_total == 10 and restored.monitor("good").quarantined is None
    assert [r.fields["during"] for r in caplog.records] == ["building its stored state"]
    # and its records are dead-lettered as a quarantined model's, its state checkpointed as such
    rejected = _run(restored, [_prediction(100, "bad", 1100.0)]).rejected
    assert [r.reason for r in rejected] == ["processing_error: model 'bad' is quarantined"]
    assert restored.snapshot().models["bad"]["quarantined"]["error"] == "TypeError"


def test_a_restored_warm_up_whose_arrays_do_not_fit_its_columns_quarantines_its_model_at_the_restore(caplog) -> None:
    """A warm-up restored is kept as stored until it is first used, which may be at a checkpoint: a state whose
    arrays have other lengths than its columns say (no writer makes one) passed the restore and every batch,
    then broke every write of the model's state, so that its partition was never checkpointed again. It is
    refused at the restore, where it quarantines its model whenever checkpoints come."""
    engine = _engine()
    _run(engine, [_prediction(i, "m", 1000.0 + i, x=float(i) * 1.37) for i in range(40)])
    snapshot = _saved(engine.snapshot())
    warmup = snapshot.models["m"]["features"]["warmup"]
    assert warmup["columns"]["x"]["buckets"] == len(warmup["steps"]) == 40  # a histogram: 40 distinct numbers
    warmup["steps"] = warmup["steps"][:-3]
    restored = _engine()
    restored.restore(snapshot)
    assert restored.monitors["m"].quarantined is not None and restored.quarantined_models == 1
    assert restored.monitors["m"].quarantined["error"] == "ValueError"
    assert [r.fields["during"] for r in caplog.records] == ["building its stored state"]
    assert restored.snapshot().models["m"]["quarantined"]["error"] == "ValueError"
