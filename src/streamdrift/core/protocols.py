"""The contracts between the core's stateful parts and what snapshots them.

Every part of a monitor that keeps state between batches (sketches, detectors, the
join buffer, the metrics, the policy, the merge of the input topics) hands it out
as ``state()``: plain data and numpy arrays, which ``streamdrift.core.state``
writes and reads back, and takes it back with ``load_state`` (a part made from its
settings first) or ``from_state`` (a part made from the state itself). These
protocols name that contract, so that a snapshot's writers and readers can say
what they expect without importing every class that keeps state.

Examples
--------
>>> from streamdrift.core.merge import EpochMerge
>>> merge: Restorable = EpochMerge(1000, ("predictions", "feedback"))
>>> sorted(merge.state())
['epoch_ms', 'epochs']
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

# A part's state: JSON values and numpy arrays of numbers, keyed by name (see ``streamdrift.core.state``).
# Its keys differ from part to part and are read only by the part that wrote them.
State: TypeAlias = dict[str, Any]


@runtime_checkable
class Stateful(Protocol):
    """A part whose state a snapshot holds."""

    def state(self) -> State:
        """The part's state as plain data and numpy arrays (copies, or arrays that never change)."""
        ...


@runtime_checkable
class Restorable(Stateful, Protocol):
    """A part made from its settings, then given back the state it had."""

    def load_state(self, state: State) -> None:
        """Take back what ``state()`` gave (or the same data as read from a snapshot)."""
        ...
