"""When the worker stops waiting for an input topic: idle for ``max_task_idle_ms``, as Kafka Streams does.

The merge (``core.merge.EpochMerge``) releases an epoch of record time once
both topics of a partition have moved past it, so the order it gives is a
function of the log alone. A topic with nothing to give would hold the other
one back for as long as it stays silent: a partition whose models get no
labels, the end of a backlog, labels that come in bursts. So a topic that is
caught up (consumer lag 0) and has brought no record for ``max_task_idle_ms``
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

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamdrift.core.merge import Forced


@dataclass
class IdleClock:
    """The wall-clock times one partition's topics last brought a record, and since when its merge has held
    records waiting for the log order (``time.monotonic`` seconds).

    A topic is idle once it is caught up and the merge has waited for it ``max_idle_s``: from its latest record,
    or from when the merge began to hold records, whichever is later. A topic quiet for an hour is not idle the
    moment the other one brings records again: the producer's batches of two topics reach the broker apart, and
    a poll can bring one topic's records a few milliseconds before the other's of the same epochs, which the
    merge must wait for (found by a flaky state-topic test, 2026-12-05).

    Examples
    --------
    >>> clock = IdleClock(started=100.0)
    >>> clock.arrived("predictions", 104.0)
    >>> clock.holding(True, 104.0)  # the merge holds the predictions' records from 104
    >>> clock.arrived("predictions", 106.0)
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=106.5))  # waited 2.5 s for feedback
    []
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=107.0))  # feedback: 3 s, none since 100
    ['feedback']
    >>> sorted(clock.idle(["predictions"], max_idle_s=3.0, now=109.0))  # feedback lags: never idle
    ['predictions']
    >>> clock.holding(False, 107.0)  # all released
    >>> clock.arrived("predictions", 200.0)
    >>> clock.holding(True, 200.0)  # a burst after a quiet spell: feedback gets its 3 s again
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=200.5))
    []
    """

    started: float = field(default_factory=time.monotonic)  # when the partition was assigned
    last_record: dict[str, float] = field(default_factory=dict)  # topic -> when its latest record came
    last_forced: Forced | None = None  # why the latest release that gave records was forced, if it was
    holding_since: float | None = None  # since when the merge has held records (None: it holds none)

    def arrived(self, topic: str, now: float) -> None:
        self.last_record[topic] = now

    def holding(self, held: bool, now: float) -> None:
        """Whether the merge holds records ``now``: its wait for a topic starts when it begins to."""
        if not held:
            self.holding_since = None
        elif self.holding_since is None:
            self.holding_since = now

    def idle(self, caught_up: Iterable[str], max_idle_s: float, now: float) -> set[str]:
        """The topics of ``caught_up`` (at their high watermark) the merge has waited for ``max_idle_s``: without
        a record for that long, and holding records for that long. Nothing held: none (nothing waits)."""
        if self.holding_since is None:
            return set()
        return {
            topic
            for topic in caught_up
            if now - max(self.last_record.get(topic, self.started), self.holding_since) >= max_idle_s
        }
