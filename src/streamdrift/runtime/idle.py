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
    """The wall-clock times one partition's topics last brought a record (``time.monotonic`` seconds).

    Examples
    --------
    >>> clock = IdleClock(started=100.0)
    >>> clock.arrived("predictions", 104.0)
    >>> sorted(clock.idle(["predictions", "feedback"], max_idle_s=3.0, now=105.0))  # feedback: none since 100
    ['feedback']
    >>> sorted(clock.idle(["feedback"], max_idle_s=3.0, now=107.0))  # predictions lag: never idle
    ['feedback']
    """

    started: float = field(default_factory=time.monotonic)  # when the partition was assigned
    last_record: dict[str, float] = field(default_factory=dict)  # topic -> when its latest record came
    last_forced: Forced | None = None  # why the latest release that gave records was forced, if it was

    def arrived(self, topic: str, now: float) -> None:
        self.last_record[topic] = now

    def idle(self, caught_up: Iterable[str], max_idle_s: float, now: float) -> set[str]:
        """The topics of ``caught_up`` (at their high watermark) without a record for ``max_idle_s``."""
        return {topic for topic in caught_up if now - self.last_record.get(topic, self.started) >= max_idle_s}
