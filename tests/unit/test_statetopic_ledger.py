"""A partition's state through the Kafka state topic's records, as the worker writes them (issue 16).

The worker checkpoints ``PartitionEngine.snapshot(changed)`` (the changed models and the partition-level
state) with ``statetopic.checkpoint_records``; a restore reads the records back (``statetopic.restore``).
"""

from __future__ import annotations

import zlib

import orjson
import pytest

from state_log import StateLog
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.errors import SnapshotError
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.state import Seal, encode
from streamdrift.runtime import state_dictionary, statetopic
from streamdrift.runtime.statetopic import Changelog, Stored
from streams import model_prediction

P, F = "predictions", "feedback"
SETTINGS = MonitorSettings(reference_size=50, window_size=100, subwindows=5)
CONFIG = SETTINGS.fingerprint()
DAY = 86400.0


def engine(**kwargs) -> PartitionEngine:
    return PartitionEngine(0, P, F, monitor_factory(SETTINGS), epoch_ms=1000, **kwargs)


def prediction(offset: int, model: str, t: float) -> RawMessage:
    return model_prediction(P, 0, offset, model, t)


def run(engine: PartitionEngine, records: list[RawMessage]) -> None:
    engine.add(P, records)
    engine.release(ended={P, F})


class Log(StateLog):
    """The state topic's partition 0, written and read as the worker does."""

    def checkpoint(self, engine: PartitionEngine, changed: set[str], changelog: Changelog) -> Changelog:
        """One checkpoint as the worker makes it: the changed models' records, the partition record, then
        (once acknowledged) the tombstones."""
        records, after = statetopic.checkpoint_records(
            engine.snapshot(changed), changed, changelog, CONFIG, 1 << 20, monitored=engine.monitors
        )
        return self.commit(records, after)

    def restored(self, **kwargs) -> PartitionEngine:
        snapshot, _ = statetopic.restore(0, self.records, CONFIG, "test")
        out = engine(**kwargs)
        if snapshot is not None:
            out.restore(snapshot)
        return out


def test_the_event_clock_survives_a_restore_from_the_state_topic() -> None:
    """The clock is set by a model over ``max_models``, so no monitor's last event time tells it."""
    kwargs = dict(max_models=2, model_idle_ttl_s=DAY)
    first = [prediction(0, "a", 1000), prediction(1, "b", 1000)]
    second = [prediction(2, "over_budget", 1000 + 1.5 * DAY)]  # a and b idle: evicted
    late = [prediction(3, "late", 1000 + 0.2 * DAY)]  # out of order: idle for that clock, evicted at once
    uninterrupted = engine(**kwargs)
    run(uninterrupted, first + second)
    log = Log()
    crashed = engine(**kwargs)
    run(crashed, first)
    changelog = log.checkpoint(crashed, {"a", "b"}, Changelog())
    run(crashed, second)
    log.checkpoint(crashed, set(), changelog)
    restored = log.restored(**kwargs)
    assert restored.event_clock == uninterrupted.event_clock == 1000 + 1.5 * DAY
    run(uninterrupted, late)
    run(restored, late)
    assert uninterrupted.monitors == {} and uninterrupted.evicted_models == 3
    assert encode(restored.snapshot(), CONFIG) == encode(uninterrupted.snapshot(), CONFIG)


def model_keys(records: list[Stored], model: str) -> list[bytes]:
    return [r.key for r in records if statetopic.model_of(r.key) == model]


def test_an_evicted_model_leaves_the_ledger_and_compaction_frees_its_keys() -> None:
    kwargs = dict(model_idle_ttl_s=DAY)
    crashed = engine(**kwargs)
    log = Log()
    run(crashed, [prediction(0, "a", 1000), prediction(1, "b", 1000)])
    changelog = log.checkpoint(crashed, {"a", "b"}, Changelog())
    run(crashed, [prediction(2, "a", 1001)])
    changelog = log.checkpoint(crashed, {"a"}, changelog)  # a in both slots now
    assert len(set(model_keys(log.records, "a"))) == 2
    run(crashed, [prediction(3, "b", 1002 + DAY)])  # a idle: evicted
    assert sorted(crashed.monitors) == ["b"]
    changelog = log.checkpoint(crashed, {"b"}, changelog)
    assert sorted(changelog.models) == ["b"]
    assert model_keys(log.compacted(), "a") == []
    assert sorted(model_keys(log.records[-2:], "a")) == [statetopic.model_key(s, 0, "a") for s in (0, 1)]
    snapshot, restored_changelog = statetopic.restore(0, log.compacted(), CONFIG, "test")
    assert snapshot is not None and sorted(snapshot.models) == ["b"] and restored_changelog.garbage == set()


def test_a_model_back_under_a_key_marked_for_removal_keeps_its_new_state() -> None:
    crashed = engine()
    log = Log()
    run(crashed, [prediction(0, "a", 1000)])
    changelog = log.checkpoint(crashed, {"a"}, Changelog())
    stray = statetopic.Record(statetopic.model_key(0, 0, "b"), b"x", statetopic._headers(7, 1))
    log.append([stray])  # a model of a checkpoint that never completed
    _, changelog = statetopic.restore(0, log.records, CONFIG, "test")
    assert changelog.garbage == {stray.key}
    run(crashed, [prediction(1, "b", 1001)])  # b comes back: written to slot 0, chunk 0, the stray's key
    log.checkpoint(crashed, {"b"}, changelog)
    snapshot, _ = statetopic.restore(0, log.compacted(), CONFIG, "test")
    assert snapshot is not None and sorted(snapshot.models) == ["a", "b"]


def test_a_model_key_of_another_writer_that_is_not_utf8_is_an_orphan_not_a_failed_restore() -> None:
    """Any client that may write the state topic can leave a key ``model/0/0/<bytes>`` that no model id spells:
    a restore tombstones it as it does any model no ledger names, rather than raise UnicodeDecodeError."""
    crashed = engine()
    log = Log()
    run(crashed, [prediction(0, "a", 1000)])
    log.checkpoint(crashed, {"a"}, Changelog())
    stray = statetopic.Record(b"model/0/0/\xff\xfe", b"x", statetopic._headers(7, 1))
    log.append([stray])
    snapshot, changelog = statetopic.restore(0, log.records, CONFIG, "test")
    assert snapshot is not None and sorted(snapshot.models) == ["a"] and changelog.garbage == {stray.key}


def test_orphans_after_the_cache_are_tombstoned_at_the_next_checkpoint_after_a_restore_from_the_cache() -> None:
    """A checkpoint that never completed wrote a model after the cache's checkpoint; the worker restored from
    the cache, and the model, replayed, was evicted before the next checkpoint (it never came back). Its keys
    are tombstoned once that checkpoint is acknowledged, as after a restore from the whole topic."""
    kwargs = dict(model_idle_ttl_s=DAY)
    writer = engine(**kwargs)
    log = Log()
    run(writer, [prediction(0, "a", 1000)])
    changelog = log.checkpoint(writer, {"a"}, Changelog())
    # the local cache: checkpoint 1 and its changelog, as the worker keeps it
    cache, _ = statetopic.restore(0, log.records, CONFIG, "test")
    assert cache is not None and cache.changelog == changelog.state()
    b_comes = [prediction(1, "b", 1001)]
    run(writer, b_comes)
    records, _ = statetopic.checkpoint_records(
        writer.snapshot({"b"}), {"b"}, changelog, CONFIG, 1 << 20, monitored=writer.monitors
    )
    log.append(records[:-1])  # killed before its partition record: checkpoint 2 never completed
    orphans = set(model_keys(log.records, "b"))
    assert orphans == {statetopic.model_key(0, 0, "b")}

    tail = log.records[changelog.offset - 1 :]  # what a restore from the cache reads
    snapshot, from_cache = statetopic.restore(0, tail, CONFIG, "test", cache)
    _, from_topic = statetopic.restore(0, log.records, CONFIG, "test")
    assert snapshot is cache and from_cache.gen == 1 and from_cache.last_gen == 2
    assert from_cache.garbage == from_topic.garbage == orphans
    restored = engine(**kwargs)
    restored.restore(snapshot)
    run(restored, [*b_comes, prediction(2, "a", 1001 + 2 * DAY)])  # the replay, then b idle: evicted
    assert sorted(restored.monitors) == ["a"] and restored.evicted_models == 1
    before = len(log.records)
    log.checkpoint(restored, {"a"}, from_cache)
    written = log.records[before:]
    # the tombstones only after the checkpoint's partition record: the committed state untouched until then
    assert [(r.key, r.value) for r in written[-1:]] == [(statetopic.model_key(0, 0, "b"), None)]
    assert written[-2].key == statetopic.partition_key(1, 0) and written[-2].gen == 3
    assert model_keys(log.compacted(), "b") == []
    again, _ = statetopic.restore(0, log.compacted(), CONFIG, "test")
    assert again is not None and sorted(again.models) == ["a"]
    from_compacted = engine(**kwargs)
    from_compacted.restore(again)
    assert encode(from_compacted.snapshot(), CONFIG) == encode(restored.snapshot(), CONFIG)


def test_a_zombie_checkpoint_of_the_same_number_after_the_cache_makes_the_cache_stale() -> None:
    """Without transactions, a worker expelled from the group (a zombie) may still write the checkpoint
    numbered as the new owner's last one. Written after it, complete, it is the topic's newest checkpoint:
    a restore takes its state whatever the owner's cache says (the cache's ledger would otherwise name the
    zombie's model records beside the owner's offsets at the next checkpoint)."""
    log = Log()
    zombie = engine()
    run(zombie, [prediction(0, "a", 1000)])
    checkpoint_1 = log.checkpoint(zombie, {"a"}, Changelog())
    _, owner_changelog = statetopic.restore(0, log.records, CONFIG, "test")
    owner = log.restored()
    run(owner, [prediction(1, "a", 1001)])
    owner_changelog = log.checkpoint(owner, {"a"}, owner_changelog)
    cache, _ = statetopic.restore(0, log.records, CONFIG, "test")  # the owner's cache: its checkpoint 2
    assert cache is not None and cache.changelog == owner_changelog.state() and owner_changelog.gen == 2
    run(zombie, [prediction(1, "a", 1001), prediction(2, "a", 1002)])
    zombie_changelog = log.checkpoint(zombie, {"a"}, checkpoint_1)  # numbered 2 as well, after the owner's
    assert zombie_changelog.gen == 2 and zombie_changelog.offset > owner_changelog.offset

    with pytest.raises(statetopic.CacheStale, match="checkpoint 2 was written again after state-topic record"):
        statetopic.restore(0, log.records[owner_changelog.offset - 1 :], CONFIG, "test", cache)
    snapshot, changelog = statetopic.restore(0, log.records, CONFIG, "test")  # what the worker falls back to
    assert snapshot is not None and snapshot.offsets == {P: 3} and changelog.offset == zombie_changelog.offset
    rebuilt = engine()
    rebuilt.restore(snapshot)
    assert encode(rebuilt.snapshot(), CONFIG) == encode(zombie.snapshot(), CONFIG)


# -- the values: compressed; model records sealed with the settings hash only ----------------------------

SEAL = Seal.of({"monitor": SETTINGS.model_dump(mode="json")}, {"group": "g", "topics": ["p", "f"]})


def sealed_checkpoint(seal: Seal) -> list[statetopic.Record]:
    crashed = engine()
    run(crashed, [prediction(i, f"m{i % 3}", 1000 + i) for i in range(30)])
    records, _ = statetopic.checkpoint_records(
        crashed.snapshot(), crashed.monitors, Changelog(), seal, 1 << 20, monitored=crashed.monitors
    )
    return records


def header_of(value: bytes) -> dict:
    return orjson.loads(statetopic.inflate(value).split(b"\n", 1)[0])


def test_values_are_compressed_and_only_the_partition_record_carries_the_settings() -> None:
    records = sealed_checkpoint(SEAL)
    partition = header_of(records[-1].value)
    assert partition["settings"] == SEAL.settings and partition["identity"] == SEAL.identity
    for record in records[:-1]:
        assert "settings" not in header_of(record.value) and header_of(record.value)["identity"] == SEAL.identity
        assert header_of(record.value)["config"] == SEAL.config
    log = Log()
    log.append(records)
    snapshot, _ = statetopic.restore(0, log.records, SEAL, "test")
    assert snapshot is not None and sorted(snapshot.models) == ["m0", "m1", "m2"]
    other = Seal.of(SEAL.settings, {"group": "other", "topics": ["p", "f"]})
    with pytest.raises(SnapshotError, match="group: 'g', now 'other'"):
        statetopic.restore(0, log.records, other, "test")


def test_uncompressed_values_of_an_older_writer_are_read() -> None:
    log = Log()
    log.append([r._replace(value=statetopic.inflate(r.value)) for r in sealed_checkpoint(SEAL)])
    snapshot, _ = statetopic.restore(0, log.records, SEAL, "test")
    assert snapshot is not None and sorted(snapshot.models) == ["m0", "m1", "m2"]


def recompressed(records: list[statetopic.Record], dictionary: bytes | None) -> list[statetopic.Record]:
    """The records with their values compressed again, with ``dictionary`` (or none, as before it existed)."""

    def deflate(value: bytes) -> bytes:
        z = zlib.compressobj(statetopic.COMPRESS_LEVEL, **({"zdict": dictionary} if dictionary else {}))
        return z.compress(statetopic.inflate(value)) + z.flush()

    return [r._replace(value=deflate(r.value)) for r in records]


def test_values_are_compressed_with_the_preset_dictionary_and_restored_exactly() -> None:
    records = sealed_checkpoint(SEAL)
    for record in records:
        assert record.value[1] & statetopic.FDICT  # the zlib header names a dictionary: the current one
        assert int.from_bytes(record.value[2:6], "big") == zlib.adler32(state_dictionary.CURRENT)
    plain = recompressed(records, None)
    assert sum(len(r.value) for r in records) < sum(len(r.value) for r in plain)
    log = Log()
    log.append(records)
    snapshot, _ = statetopic.restore(0, log.records, SEAL, "test")
    assert snapshot is not None and sorted(snapshot.models) == ["m0", "m1", "m2"]
    # as a streamdrift before the dictionary, or with the dictionary before this one, wrote them: read the same
    for older in (
        plain,
        recompressed(records, state_dictionary.DICTIONARY_1),
        recompressed(records, state_dictionary.DICTIONARY_2),
        recompressed(records, state_dictionary.DICTIONARY_3),
    ):
        assert {r.value[1] & statetopic.FDICT for r in older} == ({0} if older is plain else {statetopic.FDICT})
        old_log = Log()
        old_log.append(older)
        before, _ = statetopic.restore(0, old_log.records, SEAL, "test")
        assert before is not None and encode(snapshot, SEAL) == encode(before, SEAL)


def test_a_value_compressed_with_an_unknown_dictionary_is_refused_naming_it() -> None:
    records = recompressed(sealed_checkpoint(SEAL), b'{"a newer streamdrift\'s dictionary":0}')
    log = Log()
    log.append(records)
    with pytest.raises(SnapshotError, match="compressed with a dictionary this streamdrift does not have"):
        statetopic.restore(0, log.records, SEAL, "test")


def test_the_dictionaries_are_frozen() -> None:
    """A value compressed with a dictionary inflates only with that same one: editing one would make every
    record written with it unreadable (a new dictionary gets a new name; the old one stays)."""
    assert {f"{k:08x}" for k in state_dictionary.DICTIONARIES} == {"e99d20f8", "290f9d21", "b2c61be8", "1313aa24"}
    assert zlib.adler32(state_dictionary.DICTIONARY_1) == 0xE99D20F8
    assert zlib.adler32(state_dictionary.DICTIONARY_2) == 0x290F9D21
    assert zlib.adler32(state_dictionary.DICTIONARY_3) == 0xB2C61BE8
    assert zlib.adler32(state_dictionary.DICTIONARY_4) == 0x1313AA24
    assert state_dictionary.CURRENT is state_dictionary.DICTIONARY_4


def test_a_damaged_or_truncated_compressed_value_is_refused() -> None:
    records = sealed_checkpoint(SEAL)
    model = records[0]
    for damaged in (model.value[:-5], model.value[:10] + bytes([model.value[10] ^ 1]) + model.value[11:]):
        log = Log()
        log.append([model._replace(value=damaged), *records[1:]])
        with pytest.raises(SnapshotError, match="model 'm0' is corrupt"):
            statetopic.restore(0, log.records, SEAL, "test")


def checkpointed_log() -> tuple[Log, PartitionEngine, Changelog]:
    crashed = engine()
    log = Log()
    run(crashed, [prediction(0, "a", 1000)])
    return log, crashed, log.checkpoint(crashed, {"a"}, Changelog())


@pytest.mark.parametrize("key", [b"x", b"model/0/0/b", b"model/1/0/a", b"partition/1/3"])
@pytest.mark.parametrize("gen", [10**30, 2**64 - 1, 2**63, 2**40])
def test_a_record_of_another_writer_with_a_checkpoint_number_none_of_ours_can_have_is_foreign(
    key: bytes, gen: int
) -> None:
    """Any client that may write the state topic can leave a record, on any key, whose ``streamdrift.gen`` is
    far above every checkpoint of ours: it must not become the number the next checkpoint counts from (at
    10**30 every checkpoint failed in ``pack`` with "Integer exceeds 64-bit range"; at 2**64 - 1, one later).
    It is foreign: never part of a value, an orphan on the key of a model no ledger names (tombstoned at the
    next checkpoint)."""
    log, crashed, _ = checkpointed_log()
    log.records.append(Stored(len(log.records), key, b"junk", gen, 1))
    snapshot, changelog = statetopic.restore(0, log.records, CONFIG, "test")
    assert snapshot is not None and sorted(snapshot.models) == ["a"]
    assert changelog.gen == changelog.last_gen == 1
    # b is no model of the ledger: an orphan; model/1/0/a is the slot a's next state goes to
    assert changelog.garbage == ({key} if key == b"model/0/0/b" else set())
    run(crashed, [prediction(1, "a", 1001)])
    records, after = statetopic.checkpoint_records(
        crashed.snapshot({"a"}), {"a"}, changelog, CONFIG, 1 << 20, monitored=crashed.monitors
    )
    assert after.gen == 2
    log.commit(records, after)
    restored = engine()
    snapshot, _ = statetopic.restore(0, log.compacted(), CONFIG, "test")
    assert snapshot is not None
    restored.restore(snapshot)
    assert encode(restored.snapshot(), CONFIG) == encode(crashed.snapshot(), CONFIG)


class Message:
    """What ``StateTopic.read`` gets from confluent-kafka, as far as ``_stored`` reads it."""

    def __init__(self, headers: list[tuple[str, bytes | None]]):
        self._headers = headers

    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._headers

    def offset(self) -> int:
        return 5

    def key(self) -> bytes:
        return b"model/0/0/b"

    def value(self) -> bytes:
        return b"junk"


@pytest.mark.parametrize(
    "gen, chunks",
    [
        (b"-3", b"1"),  # int() takes a sign, spaces and underscores; our writer writes digits only
        (b" 3", b"1"),
        (b"+3", b"1"),
        (b"1_0", b"1"),
        (b"0", b"1"),  # checkpoints count from 1
        (None, b"1"),  # a header without a value: int(None) was a TypeError out of the restore
        (b"3", None),
        (b"3", b"0"),  # a value of no chunk: joined as b""
        (b"3", b"-1"),
        (b"9" * 5000, b"1"),  # past int()'s digit limit: a ValueError, as any junk
        (b"\xd9\xa3", b"1"),  # ARABIC-INDIC DIGIT THREE, not an ASCII digit
    ],
)
def test_headers_our_checkpoints_do_not_write_make_a_record_foreign(gen: bytes | None, chunks: bytes | None) -> None:
    headers = [(statetopic.HEADER_GEN, gen), (statetopic.HEADER_CHUNKS, chunks)]
    stored = statetopic._stored(Message(headers))
    assert (stored.offset, stored.key, stored.gen, stored.chunks) == (5, b"model/0/0/b", 0, 0)
    log, _, _ = checkpointed_log()
    log.records.append(stored._replace(offset=len(log.records)))
    snapshot, changelog = statetopic.restore(0, log.records, CONFIG, "test")
    assert snapshot is not None and changelog.last_gen == 1 and changelog.garbage == {stored.key}


def test_the_headers_our_checkpoints_write_are_read_back() -> None:
    stored = statetopic._stored(Message(statetopic._headers(2**40, 7)))
    assert (stored.gen, stored.chunks) == (2**40, 7)


def test_a_foreign_record_on_a_key_of_the_committed_state_hides_it_and_the_restore_says_so() -> None:
    """The last record of a key is its value, as compaction keeps it: a foreign one on a key the ledger names
    leaves that model's state missing, which a restore refuses naming it (a damaged partition), as before."""
    log, _, _ = checkpointed_log()
    log.records.append(Stored(len(log.records), statetopic.model_key(0, 0, "a"), b"junk", 10**30, 1))
    with pytest.raises(statetopic.StateTopicError, match="names model 'a' .* but its records are missing"):
        statetopic.restore(0, log.records, CONFIG, "test")


def test_a_partition_record_of_another_writer_that_does_not_unpack_is_passed_over_for_the_checkpoint_before() -> None:
    """A record on a partition key with headers like ours and a value that is not a partition record: the
    restore took it for the newest checkpoint and refused the partition (SnapshotError); a gen of 2**64 - 1
    on it would have been the next checkpoint's number. It is passed over as a checkpoint that lost its
    records is (the newest complete one before it is restored), with a warning."""
    for gen in (2, 2**64 - 1):
        log, crashed, _ = checkpointed_log()  # checkpoint 1, its partition record in slot 1
        junk = Stored(len(log.records), statetopic.partition_key(0, 0), b"junk", gen, 1)
        log.records.append(junk)
        snapshot, changelog = statetopic.restore(0, log.records, CONFIG, "test")
        assert snapshot is not None and sorted(snapshot.models) == ["a"] and changelog.gen == 1
        assert changelog.last_gen == (2 if gen == 2 else 1)


def test_a_partition_record_whose_header_does_not_name_its_own_checkpoint_is_passed_over() -> None:
    """A copy of a partition record of ours under a header with another number (2**64 - 1 here: the next
    checkpoint's number would not encode) is not that checkpoint: the number under the seal is."""
    log, crashed, _ = checkpointed_log()
    ours_now = next(r for r in log.records if r.key.startswith(b"partition/"))
    log.records.append(ours_now._replace(offset=len(log.records), key=statetopic.partition_key(0, 0), gen=2**64 - 1))
    snapshot, changelog = statetopic.restore(0, log.records, CONFIG, "test")
    assert snapshot is not None and changelog.gen == changelog.last_gen == 1


def test_a_partition_record_that_does_not_unpack_and_no_checkpoint_before_it_is_refused_naming_its_offset() -> None:
    records = [Stored(0, b"x", b"y", 1, 1), Stored(1, statetopic.partition_key(1, 0), b"junk", 1, 1)]
    with pytest.raises(SnapshotError, match=r"test partition record 1 \(offset 1\) .*delete the topic"):
        statetopic.restore(0, records, CONFIG, "test")
