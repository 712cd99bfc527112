"""The state topic's local cache keeps each model as the topic's value and its summary; a partition restored
from it keeps its models encoded (``core/dormant.py``) until their first event (issue 16: 10,000 models from
the cache plus the topic's tail in <= 3 s). A lazily restored model must be exactly an eagerly restored one."""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from dataclasses import replace

import numpy as np
import orjson
import pytest

from state_log import StateLog
from streamdrift.cli import status
from streamdrift.core import state
from streamdrift.core import summary as summary_module
from streamdrift.core.config import MonitorSettings
from streamdrift.core.dormant import Dormant
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.errors import SnapshotError
from streamdrift.core.monitor import ModelMonitor, monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.summary import stored_summary, summary_from_stored
from streamdrift.runtime import statecache, statetopic
from streamdrift.runtime.checkpoint import LocalSnapshotStore
from streamdrift.runtime.settings import load_settings
from streamdrift.runtime.statetopic import Changelog
from streams import FB, PRED, demo_messages

SETTINGS = MonitorSettings(reference_size=200, window_size=200, subwindows=4)
SEAL = state.Seal.of({"monitor": "test"}, {"group": "g"})
MESSAGES = demo_messages(4000, seed=4, drift_at=1000)  # three models, drift in credit-risk past its warm-up
CUT = 1200  # the checkpoint: every model past its warm-up; after it, credit-risk drifts
QUIET = "churn"  # gets no event after the restore: stays dormant until its state is asked for


def engine() -> PartitionEngine:
    return PartitionEngine(0, PRED, FB, monitor_factory(SETTINGS), epoch_ms=1000, require_record_time=False)


def feed(engine: PartitionEngine, messages: list[RawMessage]) -> list[dict]:
    events = []
    for at in range(0, len(messages), 300):
        chunk = messages[at : at + 300]
        for topic in (PRED, FB):
            engine.add(topic, [m for m in chunk if m.topic == topic])
        events += engine.release(ended={PRED, FB}).events
    return events


def checkpointed(
    log: StateLog,
    source: PartitionEngine,
    changed: set[str],
    changelog: Changelog,
    summaries: bool = False,
    seal: state.Seal = SEAL,
) -> Changelog:
    """One checkpoint of ``changed`` to ``log``: its model records with their summaries, as the worker writes
    them, or (``summaries`` False) without, as the release before wrote them."""
    snapshot = source.snapshot(changed)
    records, after = statetopic.checkpoint_records(
        snapshot,
        changed,
        changelog,
        seal,
        1 << 20,
        monitored=source.monitors,
        summaries=statetopic.summaries(source.monitors, snapshot.models) if summaries else {},
    )
    return log.commit(records, after)


def snapshot_bytes(source: PartitionEngine) -> bytes:
    return state.encode(source.snapshot(), SEAL)


@pytest.fixture
def cached(tmp_path):
    """A partition checkpointed at CUT to the state topic and its cache, then one model (fraud) checkpointed
    again: the topic's tail past the cache. Returns the store, the log, and the engine that wrote them."""
    store = LocalSnapshotStore(tmp_path, SEAL)
    log = StateLog()
    first = engine()
    feed(first, MESSAGES[:CUT])
    changelog = checkpointed(log, first, set(first.monitors), Changelog())
    store.write(*statecache.cache_body(first, changelog.state(), SEAL))
    tail = [m for m in MESSAGES[CUT : CUT + 100] if m.key == b"fraud"]
    feed(first, tail)
    checkpointed(log, first, {"fraud"}, changelog)
    return store, log, first, CUT + 100


def restored(store: LocalSnapshotStore, log: StateLog, lazily: bool) -> PartitionEngine:
    cache = store.load(0)
    assert cache is not None
    if not lazily:  # what an eager restore builds: every model decoded from the same values
        cache.models = {m: d.load(d.value) if isinstance(d, Dormant) else d for m, d in cache.models.items()}
    start = next(i for i, r in enumerate(log.records) if r.offset == cache.changelog["offset"] - 1)
    snapshot, _ = statetopic.restore(0, log.records[start:], SEAL, "test", cache)
    return engine_of(snapshot)


def engine_of(snapshot: state.Snapshot | None) -> PartitionEngine:
    """A new engine restored from ``snapshot`` (a restore that found state)."""
    assert snapshot is not None
    out = engine()
    out.restore(snapshot)
    return out


def test_a_model_restored_from_the_cache_stays_encoded_and_carries_on_as_an_eager_one(cached) -> None:
    store, log, written, at = cached
    lazy, eager = restored(store, log, lazily=True), restored(store, log, lazily=False)
    assert sorted(m for m, d in lazy.monitors.items() if isinstance(d, Dormant)) == ["churn", "credit-risk"]
    assert isinstance(lazy.monitors["fraud"], ModelMonitor)  # its newer state came from the topic's tail
    assert {m: d.summary() for m, d in lazy.monitors.items()} == {m: e.summary() for m, e in eager.monitors.items()}
    assert lazy.offsets == eager.offsets == written.offsets and lazy.event_clock == eager.event_clock

    rest = [m for m in MESSAGES[at:] if m.key != QUIET.encode()]
    events = feed(lazy, rest)
    assert events == feed(eager, rest) == feed(written, rest)
    assert [e["kind"] for e in events if e["model_id"] == "credit-risk"]  # the drift it was written for
    assert isinstance(lazy.monitors[QUIET], Dormant)  # no event: still its stored bytes
    assert not any(isinstance(m, Dormant) for m in eager.monitors.values())
    assert snapshot_bytes(lazy) == snapshot_bytes(eager) == snapshot_bytes(written)
    assert isinstance(lazy.monitors[QUIET], ModelMonitor)  # woken: its state was asked for


def test_a_cache_written_with_dormant_models_keeps_their_bytes_and_restores_the_same(cached, tmp_path) -> None:
    store, log, _, _ = cached
    lazy, eager = restored(store, log, lazily=True), restored(store, log, lazily=False)
    changelog = store.load(0).changelog  # type: ignore[union-attr]
    again_lazy = LocalSnapshotStore(tmp_path / "lazy", SEAL)
    again_eager = LocalSnapshotStore(tmp_path / "eager", SEAL)
    again_lazy.write(*statecache.cache_body(lazy, changelog, SEAL))
    again_eager.write(*statecache.cache_body(eager, changelog, SEAL))
    assert isinstance(lazy.monitors[QUIET], Dormant)  # writing the cache did not wake it
    # a dormant model's stored bytes are the value an eager one packs again: the same file
    assert again_lazy.path(0).read_bytes() == again_eager.path(0).read_bytes()
    loaded = again_lazy.load(0)
    assert loaded is not None and isinstance(loaded.models[QUIET], Dormant)
    assert loaded.models[QUIET].value == store.load(0).models[QUIET].value  # type: ignore[union-attr]


def test_packed_values_of_the_checkpoint_are_taken_as_they_are(cached, tmp_path) -> None:
    """The forked checkpoint hands the cache the values it packed for the topic: those, not others."""
    store, log, written, _ = cached
    values: dict[str, bytes] = {}
    statetopic.checkpoint_records(
        written.snapshot({"fraud"}),
        {"fraud"},
        Changelog(),
        SEAL,
        1 << 20,
        monitored=written.monitors,
        values=values,
        summaries=statetopic.summaries(written.monitors, ["fraud"]),  # as the worker packs them
    )
    assert list(values) == ["fraud"]
    tree = statecache.cache_tree(written, {}, SEAL, {"fraud": b"taken as it is"})
    assert tree[statecache.LAYOUT]["models"]["fraud"]["value"].tobytes() == b"taken as it is"
    assert state.dumps(statecache.cache_tree(written, {}, SEAL, values)) == state.dumps(
        statecache.cache_tree(written, {}, SEAL, {})
    )


def test_the_summaries_of_the_checkpoint_are_taken_as_they_are(cached, monkeypatch) -> None:
    """The forked checkpoint hands the cache the summaries its records carry too: not made again (about 0.1 ms a
    model), and stored as the same bytes as one made again."""
    _, _, written, _ = cached
    made = state.dumps(statecache.cache_tree(written, {}, SEAL, {}))
    shown = statetopic.summaries(written.monitors, written.monitors)
    assert sorted(shown) == sorted(written.monitors)
    monkeypatch.setattr(statecache, "stored_summary", lambda s: pytest.fail("summary made again"))
    assert state.dumps(statecache.cache_tree(written, {}, SEAL, {}, None, shown)) == made


def test_the_summary_is_stored_exactly_or_not_at_all() -> None:
    monitors = engine()
    feed(monitors, MESSAGES[:CUT])
    for monitor in monitors.monitors.values():
        summary = monitor.summary()  # type: ignore[union-attr]
        data = stored_summary(summary)
        assert data is not None and summary_from_stored(data) == summary
        assert summary_module.summary_from_doc(summary_module.summary_doc(summary)) == summary
        assert orjson.loads(data)["model_id"] == monitor.model_id  # type: ignore[union-attr]
    summary = monitors.monitor(QUIET).summary()
    for unstorable in (
        replace(summary, concept_statistic=math.nan),  # JSON has no NaN: it would come back None
        replace(summary, feature_scores={"x": math.inf}),
        replace(summary, versions={1: 2}),  # a key JSON would turn into a string
        replace(summary, window_performance={"confusion": ((1, 2), (3, 4))}),  # tuples would come back lists
    ):
        assert stored_summary(unstorable) is None
        assert summary_module.summary_doc(unstorable) is None  # nor in a state-topic record: decoded at restore


def test_a_stored_summary_leaves_out_what_its_reports_derive_from_their_confusion_matrix() -> None:
    """A classification report's rows, accuracy, precision, recall and F1 (binary, macro, per class) are its
    confusion matrix's: a stored summary leaves them out and reading it derives them again, the same summary; a
    report whose figures are not its matrix's is stored whole."""
    monitors = engine()
    feed(monitors, MESSAGES[:CUT])
    derived = {"rows", "accuracy", "error_rate", "precision", "recall", "f1", "macro_f1", "per_class"}
    left_out = 0
    for monitor in monitors.monitors.values():
        summary = monitor.summary()  # type: ignore[union-attr]
        doc = summary_module.summary_doc(summary)
        assert doc is not None and summary_module.summary_from_doc(doc) == summary
        for scope, report in summary.as_dict()["performance"].items():
            if "confusion" in report:
                assert not derived & set(doc["performance"][scope]), scope
                left_out += 1
    assert left_out  # not vacuous: the stream's models have labels
    report = summary.cumulative_performance  # the last model's
    assert "confusion" in report
    other = replace(summary, cumulative_performance={**report, "accuracy": report["accuracy"] / 2})
    doc = summary_module.summary_doc(other)
    assert doc is not None and doc["performance"]["cumulative"]["accuracy"] == report["accuracy"] / 2
    assert summary_module.summary_from_doc(doc) == other


@pytest.mark.parametrize(
    "confusion",
    [
        {"labels": 5, "matrix": [[1]]},  # labels not a list
        {"labels": ["0", "1"], "matrix": [[1, 2]]},  # not square
        {"labels": ["0"], "matrix": [[10**30]]},  # past int64
        {"labels": ["0"], "matrix": "x"},
        {"labels": [["0"]], "matrix": [[1]]},
        {"labels": ["0"]},
    ],
)
def test_a_stored_report_whose_confusion_matrix_is_not_one_is_refused_as_other_fields(confusion) -> None:
    """What a restore takes for another code's summary (KeyError, TypeError or ValueError: the model is decoded
    instead), never another exception, which would stop the restore: a record's summary is not under a MAC
    without snapshot_key, so anyone who can write to the state topic can write it."""
    monitors = engine()
    feed(monitors, MESSAGES[:CUT])
    summary = next(m for m in monitors.monitors.values() if "confusion" in m.summary().cumulative_performance).summary()  # type: ignore[union-attr]
    doc = summary_module.summary_doc(summary)
    assert doc is not None and "rows" not in doc["performance"]["cumulative"]  # stored without its derived figures
    doc["performance"]["cumulative"]["confusion"] = confusion
    with pytest.raises((KeyError, TypeError, ValueError)):
        summary_module.summary_from_doc(doc)
    for report in (["a", "list"], "a string"):  # a report that is no dict is read as it was before: as it is
        doc["performance"]["cumulative"] = report
        assert summary_module.summary_from_doc(doc).cumulative_performance == report


def test_a_model_whose_summary_could_not_be_stored_is_decoded_at_load(cached, monkeypatch, tmp_path) -> None:
    store, log, written, _ = cached
    monkeypatch.setattr(statecache, "stored_summary", lambda s: None if s.model_id == QUIET else stored_summary(s))
    other = LocalSnapshotStore(tmp_path / "other", SEAL)
    other.write(*statecache.cache_body(written, {}, SEAL))
    loaded = other.load(0)
    assert loaded is not None and not isinstance(loaded.models[QUIET], Dormant)
    assert isinstance(loaded.models["fraud"], Dormant)
    assert state.dumps(ModelMonitor.from_state(QUIET, SETTINGS, loaded.models[QUIET]).state()) == state.dumps(
        written.monitor(QUIET).state()
    )


def damaged(store: LocalSnapshotStore, change) -> LocalSnapshotStore:
    """The cache re-sealed (a valid checksum) with its tree changed by ``change``."""
    tree = state.decode_tree(store.path(0).read_bytes(), SEAL, "f", "")
    change(tree)
    store.write(0, *state.tree_body(tree))
    return store


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda t: t[statecache.LAYOUT].update(version=2), "a state cache of layout 2; this streamdrift reads 1"),
        (lambda t: t[statecache.LAYOUT]["models"]["fraud"].pop("value"), "corrupt \\(KeyError"),
        (
            lambda t: t[statecache.LAYOUT]["models"]["fraud"].update(value=np.zeros(3, np.int32)),
            "not an array of bytes",
        ),
        (lambda t: t[statecache.LAYOUT]["models"]["fraud"].update(quarantined=[1]), "quarantine is not an object"),
        (lambda t: t[statecache.LAYOUT].update(changelog=[]), "changelog is not an object"),
        (  # a value no dictionary of this streamdrift inflates: refused at load, not at the model's first event
            lambda t: t[statecache.LAYOUT]["models"]["fraud"].update(
                value=np.frombuffer(b"\x78\x20\x00\x00\x00\x01rest", np.uint8)
            ),
            "model 'fraud' was compressed with a dictionary this streamdrift does not have",
        ),
        (  # a known dictionary's id and a broken stream: refused at load too, so the worker falls back to the topic
            lambda t: t[statecache.LAYOUT]["models"]["fraud"].update(
                value=broken_stream(t[statecache.LAYOUT]["models"]["fraud"]["value"])
            ),
            "model 'fraud' is corrupt \\(Error -3 while decompressing",
        ),
    ],
)
def test_a_foreign_or_malformed_cache_is_refused(cached, change, reason) -> None:
    """The worker then rebuilds the partition from the topic (``Worker._load_cache``)."""
    store, *_ = cached
    with pytest.raises(SnapshotError, match=reason):
        damaged(store, change).load(0)


def test_an_older_reader_finds_no_changelog_in_the_cache(cached) -> None:
    """What a streamdrift before this layout reads: no offsets, no models, no changelog, so it rebuilds from
    the topic rather than taking an empty state for a cache."""
    store, *_ = cached
    old = state.decode(store.path(0).read_bytes(), SEAL, "f")
    assert (old.offsets, old.models, old.changelog) == ({}, {}, {})


def test_a_cache_of_the_layout_before_is_still_read(cached, tmp_path) -> None:
    store, log, written, _ = cached
    changelog = store.load(0).changelog  # type: ignore[union-attr]
    before = LocalSnapshotStore(tmp_path / "before", SEAL)
    old = written.snapshot()
    old.changelog = changelog
    before.save(old)
    loaded = before.load(0)
    assert loaded is not None and not any(isinstance(m, Dormant) for m in loaded.models.values())
    assert snapshot_bytes(engine_of(loaded)) == snapshot_bytes(written)


def test_a_model_unchanged_since_the_cache_keeps_its_bytes_from_it_and_a_changed_one_does_not(
    cached, monkeypatch
) -> None:
    """A woken model that had no event since is not packed again: the cache on disk holds its committed value
    where its ledger entry (slot, chunks, checkpoint) is the same; anywhere else it is packed."""
    store, log, _, _ = cached
    lazy = restored(store, log, lazily=True)
    lazy.monitor(QUIET)  # woken (its state was asked for), not changed
    previous = store.load(0)
    assert previous is not None
    changelog = dict(previous.changelog)
    monkeypatch.setattr(statecache, "pack", lambda *a: pytest.fail("packed again"))
    tree = statecache.cache_tree(lazy, changelog, SEAL, {"fraud": b"packed by the checkpoint"}, previous)
    kept = tree[statecache.LAYOUT]["models"][QUIET]
    assert kept["value"].tobytes() == previous.models[QUIET].value  # type: ignore[union-attr]
    assert kept["summary"].tobytes() == previous.models[QUIET].stored  # type: ignore[union-attr]

    moved = {**changelog, "models": {**changelog["models"], QUIET: [1, 1, 99]}}  # written since: another value
    packed_again: list[str] = []
    monkeypatch.setattr(statecache, "pack", lambda tree, seal, summary: packed_again.append("x") or b"fresh")
    tree = statecache.cache_tree(lazy, moved, SEAL, {"fraud": b"packed by the checkpoint"}, previous)
    assert tree[statecache.LAYOUT]["models"][QUIET]["value"].tobytes() == b"fresh" and packed_again == ["x"]


def test_status_of_a_cache_directory_shows_the_stored_summaries(tmp_path) -> None:
    """``streamdrift status --snapshots`` over a state cache reads the summaries kept in it (no monitor built)."""
    app = load_settings(monitor={"reference_size": 200, "window_size": 200, "subwindows": 4})
    source = PartitionEngine(
        0, PRED, FB, monitor_factory(app.monitor, app.models), epoch_ms=1000, require_record_time=False
    )
    feed(source, MESSAGES[:CUT])
    LocalSnapshotStore(tmp_path, app.state_seal()).write(*statecache.cache_body(source, {}, app.state_seal()))
    shown = status.from_snapshots(tmp_path, app)["partitions"]["0"]
    assert shown["offsets"] == source.offsets
    assert shown["models"] == {m: source.monitor(m).summary().as_dict() for m in source.monitors}


def test_a_summary_stored_with_other_fields_makes_its_model_decoded_at_load(cached, monkeypatch, tmp_path) -> None:
    """A cache written when summaries had other fields (an older or newer streamdrift): the models are built at
    load from their values, never shown with a summary this streamdrift misreads."""
    store, log, written, _ = cached

    def older(summary):
        doc = orjson.loads(stored_summary(summary))  # type: ignore[arg-type]
        del doc["last_event_time"]
        return orjson.dumps(doc)

    monkeypatch.setattr(statecache, "stored_summary", older)
    other = LocalSnapshotStore(tmp_path / "other", SEAL)
    other.write(*statecache.cache_body(written, {}, SEAL))
    loaded = other.load(0)
    assert loaded is not None and not any(isinstance(m, Dormant) for m in loaded.models.values())
    assert snapshot_bytes(engine_of(loaded)) == snapshot_bytes(written)


def test_a_summary_stored_by_code_of_another_summary_version_makes_its_model_decoded_at_load(
    cached, monkeypatch, tmp_path
) -> None:
    """Same fields, other figures (a release that computes one otherwise): the stored summary carries the
    SUMMARY_VERSION it was made under, and one of another version (or of none: before versions) is not shown."""
    store, log, written, _ = cached
    for version in (0, None):

        def other_code(summary, version=version):
            doc = orjson.loads(stored_summary(summary))  # type: ignore[arg-type]
            doc["summary_version"] = version
            return orjson.dumps(doc)

        monkeypatch.setattr(statecache, "stored_summary", other_code)
        other = LocalSnapshotStore(tmp_path / f"v{version}", SEAL)
        other.write(*statecache.cache_body(written, {}, SEAL))
        loaded = other.load(0)
        assert loaded is not None and not any(isinstance(m, Dormant) for m in loaded.models.values())


# What summary() shows for a fixed stream, pinned with the SUMMARY_VERSION it is shown under. A change to what a
# summary shows for the same state fails this test: bump summary.SUMMARY_VERSION, so that caches holding summaries
# of the code before are decoded at load rather than shown, and pin the new digest.
SUMMARY_PIN = (1, "c8b74344348aba698ed103f3cd0d98dbf5dce8c6e4e6454a25e6f7564f8b939e")


def test_what_a_summary_shows_is_pinned_with_its_version() -> None:

    monitors = engine()
    feed(monitors, MESSAGES)
    shown = orjson.dumps(
        {m: monitors.monitor(m).summary().as_dict() for m in sorted(monitors.monitors)}, option=orjson.OPT_SORT_KEYS
    )
    pin = (summary_module.SUMMARY_VERSION, hashlib.sha256(shown).hexdigest())
    assert pin == SUMMARY_PIN, "summary() shows other figures: bump SUMMARY_VERSION in core/summary.py and pin both"


def broken_stream(value: np.ndarray) -> np.ndarray:
    """``value`` with its zlib header (and so its dictionary id) kept and the compressed stream after it flipped:
    what only a writer bug makes (the file is checksummed)."""
    data = value.tobytes()
    return np.frombuffer(data[:6] + bytes(b ^ 0xFF for b in data[6:]), np.uint8)


def undecodable(value: np.ndarray) -> np.ndarray:
    """``value`` as a sound compressed stream (the same dictionary) of an encoded state with one byte of its body
    changed: it inflates, so loading accepts it, and only decoding it (its checksum) refuses it."""
    data = value.tobytes()
    encoded = bytearray(statetopic.inflate(data))
    encoded[-10] ^= 1
    deflate = zlib.compressobj(zdict=statetopic.dictionary_of(data, "", ""))  # type: ignore[arg-type]
    return np.frombuffer(deflate.compress(bytes(encoded)) + deflate.flush(), np.uint8)


def test_a_broken_stream_refuses_the_cache_at_load_and_the_topic_restores_what_it_held(cached) -> None:
    """Nothing lost: the worker rebuilds a partition whose cache it cannot load from the topic (``Worker._load_cache``),
    as from a stale cache, where waking the value at the model's first event could only quarantine the model."""
    store, log, written, _ = cached
    quiet = lambda t: t[statecache.LAYOUT]["models"][QUIET]  # noqa: E731
    damaged(store, lambda t: quiet(t).update(value=broken_stream(quiet(t)["value"])))
    with pytest.raises(SnapshotError, match=f"model '{QUIET}' is corrupt"):
        store.load(0)
    snapshot, _ = statetopic.restore(0, log.records, SEAL, "test")
    assert snapshot_bytes(engine_of(snapshot)) == snapshot_bytes(written)


@pytest.fixture
def broken(cached):
    """The cache's QUIET model stored as a value that inflates and does not decode, restored lazily: it stays
    `Dormant` until woken."""
    store, log, written, at = cached
    damaged(
        store,
        lambda t: t[statecache.LAYOUT]["models"][QUIET].update(
            value=undecodable(t[statecache.LAYOUT]["models"][QUIET]["value"])
        ),
    )
    lazy = restored(store, log, lazily=True)
    assert isinstance(lazy.monitors[QUIET], Dormant)
    return lazy, written, at


def test_a_stored_value_that_cannot_be_woken_quarantines_its_model_at_its_first_event(broken) -> None:
    """No model can stop the engine: waking a broken value raised SnapshotError out of ``release``, which
    stopped the worker (again at every restart). It quarantines the model as a processing error does."""
    lazy, written, at = broken
    changed: list[str] = []
    lazy.on_batch = lambda topic, batch, monitored, events: monitored and changed.append(batch.model_id)
    rest = MESSAGES[at:]
    lazy.add(PRED, [m for m in rest if m.topic == PRED])
    lazy.add(FB, [m for m in rest if m.topic == FB])
    out = lazy.release(ended={PRED, FB})
    quiet = [(m.topic, m.offset) for m in rest if m.key == QUIET.encode()]
    rejected = [r.reason for r in out.rejected if (r.message.topic, r.message.offset) in quiet]
    assert len(rejected) == len(quiet) and len(out.rejected) == len(quiet)  # all of its records, only those
    woken = [reason for reason in rejected if reason != f"processing_error: model '{QUIET}' is quarantined"]
    assert woken and len(set(woken)) == 1  # the batch that woke it: its reason names the failure, not a value
    assert re.fullmatch(
        rf"processing_error: SnapshotError at state\.py:\d+ \(\w+\) waking its stored state; model '{QUIET}' quarantined",
        woken[0],
    )
    assert rejected[: len(woken)] == woken
    assert QUIET in changed  # so the worker checkpoints the quarantine, as it does a processing error's
    monitor = lazy.monitors[QUIET]
    assert isinstance(monitor, ModelMonitor) and monitor.quarantined is not None
    assert monitor.quarantined["error"] == "SnapshotError" and lazy.processing_errors == 1
    assert monitor.predictions_total == 0  # a fresh state, as a processing error leaves it
    assert [e for e in out.events if e["model_id"] != QUIET] == [
        e for e in feed(written, rest) if e["model_id"] != QUIET
    ]  # the other models carry on as if nothing happened


def test_a_stored_value_that_cannot_be_woken_for_a_snapshot_quarantines_its_model(broken) -> None:
    """Waking for a checkpoint (``snapshot``) or for ``/status`` must not stop the worker either: /status shows
    the stored summary without waking; a snapshot writes the quarantine, which a restart restores as it is."""
    lazy, written, _ = broken
    assert lazy.monitors[QUIET].summary() == written.monitor(QUIET).summary()  # /status: no wake
    snapshot = lazy.snapshot()
    assert snapshot.models[QUIET]["quarantined"]["error"] == "SnapshotError"  # type: ignore[index]
    assert lazy.processing_errors == 1
    again = engine()
    again.restore(state.decode(state.encode(snapshot, SEAL), SEAL, "test"))
    assert again.monitor(QUIET).quarantined == lazy.monitor(QUIET).quarantined


def test_an_unusable_cache_is_said_to_be_rebuilt_from_the_topic_not_to_be_moved_away(tmp_path, caplog) -> None:
    """With the state topic a cache that cannot be read is rebuilt from the topic by the worker itself: its log line
    must not tell the operator to move the file and accept a fresh warm-up (the local store's advice, where that
    file is the only state there is)."""
    from streamdrift.runtime.settings import Settings
    from streamdrift.runtime.worker import Worker

    for store, advice in (("kafka", "rebuilds the partition from the state topic"), ("local", "Move ")):
        directory = tmp_path / store
        worker = Worker(Settings(snapshot_dir=directory, state_store=store))
        directory.mkdir()
        worker.store.path(0).write_bytes(b'{"not": "a snapshot"}')
        with pytest.raises(SnapshotError) as info:
            worker.store.load(0)
        assert advice in str(info.value)
        assert ("fresh warm-up" in str(info.value)) == (store == "local")
    caplog.clear()
    kafka = Worker(Settings(snapshot_dir=tmp_path / "kafka"))
    assert kafka._load_cache(0) is None
    [line] = [r for r in caplog.records if r.getMessage() == "local snapshot unusable as a cache"]
    assert "rebuilds the partition from the state topic" in line.fields["error"]  # type: ignore[attr-defined]


# -- the topic alone: a model record carries its summary, so a restore keeps it encoded too -------------------


@pytest.fixture
def topic():
    """The partition checkpointed at CUT to the state topic alone, each model record with its summary as the
    worker writes it, then fraud checkpointed again; and the same checkpoints as the release before wrote them
    (no summaries). Returns both logs, the engine that wrote them, and where its stream stands."""
    with_summaries, without = StateLog(), StateLog()
    first = engine()
    feed(first, MESSAGES[:CUT])
    every = set(first.monitors)
    changelogs = [
        checkpointed(log, first, every, Changelog(), summaries=log is with_summaries)
        for log in (with_summaries, without)
    ]
    feed(first, [m for m in MESSAGES[CUT : CUT + 100] if m.key == b"fraud"])
    for log, changelog in zip((with_summaries, without), changelogs, strict=True):
        checkpointed(log, first, {"fraud"}, changelog, summaries=log is with_summaries)
    return with_summaries, without, first, CUT + 100


def from_topic(log: StateLog, seal: state.Seal = SEAL) -> PartitionEngine:
    snapshot, _ = statetopic.restore(0, log.records, seal, "test")
    return engine_of(snapshot)


def test_a_model_restored_from_the_topic_alone_stays_encoded_and_carries_on_as_an_eager_one(topic) -> None:
    with_summaries, without, written, at = topic
    lazy, eager = from_topic(with_summaries), from_topic(without)
    assert all(isinstance(d, Dormant) for d in lazy.monitors.values()) and len(lazy.monitors) == 3
    assert not any(isinstance(m, Dormant) for m in eager.monitors.values())  # the release before's records
    assert {m: d.summary() for m, d in lazy.monitors.items()} == {
        m: written.monitor(m).summary() for m in written.monitors
    }
    assert lazy.offsets == eager.offsets == written.offsets and lazy.event_clock == eager.event_clock
    # a dormant model keeps its record's value: a checkpoint writes it back as it is, summary and all
    records = {r.key: r.value for r in with_summaries.records}
    assert lazy.monitors["fraud"].value == records[statetopic.model_key(1, 0, "fraud")]  # type: ignore[union-attr]

    rest = [m for m in MESSAGES[at:] if m.key != QUIET.encode()]
    events = feed(lazy, rest)
    assert events == feed(eager, rest) == feed(written, rest)
    assert [e["kind"] for e in events if e["model_id"] == "credit-risk"]  # the drift it was written for
    assert isinstance(lazy.monitors[QUIET], Dormant)  # no event: still its stored bytes
    assert snapshot_bytes(lazy) == snapshot_bytes(eager) == snapshot_bytes(written)
    assert isinstance(lazy.monitors[QUIET], ModelMonitor)  # woken: its state was asked for


def test_a_record_with_a_summary_restores_the_state_the_record_without_one_does(topic) -> None:
    """The summary is in the header, beside the state: the state read from either record is the same."""
    with_summaries, without, _, _ = topic
    lazy, _ = statetopic.restore(0, with_summaries.records, SEAL, "test")
    eager, _ = statetopic.restore(0, without.records, SEAL, "test")
    assert lazy is not None and eager is not None
    woken = {m: d.load(d.value) for m, d in lazy.models.items() if isinstance(d, Dormant)}
    assert len(woken) == 3 and state.dumps(woken) == state.dumps(eager.models)


def test_a_cache_written_after_a_restore_from_the_topic_alone_is_the_eager_ones(topic, tmp_path) -> None:
    """The dormant models' values and summaries go to the cache as they are: the same file as from built
    monitors, and a restore from it keeps them encoded."""
    with_summaries, _, written, _ = topic
    lazy = from_topic(with_summaries)
    eager = from_topic(with_summaries)
    for model_id in list(eager.monitors):
        eager.monitor(model_id)
    _, changelog = statetopic.restore(0, with_summaries.records, SEAL, "test")
    files = []
    for name, source in (("lazy", lazy), ("eager", eager)):
        store = LocalSnapshotStore(tmp_path / name, SEAL)
        store.write(*statecache.cache_body(source, changelog.state(), SEAL))
        files.append(store.path(0).read_bytes())
    assert files[0] == files[1]
    assert all(isinstance(d, Dormant) for d in lazy.monitors.values())  # writing the cache woke none
    loaded = LocalSnapshotStore(tmp_path / "lazy", SEAL).load(0)
    assert loaded is not None and all(isinstance(d, Dormant) for d in loaded.models.values())


@pytest.mark.parametrize("version", [0, None, "fields"])
def test_a_record_summary_of_another_version_or_fields_is_decoded_at_load(topic, monkeypatch, version) -> None:
    """A record of a release whose summaries differ (another SUMMARY_VERSION, none, other fields) is decoded at
    load and its summary made from its state, never shown as this release's."""
    _, _, written, _ = topic

    def other_code(summary, version=version):
        doc = summary_module.summary_doc(summary)
        assert doc is not None
        if version == "fields":
            del doc["last_event_time"]
        else:
            doc["summary_version"] = version
        return doc

    monkeypatch.setattr(statetopic, "summary_doc", other_code)
    log = StateLog()
    checkpointed(log, written, set(written.monitors), Changelog(), summaries=True)
    header = state.checked_header(statetopic.inflate(log.records[0].value), statetopic.model_seal(SEAL), "t", "")  # type: ignore[arg-type]
    assert "summary" in header.fields  # written, then not taken
    restored = from_topic(log)
    assert not any(isinstance(m, Dormant) for m in restored.monitors.values())
    assert snapshot_bytes(restored) == snapshot_bytes(written)


KEYED = state.Seal.of({"monitor": "test"}, {"group": "g"}, b"snapshot key")


def forged(value: bytes, change) -> bytes:
    """``value`` with its header's summary changed by ``change`` and compressed again as ``pack`` does (its MAC
    kept): what a writer of the state topic without the snapshot_key could make."""
    encoded = statetopic.inflate(value)
    end = encoded.index(b"\n")
    header = orjson.loads(encoded[:end])
    change(header["summary"])
    deflate = zlib.compressobj(statetopic.COMPRESS_LEVEL, zdict=statetopic.state_dictionary.CURRENT)
    return deflate.compress(orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + encoded[end:]) + deflate.flush()


def test_a_record_summary_is_covered_by_the_mac_as_its_state_is(topic) -> None:
    """With a snapshot_key a forged summary (false figures on /status) is refused as a forged state is."""
    _, _, written, _ = topic
    log = StateLog()
    checkpointed(log, written, set(written.monitors), Changelog(), summaries=True, seal=KEYED)
    assert all(isinstance(d, Dormant) for d in from_topic(log, KEYED).monitors.values())
    at = next(i for i, r in enumerate(log.records) if r.key == statetopic.model_key(0, 0, QUIET))
    record = log.records[at]
    assert record.value is not None
    log.records[at] = record._replace(value=forged(record.value, lambda s: s.update(predictions_total=10**6)))
    with pytest.raises(SnapshotError, match=f"model '{QUIET}' was modified or written under another snapshot_key"):
        statetopic.restore(0, log.records, KEYED, "test")


def test_a_quarantined_model_is_written_without_a_summary_and_restored_with_its_quarantine(topic) -> None:
    """A dormant model is not quarantined (``Dormant.quarantined`` None): the quarantine is in the state, so a
    record that could hold one carries no summary and is decoded at load."""
    _, _, written, _ = topic
    written.monitor(QUIET).quarantine("RuntimeError", "test.py:1 (planted)", PRED)
    assert QUIET not in statetopic.summaries(written.monitors, written.monitors)
    log = StateLog()
    checkpointed(log, written, set(written.monitors), Changelog(), summaries=True)
    restored = from_topic(log)
    assert isinstance(restored.monitors["fraud"], Dormant)
    assert isinstance(restored.monitors[QUIET], ModelMonitor)
    assert restored.monitors[QUIET].quarantined == written.monitor(QUIET).quarantined
    assert restored.quarantined_models == 1


def pack_with_summary_of(tree: dict, summary_of: PartitionEngine) -> bytes:
    return statetopic.pack(
        tree, statetopic.model_seal(SEAL), summary_module.summary_doc(summary_of.monitor(QUIET).summary())
    )


def test_a_record_that_inflates_and_cannot_be_built_quarantines_its_model_when_it_wakes(topic) -> None:
    """Its header checked (checksum, settings), its body a state no monitor is built from (only a writer bug
    makes one): the restore keeps it dormant, and its first event quarantines it as the cache's would."""
    with_summaries, _, written, at = topic
    key = statetopic.model_key(0, 0, QUIET)
    i = next(i for i, r in enumerate(with_summaries.records) if r.key == key)
    record = with_summaries.records[i]
    with_summaries.records[i] = record._replace(value=pack_with_summary_of({"not": "a monitor"}, written))
    lazy = from_topic(with_summaries)
    assert isinstance(lazy.monitors[QUIET], Dormant)
    rest = MESSAGES[at:]
    lazy.add(PRED, [m for m in rest if m.topic == PRED])
    lazy.add(FB, [m for m in rest if m.topic == FB])
    out = lazy.release(ended={PRED, FB})
    quiet = {(m.topic, m.offset) for m in rest if m.key == QUIET.encode()}
    rejected = [r for r in out.rejected if (r.message.topic, r.message.offset) in quiet]
    assert len(rejected) == len(quiet) == len(out.rejected)
    assert "waking its stored state" in rejected[0].reason
    monitor = lazy.monitors[QUIET]
    assert isinstance(monitor, ModelMonitor) and monitor.quarantined is not None and lazy.processing_errors == 1
    assert [e for e in out.events if e["model_id"] != QUIET] == [
        e for e in feed(written, rest) if e["model_id"] != QUIET
    ]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda v: broken_stream(np.frombuffer(v, np.uint8)).tobytes(), "is corrupt \\(Error -3 while decompressing"),
        (lambda v: undecodable(np.frombuffer(v, np.uint8)).tobytes(), "is corrupt or was modified \\(checksum"),
    ],
)
def test_a_record_that_does_not_inflate_or_fails_its_checksum_is_refused_at_restore(topic, damage, reason) -> None:
    """As an eager restore refused it: a restore from the topic alone has no other copy to rebuild from (the
    cache's refusal falls back to the topic; the topic's stops the worker naming the partition)."""
    with_summaries, _, _, _ = topic
    key = statetopic.model_key(0, 0, QUIET)
    i = next(i for i, r in enumerate(with_summaries.records) if r.key == key)
    record = with_summaries.records[i]
    with_summaries.records[i] = record._replace(value=damage(record.value))
    with pytest.raises(SnapshotError, match=f"model '{QUIET}' {reason}"):
        statetopic.restore(0, with_summaries.records, SEAL, "test")
