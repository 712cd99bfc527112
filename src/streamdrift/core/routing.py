"""Which partition a record belongs to, and what a partition does with the records that landed elsewhere.

The worker owns the state of input partition ``p`` for both topics, so a model's
predictions and feedback must land on the same partition number. It assumes the
partitioner of the Java client: murmur2 over the *routing key*, the message key,
or the event's ``model_id`` when the key is null (``routing_key``). A producer
with another partitioner (librdkafka's and confluent-kafka's default is
``consistent_random``, a CRC32 of the key, and a random partition for a null
key) puts some records on a partition whose state does not hold their model:
they are *misrouted*.

`PartitionRouting` sorts the records of one input partition, as they come:

- a record on its own partition is processed;
- a misrouted record is skipped where it landed (its offset still advances),
  and forwarded unchanged to its own partition of the same topic with a header
  naming where it was (``misrouted = "forward"``, the default), or
  dead-lettered with reason ``misrouted`` (``"dead_letter"``), or processed
  where it landed (``"process"``: the behaviour before this module);
- a forwarded copy is processed like any record, unless an earlier copy of the
  same source record was: a crash between forwarding and committing the source
  forwards it again. Copies from one source partition arrive in the source's
  order (the worker's producer is idempotent), so remembering, per source
  partition, the highest source offset of a copy processed (``marks``, part of
  the checkpointed state) tells a duplicate, deterministically. A copy that is
  misrouted itself (the partition count changed) is dead-lettered, never
  forwarded again.

The header is trusted only where a worker could have written it
(``PartitionRouting.trusted``): strictly ``<topic>/<partition>/<offset>``
(ASCII digits, the offset a Kafka offset, under 2**63), the origin topic the
record's own, the origin partition another partition of it. Any other record
with the header is dead-lettered with a reason naming the rule, so a partition
keeps at most one mark per other partition of each input topic. What is left:
a producer can forge a trusted origin with a high offset, and genuine copies
from that partition at or below it are then dropped as duplicates (counted,
not dead-lettered: a legitimate duplicate looks the same). Only a client with
write access to the input topics can do it, and it can write any event there
already.

A skipped record goes through the merge (``merge.EpochMerge``) as a placeholder
whose timestamp is before every epoch: it never moves its side's epoch, so the
partition's order, and its state, are what they would be without it.

Examples
--------
>>> murmur2(b"21"), murmur2_partition(b"churn", 3), consistent_partition(b"churn", 3)
(-973932308, 2, 0)
>>> routing = PartitionRouting(1, 3)
>>> def record(offset, key, headers=None):
...     return RawMessage("feedback", 1, offset, key, b'{"model_id": "m"}', 1000, headers)
>>> routed = routing.route("feedback", [record(0, b"churn"), record(1, b"fraud")])
>>> [(f.message.offset, f.partition) for f in routed.forward], routed.misrouted, [r.timestamp_ms for r in routed.kept]
([(0, 2)], 1, [-1, 1000])
>>> copy = forwarded_copy(RawMessage("feedback", 0, 7, b"fraud", b"{}", 1000))
>>> copy.headers
[('streamdrift.forwarded.from', b'feedback/0/7')]
>>> first = routing.route("feedback", [record(2, b"fraud", copy.headers)])
>>> again = routing.route("feedback", [record(3, b"fraud", copy.headers)])  # forwarded again after a crash
>>> len(first.kept), again.duplicates, [r.offset for r in routing.processed("feedback", first.kept + again.kept)]
(1, 1, [2])
>>> routing.state()
{'feedback/0': 7}
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeAlias

import orjson

from streamdrift.core.records import Headers, RawMessage, Rejected

# What a partition does with a record whose routing key maps to another partition (setting ``misrouted``).
Misrouted: TypeAlias = Literal["forward", "dead_letter", "process"]
MISROUTED = "misrouted"  # the dead-letter reason of a misrouted record
# the dead-letter reason of a forwarded copy that is misrouted too: never forwarded twice, so no loop
MISROUTED_COPY = "misrouted: a forwarded copy, not forwarded again (did the partition count change?)"
FORWARDED_FROM = "streamdrift.forwarded.from"  # the header of a forwarded copy: b"<topic>/<partition>/<offset>"
# the dead-letter reasons of a record whose forwarding header is not trusted (``PartitionRouting.trusted``)
REFUSED_MALFORMED = "forwarded header refused: not <topic>/<partition>/<offset> in ASCII digits, offset < 2**63"
REFUSED_TOPIC = "forwarded header refused: its origin topic is not the record's topic"
REFUSED_PARTITION = "forwarded header refused: its origin partition is not another partition of the topic"
SKIPPED_TIMESTAMP_MS = -1  # a skipped record's timestamp in the merge: before every epoch, so it moves none
# a valid record's routing key is its model_id (decode.MODEL_ID: at most 128 ASCII characters); a longer one is
# not hashed (murmur2 is plain Python: 44 ms for 1 MB) but left where it landed, whose decoder rejects it
MAX_ROUTING_KEY = 128

# a Kafka topic name (at most 249 of [a-zA-Z0-9._-]), a partition and an offset, as forwarded_copy writes them
_POSITION = re.compile(rb"([a-zA-Z0-9._-]{1,249})/([0-9]{1,19})/([0-9]{1,19})")
_MAX_OFFSET = 2**63  # Kafka's offsets are signed 64-bit integers, and so are the integers a snapshot encodes
_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of ``data`` as the Java client computes it (``Utils.murmur2``), signed.

    >>> murmur2(b"foobar"), murmur2(b"abc"), murmur2(b"")
    (-790332482, 479470107, 275646681)
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` under the Java client's default partitioner: ``toPositive(murmur2) % n``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def consistent_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` under librdkafka's ``consistent`` partitioner (``consistent_random`` for a key).

    >>> consistent_partition(b"fraud", 3)
    1
    """
    return zlib.crc32(key) % partitions


def routing_key(key: bytes | None, value: bytes | None) -> bytes | None:
    """What a record is routed by: its key, or the ``model_id`` of its value when the key is null.

    None when neither is there, or it is longer than any model id (``MAX_ROUTING_KEY``): the decoder rejects
    such a record anyway, where it landed.

    >>> routing_key(b"m1", b"not read"), routing_key(None, b'{"model_id": "m2"}'), routing_key(None, b"[1]")
    (b'm1', b'm2', None)
    """
    if key is not None:
        return key if len(key) <= MAX_ROUTING_KEY else None
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    model_id = event.get("model_id") if isinstance(event, dict) else None
    return model_id.encode() if isinstance(model_id, str) and len(model_id) <= MAX_ROUTING_KEY else None


def likely_partitioner(murmur2: int, consistent: int, null_keys: int, unknown: int) -> str:
    """The partitioner(s) producers most likely use, from records that tell: keyed ones on their murmur2
    partition where CRC32 would have put them elsewhere (``murmur2``), keyed ones where librdkafka's CRC32 puts
    them and murmur2 does not (``consistent``), misrouted ones with a null key (``null_keys``: any partitioner
    puts those anywhere), and misrouted ones neither explains (``unknown``).

    >>> likely_partitioner(40, 0, 0, 0), likely_partitioner(0, 60, 0, 0), likely_partitioner(30, 20, 10, 0)
    ('murmur2', 'consistent_random (CRC32)', 'mixed: murmur2 + consistent_random (CRC32) + null keys (random)')
    >>> likely_partitioner(0, 0, 0, 0)
    'murmur2 (no record tells it from consistent_random)'
    """
    kinds = [
        name
        for name, count in (
            ("murmur2", murmur2),
            ("consistent_random (CRC32)", consistent),
            ("null keys (random)", null_keys),
            ("unknown", unknown),
        )
        if count
    ]
    if not kinds:
        return "murmur2 (no record tells it from consistent_random)"
    return kinds[0] if len(kinds) == 1 else "mixed: " + " + ".join(kinds)


class Origin(NamedTuple):
    """Where a forwarded copy's record first landed."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, headers: Headers | None) -> Origin | None:
        """The origin named by a record's headers; None for a record that is not a forwarded copy, or whose
        header is not ``<topic>/<partition>/<offset>`` as ``forwarded_copy`` writes it (``Origin.parse``)."""
        value = forwarded_from(headers)
        return None if value is None else cls.parse(value)

    @classmethod
    def parse(cls, value: bytes | None) -> Origin | None:
        """A ``streamdrift.forwarded.from`` header read strictly: a topic name, then partition and offset in at
        most 19 ASCII digits each, the offset under 2**63 (a Kafka offset is a signed 64-bit integer, and so is
        every integer a snapshot can encode); None for anything else.

        >>> Origin.parse(b"feedback/0/7"), Origin.parse("feedback/²/7".encode()), Origin.parse(b"f/0/" + b"9" * 19)
        (Origin(topic='feedback', partition=0, offset=7), None, None)
        """
        match = _POSITION.fullmatch(value or b"")
        if match is None:
            return None
        topic, partition, offset = match.groups()
        if int(offset) >= _MAX_OFFSET:
            return None
        return cls(topic.decode("ascii"), int(partition), int(offset))


def forwarded_from(headers: Headers | None) -> bytes | None:
    """The value of a record's ``streamdrift.forwarded.from`` header (b"" for a null one), None without one."""
    for name, value in headers or ():
        if name == FORWARDED_FROM:
            return b"" if value is None else bytes(value)
    return None


def forwarded_copy(message: RawMessage) -> RawMessage:
    """``message`` as forwarded: key, value, timestamp and headers unchanged, plus a header naming its position."""
    position = f"{message.topic}/{message.partition}/{message.offset}".encode()
    headers = [*(message.headers or ()), (FORWARDED_FROM, position)]
    return RawMessage(message.topic, message.partition, message.offset, message.key, message.value,
                      message.timestamp_ms, headers)  # fmt: skip


class Router:
    """The partition of a record's routing key under murmur2, with the partitions of keys seen kept.

    Keys are model ids: a few distinct ones, so the cache saves hashing every record.

    >>> Router(3).partition(b"churn", None), Router(3).partition(None, b'{"model_id": "churn"}')
    (2, 2)
    """

    MAX_CACHED = 100_000  # distinct keys remembered; past it the cache starts again

    def __init__(self, partitions: int):
        self.partitions = partitions
        self._cache: dict[bytes, int] = {}

    def partition(self, key: bytes | None, value: bytes | None) -> int | None:
        if key is not None:
            if len(key) > MAX_ROUTING_KEY:
                return None  # no model id is that long: not hashed (see ``MAX_ROUTING_KEY``)
            cached = self._cache.get(key)
            if cached is not None:
                return cached
        routed = routing_key(key, value)
        if routed is None:
            return None
        p = murmur2_partition(routed, self.partitions)
        if key is not None:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[key] = p
        return p


class Forward(NamedTuple):
    """A misrouted record and the partition it belongs to."""

    message: RawMessage
    partition: int


@dataclass(slots=True)
class Routed:
    """What ``PartitionRouting.route`` made of records of one topic, in offset order."""

    kept: list[RawMessage] = field(default_factory=list)  # to the merge: records, and placeholders for skipped ones
    forward: list[Forward] = field(default_factory=list)  # misrouted: to forward to their own partition
    rejected: list[Rejected] = field(default_factory=list)  # misrouted and not forwarded: dead letters
    misrouted: int = 0  # records that landed on another partition than their routing key's (copies included)
    null_keys: int = 0  # of them, records with a null key (any partitioner puts those on any partition)
    consistent: int = 0  # of them, keyed records on the partition librdkafka's CRC32 maps their key to
    duplicates: int = 0  # forwarded copies dropped: an earlier copy of the same record came first
    skipped: int = 0  # records forwarded, dead-lettered or dropped: placeholders in kept, which move no epoch


class PartitionRouting:
    """What one input partition does with its records, by where they belong (see the module's docstring).

    Parameters
    ----------
    partition
        The input partition number.
    partitions
        The input topics' partition count.
    misrouted
        ``"forward"``, ``"dead_letter"`` or ``"process"``: what becomes of a misrouted record.
    """

    def __init__(self, partition: int, partitions: int, misrouted: Misrouted = "forward"):
        self.partition = partition
        self.misrouted = misrouted
        self.router = Router(partitions)
        # (source topic, source partition) -> highest source offset of a forwarded copy processed: checkpointed
        self.marks: dict[tuple[str, int], int] = {}
        self._reset()

    def _reset(self) -> None:
        """What records added and not processed yet left: rebuilt when they are consumed again after a restore."""
        self._added_marks = dict(self.marks)  # the same, over the copies added (processed or not)
        self._skipped: dict[str, set[int]] = {}  # topic -> offsets of placeholders not processed yet
        self._copies: dict[str, dict[int, Origin]] = {}  # topic -> offset of a copy to process -> its origin

    def route(self, topic: str, records: list[RawMessage]) -> Routed:
        """Sort ``records`` of ``topic`` (this partition's, in offset order): kept, forwarded, rejected or dropped."""
        out = Routed()
        router, p = self.router, self.partition
        for record in records:
            header = forwarded_from(record.headers) if record.headers else None
            home = router.partition(record.key, record.value) if router.partitions > 1 else p
            if header is not None:
                origin, refusal = self.trusted(topic, header)
                if origin is None:
                    out.rejected.append(Rejected(record, refusal))
                    self._skip(topic, record, out)
                    continue
                mark = self._added_marks.get(origin[:2], -1)
                if origin.offset <= mark:
                    out.duplicates += 1
                    self._skip(topic, record, out)
                    continue
                self._added_marks[origin.topic, origin.partition] = origin.offset
                self._copies.setdefault(topic, {})[record.offset] = origin  # marked once processed, kept or not
                if home is not None and home != p and self.misrouted != "process":
                    out.misrouted += 1
                    out.rejected.append(Rejected(record, MISROUTED_COPY))
                    self._skip(topic, record, out)
                    continue
            elif home is not None and home != p:
                out.misrouted += 1
                if record.key is None:
                    out.null_keys += 1
                elif consistent_partition(record.key, router.partitions) == p:
                    out.consistent += 1
                if self.misrouted == "forward":
                    out.forward.append(Forward(record, home))
                    self._skip(topic, record, out)
                    continue
                if self.misrouted == "dead_letter":
                    out.rejected.append(Rejected(record, MISROUTED))
                    self._skip(topic, record, out)
                    continue
            out.kept.append(record)
        return out

    def trusted(self, topic: str, header: bytes) -> tuple[Origin | None, str]:
        """The origin a record of ``topic`` with forwarding ``header`` is a copy of, or None and why it is refused.

        Any producer can write the header, and a copy's origin moves a mark that drops later copies, so it is
        trusted only where a worker could have written it: ``forwarded_copy`` names a record of the same topic
        on another partition. A refused record is dead-lettered, never processed nor dropped silently.

        >>> routing = PartitionRouting(1, 3)
        >>> routing.trusted("feedback", b"feedback/0/7"), routing.trusted("feedback", b"predictions/0/7")[1]
        ((Origin(topic='feedback', partition=0, offset=7), ''), "forwarded header refused: its origin topic is not the record's topic")
        """
        origin = Origin.parse(header)
        if origin is None:
            return None, REFUSED_MALFORMED
        if origin.topic != topic:
            return None, REFUSED_TOPIC
        if origin.partition >= self.router.partitions or origin.partition == self.partition:
            return None, REFUSED_PARTITION
        return origin, ""

    def _skip(self, topic: str, record: RawMessage, out: Routed) -> None:
        self._skipped.setdefault(topic, set()).add(record.offset)
        out.skipped += 1
        out.kept.append(RawMessage(topic, record.partition, record.offset, None, None, SKIPPED_TIMESTAMP_MS))

    def processed(self, topic: str, run: list[RawMessage]) -> list[RawMessage]:
        """A run of ``topic`` the merge released, without its placeholders; the copies in it are marked processed."""
        skipped, copies = self._skipped.get(topic), self._copies.get(topic)
        if not skipped and not copies:
            return run
        kept = []
        for record in run:
            origin = copies.pop(record.offset, None) if copies else None
            if origin is not None:
                self.marks[origin.topic, origin.partition] = origin.offset
            if skipped and record.offset in skipped:
                skipped.discard(record.offset)
                continue
            kept.append(record)
        return kept

    def state(self) -> dict[str, int]:
        """The marks, as ``{"<topic>/<partition>": offset}`` (sorted: equal states are equal bytes)."""
        return {f"{topic}/{partition}": offset for (topic, partition), offset in sorted(self.marks.items())}

    def load_state(self, state: dict[str, int]) -> None:
        self.marks = {}
        for name, offset in state.items():
            topic, _, partition = name.rpartition("/")
            self.marks[topic, int(partition)] = int(offset)
        self._reset()
