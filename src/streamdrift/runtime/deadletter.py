"""A dead letter always fits its topic: what cannot be written is omitted, and said so.

A bad message is copied to the dead-letter topic, key and value unchanged, with headers giving
the reason and its source position. But a value the input topic accepted may be too large for
the dead-letter topic (its ``max.message.bytes``) or for the producer (``message.max.bytes``):
producing it would raise, or its delivery fail, and the worker would stop on that message
again after every restart. So a dead letter over the bound is written without its value (and
without its key, if the key alone does not fit), with a header per omission saying how many
bytes were left out; the reason and source headers stay, so the record can be found at its
source. The broker judges a whole batch against the topic's limit, so the worker's producer
keeps its batches under it too (``batch.size``, only where the topic's limit is the smaller).

Where the topic's limit cannot be read at start (no DescribeConfigs permission), a dead letter
whose delivery fails for its size lowers the bound (``lowered``) and is written again (``again``),
up to ``ATTEMPTS`` times, before the failure counts; in a transaction (exactly once) the failure
aborts it instead, and the rewind writes the dead letter again under the lowered bound.

A flood of bad records is not a flood of log lines (`DeadLetterLog`): the first ``LOG_FIRST`` dead
letters of each reason in an interval are logged one by one (source position and reason), at most
``LOG_MAX_LINES`` in all, then one summary line per ``LOG_INTERVAL_S`` counts the others per reason.
The dead-letter topic and ``streamdrift_dead_letters_total`` still get every record.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

HEADER_VALUE_OMITTED = "streamdrift.value.omitted"  # the size in bytes of the value left out
HEADER_KEY_OMITTED = "streamdrift.key.omitted"  # the size in bytes of the key left out
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's message.max.bytes default
# Room for a record's framing, its batch's header and compression's worst case (lz4: 0.4 %)
FRAMING_BYTES = 1024
SMALL_BYTES = 1024  # a dead letter whose delivery failed for its size is written again whole up to this
ATTEMPTS = 3  # times a dead letter is written before its failure counts as a delivery error
LOG_INTERVAL_S = 60.0  # dead letters are logged one by one, then summed up, per interval of this
LOG_FIRST = 5  # dead letters of one reason logged one by one in an interval
# ... and of all reasons: a reason may name a feature (or, with privacy.redact_values false, a value), so the
# reasons are no bound of their own; nor of what a summary names: the most frequent, the others counted together
LOG_MAX_LINES = 50
LOG_MAX_REASONS = 20


Headers = list[tuple[str, bytes]]


def max_bytes(topic_max_message_bytes: int | None, producer_max_message_bytes: int) -> int:
    """The largest key + value + headers a dead letter may carry under both limits; the producer's
    batches are kept under the topic's too (``kafka.worker_producer_config``), since the broker
    judges a whole batch.

    >>> max_bytes(None, 1_000_000), max_bytes(4096, 1_000_000)
    (993976, 3052)
    """
    limit = min(topic_max_message_bytes or producer_max_message_bytes, producer_max_message_bytes)
    return max(limit - FRAMING_BYTES - limit // 200, 0)


def fit(key: bytes | None, value: bytes, headers: Headers, limit: int) -> tuple[bytes | None, bytes, Headers]:
    """``key, value, headers`` as they can be written under ``limit``: the value, then the key,
    omitted (and a header saying so) while the record is over it.

    >>> fit(b"m1", b"x" * 10, [("streamdrift.reason", b"invalid JSON")], 200)
    (b'm1', b'xxxxxxxxxx', [('streamdrift.reason', b'invalid JSON')])
    >>> fit(b"m1", b"x" * 1000, [("streamdrift.reason", b"invalid JSON")], 200)
    (b'm1', b'', [('streamdrift.reason', b'invalid JSON'), ('streamdrift.value.omitted', b'1000')])
    """
    if size(key, value, headers) > limit:
        headers = [*headers, (HEADER_VALUE_OMITTED, str(len(value)).encode())]
        value = b""
    if key is not None and size(key, value, headers) > limit:
        headers = [*headers, (HEADER_KEY_OMITTED, str(len(key)).encode())]
        key = None
    return key, value, headers


def again(key: bytes | None, value: bytes, headers: Headers) -> tuple[bytes | None, bytes, Headers]:
    """A dead letter whose delivery failed for its size, as it is written again: as it was if it is
    small (it failed for the other records of its batch: the broker judges a whole batch), else
    without its value, and without its key if the key is not small either.

    >>> reason = [("streamdrift.reason", b"invalid JSON")]
    >>> again(b"m1", b"{}", reason)
    (b'm1', b'{}', [('streamdrift.reason', b'invalid JSON')])
    >>> again(b"m1", b"{" * 5000, reason)
    (b'm1', b'', [('streamdrift.reason', b'invalid JSON'), ('streamdrift.value.omitted', b'5000')])
    """
    return fit(key, value, headers, SMALL_BYTES)


def lowered(limit: int, failed_bytes: int) -> int:
    """The bound after a dead letter of ``failed_bytes`` failed for its size: under it, unless it was small
    (then its batch was to blame, and small ones keep going whole).

    >>> lowered(993_976, 50_040), lowered(993_976, 300)
    (50039, 993976)
    """
    return min(limit, failed_bytes - 1) if failed_bytes > SMALL_BYTES else limit


def size(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """The bytes of a dead letter (or a forwarded copy) as ``fit`` counts them (framing aside)."""
    return len(key or b"") + len(value) + sum(len(name) + len(data or b"") for name, data in headers)


class DeadLetterLog:
    """The log lines of dead letters: the first ``first`` of each reason in an interval one by one (at most
    ``max_lines`` in all), then one summary line when the interval is over (at the next `record` or `tick`):
    how many were not logged, per reason (the ``max_reasons`` most frequent, ``other_reasons`` the rest). An
    interval starts at the first dead letter after the one before ended. ``clock``: seconds, monotonic.

    >>> import sys
    >>> logger = logging.getLogger("doctest.dead")
    >>> logger.propagate, printed = False, logging.StreamHandler(sys.stdout)
    >>> printed.setFormatter(logging.Formatter("%(message)s %(fields)s"))
    >>> logger.addHandler(printed)
    >>> now = [0.0]
    >>> dead = DeadLetterLog(logger, lambda: now[0], first=1, interval_s=60)
    >>> for offset in range(3):
    ...     dead.record("predictions", 0, offset, "invalid JSON")
    dead letter {'topic': 'predictions', 'partition': 0, 'offset': 0, 'reason': 'invalid JSON'}
    >>> now[0] = 60.0
    >>> dead.tick()
    dead letters not logged one by one {'dead_letters': 2, 'interval_s': 60.0, 'reasons': {'invalid JSON': 2}, 'other_reasons': 0}
    """

    def __init__(
        self,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        *,
        first: int = LOG_FIRST,
        max_lines: int = LOG_MAX_LINES,
        interval_s: float = LOG_INTERVAL_S,
        max_reasons: int = LOG_MAX_REASONS,
    ):
        self.logger = logger
        self.clock = clock
        self.first = first
        self.max_lines = max_lines
        self.interval_s = interval_s
        self.max_reasons = max_reasons
        self._since: float | None = None  # when the interval began (None: no dead letter since the last one ended)
        self._logged: Counter[str] = Counter()  # lines logged this interval, per reason
        self._unlogged: Counter[str] = Counter()  # dead letters not logged, per reason (max_reasons of them)
        self._other = 0  # dead letters not logged whose reason is not among those

    def record(self, topic: str, partition: int, offset: int, reason: str) -> None:
        """Log a dead letter, or count it for the interval's summary."""
        self.tick()
        if self._since is None:
            self._since = self.clock()
        if self._logged[reason] < self.first and self._logged.total() < self.max_lines:
            self._logged[reason] += 1
            fields = {"topic": topic, "partition": partition, "offset": offset, "reason": reason}
            self.logger.warning("dead letter", extra={"fields": fields})
        elif reason in self._unlogged or len(self._unlogged) < self.max_reasons:
            self._unlogged[reason] += 1
        else:
            self._other += 1

    def tick(self) -> None:
        """End the interval if it is over (the worker calls it at each turn of its loop)."""
        if self._since is not None and self.clock() - self._since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """End the interval now: its summary line, if any dead letter was not logged."""
        unlogged = self._unlogged.total() + self._other
        if unlogged:
            fields = {
                "dead_letters": unlogged,
                "interval_s": round(self.clock() - self._since, 3) if self._since is not None else 0.0,
                "reasons": dict(self._unlogged.most_common()),
                "other_reasons": self._other,
            }
            self.logger.warning("dead letters not logged one by one", extra={"fields": fields})
        self._since = None
        self._logged.clear()
        self._unlogged.clear()
        self._other = 0
