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
``merge.EpochMerge``: a topic idle for ``max_task_idle_ms``, or
``max_buffered`` reached; ``Released.forced`` says so).

The engine knows no Kafka and no clock: its state (monitors, merge, next
offsets) depends only on the records added and their order.

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
>>> engine.add("p", [prediction(0, 1), prediction(1, 2), RawMessage("p", 0, 2, None, b"{}", 2000)])
>>> engine.release().records  # the feedback topic may still bring records of those times
0
>>> out = engine.release(ended={"p", "f"})
>>> out.records, out.events, [(r.message.offset, r.reason) for r in out.rejected], out.forced
(3, [], [(2, "missing field 'event_id'")], None)
>>> engine.offsets, engine.monitors["m"].predictions_total
({'p': 3}, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.merge import EpochMerge, Forced
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import FeedbackBatch, PredictionBatch, RawMessage, Rejected
from streamdrift.core.state import Snapshot

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
        Records the merge holds back per topic before it releases early (bounded memory over order).
    max_models
        Models monitored; events of more are counted in ``unmonitored_events``, not monitored.
    batch_size
        Records decoded at a time: a long run goes in slices (the same state, a smaller working set).
    on_batch
        Optional `BatchHook`, told of every decoded batch.
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
    ):
        self.partition = partition
        self.predictions = predictions
        self.feedback = feedback
        self.new_monitor = new_monitor
        self.max_models = max_models
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.merge = EpochMerge(epoch_ms, (predictions, feedback), max_buffered=max_buffered)
        self.offsets: dict[str, int] = {}  # topic -> next offset to consume (of the records released)
        self.monitors: dict[str, ModelMonitor] = {}
        self.unmonitored_events = 0  # events of models over max_models (since this engine was made)

    # -- state ----------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        """Take back what ``snapshot()`` gave: monitors, merge epochs and next offsets."""
        if snapshot.merge:  # snapshots written before the merge existed have none
            self.merge.load_state(snapshot.merge)
        self.offsets = dict(snapshot.offsets)
        self.monitors = {model_id: self.new_monitor(model_id, state) for model_id, state in snapshot.models.items()}

    def snapshot(self) -> Snapshot:
        """The state to checkpoint: the monitors, the merge's epochs and the offsets they reflect."""
        return Snapshot(
            self.partition,
            dict(self.offsets),
            {model_id: monitor.state() for model_id, monitor in self.monitors.items()},
            self.merge.state(),
        )

    # -- the loop -------------------------------------------------------------

    def add(self, topic: str, records: list[RawMessage]) -> None:
        """Records of one topic of this partition, in offset order; held by the merge until released."""
        self.merge.extend(topic, records)

    def buffered(self) -> int:
        """Records added and not released yet."""
        return self.merge.buffered()

    def release(self, ended: Collection[str] = (), idle: Collection[str] = ()) -> Released:
        """Decode and monitor what the merge releases now (see ``merge.EpochMerge.release``).

        ``ended``: the topics whose log has ended (a file read to its end);
        nothing of theirs is waited for, and the order stays the log's.
        ``idle``: the topics that had nothing for ``max_task_idle_ms``; not
        waiting for them is a forced release (``Released.forced``).
        """
        release = self.merge.release(ended, idle)
        out = Released(forced=release.forced)
        for topic, records in release.runs:
            self._process_run(topic, records, out)
        return out

    def _process_run(self, topic: str, records: list[RawMessage], out: Released) -> None:
        """A run of one topic's records, in offset order, in slices of ``batch_size``."""
        for at in range(0, len(records), self.batch_size):
            sliced = records[at : at + self.batch_size]
            batches: list[PredictionBatch] | list[FeedbackBatch]
            if topic == self.predictions:
                batches, rejected = decode_predictions(sliced)
            else:
                batches, rejected = decode_feedback(sliced)
            out.rejected += rejected
            for batch in batches:
                out.events += self._observe(topic, batch)
        out.records += len(records)
        self.offsets[topic] = records[-1].offset + 1

    def _observe(self, topic: str, batch: Batch) -> list[DriftEvent]:
        """One model's batch to its monitor (none over ``max_models``); the drift events it raised."""
        monitor = self._monitor(batch.model_id, len(batch))
        events: list[DriftEvent] = []
        if monitor is not None:
            if isinstance(batch, PredictionBatch):
                events = monitor.observe_predictions(batch)
            else:
                events = monitor.observe_feedback(batch)
        if self.on_batch is not None:
            self.on_batch(topic, batch, monitor is not None, events)
        return events

    def _monitor(self, model_id: str, n_events: int) -> ModelMonitor | None:
        monitor = self.monitors.get(model_id)
        if monitor is None:
            if len(self.monitors) >= self.max_models:
                self.unmonitored_events += n_events
                return None
            monitor = self.monitors[model_id] = self.new_monitor(model_id)
        return monitor
