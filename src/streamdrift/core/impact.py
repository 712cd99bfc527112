"""Why the scores moved: how much of the change in a model's mean score each feature's shift explains.

The features' reference keeps, per bin of each feature (and per category), the
number of scored rows and the sum of their scores, as fixed-point integers
(``SCALE``), so the sums are exact and the same whatever the batching. When a
window of the features closes, each feature's *explained change* is

    sum over its bins b of  ref_mean_score[b] * (window_freq[b] - ref_freq[b])

the change in the mean score that the shift of that feature's distribution
alone would cause if the model scored each bin as it did in the reference.
Next to it the *observed change*: the window's mean score minus the
reference's. A feature whose shift moved the scores explains much of the
observed change; a feature that moved without touching the scores, or whose
bins the model scored alike, explains little. Features are not independent, so
the explained changes need not add up to the observed one.

Only statistics: bin frequencies and mean scores, never a value.

Examples
--------
Two bins; the reference scored them 0.2 and 0.8, half the rows in each. The
window has three quarters of its rows in the second bin:

>>> counts = np.array([[50, 50], [int(0.2 * SCALE) * 50, int(0.8 * SCALE) * 50]])  # scored rows, score sums
>>> explained = explained_change(np.array([25, 75]), np.array([50, 50]), counts, np.array([0]))
>>> [round(float(x), 4) for x in explained]
[0.15]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

SCALE = 1 << 20  # fixed point for scores in [0, 1]: integer sums are associative, float sums are not
UNSCORED = -1  # the fixed-point "score" of a row without one


def fixed(scores: NDArray[np.float64]) -> list[int]:
    """Scores (NaN where absent) as fixed-point integers, ``UNSCORED`` where absent. Plain Python: a
    model's batches are a few rows each, fewer than a handful of numpy calls would cost; ``round`` rounds
    halves to even as ``np.rint`` does, and ``x * SCALE`` is exact."""
    return [round(s * SCALE) if s == s else UNSCORED for s in scores.tolist()]  # NaN is not equal to itself


def tally(fixed_scores: list[int]) -> tuple[int, int]:
    """Scored rows and the sum of their fixed-point scores."""
    scored = [s for s in fixed_scores if s >= 0]
    return len(scored), sum(scored)


def explained_change(
    window_counts: NDArray[np.integer[Any]],
    ref_counts: NDArray[np.integer[Any]],
    ref_scores: NDArray[np.int64],
    starts: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Each column's explained change in the mean score (NaN for a column whose reference had no scores).

    ``window_counts`` and ``ref_counts``: rows per bin, every column's bins side by side, column ``i``
    from ``starts[i]``; ``ref_scores``: the reference's scored rows (first row) and fixed-point score
    sums (second row) per bin. A bin the reference never scored is taken at the column's mean score: its
    shift then explains nothing, as the frequency shifts of a column add up to zero.
    """
    scored, sums = ref_scores[0].astype(np.float64), ref_scores[1].astype(np.float64)
    mean = np.add.reduceat(sums, starts) / np.maximum(np.add.reduceat(scored, starts), 1) / SCALE
    column = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(scored))))
    # each bin's mean score as a deviation from its column's: the same sum, less cancellation
    deviation = np.where(scored > 0, sums / np.maximum(scored, 1) / SCALE - mean[column], 0.0)
    window_n = np.add.reduceat(window_counts, starts).astype(np.float64)
    ref_n = np.add.reduceat(ref_counts, starts).astype(np.float64)
    shift = window_counts / np.maximum(window_n, 1)[column] - ref_counts / np.maximum(ref_n, 1)[column]
    out: NDArray[np.float64] = np.add.reduceat(deviation * shift, starts)
    out[np.add.reduceat(scored, starts) == 0] = np.nan
    return out


def mean_score(scored: int, total: int) -> float | None:
    """The mean of ``scored`` scores summing to ``total`` (fixed point); None without any."""
    return total / scored / SCALE if scored else None
