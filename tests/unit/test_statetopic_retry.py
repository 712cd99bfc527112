"""A state-topic checkpoint whose acknowledgement was lost, then retried (issue 17, item 6).

The worker saw checkpoint 2 fail (its records not acknowledged) and retried with the slots of checkpoint 1,
but checkpoint 2 had reached the topic. The retry's model records overwrite the ones checkpoint 2 names;
if the retry's partition record never lands (a crash), the restore must fall back to checkpoint 1, which
is intact, rather than refuse the partition.
"""

from __future__ import annotations

from streamdrift.core.config import MonitorSettings
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.state import Snapshot
from streamdrift.runtime import statetopic
from streamdrift.runtime.statetopic import Changelog, Stored
from streams import FB, PRED, demo_messages, run_monitors, state_bytes

SETTINGS = MonitorSettings(reference_size=500, window_size=500, subwindows=5, cooldown_events=2000)
CONFIG = SETTINGS.fingerprint()


def append(log: list[Stored], records: list[statetopic.Record]) -> int:
    """Append to a partition's log; return the offset just after the last partition record."""
    after = -1
    for r in records:
        headers = dict(r.headers)
        gen, chunks = int(headers[statetopic.HEADER_GEN]), int(headers[statetopic.HEADER_CHUNKS])
        log.append(Stored(len(log), r.key, r.value, gen, chunks))
        if r.key.startswith(b"partition/"):
            after = len(log)
    return after


def monitors_after(n: int) -> dict[str, ModelMonitor]:
    monitors, _ = run_monitors(demo_messages(n, seed=3, drift_at=10**9), 500, SETTINGS)
    return monitors


def records(monitors: dict, changed: list[str], changelog: Changelog, offsets: dict) -> tuple[list, Changelog]:
    snap = Snapshot(0, offsets, {m: monitors[m].state() for m in changed}, {"epochs": {}, "epoch_ms": 100})
    return statetopic.checkpoint_records(snap, changed, changelog, CONFIG, 1 << 20, monitored=monitors)


def test_a_retry_that_overwrote_an_unacknowledged_checkpoint_falls_back_to_the_one_before() -> None:
    log: list[Stored] = []
    first = monitors_after(1200)
    written, committed = records(first, sorted(first), Changelog(), {PRED: 800, FB: 400})
    committed.offset = append(log, written)
    second = monitors_after(2400)
    unacknowledged, _ = records(second, sorted(second), committed, {PRED: 1600, FB: 800})
    append(log, unacknowledged)  # in the topic, but the worker never heard so
    retry_from = Changelog(committed.gen, committed.offset, dict(committed.models), last_gen=2)
    third = monitors_after(3000)
    retry, _ = records(third, sorted(third), retry_from, {PRED: 2000, FB: 1000})
    append(log, [r for r in retry if r.key.startswith(b"model/")])  # killed before its partition record

    snap, changelog = statetopic.restore(0, log, CONFIG, "test")
    assert snap is not None and snap.offsets == {PRED: 800, FB: 400} and changelog.gen == 1
    restored = {m: ModelMonitor.from_state(m, SETTINGS, st) for m, st in snap.models.items()}
    assert state_bytes(restored) == state_bytes(first)
    assert changelog.last_gen == 3  # the next checkpoint is numbered above everything in the topic
