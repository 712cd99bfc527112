"""When the worker stops waiting for an input topic: idle for ``max_task_idle_ms``, as Kafka Streams does.

The merge (``core.merge.EpochMerge``) releases an epoch of record time once
both topics of a partition have moved past it, so the order it gives is a
function of the log alone. A topic with nothing to give would hold the other
one back for as long as it stays silent: a partition whose models get no
labels, the end of a backlog, labels that come in bursts. So a topic that is
caught up (consumer lag 0) and has brought no record for ``max_task_idle_ms``
(counted from the end of the partition's latest quiet spell too: ``IdleClock``)
is *idle*, and the merge releases what the other topic has moved past
without waiting for it: a *forced* release, which the worker counts
(``streamdrift_merge_forced_releases_total``) and logs.

The wall clock decides only *whether* to stop waiting, never what a record's
epoch is nor the order within what is released. But a forced release is
exactly where the order can depart from the log's: a record that comes later
on the idle topic, stamped in an epoch already released on the other one, is
processed after it, where a replay of the log processes it before. With no
forced release counted, the state is the one any consumer of the same log
gets: live, as a backlog, or after a restart. (Memory never forces a release:
a topic the merge holds too much of is paused instead, ``Worker._backpressure``,
and an idle topic is also what resumes it when the other one has gone silent.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamdrift.core.merge import Forced


@dataclass
class IdleClock:
    """The wall-clock times one partition's topics last brought a record, and when its traffic last resumed
    after a quiet spell (``time.monotonic`` seconds).

    A topic is idle once it is caught up and silent for ``max_idle_s``, counted from its latest record or from
    when the partition's traffic resumed after every topic had been silent for ``max_idle_s``, whichever is
    later. So a topic quiet for an hour is not idle the moment the other one brings records again: the
    producer's batches of two topics reach the broker apart, and a poll can bring one topic's records a few
    milliseconds before the other's of the same epochs, which the merge must wait for (found by a flaky
    state-topic test, 2026-12-05). A topic that stays silent while the other streams is waited for once, not
    again each time the merge has given all it held.

    Examples
    --------
    >>> clock = IdleClock(started=100.0)
    >>> clock.arrived("predictions", 101.0, max_idle_s=3.0)  # 1 s after the assignment: no quiet spell
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=102.0))
    []
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=103.0))  # feedback: none since 100
    ['feedback']
    >>> clock.arrived("predictions", 103.5, max_idle_s=3.0)  # streaming on: feedback stays idle
    >>> sorted(clock.idle(["feedback"], max_idle_s=3.0, now=104.0))
    ['feedback']
    >>> sorted(clock.idle(["feedback"], max_idle_s=3.0, now=107.0))  # predictions lag: never idle
    ['feedback']
    >>> clock.arrived("feedback", 200.0, max_idle_s=3.0)  # after a quiet spell: predictions get 3 s again
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=201.0))
    []
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=203.0))
    ['feedback', 'predictions']
    """

    started: float = field(default_factory=time.monotonic)  # when the partition was assigned
    last_record: dict[str, float] = field(default_factory=dict)  # topic -> when its latest record came
    last_forced: Forced | None = None  # why the latest release that gave records was forced, if it was
    resumed_at: float = -math.inf  # when a record came after every topic had been silent for max_idle_s
    unpaused_at: float = -math.inf  # when a topic paused by backpressure was last resumed

    def arrived(self, topic: str, now: float, max_idle_s: float) -> None:
        # a topic paused by backpressure is not silent: it brings nothing because it is not fetched, and its
        # first records after the pause resume no quiet spell (else the silent topic would be waited for again
        # after each pause, throttling the partition to max_buffered records per max_idle_s: review of 3f65d03)
        if now - max([self.started, self.unpaused_at, *self.last_record.values()]) >= max_idle_s:
            self.resumed_at = now  # the partition's traffic resumes after a quiet spell
        self.last_record[topic] = now

    def unpaused(self, now: float) -> None:
        """A topic paused by backpressure is fetched again ``now``."""
        self.unpaused_at = now

    def idle(self, caught_up: Iterable[str], max_idle_s: float, now: float) -> set[str]:
        """The topics of ``caught_up`` (at their high watermark) silent for ``max_idle_s``: since their latest
        record, and since the partition's traffic resumed after its latest quiet spell."""
        return {
            topic
            for topic in caught_up
            if now - max(self.last_record.get(topic, self.started), self.resumed_at) >= max_idle_s
        }
