"""The Kafka state topic: what each checkpoint writes there, and how a partition is restored from it.

Partition ``p`` of ``topics.state`` (compacted, as many partitions as the inputs)
holds the state of input partition ``p``. Its keys::

    model/<slot>/<chunk>/<model_id>    one model's state (``ModelMonitor.state()``)
    partition/<slot>/<chunk>           the partition record: input offsets, merge state, the checkpoint's
                                       number and where every model's committed state lies (its ledger)

A value is a state tree encoded as a snapshot file is (``core.state.encode_tree``:
format version, settings hash, CRC-32; nothing executed on load), compressed
with zlib (``COMPRESS_LEVEL``, 5) and cut into chunks of at most ``chunk_bytes`` (under the
topic's ``max.message.bytes``). zlib starts each value from a preset dictionary
(``runtime/state_dictionary.py``): the key names and layouts every model
record repeats, 14 % of a warm-up model's compressed bytes, which a value read
alone would otherwise pay for each time. The partition record is sealed with the whole
``Seal``; a model record without the settings (its hash, identity and MAC
stay), as it is restored only through a partition record whose settings were
checked, so that a change is refused naming the setting: with the default
settings they were about 900 bytes of every model record. (A value that starts
with ``{``, the snapshot header, was written uncompressed by an older
streamdrift, and is read as is; one compressed without a dictionary is read
too: the zlib header says which dictionary, if any.)
Two headers go with every chunk: ``streamdrift.gen``, the number of the
checkpoint that wrote it, and ``streamdrift.chunks``, how many chunks its value has.
A record whose headers no checkpoint of ours writes (not ASCII digits, a number below 1, a
key that is neither a model nor a partition key, or a checkpoint number more than
``MAX_GEN_AHEAD`` above the checkpoint restored) is another writer's: never part of a
value, never the number the next checkpoint counts from; on a model key, an orphan. A
partition record that does not unpack, or whose header's number is not the one under its
seal, is passed over for the newest complete one before it (refused, naming its offset,
where there is none).

A model record's snapshot header also carries the model's summary (field ``summary``,
``summary.summary_doc`` of the same state, with its ``SUMMARY_VERSION``), inside the
compressed value and under its MAC, as the state is: a forged summary is refused as a
forged state is, where a Kafka record header would be checked by nothing. A restore then
keeps the model `Dormant` (``core/dormant.py``), its value inflated and its header checked
but its state not decoded, until its first event or until its state is asked for, as a
restore from the local cache does; ``/status`` and ``/metrics`` show the summary meanwhile.
A record without one (a quarantined model's, whose quarantine is in its state; one written
before summaries; a summary JSON cannot carry exactly) or with one of another
``SUMMARY_VERSION`` is decoded at restore. A reader that does not know the field ignores it.

Why two slots. Without transactions the records of one checkpoint are not
written atomically: a worker killed after some model records and before the
partition record would leave new model states beside old input offsets, and a
replay would count those events twice. So a checkpoint writes each changed model
to the slot its committed state is *not* in, and writes its partition record
last, to slot ``gen % 2``, naming the slot, chunk count and checkpoint number
of every model's state. What a crash leaves half written lies in slots no
complete partition record names, and compaction, which keeps the latest record
of each key, never removes a committed value for it. A restore reads the
partition to its end, takes the last value of each key itself, picks the
newest *complete* partition record and gathers the model states it names.

A model the partition no longer holds (evicted for idleness) leaves the
ledger at the next checkpoint. Its keys, and those of models that no
partition record names (written by a checkpoint that never completed for a
model that never came back, found by a restore), are tombstoned after the
next checkpoint is acknowledged, never before, so the committed state is
never touched until a newer one is complete; compaction then frees them.

The local snapshot file of a partition is the topic's cache: it records the
state-topic offset just after the partition record it reflects
(``Changelog.offset``). A restore reads from the record before that offset;
if that record is still that partition record (same checkpoint number), the
cache is loaded and only the records after it are read, else the partition is
rebuilt from the topic alone. It is rebuilt too when a complete partition record of
the same checkpoint number follows the cache's: a second writer's (a zombie's,
without transactions), which is then the topic's newest checkpoint.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streamdrift.core.dormant import Dormant
from streamdrift.core.errors import SnapshotError
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.protocols import State
from streamdrift.core.state import Seal, Snapshot, checked_header, decode_tree, encode_tree, tree_of
from streamdrift.core.summary import MonitorSummary, summary_doc, summary_from_doc
from streamdrift.runtime import kafka, state_dictionary
from streamdrift.runtime.errors import StateTopicError
from streamdrift.runtime.settings import Settings

log = logging.getLogger("streamdrift.statetopic")

HEADER_GEN = "streamdrift.gen"
HEADER_CHUNKS = "streamdrift.chunks"
SUMMARY_FIELD = "summary"  # the field of a model value's snapshot header that carries the model's summary
# Room left in a record for its key, headers and batch framing under the topic's max.message.bytes
RECORD_OVERHEAD_BYTES = 16 * 1024
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's message.max.bytes default, which we do not raise
# Level 1 was the choice while the consume loop packed every changed model at every checkpoint; a forked copy
# packs them now, at the write budget's pace (``runtime/writebudget.py``). On the formats of version 7 with
# DICTIONARY_4, level 6 (zlib's default) made a warm-up record 19 % smaller than level 1 (3,304 -> 2,681 bytes)
# for 54 us more per record (87 -> 141 us; levels 7 and 9: 20 %, 153 and 385 us). Level 5 (docs/benchmarks.md,
# benchmarks/bench_record.py): 41 us less than 6 for a warm-up record, a third less for a monitoring model's,
# for 1.3 % and 0.5 % more bytes; with the worker's forked checkpoints a record every 40 events a model
# (benchmarks/bench_forked.py) 200 models -11 % of the CPU per event, 2,000 -3 %. Taken once a classification
# metric's totals were stored narrow (2026-12-05, issue 19): level 5 then writes fewer bytes than level 6 did
# before (2,613 against 2,630 a warm-up record at 10,000 models), and the state topic's bytes per input byte at
# 10,000 warm-up models keep their target (0.25; README). A restore inflates any level at the same speed.
COMPRESS_LEVEL = 5
# A compressor at COMPRESS_LEVEL that has read the preset dictionary and nothing else: ``pack`` starts each
# value from a copy of it, the same bytes as from a new one, for a quarter of the cost (a new compressor reads
# the 7.6 KB dictionary into its hash chains each time: 9 us, a copy 2 us, against ~200 us for the value itself)
_PRIMED_DEFLATE = zlib.compressobj(COMPRESS_LEVEL, zdict=state_dictionary.CURRENT)
FDICT = 0x20  # the flag of a zlib header (RFC 1950) followed by the id of a preset dictionary
MAX_VALUE_BYTES = 1 << 31  # a value that inflates beyond this is refused rather than allowed to exhaust memory
# How long the broker holds a restore's fetch at a partition's end before it answers "nothing new" (librdkafka's
# default, 500 ms, was most of a restore from a local cache: its tail is a record or two, then that wait)
RESTORE_FETCH_WAIT_MS = 10
# A checkpoint number this far above the newest committed checkpoint is no checkpoint of ours (that many failed
# checkpoints in a row: one a second for 136 years), but another writer's: counting on from it, the numbers would
# soon outgrow what a state's encoding carries (2**64 - 1), and every checkpoint would fail
MAX_GEN_AHEAD = 1 << 32
MAX_HEADER_DIGITS = 20  # 2**64 - 1 has 20: longer is no header of ours (and int() of 4,301 digits raises)


def model_key(slot: int, chunk: int, model_id: str) -> bytes:
    return f"model/{slot}/{chunk}/{model_id}".encode()


def partition_key(slot: int, chunk: int) -> bytes:
    return f"partition/{slot}/{chunk}".encode()


def model_of(key: bytes) -> str | None:
    """The model id of a model key (``None`` for other keys). Another writer's key may not be UTF-8: its bytes
    that are not come out as U+FFFD, which no model id holds, so no ledger names it (an orphan, tombstoned)."""
    parts = key.split(b"/", 3)
    return parts[3].decode("utf-8", "replace") if len(parts) == 4 and parts[0] == b"model" else None


def chunk_bytes_for(max_message_bytes: int) -> int:
    """The largest chunk a record may carry under a topic's ``max.message.bytes``."""
    return max(1024, min(max_message_bytes, PRODUCER_MAX_MESSAGE_BYTES) - RECORD_OVERHEAD_BYTES)


@dataclass(frozen=True)
class Placed:
    """Where a model's committed state lies: its slot, its number of chunks, the checkpoint that wrote it."""

    slot: int
    chunks: int
    gen: int


@dataclass
class Changelog:
    """One partition's place in the state topic, as of its last committed checkpoint."""

    gen: int = 0  # number of the last committed checkpoint (0: none yet)
    offset: int = -1  # state-topic offset just after that checkpoint's partition record (-1: none)
    models: dict[str, Placed] = field(default_factory=dict)  # the ledger: model_id -> its committed state
    last_gen: int = 0  # highest checkpoint number seen, committed or not: the next one is above it
    garbage: set[bytes] = field(default_factory=set)  # keys no ledger names: tombstoned after the next commit

    def state(self) -> State:
        """As the local cache stores it (garbage is not kept: a later restore finds it again)."""
        return {
            "gen": self.gen,
            "offset": self.offset,
            "last_gen": self.last_gen,
            "models": {m: [p.slot, p.chunks, p.gen] for m, p in sorted(self.models.items())},
        }

    @classmethod
    def from_state(cls, state: State) -> Changelog:
        return cls(
            gen=state["gen"],
            offset=state["offset"],
            last_gen=state["last_gen"],
            models={m: Placed(*placed) for m, placed in state["models"].items()},
        )


class Record(NamedTuple):
    """A record to produce to the state partition (``value`` None: a tombstone)."""

    key: bytes
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]]


class Stored(NamedTuple):
    """A record read back from the state partition (``gen`` and ``chunks`` 0: headers no checkpoint of ours
    writes, see `ours`)."""

    offset: int
    key: bytes
    value: bytes | None
    gen: int
    chunks: int


def ours(record: Stored) -> bool:
    """Whether ``record`` has the key and headers a checkpoint of ours writes (its number is checked against the
    newest committed checkpoint by `restore`): others are foreign, never part of a value."""
    return record.gen >= 1 and record.chunks >= 1 and record.key.startswith((b"model/", b"partition/"))


def _headers(gen: int, chunks: int) -> list[tuple[str, str | bytes | None]]:
    return [(HEADER_GEN, str(gen).encode()), (HEADER_CHUNKS, str(chunks).encode())]


def model_seal(config: str | Seal) -> str | Seal:
    """What a model record is sealed with: the seal without the settings (their hash stays), which its
    partition record carries and is checked against."""
    return Seal(config.config, identity=config.identity, key=config.key) if isinstance(config, Seal) else config


def pack(tree: State, config: str | Seal, summary: Mapping[str, Any] | None = None) -> bytes:
    """A record's value: ``tree`` encoded as a snapshot file, compressed with the preset dictionary.
    ``summary``: the model's summary of that state (``summary.summary_doc``), carried in the header."""
    deflate = _PRIMED_DEFLATE.copy()
    extra = {SUMMARY_FIELD: summary} if summary is not None else None
    return deflate.compress(encode_tree(tree, config, extra)) + deflate.flush()


def dictionary_of(value: bytes, source: str, recover: str) -> bytes | None:
    """The preset dictionary a compressed value was made with (None: none), by the id in its zlib header."""
    if len(value) < 2 or not value[1] & FDICT:
        return None
    dictionary_id = int.from_bytes(value[2:6], "big")
    dictionary = state_dictionary.DICTIONARIES.get(dictionary_id)
    if dictionary is None:
        raise SnapshotError(
            f"{source} was compressed with a dictionary this streamdrift does not have (id {dictionary_id:08x}): "
            f"written by a newer streamdrift, or corrupt. {recover}"
        )
    return dictionary


def inflate(value: bytes, source: str = "a state-topic value", recover: str = "") -> bytes:
    """The encoded tree of a value ``pack`` (or an older writer: uncompressed, or without the dictionary) made."""
    if value.startswith(b"{"):
        return value
    dictionary = dictionary_of(value, source, recover)
    inflater = zlib.decompressobj() if dictionary is None else zlib.decompressobj(zdict=dictionary)
    try:
        out = inflater.decompress(value, MAX_VALUE_BYTES)
    except zlib.error as exc:
        raise SnapshotError(f"{source} is corrupt ({exc}). {recover}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise SnapshotError(f"{source} is corrupt (truncated, or over {MAX_VALUE_BYTES} bytes). {recover}")
    return out


def unpack(value: bytes, config: str | Seal, source: str, recover: str) -> State:
    """The tree of a value ``pack`` (or an older writer) made, checked."""
    return decode_tree(inflate(value, source, recover), config, source, recover)


def summaries(monitors: Mapping[str, ModelMonitor | Dormant], models: Iterable[str]) -> dict[str, dict[str, Any]]:
    """model_id -> its summary as a model record carries it (``pack``), for those of ``models`` that are live
    and not quarantined (a restore keeps a model with a summary `Dormant`, and a dormant model is not
    quarantined) and whose summary JSON carries exactly; a dormant model's value is written as it was stored."""
    out = {}
    for model_id in models:
        monitor = monitors.get(model_id)
        doc = record_summary(monitor) if isinstance(monitor, ModelMonitor) else None
        if doc is not None:
            out[model_id] = doc
    return out


def record_summary(monitor: ModelMonitor, shown: MonitorSummary | None = None) -> dict[str, Any] | None:
    """The summary a record of ``monitor``'s state carries (``shown``: its ``summary()``, if already made);
    None for a quarantined model, or one whose summary JSON does not carry exactly."""
    if monitor.quarantined is not None:
        return None
    return summary_doc(monitor.summary() if shown is None else shown)


def restored_model(value: bytes, model_id: str, config: str | Seal, source: str, recover: str) -> State | Dormant:
    """A model record's value as a restore keeps it: `Dormant` where it carries a summary this streamdrift
    shows (built at the model's first event, or when its state is asked for), else its state, decoded now
    (a record of a streamdrift before summaries, or of another ``summary.SUMMARY_VERSION``).

    Either way the value is inflated and its header checked now (settings, checksum, and MAC with a
    ``snapshot_key``, which covers the summary as it covers the state): one that fails is refused here, as
    an eager restore refuses it. Only decoding the body waits; a body that cannot be built (a writer bug:
    it passed its checksum) quarantines its model when it wakes (``PartitionEngine._wake``).
    """
    encoded = inflate(value, source, recover)
    header = checked_header(encoded, config, source, recover)
    doc = header.fields.get(SUMMARY_FIELD)
    if type(doc) is dict:
        try:
            summary = summary_from_doc(doc)
        except (KeyError, TypeError, ValueError):
            summary = None  # another SUMMARY_VERSION, or other fields: shown from the state, decoded now
        if summary is not None:
            stored = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)  # as ``summary.stored_summary`` writes it
            return Dormant(model_id, value, stored, None, Loader(config, source, recover), summary)
    return tree_of(encoded, header, source, recover)


class Loader:
    """``value -> state`` of one model's stored value (a class, not a closure: it names what it checks against)."""

    __slots__ = ("seal", "source", "recover")

    def __init__(self, seal: str | Seal, source: str, recover: str):
        self.seal = seal
        self.source = source
        self.recover = recover

    def __call__(self, value: bytes) -> State:
        return unpack(value, self.seal, self.source, self.recover)


def split(value: bytes, chunk_bytes: int) -> list[bytes]:
    """``value`` in pieces of at most ``chunk_bytes`` (one piece, possibly empty, at least)."""
    return [value[at : at + chunk_bytes] for at in range(0, len(value), chunk_bytes)] or [b""]


# -- writing ---------------------------------------------------------------------------------------


def checkpoint_records(
    snapshot: Snapshot,
    changed: Iterable[str],
    changelog: Changelog,
    config: str | Seal,
    chunk_bytes: int,
    *,
    monitored: Collection[str],
    values: dict[str, bytes] | None = None,
    summaries: Mapping[str, Mapping[str, Any]] = {},
) -> tuple[list[Record], Changelog]:
    """The records of one checkpoint of ``snapshot``'s partition, in the order they must be produced,
    and the changelog as it will be once they are all acknowledged (its ``offset`` still to be set).

    ``changed``: the models whose state changed since the last committed checkpoint; each goes to
    the slot its committed state is not in (``values``, if given, gets each one's value: model_id ->
    value), with its summary (``summaries``: model_id -> ``summary.summary_doc``, of the same state; a model
    without one is written without). ``monitored``: every model the partition holds now; the
    ledger forgets the others (evicted), and their keys are tombstoned once this checkpoint is
    committed. The partition record comes last.
    """
    gen = changelog.last_gen + 1
    models = {m: placed for m, placed in changelog.models.items() if m in monitored}
    garbage = set(changelog.garbage)
    for model_id, placed in changelog.models.items():
        if model_id not in models:  # both slots: the one before may hold an older state of it
            garbage.update(model_key(slot, i, model_id) for slot in (0, 1) for i in range(placed.chunks))
    records: list[Record] = []
    for model_id in sorted(changed):
        committed = changelog.models.get(model_id)
        slot = 1 - committed.slot if committed is not None and model_id in models else 0
        tree = snapshot.models[model_id]
        # a model still as it was restored (``core/dormant.py``) is written as the bytes it was stored as
        value = tree.value if isinstance(tree, Dormant) else pack(tree, model_seal(config), summaries.get(model_id))
        if values is not None:
            values[model_id] = value
        pieces = split(value, chunk_bytes)
        records += [
            Record(model_key(slot, i, model_id), piece, _headers(gen, len(pieces))) for i, piece in enumerate(pieces)
        ]
        models[model_id] = Placed(slot, len(pieces), gen)
    doc = {
        "partition": snapshot.partition,
        "offsets": snapshot.offsets,
        "merge": snapshot.merge,
        "gen": gen,
        "models": {m: [p.slot, p.chunks, p.gen] for m, p in sorted(models.items())},
    }
    pieces = split(pack(doc, config), chunk_bytes)
    records += [Record(partition_key(gen % 2, i), piece, _headers(gen, len(pieces))) for i, piece in enumerate(pieces)]
    garbage.difference_update(r.key for r in records)  # a model back under an old key: its new state stays
    return records, Changelog(gen=gen, models=models, last_gen=gen, garbage=garbage)


def tombstones(changelog: Changelog) -> list[Record]:
    """Tombstones of the keys no committed partition record names (after a commit only)."""
    return [Record(key, None, []) for key in sorted(changelog.garbage)]


# -- restoring -------------------------------------------------------------------------------------


class CacheStale(Exception):
    """The local cache does not match the state topic: rebuild from the topic alone."""


def restore(
    partition: int,
    records: Iterable[Stored],
    config: str | Seal,
    source: str,
    cache: Snapshot | None = None,
) -> tuple[Snapshot | None, Changelog]:
    """The committed state of ``partition`` from its state-topic records, in offset order.

    Without ``cache``: ``records`` are the whole partition. With ``cache`` (a local snapshot carrying a
    changelog): ``records`` start at the record just before ``cache.changelog["offset"]``, which must be
    that checkpoint's partition record, else ``CacheStale``. Returns ``(None, changelog)`` where no
    checkpoint was ever completed (fresh state).
    """
    base = Changelog.from_state(cache.changelog) if cache is not None else None
    stream: Iterator[Stored] = iter(records)
    if base is not None:
        first = next(stream, None)
        if (
            first is None
            or first.offset != base.offset - 1
            or first.gen != base.gen
            or not first.key.startswith(b"partition/")
        ):
            raise CacheStale(f"state-topic record {base.offset - 1} is no longer checkpoint {base.gen}'s")
    latest: dict[bytes, Stored] = {}
    gens: set[int] = set()  # the checkpoint numbers of every record of ours read, overwritten or not
    for record in stream:
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = record  # a foreign record too: it is the key's value, as compaction keeps it
            if ours(record):
                gens.add(record.gen)
    candidates = _partition_records(latest)
    if base is not None and candidates and candidates[0][0] == base.gen:
        # the cache's own number written again after it, complete: a second writer (a zombie, at_least_once)
        # whose checkpoint is now the topic's newest; the cache's ledger would name that writer's model records
        raise CacheStale(f"checkpoint {base.gen} was written again after state-topic record {base.offset - 1}")
    if not candidates or (base is not None and candidates[0][0] < base.gen):
        if base is None:
            garbage = {k for k in latest if k.startswith(b"model/")}
            return None, Changelog(last_gen=_last_gen(gens, 0, partition), garbage=garbage)
        assert cache is not None
        base.last_gen = max(_last_gen(gens, base.gen, partition), base.last_gen)
        # what a checkpoint that never completed wrote after the cache, for models the ledger does not hold
        # (one it holds was written to its other slot, which its next checkpoint overwrites)
        base.garbage = _orphans(latest, base.models)
        return cache, base
    recover = "The state topic's partition is damaged: delete the topic's records of it to start afresh."
    if base is not None:
        candidates = candidates[:1]  # a cache is checked against the newest checkpoint only, else rebuilt
    for tried, chosen in enumerate(candidates, 1):
        gen, value, offset = chosen
        models: dict[str, State | Dormant] = {}
        ledger: dict[str, Placed] = {}
        missing = None
        try:
            doc = unpack(value, config, f"{source} partition record {gen} (offset {offset})", recover)
            if doc["gen"] != gen:  # its header's number is not the one under its seal: not that checkpoint
                raise SnapshotError(f"{source} partition record {gen} (offset {offset}) is checkpoint {doc['gen']}")
        except SnapshotError as exc:
            if tried == len(candidates):
                raise
            # another writer's record on a partition key (or our newest, damaged): the checkpoint before is
            # intact, as when a checkpoint lost its records (below), and trusts nothing of it
            missing, doc = str(exc), {"models": {}}
        for model_id, placed_state in doc["models"].items():
            placed = Placed(*placed_state)
            ledger[model_id] = placed
            found = _joined(latest, lambda i, m=model_id, s=placed.slot: model_key(s, i, m), placed.gen)
            if found is not None:
                models[model_id] = restored_model(
                    found[0], model_id, model_seal(config), f"{source} model {model_id!r}", recover
                )
            elif base is not None and base.models.get(model_id) == placed:
                assert cache is not None
                models[model_id] = cache.models[model_id]
            elif base is not None:
                raise CacheStale(f"model {model_id!r} of checkpoint {gen} is neither in the cache nor after it")
            else:
                missing = (
                    f"{source}: checkpoint {gen} names model {model_id!r} (slot {placed.slot}, checkpoint "
                    f"{placed.gen}) but its records are missing"
                )
                break
        if missing is None:
            break
        if tried == len(candidates):
            raise StateTopicError(f"{missing}. {recover}")
        # A checkpoint whose acknowledgement was lost can be in the topic while its worker retried with the
        # slots of the one before: that retry's records overwrite it, and the one before is intact.
        log.warning("state topic: restoring the checkpoint before the newest", extra={"fields": {"reason": missing}})
    gen, _, offset = chosen
    last_gen = _last_gen(gens, max(gen, base.gen if base is not None else 0), partition)
    changelog = Changelog(
        gen=gen,
        offset=offset + 1,
        models=ledger,
        last_gen=max(last_gen, base.last_gen) if base is not None else last_gen,
        garbage=_orphans(latest, ledger),
    )
    snapshot = Snapshot(partition, doc["offsets"], models, doc["merge"], changelog.state())
    return snapshot, changelog


def _last_gen(gens: set[int], newest: int, partition: int) -> int:
    """The highest checkpoint number of ``gens`` (those of the records read) that a checkpoint of ours can have:
    at most ``MAX_GEN_AHEAD`` above ``newest``, the number of the checkpoint restored (whose record's number is
    the one under its seal); the next checkpoint counts on from it. Others are another writer's."""
    foreign = [gen for gen in gens if gen > newest + MAX_GEN_AHEAD]
    if foreign:
        log.warning(
            "state topic: records with checkpoint numbers no checkpoint of ours has, ignored",
            extra={"fields": {"partition": partition, "numbers": len(foreign)}},
        )
    return max((gen for gen in gens if gen <= newest + MAX_GEN_AHEAD), default=0)


def _orphans(latest: dict[bytes, Stored], ledger: Collection[str]) -> set[bytes]:
    """The model keys of ``latest`` whose model ``ledger`` does not hold: no committed partition record names them."""
    return {k for k in latest if (m := model_of(k)) is not None and m not in ledger}


def _joined(latest: dict[bytes, Stored], key: Any, gen: int | None) -> tuple[bytes, int, int] | None:
    """The value whose chunks are ``key(0)``, ``key(1)``, ... of one checkpoint (``gen``, or the
    first chunk's): (value, its checkpoint, offset of its last chunk); None if any chunk is missing."""
    first = latest.get(key(0))
    if first is None or not ours(first) or (gen is not None and first.gen != gen):
        return None
    pieces = []
    last = -1
    for i in range(first.chunks):
        record = latest.get(key(i))
        if record is None or record.gen != first.gen or record.chunks != first.chunks or record.value is None:
            return None
        pieces.append(record.value)
        last = max(last, record.offset)
    return b"".join(pieces), first.gen, last


def _partition_records(latest: dict[bytes, Stored]) -> list[tuple[int, bytes, int]]:
    """(checkpoint, value, offset of its last chunk) of each complete partition record, newest first."""
    found = [_joined(latest, lambda i, s=slot: partition_key(s, i), None) for slot in (0, 1)]
    return sorted(((f[1], f[0], f[2]) for f in found if f is not None), reverse=True)


# -- the Kafka side --------------------------------------------------------------------------------


class StateTopic:
    """Reads partitions of the state topic to their end (read_committed: the last stable offset)."""

    def __init__(self, settings: Settings, config: str | Seal, timeout_s: float = 300.0):
        self.settings = settings
        self.topic = settings.topics.state
        self.config = config
        self.timeout_s = timeout_s
        # seconds the last ``restore`` spent reading the topic and unpacking what it read (the worker logs them)
        self.read_s = self.unpack_s = 0.0
        # the partitions the last ``restore`` restored from their local cache (plus the records after it)
        self.from_cache: set[int] = set()

    def read(self, starts: dict[int, int]) -> dict[int, list[Stored]]:
        """Every record of each partition from its start offset to its end, in offset order. A start before
        the partition's log start (0 for a whole partition) reads from the log start (``auto.offset.reset``)."""
        out: dict[int, list[Stored]] = {p: [] for p in starts}
        if not starts:
            return out
        consumer = Consumer(
            kafka.consumer_config(
                self.settings,
                **{
                    "group.id": f"{self.settings.group_id}.state-restore",
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "range",
                    "fetch.wait.max.ms": RESTORE_FETCH_WAIT_MS,
                },
            )
        )
        pending = set(starts)
        deadline = time.monotonic() + self.timeout_s
        try:
            consumer.assign(
                [TopicPartition(self.topic, p, o if o >= 0 else OFFSET_BEGINNING) for p, o in starts.items()]
            )
            while pending:
                if time.monotonic() > deadline:
                    raise StateTopicError(
                        f"restoring partitions {sorted(pending)} of {self.topic} took over {self.timeout_s:.0f} s; "
                        "is the broker reachable?"
                    )
                # consume() returns when the batch is full or the timeout is over: a short one, or every
                # partition's end (usually a few records past a cache) costs half a second
                for msg in consumer.consume(10_000, 0.05):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(msg.partition())
                            continue
                        if err.fatal() or not err.retriable():
                            raise StateTopicError(f"reading {self.topic}: {err}")
                        continue
                    out[msg.partition() or 0].append(_stored(msg))
        finally:
            consumer.close()
        return out

    def restore(self, caches: dict[int, Snapshot | None]) -> dict[int, tuple[Snapshot | None, Changelog]]:
        """Restore partitions: from their local cache plus the records after it where that is valid,
        else from the topic alone."""
        source = f"state topic {self.topic}"
        usable = {p: c for p, c in caches.items() if c is not None and c.changelog}
        results: dict[int, tuple[Snapshot | None, Changelog]] = {}
        started = time.perf_counter()
        tails = self.read({p: c.changelog["offset"] - 1 for p, c in usable.items()})
        self.read_s = time.perf_counter() - started
        for p, cache in usable.items():
            try:
                results[p] = restore(p, tails[p], self.config, f"{source}[{p}]", cache)
                log.info(
                    "state restored from cache and topic", extra={"fields": {"partition": p, "records": len(tails[p])}}
                )
            except (CacheStale, SnapshotError) as exc:
                log.info(
                    "local cache stale: rebuilding from the state topic",
                    extra={"fields": {"partition": p, "reason": str(exc)}},
                )
        self.from_cache = set(results)
        rest = sorted(p for p in caches if p not in results)
        read = time.perf_counter()
        # offset 0, not OFFSET_BEGINNING, which looks the log start up first (half a second): a log that starts
        # later (cleanup.policy=compact,delete) is read from its start all the same, by auto.offset.reset
        whole = self.read(dict.fromkeys(rest, 0))
        self.read_s += time.perf_counter() - read
        for p in rest:
            results[p] = restore(p, whole[p], self.config, f"{source}[{p}]")
        self.unpack_s = time.perf_counter() - started - self.read_s
        return results


def _stored(msg: Any) -> Stored:
    headers = dict(msg.headers() or [])
    gen, chunks = _header_number(headers.get(HEADER_GEN)), _header_number(headers.get(HEADER_CHUNKS))
    if not gen or not chunks:
        gen = chunks = 0  # not a record streamdrift wrote (see `ours`): never part of a complete value
    return Stored(msg.offset(), msg.key() or b"", msg.value(), gen, chunks)


def _header_number(value: Any) -> int:
    """A header's number as ``_headers`` writes it (ASCII digits), else 0: ``int`` would also take a sign,
    spaces, underscores and other scripts' digits, and raise TypeError on a header without a value."""
    if not isinstance(value, bytes) or not value.isdigit() or len(value) > MAX_HEADER_DIGITS:
        return 0
    return int(value)
