"""Join of delayed feedback to the predictions it grades, in event time.

Ground truth arrives minutes to days after the prediction. A ``FeedbackJoin``
(one per model) pairs each feedback row with the prediction of the same
``event_id``:

- a prediction waits for its label, and feedback that arrives before its
  prediction waits for the prediction, each in a buffer ordered by arrival;
- a feedback row that carries the prediction it grades completes at once;
- time is *event time*: the join's watermark is the latest event timestamp
  seen on either side, never the wall clock, so a replay joins the same pairs.

Expiry
------
A row waits until the watermark passes ``ttl_s`` beyond its *deadline base*:
the latest event time seen on its own side up to and including it. For rows
that arrive in timestamp order that is the row's own timestamp; a row that
arrives late (older than rows before it on its side) is given as long as those
rows. Deadlines therefore never decrease along a buffer, so expiry pops from
the front: amortised O(1) per row, and exact.

Rows are processed one after the other in the order given, each with the
watermark as of that row; the result is the same whatever the batch
boundaries. Per row, in order:

1. the watermark advances to the row's timestamp; waiting rows of both sides
   whose deadline has passed are expired (counted);
2. a row whose ``event_id`` already waits on its own side, or was joined
   recently, is a duplicate: counted, ignored. Joined ids are remembered
   until the watermark passes ``ttl_s`` beyond the pair's event time, and at
   most ``max_pending`` of them (the earliest by event time, then id, are
   forgotten first);
3. a feedback row carrying its prediction completes with what it carries; a
   prediction of that id still waiting is dropped as a duplicate;
4. otherwise a row whose id waits on the other side completes the pair;
5. otherwise it waits, unless its deadline has already passed (counted as
   expired) or the buffer's bounds make room by evicting the oldest rows
   (counted, rows and approximate bytes).

Within one side the order of rows is the input order; how the two sides'
batches interleave decides only when rows expire. For the same events, any
interleaving in which nothing expires or is evicted gives the same pairs, the
same counters and the same state.

A batch goes through whole-batch operations (set and dict operations on the
ids, numpy on the times) instead of that loop when this provably gives the same
pairs, counters and state: no row is a duplicate, and the batch's last
watermark expires nothing that waits, or was joined recently, when the batch
begins, nor any row of the batch that waits. Any other batch goes through the
loop, the reference.

Examples
--------
>>> import numpy as np
>>> join = FeedbackJoin(ttl_s=60.0, max_pending=1000, max_pending_bytes=1_000_000)
>>> def feedback(ids, times, labels):
...     return join.add_feedback(ids, np.array(times), labels, [None] * len(ids), np.full(len(ids), np.nan))
>>> len(feedback(["b"], [5.0], [1]))   # before its prediction: waits
0
>>> done = join.add_predictions(["a", "b"], np.array([1.0, 2.0]), [1, 0], np.array([0.9, 0.2]),
...                             ["v1", "v1"], [None, {"region": "eu"}])
>>> done.event_ids, done.predictions, done.labels, done.segments
(['b'], [0], [1], [{'region': 'eu'}])
>>> len(feedback(["a"], [70.0], [0]))  # 'a' waited from t=1 until t=61: too late
0
>>> {k: v for k, v in join.counters().items() if v}
{'pending_feedback': 1, 'pending_feedback_bytes': 73, 'joined': 1, 'expired_predictions': 1, 'watermark': 70.0}
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

ENTRY_OVERHEAD_BYTES = 64  # a buffered row's bookkeeping, on top of its values' sizes
# positions in a buffered row: [deadline, event time, bytes, *payload]; never changed once buffered
# (the bulk paths buffer tuples, the row loop lists)
DEADLINE, TIME, SIZE = 0, 1, 2
PREDICTION, SCORE, VERSION, SEGMENT = 3, 4, 5, 6  # prediction rows
LABEL = 3  # feedback rows


@dataclass(slots=True)
class Joined:
    """Pairs completed by one call, in the order of the rows that completed them."""

    event_ids: list[str]
    event_times: np.ndarray  # float64: the prediction's event time (the feedback's when carried)
    feedback_times: np.ndarray  # float64
    predictions: list
    scores: np.ndarray  # float64, NaN where the prediction had no score
    labels: list
    versions: list
    segments: list  # dict | None; None when the feedback carried the prediction
    carried: np.ndarray  # bool: the feedback carried its prediction

    def __len__(self) -> int:
        return len(self.event_ids)

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> Joined:
        cols = list(zip(*rows)) if rows else [()] * 9
        return cls(
            event_ids=list(cols[0]),
            event_times=np.array(cols[1], dtype=np.float64),
            feedback_times=np.array(cols[2], dtype=np.float64),
            predictions=list(cols[3]),
            scores=np.array([math.nan if s is None else s for s in cols[4]], dtype=np.float64),
            labels=list(cols[5]),
            versions=list(cols[6]),
            segments=list(cols[7]),
            carried=np.array(cols[8], dtype=bool),
        )

    @classmethod
    def empty(cls) -> Joined:
        # most prediction batches complete nothing: shared empty arrays (read only), fresh lists
        return cls([], _NO_FLOATS, _NO_FLOATS, [], _NO_FLOATS, [], [], [], _NO_BOOLS)


_NO_FLOATS, _NO_BOOLS = np.empty(0), np.empty(0, dtype=bool)
_NO_FLOATS.flags.writeable = _NO_BOOLS.flags.writeable = False


def approx_bytes(value: object) -> int:
    """A deterministic, interpreter-independent size estimate of a JSON value."""
    kind = type(value)
    if kind is int or kind is float or kind is bool or value is None:  # the usual case, first
        return 8
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return 16 + sum(approx_bytes(k) + approx_bytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 16 + sum(approx_bytes(v) for v in value)
    return 8


_EIGHT_BYTES = frozenset({int, float, bool, type(None)})  # the kinds approx_bytes sizes 8


def _approx_sizes(values: list) -> list[int] | int:
    """``approx_bytes`` of each value, or 8 when that is every value's size; by the values'
    types rather than a call per value where that gives the same."""
    kinds = {type(value) for value in values}
    if kinds <= _EIGHT_BYTES:
        return 8
    if kinds == {str}:
        return [len(value) for value in values]
    return [approx_bytes(value) for value in values]


def _row_sizes(ids: list[str], constant: int, *parts: list) -> list[int]:
    """Each buffered row's bytes: its id's length, ``constant``, and its values' ``_approx_sizes``."""
    sizes = [len(event_id) + constant for event_id in ids]
    for values in parts:
        part = _approx_sizes(values)
        if isinstance(part, int):
            sizes = [size + part for size in sizes]
        else:
            sizes = [size + extra for size, extra in zip(sizes, part)]
    return sizes


def _take(values: list, rows: list | None) -> list:
    """The values where ``rows`` is true; all of them when ``rows`` is None."""
    return values if rows is None else [value for value, row in zip(values, rows) if row]


def _pick(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """The values where ``rows`` is true; all of them when ``rows`` is None."""
    return values if rows is None else values[rows]


def _none_for_nan(values: np.ndarray) -> list:
    """The values as a list, None where NaN (how a waiting prediction keeps a missing score)."""
    return [None if value != value else value for value in values.tolist()]


def _scatter(values: list, rows: list[int], new) -> list:
    """A copy of ``values`` with ``new`` at positions ``rows``."""
    out = list(values)
    for row, value in zip(rows, new):
        out[row] = value
    return out


class _Buffer:
    """Rows of one side waiting for the other, oldest first, with their counters."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.entries: OrderedDict[str, list | tuple] = OrderedDict()
        self.bytes = 0
        self.newest = -math.inf  # latest event time seen on this side: the deadline base
        self.expired = 0
        self.evicted = 0
        self.evicted_bytes = 0
        self.duplicates = 0

    def pop(self, event_id: str) -> list | tuple | None:
        entry = self.entries.pop(event_id, None)
        if entry is not None:
            self.bytes -= entry[SIZE]
        return entry

    def next_deadline(self) -> float:
        return next(iter(self.entries.values()))[DEADLINE] if self.entries else math.inf

    def expire(self, watermark: float) -> None:
        entries = self.entries
        while entries and next(iter(entries.values()))[DEADLINE] < watermark:
            self.bytes -= entries.popitem(last=False)[1][SIZE]
            self.expired += 1

    def insert(self, event_id: str, entry: list, max_count: int, max_bytes: int) -> None:
        self.entries[event_id] = entry
        self.bytes += entry[SIZE]
        while self.entries and (len(self.entries) > max_count or self.bytes > max_bytes):
            size = self.entries.popitem(last=False)[1][SIZE]
            self.bytes -= size
            self.evicted += 1
            self.evicted_bytes += size

    def extend(self, event_ids: list, rows, size: int, max_count: int, max_bytes: int) -> None:
        """``insert`` of each row in turn, in one go (ids new to the buffer, sizes not negative).

        Rows join at the end and leave from the front, and a run of rows within the bounds stays
        within them without its first or its last row; so each ``insert`` leaves the longest run
        of the newest rows that is within the bounds, and so does evicting once after them all.
        """
        entries = self.entries
        entries.update(zip(event_ids, rows))
        self.bytes += size
        while entries and (len(entries) > max_count or self.bytes > max_bytes):
            size = entries.popitem(last=False)[1][SIZE]
            self.bytes -= size
            self.evicted += 1
            self.evicted_bytes += size

    def state(self) -> dict:
        return {
            "entries": [[k, *v] for k, v in self.entries.items()],
            "bytes": self.bytes,
            "newest": None if self.newest == -math.inf else self.newest,
            "expired": self.expired,
            "evicted": self.evicted,
            "evicted_bytes": self.evicted_bytes,
            "duplicates": self.duplicates,
        }

    def load_state(self, state: dict) -> None:
        self.entries = OrderedDict((row[0], list(row[1:])) for row in state["entries"])
        self.bytes = state["bytes"]
        self.newest = -math.inf if state["newest"] is None else state["newest"]
        self.expired, self.evicted = state["expired"], state["evicted"]
        self.evicted_bytes, self.duplicates = state["evicted_bytes"], state["duplicates"]


class FeedbackJoin:
    """Event-time join of one model's feedback to its predictions by ``event_id``.

    Parameters
    ----------
    ttl_s
        Seconds of event time a row waits for the other side.
    max_pending
        Rows each side's buffer holds; also the number of recently joined ids
        remembered to recognise duplicates.
    max_pending_bytes
        Approximate bytes each side's buffer holds (``approx_bytes`` of the
        row's values plus ``ENTRY_OVERHEAD_BYTES``).
    """

    def __init__(self, ttl_s: float, max_pending: int, max_pending_bytes: int):
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._reset()

    def _reset(self) -> None:
        self.watermark = -math.inf
        self.predictions = _Buffer()
        self.feedback = _Buffer()
        self.recent: dict[str, float] = {}  # ids joined lately -> the pair's event time
        self._recent_heap: list[tuple[float, str]] = []  # the same, earliest first
        self.joined = 0
        self.carried = 0
        self._horizon = math.inf  # earliest deadline in either buffer, or earlier: a cache, not state
        # whether the heap is sorted (a sorted list is a heap): the bulk path then adds pairs at its end
        # and drops the earliest from its front instead of pushing and popping them one by one
        self._recent_sorted = True  # a cache, not state, like the next
        self._pushed_unsorted = 0  # pairs the bulk path pushed since the heap was last sorted

    # -- input ----------------------------------------------------------------

    _bulk = True  # False sends every batch through the row-by-row loop, the reference (for tests)

    def add_predictions(
        self,
        event_ids: list[str],
        timestamps: np.ndarray,
        predictions: list,
        scores: np.ndarray,
        versions: list,
        segments: list,
    ) -> Joined:
        """Buffer predictions; return the pairs they complete with waiting feedback."""
        marks, deadlines, times = self._advance(timestamps, self.predictions)
        done = (
            self._predictions_in_bulk(event_ids, marks, deadlines, times, predictions, scores, versions, segments)
            if self._bulk
            else None
        )
        if done is None:
            done = self._predictions_by_row(
                event_ids, marks.tolist(), deadlines.tolist(), times.tolist(), predictions, scores, versions, segments
            )
        self._expire(self.watermark)
        return done

    def add_feedback(
        self,
        event_ids: list[str],
        timestamps: np.ndarray,
        labels: list,
        predictions_carried: list,
        scores_carried: np.ndarray,
        versions: list | None = None,
    ) -> Joined:
        """Buffer feedback; return the pairs it completes.

        ``predictions_carried[i]`` is the prediction row ``i`` grades, or None;
        such a row completes at once with ``scores_carried[i]`` and
        ``versions[i]`` (when given). Either list may be empty: nothing carried.
        """
        marks, deadlines, times = self._advance(timestamps, self.feedback)
        done = (
            self._feedback_in_bulk(
                event_ids, marks, deadlines, times, labels, predictions_carried, scores_carried, versions
            )
            if self._bulk
            else None
        )
        if done is None:
            done = self._feedback_by_row(
                event_ids,
                marks.tolist(),
                deadlines.tolist(),
                times.tolist(),
                labels,
                predictions_carried,
                scores_carried,
                versions,
            )
        self._expire(self.watermark)
        return done

    def _predictions_by_row(
        self,
        event_ids: list[str],
        marks: list,
        deadlines: list,
        times: list,
        predictions: list,
        scores: np.ndarray,
        versions: list,
        segments: list,
    ) -> Joined:
        """The reference: the module docstring's steps, row after row."""
        score_list = np.asarray(scores, dtype=np.float64).tolist()
        mine, other = self.predictions, self.feedback
        done: list[tuple] = []
        for i, event_id in enumerate(event_ids):
            mark = marks[i]
            if mark > self._horizon:
                self._expire(mark)
            if event_id in mine.entries or event_id in self.recent:
                mine.duplicates += 1
                continue
            score = score_list[i]
            score = None if score != score else score
            fb = other.pop(event_id)
            if fb is not None:
                done.append(
                    (event_id, times[i], fb[TIME], predictions[i], score, fb[LABEL], versions[i], segments[i], False)
                )
                self._remember(event_id, times[i])
            elif deadlines[i] < mark:
                mine.expired += 1
            else:
                size = (
                    ENTRY_OVERHEAD_BYTES
                    + len(event_id)
                    + approx_bytes(predictions[i])
                    + 8
                    + approx_bytes(versions[i])
                    + approx_bytes(segments[i])
                )
                self._wait(
                    mine, event_id, [deadlines[i], times[i], size, predictions[i], score, versions[i], segments[i]]
                )
        return Joined.from_rows(done)

    def _feedback_by_row(
        self,
        event_ids: list[str],
        marks: list,
        deadlines: list,
        times: list,
        labels: list,
        predictions_carried: list,
        scores_carried: np.ndarray,
        versions: list | None,
    ) -> Joined:
        """The reference: the module docstring's steps, row after row."""
        n = len(event_ids)
        carried = list(predictions_carried) if len(predictions_carried) else [None] * n
        carried_scores = (
            np.asarray(scores_carried, dtype=np.float64).tolist() if len(scores_carried) else [math.nan] * n
        )
        carried_versions = list(versions) if versions is not None and len(versions) else [None] * n
        mine, other = self.feedback, self.predictions
        done: list[tuple] = []
        for i, event_id in enumerate(event_ids):
            mark = marks[i]
            if mark > self._horizon:
                self._expire(mark)
            if event_id in mine.entries or event_id in self.recent:
                mine.duplicates += 1
                continue
            if carried[i] is not None:
                if other.pop(event_id) is not None:
                    other.duplicates += 1  # graded on what the feedback carries, whatever the order
                score = carried_scores[i]
                done.append(
                    (
                        event_id,
                        times[i],
                        times[i],
                        carried[i],
                        None if score != score else score,
                        labels[i],
                        carried_versions[i],
                        None,
                        True,
                    )
                )
                self.carried += 1
                self._remember(event_id, times[i])
                continue
            prediction = other.pop(event_id)
            if prediction is not None:
                done.append(
                    (
                        event_id,
                        prediction[TIME],
                        times[i],
                        prediction[PREDICTION],
                        prediction[SCORE],
                        labels[i],
                        prediction[VERSION],
                        prediction[SEGMENT],
                        False,
                    )
                )
                self._remember(event_id, prediction[TIME])
            elif deadlines[i] < mark:
                mine.expired += 1
            else:
                size = ENTRY_OVERHEAD_BYTES + len(event_id) + approx_bytes(labels[i])
                self._wait(mine, event_id, [deadlines[i], times[i], size, labels[i]])
        return Joined.from_rows(done)

    # The bulk paths give what the loop gives, by whole-batch operations, when these hold (else they
    # return None, having changed only what the loop changes first, and the loop runs):
    # - no row is a duplicate: ids are distinct strings, none waits on its own side or was joined
    #   recently. Then each row carries its pair, completes a pair with a row that waited on the
    #   other side when the batch began, or waits;
    # - the batch's last watermark passes neither the horizon when the batch begins (the earliest
    #   deadline in both buffers and of the recent pairs) nor the deadline of any row of the batch
    #   that waits. Then an expiry within the batch can drop only pairs of this batch from
    #   ``recent``, those whose time + ttl the last watermark passes, which the expiry at the end
    #   drops anyway. They are earlier than every other pair, and trims drop the earliest, so a trim
    #   one of them spares would have dropped one of them: the other pairs kept are the same;
    # - rows join only their own side's end, so evicting once at the end evicts the same rows
    #   (``_Buffer.extend``), and pairs take rows only from the other side.

    def _bulk_start(self, event_ids: list, marks: np.ndarray, mine: _Buffer, other: _Buffer) -> list | None:
        """Row 0's expiry; then, if no row is a duplicate and the horizon is not passed, whether each
        row's id waits on the other side ([] when none does); else None."""
        if marks[0] > self._horizon:  # what the loop does first (done twice, the second changes nothing)
            self._expire(float(marks[0]))
        if not self.watermark <= self._horizon or not all(type(event_id) is str for event_id in event_ids):
            return None
        ids = set(event_ids)
        if (
            len(ids) != len(event_ids)
            or not mine.entries.keys().isdisjoint(ids)
            or not self.recent.keys().isdisjoint(ids)
        ):
            return None
        if other.entries.keys().isdisjoint(ids):
            return []
        return [event_id in other.entries for event_id in event_ids]

    def _predictions_in_bulk(
        self,
        event_ids: list[str],
        marks: np.ndarray,
        deadlines: np.ndarray,
        times: np.ndarray,
        predictions: list,
        scores: np.ndarray,
        versions: list,
        segments: list,
    ) -> Joined | None:
        """``_predictions_by_row`` by whole-batch operations, or None where that is not proven."""
        n = len(event_ids)
        scores = np.asarray(scores, dtype=np.float64)
        if not n or not len(times) == len(predictions) == len(versions) == len(segments) == n or scores.shape != (n,):
            return None
        mine, other = self.predictions, self.feedback
        hit = self._bulk_start(event_ids, marks, mine, other)
        if hit is None:
            return None
        waits = [not h for h in hit] if any(hit) else None  # None: every row waits
        rows = None if waits is None else np.array(waits)
        waiting = _pick(deadlines, rows)
        if len(waiting) and not self.watermark <= waiting[0]:  # deadlines never decrease along a batch
            return None

        done = Joined.empty()
        if rows is not None:
            joins = ~rows
            got = _take(event_ids, hit)
            feedback = [other.entries.pop(event_id) for event_id in got]
            other.bytes -= sum(row[SIZE] for row in feedback)
            self._remember_all(got, times[joins].tolist())
            done = Joined(
                got,
                times[joins],
                np.array([row[TIME] for row in feedback], dtype=np.float64),
                _take(predictions, hit),
                scores[joins],
                [row[LABEL] for row in feedback],
                _take(versions, hit),
                _take(segments, hit),
                np.zeros(len(got), dtype=bool),
            )
        if len(waiting):
            ids, preds, vers, segs = (_take(values, waits) for values in (event_ids, predictions, versions, segments))
            sizes = _row_sizes(ids, ENTRY_OVERHEAD_BYTES + 8, preds, vers, segs)
            entries = zip(
                waiting.tolist(),
                _pick(times, rows).tolist(),
                sizes,
                preds,
                _none_for_nan(_pick(scores, rows)),
                vers,
                segs,
            )
            mine.extend(ids, entries, sum(sizes), self.max_pending, self.max_pending_bytes)
        return done

    def _feedback_in_bulk(
        self,
        event_ids: list[str],
        marks: np.ndarray,
        deadlines: np.ndarray,
        times: np.ndarray,
        labels: list,
        predictions_carried: list,
        scores_carried: np.ndarray,
        versions: list | None,
    ) -> Joined | None:
        """``_feedback_by_row`` by whole-batch operations, or None where that is not proven."""
        n = len(event_ids)
        if not n or not len(times) == len(labels) == n or len(predictions_carried) not in (0, n):
            return None
        carry = [p is not None for p in predictions_carried] if len(predictions_carried) else None
        if carry is not None and any(carry):  # the carried scores, only read here and below with carry
            carried_scores = (
                np.asarray(scores_carried, dtype=np.float64) if len(scores_carried) else np.full(n, math.nan)
            )
            carried_versions = list(versions) if versions is not None and len(versions) else [None] * n
            if carried_scores.shape != (n,) or len(carried_versions) != n:
                return None
        else:
            carry = None
        mine, other = self.feedback, self.predictions
        hit = self._bulk_start(event_ids, marks, mine, other)
        if hit is None:
            return None
        hit = hit or [False] * n
        # rows that complete a waiting prediction (and carry none), rows that complete a pair
        joins = hit if carry is None else [h and not c for h, c in zip(hit, carry)]
        done = joins if carry is None else [h or c for h, c in zip(hit, carry)]
        waits = None if all(done) else [not d for d in done]  # None: no row waits
        rows = None if waits is None else np.array(waits)
        waiting = deadlines[:0] if rows is None else deadlines[rows]
        if len(waiting) and not self.watermark <= waiting[0]:  # deadlines never decrease along a batch
            return None

        got = _take(event_ids, joins)
        waited = [other.entries.pop(event_id) for event_id in got]  # the predictions they complete
        other.bytes -= sum(row[SIZE] for row in waited)
        pair_times = [row[TIME] for row in waited]
        done_ids = got
        if carry is not None:
            dropped = [other.entries.pop(i) for i, h, c in zip(event_ids, hit, carry) if h and c]
            other.bytes -= sum(row[SIZE] for row in dropped)
            other.duplicates += len(dropped)  # graded on what the feedback carries
            self.carried += sum(carry)
            at = [i for i, j in enumerate(joins) if j]  # where the completed predictions go among the carried pairs
            done_ids = _take(event_ids, done)
            pair_times = _take(_scatter(times.tolist(), at, pair_times), done)
        self._remember_all(done_ids, pair_times)
        if waits is not None:
            ids, labs = _take(event_ids, waits), _take(labels, waits)
            sizes = _row_sizes(ids, ENTRY_OVERHEAD_BYTES, labs)
            entries = zip(waiting.tolist(), times[rows].tolist(), sizes, labs)
            mine.extend(ids, entries, sum(sizes), self.max_pending, self.max_pending_bytes)

        predictions = [row[PREDICTION] for row in waited]
        scores = np.array([row[SCORE] for row in waited], dtype=np.float64)  # None: NaN
        versions = [row[VERSION] for row in waited]
        segments = [row[SEGMENT] for row in waited]
        carried = np.zeros(len(got), dtype=bool)
        if carry is not None:  # the carried pairs in between, in row order
            predictions = _take(_scatter(predictions_carried, at, predictions), done)
            versions = _take(_scatter(carried_versions, at, versions), done)
            segments = _take(_scatter([None] * n, at, segments), done)
            every = carried_scores.copy()
            every[at] = scores
            mask = np.array(done)
            scores, carried = every[mask], np.array(carry)[mask]
        return Joined(
            done_ids,
            np.fromiter(pair_times, np.float64, len(pair_times)),
            times.copy() if rows is None else times[~rows],
            predictions,
            scores,
            list(labels) if rows is None else _take(labels, done),
            versions,
            segments,
            carried,
        )

    def _advance(self, timestamps: np.ndarray, side: _Buffer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's watermark and deadline; moves the watermark and the side's newest time to the end."""
        times = np.asarray(timestamps, dtype=np.float64)
        if not len(times):
            return times, times, times
        marks = np.maximum.accumulate(np.maximum(times, self.watermark))
        newest = np.maximum.accumulate(np.maximum(times, side.newest))
        self.watermark, side.newest = float(marks[-1]), float(newest[-1])
        return marks, newest + self.ttl_s, times

    def _expire(self, watermark: float) -> None:
        self.predictions.expire(watermark)
        self.feedback.expire(watermark)
        heap = self._recent_heap
        if self._recent_sorted:  # the same pairs leave, from the front, and the rest stays sorted
            if heap and heap[0][0] + self.ttl_s < watermark:
                gone = bisect.bisect_left(heap, watermark, key=lambda pair: pair[0] + self.ttl_s)
                for _, event_id in heap[:gone]:
                    del self.recent[event_id]
                del heap[:gone]
        else:
            while heap and heap[0][0] + self.ttl_s < watermark:
                del self.recent[heapq.heappop(heap)[1]]
        self._set_horizon()

    def _set_horizon(self) -> None:
        self._horizon = min(
            self.predictions.next_deadline(),
            self.feedback.next_deadline(),
            self._recent_heap[0][0] + self.ttl_s if self._recent_heap else math.inf,
        )

    def _wait(self, side: _Buffer, event_id: str, entry: list) -> None:
        side.insert(event_id, entry, self.max_pending, self.max_pending_bytes)
        self._horizon = min(self._horizon, entry[DEADLINE])

    def _remember(self, event_id: str, time: float) -> None:
        self._recent_sorted = False
        self.joined += 1
        self.recent[event_id] = time
        heapq.heappush(self._recent_heap, (time, event_id))
        self._horizon = min(self._horizon, time + self.ttl_s)
        if len(self.recent) > self.max_pending:
            del self.recent[heapq.heappop(self._recent_heap)[1]]

    def _remember_all(self, event_ids: list, times: list) -> None:
        """``_remember`` of each pair in turn, in one go (ids not in ``recent``).

        After its first trim ``_remember`` trims once per pair, and each trim drops the earliest
        pair; so no pair dropped is later than one kept, and the pairs kept are the latest ones
        of all, whatever the order they come in. Dropping as many of the earliest at the end keeps
        the same pairs, and ``recent`` keeps its order when the ids dropped leave it at the end.
        """
        if not event_ids:
            return
        recent, heap = self.recent, self._recent_heap
        self.joined += len(event_ids)
        trims = max(0, len(event_ids) - max(0, self.max_pending - len(recent)))
        recent.update(zip(event_ids, times))
        pairs = sorted(zip(times, event_ids))
        if self._recent_sorted and self._merge_sorted(pairs):
            dropped = heap[:trims]
            del heap[:trims]
        else:
            self._recent_sorted = False
            free = len(pairs) - trims
            for pair in pairs[:free]:
                heapq.heappush(heap, pair)
            dropped = [heapq.heappushpop(heap, pair) for pair in pairs[free:]]
            self._pushed_unsorted += len(pairs)
            if self._pushed_unsorted > 4 * len(heap):  # a sort costs about len(heap) pushes: a quarter more
                heap.sort()
                self._recent_sorted, self._pushed_unsorted = True, 0
        for _, event_id in dropped:
            del recent[event_id]

    def _merge_sorted(self, pairs: list) -> bool:
        """Sorted ``pairs`` into the sorted heap, if they go at or near its end; else False."""
        heap = self._recent_heap
        if not heap or heap[-1] < pairs[0]:
            heap.extend(pairs)
            return True
        at = bisect.bisect_left(heap, pairs[0])
        if len(heap) - at > 4 * len(pairs) + 64:
            return False
        heap[at:] = sorted(heap[at:] + pairs)
        return True

    # -- output ---------------------------------------------------------------

    def pending_scores(self) -> np.ndarray:
        """Scores of the predictions still waiting for a label (NaN where none), oldest first."""
        return np.array(
            [math.nan if e[SCORE] is None else e[SCORE] for e in self.predictions.entries.values()], dtype=np.float64
        )

    def counters(self) -> dict:
        """What the exporter shows: buffer sizes and the fate of rows that did not join."""
        p, f = self.predictions, self.feedback
        return {
            "pending_predictions": len(p.entries),
            "pending_feedback": len(f.entries),
            "pending_prediction_bytes": p.bytes,
            "pending_feedback_bytes": f.bytes,
            "joined": self.joined,
            "carried": self.carried,
            "expired_predictions": p.expired,
            "expired_feedback": f.expired,
            "evicted_predictions": p.evicted,
            "evicted_feedback": f.evicted,
            "evicted_count": p.evicted + f.evicted,
            "evicted_bytes": p.evicted_bytes + f.evicted_bytes,
            "duplicate_predictions": p.duplicates,
            "duplicate_feedback": f.duplicates,
            "watermark": None if self.watermark == -math.inf else self.watermark,
        }

    def state(self) -> dict:
        return {
            "watermark": None if self.watermark == -math.inf else self.watermark,
            "predictions": self.predictions.state(),
            "feedback": self.feedback.state(),
            "recent": sorted([t, i] for i, t in self.recent.items()),  # a sorted list is a heap
            "joined": self.joined,
            "carried": self.carried,
        }

    def load_state(self, state: dict) -> None:
        self.watermark = -math.inf if state["watermark"] is None else state["watermark"]
        self.predictions.load_state(state["predictions"])
        self.feedback.load_state(state["feedback"])
        self._recent_heap = [(t, i) for t, i in state["recent"]]
        self.recent = {i: t for t, i in self._recent_heap}
        self._recent_sorted = self._recent_heap == sorted(self._recent_heap)
        self._pushed_unsorted = 0
        self.joined, self.carried = state["joined"], state["carried"]
        self._set_horizon()
