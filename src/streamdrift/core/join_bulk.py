"""The feedback join's fast path: a whole batch at once, where that gives what the row loop gives.

``BulkFeedbackJoin`` is a `FeedbackJoin` (``join.py``: the reference, the
module docstring's steps row after row) that takes a batch through whole-batch
operations (set and dict operations on the ids, numpy on the times) when this
provably gives the same pairs, counters and state: no row is a duplicate, and
the batch's last watermark expires nothing that waits, or was joined recently,
when the batch begins, nor any row of the batch that waits. Any other batch
goes through the loop. ``tests/unit/test_join.py`` checks both give the same
on random runs.

Examples
--------
>>> import numpy as np
>>> join = BulkFeedbackJoin(ttl_s=60.0, max_pending=1000, max_pending_bytes=1_000_000)
>>> _ = join.add_feedback(["b"], np.array([5.0]), [1], [None], np.array([np.nan]))
>>> join.add_predictions(["a", "b"], np.array([1.0, 2.0]), [1, 0], np.array([0.9, 0.2]),
...                      ["v1", "v1"], [None, None]).event_ids
['b']
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.join import (
    ENTRY_OVERHEAD_BYTES,
    LABEL,
    PREDICTION,
    SCORE,
    SEGMENT,
    SIZE,
    TIME,
    VALUE,
    VERSION,
    FeedbackJoin,
    Joined,
    _Buffer,
    approx_bytes,
    feedback_values,
)

_EIGHT_BYTES = frozenset({int, float, bool, type(None)})  # the kinds approx_bytes sizes 8


def _approx_sizes(values: list[Any]) -> list[int] | int:
    """``approx_bytes`` of each value, or 8 when that is every value's size; by the values'
    types rather than a call per value where that gives the same."""
    kinds = {type(value) for value in values}
    if kinds <= _EIGHT_BYTES:
        return 8
    if kinds == {str}:
        return [len(value) for value in values]
    return [approx_bytes(value) for value in values]


def _row_sizes(ids: list[str], constant: int, *parts: list[Any]) -> list[int]:
    """Each buffered row's bytes: its id's length, ``constant``, and its values' ``_approx_sizes``."""
    sizes = [len(event_id) + constant for event_id in ids]
    for values in parts:
        part = _approx_sizes(values)
        if isinstance(part, int):
            sizes = [size + part for size in sizes]
        else:
            sizes = [size + extra for size, extra in zip(sizes, part)]
    return sizes


def _take(values: list[Any], rows: list[Any] | None) -> list[Any]:
    """The values where ``rows`` is true; all of them when ``rows`` is None."""
    return values if rows is None else [value for value, row in zip(values, rows) if row]


def _pick(values: NDArray[Any], rows: NDArray[Any] | None) -> NDArray[Any]:
    """The values where ``rows`` is true; all of them when ``rows`` is None."""
    return values if rows is None else values[rows]


def _none_for_nan(values: NDArray[Any]) -> list[Any]:
    """The values as a list, None where NaN (how a waiting prediction keeps a missing score)."""
    return [None if value != value else value for value in values.tolist()]


def _scatter(values: list[Any], rows: list[int], new: list[Any]) -> list[Any]:
    """A copy of ``values`` with ``new`` at positions ``rows``."""
    out = list(values)
    for row, value in zip(rows, new):
        out[row] = value
    return out


def _extend(
    buffer: _Buffer, event_ids: list[Any], rows: Iterable[tuple[Any, ...]], size: int, max_count: int, max_bytes: int
) -> None:
    """``buffer.insert`` of each row in turn, in one go (ids new to the buffer, sizes not negative).

    Rows join at the end and leave from the front, and a run of rows within the bounds stays
    within them without its first or its last row; so each ``insert`` leaves the longest run
    of the newest rows that is within the bounds, and so does evicting once after them all.
    """
    entries = buffer.entries
    entries.update(zip(event_ids, rows))
    buffer.bytes += size
    while entries and (len(entries) > max_count or buffer.bytes > max_bytes):
        size = entries.popitem(last=False)[1][SIZE]
        buffer.bytes -= size
        buffer.evicted += 1
        buffer.evicted_bytes += size


class BulkFeedbackJoin(FeedbackJoin):
    """``FeedbackJoin`` with whole-batch operations where they are proven to give the same."""

    def _reset(self) -> None:
        super()._reset()
        # whether the heap is sorted (a sorted list is a heap): the bulk path then adds pairs at its end
        # and drops the earliest from its front instead of pushing and popping them one by one
        self._recent_sorted = True  # a cache, not state, like the next
        self._pushed_unsorted = 0  # pairs the bulk path pushed since the heap was last sorted

    def _add_predictions(
        self,
        event_ids: list[str],
        marks: NDArray[Any],
        deadlines: NDArray[Any],
        times: NDArray[Any],
        predictions: list[Any],
        scores: NDArray[Any],
        versions: list[Any],
        segments: list[Any],
    ) -> Joined:
        done = self._predictions_in_bulk(event_ids, marks, deadlines, times, predictions, scores, versions, segments)
        if done is None:
            done = super()._add_predictions(event_ids, marks, deadlines, times, predictions, scores, versions, segments)
        return done

    def _add_feedback(
        self,
        event_ids: list[str],
        marks: NDArray[Any],
        deadlines: NDArray[Any],
        times: NDArray[Any],
        labels: list[Any],
        predictions_carried: list[Any],
        scores_carried: NDArray[Any],
        versions: list[Any] | None,
        values: NDArray[Any] | None = None,
    ) -> Joined:
        args = (event_ids, marks, deadlines, times, labels, predictions_carried, scores_carried, versions, values)
        done = self._feedback_in_bulk(*args)
        if done is None:
            done = super()._add_feedback(*args)
        return done

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

    def _bulk_start(self, event_ids: list[Any], marks: NDArray[Any], mine: _Buffer, other: _Buffer) -> list[Any] | None:
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
        marks: NDArray[Any],
        deadlines: NDArray[Any],
        times: NDArray[Any],
        predictions: list[Any],
        scores: NDArray[Any],
        versions: list[Any],
        segments: list[Any],
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
                np.array([row[VALUE] if len(row) > VALUE else math.nan for row in feedback], dtype=np.float64),
                np.flatnonzero(hit),
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
            _extend(mine, ids, entries, sum(sizes), self.max_pending, self.max_pending_bytes)
        return done

    def _feedback_in_bulk(
        self,
        event_ids: list[str],
        marks: NDArray[Any],
        deadlines: NDArray[Any],
        times: NDArray[Any],
        labels: list[Any],
        predictions_carried: list[Any],
        scores_carried: NDArray[Any],
        versions: list[Any] | None,
        values: NDArray[Any] | None = None,
    ) -> Joined | None:
        """``_feedback_by_row`` by whole-batch operations, or None where that is not proven."""
        n = len(event_ids)
        if not n or not len(times) == len(labels) == n or len(predictions_carried) not in (0, n):
            return None
        if values is not None and len(values) not in (0, n):
            return None
        value_list = feedback_values(values, n)
        some_value = any(v is not None for v in value_list)
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
            entries: Iterable[tuple[Any, ...]] = zip(waiting.tolist(), times[rows].tolist(), sizes, labs)
            if some_value:  # as the loop buffers them: a row with a value has it last, and 8 bytes more
                vals = _take(value_list, waits)
                sizes = [size if v is None else size + 8 for size, v in zip(sizes, vals)]
                entries = [
                    (d, t, size, label) if v is None else (d, t, size, label, v)
                    for d, t, size, label, v in zip(waiting.tolist(), times[rows].tolist(), sizes, labs, vals)
                ]
            _extend(mine, ids, entries, sum(sizes), self.max_pending, self.max_pending_bytes)

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
            np.array(_take(value_list, done), dtype=np.float64) if some_value else np.full(len(done_ids), math.nan),
            np.arange(n) if rows is None else np.flatnonzero(~rows),
        )

    def _forget(self, watermark: float) -> None:
        heap = self._recent_heap
        if not self._recent_sorted:
            super()._forget(watermark)
        elif (
            heap and heap[0][0] + self.ttl_s < watermark
        ):  # the same pairs leave, from the front, the rest stays sorted
            gone = bisect.bisect_left(heap, watermark, key=lambda pair: pair[0] + self.ttl_s)
            for _, event_id in heap[:gone]:
                del self.recent[event_id]
            del heap[:gone]

    def _remember(self, event_id: str, time: float) -> None:
        self._recent_sorted = False
        super()._remember(event_id, time)

    def _remember_all(self, event_ids: list[Any], times: list[Any]) -> None:
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

    def _merge_sorted(self, pairs: list[Any]) -> bool:
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

    def _recent_pairs(self) -> list[tuple[float, str]]:
        # the heap kept sorted by the bulk path is the list itself (a thousand pairs of a monitoring model: 3 us,
        # their sort 35 us)
        return list(self._recent_heap) if self._recent_sorted else sorted(self._recent_heap)

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._recent_sorted = self._recent_heap == sorted(self._recent_heap)
        self._pushed_unsorted = 0
