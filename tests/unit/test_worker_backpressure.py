"""The worker's side of the merge's memory bound: a topic-partition the merge holds too much of is paused, and
resumed once it is back within; a partition dropped (revoked, lost, rewound) is never left paused."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from streamdrift.core.records import RawMessage
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker

BATCH_SIZE = 2  # the merge holds 10 x batch_size = 20 records per topic and partition


class RecordingConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("pause", [(tp.topic, tp.partition) for tp in partitions]))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("resume", [(tp.topic, tp.partition) for tp in partitions]))


def _worker(tmp_path) -> tuple[Worker, RecordingConsumer]:
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path, batch_size=BATCH_SIZE))
    worker.consumer = consumer = RecordingConsumer()  # type: ignore[assignment]
    worker.partitions = {0: worker._new_state(0)}
    return worker, consumer


def _records(topic: str, start: int, n: int, timestamp_ms: int) -> list[RawMessage]:
    return [RawMessage(topic, 0, offset, None, b"{}", timestamp_ms) for offset in range(start, start + n)]


def test_the_topic_ahead_is_paused_past_max_buffered_and_resumed_once_the_other_moves_on(tmp_path) -> None:
    worker, consumer = _worker(tmp_path)
    pred, fb = worker.topics.predictions, worker.topics.feedback
    state = worker.partitions[0]
    engine = state.engine
    engine.add(fb, _records(fb, 0, 21, 1_000))  # a burst of labels in one epoch, before any prediction
    assert engine.release().records == 0  # predictions of that epoch may still come: they go first
    worker._backpressure(0, state)
    worker._backpressure(0, state)  # still over: paused once
    assert consumer.calls == [("pause", [(fb, 0)])] and state.paused == {fb}
    assert worker.m_paused.labels(fb)._value.get() == 1
    engine.add(pred, _records(pred, 0, 1, 60_000))  # predictions move past that epoch: the labels go
    assert engine.release().records == 21
    worker._backpressure(0, state)
    assert consumer.calls[1:] == [("resume", [(fb, 0)])] and state.paused == set()


def test_a_dropped_partition_is_resumed_so_that_its_next_owner_state_fetches_it(tmp_path) -> None:
    worker, consumer = _worker(tmp_path)
    state = worker.partitions[0]
    pred = worker.topics.predictions
    state.engine.add(pred, _records(pred, 0, 21, 1_000))
    state.engine.release()
    worker._backpressure(0, state)
    worker._drop({0})  # e.g. a transaction's rewind, which keeps the partition assigned with a fresh state
    assert consumer.calls == [("pause", [(pred, 0)]), ("resume", [(pred, 0)])] and worker.partitions == {}
