"""Issue 17, the broker outage: a checkpoint whose snapshots are durable but whose offset commit fails
(the group coordinator gone with the broker) stopped the worker (`make chaos`, broker outage: "process
survived: NO", KafkaException _WAIT_COORD from Consumer.commit). The commit is advisory: a restart
resumes at the offsets stored with the state, so the worker logs it and goes on."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker


class _CoordinatorGone:
    def __init__(self) -> None:
        self.calls = 0

    def commit(self, offsets=None, asynchronous=True) -> None:
        self.calls += 1
        raise KafkaException(KafkaError(KafkaError._WAIT_COORD, "Commit failed: Local: Waiting for coordinator"))


def test_a_failed_offset_commit_after_a_durable_checkpoint_does_not_stop_the_worker(tmp_path, caplog) -> None:
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path))
    worker.consumer = consumer = _CoordinatorGone()  # type: ignore[assignment]
    written: Future = Future()
    written.set_result((1234, 0))  # the snapshot files are durable
    worker._pending = (written, [TopicPartition("streamdrift.predictions", 0, 42)], time.monotonic(), [0])
    with caplog.at_level(logging.WARNING, logger="streamdrift.worker"):
        worker._complete_checkpoint()
    assert consumer.calls == 1 and worker._pending is None
    assert worker._failed_checkpoints == 0  # the checkpoint itself is written: not a failed one
    assert [r.getMessage() for r in caplog.records] == ["committing the checkpoint's offsets failed"]
