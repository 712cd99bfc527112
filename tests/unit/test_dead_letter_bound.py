"""Issue 17 review, hole 2, in a transaction: where the dead-letter topic's limit could not be read at
start (no DescribeConfigs permission), a dead letter over it failed its delivery, the transaction was
aborted and rewound, and the same dead letter failed again: the worker aborted for ever. The failure
now lowers the bound the worker sizes dead letters under, so the rewind writes it without its value.
(The broker side is tests/integration/test_dead_letter_size.py.)"""

from __future__ import annotations

from types import SimpleNamespace

from confluent_kafka import KafkaError

from streamdrift.core.records import RawMessage, Rejected
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker


class _Producer:
    """Records what is produced; the broker's answer is given to the callback by the test."""

    def __init__(self) -> None:
        self.produced: list[SimpleNamespace] = []

    def produce(self, topic, value, key, headers=None, on_delivery=None, **_) -> None:
        self.produced.append(SimpleNamespace(topic=topic, value=value, key=key, headers=headers, report=on_delivery))


def test_a_transaction_aborted_by_an_oversized_dead_letter_writes_it_without_its_value_after_the_rewind(
    tmp_path,
) -> None:
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path))
    worker.exactly_once = True  # the path under test; a transactional producer needs a broker
    worker.producer = producer = _Producer()  # type: ignore[assignment]
    bad = Rejected(RawMessage("streamdrift.predictions", 1, 7, b"m1", b"\xff" * 50_000, 1), "invalid JSON: x")
    worker._dead_letter(bad)
    first = producer.produced[-1]
    assert first.value == bad.message.value  # under the producer's limit: the topic's is unknown
    first.report(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), SimpleNamespace(value=lambda: first.value))
    assert worker._txn_abortable  # the transaction is aborted and rewound ...
    worker._txn_abortable = False
    worker._dead_letter(bad)  # ... and the same record dead-lettered again
    again = producer.produced[-1]
    assert again.value == b"" and ("streamdrift.value.omitted", b"50000") in again.headers
    assert ("streamdrift.source.offset", b"7") in again.headers
    small = Rejected(RawMessage("streamdrift.predictions", 1, 8, b"m1", b"{", 1), "invalid JSON: y")
    worker._dead_letter(small)
    assert producer.produced[-1].value == b"{"  # a small one still goes whole
