"""The timestamp merge gives one processing order, whatever the order the two topics arrive in."""

from __future__ import annotations

import orjson
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from streamdrift.core.config import MonitorSettings
from streamdrift.core.merge import EpochMerge
from streamdrift.core.records import RawMessage
from streamdrift.core.synthetic import generate
from streams import FB, PRED, run_monitors, state_bytes


def topic_records(n: int) -> dict[str, list[RawMessage]]:
    out: dict[str, list[RawMessage]] = {PRED: [], FB: []}
    for kind, e in generate(n, seed=5, drift_at=1500, rate=500.0):
        topic = PRED if kind == "prediction" else FB
        out[topic].append(
            RawMessage(topic, 0, len(out[topic]), e["model_id"].encode(), orjson.dumps(e), int(e["timestamp"] * 1000))
        )
    return out


def merged(arrivals: list[list[RawMessage]]) -> list[RawMessage]:
    """Feed fetches in the given order, releasing after each as the worker does; drain at the end."""
    merge = EpochMerge(epoch_ms=1000, sides=(PRED, FB))
    out = []
    for fetch in arrivals:
        for r in fetch:
            merge.add(r)
        out += [r for _, run in merge.release().runs for r in run]
    out += [r for _, run in merge.release(ended={PRED, FB}).runs for r in run]
    return out


def test_two_interleavings_give_the_same_order_and_the_same_state():
    records = topic_records(9000)
    p, f = records[PRED], records[FB]
    # one consumer fetched all predictions before any feedback, the other feedback far ahead in big chunks
    first = [p[i : i + 500] for i in range(0, len(p), 500)] + [f[i : i + 500] for i in range(0, len(f), 500)]
    second = [f[i : i + 2000] for i in range(0, len(f), 2000)] + [p[i : i + 37] for i in range(0, len(p), 37)]
    a, b = merged(first), merged(second)
    assert [(r.topic, r.offset) for r in a] == [(r.topic, r.offset) for r in b]
    assert len(a) == len(p) + len(f)
    settings = MonitorSettings(reference_size=500, window_size=500)
    state_a, events_a = run_in_order(a, settings)
    state_b, events_b = run_in_order(b, settings)
    assert state_bytes(state_a) == state_bytes(state_b) and events_a == events_b
    assert {e["kind"] for e in events_a} >= {"data_drift", "prediction_drift"}
    assert state_a["credit-risk"].labelled_total == len([r for r in f if r.key == b"credit-risk"])


def run_in_order(records: list[RawMessage], settings: MonitorSettings):
    """Process consecutive same-topic runs in order, as the worker does with released runs."""
    monitors, events, run = {}, [], []
    for r in records + [None]:
        if run and (r is None or r.topic != run[0].topic):
            _, new = run_monitors(run, len(run), settings, monitors)
            events += new
            run = []
        if r is not None:
            run.append(r)
    return monitors, events


def test_within_an_epoch_predictions_come_before_their_feedback():
    records = topic_records(3000)
    order = merged([records[FB], records[PRED]])
    epoch_of = lambda r: r.timestamp_ms // 1000  # noqa: E731
    for before, after in zip(order, order[1:]):
        assert epoch_of(before) <= epoch_of(after)
        if epoch_of(before) == epoch_of(after):
            assert not (before.topic == FB and after.topic == PRED)


def test_restart_keeps_late_records_in_the_epoch_the_first_run_gave_them():
    merge = EpochMerge(epoch_ms=1000, sides=(PRED, FB))
    late = RawMessage(PRED, 0, 1, None, b"", 500)  # timestamp in epoch 0, after a record of epoch 2
    merge.add(RawMessage(PRED, 0, 0, None, b"", 2500))
    released = merge.release(ended={PRED, FB}).runs
    restarted = EpochMerge(epoch_ms=1000, sides=(PRED, FB))
    restarted.load_state(merge.state())
    for m in (merge, restarted):
        m.add(late)
    assert merge.pending[PRED].head() == restarted.pending[PRED].head() == 2
    assert [r.offset for _, run in released for r in run] == [0]


def test_a_restart_with_another_epoch_width_keeps_the_record_time_reached():
    merge = EpochMerge(epoch_ms=1000, sides=(PRED, FB))
    merge.add(RawMessage(PRED, 0, 0, None, b"", 2500))
    merge.release(ended={PRED, FB})
    restarted = EpochMerge(epoch_ms=100, sides=(PRED, FB))
    restarted.load_state(merge.state())
    restarted.add(RawMessage(PRED, 0, 1, None, b"", 500))  # late: joins the epoch reached, 2000 ms
    assert restarted.pending[PRED].head() == 20


# -- the log's rule, as a property: how the two logs are cut into polls never shows ---------------------------

EPOCH_MS = 100


def log_order(logs: dict[str, list[RawMessage]]) -> list[tuple[str, int]]:
    """The order the log alone gives: by epoch (a late record takes the epoch its side reached), predictions
    before feedback within an epoch, each side in offset order. Written out plainly, as the reference."""
    keyed = []
    for rank, side in enumerate((PRED, FB)):
        reached = -1
        for r in logs[side]:
            reached = max(reached, r.timestamp_ms // EPOCH_MS)
            keyed.append((reached, rank, r.offset, side))
    return [(side, offset) for _, _, offset, side in sorted(keyed)]


@st.composite
def two_logs(draw: st.DrawFn) -> dict[str, list[RawMessage]]:
    """Two sides' logs over the same stretch of record time; mostly in time order, some records late."""
    logs = {}
    for side in (PRED, FB):
        steps = draw(st.lists(st.integers(-150, 120), max_size=40), label=f"{side} time steps")
        t, records = 1_000, []
        for offset, step in enumerate(steps):
            t = max(t + step, 0)
            records.append(RawMessage(side, 0, offset, None, b"", t))
        logs[side] = records
    return logs


@st.composite
def polls(draw: st.DrawFn, logs: dict[str, list[RawMessage]]) -> list[tuple[str, int]]:
    """A consumer's polls: (side, records fetched), the sides in any interleaving, fetches of any size."""
    left = {side: len(records) for side, records in logs.items()}
    out: list[tuple[str, int]] = []
    while any(left.values()):
        side = draw(st.sampled_from([s for s in (PRED, FB) if left[s]]))
        size = draw(st.integers(0, left[side]))
        left[side] -= size
        out.append((side, size))
    return out


def consume(logs, fetches, restart_at: int | None = None) -> list[tuple[str, int]]:
    """Feed ``fetches`` in order, releasing after each without ever forcing; the logs end; ``restart_at``: after
    that poll, the merge is made again from its state and the unreleased records are fetched again."""
    merge = EpochMerge(EPOCH_MS, (PRED, FB))
    at = {PRED: 0, FB: 0}
    released: list[tuple[str, int]] = []

    def take(release) -> None:
        assert release.forced is None
        released.extend((side, r.offset) for side, run in release.runs for r in run)

    for poll, (side, size) in enumerate(fetches):
        merge.extend(side, logs[side][at[side] : at[side] + size])
        at[side] += size
        take(merge.release())
        if poll == restart_at:
            state = merge.state()
            merge = EpochMerge(EPOCH_MS, (PRED, FB))
            merge.load_state(state)
            for s in (PRED, FB):  # resume after the last released record of each side, as from a snapshot
                at[s] = max((offset + 1 for side_, offset in released if side_ == s), default=0)
    for side in (PRED, FB):  # what was fetched again after the restart, then the end of both logs
        merge.extend(side, logs[side][at[side] :])
    take(merge.release(ended={PRED, FB}))
    return released


@seed(16)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_split_into_polls_releases_the_log_order_when_nothing_is_forced(data: st.DataObject) -> None:
    logs = data.draw(two_logs(), label="logs")
    fetches = data.draw(polls(logs), label="polls")
    restart_at = data.draw(st.none() | st.integers(0, max(len(fetches) - 1, 0)), label="restart after poll")
    assert consume(logs, fetches, restart_at) == log_order(logs)


def offsets(release) -> list[tuple[str, list[int]]]:
    return [(side, [r.offset for r in run]) for side, run in release.runs]


def test_a_topic_with_nothing_new_is_waited_for_however_long_it_has_been_caught_up():
    # what changed (issue 16, item 6): a topic at its high watermark no longer releases the epoch it is in
    merge = EpochMerge(1000, (PRED, FB))
    merge.extend(PRED, [RawMessage(PRED, 0, i, None, b"", t) for i, t in enumerate((100, 1500, 2500))])
    merge.extend(FB, [RawMessage(FB, 0, 0, None, b"", 200)])
    assert merge.release().runs == []  # feedback has not moved past epoch 0: a label of epoch 0 may follow
    merge.extend(FB, [RawMessage(FB, 0, 1, None, b"", 1200)])
    release = merge.release()
    assert offsets(release) == [(PRED, [0]), (FB, [0])] and release.forced is None
    assert merge.release().runs == [] and merge.buffered() == 3


def test_a_forced_release_says_so_and_a_late_record_then_lands_out_of_the_log_order():
    times = {PRED: (100, 1500, 2500), FB: (200, 2600)}
    logs = {side: [RawMessage(side, 0, i, None, b"", t) for i, t in enumerate(ts)] for side, ts in times.items()}
    merge = EpochMerge(1000, (PRED, FB))
    merge.extend(PRED, logs[PRED])
    forced = merge.release(idle={FB})  # feedback idle: what predictions moved past goes without it
    assert offsets(forced) == [(PRED, [0, 1])] and forced.forced == "idle"
    merge.extend(FB, logs[FB])  # then its label of epoch 0 comes
    after = merge.release()
    assert offsets(after) == [(FB, [0])] and after.forced is None  # released by the log's rule, but too late:
    got = [(side, r.offset) for side, run in forced.runs + after.runs for r in run]
    assert got == [(PRED, 0), (PRED, 1), (FB, 0)]
    assert log_order_ms(logs, 1000)[:3] == [(PRED, 0), (FB, 0), (PRED, 1)]


def log_order_ms(logs: dict[str, list[RawMessage]], epoch_ms: int) -> list[tuple[str, int]]:
    keyed = [
        (r.timestamp_ms // epoch_ms, rank, r.offset, side) for rank, side in enumerate((PRED, FB)) for r in logs[side]
    ]
    return [(side, offset) for _, _, offset, side in sorted(keyed)]


def test_an_idle_topic_that_holds_nothing_back_forces_nothing():
    merge = EpochMerge(1000, (PRED, FB))
    merge.extend(FB, [RawMessage(FB, 0, 0, None, b"", 2500)])  # feedback ahead: predictions are the wait
    merge.extend(PRED, [RawMessage(PRED, 0, i, None, b"", t) for i, t in enumerate((100, 1500))])
    release = merge.release(idle={FB})
    assert offsets(release) == [(PRED, [0])]
    assert release.forced is None  # the log's rule alone released it


def test_past_max_buffered_the_known_prefix_goes_and_the_side_ahead_is_named_to_pause():
    merge = EpochMerge(1000, (PRED, FB), max_buffered=2)
    merge.extend(PRED, [RawMessage(PRED, 0, i, None, b"", t) for i, t in enumerate((100, 200, 1100, 2100))])
    release = merge.release()
    assert release.runs == []  # a label of epoch 0 may still come, and it goes before predictions of epoch 1
    assert merge.over_bound() == [PRED]  # ahead of feedback: the worker stops fetching it
    merge.extend(FB, [RawMessage(FB, 0, 0, None, b"", 1500)])  # feedback moves past epoch 0, into epoch 1
    release = merge.release()
    # epoch 0 is complete; in epoch 1 the predictions come first, then feedback's record, the next one of the log
    assert offsets(release) == [(PRED, [0, 1, 2]), (FB, [0])] and release.forced is None
    assert merge.over_bound() == [] and merge.buffered() == 1


def test_under_memory_pressure_part_of_an_epoch_goes_and_a_restart_keeps_the_order():
    """A huge epoch on the predictions side: released as it comes, the feedback of that epoch after all of it,
    also after a restart from the state taken between two parts of the epoch."""
    logs = {
        PRED: [RawMessage(PRED, 0, i, None, b"", 1000 + i) for i in range(6)],
        FB: [RawMessage(FB, 0, 0, None, b"", 1500), RawMessage(FB, 0, 1, None, b"", 2500)],
    }
    merge = EpochMerge(1000, (PRED, FB), max_buffered=1)
    merge.extend(FB, logs[FB][:1])  # feedback of epoch 1 first: it must wait for every prediction of epoch 1
    merge.extend(PRED, logs[PRED][:3])
    first = merge.release()
    assert offsets(first) == [(PRED, [0, 1, 2])] and first.forced is None
    restarted = EpochMerge(1000, (PRED, FB), max_buffered=1)
    restarted.load_state(merge.state())
    restarted.extend(FB, logs[FB])  # fetched again from its start: nothing of it was released
    restarted.extend(PRED, logs[PRED][3:5])
    assert offsets(restarted.release()) == [(PRED, [3, 4])]  # feedback's epoch-1 label still waits
    assert restarted.over_bound() == [FB]  # ahead of the predictions: paused until they move past epoch 1
    restarted.extend(PRED, logs[PRED][5:])
    last = restarted.release(ended={PRED, FB})
    assert offsets(last) == [(PRED, [5]), (FB, [0, 1])] and last.forced is None
    assert log_order_ms(logs, 1000) == [(PRED, i) for i in range(6)] + [(FB, 0), (FB, 1)]


# -- memory pressure: past max_buffered, the known prefix of the log order and backpressure, never another order --

MAX_POLL = 8  # records per fetch at most: what a side may hold past max_buffered is one fetch


@st.composite
def side_log(draw: st.DrawFn, side: str) -> list[RawMessage]:
    """A side's log: time steps as in ``two_logs``, or one burst of many records all in one epoch (the case
    where waiting for the epoch to complete cannot fit in max_buffered)."""
    if draw(st.booleans(), label=f"{side} in one epoch"):
        epoch = draw(st.integers(8, 12), label=f"{side} epoch")
        count = draw(st.integers(0, 60), label=f"{side} records")
        return [RawMessage(side, 0, offset, None, b"", epoch * EPOCH_MS + offset % EPOCH_MS) for offset in range(count)]
    steps = draw(st.lists(st.integers(-150, 120), max_size=40), label=f"{side} time steps")
    t, records = 1_000, []
    for offset, step in enumerate(steps):
        t = max(t + step, 0)
        records.append(RawMessage(side, 0, offset, None, b"", t))
    return records


def consume_bounded(logs, max_buffered: int, data: st.DataObject) -> list[tuple[str, int]]:
    """A worker's loop over ``logs`` with ``max_buffered``: a side holding more than that is not fetched (paused)
    until a release brings it back within; when the only side that may be fetched has nothing left (caught up and
    silent), it is idle. Random fetch sizes, interleavings and at most one restart from ``state()``."""
    merge = EpochMerge(EPOCH_MS, (PRED, FB), max_buffered=max_buffered)
    at = {PRED: 0, FB: 0}
    released: list[tuple[str, int]] = []
    restarted = False

    def take(release) -> int:
        assert release.forced in (None, "idle"), f"released out of the log order: {release.forced}"
        released.extend((side, r.offset) for side, run in release.runs for r in run)
        for side in (PRED, FB):  # the memory bound: max_buffered and one fetch
            assert len(merge.pending[side]) <= max_buffered + MAX_POLL, (side, len(merge.pending[side]))
        return sum(len(run) for _, run in release.runs)

    while any(at[s] < len(logs[s]) for s in (PRED, FB)):
        paused = {s for s in (PRED, FB) if len(merge.pending[s]) > max_buffered}
        fetchable = [s for s in (PRED, FB) if s not in paused and at[s] < len(logs[s])]
        if not fetchable:  # the other side has nothing to give: idle once max_task_idle_ms has passed
            assert len(paused) == 1, f"both sides paused: {paused}"
            progress = take(merge.release(idle={PRED, FB} - paused))
            assert progress, "paused, and an idle release gave nothing: the paused side would wait forever"
            continue
        side = data.draw(st.sampled_from(fetchable), label="fetch from")
        size = data.draw(st.integers(1, min(MAX_POLL, len(logs[side]) - at[side])), label="records")
        merge.extend(side, logs[side][at[side] : at[side] + size])
        at[side] += size
        take(merge.release())
        if not restarted and data.draw(st.integers(0, 9), label="restart now") == 0:
            restarted = True  # from the state a checkpoint takes now; the unreleased records are fetched again
            state = merge.state()
            merge = EpochMerge(EPOCH_MS, (PRED, FB), max_buffered=max_buffered)
            merge.load_state(state)
            for s in (PRED, FB):
                at[s] = max((offset + 1 for side_, offset in released if side_ == s), default=0)
    take(merge.release(ended={PRED, FB}))
    return released


@seed(19)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_past_max_buffered_the_release_is_still_the_log_order_and_memory_stays_bounded(data: st.DataObject) -> None:
    logs = {side: data.draw(side_log(side), label=f"{side} log") for side in (PRED, FB)}
    max_buffered = data.draw(st.integers(1, 5), label="max_buffered")
    assert consume_bounded(logs, max_buffered, data) == log_order(logs)
