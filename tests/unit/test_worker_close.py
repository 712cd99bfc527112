"""A worker that stops while its group rebalances (issue 19's fleet tests found it on a real broker).

``consumer.close()`` leaves the group; a rebalance that completes meanwhile calls the worker's ``on_assign``
from inside ``close``, when the consumer's handle is being destroyed: asking it for the committed offsets
raises ``_DESTROY``, which came out of ``close`` and made a worker whose final checkpoint was written exit 1.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker


class ClosingConsumer:
    """A consumer whose handle is being destroyed, as librdkafka's is inside ``close``."""

    def __init__(self) -> None:
        self.assigned: list[list[TopicPartition]] = []

    def committed(self, partitions, timeout=None):
        raise KafkaException(
            KafkaError(KafkaError._DESTROY, "Failed to get committed offsets: Local: Broker handle destroyed")
        )

    def assign(self, partitions) -> None:
        self.assigned.append(partitions)


class TransactionalProducer:
    def abort_transaction(self, timeout: float) -> None:
        pass


def test_partitions_assigned_while_the_consumer_closes_are_not_taken(tmp_path) -> None:
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path))
    consumer = ClosingConsumer()
    worker.consumer = consumer  # type: ignore[assignment]
    worker.closing = True  # as Worker.run sets it before consumer.close()
    worker._on_assign(
        consumer, [TopicPartition(worker.topics.predictions, 3), TopicPartition(worker.topics.feedback, 3)]
    )  # type: ignore[arg-type]
    assert worker.partitions == {}  # no state restored for a partition it is leaving
    assert not worker.health.ready


def test_partitions_lost_while_the_consumer_closes_do_not_rewind_an_exactly_once_worker(tmp_path) -> None:
    """on_lost from inside close (the session expired during a long final checkpoint): an exactly-once worker
    rewound to the last committed state, asking the closing handle for offsets (``_DESTROY``) out of close.
    Nothing is committed after the final checkpoint: the partitions are dropped, the worker rewinds nothing."""
    worker = Worker(Settings(snapshot_dir=tmp_path, processing_guarantee="exactly_once"))
    consumer = ClosingConsumer()
    worker.consumer = consumer  # type: ignore[assignment]
    worker.producer = TransactionalProducer()  # type: ignore[assignment]
    worker.partitions[3] = worker._new_state(3)
    worker.closing = True
    worker._on_lost(consumer, [TopicPartition(worker.topics.predictions, 3)])  # type: ignore[arg-type]
    assert worker.partitions == {}
    assert worker.m_aborts._value.get() == 0
