"""processing_guarantee = "exactly_once" on a real broker: SIGKILLs at random points never show an alert twice,
and the state committed at the end is the uninterrupted run's.

The reference is a single uninterrupted worker (at_least_once, in a group with its own state and alerts
topics) over the very same input records: a read_committed consumer of the exactly-once worker's alerts
topic must see each of its alert ids once, and no other.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from state_streams import assert_same_state, drift_items, expected_counts, topic, topic_state
from worker_process import WorkerProcess, produce, streamdrift, worker_env

pytestmark = pytest.mark.kafka

SMALL = {"reference_size": 500, "window_size": 500, "subwindows": 5, "cooldown_events": 2000}
PARTITIONS = 4
KILLS = 5


def alert_ids(bootstrap: str, name: str, isolation: str = "read_committed") -> list[str]:
    """Every alert id of topic ``name`` as a consumer with ``isolation`` sees it, to the end of each partition
    (read_committed: the last stable offset, not the high watermark, which counts aborted records and markers)."""
    n = len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(name, timeout=10).topics[name].partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(n)])
    ids: list[str] = []
    pending = set(range(n))
    deadline = time.monotonic() + 60
    try:
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                ids.append(orjson.loads(msg.value())["alert_id"])
    finally:
        consumer.close()
    assert not pending, f"{name}: partitions {sorted(pending)} not read to their end"
    return ids


@pytest.fixture
def eos(kafka_bootstrap, unique_name, tmp_path):
    """Topics with a backlog of the drift stream, and the environment of an exactly-once worker over them."""
    settings = {
        **{f"monitor__{k}": v for k, v in SMALL.items()},
        "processing_guarantee": "exactly_once",
        # many checkpoints (transactions) over the stream, so that faults land between them
        "checkpoint_interval_s": 0.2,
        "batch_size": 2000,
    }
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots", **settings)
    # static membership: the restarted instance gets its partitions back at once, and keeps its transactional.id
    env["STREAMDRIFT_KAFKA__CONSUMER_EXTRA"] = json.dumps(
        {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000", "group.instance.id": "eos-worker"}
    )
    done = streamdrift(env, "topics", "create", "--partitions", str(PARTITIONS))
    assert done.returncode == 0, done.stderr
    # each record stamped with its event time, 12 s of them (of the last hour, which the broker's retention
    # keeps): the log's rule releases epoch after epoch as the worker reads, so faults land mid-stream. Stamped
    # as produced, the backlog would be one epoch that only the idle release at its end lets through.
    items = drift_items(env, 6000, seed=16, start_time=float(int(time.time()) - 3600))
    produce(kafka_bootstrap, items)
    return env, items


def run_to_the_end(env: dict, items: list, log_path: Path) -> str:
    """A worker until every event is counted, then SIGTERM; its log."""
    worker = WorkerProcess(env, log_path)
    try:
        worker.wait_for(lambda: worker.counts() == expected_counts(env, items), 120, "every event counted")
        assert worker.stop() == 0
    finally:
        worker.stop(signal.SIGKILL)
    return worker.log()


def assert_as_the_uninterrupted_run(kafka_bootstrap: str, env: dict, items: list, tmp_path: Path) -> None:
    """The state topic and the read_committed alerts equal a single uninterrupted at-least-once worker's."""
    ref = {
        **env,
        "STREAMDRIFT_PROCESSING_GUARANTEE": "at_least_once",
        "STREAMDRIFT_GROUP_ID": env["STREAMDRIFT_GROUP_ID"] + ".reference",
        "STREAMDRIFT_TOPICS__STATE": topic(env, "state") + ".reference",
        "STREAMDRIFT_TOPICS__ALERTS": topic(env, "alerts") + ".reference",
        "STREAMDRIFT_TOPICS__DEAD_LETTER": topic(env, "dead_letter") + ".reference",
        "STREAMDRIFT_SNAPSHOT_DIR": str(tmp_path / "snapshots-reference"),
        "STREAMDRIFT_KAFKA__CONSUMER_EXTRA": '{"session.timeout.ms": "6000"}',
    }
    ref.pop("PYTHONPATH", None)
    done = streamdrift(ref, "topics", "create", "--partitions", str(PARTITIONS))
    assert done.returncode == 0, done.stderr
    run_to_the_end(ref, items, tmp_path / "worker-reference.log")

    assert_same_state(
        topic_state(env, PARTITIONS), topic_state(ref, PARTITIONS)
    )  # same input offsets and byte-identical models
    expected = alert_ids(kafka_bootstrap, topic(ref, "alerts"), "read_uncommitted")
    assert expected and len(set(expected)) == len(expected)  # drift was seen, each alert once
    seen = Counter(alert_ids(kafka_bootstrap, topic(env, "alerts")))
    assert set(seen) == set(expected)
    assert [alert for alert, n in seen.items() if n != 1] == []


def test_sigkills_at_random_points_leave_every_alert_of_the_uninterrupted_run_exactly_once(
    eos, kafka_bootstrap, tmp_path
):
    env, items = eos
    rng = random.Random(16)
    logs = ""
    for run in range(KILLS):
        worker = WorkerProcess(env, tmp_path / f"worker-{run}.log")
        try:
            worker.wait_ready(90)
            time.sleep(rng.uniform(0.0, 1.5))
            finished = worker.counts() == expected_counts(env, items)
        finally:
            worker.stop(signal.SIGKILL)
        logs += worker.log()
        if finished:
            break
    assert "transactions initialised" in logs
    run_to_the_end(env, items, tmp_path / "worker-last.log")
    assert_as_the_uninterrupted_run(kafka_bootstrap, env, items, tmp_path)


# Fails the 2nd and the 3rd commit of a transaction as a broker can (an abortable error): the worker
# must abort, rewind every partition to its last committed state and go on.
ABORTABLE_COMMITS = """
import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

class _Producer(confluent_kafka.Producer):
    commits = 0

    def commit_transaction(self, *args):
        type(self).commits += 1
        if type(self).commits in (2, 3):
            raise KafkaException(KafkaError(KafkaError._STATE, "injected by the test", txn_requires_abort=True))
        return super().commit_transaction(*args)

confluent_kafka.Producer = _Producer
"""


def test_an_abortable_commit_rewinds_to_the_last_committed_state_and_goes_on(eos, kafka_bootstrap, tmp_path):
    env, items = eos
    hook = tmp_path / "abortable-commits"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(ABORTABLE_COMMITS)
    log = run_to_the_end({**env, "PYTHONPATH": str(hook)}, items, tmp_path / "worker-aborting.log")
    aborted = [line for line in log.splitlines() if "aborting the transaction" in line]
    assert len(aborted) == 2 and all("injected by the test" in line for line in aborted)
    assert_as_the_uninterrupted_run(kafka_bootstrap, env, items, tmp_path)
