"""Merge a partition's predictions and feedback into one order that is a function of the log.

The join (``join.py``) pairs a label with its prediction whichever comes
first, but *when* a pair completes decides where it lands in the error stream
and in the metric windows. If that depended on how the consumer happened to
fetch the two topics, a replay after a crash, or a fresh group reading the
same log as a backlog, could give another state. So, like Kafka Streams, the
worker merges the co-partitioned inputs by record timestamp before anything
else sees them.

The merge works in *epochs* of ``epoch_ms`` of record time, so it can hand
out large batches. Every record gets an epoch: its timestamp's epoch, or the
highest epoch already given on its own side if that is later (a late record
joins the open epoch; this depends only on the side's own offset order).
Released epochs are processed in order, and within an epoch the predictions
before the feedback, each side in offset order: the *log order*, one total
order of the two logs.

The release rule:

1. **The log's rule.** Epoch ``k`` is released once every side has moved
   past it: a record of a later epoch has been seen on it, or its log has
   ended (``ended``: a file read to its end, never a Kafka topic). Then
   every record of epoch ``k`` or earlier is here (a side's epochs never go
   down), so what is released is always the next piece of the log order,
   however the logs were split into polls.
2. **Memory pressure.** Past ``max_buffered`` records held on a side, the
   merge releases the longest piece of the log order it knows, not only
   whole epochs: in the first epoch ``k`` not every side has moved past,
   the records of each side that has (complete), in side order, up to and
   including the first side that has not: its epoch-``k`` records held so
   far are the next records of the log order (a prefix of its epoch ``k``),
   and nothing of a later side may go before it. That side then holds
   nothing; a side still over the bound is *ahead* of it, and no release
   can be exact until the side behind moves on. ``over_bound()`` names it:
   the worker stops fetching it (``consumer.pause``, as Kafka Streams
   does) until it is back within the bound, so memory stays bounded by
   ``max_buffered`` and one fetch, and the order stays the log's.
3. **A forced release.** A side that has had nothing for a while (``idle``:
   the worker's ``max_task_idle_ms``, on the wall clock) is not waited for:
   the epochs every *other* side has moved past are released (under memory
   pressure, the prefix as in 2 without waiting for the idle side). A
   record that then comes on the idle side, in an epoch already released on
   another side, is processed after it: that is where the order can depart
   from the log's. ``Release.forced`` says a release went beyond the known
   prefix of the log order, and why (``"idle"``, the only reason), so the
   worker counts and logs every one.

Replays and restarts give the same order when no release was forced, the
same guarantee as Kafka Streams' timestamp synchronisation; ``state()``
keeps the epoch reached on each side so a restart assigns late records as
the first run did, a restart after a release of part of an epoch included
(every record of the sides after the one it stopped at is in that epoch or
later, so the restarted merge waits as the first run did).

Examples
--------
>>> from streamdrift.core.records import RawMessage
>>> m = EpochMerge(epoch_ms=1000, sides=("p", "f"), max_buffered=3)
>>> def rec(side, offset, ts):
...     return RawMessage(side, 0, offset, None, b"", ts)
>>> for r in [rec("p", 0, 100), rec("p", 1, 900), rec("p", 2, 1500), rec("f", 0, 950), rec("f", 1, 1200)]:
...     m.add(r)
>>> def release(**sides):
...     out = m.release(**sides)
...     return [(side, [r.offset for r in records]) for side, records in out.runs], out.forced
>>> release()  # epoch 0 is complete on both sides; p has not moved past epoch 1
([('p', [0, 1]), ('f', [0])], None)
>>> for offset in range(2, 6):  # a burst of labels in epoch 1: f holds more than max_buffered
...     m.add(rec("f", offset, 1300 + offset))
>>> release(), m.over_bound()  # p's record of epoch 1 goes first; f's wait for p to move past epoch 1
(([('p', [2])], None), ['f'])
>>> m.add(rec("p", 3, 2500)); m.add(rec("p", 4, 3500))  # p moves on
>>> release(), m.over_bound()
(([('f', [1, 2, 3, 4, 5])], None), [])
>>> release(idle={"f"})  # f had nothing for a while: epoch 2 is released without waiting for it
([('p', [3])], 'idle')
>>> release(ended={"p", "f"})  # both logs ended: the rest is the log order too
([('p', [4])], None)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection
from itertools import accumulate, repeat
from operator import attrgetter, floordiv
from typing import Literal, NamedTuple, TypeAlias

from streamdrift.core.protocols import State
from streamdrift.core.records import RawMessage

_TIMESTAMP = attrgetter("timestamp_ms")
_NEVER = float("inf")  # the epoch limit of a side that holds nothing back

# Why a release went beyond the known prefix of the log order: a side was idle (max_task_idle_ms). Memory
# pressure never does: the merge releases what it knows of the log order and the caller pauses the side ahead.
Forced: TypeAlias = Literal["idle"]
Runs: TypeAlias = list[tuple[str, list[RawMessage]]]
# A place in the log order: (epoch, rank of the side in ``sides``); the log order sorts records by it, then offset.
Place: TypeAlias = tuple[float, int]


class Release(NamedTuple):
    """What one ``EpochMerge.release`` gave."""

    runs: Runs  # [(side, records in offset order), ...], to process in this order
    forced: Forced | None  # None: every run is in the log order; else why some went ahead of it


class _Side:
    """One side's held-back records: epochs (non-decreasing) and records, consumed from ``start``."""

    __slots__ = ("epochs", "records", "start")

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.records: list[RawMessage] = []
        self.start = 0

    def __len__(self) -> int:
        return len(self.records) - self.start

    def head(self) -> int:
        return self.epochs[self.start]

    def take(self, epoch: int) -> list[RawMessage]:
        """Pop the leading records of ``epoch`` (possibly none)."""
        end = bisect_right(self.epochs, epoch, self.start)
        run = self.records[self.start : end]
        self.start = end
        if end == len(self.records):
            self.epochs, self.records, self.start = [], [], 0
        elif end > 4096 and end * 2 > len(self.records):  # drop what was taken, now and then
            del self.epochs[:end], self.records[:end]
            self.start = 0
        return run


class EpochMerge:
    """Timestamp-synchronised merge of two sides of one partition.

    Parameters
    ----------
    epoch_ms
        Width of an epoch of record time.
    sides
        The topics, in the order they are processed within an epoch.
    max_buffered
        Records held back per side; past it, the merge releases the known
        prefix of the log order, part of an epoch included, and a side still
        over it is named by ``over_bound()`` for the caller to stop fetching.
    """

    def __init__(self, epoch_ms: int, sides: tuple[str, ...], max_buffered: int = 100_000):
        self.epoch_ms = epoch_ms
        self.sides = sides
        self.max_buffered = max_buffered
        self._reset()

    def _reset(self) -> None:
        self.pending: dict[str, _Side] = {s: _Side() for s in self.sides}
        self.seen_epoch: dict[str, int] = {s: -1 for s in self.sides}  # over records added
        self.released_epoch: dict[str, int] = {s: -1 for s in self.sides}  # over records released

    def add(self, record: RawMessage) -> None:
        self.extend(record.topic, [record])

    def extend(self, side: str, records: list[RawMessage]) -> None:
        """Records of one side, in offset order."""
        if not records:
            return
        epochs = list(
            accumulate(
                map(floordiv, map(_TIMESTAMP, records), repeat(self.epoch_ms)), max, initial=self.seen_epoch[side]
            )
        )
        self.seen_epoch[side] = epochs[-1]
        pending = self.pending[side]
        pending.epochs += epochs[1:]
        pending.records += records

    def release(self, ended: Collection[str] = (), idle: Collection[str] = ()) -> Release:
        """The runs of records to process now, in order, and whether the release was forced.

        ``ended``: sides whose log has ended (nothing will ever follow: a file
        read to its end); not waiting for them keeps the log order. ``idle``:
        sides that had nothing for a while; not waiting for them is a forced
        release, which a record coming later on them can find out of order.
        """
        exact = [s for s in self.sides if s not in ended]  # the sides the log's rule waits for
        waited = [s for s in exact if s not in idle]
        if self.over_bound():  # memory pressure: all that is known of the log order, part of an epoch included
            upto = self._known(waited)
        else:  # whole epochs only: fewer, larger runs
            upto = (self._limit(waited), -1)
        runs: Runs = []
        last: Place | None = None  # the place of the latest run released
        while True:
            # the next held records in the log order: the lowest (epoch, side rank) among the sides' first ones
            heads = [(q.head(), rank) for rank, q in enumerate(self.pending.values()) if len(q)]
            if not heads or min(heads) > upto:
                break
            last = epoch, rank = min(heads)
            side = self.sides[rank]
            run = self.pending[side].take(epoch)
            self.released_epoch[side] = epoch
            if runs and runs[-1][0] == side:
                runs[-1][1].extend(run)
            else:
                runs.append((side, run))
        forced: Forced | None = "idle" if last is not None and last > self._known(exact) else None
        return Release(runs, forced)

    def over_bound(self) -> list[str]:
        """The sides holding more than ``max_buffered`` records.

        After a release, such a side is ahead of another that has not moved past the epoch it holds: none of
        its records can go before that side's next ones. The caller stops fetching it until it is back within
        (the worker pauses its topic-partition), or until that side moves on or is idle.
        """
        return [s for s in self.sides if len(self.pending[s]) > self.max_buffered]

    def _limit(self, waited: list[str]) -> float:
        """The first epoch not every side of ``waited`` has moved past (none waited for: no limit)."""
        return min((self.seen_epoch[s] for s in waited), default=_NEVER)

    def _known(self, waited: list[str]) -> Place:
        """The end of the prefix of the log order known now, if only the sides ``waited`` can bring records.

        In the first epoch not every side of ``waited`` has moved past, a side before the first one that has
        not (in side order) is complete there; the records of that first one held so far are the next ones of
        its epoch, in offset order, and whatever it brings later of that epoch follows them: every record at
        or before this place is here or released, and what comes later is after it in the log order.
        """
        limit = self._limit(waited)
        if limit == _NEVER:
            return (_NEVER, len(self.sides))
        return (limit, next(rank for rank, s in enumerate(self.sides) if s in waited and self.seen_epoch[s] == limit))

    def buffered(self) -> int:
        return sum(len(q) for q in self.pending.values())

    def state(self) -> State:
        """The epochs reached by released records (buffered ones are consumed again after a restart)."""
        return {"epochs": dict(self.released_epoch), "epoch_ms": self.epoch_ms}

    def load_state(self, state: State) -> None:
        self._reset()
        was = state.get("epoch_ms", self.epoch_ms)  # merge_epoch_ms may have changed since
        for side, epoch in state["epochs"].items():
            if side in self.seen_epoch:
                self.seen_epoch[side] = self.released_epoch[side] = epoch if epoch < 0 else epoch * was // self.epoch_ms
