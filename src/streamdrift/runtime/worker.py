"""The worker: a thin Kafka shell around decode → monitor → policy → publish → snapshot.

State is owned per input partition number ``p``: partition ``p`` of the
predictions topic and partition ``p`` of the feedback topic (co-partitioned,
assigned together by the range assignor) feed the monitors of the models
keyed to ``p``. That ``PartitionState`` is the unit that is snapshotted,
restored and moved on a rebalance. Its ``engine.PartitionEngine`` merges the
two inputs by record time (``merge.EpochMerge``), decodes and monitors what
the merge releases: the loop ``streamdrift replay`` runs over files too. The
worker keeps what is Kafka's: consumer lag, producing drift events (stamped
``emitted_at`` on the wall clock) and dead letters, checkpoints.

Checkpoint protocol (``Worker.checkpoint``) with ``state_store = "local"``, in this order:

1. Process the records each engine holds (``PartitionEngine.flush``) and
   publish what they raise; flush the producer and check that every drift
   event and dead letter produced so far was delivered; if not, stop before
   anything is committed.
2. Fork (``checkpoint.ForkedWrite``, as Redis's BGSAVE): the child is a
   copy-on-write image of the state at this instant. For each partition
   changed since its last checkpoint it captures the state (model states +
   next input offsets), encodes it and writes it atomically: temp file,
   fsync, rename. Flushing, counting the warm-up rows the models' sketches
   still hold (``core/held.py``, so that the copy does not count them and
   the loop again later) and forking are all that hold up consumption. A thread waits
   for the child; the next checkpoint, a rebalance or the shutdown waits too.
   With ``snapshot_fork`` off (or where fork fails) the loop captures and
   encodes, and the thread writes: no copy of the heap, a longer pause.
3. Once the files are durable, the consume loop commits exactly those offsets
   to the consumer group (partitions lost meanwhile are left out).

With ``state_store = "kafka"`` (the default; ``runtime/statetopic.py``) step 1 is the same, then (a
periodic checkpoint in ``at_least_once`` takes only the partitions whose state is worth its bytes by now,
``runtime/writebudget.py``; the others keep their last checkpoint for a later one):

2. Produce, to partition p of the state topic, the state of each model changed
   since the last checkpoint (to the slot its committed state is not in), then
   partition p's record: input offsets, merge state and the ledger of where
   every model's committed state lies. A forked copy (``checkpoint.ForkedPack``)
   captures, encodes and compresses them and streams them to the loop's
   producer, which produces them as they come while the loop consumes on: counting
   the rows the models hold and forking are all that hold it up (``_start_state_checkpoint``). With ``exactly_once``
   what the loop produces meanwhile (drift events, dead letters, forwarded
   copies of records after the checkpoint's offsets) waits until the
   checkpoint's transaction is committed and goes into the next one.
   With ``snapshot_fork`` off (or where fork fails) the loop packs them.
3. Check every state record was acknowledged; else stop uncommitted.
4. Commit those input offsets to the group, then tombstone keys no ledger
   names. The local snapshot (the topic's cache, with the state-topic offset
   it reflects) is written in the background by the same forked copy, from
   the image of step 2; its failure only costs a longer restore.

On assignment a partition is restored, and consumption resumes at the offsets
stored *with its state*, whichever worker wrote it. With the state topic: read
to its end (read_committed), from the local cache plus the records after it
where the cache is still valid, else from the topic alone. With the local
store: its snapshot file. With no state at all it resumes at the group's
committed offsets (or the beginning) with fresh state. After a crash the
events after the last snapshot are consumed again and, since state depends
only on events and their order, give the same state and the same drift events
(same ``alert_id``) as a run without the crash.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import ThreadingHTTPServer
from itertools import groupby, repeat
from operator import attrgetter, is_not, itemgetter
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

from streamdrift.core import routing
from streamdrift.core.engine import DriftEvent, PartitionEngine, Released
from streamdrift.core.errors import ConfigError, SnapshotError
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.policy import rfc3339
from streamdrift.core.records import RawMessage, Rejected
from streamdrift.core.routing import Routed
from streamdrift.core.state import Seal, Snapshot, recover_by_moving
from streamdrift.runtime import deadletter, kafka, statecache, statepieces, statetopic
from streamdrift.runtime.checkpoint import (
    PACK_DEADLINE_S,
    ForkedPack,
    ForkedWrite,
    LocalSnapshotStore,
    rebuilt_from_the_topic,
)
from streamdrift.runtime.errors import DeliveryError, TransactionError
from streamdrift.runtime.exporter import Health, ModelCollector, StatusView, serve
from streamdrift.runtime.idle import IdleClock
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.statetopic import Changelog, StateTopic
from streamdrift.runtime.writebudget import FIRST_BYTES_PER_MODEL, WriteBudget

log = logging.getLogger("streamdrift.worker")
CHECKPOINT_RETRY_MAX_S = 30.0  # the longest wait between two attempts of a failing checkpoint
# state records not acknowledged this long after the last of them was produced: the checkpoint failed
STATE_ACK_TIMEOUT_S = 60.0
# Each poll allocates and frees thousands of dicts and lists (decoded events, join rows); with
# the default young-generation threshold (700) the cyclic collector ran over them dozens of times
# per poll: a third of the worker's CPU in `make bench`. Refcounting frees nearly all of it anyway.
GC_THRESHOLDS = (50_000, 50, 100)
# records an engine may hold back, in polls of batch_size (``PartitionEngine``'s ``hold``): a worker behind by
# more than that decodes and monitors them together, fewer and larger batches per model (issue 19)
HOLD_BATCHES = 10
_TIMESTAMP = itemgetter(1)  # of Message.timestamp(): (type, milliseconds)
MISROUTED_WARNING_EVERY_S = 60.0  # one warning per topic at most this often: a misrouting producer writes on and on
_PARTITION_TOPIC = attrgetter("partition", "topic")


def _model_value_bytes(record: statetopic.Record) -> int:
    """The value bytes of a state record of a model's (0 for the partition's record or a tombstone)."""
    return len(record.value) if record.value is not None and record.key.startswith(b"model/") else 0


def _record_bytes(records: list[RawMessage]) -> int:
    """Key + value bytes of ``records`` (a null key or value: none), as the state topic's budget weighs input."""
    return sum(len(r.key or b"") + len(r.value or b"") for r in records)


@contextmanager
def _gc_paused():
    """Restoring or capturing many models' states makes millions of small objects; the cyclic
    garbage collector would walk them over and over (several times slower with 10,000 models)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# What the group coordinator answers a member whose partitions were given to others (``_still_a_member``)
EXPELLED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError._ASSIGNMENT_LOST,
    }
)


@dataclass
class PartitionState:
    engine: PartitionEngine  # merge, monitors, next offsets; its unmonitored_events are not snapshotted
    resumed_at: dict[str, int] = field(default_factory=dict)  # topic -> offset assigned at (OFFSET_INVALID: reset)
    committed: dict[str, int] = field(default_factory=dict)  # topic -> offset its state was last committed at
    dirty: bool = False  # changed since its last checkpoint
    changed: set[str] = field(default_factory=set)  # models whose state changed since the last checkpoint
    changelog: Changelog = field(default_factory=Changelog)  # its place in the state topic (state_store = kafka)
    idle: IdleClock = field(default_factory=IdleClock)  # when its topics last brought records (max_task_idle_ms)
    paused: set[str] = field(default_factory=set)  # its topics not fetched for now (``Worker._backpressure``)
    # what its write budget weighs (``runtime/writebudget.py``): input key + value bytes added since its last
    # checkpoint, when that was taken (time.monotonic()), and the mean bytes of a model record it last wrote
    input_bytes: int = 0
    written_at: float = field(default_factory=time.monotonic)
    bytes_per_model: float = FIRST_BYTES_PER_MODEL


@dataclass
class StateFlight:
    """A state-topic checkpoint whose records a forked copy packs while the consume loop goes on
    (``Worker._start_state_checkpoint``), until it is committed or given up."""

    job: ForkedPack
    chosen: list[int]
    taken: dict[int, set[str]]  # partition -> the changed models it writes (given back if it fails)
    since: dict[int, tuple[int, float]]  # partition -> its input_bytes and written_at before (given back too)
    offsets: dict[int, dict[str, int]]  # partition -> the input offsets its state reflects
    started: float
    planned: dict[int, Changelog] = field(default_factory=dict)  # partition -> its changelog once committed
    acked: dict[int, int] = field(default_factory=dict)  # partition -> offset of its partition record's last chunk
    lost: set[int] = field(default_factory=set)  # partitions lost meanwhile: no more records, never committed
    model_bytes: dict[int, int] = field(default_factory=dict)  # partition -> bytes of its model records produced
    produced: int = 0
    delivered: int = 0
    produced_at: float = 0.0  # when the last record was produced (time.monotonic())
    cancelled: bool = False
    pump: Future | None = None  # the thread producing what the copy packs

    def wants(self, partition: int) -> bool:
        """Whether a record of ``partition`` is still to be produced: the flight not cancelled, it not lost."""
        return not self.cancelled and partition not in self.lost


class Worker:
    # The Kafka clients and the HTTP server, made by ``run`` before anything uses them
    consumer: Consumer
    producer: Producer
    http: ThreadingHTTPServer
    # The checkpoint stores and their seal (``_make_stores``), made again by ``run`` once it knows the cluster
    seal: Seal
    store: LocalSnapshotStore
    state_topic: StateTopic | None

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topics = settings.topics
        self._make_stores(cluster_id=None)  # run makes them again once it knows the cluster
        self.chunk_bytes = statetopic.chunk_bytes_for(1_048_588)  # set from the topic's max.message.bytes by run
        self._state_errors: list[str] = []
        self.new_monitor = monitor_factory(
            settings.monitor, settings.models
        )  # reads reference profiles now: a bad one stops the start
        self.partitions: dict[int, PartitionState] = {}
        self.partition_count = 1  # of the input topics, set by ``run``: where a record belongs (``core/routing.py``)
        self._misrouted_warned: dict[str, tuple[float, int]] = {}  # topic -> (when last warned, misrouted since)
        self.lag: dict[tuple[str, int], int] = {}  # (topic, partition) -> messages behind the high watermark
        self.lock = threading.Lock()  # the HTTP thread reads state while the loop changes it
        self.health = Health()
        self.stopping = False
        self.closing = False  # the consumer is closing: a rebalance that ends meanwhile gives this worker nothing
        self._delivery_errors: list[str] = []
        # the largest dead letter that fits (deadletter.py): the producer's limit until run reads the topic's
        self.dead_letter_max_bytes = deadletter.max_bytes(None, deadletter.PRODUCER_MAX_MESSAGE_BYTES)
        # the first few of each reason, then a summary line per interval: a flood of bad records is no flood of lines
        self.dead_letter_log = deadletter.DeadLetterLog(log)
        # the largest forwarded copy that fits the input topics and the producer, the same way
        self.forward_max_bytes = deadletter.max_bytes(None, deadletter.PRODUCER_MAX_MESSAGE_BYTES)
        # processing_guarantee = "exactly_once": everything produced between two checkpoints is in one transaction
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        # when a periodic checkpoint writes a partition (state topic, at_least_once): ``runtime/writebudget.py``
        self.write_budget = WriteBudget(settings.state_write_budget, settings.checkpoint_max_interval_s)
        self._txn_abortable = False  # the open transaction failed: abort it and rewind (``_abort_and_rewind``)
        self._failed_checkpoints = 0  # failed in a row: not ready meanwhile, and the retries back off
        self._retry_at = 0.0  # time.monotonic() before which a failed checkpoint is not tried again
        self.fork_deadline_s = PACK_DEADLINE_S  # a forked packer or writer not done with a step by then is killed
        self.registry = CollectorRegistry()  # the worker's own series; /metrics adds the models' (model_metrics)
        # /metrics and /status serve what the consume loop publishes (``view.publish`` in ``run``), never live state
        self.view = StatusView(self.health)
        self.model_metrics = ModelCollector(self.view.summaries, settings.metrics_max_models)
        self.registry.register(_Collector(self._lag))
        reg = self.registry
        self.m_dead = Counter(
            "streamdrift_dead_letters", "Messages routed to the dead-letter topic", ["topic"], registry=reg
        )
        self.m_misrouted = Counter(
            "streamdrift_misrouted",
            "Records on another partition than murmur2 maps their key (or model_id) to: forwarded there, "
            "dead-lettered or processed, as the setting misrouted says",
            ["topic"],
            registry=reg,
        )
        self.m_duplicates = Counter(
            "streamdrift_forwarded_duplicates",
            "Forwarded copies dropped because an earlier copy of the same record was processed (forwarded again "
            "after a crash)",
            ["topic"],
            registry=reg,
        )
        self.m_alerts = Counter(
            "streamdrift_alerts_published", "Drift events produced to the alerts topic", registry=reg
        )
        self.m_forced = Counter(
            "streamdrift_merge_forced_releases",
            "Merge releases that did not wait for a topic idle for max_task_idle_ms (reason idle): where the "
            "order can depart from the log's",
            ["reason"],
            registry=reg,
        )
        self.m_paused = Counter(
            "streamdrift_merge_pauses",
            "Times a topic-partition stopped being fetched because the merge held more than max_buffered "
            "(10 x batch_size) of its records, ahead of the other topic; fetched again once back within "
            "(backpressure: memory bounded, the order unchanged)",
            ["topic"],
            registry=reg,
        )
        self.m_checkpoint_failures = Counter(
            "streamdrift_checkpoint_failures",
            "Checkpoints that could not be written (store: local, the snapshot directory; kafka, the state "
            "topic; cache, the state topic's local cache, which only lengthens a restore); nothing of them "
            "is committed and they are retried with backoff",
            ["store"],
            registry=reg,
        )
        self.m_aborts = Counter(
            "streamdrift_transactions_aborted",
            "Transactions aborted (processing_guarantee = exactly_once); each rewinds the owned partitions "
            "to their last committed state",
            registry=reg,
        )
        self.m_deferred = Counter(
            "streamdrift_checkpoints_deferred",
            "Partitions a periodic checkpoint did not write: their state not yet worth its bytes "
            "(state_write_budget), within checkpoint_max_interval_s",
            registry=reg,
        )
        self.m_unmonitored = Gauge("streamdrift_unmonitored_events", "Events of models over max_models", registry=reg)
        # issue 17, findings 1 and 8: quarantined and evicted models
        self.m_quarantined = Gauge("streamdrift_quarantined_models", "Models whose processing raised", registry=reg)
        self.m_processing_errors = Counter(
            "streamdrift_processing_errors", "Model batches whose processing raised (dead-lettered)", registry=reg
        )
        self.m_evicted = Counter("streamdrift_evicted_models", "Models evicted after model_idle_ttl_s", registry=reg)
        self.m_batches = Counter(
            "streamdrift_model_batches",
            "Batches of a model's events its monitor observed (events per batch set a fleet's CPU per event)",
            registry=reg,
        )
        self.m_snapshot_ts = Gauge(
            "streamdrift_last_checkpoint_timestamp_seconds",
            "Wall-clock time of the last completed checkpoint",
            registry=reg,
        )
        self.m_snapshot_bytes = Gauge(
            "streamdrift_snapshot_bytes", "Bytes written by the last checkpoint", registry=reg
        )
        self.m_snapshot_s = Gauge(
            "streamdrift_checkpoint_duration_seconds",
            "Duration of the last checkpoint, from its start to its offsets committed",
            registry=reg,
        )
        self.m_pause_s = Gauge(
            "streamdrift_checkpoint_pause_seconds",
            "Time the last checkpoint held up consumption (flushing the producer, forking the writer)",
            registry=reg,
        )
        self.m_writer_bytes = Gauge(
            "streamdrift_checkpoint_writer_private_bytes",
            "Memory of its own the last checkpoint's forked writer had at its end "
            "(pages copied on write, the encoded state)",
            registry=reg,
        )
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="snapshot-writer")  # waits for the forked writer
        self._pending: tuple | None = None  # (future of the forked write, its offsets, when it started)
        self._flight: StateFlight | None = None  # a state-topic checkpoint packed by a forked copy, not committed yet
        # exactly_once, while a flight is not committed: what the loop produces, for the next transaction
        self._deferred: list[tuple] | None = None
        self.m_partitions = Gauge(
            "streamdrift_assigned_partitions", "Input partitions owned by this worker", registry=reg
        )
        Gauge(
            "streamdrift_ready", "1 once partitions are assigned and restored (as /readyz)", registry=reg
        ).set_function(lambda: float(self.health.ready))

    def _make_stores(self, cluster_id: str | None) -> None:
        """The checkpoint stores, under the seal of this deployment in the cluster ``cluster_id``."""
        settings = self.settings
        self.seal = settings.state_seal(cluster_id)  # what checkpoints are written under and checked against
        # state_store = "kafka": the state topic holds the state, snapshot_dir its local cache
        kafka = settings.state_store == "kafka"
        self.store = LocalSnapshotStore(
            settings.snapshot_dir, self.seal, rebuilt_from_the_topic if kafka else recover_by_moving
        )
        self.state_topic = StateTopic(settings, self.seal) if kafka else None

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> int:
        s = self.settings
        gc.freeze()  # what was loaded at start lives for the process: never scanned again
        gc.set_threshold(*GC_THRESHOLDS)
        partitions = self.partition_count = kafka.check_topics(s)
        for line in kafka.future_timestamp_warnings(s, kafka.admin(s)):  # not refused: existing deployments
            log.warning(line)
        # before any restore: a checkpoint of another cluster (a copied snapshot_dir) is refused naming both ids
        self._make_stores(kafka.cluster_id(kafka.admin(s)))
        self.store.check_writable()
        for tmp in self.store.clean_temp():
            log.info("removed a temporary file left by an interrupted write", extra={"fields": {"path": str(tmp)}})
        if self.state_topic is not None:
            self.chunk_bytes = statetopic.chunk_bytes_for(kafka.check_state_topic(s, partitions, kafka.admin(s)))
        self.dead_letter_max_bytes = kafka.dead_letter_max_bytes(s, kafka.admin(s))
        self.forward_max_bytes = kafka.max_record_bytes(
            s, kafka.admin(s), [self.topics.predictions, self.topics.feedback]
        )
        max_batch_bytes = min(self.dead_letter_max_bytes, self.forward_max_bytes)
        self.producer = Producer(kafka.worker_producer_config(s, max_batch_bytes=max_batch_bytes))
        if self.exactly_once:
            self._init_transactions()
        self.consumer = Consumer(kafka.consumer_config(s))
        try:
            self.http = serve(
                s.metrics_host,
                s.metrics_port,
                self.registry,
                self.health,
                self.view.status_body,
                self.model_metrics,
                status_endpoint=s.status_endpoint,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {s.metrics_host}:{s.metrics_port} ({exc.strerror}); set "
                "metrics_port (env STREAMDRIFT_METRICS_PORT) to a free port, or 0 for any"
            ) from None
        host, port = self.http.socket.getsockname()[:2]  # the bound address (port 0: the one picked)
        log.info(
            "worker started", extra={"fields": {"metrics": f"http://{host}:{port}/metrics", "settings": s.redacted()}}
        )
        if s.snapshot_interval_s is not None:
            log.warning("snapshot_interval_s is deprecated: name it checkpoint_interval_s")
        for ignored in s.ignored():
            log.warning(ignored)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        self.consumer.subscribe(
            [self.topics.predictions, self.topics.feedback],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        next_checkpoint = time.monotonic() + s.checkpoint_interval_s
        try:
            while not self.stopping:
                self.health.beat()
                messages = self.consumer.consume(s.batch_size, s.poll_timeout_s)
                self._refresh_lag()
                if messages or any(st.engine.buffered() for st in self.partitions.values()):
                    self.process(messages)
                self.view.publish(self.partitions)  # between batches: what /metrics and /status serve
                self.dead_letter_log.tick()
                if self._txn_abortable:
                    self._abort_and_rewind("producing in the transaction failed")
                self._complete_checkpoint(block=False)
                # the next checkpoint starts once the one before is committed and written: the loop never waits for it
                in_flight = self._flight is not None or self._pending is not None
                if not in_flight and time.monotonic() >= max(next_checkpoint, self._retry_at):
                    self.checkpoint(due_only=True)
                    next_checkpoint = time.monotonic() + s.checkpoint_interval_s
            self.checkpoint(wait=True)
            self.dead_letter_log.flush()
            if self._failed_checkpoints:
                log.error("stopping: the final checkpoint failed, the next owner replays from the last one")
                return 1
            log.info("stopping: final checkpoint written")
        finally:
            self._cancel_flight()  # a checkpoint not committed stays so
            self._writer.shutdown(wait=True)  # a write in flight finishes (its offsets stay uncommitted)
            self.closing = True
            self.consumer.close()
            self.producer.flush(10)
            self.http.shutdown()
        return 0

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True  # the loop finishes its batch, checkpoints and closes

    # -- rebalance ---------------------------------------------------------

    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        if self.closing:
            # called from inside consumer.close() when a rebalance ends while this member leaves: the handle is
            # being destroyed (asking it for committed offsets raises _DESTROY), and the partitions are the
            # next member's to restore. Left unassigned; close revokes whatever librdkafka assigns.
            log.info(
                "partitions assigned while closing: not taken",
                extra={"fields": {"partitions": sorted({tp.partition for tp in assigned})}},
            )
            return
        self._complete_checkpoint()  # no snapshot half written while one is read back
        self._restore_positions(assigned)
        consumer.assign(assigned)
        # /status and /metrics show the restored state before /readyz says ready, not the last publication's
        self.view.publish(self.partitions, force=True)
        self.health.ready = not self._failed_checkpoints
        log.info(
            "partitions assigned",
            extra={
                "fields": {
                    "partitions": sorted(self.partitions),
                    "offsets": {f"{tp.topic}[{tp.partition}]": tp.offset for tp in assigned},
                }
            },
        )

    def _restore_positions(self, assigned: list[TopicPartition]) -> None:
        """Restore the partitions of ``assigned`` and set each one's offset to where its state resumes
        (the state's own offsets, else the group's committed ones, else ``OFFSET_INVALID``: the reset policy)."""
        committed = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.committed(assigned, timeout=30)}
        with self.lock, _gc_paused():
            self.partitions.update(self._restore_all(sorted({tp.partition for tp in assigned})))
            gc.freeze()  # restored states: long-lived, out of the collector's way
            for tp in assigned:
                state = self.partitions[tp.partition]
                tp.offset = state.engine.offsets.get(tp.topic, committed.get((tp.topic, tp.partition), OFFSET_INVALID))
                state.resumed_at[tp.topic] = tp.offset
                if tp.offset >= 0:
                    state.committed[tp.topic] = tp.offset
            self.m_partitions.set(len(self.partitions))

    # -- transactions (processing_guarantee = "exactly_once") ------------------

    def _init_transactions(self) -> None:
        """Register this instance's transactional.id: fences its previous incarnation and aborts what that
        one left open; then open the first transaction."""
        try:
            self.producer.init_transactions(60)
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise TransactionError(
                f"cannot start transactions as {self.settings.effective_transactional_id()!r}: {exc.args[0]}. "
                "Check that the broker allows transactions (transaction.state.log.replication.factor and "
                "min.isr fit its number of brokers) and that the principal may write that transactional.id."
            ) from None
        log.info(
            "transactions initialised",
            extra={"fields": {"transactional_id": self.settings.effective_transactional_id()}},
        )

    def _transaction_failed(self, exc: KafkaException, during: str) -> None:
        """Abort and rewind on an abortable error; stop on anything else (fenced: another instance owns the id,
        or the group moved the partitions on; the group rebalances and the newer owner goes on)."""
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.txn_requires_abort():
            self._abort_and_rewind(f"{during}: {err}")
            return
        raise TransactionError(
            f"the transactional producer failed {during}: {err}. Nothing of the open transaction is committed; "
            "stopping so that the group moves this worker's partitions on (restart it to rejoin)."
        ) from None

    def _abort_and_rewind(self, reason: str) -> None:
        """Abort the open transaction and rewind every owned partition to its last committed state.

        What the transaction held (drift events, dead letters, state records) is discarded for
        read_committed consumers; the monitors are restored from the state topic and consumption resumes
        at the offsets stored with that state, as a revocation followed by a reassignment of every owned
        partition would, so the same events give the same drift events again, in the next transaction.
        """
        log.warning(
            "aborting the transaction, rewinding to the last committed state", extra={"fields": {"reason": reason}}
        )
        self.m_aborts.inc()
        self._cancel_flight()
        try:
            self.producer.abort_transaction(60)
            self._delivery_errors.clear()
            self._state_errors.clear()
            self._txn_abortable = False
            self._complete_checkpoint()  # a local cache write in flight is of committed state
            owned = [
                TopicPartition(t, p)
                for p in sorted(self.partitions)
                for t in (self.topics.predictions, self.topics.feedback)
            ]
            self._drop(set(self.partitions))
            if owned:
                self._restore_positions(owned)
                for tp in owned:  # no committed position anywhere: where the reset policy (earliest) starts
                    self.consumer.seek(
                        tp if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
                    )
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise TransactionError(
                f"cannot abort the transaction and rewind ({exc.args[0]}); stopping: a restart rewinds."
            ) from None

    def _new_state(self, p: int) -> PartitionState:
        changed: set[str] = set()

        def note_changed(topic: str, batch: object, monitored: bool, events: object) -> None:
            if monitored:
                changed.add(batch.model_id)  # type: ignore[attr-defined]

        engine = PartitionEngine(
            p,
            self.topics.predictions,
            self.topics.feedback,
            self.new_monitor,
            **self.settings.engine_settings(),
            max_buffered=10 * self.settings.batch_size,
            on_batch=note_changed,
            partitions=self.partition_count,
            misrouted=self.settings.misrouted,
            hold=HOLD_BATCHES * self.settings.batch_size,
        )
        return PartitionState(engine, changed=changed)

    def _restore_all(self, partitions: list[int]) -> dict[int, PartitionState]:
        if self.state_topic is None:
            return {p: self._restore(p) for p in partitions}
        started = time.perf_counter()
        caches = {p: self._load_cache(p) for p in partitions}
        cached = time.perf_counter()
        restored = self.state_topic.restore(caches)
        building = time.perf_counter()
        out = {}
        for p in partitions:
            state = self._new_state(p)
            snapshot, state.changelog = restored[p]
            cache = caches[p]
            if cache is not None and cache.changelog and p not in self.state_topic.from_cache:
                # a cache the restore could not use (of another history: the topic made again; or compacted past): its
                # models' places in the ledger may be those of the new checkpoints, so the next cache write
                # (``_cached``) would take their old bytes for the new ones. It is of no use any more: removed.
                self.store.remove(p)
            if snapshot is None and cache is not None and not cache.changelog:
                # a local store's snapshot and nothing in the state topic: moving to state_store = kafka
                snapshot = cache
                state.changed.update(cache.models)
                state.dirty = True
                log.info("state topic empty: starting from the local snapshot", extra={"fields": {"partition": p}})
            if snapshot is None:
                log.info("no state in the state topic: fresh state", extra={"fields": {"partition": p}})
            else:
                state.engine.restore(snapshot)
            out[p] = state
        log.info(
            "state restored from the state topic",
            extra={
                "fields": {
                    "partitions": partitions,
                    "models": sum(len(st.engine.monitors) for st in out.values()),
                    "restore_s": round(time.perf_counter() - started, 3),
                    # its parts: the local cache read and decoded, the topic read, its records unpacked, the
                    # monitors built
                    "cache_s": round(cached - started, 3),
                    "read_s": round(self.state_topic.read_s, 3),
                    "unpack_s": round(self.state_topic.unpack_s, 3),
                    "build_s": round(time.perf_counter() - building, 3),
                }
            },
        )
        return out

    def _load_cache(self, p: int) -> Snapshot | None:
        """The local snapshot of ``p`` as the state topic's cache; one that cannot be read is rebuilt from the topic."""
        try:
            return self.store.load(p)
        except SnapshotError as exc:
            log.warning("local snapshot unusable as a cache", extra={"fields": {"partition": p, "error": str(exc)}})
            return None

    def _restore(self, p: int) -> PartitionState:
        started = time.perf_counter()
        snapshot = self.store.load(p)
        loaded = time.perf_counter()
        state = self._new_state(p)
        engine = state.engine
        if snapshot is None:
            log.info("no snapshot: fresh state", extra={"fields": {"partition": p}})
            return state
        engine.restore(snapshot)
        log.info(
            "snapshot restored",
            extra={
                "fields": {
                    "partition": p,
                    "models": len(engine.monitors),
                    "offsets": snapshot.offsets,
                    "load_s": round(loaded - started, 3),
                    "restore_s": round(time.perf_counter() - loaded, 3),
                }
            },
        )
        return state

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        self.health.ready = False  # until the next assignment is restored
        gone = {tp.partition for tp in revoked}
        self.checkpoint(gone, wait=True)
        self._drop(gone)

    def _on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in lost}
        if self._flight is not None:  # no more of their state records, and their offsets never committed
            self._flight.lost |= gone
        if self._pending is not None:  # another member owns them now: do not commit their offsets
            future, commits, started, chosen = self._pending
            self._pending = (future, [tp for tp in commits if tp.partition not in gone], started, chosen)
        self._drop(gone)
        # the open transaction holds output of the lost partitions: never commit it. While the consumer closes
        # (after the final checkpoint) the handle cannot be asked for offsets to rewind to, and nothing is
        # committed after it: the open transaction is aborted by the coordinator or the next instance's init
        if self.exactly_once and not self.closing:
            self._abort_and_rewind(f"partitions {sorted(gone)} lost")

    def _drop(self, partitions: set[int]) -> None:
        with self.lock:
            for p in partitions:
                state = self.partitions.pop(p, None)
                if state is not None and state.paused:
                    # a rewind keeps the partition assigned, and its next state starts unpaused; and when an
                    # assignment ends, librdkafka resets its own pause flag, not the application's
                    self._resume_dropped(p, state.paused)
            self.m_partitions.set(len(self.partitions))

    def _resume_dropped(self, p: int, topics: set[str]) -> None:
        try:
            self.consumer.resume([TopicPartition(topic, p) for topic in sorted(topics)])
        except KafkaException as exc:  # not assigned any more: nothing to resume
            log.debug("resume of a dropped partition", extra={"fields": {"partition": p, "error": str(exc)}})

    # -- the batch ---------------------------------------------------------

    def process(self, messages: list) -> None:
        """Merge by record time, then decode, monitor and publish what the merge releases."""
        with self.lock:
            if any(map(is_not, map(Message.error, messages), repeat(None))):  # (KafkaError == None raises)
                messages = self._without_errors(messages)
            records = list(
                map(
                    RawMessage,
                    map(Message.topic, messages),
                    map(Message.partition, messages),
                    map(Message.offset, messages),
                    map(Message.key, messages),
                    map(Message.value, messages),
                    map(_TIMESTAMP, map(Message.timestamp, messages)),
                    map(Message.headers, messages),
                )
            )
            # fetches come as runs of one topic partition: sort (stable) and hand each run over whole
            records.sort(key=_PARTITION_TOPIC)
            now = time.monotonic()
            for (p, topic), run in groupby(records, _PARTITION_TOPIC):
                state = self.partitions.get(p)
                if state is not None:  # else revoked in this poll: the new owner consumes it from the committed offset
                    records_here = list(run)
                    state.input_bytes += _record_bytes(records_here)
                    routed = state.engine.add(topic, records_here)
                    self._routed(p, topic, routed)
                    # a topic that brings only skipped records gives the merge nothing (their placeholders move
                    # no epoch): it is silent, else a topic paused ahead of it would wait for as long as it lasts
                    if routed.skipped < len(records_here):
                        state.idle.arrived(topic, now, self.settings.max_task_idle_ms / 1000)
            for p, state in sorted(self.partitions.items()):
                idle = self._idle_topics(p, state, now)
                flush = not messages or self._keeping_up(p, state)
                released = self._engine_call(state, partial(state.engine.release, idle=idle, flush=flush))
                self._count_forced(p, state, released, idle)
                self._backpressure(p, state)
                if released.records:
                    state.dirty = True
            self.m_unmonitored.set(sum(st.engine.unmonitored_events for st in self.partitions.values()))
            self.m_quarantined.set(sum(st.engine.quarantined_models for st in self.partitions.values()))
        self.producer.poll(0)

    def _backpressure(self, p: int, state: PartitionState) -> None:
        """Pause the topics of partition ``p`` whose records the merge holds more than ``max_buffered`` of, and
        resume those back within, as Kafka Streams pauses a partition whose buffer is full.

        The merge has released all it knows of the log order (``merge.EpochMerge``, memory pressure); what a
        topic still holds over the bound is ahead of the other topic and waits for it to move past that epoch,
        or to be idle (``max_task_idle_ms``): either releases it, and the topic is fetched again. Pausing drops
        what librdkafka had fetched of it, and a resume fetches from the next offset not consumed, so memory is
        bounded by ``max_buffered`` and one poll, and the order, hence the state, is the log's.
        """
        over = set(state.engine.over_bound())
        if over == state.paused:
            return
        if pause := sorted(over - state.paused):
            self.consumer.pause([TopicPartition(topic, p) for topic in pause])
            for topic in pause:
                self.m_paused.labels(topic).inc()
        if resume := sorted(state.paused - over):
            self.consumer.resume([TopicPartition(topic, p) for topic in resume])
            state.idle.unpaused(time.monotonic())
        state.paused = over

    def _keeping_up(self, p: int, state: PartitionState) -> bool:
        """Whether partition ``p`` is behind by less than its engine may hold: then nothing waits (the latency
        of a worker that keeps up is unchanged); else released records wait to be processed together.
        The lag decides only when records are processed, never the state (``engine``'s Holding)."""
        behind = sum(self.lag.get((t, p), 0) for t in (self.topics.predictions, self.topics.feedback))
        return behind < state.engine.hold

    def _engine_call(self, state: PartitionState, call: Callable[[], Released]) -> Released:
        """``call`` (a release or flush of ``state``'s engine); its counters moved, its output published."""
        errors, evicted = state.engine.processing_errors, state.engine.evicted_models
        released = call()
        self.m_processing_errors.inc(state.engine.processing_errors - errors)
        self.m_evicted.inc(state.engine.evicted_models - evicted)
        self.m_batches.inc(released.batches)
        for rejected in released.rejected:
            self._dead_letter(rejected)
        self._publish(released.events)
        return released

    def _flush_held(self) -> None:
        """Step 1 of the checkpoint, first: process what every engine holds, publish what it raises."""
        with self.lock:
            for _, state in sorted(self.partitions.items()):
                if state.engine.buffered():
                    self._engine_call(state, state.engine.flush)

    def _routed(self, p: int, topic: str, routed: Routed) -> None:
        """Forward or dead-letter what partition ``p`` found misrouted (``core/routing.py``); count and warn.

        A forward is produced now, before the offset of its original can be committed (a checkpoint flushes
        first; with exactly_once it is in the checkpoint's transaction), with the original's timestamp.
        """
        for forward in routed.forward:
            self._forward(topic, forward)
        for rejected in routed.rejected:
            self._dead_letter(rejected)
        if routed.duplicates:
            self.m_duplicates.labels(topic).inc(routed.duplicates)
        if routed.misrouted:
            self.m_misrouted.labels(topic).inc(routed.misrouted)
            # /status shows them (``streamdrift status``): a new dict, as the view's readers expect
            self.view.misrouted = {**self.view.misrouted, topic: self.view.misrouted.get(topic, 0) + routed.misrouted}
            self._warn_misrouted(p, topic, routed)

    def _forward(self, topic: str, forward: routing.Forward) -> None:
        """Forward a misrouted record, or dead-letter it (reason ``misrouted``) where its copy, a header longer,
        would not fit the input topic or the producer: produce would raise, or its delivery fail, on the same
        record after every restart."""
        copy = routing.forwarded_copy(forward.message)
        value = copy.value or b""
        if deadletter.size(copy.key, value, copy.headers or []) > self.forward_max_bytes:
            self._dead_letter(Rejected(forward.message, routing.MISROUTED))
            return
        delivered = partial(self._forward_delivered, forward.message)
        self._produce(topic, copy.key, value, copy.headers, forward.partition, copy.timestamp_ms, delivered)

    def _forward_delivered(self, original: RawMessage, err: KafkaError | None, msg: Message) -> None:
        """A copy over a topic limit the worker could not read at start lowers the bound copies are sized under
        and is dead-lettered instead; in a transaction the failure aborts it, and the rewind dead-letters it."""
        if err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            copy = routing.forwarded_copy(original)
            failed = deadletter.size(copy.key, copy.value or b"", copy.headers or [])
            self.forward_max_bytes = deadletter.lowered(self.forward_max_bytes, failed)
            if not self.exactly_once:
                self._dead_letter(Rejected(original, routing.MISROUTED))
                return
        self._delivered(err, msg)

    def _warn_misrouted(self, p: int, topic: str, routed: Routed) -> None:
        """One warning per topic per ``MISROUTED_WARNING_EVERY_S``: how many, the partitioner that fits, the fix."""
        now = time.monotonic()
        warned_at, since = self._misrouted_warned.get(topic, (-MISROUTED_WARNING_EVERY_S, 0))
        since += routed.misrouted
        if now - warned_at < MISROUTED_WARNING_EVERY_S:
            self._misrouted_warned[topic] = (warned_at, since)
            return
        self._misrouted_warned[topic] = (now, 0)
        # of this batch's misrouted records only: the others are tallied in the metric
        likely = routing.likely_partitioner(
            0, routed.consistent, routed.null_keys, routed.misrouted - routed.consistent - routed.null_keys
        )
        log.warning(
            "misrouted records: their producer does not partition as the worker assumes",
            extra={
                "fields": {
                    "topic": topic,
                    "partition": p,
                    "misrouted": since,
                    "likely_partitioner": likely,
                    "action": self.settings.misrouted,
                    "fix": "key records by model_id and produce with murmur2: partitioner=murmur2_random for "
                    "librdkafka clients (confluent-kafka, kcat, ...), the default of Java clients",
                }
            },
        )

    def _idle_topics(self, p: int, state: PartitionState, now: float) -> set[str]:
        """Partition ``p``'s topics the merge stops waiting for (``runtime/idle.py``): caught up, and silent
        for ``max_task_idle_ms`` (since the partition's traffic resumed, too, after a quiet spell). The wall clock
        decides only whether to force a release, never the order."""
        caught_up = [t for t in (self.topics.predictions, self.topics.feedback) if self.lag.get((t, p)) == 0]
        return state.idle.idle(caught_up, self.settings.max_task_idle_ms / 1000, now)

    def _count_forced(self, p: int, state: PartitionState, released: Released, idle: set[str]) -> None:
        """Count every forced release; log the first of a run of them (a partition without labels forces each poll)."""
        if not released.records:
            return
        if released.forced is not None:
            self.m_forced.labels(released.forced).inc()
            if state.idle.last_forced != released.forced:
                log.info(
                    "merge: forced release, the order may depart from the log's",
                    extra={
                        "fields": {
                            "partition": p,
                            "reason": released.forced,
                            "idle_topics": sorted(idle),
                            "max_task_idle_ms": self.settings.max_task_idle_ms,
                        }
                    },
                )
        state.idle.last_forced = released.forced

    @staticmethod
    def _without_errors(messages: list) -> list:
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise RuntimeError(f"fatal consumer error: {err}")
                log.warning("consumer error", extra={"fields": {"error": str(err)}})
        return [msg for msg in messages if msg.error() is None]

    def _refresh_lag(self) -> None:
        """Lag per owned input partition, from librdkafka's cached watermarks (no broker request).

        Called by the consume loop: the consumer is not to be used from the
        HTTP thread (a call there waits for the loop's ``consume``). Every
        fetch response, an empty one too, refreshes the cached watermarks;
        ``position`` steps over transaction markers; before the first message
        of a partition, consumption starts where it was assigned (the log
        start when the offset was reset). A partition not fetched yet has no lag.
        """
        owned = [
            TopicPartition(t, p)
            for p in sorted(self.partitions)
            for t in (self.topics.predictions, self.topics.feedback)
        ]
        lag: dict[tuple[str, int], int] = {}
        try:
            for tp in self.consumer.position(owned) if owned else []:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                start = self.partitions[tp.partition].resumed_at.get(tp.topic, OFFSET_INVALID)
                nxt = tp.offset if tp.offset >= 0 else start if start >= 0 else low
                if high >= 0 and nxt >= 0:
                    lag[(tp.topic, tp.partition)] = max(high - nxt, 0)
        except KafkaException:  # a partition revoked meanwhile: next time
            return
        with self.lock:
            self.lag = lag

    def _publish(self, events: list[DriftEvent]) -> None:
        for event in events:
            event["emitted_at"] = rfc3339(time.time())
            self._produce(self.topics.alerts, event["model_id"].encode(), orjson.dumps(event))
            self.m_alerts.inc()
            log.info(
                "drift event",
                extra={
                    "fields": {
                        **{k: event[k] for k in ("alert_id", "model_id", "kind", "feature", "statistic")},
                        "partition": event["window"]["partition"],
                    }
                },
            )

    def _dead_letter(self, rejected: Rejected) -> None:
        m = rejected.message
        headers = [
            ("streamdrift.reason", rejected.reason.encode()),
            ("streamdrift.source.topic", m.topic.encode()),
            ("streamdrift.source.partition", str(m.partition).encode()),
            ("streamdrift.source.offset", str(m.offset).encode()),
        ]
        # a value too large for the topic or the producer is left out, said so in a header (deadletter.py)
        key, value, headers = deadletter.fit(m.key, m.value or b"", headers, self.dead_letter_max_bytes)
        delivered = partial(self._dead_letter_delivered, 1, key, headers)
        self._produce(self.topics.dead_letter, key, value, headers, on_delivery=delivered)
        self.m_dead.labels(m.topic).inc()
        self.dead_letter_log.record(m.topic, m.partition, m.offset, rejected.reason)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list | None = None,
        partition: int = -1,  # -1: the partitioner's choice
        timestamp: int = 0,  # 0: now
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        if self._txn_abortable:
            return  # the open transaction is lost: what it would hold is produced again after the rewind
        if self._deferred is not None:  # after the offsets of the checkpoint whose transaction is open: the next one
            self._deferred.append((topic, key, value, headers, partition, timestamp, on_delivery))
            return
        while True:
            try:
                self.producer.produce(
                    topic,
                    value,
                    key,
                    headers=headers,
                    on_delivery=on_delivery or self._delivered,
                    partition=partition,
                    timestamp=max(timestamp, 0),
                )
                return
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain
            except KafkaException as exc:
                if not self.exactly_once or exc.args[0].fatal():
                    raise
                self._txn_abortable = True  # aborted and rewound once the batch is processed
                return

    def _dead_letter_delivered(
        self, attempt: int, key: bytes | None, headers: deadletter.Headers, err: KafkaError | None, msg: Message
    ) -> None:
        """A dead letter over a limit the worker could not read at start lowers the bound dead letters are
        sized under (``deadletter.lowered``), and is written again (``deadletter.again``; a delivery report
        carries no headers, so they are kept until then). In a transaction the failure has made it abortable
        already: the rewind writes it again, under the lowered bound."""
        too_large = err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
        if too_large:
            failed = deadletter.size(key, msg.value() or b"", headers)
            self.dead_letter_max_bytes = deadletter.lowered(self.dead_letter_max_bytes, failed)
        if too_large and attempt < deadletter.ATTEMPTS and not self.exactly_once:
            key, value, headers = deadletter.again(key, msg.value() or b"", headers)
            delivered = partial(self._dead_letter_delivered, attempt + 1, key, headers)
            self._produce(self.topics.dead_letter, key, value, headers, on_delivery=delivered)
            return
        self._delivered(err, msg)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(str(err))
            if self.exactly_once:
                self._txn_abortable = True

    # -- checkpoint --------------------------------------------------------

    def checkpoint(self, partitions: set[int] | None = None, wait: bool = False, due_only: bool = False) -> None:
        """Flush producer → write snapshots → commit offsets (see the module docstring).

        The consume loop pauses only to flush, count the rows its models hold and fork; the forked writer
        captures, encodes, writes and fsyncs, and the offsets are committed by
        the loop once the files are durable (``_complete_checkpoint``). With
        the state topic the forked copy packs the state records, the loop's
        producer writes them as they come, and the loop commits once they are
        acknowledged (``_start_state_checkpoint``, ``_land_flight``).
        ``wait``: return only once committed (rebalance, shutdown). ``due_only``: the periodic checkpoint, which
        with the state topic and at_least_once writes only the partitions its write budget finds due
        (``runtime/writebudget.py``); the others wait for a later one.
        """
        self._complete_checkpoint()  # one write in flight at a time, committed in order
        started = time.monotonic()
        self._flush_held()
        remaining = self.producer.flush(30)
        if remaining or self._delivery_errors or self._txn_abortable:
            problem = f"{remaining} records undelivered, errors: {self._delivery_errors[:3]}"
            if self.exactly_once:
                self._abort_and_rewind(problem)
                return
            if not self._delivery_errors:  # still queued (the broker is away): they go out later, or fail
                self._checkpoint_failed("kafka", problem, [])
                return
            raise DeliveryError(  # lost drift events: only a replay from the last checkpoint gives them again
                f"{problem}; not committing. Check the alerts and dead-letter topics exist and are writable."
            )
        with self.lock:
            chosen = [
                p
                for p, state in sorted(self.partitions.items())
                # exactly_once: the transaction holds the output of every partition, so it commits them all
                if state.dirty and (partitions is None or self.exactly_once or p in partitions)
            ]
            # after a failed checkpoint the next writes every changed partition: whether writing works again
            # is what tells the worker ready again, and a partition whose write failed waits no longer
            deferred = self._deferred_by_budget(chosen) if due_only and not self._failed_checkpoints else []
            chosen = [p for p in chosen if p not in deferred]
            self.m_deferred.inc(len(deferred))
        if (
            chosen
            and self.state_topic is not None
            and self.settings.snapshot_fork
            and self._start_state_checkpoint(chosen, started)
        ):
            if wait:
                self._complete_checkpoint()
            return
        if chosen and self.state_topic is not None and not self._checkpoint_to_state_topic(chosen):
            return  # aborted and rewound: nothing of it is committed
        with self.lock:
            if chosen:
                write = self._start_write(chosen)
                commits = (
                    []  # committed by _checkpoint_to_state_topic: the local file is only its cache
                    if self.state_topic is not None
                    else [
                        TopicPartition(t, p, o)
                        for p in chosen
                        for t, o in sorted(self.partitions[p].engine.offsets.items())
                    ]
                )
                for p in chosen:
                    self.partitions[p].dirty = False
        self.m_pause_s.set(time.monotonic() - started)
        if chosen:
            self._pending = (self._writer.submit(write), commits, started, chosen)
        elif not deferred:  # nothing changed: the state written is the state now
            self._checkpoint_succeeded()
            self.m_snapshot_ts.set(time.time())
        if wait:
            self._complete_checkpoint()

    def _deferred_by_budget(self, chosen: list[int]) -> list[int]:
        """The partitions of ``chosen`` a periodic checkpoint leaves for a later one: with the state topic and
        at_least_once, those its write budget does not find due yet (``runtime/writebudget.py``)."""
        if self.state_topic is None or self.exactly_once:
            return []
        now = time.monotonic()
        return [
            p
            for p in chosen
            if not self.write_budget.due(
                (state := self.partitions[p]).input_bytes,
                len(state.changed),
                state.bytes_per_model,
                now - state.written_at,
            )
        ]

    def _start_write(self, chosen: list[int]) -> Callable[[], tuple[int, int]]:
        """Start writing the snapshots of partitions ``chosen`` as they are now; return what the writer
        thread calls to finish it: (bytes written, bytes of memory the forked writer had of its own)."""
        capture = lambda: [self._prepare(p) for p in chosen]  # noqa: E731
        if self.settings.snapshot_fork:
            for p in chosen:  # the rows models hold counted here, not in the copy and again in the loop later
                engine = self.partitions[p].engine  # (a model whose counting raises is quarantined here, in the loop)
                engine.settle(engine.monitors)
            try:  # the forked copy captures, encodes and writes the state as it is now; this loop goes on
                job = ForkedWrite(lambda: sum(self.store.write(*f) for f in capture()), self.fork_deadline_s)
                return lambda: (job.wait(), job.private_bytes)
            except OSError as exc:
                log.warning(
                    "cannot fork the snapshot writer: capturing in the consume loop instead",
                    extra={"fields": {"error": str(exc)}},
                )
        with _gc_paused():
            files = capture()
        return lambda: (sum(self.store.write(*f) for f in files), 0)

    def _prepare(self, p: int) -> tuple[int, list, str]:
        """What ``store.write`` takes to write partition ``p``'s file: its snapshot, or with the state topic its
        cache (``runtime/statecache.py``), which records where in the topic this state lies."""
        state = self.partitions[p]
        if self.state_topic is not None:
            return statecache.cache_body(state.engine, state.changelog.state(), self.seal, previous=self._cached(p))
        return self.store.prepare(state.engine.snapshot())

    def _cached(self, p: int) -> Snapshot | None:
        """Partition ``p``'s cache as it is on disk, whose models' stored bytes the next one reuses where
        they are still the committed ones (``statecache.cache_tree``); None where there is none to use."""
        try:
            return self.store.load(p)
        except (SnapshotError, OSError):
            return None

    def _checkpoint_to_state_topic(self, chosen: list[int]) -> bool:
        """Steps 2-4 with ``state_store = "kafka"`` (see ``runtime/statetopic.py`` for the records).

        With ``exactly_once`` step 4 sends the offsets to the open transaction and commits it: the drift
        events and dead letters produced since the last checkpoint, the state records and the input
        offsets become visible together; then the next transaction opens. Returns False where the
        transaction was aborted instead (the partitions rewound, nothing committed).
        """
        acked: dict[int, int] = {}  # partition -> offset of its partition record's last chunk

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._state_errors.append(str(err))
            elif (msg.key() or b"").startswith(b"partition/"):
                p, offset = msg.partition(), msg.offset()
                assert p is not None and offset is not None  # a delivered record has both
                acked[p] = max(acked.get(p, -1), offset)

        if not self.exactly_once and not self._still_a_member(chosen):
            return False  # a zombie: its next poll delivers the loss of the partitions
        # Step 2: produce the changed models' states, then each partition's record (offsets, merge, ledger)
        self._state_errors.clear()  # late reports of an earlier, failed attempt are not this one's
        planned: dict[int, Changelog] = {}
        offsets = {p: dict(self.partitions[p].engine.offsets) for p in chosen}
        with self.lock, _gc_paused():
            for p in chosen:
                changelog, records = self._state_records(p, self.partitions[p].changed)
                for record in records:
                    self._produce_state(p, record, on_delivery)
                planned[p] = changelog
                # what its budget expects of the next (``_deferred_by_budget``), from the models it wrote
                model_bytes = sum(map(_model_value_bytes, records))
                if model_bytes:  # none: its changed models were all evicted meanwhile, it knows nothing new
                    self.partitions[p].bytes_per_model = model_bytes / len(self.partitions[p].changed)
        # Step 3: every state record acknowledged, or nothing is committed
        remaining = self.producer.flush(60)
        if remaining or self._state_errors or set(acked) != set(chosen) or self._txn_abortable:
            problem = f"{remaining} state records undelivered, errors: {self._state_errors[:3]}"
            if self.exactly_once:
                self._abort_and_rewind(problem)
                return False
            self._state_records_failed(planned, acked)
            self._checkpoint_failed(
                "kafka",
                f"{problem}; not committing. Check that the state topic {self.topics.state} exists and is writable.",
                [],
            )
            return False
        # Step 4: commit the input offsets stored with that state (a resume takes them from the state itself)
        commits = [TopicPartition(t, p, o) for p in chosen for t, o in sorted(offsets[p].items())]
        if self.exactly_once:
            try:
                self._commit_transaction(commits)
            except KafkaException as exc:
                self._transaction_failed(exc, "committing a checkpoint")
                return False
        else:
            self._commit_offsets(commits)
        with self.lock:
            for p in chosen:
                state = self.partitions[p]
                state.committed = dict(offsets[p])
                changelog = planned[p]
                changelog.offset = acked[p] + 1
                for record in statetopic.tombstones(changelog):  # nothing committed names them any more
                    self._produce_state(p, record, on_delivery)
                changelog.garbage = set()
                state.changelog = changelog
                self._taken(state, time.monotonic())
        return True

    @staticmethod
    def _taken(state: PartitionState, now: float) -> None:
        """Partition ``state``'s changes are a checkpoint's from ``now`` on: what changes next is the next one's."""
        state.changed.clear()
        state.dirty = False
        state.input_bytes = 0
        state.written_at = now

    def _state_records(
        self,
        p: int,
        changed: Collection[str],
        values: dict[str, bytes] | None = None,
        shown: dict[str, dict[str, Any]] | None = None,
    ) -> tuple[Changelog, list[statetopic.Record]]:
        """The state records of partition ``p``'s checkpoint of the models ``changed`` (those evicted meanwhile
        left out), and its changelog once they are acknowledged: in the loop, or in the forked packer.
        ``values``, ``shown``: filled with each model's value as packed (model_id -> value) and the summary
        its record carries (model_id -> doc), for the local cache."""
        state = self.partitions[p]
        snapshot = state.engine.snapshot(changed)
        summaries = statetopic.summaries(state.engine.monitors, snapshot.models)
        if shown is not None:
            shown.update(summaries)
        records, changelog = statetopic.checkpoint_records(
            snapshot,
            snapshot.models,
            state.changelog,
            self.seal,
            self.chunk_bytes,
            monitored=state.engine.monitors,
            values=values,
            # each with its summary, so that a restore from the topic alone keeps it encoded until it is needed
            summaries=summaries,
        )
        return changelog, records

    # -- the state-topic checkpoint packed by a forked copy ------------------------------------------

    def _start_state_checkpoint(self, chosen: list[int], started: float) -> bool:
        """Step 2 with ``state_store = "kafka"``: fork a copy that packs the state records of partitions
        ``chosen`` and streams them to a thread that produces them (``_pump``), and return to the consume
        loop, which lands the checkpoint once they are acknowledged (``_land_flight``). What the loop holds
        of the checkpoint is only what the copy cannot give back: which models it takes, and the offsets.
        Returns False where fork failed (the loop packs them instead)."""
        if not self.exactly_once and not self._still_a_member(chosen):
            return True  # a zombie: its next poll delivers the loss of the partitions
        self._state_errors.clear()  # late reports of an earlier, failed attempt are not this one's
        with self.lock:
            taken = {p: set(self.partitions[p].changed) for p in chosen}
            offsets = {p: dict(self.partitions[p].engine.offsets) for p in chosen}
            planned: dict[int, Changelog] = {}  # filled in the copy, read by its write_cache
            packed: dict[int, dict[str, bytes]] = {p: {} for p in chosen}  # the values packed, ditto
            shown: dict[int, dict[str, dict[str, Any]]] = {p: {} for p in chosen}  # and their summaries

            def pack(send: Callable[[bytes], None]) -> None:
                for p in chosen:
                    planned[p], records = self._state_records(p, taken[p], packed[p], shown[p])
                    send(statepieces.planned(p, planned[p]))
                    for record in records:
                        send(statepieces.record(p, record))

            def write_cache(word: bytes) -> int:
                """The local cache of the partitions committed, at the state-topic offsets in ``word``."""
                committed = orjson.loads(word)
                written = 0
                for p in chosen:
                    if str(p) in committed:
                        planned[p].offset = committed[str(p)]
                        engine = self.partitions[p].engine
                        written += self.store.write(
                            *statecache.cache_body(
                                engine, planned[p].state(), self.seal, packed[p], self._cached(p), shown[p]
                            )
                        )
                return written

            for p in chosen:  # the rows models hold counted here, not in the copy and again in the loop later
                self.partitions[p].engine.settle(taken[p])
            try:
                job = ForkedPack(pack, write_cache, self.fork_deadline_s)
            except OSError as exc:
                log.warning(
                    "cannot fork the state packer: packing in the consume loop instead",
                    extra={"fields": {"error": str(exc)}},
                )
                return False
            since = {p: (self.partitions[p].input_bytes, self.partitions[p].written_at) for p in chosen}
            for p in chosen:  # what changes from now on is the next checkpoint's
                self._taken(self.partitions[p], started)
        flight = StateFlight(job, chosen, taken, since, offsets, started)
        if self.exactly_once:
            self._deferred = []  # the open transaction ends at this checkpoint's offsets
        flight.pump = self._writer.submit(self._pump, flight)
        self._flight = flight
        self.m_pause_s.set(time.monotonic() - started)
        return True

    def _pump(self, flight: StateFlight) -> None:
        """In the writer thread: produce the records the copy packs, as they come. The loop serves their
        delivery reports (``producer.poll``): a full queue waits for it."""
        delivered = partial(self._flight_delivered, flight)
        for piece in flight.job.pieces():
            item = statepieces.decode(piece)
            if isinstance(item, statepieces.Planned):
                flight.planned[item.partition] = item.changelog
                continue
            p, record = item
            flight.model_bytes[p] = flight.model_bytes.get(p, 0) + _model_value_bytes(record)
            still_wanted = partial(flight.wants, p)  # not cancelled, its partition not lost
            if self._produce_state(p, record, delivered, go_on=still_wanted, wait_for_room=partial(time.sleep, 0.01)):
                flight.produced += 1
            if flight.cancelled:
                return
        flight.produced_at = time.monotonic()

    def _flight_delivered(self, flight: StateFlight, err: KafkaError | None, msg: Message) -> None:
        flight.delivered += 1
        if err is not None:
            self._state_errors.append(str(err))
        elif (msg.key() or b"").startswith(b"partition/"):
            p, offset = msg.partition(), msg.offset()
            assert p is not None and offset is not None  # a delivered record has both
            flight.acked[p] = max(flight.acked.get(p, -1), offset)

    def _state_record_delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._state_errors.append(str(err))

    def _land_flight(self, block: bool) -> bool:
        """Steps 3 and 4 of the checkpoint in flight: once every record is produced and acknowledged, commit
        its offsets (exactly_once: commit its transaction, then produce what was deferred into the next),
        tombstone, and let the copy write the local cache. Returns False while it is still under way
        (``block`` False), True once it is over, committed or failed."""
        flight = self._flight
        assert flight is not None and flight.pump is not None
        if block:
            while not flight.pump.done():
                self.producer.poll(0.05)
        else:
            self.producer.poll(0)
            if not flight.pump.done():
                return False
        failure = None
        try:
            flight.pump.result()
        except (SnapshotError, OSError, ValueError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        if failure is None:  # Step 3: every state record acknowledged, or nothing is committed
            deadline = flight.produced_at + STATE_ACK_TIMEOUT_S
            if block:
                self.producer.flush(max(0.0, deadline - time.monotonic()))
            elif flight.delivered < flight.produced and time.monotonic() < deadline:
                return False
        self._flight = None
        owned = [p for p in flight.chosen if p not in flight.lost]
        remaining = flight.produced - flight.delivered
        if (
            failure
            or remaining
            or self._state_errors
            or self._txn_abortable
            or any(p not in flight.acked for p in owned)
        ):
            flight.job.cancel()
            problem = failure or f"{remaining} state records undelivered, errors: {self._state_errors[:3]}"
            if self.exactly_once:
                self._abort_and_rewind(problem)
                return True
            self._flight_failed(flight)
            # a packer that failed says why itself; undelivered records point at the state topic
            hint = "" if failure else f" Check that the state topic {self.topics.state} exists and is writable."
            self._checkpoint_failed(
                "kafka",
                f"{problem}; not committing.{hint}",
                [],
            )
            return True
        # Step 4: commit the input offsets stored with that state (a resume takes them from the state itself)
        commits = [TopicPartition(t, p, o) for p in owned for t, o in sorted(flight.offsets[p].items())]
        if self.exactly_once:
            try:
                self._commit_transaction(commits)
            except KafkaException as exc:
                flight.job.cancel()
                self._transaction_failed(exc, "committing a checkpoint")
                return True
            deferred, self._deferred = self._deferred or [], None
            for args in deferred:
                self._produce(*args)
        else:
            self._commit_offsets(commits)
        with self.lock:
            for p in owned:
                state = self.partitions.get(p)
                if state is None:
                    continue
                state.committed = dict(flight.offsets[p])
                if flight.model_bytes.get(p):  # none: its changed models were all evicted meanwhile (as above)
                    state.bytes_per_model = flight.model_bytes[p] / len(flight.taken[p])
                changelog = flight.planned[p]
                changelog.offset = flight.acked[p] + 1
                for record in statetopic.tombstones(changelog):  # nothing committed names them any more
                    self._produce_state(p, record, self._state_record_delivered)
                changelog.garbage = set()
                state.changelog = changelog
        word = orjson.dumps({str(p): flight.acked[p] + 1 for p in owned})
        job = flight.job
        self._pending = (self._writer.submit(lambda: (job.finish(word), job.private_bytes)), [], flight.started, owned)
        return True

    def _commit_offsets(self, commits: list[TopicPartition]) -> None:
        """Commit the input offsets of a checkpoint the state topic holds (at_least_once): advisory, since a
        restore resumes at the offsets stored with the state; a failure is logged, not retried."""
        try:
            self.consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance meanwhile: the state topic has them all the same
            log.warning("committing offsets failed", extra={"fields": {"error": str(exc)}})

    def _flight_failed(self, flight: StateFlight) -> None:
        """As ``_state_records_failed``, for a checkpoint in flight (at_least_once): a partition whose partition
        record was acknowledged is committed in the topic and takes the new changelog; the others take back
        the models the checkpoint took, beside those changed since (which stay either way: the next
        checkpoint writes them), with the checkpoint number moved past the half-written one."""
        with self.lock:
            for p in flight.chosen:
                state = self.partitions.get(p)
                if state is None:
                    continue
                state.dirty = True
                changelog = flight.planned.get(p)  # None: the copy failed before any record of p
                if p in flight.acked and changelog is not None:
                    changelog.offset = flight.acked[p] + 1
                    state.changelog = changelog
                else:
                    state.changed |= flight.taken[p]
                    state.input_bytes += flight.since[p][0]  # weighed again with what came since
                    state.written_at = flight.since[p][1]
                    if changelog is not None:
                        state.changelog.last_gen = max(state.changelog.last_gen, changelog.last_gen)

    def _cancel_flight(self) -> None:
        """Give up the checkpoint in flight, if any: its copy killed, nothing more of it produced or committed,
        and what the loop deferred for the next transaction dropped (an abort rewinds to before it)."""
        flight, self._flight = self._flight, None
        self._deferred = None
        if flight is None:
            return
        flight.cancelled = True
        flight.job.kill()
        if flight.pump is not None:
            while not flight.pump.done():
                self.producer.poll(0.05)
        flight.job.cancel()

    def _still_a_member(self, chosen: list[int]) -> bool:
        """Whether this worker still belongs to the group's generation that gave it ``chosen``, asked of the
        group coordinator before state records are written (at_least_once; exactly_once is fenced by its
        transactions): the offsets their state was last committed at are committed again, a no-op for the
        group, which the coordinator refuses from a member it has expelled. A worker stalled for longer than
        ``session.timeout.ms`` (stopped, swapped out, cut off) has had its partitions restored by another
        one; without this it would write state records for them, which the new owner's could be mixed with,
        before its next poll told it of the loss."""
        probe = [TopicPartition(t, p, o) for p in chosen for t, o in sorted(self.partitions[p].committed.items())]
        if not probe:
            return True  # nothing committed yet (a partition without state or group offsets): nothing to ask with
        try:
            self.consumer.commit(offsets=probe, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() not in EXPELLED:
                return True  # the coordinator away: the checkpoint goes on, as its own commit would
            log.warning(
                "not a member of the group any more: no state written",
                extra={"fields": {"partitions": chosen, "error": str(exc.args[0])}},
            )
            self.m_checkpoint_failures.labels("kafka").inc()
            return False
        return True

    def _state_records_failed(self, planned: dict[int, Changelog], acked: dict[int, int]) -> None:
        """After a checkpoint whose state records were not all acknowledged: a partition whose partition record
        was is committed in the topic (records of one partition are acknowledged in order), so it takes the
        new changelog; the others keep theirs, with the checkpoint number moved past the half-written one,
        whose records a retry must not be mistaken for."""
        with self.lock:
            for p, changelog in planned.items():
                state = self.partitions.get(p)
                if state is None:
                    continue
                if p in acked:
                    changelog.offset = acked[p] + 1
                    state.changelog = changelog
                    state.changed.clear()
                else:
                    state.changelog.last_gen = max(state.changelog.last_gen, changelog.last_gen)

    def _checkpoint_failed(self, store: str, reason: str, partitions: Iterable[int]) -> None:
        """A checkpoint that could not be written: nothing of it is committed; the worker keeps its state, is
        not ready, and tries again after a backoff (1 s, doubling up to ``CHECKPOINT_RETRY_MAX_S``)."""
        self._failed_checkpoints += 1
        self.m_checkpoint_failures.labels(store).inc()
        self.health.ready = False
        backoff = min(2.0 ** (self._failed_checkpoints - 1), CHECKPOINT_RETRY_MAX_S)
        self._retry_at = time.monotonic() + backoff
        with self.lock:
            for p in partitions:  # written again by the next attempt
                if p in self.partitions:
                    self.partitions[p].dirty = True
        log.error(
            "checkpoint failed: nothing committed, retrying",
            extra={
                "fields": {
                    "store": store,
                    "error": reason,
                    "failed_in_a_row": self._failed_checkpoints,
                    "retry_in_s": backoff,
                }
            },
        )

    def _checkpoint_succeeded(self) -> None:
        if self._failed_checkpoints:
            log.info("checkpoint written again", extra={"fields": {"after_failures": self._failed_checkpoints}})
            self._failed_checkpoints = 0
            self._retry_at = 0.0
            self.health.ready = True

    def _commit_transaction(self, commits: list[TopicPartition]) -> None:
        """Add the input offsets to the open transaction, commit it, open the next one."""
        self.producer.send_offsets_to_transaction(commits, self.consumer.consumer_group_metadata(), 60)
        for attempt in range(3):
            try:
                self.producer.commit_transaction(60)
                break
            except KafkaException as exc:  # a retriable error (a timeout): the same call again, as librdkafka says
                if not exc.args[0].retriable() or attempt == 2:
                    raise
        self.producer.begin_transaction()  # what is produced from now on belongs to the next checkpoint

    def _produce_state(
        self,
        p: int,
        record: statetopic.Record,
        on_delivery: Callable[..., None],
        go_on: Callable[[], bool] = lambda: True,
        wait_for_room: Callable[[], object] | None = None,
    ) -> bool:
        """Produce a state record, waiting while the local queue is full (``wait_for_room``: by default the
        loop's own delivery reports, ``producer.poll``; the writer thread sleeps, the loop serves them) for as
        long as ``go_on`` says; True once it is produced."""
        while go_on():
            try:
                self.producer.produce(
                    self.topics.state,
                    record.value,
                    record.key,
                    partition=p,
                    headers=record.headers,
                    on_delivery=on_delivery,
                )
                return True
            except BufferError:  # local queue full: let deliveries drain
                if wait_for_room is None:
                    self.producer.poll(0.1)
                else:
                    wait_for_room()
        return False

    def _complete_checkpoint(self, block: bool = True) -> None:
        """Commit the offsets of the snapshots written in the background, once they are durable."""
        if self._flight is not None and not self._land_flight(block):
            return
        if self._pending is None:
            return
        future, commits, started, chosen = self._pending
        if not block and not future.done():
            return
        self._pending = None
        try:
            written, private = future.result()  # a failed write raises here: nothing of it is committed
        except (SnapshotError, OSError) as exc:
            if self.state_topic is None:
                self._checkpoint_failed("local", f"{type(exc).__name__}: {exc}", chosen)
                return
            # the state topic has this checkpoint: only the local cache is behind (restores read more of the topic)
            log.warning("writing the local cache failed", extra={"fields": {"error": str(exc)}})
            self.m_checkpoint_failures.labels("cache").inc()
            written, private = 0, 0
        if commits:
            try:
                self.consumer.commit(offsets=commits, asynchronous=False)
            except KafkaException as exc:
                # advisory: a restart resumes at the offsets stored with the state, and the next checkpoint
                # commits newer ones; a coordinator gone with the broker must not stop the worker
                log.warning("committing the checkpoint's offsets failed", extra={"fields": {"error": str(exc)}})
        self._checkpoint_succeeded()
        self.m_snapshot_bytes.set(written)
        self.m_writer_bytes.set(private)
        self.m_snapshot_ts.set(time.time())
        self.m_snapshot_s.set(time.monotonic() - started)

    # -- views for the HTTP thread ----------------------------------------

    def status(self) -> dict:
        with self.lock:
            return {
                "ready": self.health.ready,
                "partitions": {
                    str(p): {
                        "offsets": st.engine.offsets,
                        "models": {m: mon.summary() for m, mon in st.engine.monitors.items()},
                    }
                    for p, st in self.partitions.items()
                },
            }

    def _lag(self) -> Iterable[GaugeMetricFamily]:
        """Consumer lag per owned input partition (see ``_refresh_lag``); revoked partitions drop out."""
        lag = GaugeMetricFamily(
            "streamdrift_consumer_lag",
            "Messages behind the end of an owned input partition",
            labels=["topic", "partition"],
        )
        lag_now = self.lag  # replaced whole by the loop, never changed: read without its lock, so a scrape never waits
        for (topic, p), behind in sorted(lag_now.items()):
            if p in self.partitions:
                lag.add_metric([topic, str(p)], behind)
        yield lag


class _Collector:
    """A registry collector from a function yielding metric families."""

    def __init__(self, collect: Callable[[], Iterable]):
        self.collect = collect
