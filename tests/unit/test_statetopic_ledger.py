"""A partition's state through the Kafka state topic's records, as the worker writes them (issue 16).

The worker checkpoints ``PartitionEngine.snapshot(changed)`` (the changed models and the partition-level
state) with ``statetopic.checkpoint_records``; a restore reads the records back (``statetopic.restore``).
"""

from __future__ import annotations

import orjson

from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.state import encode
from streamdrift.runtime import statetopic
from streamdrift.runtime.statetopic import Changelog, Stored

P, F = "predictions", "feedback"
SETTINGS = MonitorSettings(reference_size=50, window_size=100, subwindows=5)
CONFIG = SETTINGS.fingerprint()
DAY = 86400.0


def engine(**kwargs) -> PartitionEngine:
    return PartitionEngine(0, P, F, monitor_factory(SETTINGS), epoch_ms=1000, **kwargs)


def prediction(offset: int, model: str, t: float) -> RawMessage:
    value = {
        "event_id": f"{model}-{offset}",
        "model_id": model,
        "timestamp": t,
        "features": {"x": 1.0},
        "prediction": 1,
    }
    return RawMessage(P, 0, offset, None, orjson.dumps(value), int(t * 1000))


def run(engine: PartitionEngine, records: list[RawMessage]) -> None:
    engine.add(P, records)
    engine.release(ended={P, F})


class Log:
    """A state-topic partition without a broker: records appended with offsets (no compaction)."""

    def __init__(self) -> None:
        self.records: list[Stored] = []

    def append(self, records: list[statetopic.Record]) -> int:
        """Append; the offset just after the last partition record."""
        after = -1
        for r in records:
            headers = dict(r.headers)
            gen = int(headers.get(statetopic.HEADER_GEN, b"0"))
            chunks = int(headers.get(statetopic.HEADER_CHUNKS, b"1"))
            self.records.append(Stored(len(self.records), r.key, r.value, gen, chunks))
            if r.key.startswith(b"partition/"):
                after = len(self.records)
        return after

    def checkpoint(self, engine: PartitionEngine, changed: set[str], changelog: Changelog) -> Changelog:
        """One checkpoint as the worker makes it: the changed models' records, the partition record, then
        (once acknowledged) the tombstones."""
        records, after = statetopic.checkpoint_records(engine.snapshot(changed), changed, changelog, CONFIG, 1 << 20)
        after.offset = self.append(records)
        self.append(statetopic.tombstones(after))
        after.garbage = set()
        return after

    def restored(self, **kwargs) -> PartitionEngine:
        snapshot, _ = statetopic.restore(0, self.records, CONFIG, "test")
        out = engine(**kwargs)
        if snapshot is not None:
            out.restore(snapshot)
        return out


def test_the_event_clock_survives_a_restore_from_the_state_topic() -> None:
    """The clock is set by a model over ``max_models``, so no monitor's last event time tells it."""
    kwargs = dict(max_models=2, model_idle_ttl_s=DAY)
    first = [prediction(0, "a", 1000), prediction(1, "b", 1000)]
    second = [prediction(2, "over_budget", 1000 + 1.5 * DAY)]  # a and b idle: evicted
    late = [prediction(3, "late", 1000 + 0.2 * DAY)]  # out of order: idle for that clock, evicted at once
    uninterrupted = engine(**kwargs)
    run(uninterrupted, first + second)
    log = Log()
    crashed = engine(**kwargs)
    run(crashed, first)
    changelog = log.checkpoint(crashed, {"a", "b"}, Changelog())
    run(crashed, second)
    log.checkpoint(crashed, set(), changelog)
    restored = log.restored(**kwargs)
    assert restored.event_clock == uninterrupted.event_clock == 1000 + 1.5 * DAY
    run(uninterrupted, late)
    run(restored, late)
    assert uninterrupted.monitors == {} and uninterrupted.evicted_models == 3
    assert encode(restored.snapshot(), CONFIG) == encode(uninterrupted.snapshot(), CONFIG)
