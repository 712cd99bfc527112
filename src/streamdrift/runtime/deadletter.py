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
"""

from __future__ import annotations

from collections.abc import Sequence

HEADER_VALUE_OMITTED = "streamdrift.value.omitted"  # the size in bytes of the value left out
HEADER_KEY_OMITTED = "streamdrift.key.omitted"  # the size in bytes of the key left out
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's message.max.bytes default
# Room for a record's framing, its batch's header and compression's worst case (lz4: 0.4 %)
FRAMING_BYTES = 1024
SMALL_BYTES = 1024  # a dead letter whose delivery failed for its size is written again whole up to this
ATTEMPTS = 3  # times a dead letter is written before its failure counts as a delivery error


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
