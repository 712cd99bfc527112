"""Issue 17 review, hole 2: a bad message too large for the dead-letter topic or the producer stopped
the worker (``produce`` raised MSG_SIZE_TOO_LARGE, or the delivery failed and the checkpoint refused to
commit, so every restart stopped on the same message). Now such a dead letter is written without its
value, with a header giving the size left out, and the same reason and source headers."""

from __future__ import annotations

import random

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamdrift.core.records import RawMessage, Rejected
from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker
from worker_process import read_topic

TOPIC_MAX_BYTES = 4096
SIZES = {40: 100, 41: 10_000, 42: 2_000_000}  # source offset -> value bytes: fits; over the topic; over the producer
# incompressible, so that a value over the topic's limit is over it once lz4-compressed too
VALUES = {offset: random.Random(offset).randbytes(size) for offset, size in SIZES.items()}


def _dead_letters(bootstrap: str, dlq: str, other: str, tmp_path, read_topic_limit: bool) -> list:
    settings = Settings(
        kafka={"bootstrap_servers": bootstrap}, topics={"dead_letter": dlq}, state_store="local", snapshot_dir=tmp_path
    )
    worker = Worker(settings)
    if read_topic_limit:  # as Worker.run does; without it, the delivery of the 10 kB one fails and is written again
        worker.dead_letter_max_bytes = kafka.dead_letter_max_bytes(
            settings, AdminClient({"bootstrap.servers": bootstrap})
        )
        assert worker.dead_letter_max_bytes < TOPIC_MAX_BYTES
    config = kafka.worker_producer_config(settings, max_batch_bytes=worker.dead_letter_max_bytes)
    worker.producer = Producer(config)
    for offset in SIZES:
        message = RawMessage("streamdrift.predictions", 2, offset, b"m1", VALUES[offset], 1_700_000_000_000)
        worker._dead_letter(Rejected(message, "invalid JSON: unexpected character"))
    # batches kept under the dead-letter topic's limit; a larger record to another topic still goes, alone
    worker._produce(other, b"m1", random.Random(0).randbytes(50_000))
    assert worker.producer.flush(30) == 0
    assert worker._delivery_errors == []  # what the checkpoint checks before it commits
    return read_topic(bootstrap, dlq, expect=len(SIZES), timeout=30)


def test_a_dead_letter_too_large_for_its_topic_or_the_producer_is_written_without_its_value(
    kafka_bootstrap, unique_name, tmp_path
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    dlqs, other = [unique_name("dlq"), unique_name("dlq")], unique_name("other")
    config = {"max.message.bytes": str(TOPIC_MAX_BYTES)}
    topics = [NewTopic(t, 1, 1, config=config) for t in dlqs] + [NewTopic(other, 1, 1)]
    for future in admin.create_topics(topics).values():
        future.result(30)
    for dlq, read_topic_limit in zip(dlqs, (False, True)):
        records = _dead_letters(kafka_bootstrap, dlq, other, tmp_path / dlq, read_topic_limit)
        by_source = {int(headers["streamdrift.source.offset"]): (raw, headers) for raw, headers in records}
        assert sorted(by_source) == [40, 41, 42] and len(records) == 3
        for offset, (raw, headers) in by_source.items():
            assert raw.key == b"m1"
            assert headers["streamdrift.reason"] == "invalid JSON: unexpected character"
            assert (headers["streamdrift.source.topic"], headers["streamdrift.source.partition"]) == (
                "streamdrift.predictions",
                "2",
            )
            if offset == 40:
                assert raw.value == VALUES[40] and "streamdrift.value.omitted" not in headers
            else:
                assert raw.value == b"" and headers["streamdrift.value.omitted"] == str(SIZES[offset])
