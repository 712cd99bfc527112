"""A model restored as its stored bytes: built into a monitor only when something needs its live state.

A restore of 10,000 models spends most of its time decoding their states and building their monitors,
and most of them see no event for a while after it. A `Dormant` model keeps the state as it was stored
(``value``: a state-topic value, compressed and sealed) and the summary ``/status`` and the exporter
show (stored beside it when the state was written), so a restore is reading bytes. The engine builds
the monitor (`Dormant.wake`) at the model's first event, or when the state itself is asked for
(``PartitionEngine.snapshot``): exactly the monitor an eager restore would have built from the same
value, so its state and drift events are the same. A checkpoint that writes only changed models
never asks a dormant model for its state, and writes a dormant model's stored bytes as they are; so does
the state topic's local cache (``runtime/statecache.py``). Both restores make them: from the local cache,
which keeps each model's summary beside its value, and from the state topic alone, whose model records
carry their summaries in their headers (``runtime/statetopic.py``). A stored state that cannot be built
(a writer bug) quarantines the model (``PartitionEngine._wake``), as a processing error does: a model
cannot stop the engine.

Examples
--------
>>> from streamdrift.core.config import MonitorSettings
>>> from streamdrift.core.monitor import ModelMonitor, monitor_factory
>>> from streamdrift.core.state import dumps, loads
>>> from streamdrift.core.summary import stored_summary
>>> monitor = ModelMonitor("m", MonitorSettings())
>>> dormant = Dormant("m", dumps(monitor.state()), stored_summary(monitor.summary()), None, loads)
>>> dormant.predictions_total, dormant.summary() == monitor.summary()
(0, True)
>>> dumps(dormant.wake(monitor_factory(MonitorSettings())).state()) == dumps(monitor.state())
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamdrift.core.protocols import State
from streamdrift.core.summary import MonitorSummary, summary_from_stored

if TYPE_CHECKING:
    from streamdrift.core.monitor import ModelMonitor


class Dormant:
    """A model's stored state and summary, standing in for its monitor until it is woken.

    Parameters
    ----------
    model_id
        The model.
    value
        Its state as stored; ``load(value)`` gives the state tree (checked, nothing executed).
    summary
        Its summary as ``summary.stored_summary`` wrote it, of that same state.
    quarantined
        The state's quarantine (``ModelMonitor.quarantined``): a quarantined model is never evicted.
    load
        ``value -> state``, the store's decoder (``runtime.statetopic.unpack`` with the model's seal).
    shown
        ``summary`` already read (``summary.summary_from_stored`` of it), if the store read it.
    """

    __slots__ = ("model_id", "value", "stored", "quarantined", "load", "_summary")

    def __init__(
        self,
        model_id: str,
        value: bytes,
        summary: bytes,
        quarantined: dict[str, Any] | None,
        load: Callable[[bytes], State],
        shown: MonitorSummary | None = None,
    ):
        self.model_id = model_id
        self.value = value
        self.stored = summary
        self.quarantined = quarantined
        self.load = load
        self._summary = shown

    def summary(self) -> MonitorSummary:
        """The summary of the stored state (read once)."""
        if self._summary is None:
            self._summary = summary_from_stored(self.stored)
        return self._summary

    @property
    def predictions_total(self) -> int:
        return self.summary().predictions

    @property
    def feedback_total(self) -> int:
        return self.summary().feedback

    @property
    def last_event_time(self) -> float:
        return self.summary().last_event_time

    def wake(self, new_monitor: Callable[..., ModelMonitor]) -> ModelMonitor:
        """The monitor of the stored state, as an eager restore builds it (``new_monitor(model_id, state)``)."""
        return new_monitor(self.model_id, self.load(self.value))
