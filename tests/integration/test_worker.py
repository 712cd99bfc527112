"""The worker end to end on a real Kafka broker (started by conftest's ``kafka_bootstrap``)."""

from __future__ import annotations

import signal
from pathlib import Path

import jsonschema
import orjson
import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamdrift.core.config import MonitorSettings
from streamdrift.core.dormant import Dormant
from streamdrift.core.errors import SnapshotError
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.synthetic import generate
from streamdrift.runtime.checkpoint import LocalSnapshotStore
from streamdrift.runtime.statetopic import StateTopic
from streams import FB, PRED, run_monitors, state_bytes
from worker_process import (
    WorkerProcess,
    produce,
    read_topic,
    streamdrift,
    worker_env,
    worker_settings,
)

pytestmark = pytest.mark.kafka

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SMALL = {
    "monitor__reference_size": 500,
    "monitor__window_size": 500,
    "monitor__subwindows": 5,
    "monitor__cooldown_events": 2000,
    "snapshot_interval_s": 0.5,
}
SMALL_SETTINGS = MonitorSettings(reference_size=500, window_size=500, subwindows=5, cooldown_events=2000)


@pytest.fixture
def setup(kafka_bootstrap, unique_name, tmp_path):
    """Worker environment on fresh topics (2 partitions each), created by `streamdrift topics create`."""
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots", **SMALL)
    done = streamdrift(env, "topics", "create", "--partitions", "2")
    assert done.returncode == 0, done.stderr
    workers: list[WorkerProcess] = []

    def start(log: str | None = None, ready: bool = True) -> WorkerProcess:
        """A worker on ``env`` as it is now, killed at teardown whatever the test did (``ready``: wait for it)."""
        w = WorkerProcess(env, tmp_path / (log or f"worker-{len(workers)}.log"))
        workers.append(w)
        if ready:
            w.wait_ready()
        return w

    yield env, start
    for w in workers:
        w.stop(signal.SIGKILL)


def topic(env: dict, name: str) -> str:
    return env[f"STREAMDRIFT_TOPICS__{name.upper()}"]


def demo_items(env: dict, n: int, drift_at: int) -> list[tuple[str, bytes, bytes]]:
    names = {"prediction": topic(env, "predictions"), "feedback": topic(env, "feedback")}
    return [
        (names[kind], e["model_id"].encode(), orjson.dumps(e))
        for kind, e in generate(n, seed=11, drift_at=drift_at, rate=500.0)
    ]


def expected_counts(items: list[tuple[str, bytes, bytes]], env: dict) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for t, key, _ in items:
        out.setdefault(key.decode(), [0, 0])[t == topic(env, "feedback")] += 1
    return {m: tuple(c) for m, c in out.items()}


def test_drift_reaches_the_alerts_topic_with_every_schema_field(setup, kafka_bootstrap):
    env, start = setup
    worker = start()
    items = demo_items(env, 6000, drift_at=1000)  # 2000 predictions per model; credit-risk drifts at #1000
    produce(kafka_bootstrap, items)

    alerts = read_topic(kafka_bootstrap, topic(env, "alerts"), expect=1)
    schema = orjson.loads((SCHEMAS / "drift_event.schema.json").read_bytes())
    events = [orjson.loads(raw.value) for raw, _ in alerts]
    for (raw, _), event in zip(alerts, events):
        jsonschema.validate(event, schema, format_checker=jsonschema.FormatChecker())
        assert raw.key == event["model_id"].encode()
    data = [e for e in events if e["kind"] == "data_drift"]
    assert data and {e["model_id"] for e in data} == {"credit-risk"}
    # every field but those of retrain events (an investigate data_drift has none), of those over budget, of
    # rollbacks (version comparison only) and of prediction_drift events
    of_other_kinds = {"training_window", "reference_window", "budget", "rollback_to", "drift_impact"}
    assert set(data[0]) == set(schema["properties"]) - of_other_kinds
    for event in events:  # every prediction_drift event has drift_impact (null only with the reason why)
        if event["kind"] == "prediction_drift":
            assert event["drift_impact"] is not None or event["details"]["drift_impact_unavailable"]
    assert data[0]["top_features"][0]["feature"] in {"debt_ratio", "income"}

    worker.wait_for(lambda: worker.counts() == expected_counts(items, env), 60, "all events counted")
    metrics = worker.get("/metrics")[1].decode()
    assert 'streamdrift_events_total{model_id="credit-risk",stream="predictions"} 2000.0' in metrics
    # the events per model batch, which set a fleet's CPU per event (docs/scaling.md): each batch has one at least
    [batches] = [
        line.split()[1] for line in metrics.splitlines() if line.startswith("streamdrift_model_batches_total ")
    ]
    assert 0 < float(batches) <= sum(p + f for p, f in expected_counts(items, env).values())
    assert (
        'streamdrift_drift_events_total{kind="data_drift",model_id="credit-risk"}' in metrics
        or 'streamdrift_drift_events_total{model_id="credit-risk",kind="data_drift"} 1.0' in metrics
    )
    assert worker.get("/healthz")[0] == 200
    assert worker.stop() == 0


def test_malformed_messages_go_to_the_dead_letter_topic_and_good_ones_all_count(setup, kafka_bootstrap):
    env, start = setup
    preds, fbs = topic(env, "predictions"), topic(env, "feedback")
    good = demo_items(env, 600, drift_at=10**9)
    bad = [
        (preds, b"churn", b"{not json"),
        (preds, b"churn", orjson.dumps({"event_id": "x", "model_id": "churn", "timestamp": 1, "prediction": 1})),
        (
            preds,
            b"fraud",
            orjson.dumps(
                {"event_id": "y", "model_id": "fraud", "timestamp": 1, "features": {}, "prediction": 1, "score": "high"}
            ),
        ),
        (
            preds,
            b"other",
            orjson.dumps({"event_id": "z", "model_id": "fraud", "timestamp": 1, "features": {}, "prediction": 1}),
        ),
        (fbs, b"churn", orjson.dumps({"event_id": "w", "model_id": "churn", "timestamp": "yesterday", "label": 1})),
        (fbs, b"churn", None),
        (  # attributions that are not numbers (issue 23, item 7)
            preds,
            b"churn",
            orjson.dumps(
                {
                    "event_id": "v",
                    "model_id": "churn",
                    "timestamp": 1,
                    "features": {"age": 40},
                    "prediction": 1,
                    "attributions": {"age": "high"},
                }
            ),
        ),
    ]
    items = []
    for i, item in enumerate(good):  # spread the bad ones among the good ones
        items.append(item)
        if i % 83 == 50 and bad:
            items.append(bad.pop(0))
    assert not bad
    produce(kafka_bootstrap, items)
    worker = start()

    dead = read_topic(kafka_bootstrap, topic(env, "dead_letter"), expect=7)
    assert len(dead) == 7
    originals = {(m.topic, m.partition, m.offset): m for t in (preds, fbs) for m, _ in read_topic(kafka_bootstrap, t)}
    bad_values = set(items) - set(good)
    for raw, headers in dead:
        assert headers["streamdrift.reason"]
        source = (
            headers["streamdrift.source.topic"],
            int(headers["streamdrift.source.partition"]),
            int(headers["streamdrift.source.offset"]),
        )
        original = originals[source]  # the header points at the very record that was rejected
        assert (original.value or b"") == raw.value and original.key == raw.key
        assert (source[0], original.key, original.value) in bad_values
    reasons = sorted(h["streamdrift.reason"] for _, h in dead)
    for needle in ("invalid JSON", "'features'", "'score'", "model_id", "'timestamp'", "'attributions'"):
        assert any(needle in r for r in reasons), (needle, reasons)

    worker.wait_for(lambda: worker.counts() == expected_counts(good, env), 60, "good events counted")
    assert "streamdrift_dead_letters_total" in worker.get("/metrics")[1].decode()


def test_sigkill_after_snapshot_then_restart_counts_every_event_exactly_once(setup, kafka_bootstrap, tmp_path):
    env, start = setup
    items = demo_items(env, 9000, drift_at=1500)
    first, second = items[: len(items) // 2], items[len(items) // 2 :]
    produce(kafka_bootstrap, first)
    worker = start()
    worker.wait_for(lambda: worker.counts() == expected_counts(first, env), 60, "first half counted")
    snapshots = Path(env["STREAMDRIFT_SNAPSHOT_DIR"])
    worker.wait_for(lambda: len(list(snapshots.glob("*.snapshot"))) == 2, 30, "snapshots of both partitions")
    produce(kafka_bootstrap, second)
    worker.wait_for(
        lambda: sum(p for p, _ in worker.counts().values()) > len(first) // 2 + 100,
        60,
        "some of the second half processed",
    )
    worker.stop(signal.SIGKILL)

    restarted = start()
    restarted.wait_for(lambda: restarted.counts() == expected_counts(items, env), 90, "every event counted once")
    assert restarted.stop() == 0  # SIGTERM: final checkpoint, exit 0

    # The state on disk equals a run that never crashed: the same events, in offset order, in one process.
    consumed = [
        m for t in (topic(env, "predictions"), topic(env, "feedback")) for m, _ in read_topic(kafka_bootstrap, t)
    ]
    renamed = [
        RawMessage(PRED if m.topic.endswith("predictions") else FB, m.partition, m.offset, m.key, m.value)
        for m in consumed
    ]
    expected, _ = run_monitors(renamed, 10**9, SMALL_SETTINGS)
    store = LocalSnapshotStore(snapshots, worker_settings(env).state_seal())
    restored = {  # the state topic's cache keeps each model as its stored value (Dormant): decoded here
        m: ModelMonitor.from_state(m, SMALL_SETTINGS, st.load(st.value) if isinstance(st, Dormant) else st)
        for p in (0, 1)
        for m, st in store.load(p).models.items()
    }
    assert state_bytes(restored) == state_bytes(expected)

    # Both stores are sealed with the broker's cluster id (read above without one: a reader that has none does
    # not check it); read as another cluster's worker would, each is refused naming the two ids.
    cluster = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).cluster_id
    foreign = worker_settings(env).state_seal("another-cluster")
    refused = f"written against Kafka cluster '{cluster}' .* connected to cluster 'another-cluster'"
    with pytest.raises(SnapshotError, match=refused):
        LocalSnapshotStore(snapshots, foreign).load(0)
    with pytest.raises(SnapshotError, match=refused):
        StateTopic(worker_settings(env), foreign).restore(dict.fromkeys((0, 1)))


def predictions(items: list[tuple[str, bytes, bytes]]) -> int:
    return sum(1 for t, _, _ in items if t.endswith(".predictions"))


def two_changes(env: dict) -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes]]]:
    """12,000 predictions and their labels with two changes: credit-risk's applicants drift at its 1500th
    prediction; in a second stretch (other seed, other event ids) fraud gets the drifted applicants and
    credit-risk the usual ones. Data and prediction drift on both models, concept drift on fraud only (since
    the concept detector's redesign, ed7f012). The two stretches."""
    names = {"prediction": topic(env, "predictions"), "feedback": topic(env, "feedback")}
    swapped = {"credit-risk": "fraud", "fraud": "credit-risk", "churn": "churn"}
    first = list(generate(6000, seed=11, drift_at=1500, rate=500.0))
    second = [
        (kind, {**e, "model_id": swapped[e["model_id"]], "event_id": "b-" + e["event_id"]})
        for kind, e in generate(6000, seed=12, drift_at=0, rate=500.0, start_time=1_700_000_012.0)
    ]

    def encoded(part: list[tuple[str, dict]]) -> list[tuple[str, bytes, bytes]]:
        return [(names[kind], e["model_id"].encode(), orjson.dumps(e)) for kind, e in part]

    return encoded(first), encoded(second)


def alerts_by_id(events: list[dict]) -> dict[str, dict]:
    return {e["alert_id"]: {k: v for k, v in e.items() if k != "emitted_at"} for e in events}


def end_offsets(bootstrap: str, name: str) -> list[int]:
    """The high watermarks of both partitions of topic ``name``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{name}"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in (0, 1)]
    finally:
        consumer.close()


def restored_offsets(log: str) -> dict[int, dict[str, int]]:
    """partition -> the input offsets of the snapshot a worker restored, from its log."""
    out = {}
    for line in log.splitlines():
        record = orjson.loads(line) if line.startswith("{") else {}
        if record.get("msg") == "snapshot restored":
            out[record["partition"]] = record["offsets"]
    return out


def test_sigkill_mid_stream_then_restart_publishes_the_uninterrupted_alerts_replaying_only_after_the_snapshot(
    kafka_bootstrap, unique_name, tmp_path
):
    """The worker's delivery of drift events is at least once: the producer is flushed before each
    checkpoint, not transactional. After a SIGKILL, the restarted worker resumes at the offsets of the
    last snapshot, so it publishes again exactly the uninterrupted run's alerts raised at or after those
    offsets, with the same alert_id and content, and none raised before them; the first run had published
    some of those already (those are the only duplicates) and every one raised before them."""
    # the second part comes seconds after the first (record times), so the idle release at the end of the
    # first part cannot put records of the second part out of order
    settings = {**SMALL, "batch_size": 2000, "state_store": "local", "snapshot_interval_s": 5.0}
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots", **settings)
    assert streamdrift(env, "topics", "create", "--partitions", "2").returncode == 0
    # the first stretch (credit-risk's change) before the snapshot, the second (fraud's) around the kill
    first, second = two_changes(env)
    items = first + second
    snapshots = Path(env["STREAMDRIFT_SNAPSHOT_DIR"])
    produce(kafka_bootstrap, first)
    worker = WorkerProcess(env, tmp_path / "crashed.log")
    restarted = None
    try:
        worker.wait_ready()
        worker.wait_for(lambda: worker.counts() == expected_counts(first, env), 60, "first part counted")
        worker.wait_for(lambda: len(list(snapshots.glob("*.snapshot"))) == 2, 30, "snapshots of both partitions")
        # the second stretch's last records come after the kill: whenever the worker's last checkpoint came, there
        # are records past it (before, a checkpoint that caught up with the whole stretch just before the kill left
        # nothing to replay, and the test failed its own premise: seen once on CI)
        head, tail = second[:-2000], second[-2000:]
        produce(kafka_bootstrap, head)
        worker.wait_for(
            lambda: sum(p for p, _ in worker.counts().values()) > predictions(first) + 300,
            60,
            "some of the second stretch processed",
        )
        worker.stop(signal.SIGKILL)
        published_before = end_offsets(kafka_bootstrap, topic(env, "alerts"))  # what the killed worker published
        produce(kafka_bootstrap, tail)
        restarted = WorkerProcess(env, tmp_path / "restarted.log")
        restarted.wait_ready()
        restarted.wait_for(lambda: restarted.counts() == expected_counts(items, env), 90, "every event counted")
        assert restarted.stop() == 0  # its final checkpoint flushes the producer first
    finally:
        for w in (worker, restarted):
            if w is not None:
                w.stop(signal.SIGKILL)
    on_topic = read_topic(kafka_bootstrap, topic(env, "alerts"))
    crashed = [orjson.loads(raw.value) for raw, _ in on_topic if raw.offset < published_before[raw.partition]]
    replayed = [orjson.loads(raw.value) for raw, _ in on_topic if raw.offset >= published_before[raw.partition]]

    # an uninterrupted run: another group over the same input topics, into its own alerts topic
    reference_env = worker_env(kafka_bootstrap, unique_name("ref"), tmp_path / "reference", **settings)
    assert streamdrift(reference_env, "topics", "create", "--partitions", "2").returncode == 0
    for name in ("predictions", "feedback"):
        reference_env[f"STREAMDRIFT_TOPICS__{name.upper()}"] = topic(env, name)
    reference = WorkerProcess(reference_env, tmp_path / "reference.log")
    try:
        reference.wait_ready()
        reference.wait_for(lambda: reference.counts() == expected_counts(items, env), 90, "every event counted")
        assert reference.stop() == 0
    finally:
        reference.stop(signal.SIGKILL)
    uninterrupted = alerts_by_id(
        [orjson.loads(raw.value) for raw, _ in read_topic(kafka_bootstrap, topic(reference_env, "alerts"))]
    )
    assert {"data_drift", "prediction_drift", "concept_drift"} <= {e["kind"] for e in uninterrupted.values()}
    assert {e["model_id"] for e in uninterrupted.values() if e["kind"] == "data_drift"} == {"credit-risk", "fraud"}

    # every alert of the uninterrupted run is on the topic, the same event, and nothing else is
    assert {e["alert_id"] for e in crashed + replayed} == set(uninterrupted)
    for event in crashed + replayed:  # each copy, emitted_at aside
        assert alerts_by_id([event])[event["alert_id"]] == uninterrupted[event["alert_id"]]
    assert len(alerts_by_id(crashed)) == len(crashed) and len(alerts_by_id(replayed)) == len(replayed)
    # the restart published exactly those raised at or after the snapshot it resumed from
    resumed_at = restored_offsets(restarted.log())
    assert sorted(resumed_at) == [0, 1]
    ends = {p: {topic(env, t): 0 for t in ("predictions", "feedback")} for p in (0, 1)}
    for raw, _ in [m for t in ("predictions", "feedback") for m in read_topic(kafka_bootstrap, topic(env, t))]:
        ends[raw.partition][raw.topic] = raw.offset + 1
    assert all(resumed_at[p][t] <= ends[p][t] for p in ends for t in ends[p]) and resumed_at != ends

    def after_the_snapshot(event: dict) -> bool:
        stream = event["details"]["window_stream"]  # the input topic the window's offsets count in
        stream = topic(env, stream) if stream in ("predictions", "feedback") else stream
        return event["window"]["end_offset"] >= resumed_at[event["window"]["partition"]][stream]

    assert sorted(e["alert_id"] for e in replayed) == sorted(
        i for i, e in uninterrupted.items() if after_the_snapshot(e)
    )
    # so the only alerts published twice are some the killed worker raised after that snapshot
    twice = {e["alert_id"] for e in crashed} & {e["alert_id"] for e in replayed}
    assert all(after_the_snapshot(uninterrupted[i]) for i in twice)


@pytest.mark.parametrize("fork", ["true", "false"])
def test_offsets_are_committed_only_once_their_snapshot_is_on_disk(setup, kafka_bootstrap, tmp_path, fork):
    """Snapshots are written in the background (by a forked copy, or by a thread from a capture taken in the
    loop). A write that fails commits nothing and does not stop the worker (issue 17, item 6): it is not
    ready, counts the failure, keeps its state, retries with backoff and recovers once the directory can be
    written, without leaving temporary files."""
    env, start = setup
    env["STREAMDRIFT_SNAPSHOT_FORK"] = fork
    env["STREAMDRIFT_STATE_STORE"] = "local"  # the local store's contract (the state topic's: test_state_topic)
    snapshots = Path(env["STREAMDRIFT_SNAPSHOT_DIR"])
    blockers = [snapshots / f"partition-{p}.tmp" for p in (0, 1)]
    for blocker in blockers:  # a directory where the temporary file goes: every snapshot write fails
        blocker.mkdir(parents=True)
    items = demo_items(env, 2000, drift_at=10**9)
    produce(kafka_bootstrap, items)
    worker = start("failing-writes.log", ready=False)  # not ready: no checkpoint can be written
    # every event counted, then checkpoints that fail after it (two at least): the state is kept through them.
    # (Waiting for two failures alone raced the consumption: on a loaded machine they came before the last event.)
    worker.wait_for(lambda: worker.counts() == expected_counts(items, env), 90, "every event counted")
    failed = failures(worker)
    worker.wait_for(lambda: failures(worker) >= max(2, failed + 1), 90, "failed checkpoints after the last event")
    assert worker.get("/readyz")[0] == 503
    assert worker.counts() == expected_counts(items, env)  # the state is kept
    assert "partition-" in worker.log() and "IsADirectoryError" in worker.log()
    assert committed_offsets(kafka_bootstrap, env) == [OFFSET_INVALID] * 4
    assert not list(snapshots.glob("*.snapshot"))

    for blocker in blockers:
        blocker.rmdir()
    worker.wait_for(lambda: worker.get("/readyz")[0] == 200, 90, "ready once a checkpoint is written")
    assert sum(committed_offsets(kafka_bootstrap, env)) == len(items)
    assert worker.stop() == 0
    assert sorted(f.name for f in snapshots.iterdir()) == ["partition-0.snapshot", "partition-1.snapshot"]


def failures(worker: WorkerProcess) -> float:
    """streamdrift_checkpoint_failures_total, from /metrics."""
    for line in worker.get("/metrics")[1].decode().splitlines():
        if line.startswith("streamdrift_checkpoint_failures_total"):
            return float(line.split()[-1])
    return 0.0


def test_an_unwritable_snapshot_dir_stops_the_worker_at_start_naming_the_setting(setup, tmp_path):
    env, _ = setup
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    env["STREAMDRIFT_SNAPSHOT_DIR"] = str(not_a_dir / "snapshots")
    done = streamdrift(env, "worker", timeout=60)
    assert done.returncode == 2, done.stderr
    assert "snapshot_dir" in done.stderr and "STREAMDRIFT_SNAPSHOT_DIR" in done.stderr


def test_where_fork_fails_the_worker_captures_in_the_loop_and_still_commits(setup, kafka_bootstrap, tmp_path):
    env, start = setup
    hook = tmp_path / "no-fork"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(  # as under strict overcommit with no memory to spare
        "import os\n\ndef _fork():\n    raise OSError(12, 'Cannot allocate memory')\n\nos.fork = _fork\n"
    )
    env["PYTHONPATH"] = str(hook)
    items = demo_items(env, 2000, drift_at=10**9)
    produce(kafka_bootstrap, items)
    worker = start("no-fork.log", ready=False)
    worker.wait_for(lambda: worker.counts() == expected_counts(items, env), 60, "every event counted")
    assert worker.stop() == 0
    assert "cannot fork the snapshot writer" in worker.log() and "Cannot allocate memory" in worker.log()
    assert sum(committed_offsets(kafka_bootstrap, env)) == len(items)
    assert len(list(Path(env["STREAMDRIFT_SNAPSHOT_DIR"]).glob("*.snapshot"))) == 2


def committed_offsets(bootstrap: str, env: dict) -> list[int]:
    """The group's committed offsets of both input topics' two partitions."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": env["STREAMDRIFT_GROUP_ID"]})
    try:
        return [
            tp.offset
            for tp in consumer.committed(
                [TopicPartition(topic(env, t), p) for t in ("predictions", "feedback") for p in (0, 1)], timeout=30
            )
        ]
    finally:
        consumer.close()


def test_worker_refuses_topics_that_are_not_co_partitioned(kafka_bootstrap, unique_name, tmp_path):
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snap")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [
        NewTopic(topic(env, "predictions"), 2, 1),
        NewTopic(topic(env, "feedback"), 3, 1),
        NewTopic(topic(env, "alerts"), 1, 1),
        NewTopic(topic(env, "dead_letter"), 1, 1),
    ]
    for f in admin.create_topics(topics).values():
        f.result()
    done = streamdrift(env, "worker", timeout=60)
    assert done.returncode == 2
    assert "not co-partitioned" in done.stderr and "has 2 partitions" in done.stderr


def test_delayed_feedback_is_joined_and_metrics_on_metrics_match_an_offline_computation(setup, kafka_bootstrap):
    import numpy as np
    from prometheus_client.parser import text_string_to_metric_families
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    env, start = setup
    # a window of 500 graded predictions is small: a tolerance of 0.02 lets the drop (0.73 -> 0.63) show surely
    env["STREAMDRIFT_MONITOR__DEGRADATION_TOLERANCE"] = "0.02"
    items = demo_items(env, 9000, drift_at=1000)  # feedback follows its prediction 200 predictions later
    produce(kafka_bootstrap, items)
    worker = start()
    worker.wait_for(lambda: worker.counts() == expected_counts(items, env), 90, "all events counted")

    events = [orjson.loads(v) for _, _, v in items]
    predicted = {e["event_id"]: e for e in events if "features" in e}
    graded = [(e["label"], predicted[e["event_id"]]) for e in events if "label" in e and e["model_id"] == "churn"]
    labels = [y for y, _ in graded]
    predictions = [p["prediction"] for _, p in graded]
    scores = np.array([p["score"] for _, p in graded])
    samples = {
        (s.labels["model_id"], s.labels["metric"], s.labels["scope"]): s.value
        for f in text_string_to_metric_families(worker.get("/metrics")[1].decode())
        if f.name == "streamdrift_model_metric"
        for s in f.samples
    }
    assert samples[("churn", "accuracy", "cumulative")] == accuracy_score(labels, predictions)
    assert samples[("churn", "f1", "cumulative")] == pytest.approx(f1_score(labels, predictions), abs=1e-12)
    # AUC over the 50 equal-width score bins the worker keeps: the AUC of the binned scores, exactly
    binned = np.minimum(np.floor(scores * 50), 49)
    assert samples[("churn", "roc_auc", "cumulative")] == pytest.approx(roc_auc_score(labels, binned), abs=1e-12)

    alerts = [orjson.loads(raw.value) for raw, _ in read_topic(kafka_bootstrap, topic(env, "alerts"), expect=1)]
    degraded = [(a["model_id"], a["kind"]) for a in alerts if a["kind"] == "performance_degradation"]
    assert degraded == [("credit-risk", "performance_degradation")]
    assert worker.stop() == 0
