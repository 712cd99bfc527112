"""Drift statistics of binned histograms, for many columns at once.

All columns' bins lie side by side in one flat vector; ``sizes`` says how many
bins each column has. Every statistic is computed for every column with a
handful of numpy calls (``np.add.reduceat`` over the column segments), never
a Python loop over columns.

Statistics, per column, of a window histogram against the reference:

- ``psi``: population stability index, sum((w - r) ln(w / r)), shares floored at 1e-4;
- ``js``: Jensen-Shannon divergence in bits, in [0, 1];
- ``chi2`` / ``df`` / ``p_value``: the two-sample chi-square test of homogeneity
  (window counts against reference counts, so the reference's own sampling
  noise is accounted for); bins empty on both sides do not count;
- ``ks``: the largest gap between the two binned CDFs (ordered columns only);
- ``wasserstein``: the area between the binned CDFs, in units of the
  reference's quantiles (ordered columns only: 0 = same, 1 = everything moved
  across the whole reference range).

Examples
--------
>>> import numpy as np
>>> ref = np.array([50, 50, 0, 25, 25, 50])      # two columns: 3 bins, 3 bins
>>> win = np.array([10, 30, 0, 40, 40, 20])
>>> s = column_stats(win, ref, np.array([3, 3]), np.array([True, False]))
>>> [round(float(v), 4) for v in s["psi"]], [round(float(v), 4) for v in s["p_value"]]
([0.2747, 0.4159], [0.0069, 0.0001])
>>> s["df"].tolist(), [round(float(v), 3) for v in s["ks"]]
([1, 2], [0.25, nan])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import chdtrc, chdtri, ndtri  # chi2.sf / chi2.isf without scipy.stats' argument checks

EPS = 1e-4


def starts_of(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)


class Layout(NamedTuple):
    """What ``column_stats`` derives from the bin layout alone (``layout``): the same for every
    window of every model with that layout, so a caller that scores often makes it once."""

    starts: np.ndarray  # first bin of each column
    column_ends: np.ndarray  # last bin of each column but the last
    value_bins: np.ndarray  # bool per bin
    n_value_bins: np.ndarray  # per column, at least 1


def layout(sizes: np.ndarray, value_bins: np.ndarray | None = None) -> Layout:
    starts = starts_of(sizes)
    mask = np.ones(int(np.sum(sizes)), dtype=bool) if value_bins is None else value_bins
    return Layout(starts, starts[1:] - 1, mask, np.maximum(np.add.reduceat(mask.astype(np.int64), starts), 1))


def column_stats(
    window: np.ndarray,
    ref: np.ndarray,
    sizes: np.ndarray,
    ordered: np.ndarray,
    value_bins: np.ndarray | None = None,
    bins: Layout | None = None,
) -> dict[str, np.ndarray]:
    """Every statistic for every column.

    Parameters
    ----------
    window, ref
        Flat bin counts of the window and of the reference.
    sizes
        Bins per column.
    ordered
        Per column: whether its bins are ordered (numeric), so CDF statistics apply.
    value_bins
        Flat mask of the bins that hold values (not missing/invalid); the CDF
        statistics use only those. Default: all bins.
    bins
        ``layout(sizes, value_bins)``, if the caller keeps it.
    """
    starts, column_ends, mask, n_value_bins = layout(sizes, value_bins) if bins is None else bins
    # window and reference side by side (rows 0 and 1), computed together
    wr = np.array((window, ref), dtype=np.float64)
    w, r = wr
    n = np.add.reduceat(wr, starts, axis=1)  # integers: exact in any order
    n1 = np.maximum(n, 1)
    p = wr / np.repeat(n1, sizes, axis=1)
    pw, pr = p

    floored = np.maximum(p, EPS)
    fw, fr = floored
    psi = np.add.reduceat((fw - fr) * np.log(fw / fr), starts)

    m = (pw + pr) / 2
    both = w + r
    seen = both > 0
    k = np.repeat(np.sqrt(n[::-1] / n1), sizes, axis=1)  # sqrt(n_r / n_w), sqrt(n_w / n_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        js_terms = np.where(p > 0, p * np.log2(p / m), 0)
        kwr = k * wr
        kw, kr = kwr[0], kwr[1]
        terms = np.where(seen, (kw - kr) ** 2 / both, 0)
    js = np.add.reduceat(js_terms[0] + js_terms[1], starts) / 2
    chi2 = np.add.reduceat(terms, starts)
    df = np.add.reduceat(seen.astype(np.int64), starts) - 1
    p_value = np.where(df > 0, chdtrc(np.maximum(df, 1), chi2), 1.0)

    cdf = np.cumsum(np.where(mask, p, 0), axis=1)
    diff = cdf[0] - cdf[1]
    before = np.concatenate(([0.0], diff[column_ends]))
    gap = np.where(mask, np.abs(diff - np.repeat(before, sizes)), 0)
    ks = np.where(ordered, np.maximum.reduceat(gap, starts), np.nan)
    wasserstein = np.where(ordered, np.add.reduceat(gap, starts) / n_value_bins, np.nan)
    n_w = n[0]
    return {
        "psi": psi,
        "js": js,
        "chi2": chi2,
        "df": df,
        "p_value": p_value,
        "ks": ks,
        "wasserstein": wasserstein,
        "n": n_w,
    }


def chi2_critical(p: float, df: np.ndarray) -> np.ndarray:
    """The chi-square value whose p-value is ``p``, per degrees of freedom."""
    return np.where(df > 0, chdtri(np.maximum(df, 1), p), np.inf)


def normal_critical(p: float) -> float:
    """The ``|z|`` whose two-sided normal p-value is ``p``.

    >>> round(normal_critical(0.05), 3)
    1.96
    """
    return float(-ndtri(p / 2))
