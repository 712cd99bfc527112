"""One input partition's loop: merge → decode → monitor, the same for the worker and ``replay``.

The worker (``runtime/worker.py``) and ``streamdrift replay`` (``cli/replay.py``)
both drive a `PartitionEngine`: they hand it records of the predictions and
feedback topics of one partition as they come (``add``), then ask it for what
the merge can release (``release``). The engine merges the two topics by
record time (``merge.EpochMerge``), decodes the released runs, feeds one
``ModelMonitor`` per model and returns what came out: the drift events raised
and the records rejected, each in order. What happens to them next is the
caller's: the worker stamps ``emitted_at`` and produces them to Kafka, replay
writes them to a file. Since both run this one loop, a backtest over files
raises the drift events a worker raises over the same records (same
``alert_id``), as long as the worker never forced a release (see
``merge.EpochMerge``: a topic idle for ``max_task_idle_ms``; ``Released.forced``
says so). Past ``max_buffered`` records held on a topic the merge releases
only what it knows of the log order, and ``over_bound`` names the topic the
caller stops fetching meanwhile (the worker pauses it).

The engine knows no Kafka and no clock: its state (monitors, merge, next
offsets) depends only on the records added and their order.

Records that belong to another partition (their routing key's murmur2, ``routing.py``) are sorted out as
they are added: ``add`` returns those to forward or dead-letter, and they pass the merge as placeholders that
move no epoch, so the state is that of the partition's log without them; forwarded copies processed already
are dropped the same way, and a forwarding header no worker could have written is a dead letter
(``routing.PartitionRouting.trusted``). With one partition (replay) nothing is misrouted.

No model can stop the engine. A model whose processing raises is
*quarantined*: the batch's records come back rejected with reason
``processing_error`` (the worker dead-letters them), and so do the records of
every later batch of that model; its state is frozen as a fresh monitor that
records the error. A fresh one, not what the failure left: a batch that raised
half-way leaves a state that depends on which rows the batch held, hence on how
records were sliced, and a restart must rebuild the same state. The quarantine
is part of the model's state (snapshotted, so it survives a restart), is never
evicted for idleness, and lifts only when an operator removes the model's state.
A model restored `Dormant` whose stored state cannot be built, at its first event
or when its state is asked for, is quarantined the same way (``_wake``).
Which records of the failing batch came before the failing row depends on the
slicing, and the state does not; what they gave does: they are dead-lettered
with the failing row and the drift events the batch raised before the raise are
dropped, where a slicing that put them in an earlier slice processed them and
published their events. (Keeping those would need the model's state before
every batch, to run its rows again up to the failing one: a copy per batch on
the hot path, for a model that is failing anyway.) Warm-up rows a sketch held
(``core/held.py``) are counted with a later batch, or before a snapshot
(``settle``): where their counting raises, that batch's records are the ones
dead-lettered (or none, before a snapshot: the quarantine's topic is None),
while the held rows' own records, acknowledged earlier, are not.

Bounds. ``max_models`` bounds the models of this partition; events of a model
that finds no room are counted, not monitored. A bound per partition, not per
worker: a budget shared by a worker's partitions would make whether a model is
admitted depend on which partitions the worker owns and how far each has got,
so state would depend on the assignment and its timing, not on the log. With ``model_idle_ttl_s``, a
model none of whose events came within that much *event time* of the
partition's clock (the latest event time decoded, both topics) is evicted: its
state dropped and counted, so a burst of one-off model ids cannot hold every
slot for good. Which models hold a slot is that of processing the rows one at a
time, a sweep after each, however they were sliced
(``tests/unit/test_slot_admission.py``): a model is judged idle at the row its
next event comes (the clock just before that row); a model that finds the
partition full first evicts the models idle at its row's clock; and a slice is
cut before a row where its model turns out idle, or where a model that may
have found no slot may find one (a model turned idle since), so no batch spans
a change of its model's slot. Idle models are also swept after every slice and
at restore.

Holding. A fleet's poll gives each model a row or less: decoding and
monitoring it costs a batch per model, dozens of numpy calls for half an event.
With ``hold``, the records the merge releases may wait, up to ``hold`` of them,
and are then decoded and monitored together: fewer, larger batches per model.
The caller says when waiting is worth it (``release(flush=False)``: the worker
does while it is behind by ``hold`` records or more, so a worker that keeps up
decides as soon as before), and ``flush`` processes what waits (the worker does
before every checkpoint: ``snapshot`` refuses held records). How records are
grouped into batches never changes a model's state nor its drift events
(``tests/unit/test_batch_split.py``), so holding changes when they come out,
not what they are. While records wait, the offsets and the monitors' counters
have not counted them yet.

Examples
--------
>>> import orjson
>>> from streamdrift.core.config import MonitorSettings
>>> from streamdrift.core.monitor import monitor_factory
>>> from streamdrift.core.records import RawMessage
>>> engine = PartitionEngine(0, "p", "f", monitor_factory(MonitorSettings()), epoch_ms=1000)
>>> def prediction(offset, t):
...     value = {"event_id": f"e{offset}", "model_id": "m", "timestamp": t, "features": {"x": 1.0}, "prediction": 1}
...     return RawMessage("p", 0, offset, None, orjson.dumps(value), t * 1000)
>>> routed = engine.add("p", [prediction(0, 1), prediction(1, 2), RawMessage("p", 0, 2, None, b"{}", 2000)])
>>> engine.release().records  # the feedback topic may still bring records of those times
0
>>> out = engine.release(ended={"p", "f"})
>>> out.records, out.events, [(r.message.offset, r.reason) for r in out.rejected], out.forced
(3, [], [(2, "missing field 'event_id'")], None)
>>> engine.offsets, engine.monitors["m"].predictions_total
({'p': 3}, 2)
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from streamdrift.core.config import InputBounds
from streamdrift.core.decode import DEFAULT_BOUNDS, decode_feedback, decode_predictions
from streamdrift.core.dormant import Dormant
from streamdrift.core.merge import EpochMerge, Forced
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.protocols import State
from streamdrift.core.records import FeedbackBatch, PredictionBatch, RawMessage, Rejected
from streamdrift.core.routing import Misrouted, PartitionRouting, Routed
from streamdrift.core.state import Snapshot

log = logging.getLogger("streamdrift.engine")

PROCESSING_ERROR = "processing_error"  # the dead-letter reason of a quarantined model's records
# the merge state's key under which the engine keeps its event-time clock (the snapshot has no other place)
EVENT_CLOCK = "event_clock"
FORWARDED = "forwarded"  # and the forwarded copies processed (``routing.PartitionRouting.state``), when any

# A drift event as the policy makes it (``policy.drift_event``; schemas/drift_event.schema.json), ``emitted_at`` unset.
DriftEvent: TypeAlias = dict[str, Any]
# ``(model_id, state=None) -> ModelMonitor``, as ``monitor.monitor_factory`` makes it.
MonitorFactory: TypeAlias = Callable[..., ModelMonitor]
Batch: TypeAlias = PredictionBatch | FeedbackBatch
# Called for every decoded batch after the monitors saw it: (topic, batch, monitored, the events it raised).
# ``monitored`` is False for a model over ``max_models``. For callers that report on the batches (replay's summary).
BatchHook: TypeAlias = Callable[[str, Batch, bool, list[DriftEvent]], None]


@dataclass(slots=True)
class Released:
    """What one ``release`` produced, in the order it was produced."""

    events: list[DriftEvent] = field(default_factory=list)  # drift events raised, without ``emitted_at``
    rejected: list[Rejected] = field(default_factory=list)  # records that failed validation: dead letters
    records: int = 0  # records released by the merge (rejected ones included)
    batches: int = 0  # model batches its monitors observed: what a fleet's CPU per event follows (docs/scaling.md)
    forced: Forced | None = None  # why the merge went ahead of the log order, if it did (``EpochMerge.release``)


class PartitionEngine:
    """The state of one input partition and the loop over it: release → decode → monitor.

    Parameters
    ----------
    partition
        The input partition number (both topics are co-partitioned).
    predictions, feedback
        The two topics' names; within an epoch of record time the predictions go first.
    new_monitor
        ``(model_id, state=None) -> ModelMonitor`` (``monitor.monitor_factory``).
    epoch_ms
        Width of the merge's epochs of record time (``merge_epoch_ms``).
    max_buffered
        Records the merge holds back per topic before it releases part of an epoch, what it knows of the log
        order; a topic still over it is named by ``over_bound`` (the worker pauses it).
    max_models
        Models monitored by this engine (this partition); events of more are counted in
        ``unmonitored_events``, not monitored.
    batch_size
        Records decoded at a time: a long run goes in slices of at most ``max(batch_size, hold)`` records
        (the same state, a smaller working set), cut shorter where a model's slot changes (see Bounds).
    on_batch
        Optional `BatchHook`, told of every decoded batch (a batch that quarantined its model counts as
        monitored: the model's state changed).
    bounds
        What the decoder accepts (``config.InputBounds``).
    model_idle_ttl_s
        Event time after which a model without events is evicted; None: never.
    require_record_time
        Dead-letter a record without a Kafka timestamp (0 or less), whose event time the skew bound
        cannot judge (``decode``). False only where records have no Kafka timestamps of their own
        (replay stamps each with its event time).
    partitions
        The input topics' partition count: a record whose routing key maps to another partition is
        misrouted (``routing.py``). 1 (replay): none is.
    misrouted
        What becomes of a misrouted record: ``"forward"`` (``add`` returns it to forward),
        ``"dead_letter"`` or ``"process"``.
    hold
        Released records that may wait to be decoded and monitored together (see the module's docstring);
        0: none wait.
    """

    def __init__(
        self,
        partition: int,
        predictions: str,
        feedback: str,
        new_monitor: MonitorFactory,
        *,
        epoch_ms: int,
        max_buffered: int = 100_000,
        max_models: int = 10_000,
        batch_size: int = 1000,
        on_batch: BatchHook | None = None,
        bounds: InputBounds = DEFAULT_BOUNDS,
        model_idle_ttl_s: float | None = None,
        require_record_time: bool = True,
        partitions: int = 1,
        misrouted: Misrouted = "forward",
        hold: int = 0,
    ):
        self.partition = partition
        self.predictions = predictions
        self.feedback = feedback
        self.new_monitor = new_monitor
        self.max_models = max_models
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.merge = EpochMerge(epoch_ms, (predictions, feedback), max_buffered=max_buffered)
        self.routing = PartitionRouting(partition, partitions, misrouted)
        self.offsets: dict[str, int] = {}  # topic -> next offset to consume (of the records released)
        # a model restored from a store that kept its summary may stay `Dormant` until it is needed (``monitor``)
        self.monitors: dict[str, ModelMonitor | Dormant] = {}
        self.bounds = bounds
        self.model_idle_ttl_s = model_idle_ttl_s
        self.require_record_time = require_record_time
        self.event_clock = 0.0  # the latest event time decoded (epoch seconds), both topics
        self.hold = hold
        self._held: list[tuple[str, list[RawMessage]]] = []  # released runs not processed yet, in order
        self._held_records = 0
        self._free_from = np.inf  # no model turns idle before this clock, in the slice at hand (``_freed_slots``)
        # no resident turns idle before this clock: exact after a sweep, lowered by each admission (``_evict_idle``)
        self._idle_from = np.inf
        # counters since this engine was made (not snapshotted)
        self.unmonitored_events = 0  # events of models over max_models
        self.processing_errors = 0  # batches whose processing raised (each quarantined its model)
        self.evicted_models = 0  # models evicted for idleness

    @property
    def quarantined_models(self) -> int:
        """Models of this partition in quarantine (part of their state)."""
        return sum(monitor.quarantined is not None for monitor in self.monitors.values())

    # -- state ----------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        """Take back what ``snapshot()`` gave: monitors, merge epochs and next offsets. A model whose state
        comes as a `Dormant` stays so until its first event or until its state is asked for."""
        if snapshot.merge:  # snapshots written before the merge existed have none
            was = snapshot.merge.get("epoch_ms", self.merge.epoch_ms)
            if was != self.merge.epoch_ms:  # converted, but the order (hence the state) is the new epoch's now
                log.warning(
                    "merge_epoch_ms differs from the checkpoint's: the partition's order is the new epoch's from "
                    "here on (the same log gives other drift events under each; every worker of a group needs the "
                    "same value)",
                    extra={
                        "fields": {
                            "partition": self.partition,
                            "checkpoint_merge_epoch_ms": was,
                            "merge_epoch_ms": self.merge.epoch_ms,
                        }
                    },
                )
            self.merge.load_state(snapshot.merge)
        self.routing.load_state((snapshot.merge or {}).get(FORWARDED, {}))
        self.offsets = dict(snapshot.offsets)
        self._held, self._held_records = [], 0
        self.monitors = {}
        for model_id, state in snapshot.models.items():
            self.monitors[model_id] = state if isinstance(state, Dormant) else self._built(model_id, state)
        latest = max((monitor.last_event_time for monitor in self.monitors.values()), default=0.0)
        self.event_clock = float((snapshot.merge or {}).get(EVENT_CLOCK, latest))
        self._idle_from = -np.inf  # not known yet: the sweep below looks at every model and sets it
        self._evict_idle()  # a store that kept an evicted model's record gives it back: drop it again

    def snapshot(self, models: Collection[str] | None = None) -> Snapshot:
        """The state to checkpoint: the monitors, the merge's epochs and the offsets they reflect.

        ``models``: only the states of those monitored now (the ones changed since the last checkpoint,
        for a store that writes per model); all of them where None. Records held (``hold``) are not
        part of it: ``flush`` them first.
        """
        if self._held:
            raise RuntimeError(f"partition {self.partition}: {self._held_records} records held; flush() first")
        chosen = self.monitors if models is None else [m for m in sorted(models) if m in self.monitors]
        self.settle(chosen)
        return Snapshot(
            self.partition,
            dict(self.offsets),
            {model_id: self.monitor(model_id).state() for model_id in chosen},
            self.partition_state(),
        )

    def _built(self, model_id: str, state: State) -> ModelMonitor:
        """The monitor of a state decoded at the restore (a record without a summary: a quarantined model's, or
        one written before summaries); where it cannot be built (a writer bug: it passed its checksum), the model
        quarantined as ``_wake`` quarantines a `Dormant` one: no record can stop the restore, hence every worker
        that is assigned its partition."""
        try:
            return self.new_monitor(model_id, state)
        except Exception as exc:  # noqa: BLE001 - whatever building one model raises stops that model only
            frozen, _ = self._freeze(model_id, None, exc, during="building its stored state")
            return frozen

    def settle(self, models: Collection[str]) -> None:
        """Count the rows the live monitors of ``models`` hold (``ModelMonitor.settle``), as ``snapshot`` does
        before it takes their states. Counting them runs the code that processing a batch runs, so a monitor
        whose counting raises is quarantined as a processing error quarantines it (``topic`` None: no batch
        raised): no model can stop the engine."""
        for model_id in models:
            monitor = self.monitors.get(model_id)
            if isinstance(monitor, ModelMonitor) and monitor.quarantined is None:
                try:
                    monitor.settle()
                except Exception as exc:  # noqa: BLE001 - whatever one model raises stops that model only
                    self._freeze(model_id, None, exc, during="counting the rows it held")

    def monitor(self, model_id: str) -> ModelMonitor:
        """The live monitor of ``model_id``, built now if it was `Dormant` (KeyError: not monitored); one whose
        stored state cannot be built is quarantined (``_wake``)."""
        monitor = self.monitors[model_id]
        if isinstance(monitor, Dormant):
            monitor, _ = self._wake(monitor, None)
        return monitor

    def _wake(self, dormant: Dormant, topic: str | None, **fields: int) -> tuple[ModelMonitor, str | None]:
        """The monitor of ``dormant``'s stored state, and None; or, where that state cannot be built, the model
        quarantined as a processing error quarantines it, and the dead-letter reason of its records.

        Only a writer bug makes such a value (a store is checksummed; the state cache's load inflates each value
        but does not decode it), and this happens at the model's first event or when its state is
        asked for, long after the restore: no model can stop the engine, so it cannot stop the worker either.
        ``topic``: of the batch that woke it (None: its state was asked for); ``fields``: for the log line.
        """
        try:
            monitor = self.monitors[dormant.model_id] = dormant.wake(self.new_monitor)
        except Exception as exc:  # noqa: BLE001 - whatever building one model raises stops that model only
            frozen, cause = self._freeze(dormant.model_id, topic, exc, during="waking its stored state", **fields)
            return (
                frozen,
                f"{PROCESSING_ERROR}: {cause} waking its stored state; model '{dormant.model_id}' quarantined",
            )
        return monitor, None

    def partition_state(self) -> State:
        """What the partition keeps besides its models (``Snapshot.merge``): the merge's epochs, the
        event clock, which no model's last event time may tell (its model evicted, or over ``max_models``),
        and the marks of the forwarded copies processed (``routing.PartitionRouting``), when there are any."""
        state = {**self.merge.state(), EVENT_CLOCK: self.event_clock}
        if self.routing.marks:  # none on a partition never forwarded to: its snapshot as it was before forwarding
            state[FORWARDED] = self.routing.state()
        return state

    # -- the loop -------------------------------------------------------------

    def add(self, topic: str, records: list[RawMessage]) -> Routed:
        """Records of one topic of this partition, in offset order; held by the merge until released.

        Returns what became of them (``routing.Routed``): the misrouted ones to forward, or dead letters,
        are the caller's to produce now; they and duplicate forwarded copies are skipped here.
        """
        routed = self.routing.route(topic, records)
        self.merge.extend(topic, routed.kept)
        return routed

    def over_bound(self) -> list[str]:
        """The topics to stop fetching for now: their records held by the merge are over ``max_buffered``
        and wait for the other topic to move on (``merge.EpochMerge.over_bound``)."""
        return self.merge.over_bound()

    def buffered(self) -> int:
        """Records added and not processed yet: held by the merge, or released and held (``hold``)."""
        return self.merge.buffered() + self._held_records

    def release(self, ended: Collection[str] = (), idle: Collection[str] = (), flush: bool = True) -> Released:
        """Decode and monitor what the merge releases now (see ``merge.EpochMerge.release``).

        ``ended``: the topics whose log has ended (a file read to its end);
        nothing of theirs is waited for, and the order stays the log's.
        ``idle``: the topics that had nothing for ``max_task_idle_ms``; not
        waiting for them is a forced release (``Released.forced``).
        ``flush``: process every record released; False: they may wait, up to ``hold`` records.
        """
        release = self.merge.release(ended, idle)
        out = Released(forced=release.forced)
        for topic, records in release.runs:
            out.records += len(records)
            if self._held and self._held[-1][0] == topic:  # one topic's runs back to back: one run
                self._held[-1][1].extend(records)
            else:
                self._held.append((topic, list(records)))
            self._held_records += len(records)
        if flush or self._held_records >= self.hold:
            self._process_held(out)
        return out

    def flush(self) -> Released:
        """Decode and monitor the records held (``release(flush=False)``); the merge's are not released."""
        out = Released()
        self._process_held(out)
        return out

    def _process_held(self, out: Released) -> None:
        held, self._held, self._held_records = self._held, [], 0
        for topic, records in held:
            self._process_run(topic, records, out)

    def _process_run(self, topic: str, records: list[RawMessage], out: Released) -> None:
        """A run of one topic's records, in offset order, in slices of at most ``max(batch_size, hold)``."""
        self.offsets[topic] = records[-1].offset + 1  # skipped records too: they are done with here
        records = self.routing.processed(topic, records)
        at = 0
        size = ahead = max(self.batch_size, self.hold)
        while at < len(records):
            sliced = records[at : at + ahead]
            batches, rejected = self._decode(topic, sliced)
            clocks = _RowClocks(batches, self.event_clock)
            cut = min(self._gaps(batches, clocks) + self._freed_slots(batches, clocks), default=None)
            if cut is not None:  # no batch may span a change of its model's slot: the slice ends before that row
                sliced = sliced[: next(i for i, m in enumerate(sliced) if m.offset == cut)]
                batches, rejected = self._decode(topic, sliced)
                clocks = _RowClocks(batches, self.event_clock)
                # what was decoded past the cut is decoded again: while cuts come this often (a model stamped
                # far in the past is idle at each of its events), decode no further ahead than twice as far
                ahead = 2 * len(sliced)
            else:
                ahead = min(2 * ahead, size)
            out.rejected += rejected
            for batch, clock, earliest in zip(batches, clocks.firsts, clocks.earliest):
                out.events += self._observe(topic, batch, sliced, clock, earliest, out)
            self.event_clock = clocks.after
            self._evict_idle()
            at += len(sliced)

    def _decode(self, topic: str, sliced: list[RawMessage]) -> tuple[list[Any], list[Rejected]]:
        if topic == self.predictions:
            return decode_predictions(sliced, self.bounds, require_record_time=self.require_record_time)
        return decode_feedback(sliced, self.bounds, require_record_time=self.require_record_time)

    def _gaps(self, batches: list[Any], clocks: _RowClocks) -> list[int]:
        """Per batch, the offset of its first row, not first of the batch, at which its model is idle."""
        if self.model_idle_ttl_s is None:
            return []
        # a row's model is idle only where the clock just before it is more than the TTL past the batch's first
        # event time (a model's latest event time before the row is at least that), and the clock only grows:
        # the batches whose last row's clock is within the TTL of their first event time have no gap, and the
        # batches of a fleet's poll are mostly a few rows each, so they are told apart for all at once
        maybe = np.flatnonzero(clocks.lasts > clocks.starts + self.model_idle_ttl_s).tolist()
        cuts = []
        for batch in (batches[i] for i in maybe):
            if len(batch) < 2:
                continue
            clock = clocks.before(batch.offsets)
            monitor = self.monitors.get(batch.model_id)
            if monitor is not None and monitor.quarantined is not None:
                continue
            known = monitor is not None and not self._idle(monitor, float(clock[0]))
            last = monitor.last_event_time if known else -np.inf  # type: ignore[union-attr]
            latest_before = np.maximum.accumulate(np.concatenate([[last], batch.timestamps]))[1:-1]
            gaps = np.flatnonzero(clock[1:] > latest_before + self.model_idle_ttl_s)
            if len(gaps):
                cuts.append(int(batch.offsets[1 + gaps[0]]))
        return cuts

    def _freed_slots(self, batches: list[Any], clocks: _RowClocks) -> list[int]:
        """Per batch of a model that may have found no slot at its first row, the offset of its first row
        where a slot may have come free since (a model turned idle).

        Such a model is refused or admitted for its whole batch, where row by row a later row of it could
        find the slot: the slice ends before that row, and its admission is decided again there. No model
        turns idle before the clock passes ``_free_from``: a resident's last event time only grows, and a
        model admitted in the slice has one of at least its earliest event time in it.
        """
        self._free_from = np.inf  # the partition cannot fill up within this slice: every newcomer finds a slot
        if self.model_idle_ttl_s is None or len(self.monitors) + len(batches) < self.max_models:
            return []
        newcomers = [batch for batch, clock in zip(batches, clocks.firsts) if not self._resident(batch.model_id, clock)]
        if not newcomers or len(self.monitors) + len(newcomers) < self.max_models:
            return []
        earliest = min(float(np.min(b.timestamps)) for b in newcomers) + self.model_idle_ttl_s
        self._free_from = min(self._idle_from, earliest)
        cuts = []
        for batch in newcomers:
            later = np.flatnonzero(clocks.before(batch.offsets[1:]) > self._free_from)
            if len(later):
                cuts.append(int(batch.offsets[1 + later[0]]))
        return cuts

    def _resident(self, model_id: str, clock: float) -> bool:
        """Whether ``model_id`` holds a slot it keeps at ``clock`` (not idle then)."""
        monitor = self.monitors.get(model_id)
        return monitor is not None and not self._idle(monitor, clock)

    def _observe(
        self, topic: str, batch: Batch, messages: list[RawMessage], clock: float, earliest: float, out: Released
    ) -> list[DriftEvent]:
        """One model's batch to its monitor (none over ``max_models``); the drift events it raised.
        ``clock``: the partition's clock just before the batch's first row; ``earliest``: its earliest event time.
        A quarantined model's records, or those of a batch that quarantines it, go to ``out.rejected``."""
        found = self._monitor(batch.model_id, len(batch), clock, earliest)
        monitor, unbuilt = (
            self._wake(found, topic, offset=int(batch.offsets[0]), records=len(batch))
            if isinstance(found, Dormant)
            else (found, None)
        )
        events: list[DriftEvent] = []
        if unbuilt is not None:  # quarantined now: its records rejected, and its state changed (``on_batch``)
            out.rejected += _rejected(batch, messages, unbuilt)
        elif monitor is not None and monitor.quarantined is not None:
            out.rejected += _rejected(batch, messages, f"{PROCESSING_ERROR}: model '{batch.model_id}' is quarantined")
            return events  # a frozen state: nothing changed, nothing to tell
        elif monitor is not None:
            out.batches += 1
            try:
                if isinstance(batch, PredictionBatch):
                    events = monitor.observe_predictions(batch)
                else:
                    events = monitor.observe_feedback(batch)
            except Exception as exc:  # noqa: BLE001 - whatever one model's processing raises stops that model only
                events = []
                out.rejected += self._quarantine(topic, batch, messages, exc)
        if self.on_batch is not None:
            self.on_batch(topic, batch, monitor is not None, events)
        return events

    def _quarantine(self, topic: str, batch: Batch, messages: list[RawMessage], exc: Exception) -> list[Rejected]:
        """Freeze the batch's model; its records rejected."""
        _, cause = self._freeze(batch.model_id, topic, exc, offset=int(batch.offsets[0]), records=len(batch))
        return _rejected(batch, messages, f"{PROCESSING_ERROR}: {cause}; model '{batch.model_id}' quarantined")

    def _freeze(
        self, model_id: str, topic: str | None, exc: Exception, during: str = "", **fields: int
    ) -> tuple[ModelMonitor, str]:
        """Quarantine ``model_id`` (logged, counted in ``processing_errors``): its frozen monitor, and the cause
        as a dead-letter reason says it. The cause and the log line name the exception's type and where it was raised, never its
        message (which may quote a value)."""
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} ({frame.name})"
        error = type(exc).__name__
        fresh = self.monitors[model_id] = self.new_monitor(model_id)  # see the module's docstring: why a fresh one
        fresh.quarantine(error, where, topic)
        self.processing_errors += 1
        context = {"during": during} if during else {}
        log.error(
            "model quarantined",
            extra={
                "fields": {
                    "model_id": model_id,
                    "partition": self.partition,
                    "topic": topic,
                    **fields,
                    "error": error,
                    "where": where,
                    **context,
                }
            },
        )
        return fresh, f"{error} at {where}"

    def _monitor(self, model_id: str, n_events: int, clock: float, earliest: float) -> ModelMonitor | Dormant | None:
        """The model's monitor (still `Dormant` if it was: ``_observe`` wakes it), a new one if there is room,
        else None. ``earliest``: the earliest event time of the batch it is for."""
        monitor = self.monitors.get(model_id)
        if monitor is not None and self._idle(monitor, clock):
            self._evict(model_id)  # the same as if a sweep had found it: what follows starts afresh
            monitor = None
        if monitor is None:
            if len(self.monitors) >= self.max_models:
                # the slots a sweep after every row would have freed by now: admission depends on the rows
                # and their order, not on where the slice ended (a later row's turn: ``_freed_slots``)
                if clock > self._free_from:  # else none is idle: no sweep over every model for each refusal
                    self._evict_idle(clock)
            if len(self.monitors) >= self.max_models:
                self.unmonitored_events += n_events
                return None
            monitor = self.monitors[model_id] = self.new_monitor(model_id)
            if self.model_idle_ttl_s is not None:  # its last event time will be at least this batch's earliest
                self._idle_from = min(self._idle_from, earliest + self.model_idle_ttl_s)
        return monitor

    def _idle(self, monitor: ModelMonitor | Dormant, clock: float) -> bool:
        if self.model_idle_ttl_s is None or monitor.quarantined is not None:
            return False
        return monitor.last_event_time + self.model_idle_ttl_s < clock

    def _evict_idle(self, clock: float | None = None) -> None:
        """Evict the models idle at ``clock`` (the partition's event clock where None).

        Looks at every model only once the clock is past ``_idle_from``: a resident's last event time only
        grows, and each admission lowers it to what its model's may be, so no model is idle before. A full
        partition's refusals and the sweep after every slice would otherwise look at every model each time,
        though none is idle (a newcomer stamped far in the past lowers ``_free_from`` to make them look).
        """
        if self.model_idle_ttl_s is None:
            return
        clock = self.event_clock if clock is None else clock
        if clock <= self._idle_from:
            return
        for model_id in [m for m, monitor in self.monitors.items() if self._idle(monitor, clock)]:
            self._evict(model_id)
        lasts = (monitor.last_event_time for monitor in self.monitors.values() if monitor.quarantined is None)
        self._idle_from = min(lasts, default=np.inf) + self.model_idle_ttl_s

    def _evict(self, model_id: str) -> None:
        del self.monitors[model_id]
        self.evicted_models += 1
        log.info("model evicted", extra={"fields": {"model_id": model_id, "partition": self.partition}})


class _RowClocks:
    """The partition's event-time clock just before each row of a slice (rows in offset order), and per batch
    (in the slice's order of batches) what the engine asks of every batch: the clock just before its first
    row and its last row, its first and its earliest event time. Asked once for the slice rather than batch by
    batch: a fleet's poll is hundreds of batches of a few rows, and a numpy call per batch cost more than its
    rows (issue 19)."""

    def __init__(self, batches: list[Any], clock: float):
        if not batches:
            self.offsets, self.running = np.zeros(0, np.int64), np.array([clock])
            self.firsts: list[float] = []
            self.earliest: list[float] = []
            self.lasts = self.starts = np.zeros(0)
        else:
            offsets = np.concatenate([batch.offsets for batch in batches])
            times = np.concatenate([batch.timestamps for batch in batches])
            order = np.argsort(offsets, kind="stable")
            self.offsets = offsets[order]
            self.running = np.maximum.accumulate(np.concatenate([[clock], times[order]]))
            sizes = np.array([len(batch) for batch in batches])
            ends = np.cumsum(sizes)
            starts = ends - sizes  # every batch has a row
            self.firsts = self.before(offsets[starts]).tolist()
            self.lasts = self.before(offsets[ends - 1])  # a batch's rows are in offset order
            self.starts = times[starts]
            self.earliest = np.minimum.reduceat(times, starts).tolist()
        self.after = float(self.running[-1])  # the clock once the slice is through

    def before(self, offsets: np.ndarray) -> np.ndarray:
        return self.running[np.searchsorted(self.offsets, offsets)]


def _rejected(batch: Batch, messages: list[RawMessage], reason: str) -> list[Rejected]:
    """The records of ``batch`` (taken from the slice ``messages`` it was decoded from) as rejected."""
    by_offset = {message.offset: message for message in messages if message.partition == batch.partition}
    return [Rejected(by_offset[offset], reason) for offset in batch.offsets.tolist()]
