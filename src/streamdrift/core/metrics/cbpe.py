"""A label-free accuracy estimate from the scores of predictions (confidence-based performance estimation)."""

from __future__ import annotations

import math

import numpy as np

from streamdrift.core.metrics.cbpe_small import update_small
from streamdrift.core.metrics.windows import SCALE, Windowed, fixed_point, ratio


def cbpe_accuracy(scores: np.ndarray) -> float:
    """Expected accuracy of calibrated scores (confidence-based performance estimation).

    ``scores`` is the probability of the positive class (1-D: the expected
    accuracy of a row is ``max(p, 1 - p)``) or one row of class probabilities
    per prediction (2-D: its maximum). NaN rows are skipped; NaN if none is left.

    >>> cbpe_accuracy(np.array([0.9, 0.2, 0.5, np.nan]))
    0.7333333333333334
    """
    s = np.asarray(scores, dtype=np.float64)
    confidence = np.maximum(s, 1 - s) if s.ndim == 1 else s.max(axis=1)
    confidence = confidence[~np.isnan(confidence)]
    return float(confidence.mean()) if len(confidence) else math.nan


class CBPE(Windowed):
    """Windowed label-free accuracy estimate from the scores of predictions.

    Fed with the scores of predictions as they arrive (each waits for its
    label then), it estimates the accuracy of a window before its labels are
    in; published next to the realised accuracy of the same rows once they
    are. Confidences are fixed-point sums, so any batching gives the same state.

    Parameters
    ----------
    window_size
        Scored predictions in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> p = rng.random(3000)
    >>> y = rng.random(3000) < p   # calibrated: P(y = 1) = p
    >>> cbpe = CBPE(window_size=1000, subwindows=4)
    >>> [round(w["estimated_accuracy"], 4) for w in cbpe.update(p)][-1]
    0.7547
    >>> float(np.mean((p[-1000:] > 0.5) == y[-1000:]))   # realised, once the labels are in
    0.735
    """

    def __init__(self, window_size: int, subwindows: int = 5):
        self.window_size = window_size
        self.subwindows = subwindows
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.sums = np.zeros((self.subwindows + 2, 2), dtype=np.int64)  # rows, confidence (fixed point)

    def update(self, scores: np.ndarray) -> list[dict]:
        """Add the scores of new predictions (NaN ones are skipped); return each window completed."""
        if update_small(self, scores):
            return []  # a handful of scores, summed in plain Python (no window completed within them)
        s = np.asarray(scores, dtype=np.float64)
        positions = (~np.isnan(s if s.ndim == 1 else s.max(axis=1))).nonzero()[0]  # as np.flatnonzero
        s = s[positions]
        confidence = fixed_point(np.maximum(s, 1 - s) if s.ndim == 1 else s.max(axis=1))
        completed = []
        for slot, a, b, fresh, closes in self._chunks(len(confidence)):
            if fresh:
                self.sums[slot] = 0
            counted, summed = b - a, int(np.add.reduce(confidence[a:b]))  # sum(), without its Python layer
            for row in (slot, self._cumulative):  # four numbers: no array for them
                self.sums[row, 0] += counted
                self.sums[row, 1] += summed
            self.rows += b - a
            if closes and self._window_complete():
                completed.append(
                    {"position": self.rows, "row": int(positions[b - 1]), "estimated_accuracy": self.estimate("window")}
                )
        return completed

    def estimate(self, scope: str = "window") -> float | None:
        rows, confidence = self.sums[self._slots(scope)].sum(axis=0).tolist()
        return ratio(confidence / SCALE, rows)

    def state(self) -> dict:
        return {"rows": self.rows, "sums": self.sums.tolist()}

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        self.sums = np.array(state["sums"], dtype=np.int64).reshape(self.subwindows + 2, 2)
