"""FeedbackJoin: event-time join of delayed feedback to predictions, without Kafka."""

from __future__ import annotations

import numpy as np
import orjson

from streamdrift.join import ENTRY_OVERHEAD_BYTES, FeedbackJoin, Joined

BIG = 1_000_000


def join_of(ttl_s: float = 1e9, max_pending: int = BIG, max_pending_bytes: int = 10**12) -> FeedbackJoin:
    return FeedbackJoin(ttl_s=ttl_s, max_pending=max_pending, max_pending_bytes=max_pending_bytes)


def predict(join: FeedbackJoin, ids: list[str], times: list[float], preds: list | None = None,
            scores: list[float] | None = None, versions: list | None = None, segments: list | None = None) -> Joined:
    n = len(ids)
    return join.add_predictions(ids, np.array(times, dtype=float), preds if preds is not None else [1] * n,
                                np.array(scores if scores is not None else [0.5] * n, dtype=float),
                                versions if versions is not None else ["v1"] * n,
                                segments if segments is not None else [None] * n)


def feed(join: FeedbackJoin, ids: list[str], times: list[float], labels: list | None = None,
         carried: list | None = None, carried_scores: list[float] | None = None,
         versions: list | None = None) -> Joined:
    n = len(ids)
    return join.add_feedback(ids, np.array(times, dtype=float), labels if labels is not None else [0] * n,
                             carried if carried is not None else [None] * n,
                             np.array(carried_scores if carried_scores is not None else [np.nan] * n, dtype=float),
                             versions)


def nonzero(join: FeedbackJoin) -> dict:
    return {k: v for k, v in join.counters().items() if v and k != "watermark"}


def state_bytes(join: FeedbackJoin) -> bytes:
    return orjson.dumps(join.state(), option=orjson.OPT_SORT_KEYS)


def test_feedback_before_its_prediction_waits_and_joins_with_the_predictions_columns():
    join = join_of()
    assert len(feed(join, ["e2", "e1"], [10.0, 11.0], labels=["no", "yes"])) == 0
    done = predict(join, ["e0", "e1", "e2"], [1.0, 2.0, 3.0], preds=["yes", "yes", "no"], scores=[0.9, 0.8, np.nan],
                   versions=["v1", "v2", "v1"], segments=[None, {"region": "eu"}, {"region": "us"}])
    # in the order of the prediction rows that completed them
    assert done.event_ids == ["e1", "e2"]
    assert done.event_times.tolist() == [2.0, 3.0] and done.feedback_times.tolist() == [11.0, 10.0]
    assert done.predictions == ["yes", "no"] and done.labels == ["yes", "no"]
    assert done.scores[0] == 0.8 and np.isnan(done.scores[1])
    assert done.versions == ["v2", "v1"] and done.segments == [{"region": "eu"}, {"region": "us"}]
    assert done.carried.tolist() == [False, False]
    assert nonzero(join) == {"pending_predictions": 1, "pending_prediction_bytes": join.predictions.bytes,
                             "joined": 2}
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
    done = feed(join, ["a", "b", "c"], [2.0, 3.0, 4.0], labels=[1, 0, 1], carried=[1, 0, None],
                carried_scores=[0.9, 0.2, np.nan], versions=["v7", "v7", "v7"])
    assert done.event_ids == ["a", "b"] and done.carried.tolist() == [True, True]
    assert done.predictions == [1, 0] and done.scores.tolist() == [0.9, 0.2] and done.versions == ["v7", "v7"]
    assert done.event_times.tolist() == [2.0, 3.0] and done.segments == [None, None]
    predict(join, ["b"], [1.0])  # the same prediction on the predictions topic: a duplicate
    c = join.counters()
    assert (c["joined"], c["carried"], c["duplicate_predictions"], c["pending_predictions"]) == (2, 2, 2, 0)
    assert c["pending_feedback"] == 1  # 'c' carried nothing: it waits


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
                done = predict(join, p_ids[a:b], p_times[a:b].tolist(), preds=preds[a:b],
                               scores=[i / 1000 for i in range(a, b)], segments=segs[a:b])
            else:
                done = feed(join, f_ids[a:b], f_times[a:b].tolist(), labels=labels[a:b],
                            carried=[1 if c else None for c in carry[a:b]],
                            carried_scores=[0.5 if c else np.nan for c in carry[a:b]])
            pairs |= {(e, orjson.dumps(p), orjson.dumps(lab), s if s == s else None, v, orjson.dumps(g))
                      for e, p, lab, s, v, g in zip(done.event_ids, done.predictions, done.labels,
                                                    done.scores.tolist(), done.versions, done.segments)}
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
            out += predict(join, [f"e{k}", f"e{k + 1}"], [float(k), k + 0.5], preds=[k % 2, 1],
                           segments=[{"s": k % 3}, None]).event_ids
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
