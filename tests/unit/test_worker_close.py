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
