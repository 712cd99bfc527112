"""A state-topic checkpoint packed by a forked copy while the loop consumes on (issue 16/19).

The copy captures, encodes and compresses the changed models' records and streams them to the worker,
whose producer writes them; the bytes must be exactly those the loop makes when it packs them itself
(``snapshot_fork = false``), and so must the offsets committed and the local cache written.
"""

from __future__ import annotations

import os
import signal
import threading

import orjson
import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka import Message as ConfluentMessage

from streamdrift.core.dormant import Dormant
from streamdrift.core.errors import SnapshotError
from streamdrift.core.records import RawMessage, Rejected
from streamdrift.core.routing import murmur2_partition
from streamdrift.runtime import statecache, statepieces, statetopic
from streamdrift.runtime import worker as worker_module
from streamdrift.runtime.checkpoint import PACK_DEADLINE_S, ForkedPack, ForkedWrite
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker
from streams import FB, demo_messages


class Consumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple[str, int, int]]] = []

    def commit(self, offsets=None, asynchronous=True) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])


class Message:
    def __init__(self, topic: str, partition: int, key: bytes | None, offset: int) -> None:
        self._topic, self._partition, self._key, self._offset = topic, partition, key, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def key(self) -> bytes | None:
        return self._key

    def offset(self) -> int:
        return self._offset


class Producer:
    """Keeps what is produced; acknowledges every record at the next flush, at offsets per partition."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, int, bytes | None, bytes | None, list]] = []
        self._pending: list[tuple[Message, object]] = []
        self._next: dict[tuple[str, int], int] = {}

    def produce(self, topic, value=None, key=None, partition=-1, headers=None, on_delivery=None, **_) -> None:
        self.produced.append((topic, partition, key, value, list(headers or [])))
        offset = self._next.get((topic, partition), 0)
        self._next[(topic, partition)] = offset + 1
        self._pending.append((Message(topic, partition, key, offset), on_delivery))

    def flush(self, timeout: float = 0) -> int:
        pending, self._pending = self._pending, []
        for msg, on_delivery in pending:
            if on_delivery is not None:
                on_delivery(None, msg)
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


def two_partitions(n_events: int, worker: Worker) -> list[RawMessage]:
    """The demo stream on the worker's topics, each model on its murmur2 partition of two."""
    topics = {FB: worker.topics.feedback}
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for m in demo_messages(n_events, seed=5):
        topic = topics.get(m.topic, worker.topics.predictions)
        p = murmur2_partition(m.key or b"", 2)
        offset = offsets.get((topic, p), 0)
        offsets[(topic, p)] = offset + 1
        timestamp_ms = int(orjson.loads(m.value or b"{}")["timestamp"] * 1000)
        out.append(RawMessage(topic, p, offset, m.key, m.value, timestamp_ms))
    return out


def run(tmp_path, fork: bool) -> tuple[list, list, dict[str, bytes]]:
    """Two checkpoints of two partitions (every model, then the ones changed since); what the worker
    produced to the state topic, committed and left in its snapshot directory."""
    worker = Worker(Settings(snapshot_dir=tmp_path, snapshot_fork=fork))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    messages = two_partitions(1800, worker)
    for p in (0, 1):
        worker.partitions[p] = worker._new_state(p)
    for part in (messages[:1500], messages[1500:]):
        checkpointed(worker, part)  # landed, cache written
    state_records = [r for r in worker.producer.produced if r[0] == worker.topics.state]  # type: ignore[attr-defined]
    files = {path.name: path.read_bytes() for path in sorted(tmp_path.glob("partition-*.snapshot"))}
    return state_records, worker.consumer.commits, files  # type: ignore[attr-defined]


def test_the_forked_packer_produces_the_bytes_the_loop_packs(tmp_path) -> None:
    forked = run(tmp_path / "forked", fork=True)
    in_loop = run(tmp_path / "loop", fork=False)
    records, commits, files = forked
    assert records == in_loop[0]
    assert commits == in_loop[1]
    assert files == in_loop[2]
    # not vacuous: both partitions' models and partition records, twice, and only the changed models the second time
    keys = [key for _, _, key, _, _ in records]
    assert keys.count(b"partition/1/0") == 2 and keys.count(b"partition/0/0") == 2
    assert {key for key in keys if key.startswith(b"model/")} == {
        f"model/{slot}/0/{m}".encode() for slot in (0, 1) for m in ("credit-risk", "churn", "fraud")
    }
    assert sorted(files) == ["partition-0.snapshot", "partition-1.snapshot"]
    # each model record carries its model's summary, so a restore from the topic alone keeps the model encoded
    for _, _, key, value, _ in records:
        if key.startswith(b"model/"):
            header = orjson.loads(statetopic.inflate(value).split(b"\n", 1)[0])
            assert header["summary"]["model_id"] == statetopic.model_of(key)


def test_the_forked_cache_write_takes_the_summaries_the_packer_made(tmp_path, monkeypatch) -> None:
    """The summaries the records carry go to the cache as they are: none is made again after the word (a
    summary costs about 0.1 ms a model), and the cache files are those of a cache write that made them."""
    made = run(tmp_path / "made", fork=True)[2]
    monkeypatch.setattr(statecache, "stored_summary", lambda s: pytest.fail("a summary made again"))
    assert run(tmp_path / "taken", fork=True)[2] == made


def test_a_piece_decodes_to_what_was_encoded() -> None:
    rec = statetopic.Record(b"model/1/0/m", b"\x00value", [("streamdrift.gen", b"7"), ("x", None), ("s", "t")])
    assert statepieces.decode(statepieces.record(3, rec)) == (3, rec._replace(headers=[*rec.headers[:2], ("s", b"t")]))
    tombstone = statetopic.Record(b"model/0/0/m", None, [])
    assert statepieces.decode(statepieces.record(0, tombstone)) == (0, tombstone)
    changelog = statetopic.Changelog(gen=4, offset=-1, models={"m": statetopic.Placed(1, 2, 4)}, last_gen=4)
    changelog.garbage = {b"model/0/0/\xc3\xa9t\xc3\xa9"}
    planned = statepieces.decode(statepieces.planned(2, changelog))
    assert planned == statepieces.Planned(2, changelog)
    with pytest.raises(ValueError, match="not a piece"):
        statepieces.decode(b"Zjunk")


class TransactionalProducer(Producer):
    """Also logs the transaction's calls, in order with what is produced."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def produce(self, topic, value=None, key=None, **kwargs) -> None:
        self.calls.append(f"produce {topic}")
        super().produce(topic, value, key, **kwargs)

    def send_offsets_to_transaction(self, offsets, metadata, timeout=None) -> None:
        self.calls.append("send_offsets_to_transaction")

    def commit_transaction(self, timeout=None) -> None:
        self.calls.append("commit_transaction")

    def begin_transaction(self) -> None:
        self.calls.append("begin_transaction")


class GroupConsumer(Consumer):
    def consumer_group_metadata(self) -> object:
        return object()


def test_exactly_once_produces_what_comes_after_the_checkpoint_in_the_next_transaction(tmp_path) -> None:
    """The loop consumes on while the copy packs; what it produces meanwhile belongs to records after the
    checkpoint's offsets, so it must not be committed in the checkpoint's transaction (a replay from those
    offsets would produce it again): it waits, and goes into the next one."""
    worker = Worker(Settings(snapshot_dir=tmp_path, processing_guarantee="exactly_once"))
    producer = TransactionalProducer()
    worker.consumer, worker.producer = GroupConsumer(), producer  # type: ignore[assignment]
    messages = two_partitions(300, worker)
    state = worker.partitions[0] = worker._new_state(0)
    worker.partition_count = 2
    for topic in (worker.topics.predictions, worker.topics.feedback):
        state.engine.add(topic, [m for m in messages if m.partition == 0 and m.topic == topic])
    state.engine.release(ended={worker.topics.predictions, worker.topics.feedback})
    state.dirty = True
    worker.checkpoint()
    assert worker._flight is not None  # in flight: the loop goes on
    later = RawMessage(worker.topics.predictions, 0, 10_000, b"m", b"not json", 1)
    worker._dead_letter(Rejected(later, "not JSON"))  # as the loop would, meanwhile
    worker._complete_checkpoint()
    calls = producer.calls
    assert calls.count(f"produce {worker.topics.dead_letter}") == 1
    committed = calls.index("commit_transaction")
    assert calls[committed + 1 :] == ["begin_transaction", f"produce {worker.topics.dead_letter}"]
    assert calls[:committed] == [f"produce {worker.topics.state}"] * 3 + ["send_offsets_to_transaction"]


class FailingProducer(Producer):
    """Reports every state record as failed at the next flush."""

    def flush(self, timeout: float = 0) -> int:
        pending, self._pending = self._pending, []
        for msg, on_delivery in pending:
            if on_delivery is not None:
                on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), msg)
        return 0


def a_checkpoint_in_flight(tmp_path, producer: Producer) -> tuple[Worker, list[RawMessage]]:
    """A worker whose checkpoint of partition 0's first 600 events is in flight; the rest to come."""
    worker = Worker(Settings(snapshot_dir=tmp_path))
    worker.consumer, worker.producer = Consumer(), producer  # type: ignore[assignment]
    worker.partition_count = 2
    messages = [m for m in two_partitions(1200, worker) if m.partition == 0]
    state = worker.partitions[0] = worker._new_state(0)
    feed(worker, [m for m in messages if m.key == b"credit-risk"][:300])
    worker.checkpoint()
    assert worker._flight is not None and state.changed == set()
    feed(worker, [m for m in messages if m.key == b"fraud"])  # meanwhile: the loop consumes on
    assert state.changed == {"fraud"}
    return worker, messages


def feed(worker: Worker, messages: list[RawMessage]) -> None:
    state = worker.partitions[0]
    for topic in (worker.topics.predictions, worker.topics.feedback):
        state.engine.add(topic, [m for m in messages if m.topic == topic])
    state.engine.release(ended={worker.topics.predictions, worker.topics.feedback})
    state.dirty = True


def test_a_model_changed_while_the_checkpoint_is_in_flight_is_the_next_ones(tmp_path) -> None:
    worker, _ = a_checkpoint_in_flight(tmp_path, Producer())
    worker._complete_checkpoint()
    state = worker.partitions[0]
    assert worker._flight is None and state.changelog.gen == 1 and set(state.changelog.models) == {"credit-risk"}
    assert state.changed == {"fraud"} and state.dirty


def test_a_failed_flight_gives_back_the_models_it_took(tmp_path) -> None:
    worker, _ = a_checkpoint_in_flight(tmp_path, FailingProducer())
    worker._complete_checkpoint()
    state = worker.partitions[0]
    assert worker._flight is None and worker._failed_checkpoints == 1
    assert state.changed == {"credit-risk", "fraud"} and state.dirty
    assert state.changelog.gen == 0 and state.changelog.last_gen == 1  # the retry is numbered past it
    assert worker.consumer.commits == []  # type: ignore[attr-defined]


def test_a_partition_lost_during_the_flight_is_neither_committed_nor_cached(tmp_path) -> None:
    worker = Worker(Settings(snapshot_dir=tmp_path))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    messages = two_partitions(600, worker)
    for p in (0, 1):
        worker.partitions[p] = worker._new_state(p)
        worker.partitions[p].committed = {worker.topics.predictions: 0}
    for p in (0, 1):
        worker.partitions[p].engine.add(worker.topics.predictions, [m for m in messages if m.partition == p])
        worker.partitions[p].engine.release(ended={worker.topics.predictions, worker.topics.feedback})
        worker.partitions[p].dirty = True
    worker.checkpoint()
    worker._on_lost(worker.consumer, [TopicPartition(worker.topics.predictions, 1)])  # type: ignore[arg-type]
    worker._complete_checkpoint()
    commits = worker.consumer.commits  # type: ignore[attr-defined]
    assert commits[0] == [(worker.topics.predictions, p, 0) for p in (0, 1)]  # the membership check, before
    assert {p for _, p, _ in commits[1]} == {0}
    assert [path.name for path in tmp_path.glob("partition-*.snapshot")] == ["partition-0.snapshot"]


def test_a_packer_that_fails_says_why_and_one_that_dies_too() -> None:
    def failing(send) -> None:
        send(b"first")
        raise RuntimeError("no room")

    job = ForkedPack(failing, lambda word: 0)
    pieces = job.pieces()
    assert next(pieces) == b"first"
    with pytest.raises(SnapshotError, match="RuntimeError: no room"):
        next(pieces)

    job = ForkedPack(lambda send: os._exit(3), lambda word: 0)
    with pytest.raises(SnapshotError, match="exit code 3"):
        list(job.pieces())


def test_a_packer_writes_what_its_word_says_once_told() -> None:
    job = ForkedPack(lambda send: [send(b"a"), send(b"")], lambda word: len(word) * 10)
    assert list(job.pieces()) == [b"a", b""]
    assert job.finish(b"four") == 40
    idle = ForkedPack(lambda send: None, lambda word: 1 // 0)
    assert list(idle.pieces()) == []
    idle.cancel()  # killed while it waits for its word: reaped, nothing written


# A stopped packer must be killed by its deadline; were it not, the test's own guard ends the wait (and kills the
# child) so that it fails instead of hanging. The guard is far longer than the deadline and asserts no speed.
HANG_GUARD_S = 60.0


def in_a_thread(call) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    return thread


def test_a_packer_stopped_mid_pack_is_killed_at_its_deadline_and_says_so() -> None:
    def stopping(send) -> None:
        send(b"first")
        os.kill(os.getpid(), signal.SIGSTOP)  # in the child: as a SIGSTOP or a stalled disk would
        send(b"never")

    job = ForkedPack(stopping, lambda word: 0, deadline_s=0.2)
    got: list[bytes] = []
    failures: list[SnapshotError] = []

    def read() -> None:
        try:
            got.extend(job.pieces())
        except SnapshotError as exc:
            failures.append(exc)

    thread = in_a_thread(read)
    if thread.is_alive():
        os.kill(job.pid, signal.SIGKILL)
        pytest.fail("the stopped packer was never killed")
    assert got == [] and job.expired  # "first" was still in the child's buffer when it stopped
    assert len(failures) == 1
    assert "not packed within the packing deadline of 0.2 s (PACK_DEADLINE_S): killed" in str(failures[0])
    with pytest.raises(ChildProcessError):  # reaped, not left a zombie
        os.waitpid(job.pid, os.WNOHANG)


def test_a_packer_that_packs_in_time_is_not_killed_by_its_deadline() -> None:
    job = ForkedPack(lambda send: send(b"a"), lambda word: len(word))
    assert list(job.pieces()) == [b"a"]
    job.deadline._expire(1, "pack")  # the packing step's timer firing late, once the last piece is in: no kill
    assert job.finish(b"word") == 4 and not job.expired
    job.deadline._expire(2, "cache")  # the cache step's, once the child is reaped (its pid maybe reused by then)
    assert not job.expired


def test_a_stopped_packer_fails_its_checkpoint_and_the_next_one_starts(tmp_path, monkeypatch, caplog) -> None:
    worker = Worker(Settings(snapshot_dir=tmp_path))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    worker.fork_deadline_s = 0.2
    messages = [m for m in two_partitions(600, worker) if m.partition == 0]
    state = worker.partitions[0] = worker._new_state(0)
    feed(worker, messages)
    taken = set(state.changed)
    records = worker._state_records

    def stop_the_copy(p, changed, *values):
        os.kill(os.getpid(), signal.SIGSTOP)  # runs in the forked copy only: the loop's records come from `records`
        return records(p, changed, *values)

    monkeypatch.setattr(worker, "_state_records", stop_the_copy)
    state.input_bytes, state.written_at = 1234, 5.0  # what its write budget weighs (``runtime/writebudget.py``)
    worker.checkpoint()
    flight = worker._flight
    assert flight is not None and state.changed == set() and state.input_bytes == 0
    thread = in_a_thread(worker._complete_checkpoint)
    if thread.is_alive():
        flight.job.kill()
        thread.join()
        pytest.fail("the checkpoint waited on a stopped packer")

    assert worker._flight is None and worker._failed_checkpoints == 1 and not worker.health.ready
    assert state.changed == taken and state.dirty  # the models given back to the next attempt
    assert (state.input_bytes, state.written_at) == (1234, 5.0)  # and what its budget weighed
    assert worker.consumer.commits == []  # type: ignore[attr-defined]
    assert [r for r in worker.producer.produced if r[0] == worker.topics.state] == []  # type: ignore[attr-defined]
    failed = [r for r in caplog.records if r.getMessage() == "checkpoint failed: nothing committed, retrying"]
    error = failed[0].fields["error"]  # type: ignore[attr-defined]
    assert len(failed) == 1 and "packing deadline of 0.2 s" in error
    assert "state topic" not in error  # the packer's failure, not the topic's: no hint sending the reader there

    monkeypatch.setattr(worker, "_state_records", records)
    worker.fork_deadline_s = PACK_DEADLINE_S  # a healthy packer on a loaded machine may take longer than 0.2 s
    worker.checkpoint(wait=True)
    assert worker._flight is None and worker._pending is None and worker._failed_checkpoints == 0
    committed = [[(topic, 0, offset) for topic, offset in sorted(state.engine.offsets.items())]]
    assert worker.consumer.commits == committed and len(committed[0]) == 2  # type: ignore[attr-defined]
    produced = {key for topic, _, key, _, _ in worker.producer.produced if topic == worker.topics.state}  # type: ignore[attr-defined]
    assert {key for key in produced if key.startswith(b"model/")} == {f"model/0/0/{m}".encode() for m in taken}


def test_a_cache_write_stopped_after_the_word_is_killed_at_its_deadline_and_says_so() -> None:
    def stopping(word: bytes) -> int:
        os.kill(os.getpid(), signal.SIGSTOP)  # in the child, writing the cache: as a stalled disk would
        return len(word)

    job = ForkedPack(lambda send: send(b"a"), stopping, deadline_s=0.2)
    assert list(job.pieces()) == [b"a"]
    failures: list[SnapshotError] = []

    def finish() -> None:
        try:
            job.finish(b"word")
        except SnapshotError as exc:
            failures.append(exc)

    if in_a_thread(finish).is_alive():
        os.kill(job.pid, signal.SIGKILL)
        pytest.fail("the stopped cache write was never killed")
    assert job.expired == "cache" and len(failures) == 1
    assert "the local cache not written within the deadline of 0.2 s" in str(failures[0])
    with pytest.raises(ChildProcessError):
        os.waitpid(job.pid, os.WNOHANG)


def test_a_snapshot_writer_stopped_mid_write_is_killed_at_its_deadline_and_says_so() -> None:
    job = ForkedWrite(lambda: os.kill(os.getpid(), signal.SIGSTOP) or 1, deadline_s=0.2)
    failures: list[SnapshotError] = []

    def wait() -> None:
        try:
            job.wait()
        except SnapshotError as exc:
            failures.append(exc)

    if in_a_thread(wait).is_alive():
        os.kill(job.pid, signal.SIGKILL)
        pytest.fail("the stopped snapshot writer was never killed")
    assert job.deadline.expired == "write" and len(failures) == 1
    assert "not written within the deadline of 0.2 s (PACK_DEADLINE_S): killed" in str(failures[0])
    assert "Nothing of this checkpoint is committed" in str(failures[0])


def test_a_writer_done_in_time_is_not_killed_by_a_late_timer() -> None:
    job = ForkedWrite(lambda: 7)
    assert job.wait() == 7
    job.deadline._expire(1, "write")  # its timer firing once the child is reaped (its pid maybe reused by then)
    assert job.deadline.expired is None


def test_a_stopped_local_writer_fails_its_checkpoint_and_the_next_one_commits(tmp_path, monkeypatch, caplog) -> None:
    """The local store: a writer that never reports held every later checkpoint, and the offsets' commits, back."""
    worker = Worker(Settings(snapshot_dir=tmp_path, state_store="local"))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    worker.fork_deadline_s = 0.2
    state = worker.partitions[0] = worker._new_state(0)
    feed(worker, [m for m in two_partitions(600, worker) if m.partition == 0])
    write = worker.store.write

    def stop_the_copy(*args):
        os.kill(os.getpid(), signal.SIGSTOP)  # runs in the forked writer only
        return write(*args)

    monkeypatch.setattr(worker.store, "write", stop_the_copy)
    worker.checkpoint()
    pending = worker._pending
    assert pending is not None
    if in_a_thread(worker._complete_checkpoint).is_alive():
        pytest.fail("the checkpoint waited on a stopped writer")
    assert worker._pending is None and worker._failed_checkpoints == 1 and state.dirty
    assert worker.consumer.commits == []  # type: ignore[attr-defined]
    failed = [r for r in caplog.records if r.getMessage() == "checkpoint failed: nothing committed, retrying"]
    assert len(failed) == 1 and "deadline of 0.2 s" in failed[0].fields["error"]  # type: ignore[attr-defined]

    monkeypatch.setattr(worker.store, "write", write)
    worker.fork_deadline_s = PACK_DEADLINE_S  # a healthy writer on a loaded machine may take longer than 0.2 s
    worker.checkpoint(wait=True)
    assert worker._pending is None and worker._failed_checkpoints == 0
    assert worker.consumer.commits == [[(t, 0, o) for t, o in sorted(state.engine.offsets.items())]]  # type: ignore[attr-defined]
    assert worker.store.load(0) is not None


class ResetTopic:
    """A state topic found empty (deleted and made again): the cache on disk was not used."""

    from_cache: set[int] = set()
    read_s = unpack_s = 0.0

    def restore(self, caches):
        return {p: (None, statetopic.Changelog()) for p in caches}


def checkpointed(worker: Worker, messages: list[RawMessage]) -> None:
    """``messages`` to the worker's two partitions, then one checkpoint, landed and cached."""
    for p, state in worker.partitions.items():
        for topic in (worker.topics.predictions, worker.topics.feedback):
            state.engine.add(topic, [m for m in messages if m.partition == p and m.topic == topic])
        state.engine.release(ended={worker.topics.predictions, worker.topics.feedback})
        state.dirty = True
    worker.checkpoint(wait=True)
    assert worker._flight is None and worker._pending is None


@pytest.mark.parametrize("fork", [True, False])
def test_a_cache_the_restore_did_not_use_lends_no_bytes_to_the_next_one(tmp_path, fork) -> None:
    """A cache on disk of another history of the topic (here: the topic made again, its checkpoints
    numbered from 1 again) places its models where the new checkpoints place theirs (slot 0, checkpoint 1):
    the next cache must hold the values this worker wrote to the topic, not the old cache's."""
    workers = []
    for new in (False, True):
        worker = Worker(Settings(snapshot_dir=tmp_path, snapshot_fork=fork))
        worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
        worker.partition_count = 2
        worker.state_topic = ResetTopic()  # type: ignore[assignment]
        worker.partitions.update(worker._restore_all([0, 1]))
        assert all(not state.engine.monitors for state in worker.partitions.values())  # fresh: the topic is empty
        messages = two_partitions(1800, worker)
        checkpointed(worker, messages[:1500] if new else messages[:600])  # the old history saw fewer events
        workers.append(worker)
    worker = workers[-1]
    produced = {
        (partition, key): value
        for topic, partition, key, value, _ in worker.producer.produced  # type: ignore[attr-defined]
        if topic == worker.topics.state and key is not None and key.startswith(b"model/0/0/")
    }
    assert len(produced) == 3  # every model, at slot 0 of checkpoint 1, as in the old history's checkpoint
    for p in (0, 1):
        cache = worker.store.load(p)
        assert cache is not None
        for model_id, model in cache.models.items():
            assert model.value == produced[(p, f"model/0/0/{model_id}".encode())]  # type: ignore[union-attr]


def state_records(worker: Worker) -> list[tuple]:
    return [r for r in worker.producer.produced if r[0] == worker.topics.state]  # type: ignore[attr-defined]


def test_a_periodic_checkpoint_writes_a_partition_once_its_input_outweighs_its_state_or_it_waited_long_enough(
    tmp_path,
) -> None:
    """``state_write_budget`` (0.25 by default): the periodic checkpoint leaves a partition whose changed models
    are expected to weigh more than a quarter of the input since its last checkpoint (4 KiB per model before
    its first write, then the mean of its last write's model records), until ``checkpoint_max_interval_s``;
    the shutdown's and a revocation's checkpoint write it whatever it weighs."""
    worker = Worker(Settings(snapshot_dir=tmp_path))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    messages = [m for m in two_partitions(1200, worker) if m.partition == 0]
    state = worker.partitions[0] = worker._new_state(0)

    def consume(part: list[RawMessage]) -> None:
        state.input_bytes += worker_module._record_bytes(part)  # as ``process`` counts what it adds
        feed(worker, part)

    consume(messages[:5])
    assert len(state.changed) * 4096 > 4 * state.input_bytes  # not vacuous: the budget is not met
    worker.checkpoint(due_only=True)
    assert worker._flight is None and state_records(worker) == [] and worker.consumer.commits == []  # type: ignore[attr-defined]
    assert state.dirty and state.changed and worker.m_deferred._value.get() == 1

    consume(messages[5:])  # a model record is a few KiB; these are hundreds of KiB of input
    assert len(state.changed) * 4096 <= 4 * state.input_bytes
    changed = len(state.changed)
    worker.checkpoint(due_only=True)
    worker._complete_checkpoint()
    written = state_records(worker)
    model_bytes = sum(len(value) for _, _, key, value, _ in written if key.startswith(b"model/"))
    assert {key for _, _, key, _, _ in written if key.startswith(b"model/")} and worker.m_deferred._value.get() == 1
    assert state.bytes_per_model == model_bytes / changed
    assert (state.input_bytes, state.changed, state.dirty) == (0, set(), False)

    consume(messages[-2:])  # the same models again: far less input than their records
    worker.checkpoint(due_only=True)
    assert len(state_records(worker)) == len(written) and worker.m_deferred._value.get() == 2
    state.written_at -= worker.settings.checkpoint_max_interval_s  # as if it had waited that long
    worker.checkpoint(due_only=True)
    worker._complete_checkpoint()
    assert len(state_records(worker)) > len(written) and not state.dirty

    consume(messages[-2:])
    worker.checkpoint(wait=True)  # the shutdown's: due or not
    assert not state.dirty and worker.m_deferred._value.get() == 2


class StalledProducer(Producer):
    """Leaves records queued (the broker away) while ``stalled``: a flush returns how many are still queued."""

    stalled = False

    def flush(self, timeout: float = 0) -> int:
        return len(self._pending) if self.stalled else super().flush(timeout)


def test_the_checkpoint_after_a_failed_one_writes_what_the_budget_would_defer_and_makes_the_worker_ready(
    tmp_path,
) -> None:
    """A checkpoint whose flush leaves drift events queued (the broker away for a moment) fails: not ready. The
    retry writes every changed partition, due or not: left for later by the write budget, the worker would stay
    not ready, though nothing fails, until its partitions were due (up to ``checkpoint_max_interval_s``); and a
    partition whose own write failed would wait for its budget again."""
    producer = StalledProducer()
    worker = Worker(Settings(snapshot_dir=tmp_path))
    worker.consumer, worker.producer = Consumer(), producer  # type: ignore[assignment]
    worker.partition_count = 2
    state = worker.partitions[0] = worker._new_state(0)
    worker.health.ready = True
    feed(worker, [m for m in two_partitions(1200, worker) if m.partition == 0][:5])
    producer.produce(worker.topics.alerts, b"a drift event")  # queued, not delivered yet
    producer.stalled = True
    worker.checkpoint(due_only=True)
    assert worker._failed_checkpoints == 1 and not worker.health.ready
    assert state_records(worker) == [] and state.dirty
    # not vacuous: the budget does not find the partition due
    assert not worker.write_budget.due(state.input_bytes, len(state.changed), state.bytes_per_model, 0.0)
    producer.stalled = False
    worker.checkpoint(due_only=True)
    worker._complete_checkpoint()
    assert worker.m_deferred._value.get() == 0 and state_records(worker) and not state.dirty
    assert worker._failed_checkpoints == 0 and worker.health.ready
    feed(worker, [m for m in two_partitions(1200, worker) if m.partition == 0][5:7])
    written_at = worker.m_snapshot_ts._value.get()
    worker.checkpoint(due_only=True)  # then the budget again
    assert worker.m_deferred._value.get() == 1 and state.dirty
    # nothing written: the last checkpoint's time stays (operations.md, StreamdriftSnapshotTooOld)
    assert worker.m_snapshot_ts._value.get() == written_at > 0


def test_the_worker_weighs_the_input_it_consumes_per_partition(tmp_path) -> None:
    """What the write budget weighs (``PartitionState.input_bytes``) is the key and value bytes of the records
    ``process`` hands each partition's engine, whatever the merge does with them."""
    worker = Worker(Settings(snapshot_dir=tmp_path))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    worker.partitions = {0: worker._new_state(0)}  # partition 1 is another worker's (revoked in this poll)
    records = two_partitions(400, worker)
    messages = [
        ConfluentMessage(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            key=r.key,
            value=r.value,
            timestamp=(1, r.timestamp_ms),
        )
        for r in records
    ]
    worker.process(messages[:200])
    worker.process(messages[200:])
    mine = [r for r in records if r.partition == 0]
    assert mine and len(mine) < len(records)
    assert worker.partitions[0].input_bytes == sum(len(r.key or b"") + len(r.value or b"") for r in mine)


def five_events_not_worth_writing(worker: Worker) -> worker_module.PartitionState:
    """Partition 0 of ``worker`` after five events: changed, and not due by the write budget (a state-topic
    at_least_once checkpoint would leave it for later: what the tests below show is not that)."""
    worker.partition_count = 2
    state = worker.partitions[0] = worker._new_state(0)
    consumed = [m for m in two_partitions(1200, worker) if m.partition == 0][:5]
    feed(worker, consumed)
    state.input_bytes = worker_module._record_bytes(consumed)
    assert not worker.write_budget.due(state.input_bytes, len(state.changed), state.bytes_per_model, 0.0)
    return state


def test_exactly_once_writes_every_changed_partition_at_each_checkpoint_whatever_the_budget(tmp_path) -> None:
    """The write budget is at_least_once's: an exactly_once transaction holds the drift events and dead letters
    of every partition, so it must hold their state and input offsets too. A partition left out would have its
    output visible at the commit and its input replayed after a crash, its output then published again: a
    duplicate for read_committed consumers."""
    worker = Worker(Settings(snapshot_dir=tmp_path, processing_guarantee="exactly_once"))
    producer = TransactionalProducer()
    worker.consumer, worker.producer = GroupConsumer(), producer  # type: ignore[assignment]
    state = five_events_not_worth_writing(worker)
    worker.checkpoint(due_only=True)
    worker._complete_checkpoint()
    assert worker.m_deferred._value.get() == 0 and not state.dirty and state.changed == set()
    written = [(p, key) for _, p, key, _, _ in state_records(worker)]
    assert any(p == 0 and key.startswith(b"partition/") for p, key in written)  # its offsets with its state
    assert producer.calls.count("commit_transaction") == 1


def test_the_local_store_writes_every_changed_partition_at_each_checkpoint_whatever_the_budget(tmp_path) -> None:
    """The write budget is the state topic's (README, docs/scaling.md): a local snapshot is the partition's
    whole state in one file, and its periodic checkpoint writes every changed partition as before."""
    worker = Worker(Settings(snapshot_dir=tmp_path, state_store="local"))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    state = five_events_not_worth_writing(worker)
    worker.checkpoint(due_only=True)
    worker._complete_checkpoint()
    assert worker.m_deferred._value.get() == 0 and not state.dirty
    assert [path.name for path in tmp_path.glob("partition-*.snapshot")] == ["partition-0.snapshot"]
    assert worker.consumer.commits  # type: ignore[attr-defined]


@pytest.mark.parametrize("fork", [True, False])
def test_a_checkpoint_that_writes_no_model_leaves_the_budgets_estimate_as_it_was(tmp_path, fork) -> None:
    """A partition whose changed models were all evicted before its checkpoint writes only its partition record:
    it learns nothing of what a model record weighs. Taken as 0 bytes a model, its budget would then find it due
    at every checkpoint until its next model record (each checkpoint a write)."""
    worker = Worker(Settings(snapshot_dir=tmp_path, snapshot_fork=fork))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    state = worker.partitions[0] = worker._new_state(0)
    state.bytes_per_model = 3000.0  # what its last write weighed
    state.changed, state.dirty = {"evicted-meanwhile"}, True  # changed, then evicted: not in the engine
    worker.checkpoint(wait=True)
    keys = [key for _, _, key, _, _ in state_records(worker)]
    assert keys and all(key.startswith(b"partition/") for key in keys)  # written: its record, no model's
    assert state.bytes_per_model == 3000.0
    assert worker.write_budget.due(0, 1, state.bytes_per_model, 0.0) is False  # not due with nothing consumed


@pytest.mark.parametrize("store", ["local", "kafka"])
def test_the_loop_counts_the_rows_its_models_hold_before_it_forks_the_checkpoint(tmp_path, store, monkeypatch) -> None:
    """Warm-up rows a sketch holds (``core/held.py``) are counted by the loop before it forks the copy that takes
    the states (``PartitionEngine.settle``), with the local store as with the state topic: else the copy counts
    them and the loop again later, and a model whose counting raises is quarantined in the copy's snapshot only,
    while the loop's model goes on (the snapshot and the live state part: a restart from it is not the run)."""
    from streamdrift.core.sketch import StreamSketch

    worker = Worker(Settings(snapshot_dir=tmp_path, state_store=store))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    state = worker.partitions[0] = worker._new_state(0)
    feed(worker, [m for m in two_partitions(60, worker) if m.partition == 0])
    monitors = state.engine.monitors
    bad = sorted(monitors)[0]
    held = {m: monitor.features.seen - monitor.features.rows for m, monitor in monitors.items()}
    assert len(held) >= 2 and all(held.values())  # not vacuous: every model holds rows, none counted yet
    add_warmup = StreamSketch._add_warmup
    ours = monitors[bad].features

    def raising_for_bad(self, columns, take, numeric, fixed):
        if self is ours:
            raise ZeroDivisionError("a bug in counting")
        return add_warmup(self, columns, take, numeric, fixed)

    monkeypatch.setattr(StreamSketch, "_add_warmup", raising_for_bad)
    worker.checkpoint(wait=True)
    assert worker._pending is None and worker._flight is None and worker._failed_checkpoints == 0
    assert state.engine.processing_errors == 1 and monitors[bad].quarantined is not None  # in the loop, not the copy
    assert all(m.features.seen == m.features.rows for m in monitors.values())  # nothing left to count again
    stored = worker.store.load(0).models[bad]  # the state topic's cache keeps it encoded (``core/dormant.py``)
    quarantined = stored.quarantined if isinstance(stored, Dormant) else stored["quarantined"]
    assert quarantined is not None and quarantined["error"] == "ZeroDivisionError"


@pytest.mark.parametrize("store", ["local", "kafka"])
def test_the_loop_counts_its_warm_up_numbers_into_histograms_before_it_forks_the_checkpoint(tmp_path, store) -> None:
    """A warm-up column past its distinct numbers keeps the numbers it has not counted into its histogram yet (up
    to 1,024 of them) until a state is taken, which counts them (``warmup.count_pending``). The loop counts those of
    a column that keeps ``COUNT_PENDING_FROM`` or more before it forks the copy that takes the states
    (``ModelMonitor.settle``): else only the copy does, and every later checkpoint's copy counts them all again.
    A column that keeps fewer is left to the copy (counting costs the loop's pause per model, not per number)."""
    from streamdrift.core.sketch import COUNT_PENDING_FROM

    worker = Worker(Settings(snapshot_dir=tmp_path, state_store=store))
    worker.consumer, worker.producer = Consumer(), Producer()  # type: ignore[assignment]
    worker.partition_count = 2
    state = worker.partitions[0] = worker._new_state(0)
    stream = [m for m in two_partitions(1300, worker) if m.partition == 0]
    most = []
    for part in (stream[:1100], stream[1100:]):  # many numbers a column, then a few
        feed(worker, part)
        warmups = [m.features.warmup or {} for m in state.engine.monitors.values()]
        columns = [c for warmup in warmups for c in warmup.values() if c._distinct is None]  # with a histogram
        before = [len(c._pending) for c in columns]
        assert any(before)  # not vacuous: numbers wait in the loop's columns
        worker.checkpoint(wait=True)
        assert worker._pending is None and worker._flight is None and worker._failed_checkpoints == 0
        after = [len(c._pending) for c in columns]
        assert after == [0 if n >= COUNT_PENDING_FROM else n for n in before]  # the many counted in the loop, once
        most.append(max(before))
    assert most[0] >= COUNT_PENDING_FROM > most[1]  # not vacuous: the first part's counted, the second's left
