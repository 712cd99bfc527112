"""The worker's side of the merge's memory bound: a topic-partition the merge holds too much of is paused, and
resumed once it is back within; a partition dropped (revoked, lost, rewound) is never left paused."""

from __future__ import annotations

import time

import orjson
from confluent_kafka import Message, TopicPartition

from streamdrift.core.records import RawMessage
from streamdrift.core.routing import murmur2_partition
from streamdrift.core.synthetic import generate
from streamdrift.runtime import worker as worker_module
from streamdrift.runtime.idle import IdleClock
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker
from streams import state_bytes

BATCH_SIZE = 2  # the merge holds 10 x batch_size = 20 records per topic and partition


class RecordingConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("pause", [(tp.topic, tp.partition) for tp in partitions]))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("resume", [(tp.topic, tp.partition) for tp in partitions]))


def _worker(tmp_path) -> tuple[Worker, RecordingConsumer]:
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path, batch_size=BATCH_SIZE))
    worker.consumer = consumer = RecordingConsumer()  # type: ignore[assignment]
    worker.partitions = {0: worker._new_state(0)}
    return worker, consumer


def _records(topic: str, start: int, n: int, timestamp_ms: int) -> list[RawMessage]:
    return [RawMessage(topic, 0, offset, None, b"{}", timestamp_ms) for offset in range(start, start + n)]


def test_the_topic_ahead_is_paused_past_max_buffered_and_resumed_once_the_other_moves_on(tmp_path) -> None:
    worker, consumer = _worker(tmp_path)
    pred, fb = worker.topics.predictions, worker.topics.feedback
    state = worker.partitions[0]
    engine = state.engine
    engine.add(fb, _records(fb, 0, 21, 1_000))  # a burst of labels in one epoch, before any prediction
    assert engine.release().records == 0  # predictions of that epoch may still come: they go first
    worker._backpressure(0, state)
    worker._backpressure(0, state)  # still over: paused once
    assert consumer.calls == [("pause", [(fb, 0)])] and state.paused == {fb}
    assert worker.m_paused.labels(fb)._value.get() == 1
    engine.add(pred, _records(pred, 0, 1, 60_000))  # predictions move past that epoch: the labels go
    assert engine.release().records == 21
    worker._backpressure(0, state)
    assert consumer.calls[1:] == [("resume", [(fb, 0)])] and state.paused == set()


def test_a_dropped_partition_is_resumed_so_that_its_next_owner_state_fetches_it(tmp_path) -> None:
    worker, consumer = _worker(tmp_path)
    state = worker.partitions[0]
    pred = worker.topics.predictions
    state.engine.add(pred, _records(pred, 0, 21, 1_000))
    state.engine.release()
    worker._backpressure(0, state)
    worker._drop({0})  # e.g. a transaction's rewind, which keeps the partition assigned with a fresh state
    assert consumer.calls == [("pause", [(pred, 0)]), ("resume", [(pred, 0)])] and worker.partitions == {}


class DiscardingProducer:
    def produce(self, *args, **kwargs) -> None:  # the dead letters of the misrouted records
        pass

    def poll(self, timeout: float = 0) -> int:
        return 0


def _event(topic: str, offset: int, model: str, seconds: int) -> Message:
    fields = {"prediction": 1, "features": {"x": 1.0}} if topic.endswith("predictions") else {"label": 1}
    value = orjson.dumps({"event_id": f"{topic}{offset}", "model_id": model, "timestamp": seconds, **fields})
    return Message(
        topic=topic, partition=0, offset=offset, key=model.encode(), value=value, timestamp=(1, seconds * 1000)
    )


def test_a_topic_bringing_only_misrouted_records_is_idle_so_the_topic_paused_ahead_of_it_goes_on(tmp_path) -> None:
    """Misrouted records pass the merge as placeholders that move no epoch: a feedback topic that brings only
    those (its partition's models get no labels, another's producer partitions by CRC32) gives the merge
    nothing, and must count as silent, or the predictions paused ahead of it wait for as long as it lasts."""
    worker = Worker(
        Settings(state_store="local", snapshot_dir=tmp_path, batch_size=BATCH_SIZE, misrouted="dead_letter")
    )
    worker.consumer = consumer = RecordingConsumer()  # type: ignore[assignment]
    worker.producer = DiscardingProducer()  # type: ignore[assignment]
    worker.partition_count = 2
    worker.partitions = {0: worker._new_state(0)}
    state = worker.partitions[0]
    pred, fb = worker.topics.predictions, worker.topics.feedback
    worker.lag = {(pred, 0): 0, (fb, 0): 0}
    here, elsewhere = (next(m for m in map(str, range(99)) if murmur2_partition(m.encode(), 2) == p) for p in (0, 1))
    t0 = 1_764_900_000
    worker.process([_event(fb, 0, here, t0), *(_event(pred, o, here, t0 + 10) for o in range(21))])
    assert (
        state.paused == {pred} and state.engine.monitors[here].predictions_total == 0
    )  # predictions ahead of the labels: they wait
    state.idle.last_record[fb] -= 3600  # the partition's last label was an hour ago (max_task_idle_ms: 3 s)
    worker.process([_event(fb, o, elsewhere, t0 + 20 + o) for o in range(1, 4)])  # only misrouted labels since
    assert state.engine.monitors[here].predictions_total == 21
    assert worker.m_forced.labels("idle")._value.get() == 1
    assert consumer.calls == [("pause", [(pred, 0)]), ("resume", [(pred, 0)])]


class Clock:
    """``time`` for the worker module with a ``monotonic`` the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def _drift_messages(worker: Worker) -> tuple[list[Message], list[Message]]:
    """The synthetic stream's predictions and labels (half of them, each right after its prediction) for two
    seconds, all on partition 0, stamped with their event times."""
    topics = {"prediction": worker.topics.predictions, "feedback": worker.topics.feedback}
    out: dict[str, list[Message]] = {"prediction": [], "feedback": []}
    for kind, event in generate(1000, seed=19, drift_at=400, rate=500.0, feedback_delay=0):
        millis = round(event["timestamp"] * 1000)
        offset = len(out[kind])
        out[kind].append(
            Message(
                topic=topics[kind],
                partition=0,
                offset=offset,
                key=event["model_id"].encode(),
                value=orjson.dumps(event),
                timestamp=(1, millis),
            )
        )
    return out["prediction"], out["feedback"]


def _clocked_worker(tmp_path, monkeypatch, clock: Clock, **settings: object) -> Worker:
    """A worker on ``clock`` owning partition 0, assigned now."""
    monkeypatch.setattr(worker_module, "time", clock)
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path, **settings))  # type: ignore[arg-type]
    worker.consumer = RecordingConsumer()  # type: ignore[assignment]
    worker.producer = DiscardingProducer()  # type: ignore[assignment]
    worker.partitions = {0: worker._new_state(0)}
    worker.partitions[0].idle = IdleClock(started=clock.now)
    return worker


def _quiet_partition_worker(tmp_path, monkeypatch, clock: Clock) -> Worker:
    """A worker whose partition 0 was assigned long ago and has had nothing since, both topics caught up."""
    worker = _clocked_worker(tmp_path, monkeypatch, clock)
    worker.lag = {(worker.topics.predictions, 0): 0, (worker.topics.feedback, 0): 0}
    clock.now += 3600  # an hour without a record on either topic (max_task_idle_ms: 3 s)
    return worker


def test_a_topic_quiet_for_long_is_waited_for_when_the_other_topic_starts_again(tmp_path, monkeypatch) -> None:
    """Labels that reach the worker a poll before their predictions (the producer's batches of two topics land
    apart) wait for them: the predictions' topic, quiet for an hour, is not idle until ``max_task_idle_ms`` after
    the partition's traffic resumed. Before, its hour of silence counted, the labels were released first and the state
    was not the log's (a flaky state-topic comparison in CI)."""
    clock = Clock(1000.0)
    in_one_poll = _quiet_partition_worker(tmp_path / "one", monkeypatch, clock)
    predictions, labels = _drift_messages(in_one_poll)
    in_one_poll.process(predictions + labels)
    labels_first = _quiet_partition_worker(tmp_path / "two", monkeypatch, clock)
    labels_first.process(labels)  # the lag is 0: the predictions' batch is not on the broker yet
    assert labels_first.m_forced.labels("idle")._value.get() == 0
    clock.now += 0.05
    labels_first.process(predictions)
    clock.now += 5  # nothing more comes: the last epochs go once both topics have been idle for 3 s
    for worker in (in_one_poll, labels_first):
        worker.process([])
    monitors = [w.partitions[0].engine.monitors for w in (in_one_poll, labels_first)]
    assert sum(m.predictions_total for m in monitors[0].values()) == len(predictions)
    assert sum(m.feedback_total for m in monitors[0].values()) == len(labels)
    assert state_bytes(monitors[1]) == state_bytes(monitors[0])


def test_a_topic_streaming_past_max_buffered_is_not_held_back_each_time_the_merge_empties(
    tmp_path, monkeypatch
) -> None:
    """A partition whose labels never come, read from a backlog: its predictions fill the merge past
    ``max_buffered`` (paused), the silent feedback topic is idle and the merge gives them all; the next poll's
    predictions must not wait ``max_task_idle_ms`` again for a topic that stayed silent throughout (review of the
    idle fix: each emptied merge restarted the wait, about max_buffered records per 3 s)."""
    clock = Clock(1000.0)
    worker = _clocked_worker(tmp_path, monkeypatch, clock, batch_size=BATCH_SIZE)
    consumer = worker.consumer
    state = worker.partitions[0]
    pred, fb = worker.topics.predictions, worker.topics.feedback
    worker.lag = {(pred, 0): 1, (fb, 0): 0}  # predictions behind (a backlog), feedback caught up and silent
    fetched, paused_polls, t0 = 0, 0, 1_764_900_000
    for _ in range(200):  # polls of 5 predictions each unless paused
        polled = [] if pred in state.paused else [_event(pred, fetched + i, "m", t0 + fetched + i) for i in range(5)]
        fetched += len(polled)
        paused_polls += not polled
        worker.process(polled)
        # a poll with records returns at once; a paused one waits poll_timeout_s (0.5 s) for nothing, so the
        # predictions' first records after the pause come 3 s or more after their last (review of 3f65d03)
        clock.now += 0.01 if polled else worker.settings.poll_timeout_s
    # paused once, while feedback was waited for (3 s from the assignment), then fetched at every poll
    assert sum(1 for call, _ in consumer.calls if call == "pause") == 1
    assert paused_polls <= 7 and fetched >= 1000 - 5 * 7
    assert state.engine.monitors["m"].predictions_total >= fetched - 1  # all but the newest epoch's record
