"""The Kafka state topic on a real broker: any worker resumes any partition exactly (issue 16).

The reference for "exactly" is a single worker that was never interrupted, in a group of its own
with a state topic and an alerts topic of its own, over the very same input records.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from state_streams import assert_same_state, drift_items, expected_counts, split_at_epochs, topic, topic_state
from streamdrift.runtime.statetopic import StateTopic
from worker_process import (
    WorkerProcess,
    produce,
    read_topic,
    streamdrift,
    worker_env,
    worker_settings,
)

pytestmark = pytest.mark.kafka

SMALL = {"reference_size": 500, "window_size": 500, "subwindows": 5, "cooldown_events": 2000}
SETTINGS = {**{f"monitor__{k}": v for k, v in SMALL.items()}, "checkpoint_interval_s": 0.5, "batch_size": 2000}
PARTITIONS = 4


def counts(workers: list[WorkerProcess]) -> dict[str, tuple[int, int]]:
    """Events counted over the live workers' partitions."""
    out: dict[str, tuple[int, int]] = {}
    for w in workers:
        out.update(w.counts())
    return out


def alert_ids(bootstrap: str, env: dict) -> list[str]:
    return [orjson.loads(raw.value)["alert_id"] for raw, _ in read_topic(bootstrap, topic(env, "alerts"))]


@pytest.fixture
def group(kafka_bootstrap, unique_name, tmp_path):
    """Topics for one group; ``environment(name)`` gives a worker its own snapshot directory."""
    prefix = unique_name("sd")
    workers: list[WorkerProcess] = []

    def environment(name: str, **overrides: object) -> dict[str, str]:
        return worker_env(kafka_bootstrap, prefix, tmp_path / f"snapshots-{name}", **{**SETTINGS, **overrides})

    def start(env: dict[str, str], name: str) -> WorkerProcess:
        w = WorkerProcess(env, tmp_path / f"worker-{name}.log")
        workers.append(w)
        return w

    env = environment("topics")
    done = streamdrift(env, "topics", "create", "--partitions", str(PARTITIONS))
    assert done.returncode == 0, done.stderr
    yield environment, start
    for w in workers:
        w.stop(signal.SIGKILL)


def reference_run(kafka_bootstrap: str, env: dict, tmp_path: Path, items: list) -> dict:
    """A single uninterrupted worker over the same input topics, in a group with its own state and alerts."""
    ref = {
        **env,
        "STREAMDRIFT_GROUP_ID": env["STREAMDRIFT_GROUP_ID"] + ".reference",
        "STREAMDRIFT_TOPICS__STATE": topic(env, "state") + ".reference",
        "STREAMDRIFT_TOPICS__ALERTS": topic(env, "alerts") + ".reference",
        "STREAMDRIFT_TOPICS__DEAD_LETTER": topic(env, "dead_letter") + ".reference",
        "STREAMDRIFT_SNAPSHOT_DIR": str(tmp_path / "snapshots-reference"),
    }
    done = streamdrift(ref, "topics", "create", "--partitions", str(PARTITIONS))
    assert done.returncode == 0, done.stderr
    worker = WorkerProcess(ref, tmp_path / "worker-reference.log")
    try:
        worker.wait_for(lambda: worker.counts() == expected_counts(env, items), 120, "reference: every event")
        assert worker.stop() == 0
    finally:
        worker.stop(signal.SIGKILL)
    return ref


def test_a_worker_on_an_empty_snapshot_dir_restores_every_partition_from_the_state_topic(
    group, kafka_bootstrap, tmp_path
):
    environment, start = group
    env_a, env_b = environment("a"), environment("b")
    items = drift_items(env_a, 3000, seed=11)
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    produce(kafka_bootstrap, first)
    a = start(env_a, "a")
    a.wait_for(lambda: a.counts() == expected_counts(env_a, first), 90, "first half counted")
    published = a.status()["partitions"]
    assert a.stop() == 0  # SIGTERM: a final checkpoint to the state topic
    state_after_a = topic_state(env_a, PARTITIONS)

    # a again, on its own snapshot directory: restored from its local cache, models kept encoded with their
    # summaries (core/dormant.py), so /status shows what it showed before it stopped
    again = start(env_a, "a-again")
    again.wait_ready()
    cached = {orjson.loads(line)["partition"] for line in again.log().splitlines() if "from cache and topic" in line}
    assert cached == set(state_after_a)
    assert again.status()["partitions"] == published
    assert again.stop() == 0
    assert_same_state(topic_state(env_a, PARTITIONS), state_after_a)  # nothing changed: nothing written

    b = start(env_b, "b")  # another host: its snapshot directory is empty
    b.wait_ready()
    assert b.counts() == expected_counts(env_a, first)  # restored before it consumed anything
    # from the topic alone its models stay encoded too (their records carry their summaries): the same /status
    assert b.status()["partitions"] == published
    fresh = {orjson.loads(line)["partition"] for line in b.log().splitlines() if "fresh state" in line}
    assert fresh == set(range(PARTITIONS)) - set(state_after_a)  # only where no model hashes to
    produce(kafka_bootstrap, second)
    b.wait_for(lambda: b.counts() == expected_counts(env_a, items), 90, "every event counted once")
    assert b.stop() == 0
    assert topic_state(env_b, PARTITIONS) != state_after_a

    ref = reference_run(kafka_bootstrap, env_a, tmp_path, items)
    assert_same_state(topic_state(env_b, PARTITIONS), topic_state(ref, PARTITIONS))
    assert sorted(set(alert_ids(kafka_bootstrap, env_b))) == sorted(set(alert_ids(kafka_bootstrap, ref)))


def test_a_restore_reads_a_state_partition_whose_log_starts_past_offset_zero(kafka_bootstrap, unique_name, tmp_path):
    """A restore reads a whole state partition from offset 0, with no offset lookup first (librdkafka's
    OFFSET_BEGINNING cost half a second); where the log starts later (cleanup.policy=compact,delete and records
    deleted), the consumer's auto.offset.reset (earliest) takes it from the log's start."""
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots")
    name = topic(env, "state")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    # compact,delete: the broker refuses to delete records of a topic that is only compacted
    admin.create_topics([NewTopic(name, 2, 1, config={"cleanup.policy": "compact,delete"})])[name].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for p in (0, 1):
        for i in range(3):
            producer.produce(name, f"value {i}".encode(), f"model/0/0/m{i}".encode(), partition=p)
    assert producer.flush(30) == 0
    for future in admin.delete_records([TopicPartition(name, 0, 2)]).values():
        future.result(30)  # partition 0 now starts at offset 2

    read = StateTopic(worker_settings(env), "c").read({0: 0, 1: 0})
    assert [(r.offset, r.key) for r in read[0]] == [(2, b"model/0/0/m2")]
    assert [r.offset for r in read[1]] == [0, 1, 2]


def test_workers_joining_and_killed_in_one_group_end_with_the_state_of_one_uninterrupted_worker(
    group, kafka_bootstrap, tmp_path
):
    environment, start = group
    envs = {name: environment(name) for name in ("a", "b", "c")}
    env = envs["a"]
    # each record stamped with its event time, 12 s of them (of the last hour, which the broker's retention
    # keeps), so the log's rule releases epoch after epoch as a worker reads; stamped as produced, each third
    # would be one epoch. Thirds cut between epochs: each ends in an idle release, which must not split one.
    items = drift_items(env, 6000, seed=11, start_time=float(int(time.time()) - 3600))
    thirds = split_at_epochs(items, 3, worker_settings(env).merge_epoch_ms)

    produce(kafka_bootstrap, thirds[0])
    a = start(envs["a"], "a")
    a.wait_for(lambda: sum(p for p, _ in a.counts().values()) > 1000, 90, "a: some events counted")
    b = start(envs["b"], "b")  # joins while a runs: a checkpoints and hands over half the partitions
    b.wait_for(lambda: len(b.status()["partitions"]) > 0, 90, "b: partitions assigned")
    restored = sum(p for p, _ in b.counts().values())  # what a checkpointed of b's partitions
    produce(kafka_bootstrap, thirds[1])
    b.wait_for(lambda: sum(p for p, _ in b.counts().values()) > restored, 90, "b: events of the second third counted")
    a.stop(signal.SIGKILL)  # mid-stream, whatever it had not checkpointed is consumed again by others
    c = start(envs["c"], "c")
    produce(kafka_bootstrap, thirds[2])
    b.wait_for(lambda: counts([b, c]) == expected_counts(env, items), 180, "every event counted once")
    assert c.stop() == 0 and b.stop() == 0

    ref = reference_run(kafka_bootstrap, env, tmp_path, items)
    assert_same_state(topic_state(env, PARTITIONS), topic_state(ref, PARTITIONS))
    assert set(alert_ids(kafka_bootstrap, env)) == set(alert_ids(kafka_bootstrap, ref))
    assert any("data_drift" in line for line in (tmp_path / "worker-reference.log").read_text().splitlines())


def deferred(worker: WorkerProcess) -> float:
    """Partitions its periodic checkpoints left unwritten (``state_write_budget``), from its /metrics."""
    for line in worker.get("/metrics")[1].decode().splitlines():
        if line.startswith("streamdrift_checkpoints_deferred_total "):
            return float(line.split()[1])
    raise AssertionError("no streamdrift_checkpoints_deferred_total in /metrics")


def test_a_partition_not_worth_writing_yet_is_left_as_it_was_and_a_crash_meanwhile_replays_its_input(
    group, kafka_bootstrap, tmp_path
):
    """``state_write_budget``: a periodic checkpoint does not write a partition whose changed models would weigh
    more than the budget times the input since its last checkpoint; nothing of it is written or committed, so
    a worker killed meanwhile leaves the state topic as it was, and the next owner consumes that input again and
    ends with the state and alerts of a worker that was never interrupted. Past ``checkpoint_max_interval_s``
    it is written whatever its bytes."""
    environment, start = group
    # a budget this stream never meets: only the longest interval, a revocation or the shutdown write
    env_a = environment("a", state_write_budget=1e-9, checkpoint_max_interval_s=3600)
    env_b = environment("b", state_write_budget=1e-9, checkpoint_max_interval_s=2)
    items = drift_items(env_a, 3000, seed=11)
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    produce(kafka_bootstrap, first)
    a = start(env_a, "a")
    a.wait_for(lambda: a.counts() == expected_counts(env_a, first), 90, "a: first half counted")
    a.wait_for(lambda: deferred(a) >= 2, 30, "a: periodic checkpoints left the partitions unwritten")
    assert topic_state(env_a, PARTITIONS) == {}  # not a record: no model's state, no input offsets
    a.stop(signal.SIGKILL)

    b = start(env_b, "b")  # another host: restores nothing, consumes the first half again
    b.wait_for(lambda: b.counts() == expected_counts(env_a, first), 90, "b: first half counted again")
    # its longest interval passes while it runs: the partitions are written, due or not
    b.wait_for(lambda: topic_state(env_b, PARTITIONS) != {}, 30, "b: state written after checkpoint_max_interval_s")
    produce(kafka_bootstrap, second)
    b.wait_for(lambda: b.counts() == expected_counts(env_a, items), 90, "every event counted once")
    assert b.stop() == 0

    ref = reference_run(kafka_bootstrap, env_a, tmp_path, items)
    assert_same_state(topic_state(env_b, PARTITIONS), topic_state(ref, PARTITIONS))
    assert set(alert_ids(kafka_bootstrap, env_b)) == set(alert_ids(kafka_bootstrap, ref))


@pytest.mark.parametrize(
    ("partitions", "config", "message"),
    [
        (1, {"cleanup.policy": "compact"}, "has 1 partitions and the input topics have 2"),
        (2, {"cleanup.policy": "delete"}, "has cleanup.policy=delete, not compact"),
    ],
)
def test_a_state_topic_that_does_not_fit_stops_the_worker_naming_it(
    kafka_bootstrap, unique_name, tmp_path, partitions, config, message
):
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    wanted = [NewTopic(topic(env, t), 2, 1) for t in ("predictions", "feedback", "alerts", "dead_letter")]
    wanted.append(NewTopic(topic(env, "state"), partitions, 1, config=config))
    wanted.append(NewTopic(topic(env, "approvals"), 1, 1, config={"cleanup.policy": "compact"}))  # checked too
    for future in admin.create_topics(wanted).values():
        future.result()
    for command in (["worker"], ["topics", "check"]):
        done = streamdrift(env, *command, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"state topic {topic(env, 'state')} {message}" in done.stderr
        assert "streamdrift topics create" in done.stderr  # the fix
    done = streamdrift({**env, "STREAMDRIFT_STATE_STORE": "local"}, "topics", "check")
    assert done.returncode == 0, done.stderr
