"""The merge's order is a function of the Kafka log: consumed live or as a backlog, the same state (issue 16, item 6).

A worker reads the two topics while they are produced, in chunks, with traffic on both; a fresh group then reads
the same log as a backlog. With no release forced (``streamdrift_merge_forced_releases_total`` at 0: the idle
time is set far beyond the test, and ``max_buffered`` above a partition's records), both reach the same released
prefix of the log and checkpoint byte-identical partition states. A second test shows the price side: a topic
with nothing to give is not waited for past ``max_task_idle_ms``, and that forced release is counted and logged.
A third one shows the memory bound keeps the order: a topic far ahead of the other in one epoch is paused, not
released early, and the worker's state is the log's.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from streamdrift.cli.replay import event_time_ms
from streamdrift.core import state as codec
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.merge import EpochMerge
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.state import Snapshot
from streamdrift.core.synthetic import generate
from streamdrift.runtime.checkpoint import LocalSnapshotStore
from streams import differences
from worker_process import WorkerProcess, read_topic, streamdrift, worker_env, worker_settings

pytestmark = pytest.mark.kafka

PARTITIONS = 2
EPOCH_MS = 100
# batch_size 2000: the merge holds up to 20,000 records per topic and partition, more than one has here, so
# it never releases early for memory; the idle time is far beyond the test, so it never releases early at all
# the local store: each run's state is its own directory's (a shared state topic would hand the backlog run the
# live run's state, and it would have nothing left to do)
SETTINGS = {"batch_size": 2000, "merge_epoch_ms": EPOCH_MS, "max_task_idle_ms": 600_000, "state_store": "local"}
CHUNK = 400  # records produced at a time, live


def _log(start_time: float) -> list[tuple[str, dict]]:
    """12,000 predictions over 3 models, credit-risk drifting at its 3000th, half of them labelled right after,
    each label stamped 50 ms before its prediction: labels share epochs with predictions, often an earlier one,
    so where a pair completes depends on the merge's order, and chunks cut the log inside epochs."""
    out = []
    for kind, event in generate(12_000, seed=16, drift_at=3000, feedback_delay=0, start_time=start_time):
        if kind == "feedback":
            event = {**event, "timestamp": round(event["timestamp"] - 0.05, 3)}
        out.append((kind, event))
    return out


def _produce(bootstrap: str, topics: dict[str, str], log: list[tuple[str, dict]], pause_s: float = 0.0) -> None:
    """Produce the log in order, each record stamped with its event time; ``pause_s`` between chunks (live)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5})
    for at in range(0, len(log), CHUNK):
        for kind, event in log[at : at + CHUNK]:
            value = orjson.dumps(event)
            producer.produce(
                topics[kind], value, event["model_id"].encode(), timestamp=event_time_ms(event["timestamp"])
            )
            producer.poll(0)
        if pause_s:
            assert producer.flush(30) == 0
            time.sleep(pause_s)
    assert producer.flush(30) == 0


def _released_by_the_log(bootstrap: str, topics: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per partition, the next offset of each topic once the log's rule has released what it can (the last
    epochs wait for a later record): where any consumer of this log stands when nothing is forced."""
    logs: dict[int, dict[str, list[RawMessage]]] = {p: {t: [] for t in topics.values()} for p in range(PARTITIONS)}
    for topic in topics.values():
        for raw, _ in read_topic(bootstrap, topic):
            logs[raw.partition][topic].append(raw)
    expected: dict[str, dict[str, int]] = {}
    for p, by_topic in logs.items():
        merge = EpochMerge(EPOCH_MS, (topics["prediction"], topics["feedback"]))
        for topic, records in by_topic.items():
            merge.extend(topic, records)
        release = merge.release()
        assert release.forced is None
        expected[str(p)] = {topic: run[-1].offset + 1 for topic, run in release.runs}
    return expected


def _forced_releases(worker: WorkerProcess) -> dict[str, float]:
    text = worker.get("/metrics")[1].decode()
    found = re.findall(r'^streamdrift_merge_forced_releases_total\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {reason: float(n) for reason, n in found}


def _run_to_the_released_prefix(env: dict[str, str], log_path: Path, topics: dict[str, str], produce=None) -> dict:
    """Run a worker until every partition's released offsets are the log's released prefix, then stop it (its
    final checkpoint). ``produce``: called once the worker is ready (live traffic). Returns its last ``/status``."""
    worker = WorkerProcess(env, log_path)
    try:
        worker.wait_ready()
        if produce is not None:
            produce()
        expected = _released_by_the_log(env["STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS"], topics)
        worker.wait_for(
            lambda: {p: s["offsets"] for p, s in worker.status()["partitions"].items()} == expected,
            180,
            f"the log's released prefix {expected}",
        )
        assert _forced_releases(worker) == {}, "a release was forced: the order may depart from the log's"
        status = worker.status()
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        worker.stop(signal.SIGKILL)
    return status


def _partition_states(env: dict[str, str]) -> dict[int, bytes]:
    """Each partition's checkpointed state (monitors, merge epochs, offsets) as the state codec encodes it."""
    settings = worker_settings(env)  # each run's own group: its own seal
    store = LocalSnapshotStore(settings.snapshot_dir, settings.state_seal())
    out = {}
    for p in range(PARTITIONS):
        snapshot = store.load(p)
        if snapshot is not None:
            plain = Snapshot(snapshot.partition, snapshot.offsets, snapshot.models, snapshot.merge)
            out[p] = codec.encode(plain, "compare")
    return out


def test_the_same_log_consumed_live_and_as_a_backlog_gives_byte_identical_state(kafka_bootstrap, unique_name, tmp_path):
    live_env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "live", **SETTINGS)
    assert streamdrift(live_env, "topics", "create", "--partitions", str(PARTITIONS)).returncode == 0
    topics = {
        "prediction": live_env["STREAMDRIFT_TOPICS__PREDICTIONS"],
        "feedback": live_env["STREAMDRIFT_TOPICS__FEEDBACK"],
    }
    log = _log(start_time=float(int(time.time()) - 3600))  # recent: the broker's retention keeps it

    # live: the worker reads while the log is produced in chunks, both topics in every chunk
    live = _run_to_the_released_prefix(
        live_env, tmp_path / "live.log", topics, produce=lambda: _produce(kafka_bootstrap, topics, log, pause_s=0.05)
    )
    # backlog: a fresh group and a fresh snapshot directory read the same log, all of it already there
    backlog_env = {
        **live_env,
        "STREAMDRIFT_GROUP_ID": live_env["STREAMDRIFT_GROUP_ID"] + ".backlog",
        "STREAMDRIFT_SNAPSHOT_DIR": str(tmp_path / "backlog"),
    }
    backlog = _run_to_the_released_prefix(backlog_env, tmp_path / "backlog.log", topics)

    live_states, backlog_states = _partition_states(live_env), _partition_states(backlog_env)
    assert sorted(live_states) == list(range(PARTITIONS))
    assert differences(live_states, backlog_states) == []
    assert differences(live, backlog) == []  # the /status documents: each model's summary, offsets, ready
    models = {m for part in live["partitions"].values() for m in part["models"]}
    assert models == {"credit-risk", "churn", "fraud"}


def test_a_topic_with_nothing_to_give_is_not_waited_for_past_max_task_idle_ms(kafka_bootstrap, unique_name, tmp_path):
    # predictions only: the feedback topic is caught up from the start and never brings a record
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots", max_task_idle_ms=500)
    assert streamdrift(env, "topics", "create", "--partitions", "1").returncode == 0
    topics = {"prediction": env["STREAMDRIFT_TOPICS__PREDICTIONS"], "feedback": env["STREAMDRIFT_TOPICS__FEEDBACK"]}
    predictions = [(k, e) for k, e in _log(start_time=float(int(time.time()) - 3600))[:3000] if k == "prediction"]
    _produce(kafka_bootstrap, topics, predictions)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        worker.wait_for(
            lambda: sum(p for p, _ in worker.counts().values()) == len(predictions), 120, "every prediction monitored"
        )
        assert _forced_releases(worker).get("idle", 0) >= 1
        assert worker.status()["partitions"]["0"]["offsets"] == {topics["prediction"]: len(predictions)}
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        worker.stop(signal.SIGKILL)
    forced_logs = [orjson.loads(line) for line in worker.log().splitlines() if "merge: forced release" in line]
    assert forced_logs and forced_logs[0]["reason"] == "idle"
    # the feedback topic is why: never a record. The predictions topic may be named too: it is caught up and
    # idle as well once the loop takes longer than 500 ms after its last record (a loaded machine)
    assert topics["feedback"] in forced_logs[0]["idle_topics"]
    assert set(forced_logs[0]["idle_topics"]) <= set(topics.values())


def _burst(start_time: float) -> list[tuple[str, dict]]:
    """1,500 predictions all stamped within one second (one epoch of 1 s), their labels stamped from 20 s before
    it up to half-way through it, then one record of each topic 5 s later (both move past the burst's epoch)."""
    kinds: dict[str, list[dict]] = {"prediction": [], "feedback": []}
    for kind, event in generate(1_500, seed=19, drift_at=10_000, feedback_delay=0, feedback_share=1.0):
        kinds[kind].append(event)
    predictions, labels = kinds["prediction"], kinds["feedback"]
    out = [("prediction", {**e, "timestamp": round(start_time + i * 0.0005, 4)}) for i, e in enumerate(predictions)]
    step = 20.5 / len(labels)
    out += [("feedback", {**e, "timestamp": round(start_time - 20 + i * step, 4)}) for i, e in enumerate(labels)]
    out.append(("prediction", {**predictions[-1], "event_id": "after-the-burst", "timestamp": start_time + 5}))
    out.append(("feedback", {**labels[-1], "event_id": "after-the-burst", "timestamp": start_time + 5}))
    return out


def test_a_topic_far_ahead_in_one_epoch_is_paused_not_released_early_and_the_state_is_the_logs(
    kafka_bootstrap, unique_name, tmp_path
):
    # batch_size 20: the merge holds at most 200 records of a topic, and the burst's epoch has 1,500 predictions,
    # which must all wait for the labels stamped before them; idle never forces anything (600 s)
    env = worker_env(
        kafka_bootstrap,
        unique_name("sd"),
        tmp_path / "snapshots",
        batch_size=20,
        merge_epoch_ms=1000,
        max_task_idle_ms=600_000,
        state_store="local",
    )
    assert streamdrift(env, "topics", "create", "--partitions", "1").returncode == 0
    topics = {"prediction": env["STREAMDRIFT_TOPICS__PREDICTIONS"], "feedback": env["STREAMDRIFT_TOPICS__FEEDBACK"]}
    _produce(kafka_bootstrap, topics, _burst(start_time=float(int(time.time()) - 3600)))  # a backlog

    # the log's state: the same records through one engine that holds everything (no memory bound)
    settings = worker_settings(env)
    replay = PartitionEngine(
        0,
        topics["prediction"],
        topics["feedback"],
        monitor_factory(settings.monitor, settings.models),
        **settings.engine_settings(),
        max_buffered=10**9,
    )
    for topic in topics.values():
        replay.add(topic, [raw for raw, _ in read_topic(kafka_bootstrap, topic)])
    assert replay.release().forced is None
    assert replay.offsets == {topics["prediction"]: 1_500, topics["feedback"]: 1_500}  # the last epochs wait

    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        worker.wait_for(
            lambda: worker.status()["partitions"]["0"]["offsets"] == replay.offsets, 120, "the log's released prefix"
        )
        metrics = worker.get("/metrics")[1].decode()
        assert _forced_releases(worker) == {}
        paused = re.findall(r'^streamdrift_merge_pauses_total\{topic="([^"]+)"\} (\S+)$', metrics, re.MULTILINE)
        assert float(dict(paused).get(topics["prediction"], 0)) >= 1  # the predictions were paused, then resumed
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        worker.stop(signal.SIGKILL)
    snapshot = replay.snapshot()
    expected = codec.encode(Snapshot(0, snapshot.offsets, snapshot.models, snapshot.merge), "compare")
    assert differences(_partition_states(env), {0: expected}) == []
