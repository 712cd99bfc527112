"""Issue 20 on a real broker: predictions by murmur2, feedback by librdkafka's default partitioner (CRC32) and
with null keys, 8 models on 3 partitions; every label joins as with murmur2 everywhere."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from confluent_kafka import Producer

from streamdrift.cli.replay import event_time_ms
from streamdrift.core import state as codec
from streamdrift.core.routing import MISROUTED, consistent_partition, murmur2_partition
from streamdrift.core.synthetic import generate
from streamdrift.runtime.checkpoint import LocalSnapshotStore
from worker_process import WorkerProcess, model_summaries, read_topic, streamdrift, worker_env, worker_settings

pytestmark = pytest.mark.kafka

N = 3
MODELS = [f"model-{c}" for c in "abcdefgh"]  # model-a, -f, -g: CRC32 agrees with murmur2; five others it does not
NULL_KEYED = {"model-c", "model-h"}  # their feedback is produced without a key: the third stream
# CRC32 puts the labels each partition is to get back from one other partition only: c from 1 to 0, d and i
# from 2 to 1, b from 1 to 2 (a, f, g, j: where murmur2 puts them)
ONE_SOURCE_MODELS = [f"model-{c}" for c in "abcdfgij"]
SETTINGS = {"checkpoint_interval_s": 0.5, "max_task_idle_ms": 300, "state_store": "local"}


def _events(start_time: float, models: list[str] = MODELS) -> dict[str, list[dict]]:
    """2,400 predictions (300 per model), feedback for about half of them 20 predictions later."""
    out: dict[str, list[dict]] = {"prediction": [], "feedback": []}
    model_of: dict[str, str] = {}
    for kind, event in generate(2400, seed=11, feedback_delay=20, start_time=start_time):
        if kind == "prediction":
            model_of[event["event_id"]] = models[len(model_of) % len(models)]
        out[kind].append({**event, "model_id": model_of[event["event_id"]]})
    return out


def _produce(bootstrap: str, topic: str, events: list[dict], partitioner: str, null_keys=frozenset()) -> list:
    """Produce with a librdkafka producer using ``partitioner``; return (key, partition, offset) as delivered."""
    delivered: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": partitioner, "linger.ms": 20})
    for event in events:
        key = None if event["model_id"] in null_keys else event["model_id"].encode()
        producer.produce(
            topic,
            orjson.dumps(event),
            key,
            timestamp=event_time_ms(event["timestamp"]),
            on_delivery=lambda err, msg, model=event["model_id"]: delivered.append(
                (msg.key(), model, msg.partition(), msg.offset())
            ),
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    return delivered


def _labelled(summaries: dict[str, dict]) -> dict[str, tuple]:
    """Per model: predictions, feedback, labelled and joined counts, and the cumulative metrics (the confusion
    matrix by class pair: its classes are listed in the order first seen)."""
    out = {}
    for model_id, s in sorted(summaries.items()):
        cumulative = dict(s["performance"]["cumulative"])
        confusion = cumulative.pop("confusion", None)
        if confusion is not None:
            labels = confusion["labels"]
            cumulative["confusion"] = sorted(
                (labels[i], labels[j], n) for i, row in enumerate(confusion["matrix"]) for j, n in enumerate(row)
            )
        out[model_id] = (s["predictions_total"], s["feedback_total"], s["labelled_total"], s["join"], cumulative)
    return out


def _run(env: dict, log, n: dict[str, int]) -> tuple[dict[str, dict], dict]:
    """Run a worker until it monitored ``n`` predictions and feedback; its model summaries and /status."""
    worker = WorkerProcess(env, log)
    try:
        worker.wait_ready()
        worker.wait_for(
            lambda: (
                sum(p for p, _ in worker.counts().values()) == n["prediction"]
                and sum(f for _, f in worker.counts().values()) == n["feedback"]
            ),
            60,
            "every record monitored",
        )
        summaries, status = model_summaries(worker), worker.status()
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        worker.stop(signal.SIGKILL)
    return summaries, status


def test_labels_from_any_partitioner_join_as_with_murmur2(kafka_bootstrap, unique_name, tmp_path):
    events = _events(start_time=float(int(time.time()) - 3600))
    n = {kind: len(stream) for kind, stream in events.items()}

    # the reference: every producer with murmur2
    env = worker_env(kafka_bootstrap, unique_name("murmur2"), tmp_path / "murmur2", **SETTINGS)
    assert streamdrift(env, "topics", "create", "--partitions", str(N)).returncode == 0
    for kind, topic in (("prediction", "PREDICTIONS"), ("feedback", "FEEDBACK")):
        for key, _, p, _ in _produce(
            kafka_bootstrap, env[f"STREAMDRIFT_TOPICS__{topic}"], events[kind], "murmur2_random"
        ):
            assert p == murmur2_partition(key, N)  # our murmur2 is librdkafka's murmur2_random
    expected, _ = _run(env, tmp_path / "murmur2.log", n)
    assert all(s["join"]["joined"] == s["feedback_total"] > 0 for s in expected.values())  # nothing expired

    # the mix: predictions by murmur2, feedback by CRC32, two models' feedback without a key
    mixed = worker_env(kafka_bootstrap, unique_name("mixed"), tmp_path / "mixed", **SETTINGS)
    assert streamdrift(mixed, "topics", "create", "--partitions", str(N)).returncode == 0
    _produce(kafka_bootstrap, mixed["STREAMDRIFT_TOPICS__PREDICTIONS"], events["prediction"], "murmur2_random")
    feedback = _produce(
        kafka_bootstrap, mixed["STREAMDRIFT_TOPICS__FEEDBACK"], events["feedback"], "consistent_random", NULL_KEYED
    )
    for key, _, p, _ in feedback:
        if key is not None:
            assert p == consistent_partition(key, N)  # our CRC32 is librdkafka's consistent_random
    misrouted = {(p, offset) for _, model, p, offset in feedback if murmur2_partition(model.encode(), N) != p}
    assert len(misrouted) > n["feedback"] // 3

    checked = streamdrift(mixed, "topics", "check", "--sample", "5000")  # every record
    assert checked.returncode == 0, checked.stderr
    lines = {line.split(":")[0]: line for line in checked.stdout.splitlines()}
    assert (
        f"0 of {n['prediction']} latest records misrouted (0.0%); producers' partitioner: murmur2"
        in lines[mixed["STREAMDRIFT_TOPICS__PREDICTIONS"]]
    )
    assert (
        f"{len(misrouted)} of {n['feedback']} latest records misrouted" in lines[mixed["STREAMDRIFT_TOPICS__FEEDBACK"]]
    )
    assert "consistent_random (CRC32) + null keys (random)" in lines[mixed["STREAMDRIFT_TOPICS__FEEDBACK"]]

    # misrouted = "dead_letter", its own group and outputs over the same inputs: exactly the misrouted records
    dead = worker_env(kafka_bootstrap, unique_name("dead"), tmp_path / "dead", misrouted="dead_letter", **SETTINGS)
    for topic in ("PREDICTIONS", "FEEDBACK"):
        dead[f"STREAMDRIFT_TOPICS__{topic}"] = mixed[f"STREAMDRIFT_TOPICS__{topic}"]
    assert streamdrift(dead, "topics", "create", "--partitions", str(N)).returncode == 0
    _run(dead, tmp_path / "dead.log", {"prediction": n["prediction"], "feedback": n["feedback"] - len(misrouted)})
    letters = read_topic(kafka_bootstrap, dead["STREAMDRIFT_TOPICS__DEAD_LETTER"], expect=len(misrouted))
    assert {h["streamdrift.reason"] for _, h in letters} == {MISROUTED}
    assert sorted(
        (int(h["streamdrift.source.partition"]), int(h["streamdrift.source.offset"])) for _, h in letters
    ) == (sorted(misrouted))

    # misrouted = "forward", the default: every label joins as with murmur2 everywhere
    got, status = _run(mixed, tmp_path / "mixed.log", n)
    assert _labelled(got) == _labelled(expected)
    assert status["misrouted"] == {mixed["STREAMDRIFT_TOPICS__FEEDBACK"]: len(misrouted)}
    log = (tmp_path / "mixed.log").read_text()
    assert "misrouted records: their producer does not partition as the worker assumes" in log
    assert "partitioner=murmur2_random" in log


def _half(events: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The stream cut in two at its middle prediction's time."""
    cut = events["prediction"][len(events["prediction"]) // 2]["timestamp"]
    first = {kind: [e for e in stream if e["timestamp"] < cut] for kind, stream in events.items()}
    second = {kind: [e for e in stream if e["timestamp"] >= cut] for kind, stream in events.items()}
    return first, second


def _final_state(env: dict) -> list[tuple]:
    """Per partition: the models' states as checkpointed (bytes), the partition state, the offsets."""
    store = LocalSnapshotStore(env["STREAMDRIFT_SNAPSHOT_DIR"], worker_settings(env).state_seal())
    out = []
    for p in range(N):
        snapshot = store.load(p)
        assert snapshot is not None
        offsets = {topic.rsplit(".", 1)[1]: offset for topic, offset in snapshot.offsets.items()}
        merge = orjson.loads(orjson.dumps(snapshot.merge).replace(env["STREAMDRIFT_TOPICS__FEEDBACK"].encode(), b"fb"))
        merge = orjson.loads(orjson.dumps(merge).replace(env["STREAMDRIFT_TOPICS__PREDICTIONS"].encode(), b"pr"))
        out.append((codec.dumps(snapshot.models), merge, offsets))
    return out


def test_a_sigkill_after_forwarding_leaves_the_state_of_a_run_without_it(kafka_bootstrap, unique_name, tmp_path):
    """Killed after forwarding half the stream and before any checkpoint, the worker forwards every misrouted record
    of that half again; the destinations drop the copies, and the final state is byte-identical to the run without
    the kill.

    Byte-identical needs the destinations' logs to be the same but for the copies forwarded twice, which timing
    decides where copies come from several partitions (null keys; keyed labels of models from several partitions):
    a copy takes the epoch its side has reached, which copies from another partition may have raised. Hence keyed
    labels, every partition getting copies from one other only, each half produced once the worker is through the
    previous one, and max_task_idle_ms well above a copy's way (an idle release before the copies arrive would
    process them after predictions they precede in the log)."""
    first, second = _half(_events(start_time=float(int(time.time()) - 3600), models=ONE_SOURCE_MODELS))
    n = {kind: len(first[kind]) + len(second[kind]) for kind in first}
    n_first = {kind: len(stream) for kind, stream in first.items()}
    states, duplicates = [], []
    for run in ("calm", "killed"):
        # no periodic checkpoint: the kill finds nothing committed, the final SIGTERM writes the state compared
        env = worker_env(
            kafka_bootstrap, unique_name(run), tmp_path / run, checkpoint_interval_s=3600, max_task_idle_ms=1500,
            state_store="local",
        )  # fmt: skip
        assert streamdrift(env, "topics", "create", "--partitions", str(N)).returncode == 0

        def produce(events: dict[str, list[dict]], env: dict = env) -> list:
            _produce(kafka_bootstrap, env["STREAMDRIFT_TOPICS__PREDICTIONS"], events["prediction"], "murmur2_random")
            return _produce(
                kafka_bootstrap, env["STREAMDRIFT_TOPICS__FEEDBACK"], events["feedback"], "consistent_random"
            )

        def monitored(worker: WorkerProcess, n: dict[str, int]) -> None:
            counts = lambda: tuple(map(sum, zip(*worker.counts().values()))) or (0, 0)  # noqa: E731
            worker.wait_for(lambda: counts() == (n["prediction"], n["feedback"]), 60, f"{n} monitored")

        delivered = produce(first)
        misrouted_first = sum(murmur2_partition(model.encode(), N) != p for _, model, p, _ in delivered)
        worker = WorkerProcess(env, tmp_path / f"{run}.log")
        try:
            monitored(worker, n_first)
            if run == "killed":
                worker.stop(signal.SIGKILL)
                worker = WorkerProcess(env, tmp_path / f"{run}.log")  # resumes at the start: nothing committed
                monitored(worker, n_first)
            produce(second)
            monitored(worker, n)
            metrics = worker.get("/metrics")[1].decode()
            assert worker.stop(signal.SIGTERM) == 0
        finally:
            worker.stop(signal.SIGKILL)
        feedback = env["STREAMDRIFT_TOPICS__FEEDBACK"]
        line = f'streamdrift_forwarded_duplicates_total{{topic="{feedback}"}}'
        duplicates.append(next((float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(line)), 0.0))
        states.append(_final_state(env))
    calm, killed = states
    assert duplicates == [0.0, misrouted_first] and misrouted_first > 0
    assert [models for models, _, _ in killed] == [models for models, _, _ in calm]
    # the same epochs and clock; the marks name the same source partitions, at source offsets that moved by the
    # copies forwarded twice into those partitions' own logs
    without_marks = lambda states: [{k: v for k, v in m.items() if k != "forwarded"} for _, m, _ in states]  # noqa: E731
    assert without_marks(killed) == without_marks(calm)
    assert [sorted(m["forwarded"]) for _, m, _ in killed] == [sorted(m["forwarded"]) for _, m, _ in calm]
    # the destinations' feedback logs hold the copies forwarded twice; the predictions' logs are the same
    assert [o["predictions"] for *_, o in killed] == [o["predictions"] for *_, o in calm]
    assert sum(o["feedback"] for *_, o in killed) == sum(o["feedback"] for *_, o in calm) + misrouted_first
