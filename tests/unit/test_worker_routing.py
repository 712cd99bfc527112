"""The worker's side of misrouted records (issue 20): what it produces for them, what it counts and logs."""

from __future__ import annotations

import logging

import orjson
import pytest

from streamdrift.core.records import RawMessage
from streamdrift.core.routing import FORWARDED_FROM, murmur2_partition
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker

FB = "streamdrift.feedback"


class RecordingProducer:
    def __init__(self) -> None:
        self.produced: list[dict] = []

    def produce(self, topic, value, key, **kwargs) -> None:
        self.produced.append({"topic": topic, "value": value, "key": key, **kwargs})

    def poll(self, timeout: float) -> int:
        return 0


def _worker(tmp_path, **settings) -> Worker:
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path, **settings))
    worker.producer = RecordingProducer()  # type: ignore[assignment]
    worker.partition_count = 3
    worker.partitions = {1: worker._new_state(1)}
    return worker


def _labels(n: int, model_id: str = "model-b") -> list[RawMessage]:
    """Labels of ``model_id`` (murmur2: partition 2) that landed on partition 1, with a header of their own."""
    value = orjson.dumps({"event_id": "e", "model_id": model_id, "timestamp": 1_700_000_000, "label": 1})
    return [RawMessage(FB, 1, offset, model_id.encode(), value, 1_700_000_000_000 + offset, [("trace", b"t1")])
            for offset in range(n)]  # fmt: skip


def test_a_misrouted_record_is_forwarded_unchanged_to_its_partition_with_its_origin(tmp_path, caplog) -> None:
    worker = _worker(tmp_path)
    engine = worker.partitions[1].engine
    with caplog.at_level(logging.WARNING, logger="streamdrift.worker"):
        worker._routed(1, FB, engine.add(FB, _labels(2)))
        worker._routed(1, FB, engine.add(FB, _labels(3)[2:]))
    produced = worker.producer.produced  # type: ignore[attr-defined]
    assert [(p["topic"], p["partition"], p["key"], p["timestamp"]) for p in produced] == [
        (FB, murmur2_partition(b"model-b", 3), b"model-b", 1_700_000_000_000 + offset) for offset in range(3)
    ]
    assert produced[0]["value"] == _labels(1)[0].value
    assert produced[2]["headers"] == [("trace", b"t1"), (FORWARDED_FROM, f"{FB}/1/2".encode())]
    assert worker.m_misrouted.labels(FB)._value.get() == 3
    assert worker.view.status()["misrouted"] == {FB: 3}
    warnings = [r for r in caplog.records if r.getMessage().startswith("misrouted records")]
    assert len(warnings) == 1  # one per topic and minute
    assert warnings[0].fields["likely_partitioner"] == "consistent_random (CRC32)"  # type: ignore[attr-defined]
    assert "partitioner=murmur2_random" in warnings[0].fields["fix"]  # type: ignore[attr-defined]
    assert b"model-b" not in str(warnings[0].fields).encode()  # type: ignore[attr-defined]  # names, not values


@pytest.mark.parametrize(("mode", "dead_letters", "forwards"), [("dead_letter", 2, 0), ("process", 0, 0)])
def test_the_other_modes(tmp_path, mode: str, dead_letters: int, forwards: int) -> None:
    worker = _worker(tmp_path, misrouted=mode)
    worker._routed(1, FB, worker.partitions[1].engine.add(FB, _labels(2)))
    produced = worker.producer.produced  # type: ignore[attr-defined]
    dead = [p for p in produced if p["topic"] == worker.topics.dead_letter]
    assert len(dead) == dead_letters and len(produced) - len(dead) == forwards
    assert all(dict(p["headers"])["streamdrift.reason"] == b"misrouted" for p in dead)
    assert worker.m_misrouted.labels(FB)._value.get() == 2  # counted whatever is done with them
