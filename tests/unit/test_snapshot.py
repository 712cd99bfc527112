"""Snapshot files: binary round trips of real monitor states, equal bytes for equal states, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib

import numpy as np
import orjson
import pytest

from streamdrift.core import state as snapshot
from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.errors import SnapshotError
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.state import Snapshot
from streamdrift.runtime.checkpoint import ForkedWrite, LocalSnapshotStore
from streams import FB, PRED, demo_messages, run_monitors, state_bytes

SETTINGS = MonitorSettings(reference_size=500, window_size=400, subwindows=4)
RECOVER = "Move .* away and restart"


def graded_stream(n: int, seed: int, regression: bool = False) -> list[RawMessage]:
    """Predictions of model "m" with a segment, half of them labelled 50 predictions later."""
    rng = np.random.default_rng(seed)
    out, offsets, pending = [], {PRED: 0, FB: 0}, []

    def add(topic: str, event: dict) -> None:
        out.append(RawMessage(topic, 0, offsets[topic], b"m", orjson.dumps(event)))
        offsets[topic] += 1

    for i in range(n):
        x = float(rng.normal())
        truth = 2 * x + float(rng.normal()) if regression else int(rng.random() < 1 / (1 + np.exp(-2 * x)))
        prediction = round(2 * x, 3) if regression else int(x > 0)
        event = {
            "event_id": f"e{i}",
            "model_id": "m",
            "model_version": f"v{i % 2}",
            "timestamp": 1_700_000_000 + i,
            "features": {"x": x, "kind": ["a", "b", "c"][i % 3], "$nd": i % 5},
            "prediction": prediction,
            "segment": {"region": ["north", "south"][i % 2]},
        }
        if not regression:
            event["score"] = round(float(1 / (1 + np.exp(-2 * x))), 4)
        add(PRED, event)
        if rng.random() < 0.5:
            pending.append((i + 50, {"event_id": f"e{i}", "model_id": "m", "label": truth}))
        while pending and pending[0][0] <= i:
            add(FB, {**pending.pop(0)[1], "timestamp": 1_700_000_000 + i})
    return out


@pytest.fixture(scope="module")
def demo():
    """Three demo models past warm-up, windows full, join buffers holding predictions."""
    monitors, _ = run_monitors(demo_messages(6000, seed=3, drift_at=1500), 500, SETTINGS)
    assert all(
        m.features.ready and m.performance is not None and len(m.join.predictions.entries) for m in monitors.values()
    )
    return monitors


def save_and_load(
    tmp_path,
    monitors: dict[str, ModelMonitor],
    settings: MonitorSettings = SETTINGS,
    model: ModelSettings | None = None,
) -> dict[str, ModelMonitor]:
    store = LocalSnapshotStore(tmp_path, settings.fingerprint())
    store.save(Snapshot(0, {PRED: 1, FB: 2}, {m: mon.state() for m, mon in monitors.items()}, {"epochs": {}}))
    loaded = store.load(0)
    assert loaded.offsets == {PRED: 1, FB: 2} and loaded.merge == {"epochs": {}}
    return {m: ModelMonitor.from_state(m, settings, st, model) for m, st in loaded.models.items()}


def test_restored_demo_monitors_have_byte_identical_state_and_carry_on_identically(tmp_path, demo):
    restored = save_and_load(tmp_path, demo)
    assert state_bytes(restored) == state_bytes(demo)
    assert {m: r.summary() for m, r in restored.items()} == {m: d.summary() for m, d in demo.items()}
    # and from there on they behave as if never interrupted
    more = demo_messages(9000, seed=3, drift_at=1500)[len(demo_messages(6000, seed=3, drift_at=1500)) :]
    again, _ = run_monitors(demo_messages(6000, seed=3, drift_at=1500), 500, SETTINGS)
    _, events_a = run_monitors(more, 500, SETTINGS, again)
    _, events_b = run_monitors(more, 500, SETTINGS, restored)
    assert events_a == events_b and state_bytes(restored) == state_bytes(again)


@pytest.mark.parametrize("regression, detector", [(False, "adwin"), (True, "cusum")])
def test_segments_regression_and_river_detectors_round_trip(tmp_path, regression, detector):
    settings = SETTINGS.model_copy(update={"concept_detector": detector})
    model = ModelSettings(segment_attributes=["region"], sensitive_attribute="region")
    monitors = {"m": ModelMonitor("m", settings, model)}
    run_monitors(graded_stream(3000, seed=5, regression=regression), 300, settings, monitors)
    assert monitors["m"].task == ("regression" if regression else "classification")
    restored = save_and_load(tmp_path, monitors, settings, model)
    assert state_bytes(restored) == state_bytes(monitors)
    assert restored["m"].summary() == monitors["m"].summary()


def test_equal_states_give_equal_bytes_and_arrays_keep_their_dtype(demo):
    twin, _ = run_monitors(demo_messages(6000, seed=3, drift_at=1500), 250, SETTINGS)  # other batch sizes
    snap = Snapshot(0, {PRED: 1}, {m: mon.state() for m, mon in demo.items()})
    assert snapshot.encode(snap, "c") == snapshot.encode(
        Snapshot(0, {PRED: 1}, {m: mon.state() for m, mon in twin.items()}), "c"
    )
    state = demo["credit-risk"].state()
    assert state["features"]["ring"].dtype == np.uint8  # counts of 100-row sub-windows
    back = snapshot.loads(snapshot.dumps(state))
    assert back["features"]["ring"].dtype == np.uint8 and not back["features"]["ring"].flags.writeable
    assert np.array_equal(back["features"]["ring"], state["features"]["ring"])


def test_restored_monitors_own_their_arrays(tmp_path, demo):
    """Loaded arrays are views of the file's bytes; a restored monitor keeps copies, never the file."""
    store = LocalSnapshotStore(tmp_path, SETTINGS.fingerprint())
    store.save(Snapshot(0, {}, {m: mon.state() for m, mon in demo.items()}))
    data = store.path(0).read_bytes()
    restored = ModelMonitor.from_state(
        "fraud", SETTINGS, snapshot.decode(data, SETTINGS.fingerprint(), "f").models["fraud"]
    )
    raw = np.frombuffer(data, dtype=np.uint8)
    sketch = restored.features
    held = [
        sketch.ring,
        *(c.edges for c in sketch.columns),
        *(c.ref_counts for c in sketch.columns),
        restored.performance.histograms,
        restored.quality_rates,
    ]
    assert not any(np.shares_memory(a, raw) for a in held)
    assert sketch.ring.flags.writeable and sketch.ring.dtype == np.uint8  # 100-row sub-windows, summed as int64


def warmup_made(monitor: ModelMonitor) -> list[bool]:
    """Per sketch with a warm-up under way: whether its warm-up's columns are made (False: still its state)."""
    sketches = (monitor.features, monitor.outputs, monitor.attributions, monitor.labels)
    return ["_warmup" in s.__dict__ for s in sketches if "_warmup" in s.__dict__ or s._stored_warmup is not None]


@pytest.mark.parametrize("stream", ["demo", "graded"])
def test_a_warm_up_restored_lazily_gives_the_same_bytes_summaries_and_events(tmp_path, stream):
    """A warm-up's columns are made at the model's first event after a restore (issue 16): until then its
    state is given back as restored; then it carries on as a model never restored."""
    if stream == "demo":
        messages, cut = demo_messages(6000, seed=4, drift_at=1500), 700  # three models, ~230 events each
    else:
        messages, cut = graded_stream(1500, seed=6), 400  # categories, "$nd", segments, scores; no drift
    before, events_before = run_monitors(messages[:cut], 100, SETTINGS)
    assert all(not m.features.ready for m in before.values())  # every model in its warm-up
    restored = save_and_load(tmp_path, before)
    assert all(warmup_made(m) == [False] * len(warmup_made(m)) and warmup_made(m) for m in restored.values())
    assert state_bytes(restored) == state_bytes(before)  # the restored state given back as it was
    assert {m: r.summary() for m, r in restored.items()} == {m: b.summary() for m, b in before.items()}
    assert all(not any(warmup_made(m)) for m in restored.values())  # neither made the columns

    never_restored, events = run_monitors(messages, 100, SETTINGS)
    _, events_after = run_monitors(messages[cut:], 100, SETTINGS, restored)
    assert events_before + events_after == events  # the same drift events (3 for the demo's drift)
    assert len(events) == (3 if stream == "demo" else 0)
    assert all(m.features.ready for m in restored.values())
    assert state_bytes(restored) == state_bytes(never_restored)


def test_a_warm_up_restored_lazily_owns_its_arrays(tmp_path):
    """Until its columns are made, a restored warm-up keeps copies of its arrays, never the file's bytes."""
    store = LocalSnapshotStore(tmp_path, SETTINGS.fingerprint())
    before, _ = run_monitors(graded_stream(300, seed=6), 100, SETTINGS)
    store.save(Snapshot(0, {}, {m: mon.state() for m, mon in before.items()}))
    data = store.path(0).read_bytes()
    restored = ModelMonitor.from_state("m", SETTINGS, snapshot.decode(data, SETTINGS.fingerprint(), "f").models["m"])
    kept = restored.features._stored_warmup
    arrays = [v for v in (*kept.values(), *kept["scores"].values()) if isinstance(v, np.ndarray)]
    # the columns' anchors, steps and counts (some dropped their distinct numbers), the distinct numbers of the
    # others (version 6), and their score sums (those of one row as places among theirs, version 7)
    written = ["anchors", "counts", "distinct_counts", "distinct_first", "distinct_steps", "steps"]
    assert sorted(k for k, v in kept.items() if isinstance(v, np.ndarray)) == written
    assert sorted(k for k, v in kept["scores"].items() if isinstance(v, np.ndarray)) == ["row_at", "row_sums", "sums"]
    assert len(arrays) == 9
    assert not any(np.shares_memory(a, np.frombuffer(data, dtype=np.uint8)) for a in arrays)


def test_strings_that_spell_the_marker_stay_strings():
    state = {"$nd": {"$nd": [0, "<i8", [1]]}, "x": np.arange(3, dtype=np.int32), "y": ["$nd1", {"$nd2": 1}]}
    back = snapshot.loads(snapshot.dumps(state))
    assert back["$nd"] == {"$nd": [0, "<i8", [1]]} and back["y"] == ["$nd1", {"$nd2": 1}]
    assert back["x"].tolist() == [0, 1, 2] and back["x"].dtype == np.int32


def test_arrays_in_lists_and_objects_are_refused_when_writing():
    with pytest.raises(TypeError, match="value of a dict key"):
        snapshot.dumps({"x": [np.zeros(2)]})
    with pytest.raises(TypeError, match="dtype object"):
        snapshot.dumps({"x": np.array([None])})
    with pytest.raises(TypeError, match="not set"):
        snapshot.dumps({"x": {1}})


@pytest.fixture
def saved(tmp_path, demo):
    store = LocalSnapshotStore(tmp_path, SETTINGS.fingerprint())
    store.save(Snapshot(0, {PRED: 7}, {m: mon.state() for m, mon in demo.items()}))
    return store, store.path(0), store.path(0).read_bytes()


def test_a_flipped_byte_anywhere_after_the_header_is_refused(saved):
    store, path, good = saved
    header_end = good.index(b"\n")
    for at in (header_end + 10, good.index(b"\n", header_end + 1) + 5, len(good) - 1):  # skeleton, arrays
        bad = bytearray(good)
        bad[at] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(SnapshotError, match=f"corrupt or was modified \\(checksum mismatch\\). {RECOVER}"):
            store.load(0)


def test_a_truncated_file_is_refused(saved):
    store, path, good = saved
    for size in (len(good) - 1, good.index(b"\n") + 100, good.index(b"\n") + 1):
        path.write_bytes(good[:size])
        with pytest.raises(SnapshotError, match=f"corrupt: truncated .* {RECOVER}"):
            store.load(0)
    path.write_bytes(good[:20])
    with pytest.raises(SnapshotError, match=f"not a streamdrift snapshot .* {RECOVER}"):
        store.load(0)


def test_another_version_is_refused_naming_both(saved):
    store, path, good = saved
    old = (
        b'{"config":"%s","format":"streamdrift-snapshot","sha256":"0","version":1}\n{"models":{}}\n'
        % SETTINGS.fingerprint().encode()
    )
    for data in (old, good.replace(b'"version":7', b'"version":8', 1)):
        path.write_bytes(data)
        with pytest.raises(
            SnapshotError, match=f"version [18]; this streamdrift reads .* versions 2, 3, 4, 5, 6 and 7. {RECOVER}"
        ):
            store.load(0)


def test_other_detection_settings_are_refused(saved):
    _, path, _ = saved
    other = LocalSnapshotStore(path.parent, SETTINGS.model_copy(update={"bins": 12}).fingerprint())
    with pytest.raises(SnapshotError, match="other detection settings .* Restore the old settings"):
        other.load(0)


def test_loading_never_builds_objects_from_the_file(saved):
    """A body whose checksum is right but which asks for object arrays (pickles) is refused, not unpickled."""
    store, path, good = saved
    header, rest = good.split(b"\n", 1)
    body = rest.replace(b'"<f8"', b'"|O8"', 1)
    fields = orjson.loads(header)
    fields["checksum"] = f"crc32:{zlib.crc32(body):08x}"
    path.write_bytes(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS) + b"\n" + body)
    with pytest.raises(SnapshotError, match=f"corrupt .*{RECOVER}"):
        store.load(0)
    path.write_bytes(b"\x80\x04\x95garbage")  # a pickle
    with pytest.raises(SnapshotError, match="not a streamdrift snapshot"):
        store.load(0)


# -- the forked writer ------------------------------------------------------------------------------


def test_forked_writer_writes_the_state_as_it_was_at_the_fork(tmp_path, demo):
    """The checkpoint's image is the instant of the fork: what the parent does next is not in it."""
    from streamdrift.core.decode import decode_predictions

    store = LocalSnapshotStore(tmp_path, SETTINGS.fingerprint())
    monitors = {m: ModelMonitor.from_state(m, SETTINGS, st) for m, st in snapshot.loads(state_bytes(demo)).items()}
    before = state_bytes(monitors)
    job = ForkedWrite(lambda: store.save(Snapshot(0, {PRED: 10}, {m: mon.state() for m, mon in monitors.items()})))
    more, _ = decode_predictions([m for m in demo_messages(300, seed=11) if m.topic == PRED])
    for batch in more:  # the parent goes on at once: more events, and a model dropped
        monitors[batch.model_id].observe_predictions(batch)
    assert state_bytes(monitors) != before
    dropped = sorted(monitors)[0]
    del monitors[dropped]
    written = job.wait()
    assert written == store.path(0).stat().st_size
    assert job.private_bytes > 0
    loaded = store.load(0)
    assert loaded.offsets == {PRED: 10} and dropped in loaded.models
    restored = {m: ModelMonitor.from_state(m, SETTINGS, st) for m, st in loaded.models.items()}
    assert state_bytes(restored) == before


def test_a_failing_forked_write_raises_its_reason_and_leaves_the_old_snapshot(tmp_path):
    store = LocalSnapshotStore(tmp_path, SETTINGS.fingerprint())
    store.save(Snapshot(0, {PRED: 1}, {}))

    def fail() -> int:
        raise PermissionError(13, "Permission denied", str(tmp_path / "partition-0.tmp"))

    with pytest.raises(SnapshotError, match=r"PermissionError: \[Errno 13\] Permission denied: .*partition-0\.tmp"):
        ForkedWrite(fail).wait()
    assert store.load(0).offsets == {PRED: 1}


def test_a_forked_writer_killed_by_a_signal_is_a_failed_write():
    job = ForkedWrite(lambda: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(SnapshotError, match="killed by signal 9"):
        job.wait()


def test_the_forked_writer_dies_with_its_parent(tmp_path):
    """A writer must never outlive a crashed worker (it could rename an old snapshot over a newer one)."""
    script = (
        "import sys, time; from streamdrift.runtime.checkpoint import ForkedWrite\n"
        "job = ForkedWrite(lambda: time.sleep(600) or 0)\n"
        "print(job.pid, flush=True); time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # alive while its parent is
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(child):
        time.sleep(0.05)
    try:
        assert not alive(child)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_fork_that_fails_raises_and_leaves_no_descriptor_open(monkeypatch):
    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="Cannot allocate memory"):
        ForkedWrite(lambda: 0)
    assert len(os.listdir("/proc/self/fd")) == before


# -- the Kafka state topic's records (runtime/statetopic.py), without a broker ------------------------

from state_log import StateLog  # noqa: E402
from streamdrift.runtime import statetopic  # noqa: E402
from streamdrift.runtime.statetopic import CacheStale, Changelog  # noqa: E402


def monitors_after(n: int) -> dict[str, ModelMonitor]:
    monitors, _ = run_monitors(demo_messages(n, seed=3, drift_at=10**9), 500, SETTINGS)
    return monitors


def checkpoint(part: StateLog, monitors, changed, changelog: Changelog, offsets, chunk_bytes=1 << 20):
    snap = Snapshot(0, offsets, {m: monitors[m].state() for m in changed}, {"epochs": {}, "epoch_ms": 100})
    records, after = statetopic.checkpoint_records(
        snap, changed, changelog, SETTINGS.fingerprint(), chunk_bytes, monitored=monitors
    )
    return records, part.commit(records, after)


def restored_bytes(snap: Snapshot) -> bytes:
    return state_bytes({m: ModelMonitor.from_state(m, SETTINGS, st) for m, st in snap.models.items()})


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 5000])
def test_state_topic_restore_gives_the_last_committed_state_and_offsets(chunk_bytes):
    part = StateLog()
    first = monitors_after(1200)
    _, log1 = checkpoint(part, first, sorted(first), Changelog(), {PRED: 800, FB: 400}, chunk_bytes)
    second = monitors_after(2400)
    changed = ["churn"]  # only churn's state is written again; the others keep checkpoint 1's
    _, log2 = checkpoint(part, second, changed, log1, {PRED: 1600, FB: 800}, chunk_bytes)
    expected = {m: (second if m in changed else first)[m] for m in first}
    for records in (part.records, part.compacted()):
        snap, changelog = statetopic.restore(0, records, SETTINGS.fingerprint(), "test")
        assert snap is not None and snap.offsets == {PRED: 1600, FB: 800}
        assert restored_bytes(snap) == state_bytes(expected)
        assert changelog.gen == 2 and changelog.offset == log2.offset and changelog.models == log2.models
    if chunk_bytes == 5000:  # a model's state is bigger than a record: split, and joined back
        assert max(r.chunks for r in part.records) > 1


def test_a_checkpoint_cut_short_leaves_the_previous_one_in_force():
    part = StateLog()
    first = monitors_after(1200)
    _, log1 = checkpoint(part, first, sorted(first), Changelog(), {PRED: 800, FB: 400}, 5000)
    second = monitors_after(2400)
    snap2 = Snapshot(0, {PRED: 1600, FB: 800}, {m: second[m].state() for m in second}, {"epochs": {}})
    records, _ = statetopic.checkpoint_records(
        snap2, sorted(second), log1, SETTINGS.fingerprint(), 5000, monitored=second
    )
    for cut in (1, len(records) // 2, len(records) - 1):  # a worker killed after `cut` records
        trial = StateLog()
        trial.records = list(part.records)
        trial.append(records[:cut])
        for log_records in (trial.records, trial.compacted()):
            snap, changelog = statetopic.restore(0, log_records, SETTINGS.fingerprint(), "test")
            assert snap is not None and snap.offsets == {PRED: 800, FB: 400}
            assert restored_bytes(snap) == state_bytes(first)
            assert changelog.gen == 1 and changelog.last_gen == 2  # the next checkpoint is number 3


def test_the_local_cache_is_used_with_the_records_after_it_and_refused_when_stale():
    part = StateLog()
    first = monitors_after(1200)
    _, log1 = checkpoint(part, first, sorted(first), Changelog(), {PRED: 800, FB: 400})
    cache = Snapshot(0, {PRED: 800, FB: 400}, {m: mon.state() for m, mon in first.items()}, {}, log1.state())
    cache = snapshot.decode(snapshot.encode(cache, SETTINGS.fingerprint()), SETTINGS.fingerprint(), "cache")
    second = monitors_after(2400)
    checkpoint(part, second, ["fraud"], log1, {PRED: 1600, FB: 800})
    tail = part.records[log1.offset - 1 :]
    snap, changelog = statetopic.restore(0, tail, SETTINGS.fingerprint(), "test", cache)
    assert snap is not None and snap.offsets == {PRED: 1600, FB: 800} and changelog.gen == 2
    assert restored_bytes(snap) == state_bytes({m: (second if m == "fraud" else first)[m] for m in first})
    # compacted: the cache's partition record was superseded by checkpoint 2's... then 3's in its slot
    third = monitors_after(3000)
    _, log3 = checkpoint(part, third, ["fraud"], changelog, {PRED: 2000, FB: 1000})
    compacted = part.compacted()
    with pytest.raises(CacheStale):
        statetopic.restore(0, [r for r in compacted if r.offset >= log1.offset - 1], SETTINGS.fingerprint(), "t", cache)
    snap, changelog = statetopic.restore(0, compacted, SETTINGS.fingerprint(), "test")
    assert snap is not None and snap.offsets == {PRED: 2000, FB: 1000} and changelog.gen == 3


def test_keys_of_models_no_checkpoint_names_are_tombstoned_after_the_next_commit():
    part = StateLog()
    first = monitors_after(1200)
    _, log1 = checkpoint(part, first, sorted(first), Changelog(), {PRED: 800, FB: 400})
    stray = statetopic.Record(statetopic.model_key(0, 0, "gone"), b"x", [(statetopic.HEADER_GEN, b"7")])
    part.append([stray])  # e.g. a model of a checkpoint that never completed
    _, changelog = statetopic.restore(0, part.records, SETTINGS.fingerprint(), "test")
    assert changelog.garbage == {stray.key} and changelog.last_gen == 7
    records, _ = checkpoint(part, first, [], changelog, {PRED: 801, FB: 400})
    assert part.records[-1].key == stray.key and part.records[-1].value is None
    assert records[-1].key == statetopic.partition_key(8 % 2, 0)  # checkpoint 8: above every number seen


# -- issue 17, finding 5: permissions, identity, per-model settings, authentication ------------------

SEAL_SETTINGS = {
    "monitor": SETTINGS.model_dump(mode="json"),
    "models": {"churn": ModelSettings().model_dump(mode="json")},
}
IDENTITY = {"cluster": "c-1", "group": "streamdrift", "topics": {"predictions": "p", "feedback": "f"}}
KEY = b"k" * 32


def _sealed(tmp_path, **changes) -> tuple[LocalSnapshotStore, snapshot.Seal]:
    seal = snapshot.Seal.of(
        changes.get("settings", SEAL_SETTINGS), changes.get("identity", IDENTITY), changes.get("key", KEY)
    )
    return LocalSnapshotStore(tmp_path, seal), seal


def test_snapshot_files_are_readable_by_their_owner_only(tmp_path):
    store, _ = _sealed(tmp_path)
    store.path(0).parent.mkdir(parents=True, exist_ok=True)
    store.path(0).with_suffix(".tmp").write_bytes(b"left by an older version")
    os.chmod(store.path(0).with_suffix(".tmp"), 0o644)
    store.save(Snapshot(0, {PRED: 1}, {}))
    assert os.stat(store.path(0)).st_mode & 0o777 == 0o600


def test_per_model_settings_are_part_of_the_configuration_and_named_when_changed(tmp_path):
    store, _ = _sealed(tmp_path)
    store.save(Snapshot(0, {PRED: 1}, {}))
    for change, named in (
        ({"task": "regression"}, "models.churn.task: None, now 'regression'"),
        ({"positive_label": "yes"}, "models.churn.positive_label"),
    ):
        models = {"churn": ModelSettings(**change).model_dump(mode="json")}
        other, _ = _sealed(tmp_path, settings={**SEAL_SETTINGS, "models": models})
        with pytest.raises(SnapshotError, match=f"other detection settings \\({named}"):
            other.load(0)
    assert store.load(0).offsets == {PRED: 1}


def test_a_snapshot_of_another_cluster_group_or_topics_is_refused_naming_it(tmp_path):
    store, _ = _sealed(tmp_path)
    store.save(Snapshot(0, {PRED: 1}, {}))
    for identity, named in (
        ({**IDENTITY, "cluster": "c-2"}, "cluster: 'c-1', now 'c-2'"),
        ({**IDENTITY, "group": "other"}, "group: 'streamdrift', now 'other'"),
        ({**IDENTITY, "topics": {"predictions": "p2", "feedback": "f"}}, "topics.predictions: 'p', now 'p2'"),
    ):
        other, _ = _sealed(tmp_path, identity=identity)
        with pytest.raises(SnapshotError, match=f"belongs elsewhere \\({named}\\)"):
            other.load(0)


def test_a_snapshot_of_another_cluster_is_refused_naming_both_ids_and_what_to_do(tmp_path):
    store, _ = _sealed(tmp_path)
    store.save(Snapshot(0, {PRED: 1}, {}))
    other, _ = _sealed(tmp_path, identity={**IDENTITY, "cluster": "c-2"})
    with pytest.raises(SnapshotError) as refused:
        other.load(0)
    message = str(refused.value)
    assert "Kafka cluster 'c-1'" in message and "cluster 'c-2'" in message
    assert "Point snapshot_dir at this deployment's own directory" in message


def test_the_cluster_is_checked_only_where_the_file_and_the_reader_both_have_one(tmp_path):
    without_cluster = {k: v for k, v in IDENTITY.items() if k != "cluster"}
    old, _ = _sealed(tmp_path, identity=without_cluster)  # a file written before the cluster was recorded
    old.save(Snapshot(0, {PRED: 1}, {}))
    store, _ = _sealed(tmp_path)
    assert store.load(0).offsets == {PRED: 1}  # the upgrade path: it loads, and its next save records the cluster
    store.save(Snapshot(0, {PRED: 2}, {}))
    assert orjson.loads(store.path(0).read_bytes().split(b"\n", 1)[0])["identity"] == IDENTITY
    assert old.load(0).offsets == {PRED: 2}  # a reader that has not connected: group and topics checked only
    for reader in (old, store):  # and they still are, with or without a cluster on either side
        foreign, _ = _sealed(tmp_path, identity={**without_cluster, "group": "other"})
        foreign.save(Snapshot(0, {PRED: 3}, {}))
        with pytest.raises(SnapshotError, match="belongs elsewhere \\(group: 'other', now 'streamdrift'\\)"):
            reader.load(0)


def test_the_state_seal_records_the_cluster_id_it_is_given():
    from streamdrift.runtime.settings import Settings

    settings = Settings()
    assert "cluster" not in settings.state_seal().identity
    seal = settings.state_seal("c-1")
    assert seal.identity == {**settings.state_seal().identity, "cluster": "c-1"}
    assert seal.config == settings.state_seal().config  # where the state belongs, not what shapes it


def test_with_a_key_a_tampered_or_unauthenticated_file_is_refused(tmp_path):
    store, seal = _sealed(tmp_path)
    store.save(Snapshot(0, {PRED: 1}, {"churn": {"n": 1}}))
    data = store.path(0).read_bytes()
    # a tamperer who recomputes the CRC: the MAC still refuses it
    header, body = data.split(b"\n", 1)
    forged_body = body.replace(b'"n":1', b'"n":7')
    doc = orjson.loads(header)
    doc.update(checksum=f"crc32:{zlib.crc32(forged_body):08x}")
    store.path(0).write_bytes(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) + b"\n" + forged_body)
    with pytest.raises(SnapshotError, match="MAC mismatch"):
        store.load(0)
    unkeyed = LocalSnapshotStore(tmp_path, snapshot.Seal.of(SEAL_SETTINGS, IDENTITY))
    unkeyed.save(Snapshot(0, {PRED: 1}, {}))
    with pytest.raises(SnapshotError, match="not authenticated"):
        store.load(0)
    other_key, _ = _sealed(tmp_path, key=b"another key")
    store.save(Snapshot(0, {PRED: 1}, {}))
    with pytest.raises(SnapshotError, match="MAC mismatch"):
        other_key.load(0)


def test_without_identity_settings_or_key_the_bytes_are_those_of_before(tmp_path):
    plain = snapshot.encode(Snapshot(0, {PRED: 1}, {}), "abc")
    assert plain == snapshot.encode(Snapshot(0, {PRED: 1}, {}), snapshot.Seal("abc"))
    assert b"mac" not in plain and b"identity" not in plain


def test_features_named_like_every_array_marker_still_checkpoint():
    # the marker that tags arrays must be a key no string of the state spells; feature names are the user's, so
    # a model whose features are named "$nd", "$nd1", ... "$nd120" must still encode and load back the same
    names = ["$nd"] + [f"$nd{i}" for i in range(1, 121)]
    tree = {"features": {name: i for i, name in enumerate(names)}, "ring": np.arange(4, dtype=np.int32)}
    data = snapshot.dumps(tree)
    back = snapshot.loads(data)
    assert back["features"] == tree["features"] and back["ring"].tolist() == [0, 1, 2, 3]
    assert b'"$nd121":[' in data  # the first marker no name spells
