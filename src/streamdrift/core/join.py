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

``FeedbackJoin`` is that loop, the reference. ``join_bulk.BulkFeedbackJoin``,
what the monitors use, takes a batch through whole-batch operations instead
where this provably gives the same pairs, counters and state.

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

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

ENTRY_OVERHEAD_BYTES = 64  # a buffered row's bookkeeping, on top of its values' sizes
# positions in a buffered row: [deadline, event time, bytes, *payload]; never changed once buffered
# (join_bulk buffers tuples, the row loop lists)
DEADLINE, TIME, SIZE = 0, 1, 2
PREDICTION, SCORE, VERSION, SEGMENT = 3, 4, 5, 6  # prediction rows
LABEL, VALUE = 3, 4  # feedback rows; only a row whose feedback carried a value has one at VALUE


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
    values: np.ndarray  # float64: the feedback's business value, NaN where it had none
    # int64: the row of the call's input that completed each pair; an id may repeat in a batch (a duplicate
    # after its pair), so the id alone does not tell which of its rows did
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.event_ids)

    @classmethod
    def from_rows(cls, rows: list[tuple], completed_at: list[int]) -> Joined:
        """The pairs ``rows`` (one tuple of the columns each), completed at the input rows ``completed_at``."""
        cols = list(zip(*rows)) if rows else [()] * 10
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
            values=np.array([math.nan if v is None else v for v in cols[9]], dtype=np.float64),
            rows=np.array(completed_at, dtype=np.int64),
        )

    @classmethod
    def empty(cls) -> Joined:
        # most prediction batches complete nothing: shared empty arrays (read only), fresh lists
        return cls([], _NO_FLOATS, _NO_FLOATS, [], _NO_FLOATS, [], [], [], _NO_BOOLS, _NO_FLOATS, _NO_INTS)


_NO_FLOATS, _NO_BOOLS, _NO_INTS = np.empty(0), np.empty(0, dtype=bool), np.empty(0, dtype=np.int64)
_NO_FLOATS.flags.writeable = _NO_BOOLS.flags.writeable = _NO_INTS.flags.writeable = False


def feedback_values(values: np.ndarray | None, n: int) -> list[float | None]:
    """The business values of ``n`` feedback rows as a list, None where a row has none.

    >>> feedback_values(np.array([2.5, np.nan]), 2), feedback_values(None, 2)
    ([2.5, None], [None, None])
    """
    if values is None or not len(values):
        return [None] * n
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).all():  # the usual case, feedback without values: no list made value by value
        return [None] * n
    return [None if v != v else v for v in array.tolist()]


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

    # -- input ----------------------------------------------------------------

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
        done = self._add_predictions(event_ids, marks, deadlines, times, predictions, scores, versions, segments)
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
        values: np.ndarray | None = None,
    ) -> Joined:
        """Buffer feedback; return the pairs it completes.

        ``predictions_carried[i]`` is the prediction row ``i`` grades, or None;
        such a row completes at once with ``scores_carried[i]`` and
        ``versions[i]`` (when given). Either list may be empty: nothing carried.
        ``values[i]`` is row ``i``'s business value, NaN where it has none
        (None or empty: no row has one); it goes with the label to the pair.
        """
        marks, deadlines, times = self._advance(timestamps, self.feedback)
        done = self._add_feedback(
            event_ids, marks, deadlines, times, labels, predictions_carried, scores_carried, versions, values
        )
        self._expire(self.watermark)
        return done

    def _add_predictions(
        self,
        event_ids: list[str],
        marks_array: np.ndarray,
        deadlines_array: np.ndarray,
        times_array: np.ndarray,
        predictions: list,
        scores: np.ndarray,
        versions: list,
        segments: list,
    ) -> Joined:
        """The module docstring's steps, row after row, with each row's watermark and deadline."""
        marks, deadlines, times = marks_array.tolist(), deadlines_array.tolist(), times_array.tolist()
        score_list = np.asarray(scores, dtype=np.float64).tolist()
        mine, other = self.predictions, self.feedback
        done: list[tuple] = []
        completed_at: list[int] = []
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
                value = fb[VALUE] if len(fb) > VALUE else None
                done.append(
                    (
                        event_id,
                        times[i],
                        fb[TIME],
                        predictions[i],
                        score,
                        fb[LABEL],
                        versions[i],
                        segments[i],
                        False,
                        value,
                    )
                )
                completed_at.append(i)
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
        return Joined.from_rows(done, completed_at)

    def _add_feedback(
        self,
        event_ids: list[str],
        marks_array: np.ndarray,
        deadlines_array: np.ndarray,
        times_array: np.ndarray,
        labels: list,
        predictions_carried: list,
        scores_carried: np.ndarray,
        versions: list | None,
        values: np.ndarray | None = None,
    ) -> Joined:
        """The module docstring's steps, row after row, with each row's watermark and deadline."""
        marks, deadlines, times = marks_array.tolist(), deadlines_array.tolist(), times_array.tolist()
        n = len(event_ids)
        value_list = feedback_values(values, n)
        carried = list(predictions_carried) if len(predictions_carried) else [None] * n
        carried_scores = (
            np.asarray(scores_carried, dtype=np.float64).tolist() if len(scores_carried) else [math.nan] * n
        )
        carried_versions = list(versions) if versions is not None and len(versions) else [None] * n
        mine, other = self.feedback, self.predictions
        done: list[tuple] = []
        completed_at: list[int] = []
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
                        value_list[i],
                    )
                )
                completed_at.append(i)
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
                        value_list[i],
                    )
                )
                completed_at.append(i)
                self._remember(event_id, prediction[TIME])
            elif deadlines[i] < mark:
                mine.expired += 1
            else:
                size = ENTRY_OVERHEAD_BYTES + len(event_id) + approx_bytes(labels[i])
                if value_list[i] is None:
                    self._wait(mine, event_id, [deadlines[i], times[i], size, labels[i]])
                else:  # a value costs its 8 bytes; rows without one are buffered (and snapshot) as before values
                    self._wait(mine, event_id, [deadlines[i], times[i], size + 8, labels[i], value_list[i]])
        return Joined.from_rows(done, completed_at)

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
        self._forget(watermark)
        self._set_horizon()

    def _forget(self, watermark: float) -> None:
        """Drop the recent pairs whose event time + ttl the watermark has passed."""
        heap = self._recent_heap
        while heap and heap[0][0] + self.ttl_s < watermark:
            del self.recent[heapq.heappop(heap)[1]]

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
        self.joined += 1
        self.recent[event_id] = time
        heapq.heappush(self._recent_heap, (time, event_id))
        self._horizon = min(self._horizon, time + self.ttl_s)
        if len(self.recent) > self.max_pending:
            del self.recent[heapq.heappop(self._recent_heap)[1]]

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
            "recent": self._recent_pairs(),
            "joined": self.joined,
            "carried": self.carried,
        }

    def _recent_pairs(self) -> list[tuple[float, str]]:
        """The pairs of ``recent`` as ``(time, id)``, earliest first (a sorted list is a heap). The heap holds
        those very pairs: sorting it spares a list per pair (a buffer of a monitoring model holds a thousand)."""
        return sorted(self._recent_heap)

    def load_state(self, state: dict) -> None:
        self.watermark = -math.inf if state["watermark"] is None else state["watermark"]
        self.predictions.load_state(state["predictions"])
        self.feedback.load_state(state["feedback"])
        self._recent_heap = [(t, i) for t, i in state["recent"]]
        self.recent = {i: t for t, i in self._recent_heap}
        self.joined, self.carried = state["joined"], state["carried"]
        self._set_horizon()
