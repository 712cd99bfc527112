"""A worker expelled from its group (stalled for longer than session.timeout.ms) writes no state records
for the partitions another worker restored meanwhile (at_least_once; issue 16).

Before its state records the checkpoint commits again the offsets the partitions' state was last
committed at; the group coordinator refuses that from an expelled member, and nothing is produced.
"""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from streamdrift.core.records import RawMessage
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker

PRED = "streamdrift.predictions"


class Consumer:
    def __init__(self, error: int | None) -> None:
        self.error = error
        self.commits: list[list[tuple[str, int, int]]] = []

    def commit(self, offsets=None, asynchronous=True) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])
        if self.error is not None:
            raise KafkaException(KafkaError(self.error))


class Message:
    def __init__(self, topic: str, partition: int, key: bytes, offset: int) -> None:
        self._topic, self._partition, self._key, self._offset = topic, partition, key, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def key(self) -> bytes:
        return self._key

    def offset(self) -> int:
        return self._offset


class Producer:
    """Acknowledges every record at the next flush."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, int, bytes]] = []
        self._pending: list[tuple[Message, object]] = []

    def produce(self, topic, value=None, key=None, partition=None, headers=None, on_delivery=None) -> None:
        self.produced.append((topic, partition, key))
        self._pending.append((Message(topic, partition, key, len(self.produced) - 1), on_delivery))

    def flush(self, timeout: float = 0) -> int:
        for msg, on_delivery in self._pending:
            if on_delivery is not None:
                on_delivery(None, msg)
        self._pending.clear()
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


def worker_with_a_checkpointed_partition(tmp_path, error: int | None) -> Worker:
    worker = Worker(Settings(snapshot_dir=tmp_path, snapshot_fork=False))
    worker.consumer, worker.producer = Consumer(error), Producer()  # type: ignore[assignment]
    state = worker.partitions[0] = worker._new_state(0)
    state.committed = {PRED: 0}  # as restored: the offsets the state (or the group) was last committed at
    event = {"event_id": "e0", "model_id": "m", "timestamp": 1000.0, "features": {"x": 1.0}, "prediction": 1}
    state.engine.add(PRED, [RawMessage(PRED, 0, 0, b"m", orjson.dumps(event), 1_000_000)])
    state.engine.release(ended={PRED, worker.topics.feedback})
    state.dirty = True
    return worker


@pytest.mark.parametrize("error", [KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION])
def test_an_expelled_worker_writes_no_state_records(tmp_path, error) -> None:
    worker = worker_with_a_checkpointed_partition(tmp_path, error)
    worker.checkpoint()
    assert worker.producer.produced == []  # type: ignore[attr-defined]
    assert worker.consumer.commits == [[(PRED, 0, 0)]]  # type: ignore[attr-defined]
    assert worker.partitions[0].dirty  # written by a later checkpoint if the partitions come back


def test_a_member_writes_its_state_and_commits_the_new_offsets(tmp_path) -> None:
    worker = worker_with_a_checkpointed_partition(tmp_path, None)
    worker.checkpoint(wait=True)
    keys = [key for topic, _, key in worker.producer.produced if topic == worker.topics.state]  # type: ignore[attr-defined]
    assert keys == [b"model/0/0/m", b"partition/1/0"]
    assert worker.consumer.commits == [[(PRED, 0, 0)], [(PRED, 0, 1)]]  # type: ignore[attr-defined]
    assert worker.partitions[0].committed == {PRED: 1}
