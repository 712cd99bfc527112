"""The timestamp merge gives one processing order, whatever the order the two topics arrive in."""

from __future__ import annotations

import orjson

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
