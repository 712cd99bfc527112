"""The worker's side of misrouted records (issue 20): what it produces for them, what it counts and logs."""

from __future__ import annotations

import logging

import orjson
import pytest
from confluent_kafka import KafkaError, Producer

from streamdrift.core.records import RawMessage
from streamdrift.core.routing import FORWARDED_FROM, forwarded_copy, murmur2_partition
from streamdrift.runtime import deadletter, kafka
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


class RealProducer(RecordingProducer):
    """A real librdkafka producer (no broker reached: nothing is delivered) whose ``produce`` decides, as in the
    worker, whether a record is accepted; what it accepts is recorded."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.real = Producer({**kafka.worker_producer_config(settings), "bootstrap.servers": "127.0.0.1:9"})

    def produce(self, topic, value, key, **kwargs) -> None:
        self.real.produce(topic, value, key, **kwargs)  # raises MSG_SIZE_TOO_LARGE over message.max.bytes
        super().produce(topic, value, key, **kwargs)


@pytest.mark.parametrize("exactly_once", [False, True])
def test_a_misrouted_record_too_large_to_forward_is_dead_lettered_without_its_value(tmp_path, exactly_once) -> None:
    """The review's case: a record the input topic took (up to 1,048,588 bytes by default) but whose copy, a header
    longer, is over the producer's message.max.bytes: produce raised, at_least_once stopped on it after every
    restart and exactly_once aborted and rewound forever. Now it is dead-lettered, its value left out."""
    worker = _worker(tmp_path)
    worker.exactly_once = exactly_once  # how _produce treats a failure (the transaction itself is not the point)
    worker.producer = RealProducer(worker.settings)  # type: ignore[assignment]
    value = orjson.dumps({"event_id": "e", "model_id": "model-b", "timestamp": 1, "label": 1, "pad": "x" * 999_950})
    # over the producer's message.max.bytes, under the broker's default max.message.bytes (1,048,588)
    assert deadletter.PRODUCER_MAX_MESSAGE_BYTES < len(value) < 1_048_588
    large = RawMessage(FB, 1, 7, b"model-b", value, 1_700_000_000_000, [("trace", b"t1")])
    worker._routed(1, FB, worker.partitions[1].engine.add(FB, [large, *_labels(1)]))
    produced = worker.producer.produced  # type: ignore[attr-defined]
    dead = [p for p in produced if p["topic"] == worker.topics.dead_letter]
    assert len(dead) == 1 and dead[0]["value"] == b""
    headers = dict(dead[0]["headers"])
    assert headers["streamdrift.reason"] == b"misrouted" and headers["streamdrift.source.offset"] == b"7"
    assert headers["streamdrift.value.omitted"] == str(len(value)).encode()
    assert [(p["topic"], p["partition"]) for p in produced if p not in dead] == [(FB, 2)]  # the small one forwarded
    assert not worker._txn_abortable


@pytest.mark.parametrize("exactly_once", [False, True])
def test_a_copy_whose_delivery_fails_for_its_size_is_dead_lettered(tmp_path, exactly_once) -> None:
    """Where the input topic's max.message.bytes could not be read at start, the broker refuses an oversized copy
    at delivery: the bound is lowered under it, and the record dead-lettered (at once, or by the rewind)."""
    worker = _worker(tmp_path)
    worker.exactly_once = exactly_once
    value = orjson.dumps({"event_id": "e", "model_id": "model-b", "timestamp": 1, "label": 1, "pad": "x" * 5000})
    large = RawMessage(FB, 1, 7, b"model-b", value, 1_700_000_000_000)
    worker._forward_delivered(large, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)  # type: ignore[arg-type]
    copy = forwarded_copy(large)
    assert worker.forward_max_bytes == deadletter.size(copy.key, value, copy.headers or []) - 1  # under the copy
    produced = worker.producer.produced  # type: ignore[attr-defined]
    if exactly_once:  # the transaction aborts; after the rewind the record is forwarded again, and does not fit
        assert worker._txn_abortable and produced == []
        worker._txn_abortable = False
        worker._routed(1, FB, worker.partitions[1].engine.add(FB, [large]))
    assert [(p["topic"], dict(p["headers"])["streamdrift.reason"]) for p in produced] == [
        (worker.topics.dead_letter, b"misrouted")
    ]
    assert worker._delivery_errors == ([] if not exactly_once else [str(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))])
