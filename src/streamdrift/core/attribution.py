"""Mean absolute attributions: how much a model leans on each feature, in its reference and in its window.

Predictions may carry ``attributions`` (feature -> contribution, e.g. SHAP values). The monitor keeps a
binned sketch of each feature's absolute attribution (``sketch.StreamSketch``: its distribution against
the reference, and ``attribution_drift``); ``AbsoluteMeans`` keeps, next to it and over the same rows,
each feature's mean absolute attribution: over the reference (the first ``reference_size`` attributed
predictions) and over the sub-windows of a ring that closes at the same row counts as the sketch's, so
that when the sketch scores a window the means are those of that window. Sums are added in row order
(``np.cumsum``, sequential), so any batching gives the same bits; at most ``max_columns`` features, the
sketch's: the first by name order of those the reference's rows carry.

Examples
--------
>>> means = AbsoluteMeans(reference_size=2, slot_size=1, subwindows=2, max_columns=5)
>>> means.update({"a": np.array([1.0, 3.0, 5.0, 7.0])})
>>> means.window()
{'a': (2.0, 6.0)}
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.protocols import State


def _ordered(total: float, values: NDArray[np.float64]) -> float:
    """``total`` plus ``values`` one after the other (numpy's cumsum is sequential: the same bits in any batching)."""
    return float(np.cumsum(np.concatenate(([total], values)))[-1]) if len(values) else total


class AbsoluteMeans:
    """Each feature's count and sum of absolute attributions, reference and sub-windows (see the module)."""

    def __init__(self, reference_size: int, slot_size: int, subwindows: int, max_columns: int):
        self.reference_size = reference_size
        self.slot_size = slot_size
        self.subwindows = subwindows
        self.max_columns = max_columns
        self.rows = 0
        self.reference: dict[str, list[float]] = {}  # name -> [count, sum]
        self.ring: list[dict[str, list[float]]] = [{} for _ in range(subwindows)]

    def update(self, columns: dict[str, NDArray[np.float64]], rows: int | None = None) -> None:
        """Add rows: each column's absolute attributions (NaN where a row has none for it), all of one length.
        ``rows``: how many (by default the columns' length); given, since a batch whose rows all carry empty
        attributions has rows and no column, and the sub-windows close at the same row counts as the sketch's."""
        if rows is None:
            rows = len(next(iter(columns.values()))) if columns else 0
        n = rows
        start = 0
        while start < n:
            if self.rows < self.reference_size:
                stop, tally = min(n, start + self.reference_size - self.rows), self.reference
            else:
                filled = (self.rows - self.reference_size) % self.slot_size
                slot = (self.rows - self.reference_size) // self.slot_size % self.subwindows
                if filled == 0:
                    self.ring[slot] = {}  # a sub-window starts again
                stop, tally = min(n, start + self.slot_size - filled), self.ring[slot]
            for name, values in columns.items():
                part = values[start:stop]
                part = part[part == part]  # NaN: the row has no attribution for this feature
                if not len(part) or not self._tracks(name, tally is self.reference):
                    continue  # (a tally only for the rows that carry the name: a batch's columns are its rows' names)
                count, total = tally.get(name, [0.0, 0.0])
                tally[name] = [count + len(part), _ordered(total, part)]
            self.rows += stop - start
            start = stop

    def _tracks(self, name: str, in_reference: bool) -> bool:
        """Whether ``name``'s attributions are kept: the first ``max_columns`` names by name order of those the
        reference's rows carry, those the sketch's reference tracks (``StreamSketch._keeps``), whatever the
        batching. A name before them in the reference's rows takes the place of the last (whose rows it had
        counted are dropped: it can never come back, as that many names before it stay); none is added after."""
        reference = self.reference
        if name in reference:
            return True
        if not in_reference:
            return False
        if len(reference) >= self.max_columns:
            last = max(reference)
            if name > last:
                return False
            del reference[last]  # (the ring is empty until the reference is complete)
        reference[name] = [0.0, 0.0]
        return True

    def window(self) -> dict[str, tuple[float | None, float | None]]:
        """Per feature: the reference's and the latest sub-windows' mean absolute attribution (None: none)."""
        out: dict[str, tuple[float | None, float | None]] = {}
        for name, (count, total) in sorted(self.reference.items()):
            n = sum(slot.get(name, [0.0, 0.0])[0] for slot in self.ring)
            s = 0.0
            for slot in self.ring:  # in slot order: the same sum whatever the batching
                s += slot.get(name, [0.0, 0.0])[1]
            out[name] = (total / count if count else None, s / n if n else None)
        return out

    def state(self) -> State:
        return {"rows": self.rows, "reference": self.reference, "ring": self.ring}

    def load_state(self, state: State) -> None:
        self.rows = state["rows"]
        self.reference = {k: list(v) for k, v in state["reference"].items()}
        self.ring = [{k: list(v) for k, v in slot.items()} for slot in state["ring"]]
