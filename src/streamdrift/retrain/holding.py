"""What a retrain listener with ``--require-approval`` holds, replays and commits: plain logic, no consumer.

A listener keeps each undecided retrain event in memory and goes on with the records behind it, as a consumer
with out-of-order acknowledgements does: it commits the alerts offset of the *first* event still held (so a
restart reads it again, still undecided, from the topic that has no record of it being handled) and, in the
commit's metadata, what it has handled beyond it: every record before ``to`` except the ones still held. A
restart replays those without a hook call and holds the held ones again; events of other models never wait
behind an undecided one. At most ``MAX_HELD`` events per partition are held: past that the partition waits (the
listener pauses it and rewinds it to the refused event) until one is decided, which keeps the metadata within the
broker's ``offset.metadata.max.bytes`` (4096 by default).

``Holding`` is that bookkeeping for one alerts partition; the listener (``listener.py``) does what it says with
the consumer: pause, rewind, resume, commit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from streamdrift.retrain.approvals import APPROVE, TIMEOUT_AUTHOR, decision_record

MAX_HELD = 256  # undecided events per alerts partition; then the partition waits
_METADATA_FORMAT = 1

# What the decision read so far makes of a triggering event (``Holding.admit``): call the hook (approved),
# commit past it (rejected), hold it (undecided), or wait (undecided, and MAX_HELD held already)
TRIGGER, REJECTED, HELD, WAIT = "trigger", "rejected", "held", "wait"


@dataclass
class Held:
    """A retrain event waiting for its decision."""

    event: dict[str, Any]
    offset: int
    published_at: float  # epoch seconds: the alert record's Kafka timestamp, where the approval timeout counts from
    attempts: int = 0  # hook calls that failed since it was approved
    retry_at: float | None = None  # monotonic time of the next call after a failed one


class Holding:
    """The undecided retrain events of one alerts partition, and what a restart must replay and hold again.

    Parameters
    ----------
    max_held
        Events held at most; one more is refused (``admit`` says ``WAIT``) until one is released.

    Examples
    --------
    >>> h = Holding(max_held=2)
    >>> [h.admit({"alert_id": f"a{n}"}, n, 0.0, None) for n in range(3)], h.full
    (['held', 'held', 'wait'], True)
    >>> h.admit({"alert_id": "a3"}, 3, 0.0, {"decision": "reject"})  # decided before it was read: acts at once
    'rejected'
    >>> h.release(1).offset, h.full, h.commit_point(4)
    (1, False, (0, '{"format":1,"to":4,"held":[]}'))
    """

    def __init__(self, max_held: int = MAX_HELD):
        self.max_held = max_held
        self.held: dict[int, Held] = {}  # offset -> the event there
        self.full = False  # max_held are held and one more was refused: the partition waits
        self.done_to = -1  # a previous owner handled the records before this offset,
        self.done_held: frozenset[int] = frozenset()  # but for these, which it held undecided

    def restore(self, committed: int, metadata: str | None) -> None:
        """Start from the group's commit at ``committed`` and its metadata (written by ``commit_point``)."""
        self.done_to, self.done_held = handled_beyond(committed, metadata)

    def handled_before(self, offset: int) -> bool:
        """Whether the previous owner handled the record at ``offset`` beyond its commit: replay it, no hook call.
        The events it held are not: they are read, and held, again."""
        return offset < self.done_to and offset not in self.done_held

    def admit(self, event: dict[str, Any], offset: int, published_at: float, decision: dict[str, Any] | None) -> str:
        """What to do with the triggering ``event`` at ``offset``, given the ``decision`` read for it so far:
        ``TRIGGER`` (approved), ``REJECTED``, ``HELD`` (undecided, now held) or ``WAIT`` (undecided and
        ``max_held`` held: the partition waits, and reads it again once one is released)."""
        if decision is not None:
            return approval_verdict(decision)
        if len(self.held) >= self.max_held:
            self.full = True
            return WAIT
        self.held[offset] = Held(event, offset, published_at)
        return HELD

    def due(
        self, decision_of: Callable[[str], dict[str, Any] | None], now: float, timeout_s: float | None
    ) -> list[tuple[Held, dict[str, Any] | None]]:
        """The held events to act on, oldest first, each with its decision (``decision_of(alert_id)``), or with
        None where nobody decided and ``timeout_s`` passed (``timed_out``): the listener records the timeout's
        decision, then acts on it. A person's decision read in time wins over the timeout."""
        due: list[tuple[Held, dict[str, Any] | None]] = []
        for offset in sorted(self.held):
            held = self.held[offset]
            decision = decision_of(held.event["alert_id"])
            if decision is not None or timed_out(held, now, timeout_s):
                due.append((held, decision))
        return due

    def release(self, offset: int) -> Held:
        """Let go of the event at ``offset``, decided and acted on; a waiting partition may go on (``full``
        turns False)."""
        held = self.held.pop(offset)
        self.full = self.full and len(self.held) >= self.max_held
        return held

    def commit_point(self, position: int) -> tuple[int, str]:
        """The offset to commit and its metadata for the partition handled up to ``position``."""
        return commit_point(position, self.held)


def approval_verdict(decision: dict[str, Any] | None) -> str:
    """What the decision read so far makes of a triggering event: ``TRIGGER`` (approved), ``REJECTED``, or
    ``HELD`` (undecided)."""
    if decision is None:
        return HELD
    return TRIGGER if decision["decision"] == APPROVE else REJECTED


def timed_out(held: Held, now: float, timeout_s: float | None) -> bool:
    """Whether ``held`` has waited ``timeout_s`` wall-clock seconds since its publication (never with None).

    >>> held = Held({"alert_id": "a1"}, 7, published_at=1000.0)
    >>> timed_out(held, 1004.999, 5.0), timed_out(held, 1005.0, 5.0), timed_out(held, 10**12, None)
    (False, True, False)
    """
    return timeout_s is not None and now >= held.published_at + timeout_s


def timeout_decision(event: dict[str, Any], on_timeout: str, timeout_s: float, decided_at: str) -> dict[str, Any]:
    """The decision a listener records for an event nobody decided on within ``timeout_s``: as a person's, so
    the trail has every decision, by ``TIMEOUT_AUTHOR`` with ``source: "timeout"``."""
    return decision_record(
        event,
        on_timeout,
        TIMEOUT_AUTHOR,
        f"no decision within {timeout_s:g} s of its publication",
        decided_at,
        source="timeout",
    )


def commit_point(position: int, held: Iterable[int]) -> tuple[int, str]:
    """The alerts offset to commit and its metadata, for a partition handled up to ``position`` (the next
    offset to read) with the events at offsets ``held`` undecided: the first held one, and what was handled
    after it; or ``position`` and no metadata when nothing is held.

    >>> commit_point(40, [])
    (40, '')
    >>> commit_point(40, [31, 12, 35])  # offsets as gaps from the one before: short numbers
    (12, '{"format":1,"to":28,"held":[19,4]}')
    >>> handled_beyond(12, commit_point(40, [31, 12, 35])[1]) == (40, {12, 31, 35})
    True
    """
    offsets = sorted(held)
    if not offsets:
        return position, ""
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    return offsets[0], orjson.dumps({"format": _METADATA_FORMAT, "to": position - offsets[0], "held": gaps}).decode()


def handled_beyond(committed: int, metadata: str | None) -> tuple[int, frozenset[int]]:
    """From a commit at ``committed`` and its metadata: the offset up to which records were handled and the
    offsets among them still held (to hold again). Metadata of another form reads as nothing handled beyond.

    >>> handled_beyond(7, ""), handled_beyond(7, "not ours")
    ((7, frozenset()), (7, frozenset()))
    """
    try:
        data = orjson.loads(metadata or b"")
        to, held = int(data["to"]), list(itertools.accumulate([committed, *map(int, data["held"])]))
        if data.get("format") != _METADATA_FORMAT or to < 1:
            raise ValueError
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return committed, frozenset()
    return committed + to, frozenset(held)
