"""Sub-window bookkeeping shared by the metrics, and the fixed-point sums that keep them batch-invariant.

Every metric keeps two scopes:

- **window**: the last ``window_size`` rows as of the latest sub-window
  boundary. Rows go into a ring of ``subwindows + 1`` sub-windows of
  ``window_size / subwindows`` rows each (the one filling, and the ``subwindows``
  full ones before it), closing at fixed row counts like ``sketch.StreamSketch``;
- **cumulative**: every row since the start.

Both are sufficient statistics (counts, sums, binned score histograms), so the
state is bounded and plain data, and batches of any size give the same state:
counts are integers, bounded sums are fixed-point integers (``SCALE``), and
unbounded ones (regression) are summed in row order.
"""

from __future__ import annotations

import numpy as np

from streamdrift.core.sketch import count_dtype
from streamdrift.core.warmup import narrow_signed

SCALE = 1 << 20  # fixed point for bounded sums: integer sums are associative, float sums are not


class Windowed:
    """Sub-window bookkeeping shared by the metric classes.

    Arrays of state have ``subwindows + 2`` rows: ``subwindows + 1`` ring slots
    and, last, the cumulative totals. Which slot a row goes to follows from the
    number of rows seen, so ``rows`` is the only position to keep.
    """

    window_size: int
    subwindows: int
    rows: int

    def _check_window(self) -> None:
        if self.window_size <= 0 or self.subwindows <= 0 or self.window_size % self.subwindows:
            raise ValueError(f"subwindows ({self.subwindows}) must divide window_size ({self.window_size})")

    @property
    def slot_size(self) -> int:
        return self.window_size // self.subwindows

    @property
    def _cumulative(self) -> int:
        return self.subwindows + 1

    def _chunks(self, n: int):
        """``(slot, start, stop, fresh, closes)`` for runs of a batch's rows that land in one sub-window."""
        size, slots, base, start = self.slot_size, self.subwindows + 1, self.rows, 0
        while start < n:
            position = base + start
            fill = position % size
            stop = min(n, start + size - fill)
            yield (position // size) % slots, start, stop, fill == 0, (base + stop) % size == 0
            start = stop

    def _window_complete(self) -> bool:
        return self.rows % self.slot_size == 0 and self.rows >= self.window_size

    def _slots(self, scope: str) -> list[int]:
        """Indices to sum for ``scope``: the window's full sub-windows (oldest first), or the totals."""
        if scope == "cumulative":
            return [self._cumulative]
        if scope != "window":
            raise ValueError(f"scope must be 'window' or 'cumulative', not {scope!r}")
        full = self.rows // self.slot_size
        return [(full - 1 - j) % (self.subwindows + 1) for j in reversed(range(min(full, self.subwindows)))]

    def _window_rows(self, scope: str) -> int:
        if scope == "cumulative":
            return self.rows
        return min(self.rows // self.slot_size, self.subwindows) * self.slot_size


def ordered_sum(total: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """``total`` plus the rows of ``terms`` one after the other: the same bits whatever the batching."""
    return np.cumsum(np.vstack([total[None], terms]), axis=0)[-1]


def fixed_point(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * SCALE).astype(np.int64)


def split_counts(slots: np.ndarray, total: np.ndarray, bound: int) -> dict:
    """State of windowed counts: the sub-windows, each entry at most ``bound``, in the smallest
    dtype that holds it (a snapshot stores fewer bytes), and the unbounded totals in the narrowest signed
    dtype that holds their values (a model in its warm-up has a few dozen rows: its histograms' 200 totals
    were 1.6 KB of int64, mostly zeros, 2 % of its record's bytes after zlib; issue 19)."""
    return {"slots": slots.astype(count_dtype(bound, unsigned=True)), "total": narrow_signed(total)}


def unsplit_counts(state: dict, slots: int, shape: tuple[int, ...], bound: int) -> tuple[np.ndarray, np.ndarray]:
    """What ``split_counts`` stored (arrays or lists): the sub-windows in the narrowest signed dtype for
    ``bound``, as they are kept live, and the totals as int64 (stored in any integer dtype: int64 before
    2026-12-05); ``shape`` is one sub-window's."""
    return (
        np.asarray(state["slots"]).astype(count_dtype(bound)).reshape(slots, *shape),
        np.array(state["total"], dtype=np.int64).reshape(shape),
    )


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def grown(counts: np.ndarray, *more: int) -> np.ndarray:
    """``counts`` with ``more[i]`` zeros appended along axis ``i``: ``np.pad`` with zeros after, without
    its generality, which costs about 0.1 ms a call and is paid by every new model's first classes.

    >>> grown(np.array([[1, 2]]), 1, 0).tolist()
    [[1, 2], [0, 0]]
    >>> grown(np.zeros((2, 0), np.int64), 0, 3).tolist()
    [[0, 0, 0], [0, 0, 0]]
    """
    out = np.zeros(tuple([n + m for n, m in zip(counts.shape, more)]), dtype=counts.dtype)
    if counts.size:  # a new model's first classes grow empty arrays (five of them): nothing to copy
        out[tuple(map(slice, counts.shape))] = counts
    return out
