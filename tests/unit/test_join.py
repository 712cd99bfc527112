"""FeedbackJoin: event-time join of delayed feedback to predictions, without Kafka."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from streamdrift.core.join import ENTRY_OVERHEAD_BYTES, FeedbackJoin, Joined
from streamdrift.core.join_bulk import BulkFeedbackJoin

BIG = 1_000_000


def join_of(ttl_s: float = 1e9, max_pending: int = BIG, max_pending_bytes: int = 10**12) -> FeedbackJoin:
    return FeedbackJoin(ttl_s=ttl_s, max_pending=max_pending, max_pending_bytes=max_pending_bytes)


def predict(
    join: FeedbackJoin,
    ids: list[str],
    times: list[float],
    preds: list | None = None,
    scores: list[float] | None = None,
    versions: list | None = None,
    segments: list | None = None,
) -> Joined:
    n = len(ids)
    return join.add_predictions(
        ids,
        np.array(times, dtype=float),
        preds if preds is not None else [1] * n,
        np.array(scores if scores is not None else [0.5] * n, dtype=float),
        versions if versions is not None else ["v1"] * n,
        segments if segments is not None else [None] * n,
    )


def feed(
    join: FeedbackJoin,
    ids: list[str],
    times: list[float],
    labels: list | None = None,
    carried: list | None = None,
    carried_scores: list[float] | None = None,
    versions: list | None = None,
    values: list[float] | None = None,
) -> Joined:
    n = len(ids)
    return join.add_feedback(
        ids,
        np.array(times, dtype=float),
        labels if labels is not None else [0] * n,
        carried if carried is not None else [None] * n,
        np.array(carried_scores if carried_scores is not None else [np.nan] * n, dtype=float),
        versions,
        None if values is None else np.array(values, dtype=float),
    )


def nonzero(join: FeedbackJoin) -> dict:
    return {k: v for k, v in join.counters().items() if v and k != "watermark"}


def state_bytes(join: FeedbackJoin) -> bytes:
    return orjson.dumps(join.state(), option=orjson.OPT_SORT_KEYS)


def test_feedback_before_its_prediction_waits_and_joins_with_the_predictions_columns():
    join = join_of()
    assert len(feed(join, ["e2", "e1"], [10.0, 11.0], labels=["no", "yes"])) == 0
    done = predict(
        join,
        ["e0", "e1", "e2"],
        [1.0, 2.0, 3.0],
        preds=["yes", "yes", "no"],
        scores=[0.9, 0.8, np.nan],
        versions=["v1", "v2", "v1"],
        segments=[None, {"region": "eu"}, {"region": "us"}],
    )
    # in the order of the prediction rows that completed them
    assert done.event_ids == ["e1", "e2"]
    assert done.event_times.tolist() == [2.0, 3.0] and done.feedback_times.tolist() == [11.0, 10.0]
    assert done.predictions == ["yes", "no"] and done.labels == ["yes", "no"]
    assert done.scores[0] == 0.8 and np.isnan(done.scores[1])
    assert done.versions == ["v2", "v1"] and done.segments == [{"region": "eu"}, {"region": "us"}]
    assert done.carried.tolist() == [False, False]
    assert nonzero(join) == {"pending_predictions": 1, "pending_prediction_bytes": join.predictions.bytes, "joined": 2}
    assert join.pending_scores().tolist() == [0.9]


def test_prediction_first_then_feedback_joins_in_feedback_row_order():
    join = join_of()
    assert len(predict(join, ["a", "b", "c"], [1.0, 2.0, 3.0], preds=[1, 0, 1])) == 0
    done = feed(join, ["c", "x", "a"], [5.0, 6.0, 7.0], labels=[1, 1, 0])
    assert done.event_ids == ["c", "a"] and done.predictions == [1, 1] and done.labels == [1, 0]
    assert nonzero(join)["pending_feedback"] == 1 and nonzero(join)["pending_predictions"] == 1


def test_duplicates_on_both_sides_are_counted_and_ignored():
    join = join_of()
    # 'a' twice while waiting, within one batch and across batches
    predict(join, ["a", "a", "b"], [1.0, 1.0, 2.0], preds=[1, 0, 1])
    predict(join, ["a"], [1.5], preds=[0])
    feed(join, ["z", "z"], [3.0, 3.0])  # feedback waiting, sent twice
    done = feed(join, ["a", "b", "a"], [4.0, 4.0, 4.0], labels=[1, 1, 0])
    # the first prediction and the first feedback of 'a' make the pair; later copies are duplicates
    assert done.event_ids == ["a", "b"] and done.predictions == [1, 1] and done.labels == [1, 1]
    predict(join, ["a", "b"], [5.0, 5.0])  # joined already
    feed(join, ["b"], [6.0])  # joined already
    c = join.counters()
    assert (c["duplicate_predictions"], c["duplicate_feedback"]) == (2 + 2, 1 + 1 + 1)
    assert (c["joined"], c["pending_predictions"], c["pending_feedback"]) == (2, 0, 1)


def test_expiry_follows_event_time_with_exact_counts():
    join = join_of(ttl_s=10.0)
    predict(join, [f"p{i}" for i in range(10)], [float(i) for i in range(10)])
    # watermark 15: p0..p4 waited past t + 10 < 15; p9 joins
    done = feed(join, ["p9"], [15.0], labels=[1])
    assert done.event_ids == ["p9"]
    c = join.counters()
    assert (c["expired_predictions"], c["pending_predictions"], c["watermark"]) == (5, 4, 15.0)
    # feedback that never meets its prediction: waits from 16 until watermark 26
    feed(join, ["lost"], [16.0])
    predict(join, ["late0"], [30.0])  # watermark 30: p5..p8 (deadlines 15..18) and 'lost' (26) expire
    c = join.counters()
    assert (c["expired_predictions"], c["expired_feedback"]) == (9, 1)
    assert (c["pending_predictions"], c["pending_feedback"]) == (1, 0)
    # a row arriving out of order waits as long as the newest row before it on its side: feedback's newest
    # is 16, so feedback from t=1 gets 16 + 10 = 26 < 30 and is expired on arrival
    feed(join, ["old"], [1.0])
    assert join.counters()["expired_feedback"] == 2 and join.counters()["pending_feedback"] == 0
    # a prediction from t=5 arriving now waits until 30 + 10, the prediction side's newest + ttl
    predict(join, ["late1"], [5.0])
    assert join.counters()["pending_predictions"] == 2
    assert feed(join, ["late1"], [40.0], labels=[0]).event_ids == ["late1"]
    predict(join, ["late2"], [5.0])
    assert feed(join, ["late2"], [40.5]).event_ids == []  # its deadline, 30 + 10, has passed


def test_expiry_is_the_same_whatever_the_batch_boundaries():
    rng = np.random.default_rng(11)
    n = 3000
    ids = [f"e{i}" for i in range(n)]
    t = np.sort(rng.uniform(0, 1000, n))
    delay = rng.exponential(20, n)
    fb_order = np.argsort(t + delay, kind="stable")
    # merge by timestamp: predictions at t, feedback at t + delay
    events = sorted([(t[i], 0, i) for i in range(n)] + [(t[i] + delay[i], 1, int(i)) for i in fb_order])
    states = []
    for batch in (1, 7, 1000):
        join = join_of(ttl_s=30.0, max_pending=60, max_pending_bytes=20_000)
        pairs = []
        run: list = []
        for k, ev in enumerate(events):
            run.append(ev)
            last = k == len(events) - 1
            if len(run) == batch or last or events[k + 1][1] != ev[1]:
                rows = [r[2] for r in run]
                times = [r[0] for r in run]
                if ev[1] == 0:
                    done = predict(join, [ids[i] for i in rows], times, preds=[i % 2 for i in rows])
                else:
                    done = feed(join, [ids[i] for i in rows], times, labels=[i % 3 == 0 for i in rows])
                pairs += done.event_ids
                run = []
        states.append((state_bytes(join), pairs, join.counters()))
    assert states[0] == states[1] == states[2]
    c = states[0][2]
    assert c["expired_predictions"] > 0 and c["evicted_count"] > 0 and c["joined"] > 0


def test_count_bound_evicts_the_oldest_and_counts_them():
    join = join_of(max_pending=3)
    predict(join, ["p0", "p1", "p2", "p3", "p4"], [0.0, 1.0, 2.0, 3.0, 4.0])
    size = ENTRY_OVERHEAD_BYTES + 2 + 8 + 8 + 2 + 8  # id, prediction, score, version, segment
    c = join.counters()
    assert (c["evicted_predictions"], c["evicted_count"], c["evicted_bytes"]) == (2, 2, 2 * size)
    assert list(join.predictions.entries) == ["p2", "p3", "p4"] and c["pending_prediction_bytes"] == 3 * size
    assert feed(join, ["p0", "p2"], [5.0, 5.0]).event_ids == ["p2"]  # p0 was evicted: its feedback waits
    assert join.counters()["pending_feedback"] == 1


def test_byte_bound_evicts_the_oldest_and_counts_their_bytes():
    size = ENTRY_OVERHEAD_BYTES + 2 + 8 + 8 + 2 + 8
    join = join_of(max_pending_bytes=2 * size + 10)
    predict(join, ["p0", "p1", "p2"], [0.0, 1.0, 2.0])
    c = join.counters()
    assert (c["evicted_predictions"], c["evicted_bytes"], c["pending_prediction_bytes"]) == (1, size, 2 * size)
    # feedback has its own bound: labels of 3 characters, ids of 2
    fb_size = ENTRY_OVERHEAD_BYTES + 2 + 3
    join = join_of(max_pending_bytes=3 * fb_size)
    feed(join, ["f0", "f1", "f2", "f3", "f4"], [0.0] * 5, labels=["yes"] * 5)
    c = join.counters()
    assert (c["evicted_feedback"], c["evicted_bytes"], c["pending_feedback"]) == (2, 2 * fb_size, 3)
    assert list(join.feedback.entries) == ["f2", "f3", "f4"]


def test_feedback_carrying_its_prediction_completes_at_once():
    join = join_of()
    predict(join, ["a"], [1.0], preds=[0], scores=[0.3])
    done = feed(
        join,
        ["a", "b", "c"],
        [2.0, 3.0, 4.0],
        labels=[1, 0, 1],
        carried=[1, 0, None],
        carried_scores=[0.9, 0.2, np.nan],
        versions=["v7", "v7", "v7"],
    )
    assert done.event_ids == ["a", "b"] and done.carried.tolist() == [True, True]
    assert done.predictions == [1, 0] and done.scores.tolist() == [0.9, 0.2] and done.versions == ["v7", "v7"]
    assert done.event_times.tolist() == [2.0, 3.0] and done.segments == [None, None]
    predict(join, ["b"], [1.0])  # the same prediction on the predictions topic: a duplicate
    c = join.counters()
    assert (c["joined"], c["carried"], c["duplicate_predictions"], c["pending_predictions"]) == (2, 2, 2, 0)
    assert c["pending_feedback"] == 1  # 'c' carried nothing: it waits


@pytest.mark.parametrize("join_class", [FeedbackJoin, BulkFeedbackJoin])
def test_a_feedback_value_goes_with_its_label_to_the_pair(join_class: type[FeedbackJoin]) -> None:
    """Whichever side comes first, and when the feedback carries its prediction; a waiting row keeps
    its value through a snapshot, and costs 8 bytes more than one without (which is kept as before)."""
    join = join_class(ttl_s=100.0, max_pending=100, max_pending_bytes=10**6)
    predict(join, ["a"], [1.0], versions=["v1"])
    early = feed(join, ["b", "c"], [2.0, 2.0], labels=[1, 0], values=[-7.5, np.nan])  # before their predictions
    assert len(early) == 0
    sizes = {event_id: entry[2] for event_id, entry in join.feedback.entries.items()}
    assert sizes["b"] == sizes["c"] + 8 and len(join.feedback.entries["c"]) == 4
    restored = join_class(ttl_s=100.0, max_pending=100, max_pending_bytes=10**6)
    restored.load_state(orjson.loads(state_bytes(join)))
    for j in (join, restored):
        late = feed(j, ["a", "d"], [3.0, 3.0], labels=[1, 1], carried=[None, 0], values=[12.0, 40.0])
        assert late.event_ids == ["a", "d"] and late.values.tolist() == [12.0, 40.0]
        done = predict(j, ["b", "c"], [4.0, 4.0])
        assert done.event_ids == ["b", "c"] and done.labels == [1, 0]
        assert done.values[0] == -7.5 and math.isnan(done.values[1])
    assert state_bytes(restored) == state_bytes(join)
    assert math.isnan(feed(join, ["e"], [5.0], carried=[1]).values[0])  # no values given: NaN


def test_two_interleavings_give_identical_pairs_counters_and_state():
    rng = np.random.default_rng(2024)
    n = 600
    p_ids = [f"e{i}" for i in range(n)] + [f"e{i}" for i in rng.choice(n, 30)]  # 30 duplicate predictions
    p_times = np.concatenate([np.arange(n, dtype=float), rng.uniform(0, n, 30)])
    labelled = rng.choice(n, 450, replace=False).tolist() + [f"x{i}" for i in range(20)]  # 20 never predicted
    f_ids = [i if isinstance(i, str) else f"e{i}" for i in labelled] + [f"e{i}" for i in rng.choice(n, 25)]
    f_times = rng.uniform(n, 2 * n, len(f_ids))
    carry = rng.random(len(f_ids)) < 0.1
    preds = [int(x) for x in rng.integers(0, 2, len(p_ids))]
    segs = [{"g": ["a", "b"][i % 2]} for i in range(len(p_ids))]
    labels = [int(x) for x in rng.integers(0, 2, len(f_ids))]

    def run(order: list[tuple[str, int, int]]) -> tuple:
        join = join_of()
        pairs = set()
        for side, a, b in order:
            if side == "p":
                done = predict(
                    join,
                    p_ids[a:b],
                    p_times[a:b].tolist(),
                    preds=preds[a:b],
                    scores=[i / 1000 for i in range(a, b)],
                    segments=segs[a:b],
                )
            else:
                done = feed(
                    join,
                    f_ids[a:b],
                    f_times[a:b].tolist(),
                    labels=labels[a:b],
                    carried=[1 if c else None for c in carry[a:b]],
                    carried_scores=[0.5 if c else np.nan for c in carry[a:b]],
                )
            pairs |= {
                (e, orjson.dumps(p), orjson.dumps(lab), s if s == s else None, v, orjson.dumps(g))
                for e, p, lab, s, v, g in zip(
                    done.event_ids, done.predictions, done.labels, done.scores.tolist(), done.versions, done.segments
                )
            }
        return pairs, join.counters(), state_bytes(join)

    def chunks(side: str, total: int, size: int) -> list[tuple[str, int, int]]:
        return [(side, a, min(a + size, total)) for a in range(0, total, size)]

    # all predictions then all feedback, against feedback first and batches interleaved at random sizes
    first = run(chunks("p", len(p_ids), 100) + chunks("f", len(f_ids), 64))
    p_chunks, f_chunks = chunks("p", len(p_ids), 37), chunks("f", len(f_ids), 53)
    mixed = []
    while p_chunks or f_chunks:
        take_f = f_chunks and (not p_chunks or rng.random() < 0.5)
        mixed.append((f_chunks if take_f else p_chunks).pop(0))
    second = run(chunks("f", len(f_ids), 500) + chunks("p", len(p_ids), 1000))
    third = run(mixed)
    assert first[0] == second[0] == third[0]
    assert first[1] == second[1] == third[1]
    assert first[2] == second[2] == third[2]
    c = first[1]
    assert c["joined"] > 400 and c["carried"] > 0 and c["duplicate_predictions"] >= 30
    assert c["duplicate_feedback"] > 0 and c["pending_feedback"] > 10 and c["expired_predictions"] == 0


def test_state_round_trip_continues_identically():
    def events(join: FeedbackJoin, part: int) -> list[str]:
        out = []
        for k in range(part * 50, part * 50 + 50):
            out += predict(
                join, [f"e{k}", f"e{k + 1}"], [float(k), k + 0.5], preds=[k % 2, 1], segments=[{"s": k % 3}, None]
            ).event_ids
            out += feed(join, [f"e{k - 3}", f"f{k}"], [k + 2.0, k + 2.0], labels=[1, 0]).event_ids
        return out

    join = FeedbackJoin(ttl_s=6.0, max_pending=20, max_pending_bytes=5000)
    first = events(join, 0)
    saved = orjson.loads(state_bytes(join))
    restored = FeedbackJoin(ttl_s=6.0, max_pending=20, max_pending_bytes=5000)
    restored.load_state(saved)
    assert state_bytes(restored) == state_bytes(join)
    assert events(restored, 1) == events(join, 1)
    assert state_bytes(restored) == state_bytes(join) and restored.counters() == join.counters()
    assert first and join.counters()["expired_feedback"] > 0 and join.counters()["duplicate_predictions"] > 0


def test_empty_batches_change_nothing():
    join = join_of()
    before = state_bytes(join)
    assert len(predict(join, [], [])) == 0 and len(feed(join, [], [])) == 0
    assert state_bytes(join) == before


# -- the bulk path against the row-by-row loop -----------------------------------------------------------


RowByRow = FeedbackJoin  # the reference


class CountingBulk(BulkFeedbackJoin):
    """Counts the batches the bulk path handled, and what happened in them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bulk = {"predictions": 0, "feedback": 0}
        self.rows = {"predictions": 0, "feedback": 0}
        self.seen: set[str] = set()  # what bulk batches did: "evicted_count", "carried", "trimmed", ...

    def _count(self, side: str, done: Joined | None, before: tuple) -> None:
        if done is None:
            self.rows[side] += 1
            return
        self.bulk[side] += 1
        counters, recent_full, heap_sorted = before
        after = self.counters()
        for key in ("evicted_count", "carried", "duplicate_predictions", "joined"):
            if after[key] > counters[key]:
                self.seen.add(key)
        if after["joined"] > counters["joined"]:
            self.seen |= {"trimmed"} if recent_full else set()
            self.seen.add("sorted heap" if heap_sorted else "unsorted heap")

    def _before(self) -> tuple:
        return self.counters(), len(self.recent) >= self.max_pending, self._recent_sorted

    def _predictions_in_bulk(self, *args):
        before = self._before()
        done = super()._predictions_in_bulk(*args)
        self._count("predictions", done, before)
        return done

    def _feedback_in_bulk(self, *args):
        before = self._before()
        done = super()._feedback_in_bulk(*args)
        self._count("feedback", done, before)
        return done


def joined_columns(done: Joined) -> tuple:
    """Every column, arrays as their dtype and values, and the types of the listed values."""

    def array(a: np.ndarray) -> tuple:
        return str(a.dtype), [None if math.isnan(v) else v for v in a.astype(float).tolist()]  # NaN == NaN

    return (
        done.event_ids,
        array(done.event_times),
        array(done.feedback_times),
        done.predictions,
        array(done.scores),
        done.labels,
        done.versions,
        done.segments,
        array(done.carried),
        array(done.values),
        array(done.rows),
        [type(v) for v in done.predictions + done.labels + done.versions],
    )


def internals(join: FeedbackJoin) -> tuple:
    heap = join._recent_heap
    assert all(heap[(k - 1) // 2] <= heap[k] for k in range(1, len(heap))), "the recent heap is a heap"
    return (
        state_bytes(join),
        list(join.recent.items()),
        sorted(heap),
        join._horizon,
        join.watermark,
        list(join.predictions.entries),
        list(join.feedback.entries),
        join.counters(),
    )


def random_events(rng: np.random.Generator) -> tuple[dict, list]:
    """One random run: the join's settings and its batches, (side, arguments), both sides interleaved."""
    n = int(rng.integers(50, 1200))
    ttl = float(rng.choice([3.0, 40.0, 400.0, 1e9]))
    settings = {
        "ttl_s": ttl,
        "max_pending": int(rng.choice([8, 60, 500, BIG])),
        "max_pending_bytes": int(rng.choice([1500, 20_000, 10**12])),
    }
    values = [[0, 1], ["yes", "no", "maybe"], [True, False], [0.5, 1.25, -3.0]][int(rng.integers(4))]

    def some(options: list, count: int) -> list:
        return [options[int(k)] for k in rng.integers(0, len(options), count)]

    # predictions, one per id, mostly in time order; some late, some sent twice
    ids = [f"e{k}" for k in range(n)]
    times = np.cumsum(rng.exponential(1.0, n))
    late = rng.random(n) < rng.choice([0.0, 0.05])
    times[late] -= rng.exponential(20.0, late.sum())
    again = rng.choice(n, int(rng.choice([0, 0, 3, 20])))
    p_rows = list(range(n)) + again.tolist()
    p_times = times.tolist() + (times[again] + rng.exponential(2.0, len(again))).tolist()
    preds = some(values, n)
    scores = np.where(rng.random(n) < rng.choice([0.0, 0.3, 1.0]), np.nan, rng.random(n))
    versions = some([None, "v1", "v22"], n)
    segments = some([None, None, {"region": "eu"}, {"g": ["a", "bb"], "n": 3}], n)

    # feedback for some of them after a delay, for ids never predicted, some sent twice, some carrying
    labelled = np.flatnonzero(rng.random(n) < rng.choice([0.5, 0.9]))
    strangers = int(rng.integers(0, 15))
    f_ids = [ids[k] for k in labelled] + [f"x{j}" for j in range(strangers)]
    delays = rng.exponential(float(rng.choice([0.2, 1.0, 3.0])) * min(ttl, 200.0), len(labelled))
    f_times = (times[labelled] + delays).tolist() + rng.uniform(0, times[-1], strangers).tolist()
    for j in rng.choice(len(f_ids), int(rng.choice([0, 0, 2, 10]))):
        f_ids.append(f_ids[j])
        f_times.append(f_times[j] + rng.exponential(3.0))
    m = len(f_ids)
    carry_share = rng.choice([0.0, 0.0, 0.1, 1.0])
    f_preds = [v if c else None for v, c in zip(some(values, m), rng.random(m) < carry_share)]
    f_scores = np.where(rng.random(m) < 0.5, rng.random(m), np.nan)
    f_versions = some(["v1", None, "v9"], m)
    f_labels = some(values, m)
    f_values = np.where(rng.random(m) < rng.choice([0.0, 0.5, 1.0]), rng.normal(0, 100, m), np.nan)

    # both sides merged by time, with jitter so that some batches straddle, then cut into batches
    order = sorted(
        [(t + rng.normal(0, 0.5), 0, i) for i, t in enumerate(p_times)]
        + [(t + rng.normal(0, 0.5), 1, i) for i, t in enumerate(f_times)]
    )
    batches, k = [], 0
    max_batch = int(rng.choice([2, 8, 40, 300]))
    while k < len(order):
        side, size = order[k][1], int(rng.integers(1, max_batch + 1))
        rows = []
        while k < len(order) and order[k][1] == side and len(rows) < size:
            rows.append(order[k][2])
            k += 1
        if side == 0:
            ks = [p_rows[i] for i in rows]
            batches.append(
                (
                    "p",
                    (
                        [ids[j] for j in ks],
                        np.array([p_times[i] for i in rows]),
                        [preds[j] for j in ks],
                        scores[ks],
                        [versions[j] for j in ks],
                        [segments[j] for j in ks],
                    ),
                )
            )
        else:
            carried = [f_preds[i] for i in rows]
            batches.append(
                (
                    "f",
                    (
                        [f_ids[i] for i in rows],
                        np.array([f_times[i] for i in rows]),
                        [f_labels[i] for i in rows],
                        carried if any(c is not None for c in carried) or rng.random() < 0.5 else [],
                        f_scores[rows] if rng.random() < 0.8 else np.empty(0),
                        [f_versions[i] for i in rows] if rng.random() < 0.8 else None,
                        f_values[rows] if rng.random() < 0.8 else None,
                    ),
                )
            )
    return settings, batches


def test_the_bulk_path_gives_exactly_what_the_row_loop_gives():
    rng = np.random.default_rng(20240611)
    totals = {"bulk": 0, "rows": 0}
    seen: set[str] = set()
    for run in range(80):
        settings, batches = random_events(rng)
        bulk, rows = CountingBulk(**settings), RowByRow(**settings)
        for side, args in batches:
            if side == "p":
                got, want = bulk.add_predictions(*args), rows.add_predictions(*args)
            else:
                got, want = bulk.add_feedback(*args), rows.add_feedback(*args)
            assert joined_columns(got) == joined_columns(want), (run, side)
            assert internals(bulk) == internals(rows), (run, side)
        totals["bulk"] += sum(bulk.bulk.values())
        totals["rows"] += sum(bulk.rows.values())
        seen |= bulk.seen
    # the comparison means something only if both paths ran, and the bulk path through each case
    assert totals["bulk"] > 5000 and totals["rows"] > 500, totals
    assert seen == {
        "evicted_count",
        "carried",
        "duplicate_predictions",
        "joined",
        "trimmed",
        "sorted heap",
        "unsorted heap",
    }, seen


def in_order_stream(n: int, lag: int, segments: bool) -> list:
    """The common case: predictions in timestamp order in batches of 70 (one per millisecond), feedback
    for half of them ``lag`` events later in batches of up to 35."""
    ids = [f"evt-{i:07d}" for i in range(n)]
    t = 1.7e9 + np.arange(n) * 0.001
    segs = [{"region": ["eu", "us"][i % 3 == 0]} for i in range(n)] if segments else [None] * n
    batches, f = [], 0
    for a in range(0, n, 70):
        b = min(a + 70, n)
        batches.append(
            (
                "p",
                (ids[a:b], t[a:b], [i % 2 for i in range(a, b)], np.linspace(0, 1, b - a), ["v1"] * (b - a), segs[a:b]),
            )
        )
        while f < n and f + lag < b:
            rows = [i for i in range(f, min(f + 70, b - lag)) if i % 2 == 0]
            f = min(f + 70, b - lag)
            if rows:
                batches.append(
                    (
                        "f",
                        (
                            [ids[i] for i in rows],
                            t[rows] + lag * 0.001,
                            [i % 3 == 0 for i in rows],
                            [None] * len(rows),
                            np.full(len(rows), np.nan),
                            None,
                        ),
                    )
                )
    return batches


def test_the_bulk_path_handles_every_batch_of_an_in_order_stream():
    for max_pending, segments in ((5000, True), (BIG, False)):
        bulk, rows = (
            cls(ttl_s=3600.0, max_pending=max_pending, max_pending_bytes=10**9) for cls in (CountingBulk, RowByRow)
        )
        for side, args in in_order_stream(30_000, 2000, segments):
            if side == "p":
                got, want = bulk.add_predictions(*args), rows.add_predictions(*args)
            else:
                got, want = bulk.add_feedback(*args), rows.add_feedback(*args)
            assert joined_columns(got) == joined_columns(want)
        assert internals(bulk) == internals(rows)
        assert bulk.rows == {"predictions": 0, "feedback": 0}, bulk.rows
        assert bulk.bulk["predictions"] > 400 and bulk.bulk["feedback"] > 400
        c = bulk.counters()
        assert c["joined"] == 14_000 and (c["evicted_count"] > 0) == (max_pending == 5000)


def test_the_bulk_path_where_the_loop_would_expire_within_the_batch():
    def both(ttl_s: float, max_pending: int) -> tuple[CountingBulk, RowByRow]:
        return (
            CountingBulk(ttl_s=ttl_s, max_pending=max_pending, max_pending_bytes=10**9),
            RowByRow(ttl_s=ttl_s, max_pending=max_pending, max_pending_bytes=10**9),
        )

    def step(joins: tuple, side: str, *args) -> Joined:
        got, want = (j.add_predictions(*args) if side == "p" else j.add_feedback(*args) for j in joins)
        assert joined_columns(got) == joined_columns(want) and internals(joins[0]) == internals(joins[1])
        return got

    def p(ids: list[str], times: list[float]) -> tuple:
        n = len(ids)
        return ids, np.array(times), [1] * n, np.full(n, 0.5), ["v1"] * n, [None] * n

    def f(ids: list[str], times: list[float]) -> tuple:
        return ids, np.array(times), [0] * len(ids), [], np.empty(0), None

    # a late prediction (t=0) waits until 8 + 10; joined in a batch whose watermark ends at 17, its pair
    # (0 + 10) would leave the recent ids within the batch, sparing a trim: the same pairs are kept
    joins = both(ttl_s=10.0, max_pending=4)
    step(joins, "p", *p(["p8"], [8.0]))
    step(joins, "p", *p(["old"], [0.0]))
    step(joins, "f", *f(["p8"], [9.0]))
    step(joins, "p", *p(["p9"], [9.0]))
    step(joins, "f", *f(["p9"], [9.5]))
    step(joins, "p", *p(["a", "b", "c"], [10.0, 10.0, 10.0]))
    assert step(joins, "f", *f(["old", "a", "b", "c"], [15.0, 15.5, 16.0, 17.0])).event_ids == ["old", "a", "b", "c"]
    assert sorted(joins[0].recent) == ["a", "b", "c", "p9"] and joins[0].bulk["feedback"] == 3
    # the first row's watermark passes the horizon: what it expires goes first, and the batch is still bulk
    step(joins, "p", *p(["w"], [20.0]))
    step(joins, "p", *p(["d", "e"], [40.0, 41.0]))
    assert joins[0].counters()["expired_predictions"] == 1 and joins[0].bulk["predictions"] == 6
    assert not joins[0].recent
    # rows of the batch that would wait have deadlines the watermark has passed: the loop, which expires
    # them on arrival instead of evicting any
    joins = both(ttl_s=10.0, max_pending=2)
    step(joins, "p", *p(["p"], [100.0]))
    step(joins, "f", *f(["x1", "x2", "x3", "x4"], [1.0, 2.0, 3.0, 4.0]))
    step(joins, "f", *f(["f"], [200.0]))
    step(joins, "p", *p(["y1", "y2", "y3", "y4"], [101.0, 102.0, 103.0, 104.0]))
    assert joins[0].rows == {"predictions": 1, "feedback": 1}
    c = joins[0].counters()
    assert (c["expired_feedback"], c["expired_predictions"], c["evicted_count"]) == (4, 5, 0)


@pytest.mark.parametrize("make", [FeedbackJoin, BulkFeedbackJoin])
def test_each_pair_names_the_row_that_completed_it_when_an_id_repeats(make):
    """A repeated id is a duplicate after its pair: the pair's row is the first occurrence, not the last one
    (the monitor marks windows and drift events at that row: the last would depend on where the batch ends)."""
    join = make(ttl_s=1e9, max_pending=BIG, max_pending_bytes=10**12)
    predict(join, ["a", "b"], [1.0, 2.0])
    done = feed(join, ["a", "x", "a", "b"], [3.0, 4.0, 5.0, 6.0])
    assert done.event_ids == ["a", "b"] and done.rows.tolist() == [0, 3]
    assert feed(join, ["y"], [7.0]).rows.tolist() == []
    done = predict(join, ["y", "x", "y"], [8.0, 9.0, 10.0])  # both were waiting as feedback
    assert done.event_ids == ["y", "x"] and done.rows.tolist() == [0, 1]
    done = feed(join, ["c", "d"], [11.0, 12.0], carried=[1, None])  # the bulk path: c carries its prediction
    assert done.event_ids == ["c"] and done.rows.tolist() == [0]
