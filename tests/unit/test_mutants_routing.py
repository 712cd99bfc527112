"""core/routing.py pinned exactly: the tests that kill the mutants `make mutation` found surviving there.

Each test states what a partition's routing is relied on for: which key a record is routed by, the strict
reading of a forwarding header (its bounds included), the counts the worker reports, the bounded cache, the
checkpointed marks. docs/mutation.md lists the mutants left alive and why.
"""

from __future__ import annotations

import pytest

from streamdrift.core.records import RawMessage
from streamdrift.core.routing import (
    FORWARDED_FROM,
    MISROUTED,
    MISROUTED_COPY,
    REFUSED_TOPIC,
    SKIPPED_TIMESTAMP_MS,
    Origin,
    PartitionRouting,
    Router,
    consistent_partition,
    forwarded_copy,
    forwarded_from,
    likely_partitioner,
    murmur2,
    murmur2_partition,
    routing_key,
)


def test_a_record_is_routed_by_its_key_else_by_the_model_id_of_its_value() -> None:
    assert routing_key(b"k", b'{"model_id": "m"}') == b"k"
    assert routing_key(b"", b'{"model_id": "m"}') == b""  # an empty key is a key
    assert routing_key(None, b'{"model_id": "m\\u00e9"}') == "m\u00e9".encode()
    for value in (None, b"", b"{", b"[1]", b'"m"', b'{"model_id": 3}', b'{"model": "m"}', b'{"model_id": null}'):
        assert routing_key(None, value) is None


def test_the_likely_partitioner_names_every_kind_that_told_in_a_fixed_order() -> None:
    assert likely_partitioner(0, 0, 0, 0) == "murmur2 (no record tells it from consistent_random)"
    assert likely_partitioner(1, 0, 0, 0) == "murmur2"
    assert likely_partitioner(0, 1, 0, 0) == "consistent_random (CRC32)"
    assert likely_partitioner(0, 0, 1, 0) == "null keys (random)"
    assert likely_partitioner(0, 0, 0, 1) == "unknown"
    assert likely_partitioner(0, 2, 0, 3) == "mixed: consistent_random (CRC32) + unknown"
    assert likely_partitioner(5, 1, 1, 1) == "mixed: murmur2 + consistent_random (CRC32) + null keys (random) + unknown"


@pytest.mark.parametrize(
    "value, origin",
    [
        (b"feedback/0/7", Origin("feedback", 0, 7)),
        (b"a.b_c-D9/12/0", Origin("a.b_c-D9", 12, 0)),
        (b"t" * 249 + b"/1/2", Origin("t" * 249, 1, 2)),
        (b"t/" + b"9" * 19 + b"/1", Origin("t", 10**19 - 1, 1)),
        (b"t/1/" + str(2**63 - 1).encode(), Origin("t", 1, 2**63 - 1)),
        (b"t" * 250 + b"/1/2", None),
        (b"t/" + b"1" * 20 + b"/1", None),
        (b"t/1/" + str(2**63).encode(), None),
        (b"t/1/2 ", None),
        (b" t/1/2", None),
        (b"t/+1/2", None),
        (b"t/1/-2", None),
        (b"t/1", None),
        (b"/1/2", None),
        (b"t/1/2/3", None),
        (b"", None),
        (None, None),
    ],
)
def test_a_forwarding_header_is_read_strictly(value: bytes | None, origin: Origin | None) -> None:
    assert Origin.parse(value) == origin
    if origin is not None:
        assert type(origin.partition) is int and type(origin.offset) is int and type(origin.topic) is str


def test_the_forwarding_header_is_found_among_others_and_a_null_one_reads_empty() -> None:
    assert forwarded_from(None) is None and forwarded_from([]) is None
    assert forwarded_from([("a", b"1"), (FORWARDED_FROM, b"t/0/1"), (FORWARDED_FROM, b"t/0/2")]) == b"t/0/1"
    assert forwarded_from([(FORWARDED_FROM, None)]) == b""
    assert forwarded_from([(FORWARDED_FROM, bytearray(b"t/0/1"))]) == b"t/0/1"
    assert Origin.of([("x", b"y")]) is None and Origin.of([(FORWARDED_FROM, b"t/0/1")]) == Origin("t", 0, 1)
    assert Origin.of([(FORWARDED_FROM, b"t/0")]) is None


def test_a_forwarded_copy_is_the_record_unchanged_with_its_position_added() -> None:
    record = RawMessage("feedback", 2, 41, b"k", b"v", 1234, [("trace", b"x")])
    copy = forwarded_copy(record)
    assert copy == RawMessage(
        "feedback", 2, 41, b"k", b"v", 1234, [("trace", b"x"), (FORWARDED_FROM, b"feedback/2/41")]
    )
    assert record.headers == [("trace", b"x")]  # the original's headers untouched
    assert forwarded_copy(RawMessage("p", 0, 1, None, None, 5)).headers == [(FORWARDED_FROM, b"p/0/1")]


def test_the_router_caches_the_partitions_of_keys_up_to_its_bound() -> None:
    router = Router(7)
    router.MAX_CACHED = 2
    for key in (b"a", b"b", b"a"):
        assert router.partition(key, None) == murmur2_partition(key, 7)
    assert router._cache == {b"a": murmur2_partition(b"a", 7), b"b": murmur2_partition(b"b", 7)}
    assert router.partition(b"c", None) == murmur2_partition(b"c", 7)
    assert router._cache == {b"c": murmur2_partition(b"c", 7)}  # full: started again
    assert router.partition(None, b'{"model_id": "d"}') == murmur2_partition(b"d", 7)
    assert router.partition(None, b"{}") is None
    assert router._cache == {b"c": murmur2_partition(b"c", 7)}  # null keys are not cached


def _keyed(partitions: int, home: int, other: int, crc: bool) -> bytes:
    """A key whose murmur2 partition is ``other`` and whose CRC32 partition is ``home`` (crc) or not."""
    for i in range(10_000):
        key = b"model-%d" % i
        if murmur2_partition(key, partitions) == other and (consistent_partition(key, partitions) == home) == crc:
            return key
    raise AssertionError("no such key")


def test_route_counts_misrouted_records_by_what_they_tell_of_the_producer_s_partitioner() -> None:
    routing = PartitionRouting(1, 3)
    crc, neither, home = _keyed(3, 1, 2, True), _keyed(3, 1, 2, False), _keyed(3, 1, 1, False)
    records = [
        RawMessage("predictions", 1, 0, crc, b"{}", 10),
        RawMessage("predictions", 1, 1, neither, b"{}", 11),
        RawMessage("predictions", 1, 2, None, b'{"model_id": "%s"}' % crc, 12),
        RawMessage("predictions", 1, 3, None, b'{"model_id": "%s"}' % neither, 13),
        RawMessage("predictions", 1, 4, home, b"{}", 14),
    ]
    routed = routing.route("predictions", records)
    assert (routed.misrouted, routed.null_keys, routed.consistent, routed.duplicates) == (4, 2, 1, 0)
    assert [(f.message.offset, f.partition) for f in routed.forward] == [(0, 2), (1, 2), (2, 2), (3, 2)]
    placeholders = [RawMessage("predictions", 1, i, None, None, SKIPPED_TIMESTAMP_MS) for i in range(4)]
    assert routed.kept == [*placeholders, records[4]]
    assert routing.processed("predictions", routed.kept) == [records[4]]
    assert routing._skipped == {"predictions": set()}  # nothing left waiting: the set stays bounded
    processing = PartitionRouting(1, 3, misrouted="process").route("predictions", records)
    assert processing.kept == records and processing.misrouted == 4 and not processing.forward


def test_murmur2_of_keys_of_every_length_modulo_4_is_the_java_clients() -> None:
    """The tail of 1, 2 and 3 bytes: the Java client's values for "1" to "12345" (as Akka's tests of its copy
    of Utils.murmur2 list them) and librdkafka's for "kafka" (0xd067cf64, rdmurmur2.c's unit test)."""
    java = {b"1": -1993445489, b"12": 126087238, b"123": -267702483, b"1234": -1614185708, b"12345": -1188365604}
    assert {key: murmur2(key) for key in java} == java
    assert murmur2(b"kafka") == 0xD067CF64 - 2**32


def test_on_two_partitions_a_record_of_the_other_one_is_misrouted() -> None:
    key = _keyed(2, 0, 1, False)
    routed = PartitionRouting(0, 2).route("feedback", [RawMessage("feedback", 0, 0, key, b"{}", 1)])
    assert routed.misrouted == 1 and [(f.message.key, f.partition) for f in routed.forward] == [(key, 1)]


def test_dead_letter_mode_rejects_each_misrouted_record_and_keeps_the_rest_of_the_batch() -> None:
    away, home = _keyed(3, 1, 0, False), _keyed(3, 1, 1, False)
    records = [RawMessage("feedback", 1, i, k, b"{}", i) for i, k in enumerate([away, home, away, home])]
    routed = PartitionRouting(1, 3, misrouted="dead_letter").route("feedback", records)
    assert [(r.reason, r.message.offset) for r in routed.rejected] == [(MISROUTED, 0), (MISROUTED, 2)]
    assert [r.offset for r in routed.kept] == [0, 1, 2, 3] and routed.misrouted == 2 and not routed.forward


def _copy(offset: int, key: bytes, origin: bytes) -> RawMessage:
    return RawMessage("feedback", 1, offset, key, b"{}", offset, [(FORWARDED_FROM, origin)])


def test_duplicates_and_copies_misrouted_again_are_counted_one_each() -> None:
    home, away = _keyed(3, 1, 1, False), _keyed(3, 1, 2, False)
    copies = [
        _copy(0, home, b"feedback/0/5"),
        _copy(1, home, b"feedback/0/5"),  # forwarded again after a crash
        _copy(2, home, b"feedback/0/4"),  # older than a copy already seen
        _copy(3, away, b"feedback/0/6"),  # belongs to partition 2: the partition count changed
        _copy(4, away, b"feedback/2/1"),
    ]
    routing = PartitionRouting(1, 3)
    routed = routing.route("feedback", copies)
    assert (routed.duplicates, routed.misrouted) == (2, 2)
    assert [(r.reason, r.message.offset) for r in routed.rejected] == [(MISROUTED_COPY, 3), (MISROUTED_COPY, 4)]
    assert routing.processed("feedback", routed.kept) == [copies[0]]
    assert routing.state() == {"feedback/0": 6, "feedback/2": 1}
    # processing misrouted records where they land: a copy misrouted again is processed too
    processing = PartitionRouting(1, 3, misrouted="process").route("feedback", copies)
    assert processing.rejected == [] and processing.misrouted == 0
    assert [r.offset for r in processing.kept if r.value is not None] == [0, 3, 4]


def test_a_record_with_a_refused_header_leaves_only_a_placeholder_that_is_never_processed() -> None:
    routing = PartitionRouting(1, 3)
    record = _copy(0, _keyed(3, 1, 1, False), b"predictions/0/5")
    routed = routing.route("feedback", [record])
    assert [(r.reason, r.message) for r in routed.rejected] == [(REFUSED_TOPIC, record)]
    assert routing.processed("feedback", routed.kept) == [] and routing.marks == {}
